//! The segment state machine: records in any order, SCL, holes, gossip, truncation, epochs
//! (S3–S8, S13). No I/O: the storage engine persists what this accepts before acking (S1).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::event::ProtocolEvent;
use crate::record::RedoRecord;
use crate::types::{Epoch, Lsn, SegmentId, TruncationRange};

/// The most records one gossip answer carries (a limit on everything).
pub const GOSSIP_BATCH_RECORDS_MAX: usize = 256;

/// Protocol events a segment keeps for a tracing shell to poll.
pub const SEGMENT_EVENTS_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("{segment}: stale epoch {got}, segment has seen {seen} (S7)")]
    StaleEpoch {
        segment: SegmentId,
        got: Epoch,
        seen: Epoch,
    },
    #[error("{segment}: record {lsn} belongs to pg{pg}, not this segment's PG (S13)")]
    WrongPg {
        segment: SegmentId,
        lsn: Lsn,
        pg: u32,
    },
    #[error("{segment}: record {lsn} lies in truncated range ({begin}, {end}] (S8)")]
    Truncated {
        segment: SegmentId,
        lsn: Lsn,
        begin: Lsn,
        end: Lsn,
    },
    #[error("{segment}: record {lsn} is malformed (S13)")]
    Malformed { segment: SegmentId, lsn: Lsn },
    #[error("{segment}: record {lsn} claims backlink {prev} already taken by {holder} (S13)")]
    BacklinkConflict {
        segment: SegmentId,
        lsn: Lsn,
        prev: Lsn,
        holder: Lsn,
    },
    #[error("{segment}: record {lsn} differs from the stored record with the same LSN (S3)")]
    DuplicateMismatch { segment: SegmentId, lsn: Lsn },
    #[error(
        "{segment}: a truncation history of {ranges} ranges is over the limit of {} (S15)",
        crate::types::TRUNCATIONS_MAX
    )]
    TooManyTruncations { segment: SegmentId, ranges: usize },
}

/// Missing records of the PG: some LSN in `(after, before)` is not held (S5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hole {
    pub after: Lsn,
    pub before: Lsn,
}

/// What accepting a record did (S3, S7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// False for a duplicate: nothing to persist.
    pub inserted: bool,
    /// The epoch rose: persist it before acknowledging (S7).
    pub epoch_raised: bool,
    pub scl: Lsn,
}

/// What a segment tells a peer in gossip (S6).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GossipRequest {
    pub epoch: Epoch,
    pub scl: Lsn,
    pub holes: Vec<Hole>,
    /// The highest LSN the asker holds; records above it are all missing there.
    pub max_held: Lsn,
    pub truncations: Vec<TruncationRange>,
}

/// A segment's answer to recovery (X1).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentReport {
    pub segment: SegmentId,
    pub epoch: Epoch,
    pub scl: Lsn,
    pub vdl_hint: Lsn,
    /// The highest held LSN ≤ `vdl_hint` (0 if none).
    pub tip_at_hint: Lsn,
    /// LSNs held above `vdl_hint`, with their CPL flags and the epochs that wrote them.
    pub held: Vec<(Lsn, bool, Epoch)>,
    pub truncations: Vec<TruncationRange>,
}

impl SegmentReport {
    /// X1, V2: the report of a segment that holds nothing (never created on its node).
    pub fn empty(segment: SegmentId, epoch: Epoch) -> SegmentReport {
        SegmentReport {
            segment,
            epoch,
            scl: Lsn::ZERO,
            vdl_hint: Lsn::ZERO,
            tip_at_hint: Lsn::ZERO,
            held: Vec::new(),
            truncations: Vec::new(),
        }
    }
}

/// The protocol state of one segment.
#[derive(Clone, Debug)]
pub struct SegmentState {
    id: SegmentId,
    epoch: Epoch,
    scl: Lsn,
    vdl_hint: Lsn,
    records: BTreeMap<Lsn, RedoRecord>,
    /// `prev_lsn_pg` → the record that follows it (S4).
    next_by_prev: HashMap<Lsn, Lsn>,
    truncations: Vec<TruncationRange>,
    /// Records at or below this were garbage-collected; they were in the chain (S10).
    forgotten_through: Lsn,
    events: VecDeque<ProtocolEvent>,
}

impl SegmentState {
    pub fn new(id: SegmentId) -> SegmentState {
        SegmentState {
            id,
            epoch: Epoch(0),
            scl: Lsn::ZERO,
            vdl_hint: Lsn::ZERO,
            records: BTreeMap::new(),
            next_by_prev: HashMap::new(),
            truncations: Vec::new(),
            forgotten_through: Lsn::ZERO,
            events: VecDeque::new(),
        }
    }

    /// Rebuilds a segment from what its files held (S12): its epoch, truncation ranges,
    /// GC point, and verified records in any order.
    pub fn restore(
        id: SegmentId,
        epoch: Epoch,
        truncations: Vec<TruncationRange>,
        forgotten_through: Lsn,
        vdl_hint: Lsn,
        records: impl IntoIterator<Item = RedoRecord>,
    ) -> SegmentState {
        let mut segment = SegmentState::new(id);
        segment.epoch = epoch;
        for range in truncations {
            if !segment.truncations.contains(&range) {
                segment.truncations.push(range);
            }
        }
        segment.forgotten_through = forgotten_through;
        segment.scl = forgotten_through;
        segment.vdl_hint = vdl_hint;
        for record in records {
            // Records on disk passed their CRC; ones voided or conflicting are dropped, as
            // a live segment would have refused them.
            let _ = segment.insert(record);
        }
        segment.advance_scl();
        segment.events.clear();
        segment
    }

    pub fn id(&self) -> SegmentId {
        self.id
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn scl(&self) -> Lsn {
        self.scl
    }

    pub fn vdl_hint(&self) -> Lsn {
        self.vdl_hint
    }

    pub fn truncations(&self) -> &[TruncationRange] {
        &self.truncations
    }

    pub fn forgotten_through(&self) -> Lsn {
        self.forgotten_through
    }

    pub fn record(&self, lsn: Lsn) -> Option<&RedoRecord> {
        self.records.get(&lsn)
    }

    pub fn records(&self) -> impl Iterator<Item = &RedoRecord> {
        self.records.values()
    }

    pub fn poll_event(&mut self) -> Option<ProtocolEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: ProtocolEvent) {
        // A shell that does not trace never drains: keep only the newest events.
        if self.events.len() == SEGMENT_EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// S7, E2: a request of a lower epoch is refused; a higher one raises ours.
    fn check_epoch(&mut self, epoch: Epoch) -> Result<bool, SegmentError> {
        if epoch < self.epoch {
            return Err(SegmentError::StaleEpoch {
                segment: self.id,
                got: epoch,
                seen: self.epoch,
            });
        }
        if epoch > self.epoch {
            self.epoch = epoch;
            self.emit(ProtocolEvent::EpochChanged { epoch });
            return Ok(true);
        }
        Ok(false)
    }

    /// E1, E4: recovery raises the epoch; the old writer is refused from now on.
    pub fn raise_epoch(&mut self, epoch: Epoch) -> Result<bool, SegmentError> {
        self.check_epoch(epoch)
    }

    /// E1, E4: a recovery's RaiseEpoch: only an epoch above this segment's own is taken,
    /// so two recoveries never share an epoch (spec/wire.md RaiseEpoch); an equal one is
    /// refused as stale.
    pub fn begin_recovery(&mut self, epoch: Epoch) -> Result<(), SegmentError> {
        if epoch <= self.epoch {
            return Err(SegmentError::StaleEpoch {
                segment: self.id,
                got: epoch,
                seen: self.epoch,
            });
        }
        self.check_epoch(epoch).map(|_| ())
    }

    /// S3, S4, S7, S8, S13: accepts one record of a write batch of `epoch` carrying
    /// `vdl_hint` (W5).
    pub fn handle_write(
        &mut self,
        epoch: Epoch,
        vdl_hint: Lsn,
        record: RedoRecord,
    ) -> Result<Accepted, SegmentError> {
        self.validate(&record)?;
        let epoch_raised = self.check_epoch(epoch)?;
        self.vdl_hint = self.vdl_hint.max(vdl_hint);
        let inserted = self.insert(record)?;
        Ok(Accepted {
            inserted,
            epoch_raised,
            scl: self.scl,
        })
    }

    fn validate(&self, record: &RedoRecord) -> Result<(), SegmentError> {
        if record.pg != self.id.pg {
            return Err(SegmentError::WrongPg {
                segment: self.id,
                lsn: record.lsn,
                pg: record.pg.0,
            });
        }
        if !record.body.is_well_formed()
            || record.lsn == Lsn::ZERO
            || record.prev_lsn_pg >= record.lsn
            || record.prev_lsn_page >= record.lsn
        {
            return Err(SegmentError::Malformed {
                segment: self.id,
                lsn: record.lsn,
            });
        }
        if let Some(range) = self
            .truncations
            .iter()
            .find(|range| range.voids(record.lsn, record.epoch))
        {
            return Err(SegmentError::Truncated {
                segment: self.id,
                lsn: record.lsn,
                begin: range.lsn_begin,
                end: range.lsn_end,
            });
        }
        Ok(())
    }

    fn insert(&mut self, record: RedoRecord) -> Result<bool, SegmentError> {
        self.validate(&record)?;
        let lsn = record.lsn;
        if lsn <= self.forgotten_through {
            return Ok(false); // S3: already part of the chain and collected.
        }
        if let Some(held) = self.records.get(&lsn) {
            if *held != record {
                return Err(SegmentError::DuplicateMismatch {
                    segment: self.id,
                    lsn,
                });
            }
            return Ok(false);
        }
        if self.is_superseded(&record) {
            return Ok(false); // S14: a later epoch's chain skips over it: it is void.
        }
        self.drop_superseded_by(&record);
        if let Some(&holder) = self.next_by_prev.get(&record.prev_lsn_pg) {
            return Err(SegmentError::BacklinkConflict {
                segment: self.id,
                lsn,
                prev: record.prev_lsn_pg,
                holder,
            });
        }
        self.next_by_prev.insert(record.prev_lsn_pg, lsn);
        let epoch = record.epoch;
        self.records.insert(lsn, record);
        self.advance_scl();
        self.emit(ProtocolEvent::RecordStored {
            segment: self.id,
            lsn,
            scl: self.scl,
            epoch,
        });
        Ok(true)
    }

    /// S14: a held record of a higher epoch whose backlink skips over `record`'s LSN proves
    /// `record` void: a recovery this segment missed truncated it.
    fn is_superseded(&self, record: &RedoRecord) -> bool {
        self.records
            .range(record.lsn.next()..)
            .next()
            .is_some_and(|(_, next)| next.epoch > record.epoch && next.prev_lsn_pg < record.lsn)
    }

    /// S14: `record` links to `prev_lsn_pg`, so held records of lower epochs between that
    /// backlink and it were truncated by a recovery this segment missed: drop them.
    fn drop_superseded_by(&mut self, record: &RedoRecord) {
        let void: Vec<Lsn> = self
            .records
            .range(record.prev_lsn_pg.next()..record.lsn)
            .filter(|(_, held)| held.epoch < record.epoch)
            .map(|(&lsn, _)| lsn)
            .collect();
        if void.is_empty() {
            return;
        }
        for lsn in &void {
            let held = self.records.remove(lsn).expect("listed above");
            self.next_by_prev.remove(&held.prev_lsn_pg);
        }
        if self.scl > record.prev_lsn_pg {
            // The chain ran through void records: it is complete only to the backlink.
            self.scl = record.prev_lsn_pg.max(self.forgotten_through);
        }
        self.emit(ProtocolEvent::Truncated {
            range: TruncationRange {
                lsn_begin: record.prev_lsn_pg,
                lsn_end: Lsn(record.lsn.0 - 1),
                epoch: record.epoch,
            },
        });
    }

    /// S4: follow the PG backlinks from the current SCL.
    fn advance_scl(&mut self) {
        let before = self.scl;
        while let Some(&next) = self.next_by_prev.get(&self.scl) {
            self.scl = next;
        }
        debug_assert!(self.scl >= before, "S4: SCL never moves back here");
    }

    /// S5: missing ranges of the PG above SCL.
    pub fn holes(&self) -> Vec<Hole> {
        let mut holes = Vec::new();
        let mut below = self.scl;
        for (&lsn, record) in self.records.range(self.scl.next()..) {
            let connected =
                record.prev_lsn_pg == self.scl || self.records.contains_key(&record.prev_lsn_pg);
            if !connected {
                holes.push(Hole {
                    after: below,
                    before: lsn,
                });
            }
            below = lsn;
        }
        holes
    }

    /// S6: what this segment asks its peers for.
    pub fn gossip_request(&self) -> GossipRequest {
        GossipRequest {
            epoch: self.epoch,
            scl: self.scl,
            holes: self.holes(),
            max_held: self
                .records
                .last_key_value()
                .map_or(self.scl, |(&lsn, _)| lsn.max(self.scl)),
            truncations: self.truncations.clone(),
        }
    }

    /// S6: the records a peer that sent `request` is missing, at most
    /// `GOSSIP_BATCH_RECORDS_MAX`. A peer of a lower epoch gets nothing (it may lack a
    /// truncation); it learns the epoch from our own request.
    pub fn answer_gossip(&self, request: &GossipRequest) -> Vec<RedoRecord> {
        if request.epoch < self.epoch {
            return Vec::new();
        }
        let wanted = |lsn: Lsn| {
            lsn > request.max_held
                || request
                    .holes
                    .iter()
                    .any(|hole| hole.after < lsn && lsn < hole.before)
        };
        self.records
            .range(request.scl.next()..)
            .filter(|&(&lsn, _)| wanted(lsn))
            .take(GOSSIP_BATCH_RECORDS_MAX)
            .map(|(_, record)| record.clone())
            .collect()
    }

    /// S6, S7: merge a peer's gossip answer. The peer's epoch and truncations come first so a
    /// voided record is never taken back in.
    pub fn handle_gossip(
        &mut self,
        peer_epoch: Epoch,
        peer_truncations: &[TruncationRange],
        records: Vec<RedoRecord>,
    ) -> Result<Vec<Lsn>, SegmentError> {
        if peer_epoch < self.epoch {
            return Err(SegmentError::StaleEpoch {
                segment: self.id,
                got: peer_epoch,
                seen: self.epoch,
            });
        }
        self.check_history_size(peer_truncations)?;
        // S15: a peer's newer truncation history replaces ours; an older one says nothing
        // we lack.
        self.adopt_history(peer_truncations);
        self.check_epoch(peer_epoch)?;
        let mut inserted = Vec::new();
        for record in records {
            let lsn = record.lsn;
            if self.insert(record)? {
                inserted.push(lsn);
            }
        }
        Ok(inserted)
    }

    /// S8, S15: adopt the truncation history a recovery left in force (its newest range is
    /// that recovery's own). Returns the LSNs dropped.
    pub fn handle_truncate(
        &mut self,
        history: &[TruncationRange],
    ) -> Result<Vec<Lsn>, SegmentError> {
        self.check_history_size(history)?;
        self.check_epoch(crate::types::history_epoch(history))?;
        Ok(self.adopt_history(history))
    }

    /// S15: one limit on a history's length everywhere; a longer one is refused whole.
    fn check_history_size(&self, history: &[TruncationRange]) -> Result<(), SegmentError> {
        if history.len() > crate::types::TRUNCATIONS_MAX {
            return Err(SegmentError::TooManyTruncations {
                segment: self.id,
                ranges: history.len(),
            });
        }
        Ok(())
    }

    /// S15: the epoch of the history this segment holds.
    pub fn history_epoch(&self) -> Epoch {
        crate::types::history_epoch(&self.truncations)
    }

    /// S15: a history newer than ours replaces it whole: its ranges void what they cover
    /// (S8), and a range we hold that it lacks is dropped, since the newer recovery did
    /// not see it and decided the LSNs it covered itself (records it voided may be taken
    /// again). An older or equal history changes nothing. Returns the LSNs dropped.
    pub fn adopt_history(&mut self, history: &[TruncationRange]) -> Vec<Lsn> {
        if crate::types::history_epoch(history) <= self.history_epoch() {
            return Vec::new();
        }
        self.truncations.retain(|range| history.contains(range));
        let mut voided = Vec::new();
        for &range in history {
            voided.extend(self.void_range(range));
        }
        voided
    }

    /// S8: void `(begin, end]` without an epoch check. Idempotent; returns the LSNs dropped.
    fn void_range(&mut self, range: TruncationRange) -> Vec<Lsn> {
        if self.truncations.contains(&range) {
            return Vec::new();
        }
        self.truncations.push(range);
        let voided: Vec<Lsn> = self
            .records
            .range(range.lsn_begin.next()..=range.lsn_end)
            .filter(|(_, record)| range.voids(record.lsn, record.epoch))
            .map(|(&lsn, _)| lsn)
            .collect();
        for lsn in &voided {
            let record = self.records.remove(lsn).expect("listed above");
            self.next_by_prev.remove(&record.prev_lsn_pg);
        }
        if self.scl > range.lsn_begin {
            self.scl = self
                .records
                .range(..=range.lsn_begin)
                .next_back()
                .map_or(self.forgotten_through, |(&lsn, _)| lsn)
                .max(self.forgotten_through);
            // Re-walk from the highest chain point ≤ begin: everything below it was chained.
            self.advance_scl();
        }
        self.emit(ProtocolEvent::Truncated { range });
        voided
    }

    /// X1: this segment's answer to a recovering writer.
    pub fn report(&self) -> SegmentReport {
        SegmentReport {
            segment: self.id,
            epoch: self.epoch,
            scl: self.scl,
            vdl_hint: self.vdl_hint,
            tip_at_hint: self
                .records
                .range(..=self.vdl_hint)
                .next_back()
                .map_or(self.forgotten_through.min(self.vdl_hint), |(&lsn, _)| lsn),
            held: self
                .records
                .range(self.vdl_hint.next()..)
                .map(|(&lsn, record)| (lsn, record.cpl, record.epoch))
                .collect(),
            truncations: self.truncations.clone(),
        }
    }

    /// S10: drop records at or below `lsn` that are in the complete chain (the engine has
    /// materialized them). Returns how many were dropped.
    pub fn forget_through(&mut self, lsn: Lsn) -> usize {
        let through = lsn.min(self.scl);
        let dropped: Vec<Lsn> = self.records.range(..=through).map(|(&l, _)| l).collect();
        for l in &dropped {
            let record = self.records.remove(l).expect("listed above");
            self.next_by_prev.remove(&record.prev_lsn_pg);
        }
        if let Some(&last) = dropped.last() {
            // Only PG records are named as GC points, so `tip_at_hint` stays a real LSN.
            self.forgotten_through = last;
        }
        dropped.len()
    }
}
