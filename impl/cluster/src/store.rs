//! Opening a storage node's store from the cluster config: the node's protocol state
//! ([`NodeStore`], in `sixfold-storage`, shared with the simulator) on the real disk, after
//! the folder's identity (`identity`, I1) has been checked against the config, with every
//! hosted segment's placement, before anything is served or written.

use std::path::PathBuf;
use std::sync::Arc;

use sixfold_core::{NodeId, PgId, SEGMENTS_PER_PG};
pub use sixfold_storage::node_store::{SCRUB_EVERY_STEPS, TRUNCATIONS_MAX};
pub use sixfold_storage::{EpochAnswer, GossipAnswer, NodeStore, NodeStoreError};
use sixfold_storage::{SegmentPlacement, StdDisk, StorageConfig};

use crate::config::ClusterConfig;
use crate::identity::{self, IdentityRecord, RecordError};
use crate::wire::SegmentStatus;

/// Why a node's store did not open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("disk: {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node {0} is not in the config")]
    UnknownNode(NodeId),
    #[error(transparent)]
    Node(#[from] NodeStoreError),
    #[error(transparent)]
    Identity(#[from] RecordError),
}

/// What a node does with a data folder that has data but no identity record (I4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unrecorded {
    /// Refuse to start (the default: the config may have been edited already).
    #[default]
    Refuse,
    /// Record the config's identity: the operator checked the config (`--adopt-identity`).
    Adopt,
}

impl SegmentPlacement for ClusterConfig {
    fn placement(&self, pg: PgId) -> [NodeId; SEGMENTS_PER_PG] {
        ClusterConfig::placement(self, pg)
    }
}

/// Opens (or creates) `node`'s folder; the engine rebuilds every segment (S12).
pub fn open(config: &ClusterConfig, node: NodeId) -> Result<NodeStore, StoreError> {
    open_with(config, node, Unrecorded::Refuse)
}

/// I1, I4: opens `node`'s folder, first checking its identity record against the config
/// (before the engine reads anything with a geometry that may be wrong); a new folder
/// records the config's identity. Then every hosted segment must be placed here, and only
/// then does the store act on what it found (S17, S19).
pub fn open_with(
    config: &ClusterConfig,
    node: NodeId,
    unrecorded: Unrecorded,
) -> Result<NodeStore, StoreError> {
    let spec = config.node(node).ok_or(StoreError::UnknownNode(node))?;
    let dir = spec.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Disk {
        path: dir.clone(),
        source,
    })?;
    let recorded = identity::read_record(&dir)?;
    if let Some(recorded) = &recorded {
        identity::check_record(&dir, recorded, config, node)?;
    }
    let storage_config = StorageConfig {
        geometry: config.geometry(),
        ..StorageConfig::default()
    };
    let placement: Arc<dyn SegmentPlacement> = Arc::new(config.clone());
    let mut store = NodeStore::open(Arc::new(StdDisk), &dir, node, placement, storage_config)?;
    if recorded.is_none() {
        if store.has_data()? && unrecorded == Unrecorded::Refuse {
            return Err(RecordError::Unrecorded { dir }.into());
        }
        identity::write_record(&dir, &IdentityRecord::of(config, node))?;
        tracing::info!(node = node.0, volume = %config.volume_id, pg_pages = config.pg_pages, "identity recorded (I1)");
    }
    identity::check_segments_placed(&dir, config, node, &store.hosted())?;
    store.recover_segments()?;
    Ok(store)
}

/// The node's segments as the wire's `StatusReply` carries them.
pub fn segment_statuses(store: &NodeStore) -> Vec<SegmentStatus> {
    store
        .status()
        .into_iter()
        .map(|hosted| SegmentStatus {
            segment: hosted.status.segment,
            epoch: hosted.status.epoch,
            scl: hosted.status.scl,
            vdl_hint: hosted.status.vdl_hint,
            max_held: hosted.max_held,
            records: hosted.status.records as u64,
            problem: hosted.problem,
            repairing: hosted.repairing,
        })
        .collect()
}
