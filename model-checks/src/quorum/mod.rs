//! The quorum model: writes at 4/6, reads at 3/6, commits at VDL, recovery with epochs and
//! truncation (spec/protocol.md Q, L, W, C, S, R, X, E).

pub mod config;
pub mod model;
pub mod segment;
pub mod state;
pub mod symmetry;
pub mod writer;

pub use config::{Bug, Config, UnknownName};
pub use model::{
    Action, COMMIT_ACKED, DURABILITY, FENCING, MTR_ATOMICITY, NO_STALE_READ, QUIESCENCE_REACHED,
    QUIESCENT_REPAIR_ENDS, QUIESCENT_SEGMENTS_REACH_VCL, QuorumModel, READ_AFTER_RECOVERY,
    READ_AT_POINT, RECOVERY_AFTER_DISK_LOSS, RECOVERY_COMPLETES, REPAIR_ENDS, REPAIR_RESTORES,
    SERVES_ONLY_VOLUME, STALE_WRITER_READS, VDL_RULES, property_rules,
};
