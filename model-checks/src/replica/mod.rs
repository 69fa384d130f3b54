//! The replica model: read replicas following the writer's redo stream over a lossy,
//! reordering channel, caching a few pages, reading misses from storage at their read
//! point while storage collects below PGMRPL, and a replica promoted on failover
//! (spec/replica.md, P1–P9).

pub mod check;
pub mod config;
pub mod model;
pub mod state;

pub use check::{ReplicaCheckOptions, run_replica_check};
pub use config::{Bug, Config};
pub use model::{
    Action, CACHE_AT_READ_POINT, FAILOVER_EXPOSES_RECOVERED, LATE_READ_CAUGHT_UP, NO_READ_REFUSED,
    READ_POINT_IS_VDL, READ_POINT_MONOTONIC, REDO_APPLIED, ReplicaModel, STORAGE_COLLECTED,
    WARM_PROMOTION, WHOLE_MTRS, WRITER_NEVER_WAITS, property_rules,
};
