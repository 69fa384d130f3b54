//! The membership model: replacing a PG's segments without consensus, through dual-quorum
//! states and membership epochs (the 2018 paper, §4; spec/protocol.md M1–M6).

pub mod config;
pub mod model;
pub mod state;
pub mod symmetry;

use crate::check::{Report, SearchOptions, Stop, Subject, search_model};
pub use config::{Bug, Config};
pub use model::{
    ACKED_DURING_CHANGE, Action, CHANGE_ABORTED, CHANGE_FINALIZED, CHANGES_COMPOSE,
    EPOCH_MONOTONIC, FINALIZE_ONLY_WHOLE, MembershipModel, NO_ACKED_WRITE_LOST,
    READ_QUORUM_SEES_ACKED, property_rules,
};

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub config: Config,
    pub bug: Option<Bug>,
    /// Checker threads (at least 1).
    pub threads: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub stop: Stop,
    /// Stop after this long (the report then says the search is incomplete).
    pub time_limit: Option<std::time::Duration>,
}

/// Checks the membership model exhaustively (DFS, no depth bound).
pub fn run_check(options: &CheckOptions) -> Report {
    let model = MembershipModel::new(options.config.clone(), options.bug);
    let describe = |state: &_, action: &_| model.describe(state, action);
    let subject = Subject {
        model_name: "membership",
        config: options.config.name,
        bug: options.bug.map(|bug| bug.name()),
        symmetry: Some(symmetry::representative),
        describe: &describe,
        rules: property_rules,
        breadth_first: false,
    };
    let search = SearchOptions {
        threads: options.threads,
        progress: options.progress,
        stop: options.stop.clone(),
        time_limit: options.time_limit,
    };
    search_model(&model, &search, subject)
}

/// Serves the stateright Explorer for the model; blocks while it serves.
pub fn serve_explorer(config: Config, bug: Option<Bug>, address: std::net::SocketAddr) {
    let model = MembershipModel::new(config, bug);
    let _checker = stateright::Model::checker(model).serve(address);
}
