//! A storage node's staging of redo to the backup store (B8, B10, B11): a thread of its
//! own copies each PG's durable, VDL-covered records into redo objects (B6).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use sixfold_core::codec::record_frame_bytes;
use sixfold_core::segment::GOSSIP_BATCH_RECORDS_MAX;
use sixfold_core::{Epoch, GossipRequest, Lsn, PgId, RedoRecord, SegmentId};
use sixfold_storage::NodeStore;

use super::format::{RedoObjectName, encode_redo_object};
use super::{BackupTarget, chained_bound};

/// B10: the replica whose node stages a PG (a lease-based takeover is B21, planned).
pub const STAGER_REPLICA: u8 = 0;
/// B11: bytes of record frames in one redo object, at most (one object at least holds
/// one record).
pub const OBJECT_BYTES_MAX: usize = 1 << 20;
/// B11: pause between two staging rounds, in milliseconds.
pub const STAGE_INTERVAL_MS: u64 = 50;
/// Objects one PG stages per round, at most, so one busy PG does not starve the others.
const OBJECTS_PER_ROUND_MAX: usize = 16;

/// What the stager knows of one PG.
#[derive(Clone, Debug)]
struct PgStaging {
    /// Every record of the PG at or below it is in the store.
    bound: Lsn,
    /// The LSN of the last record staged, if known (unknown after a resume).
    last_record: Option<Lsn>,
    /// Why staging of this PG stopped, if it did (logged once).
    stopped: Option<String>,
}

/// Records read from a segment for one object.
struct Batch {
    records: Vec<RedoRecord>,
    /// The object's `to`: every record of the PG in `(bound, to]` is in `records`.
    to: Lsn,
}

/// B10, B11: the staging state of one storage node.
pub struct Stager {
    target: BackupTarget,
    pgs: BTreeMap<PgId, PgStaging>,
}

fn lock(store: &Mutex<NodeStore>) -> MutexGuard<'_, NodeStore> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stager {
    pub fn new(target: BackupTarget) -> Stager {
        Stager {
            target,
            pgs: BTreeMap::new(),
        }
    }

    /// B8: each staged PG's staged bound.
    pub fn staged_bounds(&self) -> BTreeMap<PgId, Lsn> {
        self.pgs.iter().map(|(&pg, s)| (pg, s.bound)).collect()
    }

    /// B11: one round over the PGs this node stages (its hosted segments of replica
    /// [`STAGER_REPLICA`]); returns the records staged. The store's lock is held only to
    /// copy at most [`OBJECT_BYTES_MAX`] of records, never during an upload.
    /// `writer_vdl` is the epoch and VDL of the writer's latest heartbeat (B8).
    pub fn step(&mut self, store: &Mutex<NodeStore>, writer_vdl: Option<(Epoch, Lsn)>) -> usize {
        let segments: Vec<SegmentId> = lock(store)
            .hosted()
            .into_iter()
            .filter(|s| s.replica == STAGER_REPLICA)
            .collect();
        let mut staged = 0;
        for segment in segments {
            if !self.pgs.contains_key(&segment.pg) {
                match self.resume(segment.pg) {
                    Ok(state) => {
                        lock(store).note_staged(segment, state.bound);
                        self.pgs.insert(segment.pg, state);
                    }
                    Err(error) => {
                        tracing::warn!(pg = segment.pg.0, %error, "B10: cannot read the staged bound; retrying");
                        continue;
                    }
                }
            }
            for _ in 0..OBJECTS_PER_ROUND_MAX {
                match self.stage_one(store, segment, writer_vdl) {
                    0 => break,
                    count => staged += count,
                }
            }
        }
        staged
    }

    /// B10: a PG's staged bound, from the store (the highest chained `to`). A gap in the
    /// chain (a missing object) is staged again from below it, if the segment still
    /// holds those records.
    fn resume(&self, pg: PgId) -> Result<PgStaging, super::BackupError> {
        let objects = self.target.redo_objects(pg)?;
        let (bound, gap) = chained_bound(&objects);
        if let Some((from, to)) = gap {
            tracing::warn!(
                pg = pg.0,
                from = from.0,
                to = to.0,
                "B16: a redo object is missing from the store; staging it again"
            );
        }
        Ok(PgStaging {
            bound,
            last_record: (bound == Lsn::ZERO).then_some(Lsn::ZERO),
            stopped: None,
        })
    }

    /// B6, B8: stages one object of `segment`'s PG; returns its records (0: nothing to do,
    /// or the upload failed and is retried next round).
    fn stage_one(
        &mut self,
        store: &Mutex<NodeStore>,
        segment: SegmentId,
        writer_vdl: Option<(Epoch, Lsn)>,
    ) -> usize {
        let pg = segment.pg;
        let state = self.pgs[&pg].clone();
        if state.stopped.is_some() {
            return 0;
        }
        let batch = match read_batch(&lock(store), segment, state.bound, writer_vdl) {
            Ok(Some(batch)) => batch,
            Ok(None) => return 0,
            Err(reason) => return self.stop(pg, reason),
        };
        if let Err(reason) = check_chain(&batch.records, state.bound, state.last_record) {
            return self.stop(pg, reason);
        }
        let name = RedoObjectName {
            pg,
            from: state.bound,
            to: batch.to,
        };
        let bytes = encode_redo_object(&name, &batch.records);
        if let Err(error) = self.target.put(&name.name(), bytes) {
            tracing::warn!(pg = pg.0, %error, "B16: upload failed; staged again next round");
            return 0;
        }
        let entry = self.pgs.get_mut(&pg).expect("known PG");
        entry.bound = batch.to;
        entry.last_record = batch.records.last().map(|r| r.lsn);
        lock(store).note_staged(segment, batch.to);
        batch.records.len()
    }

    fn stop(&mut self, pg: PgId, reason: String) -> usize {
        tracing::error!(pg = pg.0, %reason, "staging of this PG stopped");
        if let Some(state) = self.pgs.get_mut(&pg) {
            state.stopped = Some(reason);
        }
        0
    }
}

/// B8: the highest VDL the node knows that no recovery can take back: its segment's VDL
/// hint (W5), or the VDL of the latest writer heartbeat if the node holds that writer's
/// recovery's truncation history (S15) — before that, records the recovery voided may
/// still sit below that VDL on this node.
fn vdl_known(store: &NodeStore, segment_hint: Lsn, writer_vdl: Option<(Epoch, Lsn)>) -> Lsn {
    match writer_vdl {
        Some((epoch, vdl)) if epoch <= store.history_epoch() => segment_hint.max(vdl),
        _ => segment_hint,
    }
}

/// B8, B11: the segment's records above `bound` up to `min(SCL, VDL)`, at most
/// [`OBJECT_BYTES_MAX`]; `None` when there are none.
fn read_batch(
    store: &NodeStore,
    segment: SegmentId,
    bound: Lsn,
    writer_vdl: Option<(Epoch, Lsn)>,
) -> Result<Option<Batch>, String> {
    let engine = store.engine();
    let status = engine.segment_status(segment).map_err(|e| e.to_string())?;
    let limit = status
        .scl
        .min(vdl_known(store, status.vdl_hint, writer_vdl));
    if limit <= bound {
        return Ok(None);
    }
    if status.forgotten_through > bound {
        return Err(format!(
            "records ({}, {}] were collected before they were staged (B11); \
             continuous backup must be on from the volume's start",
            bound.0, status.forgotten_through.0
        ));
    }
    let request = GossipRequest {
        epoch: status.epoch,
        scl: bound,
        holes: Vec::new(),
        max_held: bound,
        truncations: Vec::new(),
    };
    let held = engine
        .answer_gossip(segment, &request)
        .map_err(|e| e.to_string())?;
    let batch_full = held.len() >= GOSSIP_BATCH_RECORDS_MAX;
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut cut = batch_full;
    for record in held {
        if record.lsn > limit {
            cut = false;
            break;
        }
        let frame = record_frame_bytes(&record);
        if bytes + frame > OBJECT_BYTES_MAX && !records.is_empty() {
            cut = true;
            break;
        }
        bytes += frame;
        records.push(record);
    }
    let Some(last) = records.last().map(|r| r.lsn) else {
        return Ok(None);
    };
    Ok(Some(Batch {
        records,
        to: if cut { last } else { limit },
    }))
}

/// B8: the records follow the PG's chain (`prev_lsn_pg`) from the last staged record (or,
/// after a resume, from at or below the bound).
fn check_chain(records: &[RedoRecord], bound: Lsn, last: Option<Lsn>) -> Result<(), String> {
    let mut previous = last;
    for record in records {
        let linked = match previous {
            Some(lsn) => record.prev_lsn_pg == lsn,
            None => record.prev_lsn_pg <= bound,
        };
        if !linked {
            return Err(format!(
                "record {} links to {}, not to the PG's previous record (B8)",
                record.lsn.0, record.prev_lsn_pg.0
            ));
        }
        previous = Some(record.lsn);
    }
    Ok(())
}
