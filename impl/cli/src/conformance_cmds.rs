//! `sixfold conformance` (run the vectors against a target program) and
//! `sixfold conformance-target` (the reference target, on stdin/stdout). The suites are
//! specified in spec/conformance.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sixfold_conformance::runner::{self, Target};
use sixfold_conformance::vectors::{SUITES, VectorFile};

/// The vectors shipped with this binary, so it needs no checkout to run them.
const EMBEDDED_VECTORS: [&str; 9] = [
    include_str!("../../../conformance/vectors/codec.json"),
    include_str!("../../../conformance/vectors/recovery.json"),
    include_str!("../../../conformance/vectors/segment.json"),
    include_str!("../../../conformance/vectors/wire.json"),
    include_str!("../../../conformance/vectors/writer.json"),
    include_str!("../../../conformance/vectors/generated/codec.json"),
    include_str!("../../../conformance/vectors/generated/recovery.json"),
    include_str!("../../../conformance/vectors/generated/segment.json"),
    include_str!("../../../conformance/vectors/generated/writer.json"),
];

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sixfold conformance --target 'sixfold conformance-target'")]
pub struct ConformanceArgs {
    /// The program to test, run through `sh -c`; it answers JSON lines (spec/conformance.md).
    /// For example `"sixfold conformance-target"` or
    /// `"python3 conformance/python/target.py"`.
    #[arg(long, required_unless_present = "list")]
    pub target: Option<String>,
    /// Only this suite (writer, segment, recovery, codec, wire); repeatable.
    #[arg(long = "suite", value_parser = clap::builder::PossibleValuesParser::new(SUITES))]
    pub suites: Vec<String>,
    /// List the suites and their cases (name and rules) instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Read vectors from this folder (and its `generated/`) instead of the ones built in.
    #[arg(long)]
    pub vectors: Option<PathBuf>,
    /// Stop printing diffs after this many failed cases (all are counted).
    #[arg(long, default_value_t = 20)]
    pub max_diffs: usize,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  sixfold conformance --target 'sixfold conformance-target' --suite segment")]
pub struct ConformanceTargetArgs {}

fn load(args: &ConformanceArgs) -> anyhow::Result<Vec<VectorFile>> {
    let files: Vec<VectorFile> = match &args.vectors {
        Some(dir) => runner::load_vectors(dir)?,
        None => EMBEDDED_VECTORS
            .iter()
            .map(|text| serde_json::from_str(text).context("built-in vectors"))
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(files
        .into_iter()
        .filter(|file| args.suites.is_empty() || args.suites.contains(&file.suite))
        .collect())
}

fn list(files: &[VectorFile]) {
    for suite in SUITES {
        let cases: Vec<_> = files
            .iter()
            .filter(|f| f.suite == suite)
            .flat_map(|f| &f.cases)
            .collect();
        if cases.is_empty() {
            continue;
        }
        println!("{suite}: {} cases", cases.len());
        for case in cases {
            println!("  {}  [{}]", case.name, case.rules.join(", "));
        }
    }
}

/// The fields where `expected` and `actual` differ, as `path: expected -> actual` lines.
fn diff(
    path: &str,
    expected: &serde_json::Value,
    actual: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for key in keys {
                let null = Value::Null;
                let sub = format!("{path}.{key}");
                diff(
                    &sub,
                    e.get(key).unwrap_or(&null),
                    a.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (index, (e, a)) in e.iter().zip(a).enumerate() {
                diff(&format!("{path}[{index}]"), e, a, out);
            }
        }
        _ if expected != actual => {
            out.push(format!("    {path}: expected {expected}, actual {actual}"))
        }
        _ => {}
    }
}

pub fn conformance(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    let files = load(&args)?;
    if args.list {
        list(&files);
        return Ok(ExitCode::SUCCESS);
    }
    let command = args.target.as_deref().context("--target is required")?;
    let mut target = Target::spawn(command)?;
    let summary = runner::run(&files, &mut target)?;
    for mismatch in summary.mismatches.iter().take(args.max_diffs) {
        println!("FAIL {}: {}", mismatch.suite, mismatch.case);
        println!("  expected: {}", mismatch.expected);
        println!("  actual:   {}", mismatch.actual);
        let mut lines = Vec::new();
        diff("$", &mismatch.expected, &mismatch.actual, &mut lines);
        println!("  differences:");
        for line in lines.iter().take(20) {
            println!("{line}");
        }
    }
    for suite in SUITES {
        let failed = summary
            .mismatches
            .iter()
            .filter(|m| m.suite == suite)
            .count();
        let total: usize = files
            .iter()
            .filter(|f| f.suite == suite)
            .map(|f| f.cases.len())
            .sum();
        if total > 0 {
            println!("{suite}: {} passed, {failed} failed", total - failed);
        }
    }
    println!(
        "{} passed, {} failed",
        summary.passed,
        summary.mismatches.len()
    );
    Ok(if summary.mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn conformance_target(_: ConformanceTargetArgs) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    runner::serve(stdin.lock(), std::io::stdout().lock()).context("serving vectors")?;
    Ok(ExitCode::SUCCESS)
}
