//! `sixfold check` and `sixfold explore` (owned by the model-checking work).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The model to check.
    pub model: String,
}

#[derive(clap::Args)]
pub struct ExploreArgs {
    /// The model to explore.
    pub model: String,
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("model {:?}: model checking is not built yet", args.model)
}

pub fn explore(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("model {:?}: the explorer is not built yet", args.model)
}
