//! Running the replica model through stateright's checker, into the crate's `Report`.

use std::time::Duration;

use super::config::{Bug, Config};
use super::model::{ReplicaModel, property_rules};
use crate::check::{Report, SearchOptions, Stop, Subject, search_model};

/// What to check.
#[derive(Clone, Debug)]
pub struct ReplicaCheckOptions {
    pub config: Config,
    pub bug: Option<Bug>,
    /// Checker threads (at least 1).
    pub threads: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub stop: Stop,
    /// Stop after this long (the report then says the search is incomplete).
    pub time_limit: Option<Duration>,
}

/// Checks the replica model exhaustively, breadth-first (no depth bound), so that a
/// counterexample is a shortest one.
pub fn run_replica_check(options: &ReplicaCheckOptions) -> Report {
    let model = ReplicaModel::new(options.config.clone(), options.bug);
    let describe = |state: &_, action: &_| model.describe(state, action);
    let subject = Subject {
        model_name: "replica",
        config: options.config.name,
        bug: options.bug.map(Bug::name),
        symmetry: None,
        describe: &describe,
        rules: property_rules,
        breadth_first: true,
    };
    let search = SearchOptions {
        threads: options.threads,
        progress: options.progress,
        stop: options.stop.clone(),
        time_limit: options.time_limit,
    };
    search_model(&model, &search, subject)
}
