//! `sixfold`: the one binary. It parses arguments and calls the libraries; nothing else.

mod model_cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sixfold", version, about = "Aurora-style quorum storage, formally checked")]
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => model_cmds::check(args),
        Command::Explore(args) => model_cmds::explore(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
