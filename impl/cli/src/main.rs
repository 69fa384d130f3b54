//! `sixfold`: the one binary. It parses arguments and calls the libraries; nothing else.

mod bench_cmds;
mod cluster_cmds;
mod cluster_init;
mod conformance_cmds;
mod db_transfer_cmds;
mod demo;
mod model_cmds;
mod remote_cmds;
mod restore_cmds;
mod serve_cmds;
mod shell;
mod sim_cmds;
mod slt_cmds;
mod sql_cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sixfold",
    version,
    about = "Aurora-style quorum storage, formally checked"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a stateright model exhaustively and print a report (exit 1 if a property fails).
    Check(model_cmds::CheckArgs),
    /// Serve the stateright Explorer for a model in a browser.
    Explore(model_cmds::ExploreArgs),
    /// Run an embedded cluster: six storage nodes in one process on loopback.
    Cluster(cluster_cmds::ClusterArgs),
    /// Run one storage node of a cluster config.
    StorageNode(cluster_cmds::StorageNodeArgs),
    /// Print the state of every PG and segment.
    Status(cluster_cmds::StatusArgs),
    /// Act as the writer and run a page-level workload, then verify it.
    Load(cluster_cmds::LoadArgs),
    /// Run the deterministic simulator over seeds, with faults.
    Sim(sim_cmds::SimArgs),
    /// Benchmark sixfold beside stock SQLite and the disk's limit.
    Bench(bench_cmds::BenchArgs),
    /// Run the conformance vectors against a target program.
    Conformance(conformance_cmds::ConformanceArgs),
    /// Answer conformance requests (JSON lines on stdin/stdout, spec/conformance.md) with
    /// sixfold's own implementation: the reference target for `sixfold conformance --target`.
    ConformanceTarget(conformance_cmds::ConformanceTargetArgs),
    /// Run SQL on a database of the volume (interactive on a terminal, else piped).
    Sql(sql_cmds::SqlArgs),
    /// List, create, drop, export or import the databases of the volume.
    Db(sql_cmds::DbArgs),
    /// The main demo: SQLite on an embedded cluster through AZ loss and a writer crash.
    Demo(demo::DemoArgs),
    /// Run sqllogictest files on the volume, optionally with faults between records.
    Slt(slt_cmds::SltArgs),
    /// Be the volume's one writer and serve SQL to many clients over HTTP/JSON.
    Serve(serve_cmds::ServeArgs),
    /// Build a new volume from a continuous backup, at a VDL, a time or the latest point.
    Restore(restore_cmds::RestoreArgs),
}

/// Colour in log lines only on a terminal, and never when `NO_COLOR` is set (to anything
/// but the empty string, as no-color.org asks): a log redirected to a file stays plain text.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(sql_cmds::sqlite3_style_arguments(
        std::env::args_os().collect(),
    ));
    // The simulator injects faults on purpose: the storage engine's warnings about them,
    // and the panics it catches per seed, are its results, not noise for the terminal.
    let quiet = matches!(cli.command, Command::Sim(_));
    if quiet {
        std::panic::set_hook(Box::new(|_| {}));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if quiet { "off" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colour())
        .init();
    let result = match cli.command {
        Command::Check(args) => model_cmds::check(args),
        Command::Explore(args) => model_cmds::explore(args),
        Command::Cluster(args) => cluster_cmds::cluster(args),
        Command::StorageNode(args) => cluster_cmds::storage_node(args),
        Command::Status(args) => cluster_cmds::status(args),
        Command::Load(args) => cluster_cmds::load(args),
        Command::Sim(args) => sim_cmds::sim(args),
        Command::Bench(args) => bench_cmds::bench(args),
        Command::Conformance(args) => conformance_cmds::conformance(args),
        Command::ConformanceTarget(args) => conformance_cmds::conformance_target(args),
        Command::Sql(args) => sql_cmds::sql(args),
        Command::Db(args) => sql_cmds::db(args),
        Command::Demo(args) => demo::demo(args),
        Command::Slt(args) => slt_cmds::slt(args),
        Command::Serve(args) => serve_cmds::serve(args),
        Command::Restore(args) => restore_cmds::restore_cmd(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
