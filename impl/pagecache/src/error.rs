//! Errors of the page cache, one enum per operation that can refuse.

/// A cache configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("shard count {shards} is outside 1..={max}")]
    ShardCount { shards: usize, max: usize },
    #[error(
        "capacity of {capacity_bytes} bytes gives a shard less than one byte ({shards} shards)"
    )]
    CapacityBelowShardCount { capacity_bytes: u64, shards: usize },
}

/// Why a redo edit was not applied; the page is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The page is not resident (never loaded, evicted, removed, or its load failed).
    #[error("page is not cached")]
    NotCached,
    /// S9: redo is applied in LSN order, so a record at or below the page's LSN is a
    /// duplicate or out of order; applying it would corrupt the page.
    #[error("redo at LSN {new_lsn} is not after the page's LSN {current_lsn}")]
    LsnNotAfter { current_lsn: u64, new_lsn: u64 },
}

/// Why `remove` refused; the entry stays cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// Somebody holds a pin: removing the entry would let a second copy of the page be
    /// loaded beside the pinned one and edits to either would be lost.
    #[error("page is pinned")]
    Pinned,
    /// A load is in flight; its waiters are promised the page.
    #[error("page is being loaded")]
    Loading,
}
