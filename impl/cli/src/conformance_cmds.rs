//! `sixfold conformance` (run the vectors against a target program) and
//! `sixfold conformance-target` (the reference target, on stdin/stdout).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sixfold_conformance::runner::{self, Target};
use sixfold_conformance::vectors::VectorFile;

/// The vectors shipped with this binary, so it needs no checkout to run them.
const EMBEDDED_VECTORS: [&str; 5] = [
    include_str!("../../../conformance/vectors/codec.json"),
    include_str!("../../../conformance/vectors/recovery.json"),
    include_str!("../../../conformance/vectors/segment.json"),
    include_str!("../../../conformance/vectors/wire.json"),
    include_str!("../../../conformance/vectors/writer.json"),
];

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sixfold conformance --target 'sixfold conformance-target'")]
pub struct ConformanceArgs {
    /// The program to test, run through `sh -c`; it answers JSON lines (docs/conformance.md).
    #[arg(long)]
    pub target: String,
    /// Read vectors from this folder instead of the ones built in.
    #[arg(long)]
    pub vectors: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ConformanceTargetArgs {}

pub fn conformance(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    let files: Vec<VectorFile> = match &args.vectors {
        Some(dir) => runner::load_vectors(dir)?,
        None => EMBEDDED_VECTORS
            .iter()
            .map(|text| serde_json::from_str(text).context("built-in vectors"))
            .collect::<anyhow::Result<_>>()?,
    };
    let mut target = Target::spawn(&args.target)?;
    let summary = runner::run(&files, &mut target)?;
    for mismatch in &summary.mismatches {
        println!("FAIL {}: {}", mismatch.suite, mismatch.case);
        println!("  expected: {}", mismatch.expected);
        println!("  actual:   {}", mismatch.actual);
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
