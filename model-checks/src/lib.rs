//! Exhaustive stateright models of the sixfold protocol (spec/protocol.md), with mutants.
//!
//! The `quorum` model is written from the spec's rules, not from the implementation: one
//! writer with a volume epoch, 1–2 PGs of six segments in three AZs, an unordered network
//! that loses and duplicates, writer crash/failover and recovery, segment crashes, gossip and
//! reads. `run_check` explores it exhaustively and returns a `Report`.
//!
//! The `membership` model replaces a PG's segments (the 2018 paper, §4): dual-quorum states, membership
//! epochs, hydration, aborts and failures during a change; `membership::run_check` runs it.

pub mod check;
pub mod membership;
pub mod quorum;
pub mod replica;

pub use check::{
    CheckOptions, MODEL_NAMES, Report, SearchOptions, Stop, Verdict, run_check, serve_explorer,
    validate_model,
};
pub use quorum::{Bug, Config, QuorumModel, UnknownName};
