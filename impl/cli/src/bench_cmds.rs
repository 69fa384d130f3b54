//! `sixfold bench`: sixfold beside stock SQLite and the disk's limit (docs/performance.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sixfold_bench::{BenchOptions, SixfoldSystem};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A short run (under three minutes) with a smaller table.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON report, the plots and the scratch databases go.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        quick: args.quick,
        out: args.out.clone(),
    };
    let system: Option<&dyn SixfoldSystem> = None;
    let report = sixfold_bench::run(&options, system).context("running the benchmarks")?;
    print!("{}", report.table());
    report.write(&args.out).with_context(|| format!("writing the report to {}", args.out.display()))?;
    println!("\nreport: {}/bench.json, plots: {}/*.png", args.out.display(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
