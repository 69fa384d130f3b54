//! `sixfold check` and `sixfold explore`: thin shells over `sixfold_model_checks`.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sixfold_model_checks::replica::{self, ReplicaCheckOptions, run_replica_check};
use sixfold_model_checks::{
    Bug, CheckOptions, Config, Report, Stop, run_check, serve_explorer, validate_model,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold check quorum\n  sixfold check quorum --config reference --threads 2\n  sixfold check quorum --bug write-quorum-3   (the check must fail)\n  sixfold check replica --config reference\n  sixfold check replica --bug apply-above-vdl   (the check must fail)"
)]
pub struct CheckArgs {
    /// The model to check (quorum or replica).
    pub model: String,
    /// Model size: small, reference, large, failover, two-recoveries, history,
    /// history-no-gossip, history-one-lsn, lease or disk-loss; for replica: small,
    /// reference, two-replicas or large (default: small, or with --bug the smallest config
    /// that catches it).
    #[arg(long)]
    pub config: Option<String>,
    /// Check a mutant instead of the correct protocol (e.g. write-quorum-3).
    #[arg(long)]
    pub bug: Option<String>,
    /// Checker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// With --bug: explore every state instead of stopping at the first counterexample.
    #[arg(long)]
    pub exhaustive: bool,
    /// Stop after this many seconds (the report then says the search is incomplete).
    #[arg(long)]
    pub max_seconds: Option<u64>,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sixfold explore quorum   (then open http://127.0.0.1:3000)")]
pub struct ExploreArgs {
    /// The model to explore (quorum).
    pub model: String,
    /// Address the Explorer listens on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Model size: small, reference, large, failover, two-recoveries, history,
    /// history-no-gossip, history-one-lsn, lease or disk-loss.
    #[arg(long, default_value = "small")]
    pub config: String,
    /// Explore a mutant.
    #[arg(long)]
    pub bug: Option<String>,
}

fn parse_bug(name: Option<&str>) -> anyhow::Result<Option<Bug>> {
    name.map(|name| name.parse::<Bug>())
        .transpose()
        .map_err(anyhow::Error::from)
}

/// Exit 0 when every property holds, 1 when one fails; errors (unknown names) become exit 2.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    validate_model(&args.model)?;
    if args.model == "replica" {
        return check_replica(args);
    }
    let bug = parse_bug(args.bug.as_deref())?;
    let config = match (&args.config, bug) {
        (Some(name), _) => Config::named(name)?,
        (None, Some(bug)) => bug.config(),
        (None, None) => Config::small(),
    };
    if args.threads == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    let stop = stop_for(bug.is_some(), args.exhaustive);
    let options = CheckOptions {
        config,
        bug,
        threads: args.threads,
        progress: true,
        stop,
        time_limit: args.max_seconds.map(Duration::from_secs),
    };
    Ok(print_verdict(&run_check(&options)))
}

/// `sixfold check replica`: the read-replica model (spec/replica.md).
fn check_replica(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let bug = args
        .bug
        .as_deref()
        .map(str::parse::<replica::Bug>)
        .transpose()?;
    let config = match (&args.config, bug) {
        (Some(name), _) => replica::Config::named(name)?,
        (None, Some(bug)) => bug.config(),
        (None, None) => replica::Config::small(),
    };
    if args.threads == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    let options = ReplicaCheckOptions {
        config,
        bug,
        threads: args.threads,
        progress: true,
        stop: stop_for(bug.is_some(), args.exhaustive),
        time_limit: args.max_seconds.map(Duration::from_secs),
    };
    Ok(print_verdict(&run_replica_check(&options)))
}

fn stop_for(mutant: bool, exhaustive: bool) -> Stop {
    if mutant && !exhaustive {
        Stop::FirstFailure
    } else {
        Stop::Exhaustive
    }
}

/// Prints the report; exit 0 when every property holds, 1 otherwise.
fn print_verdict(report: &Report) -> ExitCode {
    println!("{report}");
    let failed = report.failed();
    if !failed.is_empty() {
        println!("result: FAILED: {}", failed.join(", "));
        return ExitCode::from(1);
    }
    if !report.all_hold() {
        println!("result: no property failed, but the search stopped before the end");
        return ExitCode::from(1);
    }
    println!("result: every property holds");
    ExitCode::SUCCESS
}

/// Serves the stateright Explorer until interrupted.
pub fn explore(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    validate_model(&args.model)?;
    if args.model != "quorum" {
        anyhow::bail!("the Explorer serves the quorum model only");
    }
    let config = Config::named(&args.config)?;
    let bug = parse_bug(args.bug.as_deref())?;
    // The Explorer panics on a bind failure; find it first and say so plainly.
    drop(TcpListener::bind(args.addr).with_context(|| format!("cannot listen on {}", args.addr))?);
    println!(
        "Explorer for model {} (config {}) at http://{}/",
        args.model, config.name, args.addr
    );
    serve_explorer(config, bug, args.addr);
    Ok(ExitCode::SUCCESS)
}
