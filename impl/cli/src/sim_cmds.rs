//! `sixfold sim`: the deterministic simulator over many seeds, or one seed replayed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sixfold_conformance::sim::{self, FaultSet, Mutant, Scope, SimOptions, SimOutcome, Workload};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold sim --seeds 200\n  sixfold sim --seed 42 --faults loss,partitions --mtrs 500\n  sixfold sim --workload sql --seeds 100\n  sixfold sim --hours 0.5"
)]
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
    /// recovery-without-truncation, truncation-union, read-without-history.
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
    /// Run random seeds, run lengths (10 to 1,000 MTRs) and fault mixes for this many hours
    /// (fractions allowed), printing a replay line for every failure; `--mutant` and
    /// `--workload` apply, `--seed(s)`, `--faults` and `--mtrs` are chosen per run.
    #[arg(long, conflicts_with_all = ["seeds", "seed", "trace"])]
    pub hours: Option<f64>,
}

/// Run lengths `--hours` draws from: short runs reach odd early states, long ones pile up
/// recoveries and overlapping truncation ranges (issue #21 needed 400+ MTRs).
const SOAK_MTRS: [usize; 5] = [10, 40, 150, 400, 1000];

/// splitmix64: a seed stream for `--hours` without another dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `sixfold sim --hours H`: random seeds, lengths and fault mixes until the time is up.
fn soak(
    args: &SimArgs,
    hours: f64,
    mutant: Option<Mutant>,
    workload: Workload,
) -> anyhow::Result<ExitCode> {
    if !(hours.is_finite() && hours > 0.0) {
        anyhow::bail!("--hours must be a positive number of hours, got {hours}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(hours * 3600.0);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    println!(
        "soak: random seeds, {SOAK_MTRS:?} MTRs and fault mixes for {hours} h on {} threads",
        args.threads.max(1)
    );
    let runs = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..args.threads.max(1) as u64 {
            let (runs, failures) = (&runs, &failures);
            scope.spawn(move || {
                let mut stream = base ^ thread.wrapping_mul(0xA076_1D64_78BD_642F);
                while std::time::Instant::now() < deadline {
                    let seed = splitmix(&mut stream) >> 16;
                    let mtrs = SOAK_MTRS[(splitmix(&mut stream) % SOAK_MTRS.len() as u64) as usize];
                    let mix = splitmix(&mut stream);
                    let chosen: Vec<&str> = sim::FAULT_NAMES
                        .iter()
                        .enumerate()
                        .filter(|(bit, _)| mix & (1 << bit) != 0 || mix & (1 << 40) != 0)
                        .map(|(_, name)| *name)
                        .collect();
                    let faults = if chosen.is_empty() {
                        "none".to_string()
                    } else {
                        chosen.join(",")
                    };
                    let outcome = sim::run(SimOptions {
                        workload,
                        seed,
                        faults: FaultSet::parse(&faults).expect("names from FAULT_NAMES"),
                        mtrs,
                        mutant,
                        scope: Scope::Full,
                    });
                    let done = runs.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(failure) = outcome.failure {
                        failures.fetch_add(1, Ordering::Relaxed);
                        let mut replay = SimArgs {
                            faults,
                            mtrs,
                            mutant: args.mutant.clone(),
                            workload: args.workload.clone(),
                            scope: "full".to_string(),
                            seeds: None,
                            seed: None,
                            trace: None,
                            threads: 1,
                            hours: None,
                        };
                        replay.seed = Some(seed);
                        println!(
                            "FAIL seed {seed}: {failure}\n  replay: {}",
                            replay_command(&replay, seed)
                        );
                    }
                    if done % 100 == 0 {
                        println!(
                            "soak: {done} runs, {} failed",
                            failures.load(Ordering::Relaxed)
                        );
                    }
                }
            });
        }
    });
    let (runs, failed) = (runs.into_inner(), failures.into_inner());
    println!(
        "soak: {runs} runs: {} passed, {failed} failed",
        runs - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    if let Some(hours) = args.hours {
        return soak(&args, hours, mutant, workload);
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
