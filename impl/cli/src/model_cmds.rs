//! `sixfold check` and `sixfold explore`: thin shells over `sixfold_model_checks`.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sixfold_model_checks::replica::{self, ReplicaCheckOptions, run_replica_check};
use sixfold_model_checks::{
    Bug, CheckOptions, Config, Report, Stop, membership, run_check, serve_explorer, validate_model,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold check quorum\n  sixfold check quorum --config reference --threads 2\n  sixfold check quorum --bug write-quorum-3   (the check must fail)\n  sixfold check membership --config composed\n  sixfold check membership --bug finalize-before-hydrate   (the check must fail)\n  sixfold check replica --config reference\n  sixfold check replica --bug apply-above-vdl   (the check must fail)"
)]
pub struct CheckArgs {
    /// The model to check: quorum, membership (replacing a PG's segments, M1–M6) or
    /// replica (read replicas, P1–P10).
    pub model: String,
    /// Model size. quorum: small, reference, large, failover, two-recoveries, history,
    /// history-no-gossip, history-one-lsn, lease or disk-loss; membership: small, composed,
    /// two-moves or reference; replica: small, reference, two-replicas or large (default:
    /// small, or with --bug the smallest config that catches it).
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
    /// The model to explore (quorum or membership).
    pub model: String,
    /// Address the Explorer listens on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Model size (see `sixfold check --help`).
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

fn search_stop(has_bug: bool, exhaustive: bool) -> Stop {
    if has_bug && !exhaustive {
        Stop::FirstFailure
    } else {
        Stop::Exhaustive
    }
}

fn check_quorum(args: &CheckArgs) -> anyhow::Result<Report> {
    let bug = parse_bug(args.bug.as_deref())?;
    let config = match (&args.config, bug) {
        (Some(name), _) => Config::named(name)?,
        (None, Some(bug)) => bug.config(),
        (None, None) => Config::small(),
    };
    Ok(run_check(&CheckOptions {
        config,
        bug,
        threads: args.threads,
        progress: true,
        stop: search_stop(bug.is_some(), args.exhaustive),
        time_limit: args.max_seconds.map(Duration::from_secs),
    }))
}

fn check_membership(args: &CheckArgs) -> anyhow::Result<Report> {
    let bug = args
        .bug
        .as_deref()
        .map(|name| name.parse::<membership::Bug>())
        .transpose()?;
    let config = match (&args.config, bug) {
        (Some(name), _) => membership::Config::named(name)?,
        (None, Some(bug)) => bug.config(),
        (None, None) => membership::Config::small(),
    };
    Ok(membership::run_check(&membership::CheckOptions {
        config,
        bug,
        threads: args.threads,
        progress: true,
        stop: search_stop(bug.is_some(), args.exhaustive),
        time_limit: args.max_seconds.map(Duration::from_secs),
    }))
}

/// `sixfold check replica`: the read-replica model (spec/replica.md).
fn check_replica(args: &CheckArgs) -> anyhow::Result<Report> {
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
    Ok(run_replica_check(&ReplicaCheckOptions {
        config,
        bug,
        threads: args.threads,
        progress: true,
        stop: search_stop(bug.is_some(), args.exhaustive),
        time_limit: args.max_seconds.map(Duration::from_secs),
    }))
}

/// Exit 0 when every property holds, 1 when one fails; errors (unknown names) become exit 2.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    validate_model(&args.model)?;
    if args.threads == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    let report = match args.model.as_str() {
        "membership" => check_membership(&args)?,
        "replica" => check_replica(&args)?,
        _ => check_quorum(&args)?,
    };
    println!("{report}");
    let failed = report.failed();
    if !failed.is_empty() {
        println!("result: FAILED: {}", failed.join(", "));
        return Ok(ExitCode::from(1));
    }
    if !report.all_hold() {
        println!("result: no property failed, but the search stopped before the end");
        return Ok(ExitCode::from(1));
    }
    println!("result: every property holds");
    Ok(ExitCode::SUCCESS)
}

/// Serves the stateright Explorer until interrupted.
pub fn explore(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    validate_model(&args.model)?;
    if args.model == "replica" {
        anyhow::bail!("the Explorer serves the quorum and membership models only");
    }
    if args.model == "membership" {
        let config = membership::Config::named(&args.config)?;
        let bug = args
            .bug
            .as_deref()
            .map(|name| name.parse::<membership::Bug>())
            .transpose()?;
        listen_check(&args, config.name)?;
        membership::serve_explorer(config, bug, args.addr);
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::named(&args.config)?;
    let bug = parse_bug(args.bug.as_deref())?;
    listen_check(&args, config.name)?;
    serve_explorer(config, bug, args.addr);
    Ok(ExitCode::SUCCESS)
}

/// The Explorer panics on a bind failure; find it first and say so plainly.
fn listen_check(args: &ExploreArgs, config: &str) -> anyhow::Result<()> {
    drop(TcpListener::bind(args.addr).with_context(|| format!("cannot listen on {}", args.addr))?);
    println!(
        "Explorer for model {} (config {config}) at http://{}/",
        args.model, args.addr
    );
    Ok(())
}
