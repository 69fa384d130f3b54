//! sixfold-storage: the storage node engine. Many segments (of different PGs, holding pages
//! of different databases) live under one data directory; the engine receives records,
//! makes them durable before acknowledging them (group commit), finds holes and gossips,
//! materializes page versions in the background through a page cache, garbage-collects
//! below PGMRPL, scrubs CRCs, and rebuilds itself from its files after a crash.
//!
//! The engine is synchronous and owns no threads, sockets or clocks: the networked server
//! and the deterministic simulator both drive [`StorageNode`]. The disk is behind the
//! [`Disk`] trait: [`StdDisk`] on `std::fs`, [`FaultyDisk`] for fault injection.
//! Design, on-disk layout and numbers: docs/storage-node.md.

pub mod disk;
pub mod error;
pub mod faulty;
mod log;
pub mod meta;
mod node;
pub mod node_store;
mod pages;
mod segment;

pub use disk::{Disk, DiskFile, FileSync, OpenMode, STD_DISK_BYTES_WRITTEN, StdDisk};
pub use error::StorageError;
pub use faulty::{CrashMode, DiskOp, DiskStats, FaultKind, FaultyDisk, OpFilter};
pub use node::{
    Ack, BackgroundWork, CacheKey, CommitJob, FlushOutcome, PG_PAGES_DEFAULT, ScrubWork,
    SegmentStatus, StorageConfig, StorageNode, Ticket,
};
pub use node_store::{
    CommitOutcome, CommitStats, EpochAnswer, GossipAnswer, HostedSegment, NODE_META_FILE,
    NodeStore, NodeStoreError, NodeStoreMutant, SegmentPlacement,
};
pub use pages::COMPACTION_BYTES_WRITTEN;
pub use segment::Damage;
