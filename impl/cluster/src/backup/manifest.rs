//! The writer's manifest points (B9): where `--to-time` looks, and what tells a restore
//! that a PG idle since long ago is complete at a point (B14).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sixfold_core::{Lsn, PgId};

use super::format::ManifestPoint;
use super::{BackupError, BackupTarget};
use crate::config::ClusterConfig;

/// B9: how often the writer records a manifest point while VDL moves, in milliseconds
/// (the rule asks for one at least every second).
pub const MANIFEST_INTERVAL_MS: u64 = 200;

/// Milliseconds since the Unix epoch, now.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// B9: the writer's side of the manifest: one point each time it is asked and VDL moved.
pub struct ManifestStager {
    target: BackupTarget,
    config: ClusterConfig,
    last_vdl: Option<Lsn>,
}

impl ManifestStager {
    pub fn new(target: BackupTarget, config: ClusterConfig) -> ManifestStager {
        ManifestStager {
            target,
            config,
            last_vdl: None,
        }
    }

    /// B9: records the point `(vdl, time_ms, pg_last)` unless VDL has not moved since the
    /// last one or the store has a point at that VDL already. `time_ms` must be read before `vdl`: every commit acknowledged at or
    /// before `time_ms` is then at or below `vdl`.
    pub fn record(
        &mut self,
        time_ms: u64,
        vdl: Lsn,
        pg_last: BTreeMap<PgId, Lsn>,
    ) -> Result<bool, BackupError> {
        if self.last_vdl == Some(vdl) {
            return Ok(false);
        }
        let point = ManifestPoint {
            vdl,
            time_ms,
            pg_pages: self.config.pg_pages,
            volume_id: self.config.volume_id.to_string(),
            pg_last,
            nodes: self
                .config
                .nodes
                .iter()
                .map(|n| (n.id.0, n.az.clone(), n.addr.to_string()))
                .collect(),
        };
        // B9: the first point at a VDL stays: its time is when VDL first got there (a
        // writer opening after recovery at the same VDL must not make it later).
        self.target.put_new(&point.name(), point.encode())?;
        self.last_vdl = Some(vdl);
        Ok(true)
    }
}
