//! `sixfold sim`: the deterministic simulator over many seeds, or one seed replayed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sixfold_conformance::sim::{self, FaultSet, Mutant, Scope, SimOptions, SimOutcome, Workload};

#[derive(clap::Args)]
pub struct SimArgs {
    /// How many seeds to run, starting at --seed (default 0).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// One seed to run (or the first of --seeds).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Faults to inject: `all`, `none`, or a comma-separated list of loss, duplication,
    /// reordering, partitions, node-crashes, writer-crashes, second-writers, torn-writes,
    /// bit-flips, misdirected-writes, disk-errors.
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// MTRs (or SQL statements) each run's workload submits during the safety phase.
    #[arg(long, default_value_t = 150)]
    pub mtrs: usize,
    /// `pages` (MTRs of random pages), or `sql`: stock SQLite on the simulated volume,
    /// checked at the end against stock SQLite fed the statements that took effect.
    #[arg(long, default_value = "pages")]
    pub workload: String,
    /// Switch on an implementation mutant: ack-before-fsync, commit-at-vcl, hint-at-vcl,
    /// recovery-without-truncation.
    #[arg(long)]
    pub mutant: Option<String>,
    /// `full`, or `model`: keep every run inside the stateright model's bounds (LAL 2, LSNs
    /// ≤ 15) and also replay its trace through the model's transitions (refinement).
    #[arg(long, default_value = "full")]
    pub scope: String,
    /// With one seed: write its trace (JSON lines, spec/trace.md) here.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Worker threads for many seeds.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

fn replay_command(args: &SimArgs, seed: u64) -> String {
    let mut command = format!(
        "sixfold sim --seed {seed} --faults {} --mtrs {}",
        args.faults, args.mtrs
    );
    if let Some(mutant) = &args.mutant {
        command.push_str(&format!(" --mutant {mutant}"));
    }
    if args.workload != "pages" {
        command.push_str(&format!(" --workload {}", args.workload));
    }
    if args.scope != "full" {
        command.push_str(&format!(" --scope {}", args.scope));
    }
    command
}

pub fn sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let faults = FaultSet::parse(&args.faults).map_err(anyhow::Error::msg)?;
    let mutant = match &args.mutant {
        None => None,
        Some(name) => Some(Mutant::parse(name).with_context(|| {
            let names: Vec<&str> = Mutant::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown mutant {name:?}; known: {}", names.join(", "))
        })?),
    };
    let scope = Scope::parse(&args.scope)
        .with_context(|| format!("unknown scope {:?}; known: full, model", args.scope))?;
    let workload = Workload::parse(&args.workload)
        .with_context(|| format!("unknown workload {:?}; known: pages, sql", args.workload))?;
    if workload == Workload::Sql && scope == Scope::Model {
        anyhow::bail!(
            "--workload sql runs in the full scope only: SQLite's MTRs do not fit the model's LAL of 2"
        );
    }
    let options = |seed| SimOptions {
        workload,
        seed,
        faults: faults.clone(),
        mtrs: args.mtrs,
        mutant,
        scope,
    };
    let start = args.seed.unwrap_or(0);
    let Some(count) = args.seeds else {
        let outcome = sim::run(options(start));
        report_one(&outcome);
        if let Some(path) = &args.trace {
            std::fs::write(path, outcome.trace.to_json_lines())
                .with_context(|| format!("writing the trace to {}", path.display()))?;
            println!(
                "trace: {} ({} lines)",
                path.display(),
                outcome.trace.lines.len()
            );
        }
        return Ok(if outcome.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let progress = indicatif::ProgressBar::new(count);
    let next = AtomicU64::new(start);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let acknowledged = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= start + count {
                        break;
                    }
                    let outcome = sim::run(options(seed));
                    acknowledged.fetch_add(outcome.acknowledged as u64, Ordering::Relaxed);
                    if let Some(failure) = outcome.failure {
                        // Printed directly: a hidden progress bar (no terminal) drops println.
                        progress.suspend(|| {
                            println!(
                                "FAIL seed {seed}: {failure}\n  replay: {}",
                                replay_command(&args, seed)
                            );
                        });
                        failures.lock().expect("not poisoned").push((seed, failure));
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish_and_clear();
    let failures = failures.into_inner().expect("not poisoned");
    println!(
        "seeds {start}..{}: {} passed, {} failed ({} commits acknowledged in all)",
        start + count,
        count as usize - failures.len(),
        failures.len(),
        acknowledged.load(Ordering::Relaxed)
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn report_one(outcome: &SimOutcome) {
    println!(
        "seed {}: {} — acknowledged {}, recoveries {}, final VDL {}, {} ticks, trace hash {:016x}",
        outcome.seed,
        if outcome.passed() { "passed" } else { "FAILED" },
        outcome.acknowledged,
        outcome.recoveries,
        outcome.final_vdl,
        outcome.ticks,
        outcome.trace_hash
    );
    if let Some(sql) = &outcome.sql {
        println!("  {sql}");
    }
    if let Some(refined) = &outcome.refined {
        println!(
            "  model refinement: {} events replayed, {} model actions; {} recoveries, {} commit acknowledgements and {} page reads equal to the model's",
            refined.events, refined.actions, refined.recoveries, refined.commits, refined.reads
        );
    }
    if let Some(failure) = &outcome.failure {
        println!("  {failure}");
    }
}
