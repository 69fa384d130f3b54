//! sixfold-pagecache: a sharded page cache bounded by bytes, for the storage node now and
//! the writer later. Design notes and the loom models: `docs/pagecache.md`.
//!
//! - **Entries** are keyed by page (`K`) and carry the LSN their bytes are at and a dirty
//!   flag. A [`PinGuard`] keeps an entry resident; [`PinGuard::read`] gives the bytes and
//!   the one LSN they are at, held against concurrent redo.
//! - **Loading** is single flight: threads missing the same page wait for one loader.
//! - **Eviction** is S3-FIFO per shard, vetoed by pins and by the caller's predicate
//!   (storage node: clean pages only; writer: LSN ≤ VDL, R6). When everything in a shard
//!   is pinned or refused, the shard goes over capacity rather than block or fail:
//!   blocking could deadlock against the pin holder, failing would push the problem to
//!   every caller, and both conditions are transient. [`PageCache::trim`] and the next
//!   install evict the excess once it is allowed; [`CacheStats::bytes_used`] shows it.
//! - **Dirty tracking**: redo marks a page dirty; the flusher copies it and marks it clean
//!   only if no redo landed since its copy.
//!
//! ```
//! use sixfold_pagecache::{EntryMeta, Page, PageCache};
//!
//! // A storage node's cache: 1 MiB over 4 shards, evicting clean pages only.
//! let cache = PageCache::new(1 << 20, 4, |meta: &EntryMeta| !meta.dirty).unwrap();
//! let read_page = || Ok::<_, std::io::Error>(Page::clean(3, vec![0; 4096].into()));
//! let page = cache.get_or_load(&7u64, read_page).unwrap();
//! assert_eq!(page.read().lsn(), 3);
//! drop(page);
//!
//! cache.apply(&7, 4, |bytes| bytes[0] = 1).unwrap(); // redo: now dirty at LSN 4
//! let snapshot = cache.snapshot_for_flush(&7).unwrap();
//! // ... the flusher writes snapshot.bytes ...
//! assert!(cache.mark_clean(&7, snapshot.lsn));
//! ```
//!
//! Synchronisation primitives come from the crate-local `sync` module, loom's under
//! `cfg(loom)`; `cfg(loom_mutant)` compiles the [`mutant`] switches that drop eviction's
//! guards one at a time for `tests/loom.rs` to catch.

mod cache;
mod entry;
mod error;
mod hash;
#[cfg(loom_mutant)]
pub mod mutant;
#[cfg(not(loom_mutant))]
mod mutant;
mod shard;
mod striped;
mod sync;

pub use cache::{CacheStats, DirtyPage, PageCache, SHARDS_MAX};
pub use entry::{
    ENTRY_OVERHEAD_BYTES, EntryMeta, FlushSnapshot, PAGE_BYTES_MAX, Page, PageRead, PinGuard,
};
pub use error::{ApplyError, ConfigError, RemoveError};
