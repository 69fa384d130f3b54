//! The writer state machine: LSN allocation with LAL back-pressure, routing to a PG's six
//! segments, acks → PGCL → VCL → VDL, commit release, read points (W1–W7, C1–C6, R1–R4).
//!
//! No I/O: the shell sends the records [`WriterState::submit_mtr`] returns to
//! [`WriterState::segments_of`] and feeds acks back through [`WriterState::handle_ack`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::event::ProtocolEvent;
use crate::quorum::QuorumConfig;
use crate::record::{Mtr, RedoRecord};
use crate::types::{
    Epoch, Geometry, Lsn, PageId, PgId, SEGMENTS_PER_PG, SegmentId, TruncationRange,
};

/// The LSN allocation limit of the SIGMOD 2017 paper, in LSNs (W1).
pub const LAL_DEFAULT: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(
        "LAL back-pressure: LSN {needed} would exceed {vdl} (VDL, or the truncation end) + LAL {lal} (W1)"
    )]
    Backpressure { needed: Lsn, vdl: Lsn, lal: u64 },
    #[error("writer fenced by epoch {by}: no further writes (E3)")]
    Fenced { by: Epoch },
    #[error("an MTR needs at least one change (L2)")]
    EmptyMtr,
    /// W8: an MTR of more records than LAL could never be allocated, since VDL moves
    /// only at its CPL (C3): refused rather than left waiting forever.
    #[error("an MTR of {records} records exceeds LAL {lal}: it could never be allocated (W8)")]
    MtrLargerThanLal { records: u64, lal: u64 },
    #[error("change to {page} is malformed (L4)")]
    Malformed { page: PageId },
    #[error("the LSN of {page} is unknown: read it before writing it after recovery (X7)")]
    PageLsnUnknown { page: PageId },
}

/// Static parameters of the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    pub geometry: Geometry,
    pub quorum: QuorumConfig,
    /// W1: LSNs allowed above VDL.
    pub lal: u64,
}

/// Where a writer starts: from recovery (X7), or from an empty volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterStart {
    pub epoch: Epoch,
    pub vdl: Lsn,
    /// The first LSN to allocate (X7: VDL + LAL + 1 after recovery).
    pub next_lsn: Lsn,
    /// X7: the last LSN ≤ VDL of each PG.
    pub last_lsn_by_pg: BTreeMap<PgId, Lsn>,
    /// False after recovery: page LSNs must be learned from reads before writes (X7).
    pub page_lsns_known: bool,
}

impl WriterStart {
    /// A brand-new volume: nothing written, every page LSN known to be 0.
    pub fn empty(epoch: Epoch) -> WriterStart {
        WriterStart {
            epoch,
            vdl: Lsn::ZERO,
            next_lsn: Lsn(1),
            last_lsn_by_pg: BTreeMap::new(),
            page_lsns_known: true,
        }
    }
}

/// The result of submitting an MTR: the records to send, and the commit LSN (its CPL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmittedMtr {
    pub records: Vec<RedoRecord>,
    pub commit_lsn: Lsn,
}

/// Per-PG bookkeeping.
#[derive(Clone, Debug, Default)]
struct PgTrack {
    scl_by_replica: [Lsn; SEGMENTS_PER_PG],
    pgcl: Lsn,
    /// Allocated LSNs of this PG above its PGCL.
    outstanding: BTreeSet<Lsn>,
    last_lsn: Lsn,
    /// Allocated LSNs of this PG from the newest one ≤ PGMRPL on, to answer "the PG's last
    /// LSN at or below a read point" (R1, R3).
    history: BTreeSet<Lsn>,
}

#[derive(Clone, Debug)]
pub struct WriterState {
    config: WriterConfig,
    epoch: Epoch,
    fenced_by: Option<Epoch>,
    next_lsn: Lsn,
    vcl: Lsn,
    vdl: Lsn,
    pgs: BTreeMap<PgId, PgTrack>,
    /// Every allocated LSN not yet ≤ the PGCL of its PG, with its PG (C2).
    outstanding: BTreeMap<Lsn, PgId>,
    /// CPLs above VDL (C3).
    cpls: BTreeSet<Lsn>,
    /// Commits not yet acknowledged (C5).
    waiting_commits: BTreeSet<Lsn>,
    page_lsn: HashMap<PageId, Lsn>,
    page_lsns_known: bool,
    /// Records not yet ≤ VDL, kept for re-sending (W7).
    in_flight: BTreeMap<Lsn, RedoRecord>,
    read_points: BTreeMap<Lsn, usize>,
    truncation: Option<TruncationRange>,
    /// W1: after recovery the truncated range counts as allocated, so LAL is measured
    /// from its end until VDL passes it.
    lal_floor: Lsn,
    events: VecDeque<ProtocolEvent>,
    /// The watermarks at the last invariant check: none may fall within an epoch.
    checked: Watermarks,
    /// Check invariants after every input even in release builds (the simulator sets it).
    strict: bool,
}

/// What must never fall: the epoch, and within it VCL, VDL and every PGCL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Watermarks {
    epoch: Epoch,
    vcl: Lsn,
    vdl: Lsn,
    pgcl: BTreeMap<PgId, Lsn>,
}

impl WriterState {
    /// X6: a recovered writer starts from the plan alone; it replays no redo.
    pub fn new(config: WriterConfig, start: WriterStart) -> WriterState {
        assert!(
            start.next_lsn > start.vdl,
            "X7: allocation starts above VDL"
        );
        let pgs = start
            .last_lsn_by_pg
            .iter()
            .map(|(&pg, &last_lsn)| {
                let track = PgTrack {
                    scl_by_replica: [Lsn::ZERO; SEGMENTS_PER_PG],
                    pgcl: last_lsn,
                    outstanding: BTreeSet::new(),
                    last_lsn,
                    history: BTreeSet::from([last_lsn]),
                };
                (pg, track)
            })
            .collect();
        let mut events = VecDeque::new();
        events.push_back(ProtocolEvent::EpochChanged { epoch: start.epoch });
        let truncation = (start.next_lsn.0 > start.vdl.0 + 1).then(|| TruncationRange {
            lsn_begin: start.vdl,
            lsn_end: Lsn(start.next_lsn.0 - 1),
            epoch: start.epoch,
        });
        WriterState {
            config,
            epoch: start.epoch,
            fenced_by: None,
            next_lsn: start.next_lsn,
            vcl: Lsn(start.next_lsn.0 - 1),
            vdl: start.vdl,
            pgs,
            outstanding: BTreeMap::new(),
            cpls: BTreeSet::new(),
            waiting_commits: BTreeSet::new(),
            page_lsn: HashMap::new(),
            page_lsns_known: start.page_lsns_known,
            in_flight: BTreeMap::new(),
            read_points: BTreeMap::new(),
            truncation,
            lal_floor: Lsn(start.next_lsn.0 - 1),
            events,
            checked: Watermarks::default(),
            strict: false,
        }
    }

    /// Checks the invariants after every input in release builds too (debug builds always
    /// do): the simulator runs this way, so every seed checks them.
    pub fn set_strict_invariants(&mut self, strict: bool) {
        self.strict = strict;
    }

    fn after_input(&mut self) {
        if cfg!(debug_assertions) || self.strict {
            self.assert_invariants();
        }
    }

    /// The writer's invariants (C1–C5, W1, R4), each in O(log n) so it can run after every
    /// input: VDL ≤ VCL < the next LSN; CPLs, waiting commits and in-flight records above
    /// VDL; outstanding LSNs above VCL and above their PG's PGCL; read points at or below
    /// VDL; allocation within LAL; and, within an epoch, VCL, VDL and every PGCL never fall.
    /// A violation is a bug in this machine: it panics with the rule it breaks.
    pub fn assert_invariants(&mut self) {
        assert!(
            self.vdl <= self.vcl,
            "C3: VDL {} > VCL {}",
            self.vdl,
            self.vcl
        );
        assert!(
            self.vcl < self.next_lsn,
            "C2: VCL {} not below the next LSN {}",
            self.vcl,
            self.next_lsn
        );
        let above_vdl = |first: Option<&Lsn>| first.is_none_or(|&lsn| lsn > self.vdl);
        assert!(
            above_vdl(self.cpls.first()),
            "C3: a CPL at or below VDL {} is still pending",
            self.vdl
        );
        assert!(
            above_vdl(self.waiting_commits.first()),
            "C5: a commit at or below VDL {} still waits",
            self.vdl
        );
        assert!(
            above_vdl(self.in_flight.keys().next()),
            "W7: a record at or below VDL {} is still kept",
            self.vdl
        );
        assert!(
            self.outstanding
                .keys()
                .next()
                .is_none_or(|&lsn| lsn > self.vcl),
            "C2: an outstanding LSN at or below VCL {}",
            self.vcl
        );
        assert!(
            self.read_points
                .keys()
                .next_back()
                .is_none_or(|&lsn| lsn <= self.vdl),
            "R2: a read point above VDL {}",
            self.vdl
        );
        let base = self.vdl.max(self.lal_floor);
        assert!(
            self.last_allocated().0 <= base.0 + self.config.lal,
            "W1: LSN {} allocated beyond {base} + LAL {}",
            self.last_allocated(),
            self.config.lal
        );
        let mut outstanding = 0;
        for (pg, track) in &self.pgs {
            assert!(
                track.pgcl <= track.last_lsn,
                "C1: PGCL of {pg} above its last LSN"
            );
            assert!(
                track
                    .outstanding
                    .first()
                    .is_none_or(|&lsn| lsn > track.pgcl),
                "C1: {pg} has an outstanding LSN at or below its PGCL {}",
                track.pgcl
            );
            outstanding += track.outstanding.len();
        }
        assert_eq!(
            outstanding,
            self.outstanding.len(),
            "C2: outstanding LSNs by PG and in all differ"
        );
        let now = Watermarks {
            epoch: self.epoch,
            vcl: self.vcl,
            vdl: self.vdl,
            pgcl: self
                .pgs
                .iter()
                .map(|(&pg, track)| (pg, track.pgcl))
                .collect(),
        };
        let before = std::mem::replace(&mut self.checked, now);
        assert!(
            before.epoch <= self.epoch,
            "E1: the epoch fell from {}",
            before.epoch
        );
        if before.epoch == self.epoch {
            assert!(
                before.vcl <= self.vcl,
                "C2: VCL fell from {} to {}",
                before.vcl,
                self.vcl
            );
            assert!(
                before.vdl <= self.vdl,
                "C3: VDL fell from {} to {}",
                before.vdl,
                self.vdl
            );
            for (pg, pgcl) in &before.pgcl {
                assert!(
                    self.pgcl(*pg) >= *pgcl,
                    "C1: PGCL of {pg} fell from {pgcl} to {}",
                    self.pgcl(*pg)
                );
            }
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn vcl(&self) -> Lsn {
        self.vcl
    }

    pub fn vdl(&self) -> Lsn {
        self.vdl
    }

    pub fn config(&self) -> &WriterConfig {
        &self.config
    }

    pub fn fenced_by(&self) -> Option<Epoch> {
        self.fenced_by
    }

    /// The truncation range this epoch's recovery wrote; sent with every batch so a segment
    /// that missed it applies it first (S8).
    pub fn truncation(&self) -> Option<TruncationRange> {
        self.truncation
    }

    /// For the simulator's `recovery-without-truncation` mutant only: a writer whose
    /// recovery wrote no range sends none with its batches and reads (X4 broken on purpose).
    #[doc(hidden)]
    pub fn forget_truncation_for_mutant(&mut self) {
        self.truncation = None;
    }

    /// The highest LSN allocated so far.
    pub fn last_allocated(&self) -> Lsn {
        Lsn(self.next_lsn.0 - 1)
    }

    pub fn pgcl(&self, pg: PgId) -> Lsn {
        self.pgs.get(&pg).map_or(Lsn::ZERO, |track| track.pgcl)
    }

    pub fn pgs(&self) -> impl Iterator<Item = PgId> + '_ {
        self.pgs.keys().copied()
    }

    /// W4: the six segments a record of `pg` goes to.
    pub fn segments_of(pg: PgId) -> [SegmentId; SEGMENTS_PER_PG] {
        std::array::from_fn(|replica| SegmentId {
            pg,
            replica: replica as u8,
        })
    }

    pub fn scl_of(&self, segment: SegmentId) -> Lsn {
        self.pgs.get(&segment.pg).map_or(Lsn::ZERO, |track| {
            track.scl_by_replica[segment.replica as usize]
        })
    }

    pub fn poll_event(&mut self) -> Option<ProtocolEvent> {
        self.events.pop_front()
    }

    /// X7: a page's LSN learned from a read, needed for its backlink after recovery.
    pub fn note_page_lsn(&mut self, page: PageId, lsn: Lsn) {
        self.page_lsn.entry(page).or_insert(lsn);
    }

    /// The LSN of the last record of `page` this writer knows.
    pub fn page_lsn(&self, page: PageId) -> Option<Lsn> {
        match self.page_lsn.get(&page) {
            Some(&lsn) => Some(lsn),
            None if self.page_lsns_known => Some(Lsn::ZERO),
            None => None,
        }
    }

    /// W1–W5, W8, L1–L3: allocate contiguous LSNs for an MTR of at most LAL records, build its records with backlinks,
    /// and register its commit (C5). The records are kept for re-sending (W7).
    pub fn submit_mtr(&mut self, mtr: Mtr) -> Result<SubmittedMtr, WriteError> {
        if let Some(by) = self.fenced_by {
            return Err(WriteError::Fenced { by });
        }
        if mtr.is_empty() {
            return Err(WriteError::EmptyMtr);
        }
        if mtr.changes.len() as u64 > self.config.lal {
            return Err(WriteError::MtrLargerThanLal {
                records: mtr.changes.len() as u64,
                lal: self.config.lal,
            });
        }
        for (page, body) in &mtr.changes {
            if !body.is_well_formed() {
                return Err(WriteError::Malformed { page: *page });
            }
            if self.page_lsn(*page).is_none() {
                return Err(WriteError::PageLsnUnknown { page: *page });
            }
        }
        let last = Lsn(self.next_lsn.0 + mtr.changes.len() as u64 - 1);
        let base = self.vdl.max(self.lal_floor);
        if last.0 > base.0 + self.config.lal {
            return Err(WriteError::Backpressure {
                needed: last,
                vdl: base,
                lal: self.config.lal,
            });
        }
        let count = mtr.changes.len();
        let mut records = Vec::with_capacity(count);
        for (index, (page, body)) in mtr.changes.into_iter().enumerate() {
            records.push(self.allocate(page, body, index + 1 == count));
        }
        let commit_lsn = last;
        debug_assert_eq!(records.last().map(|r| r.lsn), Some(commit_lsn));
        self.cpls.insert(commit_lsn);
        self.waiting_commits.insert(commit_lsn);
        self.after_input();
        Ok(SubmittedMtr {
            records,
            commit_lsn,
        })
    }

    fn allocate(&mut self, page: PageId, body: crate::record::RedoBody, cpl: bool) -> RedoRecord {
        let lsn = self.next_lsn;
        self.next_lsn = lsn.next();
        let pg = self.config.geometry.pg_of(page);
        let track = self.pgs.entry(pg).or_default();
        let prev_lsn_page = self.page_lsn.insert(page, lsn).unwrap_or(Lsn::ZERO);
        let record = RedoRecord {
            lsn,
            pg,
            prev_lsn_pg: track.last_lsn,
            prev_lsn_page,
            epoch: self.epoch,
            page,
            cpl,
            body,
        };
        track.last_lsn = lsn;
        track.history.insert(lsn);
        track.outstanding.insert(lsn);
        self.outstanding.insert(lsn, pg);
        self.in_flight.insert(lsn, record.clone());
        self.events.push_back(ProtocolEvent::RecordSent {
            lsn,
            pg,
            cpl,
            epoch: self.epoch,
        });
        record
    }

    /// W6, C1–C5: an ack from `segment` with its SCL, in `epoch`.
    pub fn handle_ack(&mut self, segment: SegmentId, scl: Lsn, epoch: Epoch) {
        if epoch > self.epoch {
            self.fence(epoch);
            return;
        }
        if epoch < self.epoch || self.fenced_by.is_some() {
            return; // W6: another epoch's ack says nothing about ours.
        }
        let Some(track) = self.pgs.get_mut(&segment.pg) else {
            return;
        };
        let Some(slot) = track.scl_by_replica.get_mut(segment.replica as usize) else {
            return;
        };
        if scl <= *slot {
            return;
        }
        *slot = scl;
        self.events.push_back(ProtocolEvent::AckTaken {
            segment,
            scl,
            epoch,
        });
        self.advance_pgcl(segment.pg);
        self.after_input();
    }

    /// C1: PGCL is the Vw-th highest SCL of the PG, capped at what was allocated.
    fn advance_pgcl(&mut self, pg: PgId) {
        let write_quorum = self.config.quorum.write_quorum();
        let track = self.pgs.get_mut(&pg).expect("PG tracked");
        let mut scls = track.scl_by_replica;
        scls.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_scl = scls[write_quorum - 1].min(track.last_lsn);
        if quorum_scl <= track.pgcl {
            return;
        }
        track.pgcl = quorum_scl;
        let durable: Vec<Lsn> = track.outstanding.range(..=quorum_scl).copied().collect();
        for lsn in durable {
            track.outstanding.remove(&lsn);
            self.outstanding.remove(&lsn);
        }
        self.events.push_back(ProtocolEvent::PgclAdvanced {
            pg,
            pgcl: quorum_scl,
        });
        self.advance_vcl();
    }

    /// C2, C3: VCL is just below the lowest outstanding LSN; VDL the highest CPL ≤ VCL.
    fn advance_vcl(&mut self) {
        let vcl = match self.outstanding.first_key_value() {
            Some((&lowest, _)) => Lsn(lowest.0 - 1),
            None => self.last_allocated(),
        };
        if vcl <= self.vcl {
            return;
        }
        self.vcl = vcl;
        self.events.push_back(ProtocolEvent::VclAdvanced { vcl });
        let Some(&vdl) = self.cpls.range(..=vcl).next_back() else {
            return;
        };
        debug_assert!(vdl > self.vdl, "C3: CPLs above VDL only");
        self.vdl = vdl;
        let below: Vec<Lsn> = self.cpls.range(..=vdl).copied().collect();
        for cpl in below {
            self.cpls.remove(&cpl);
        }
        self.in_flight = self.in_flight.split_off(&vdl.next());
        if self.read_points.is_empty() {
            self.prune_history();
        }
        self.events.push_back(ProtocolEvent::VdlAdvanced { vdl });
        // C5: release waiters in LSN order, never above VDL.
        let released: Vec<Lsn> = self.waiting_commits.range(..=vdl).copied().collect();
        for lsn in released {
            self.waiting_commits.remove(&lsn);
            self.events
                .push_back(ProtocolEvent::CommitAcknowledged { lsn });
        }
        debug_assert!(self.vdl <= self.vcl, "C3: VDL ≤ VCL");
    }

    /// E3, C6: a segment refused us for a stale epoch: stop, and fail every waiter.
    pub fn fence(&mut self, by: Epoch) {
        if self.fenced_by.is_some() {
            return;
        }
        self.fenced_by = Some(by);
        self.events.push_back(ProtocolEvent::Fenced { by });
        for lsn in std::mem::take(&mut self.waiting_commits) {
            self.events.push_back(ProtocolEvent::CommitFailed { lsn });
        }
        self.after_input();
    }

    /// W7: records `segment` has not confirmed, for re-sending.
    pub fn records_to_resend(&self, segment: SegmentId) -> Vec<&RedoRecord> {
        let scl = self.scl_of(segment);
        self.in_flight
            .range(scl.next()..)
            .map(|(_, record)| record)
            .filter(|record| record.pg == segment.pg)
            .collect()
    }

    /// R1, R3: the PG's last LSN at or below `read_point`: what a segment's SCL must reach
    /// to serve a read there.
    pub fn pg_lsn_at(&self, pg: PgId, read_point: Lsn) -> Lsn {
        self.pgs.get(&pg).map_or(Lsn::ZERO, |track| {
            track
                .history
                .range(..=read_point)
                .next_back()
                .copied()
                .unwrap_or(Lsn::ZERO)
        })
    }

    /// R1: segments whose SCL covers `read_point`, in replica order; the shell picks by
    /// latency and re-issues to the next on a slow or failed read (R5).
    pub fn read_candidates(&self, pg: PgId, read_point: Lsn) -> Vec<SegmentId> {
        let needed = self.pg_lsn_at(pg, read_point);
        Self::segments_of(pg)
            .into_iter()
            .filter(|&segment| needed == Lsn::ZERO || self.scl_of(segment) >= needed)
            .collect()
    }

    /// R2, R4: start a read at the current VDL and register its read point.
    pub fn begin_read(&mut self) -> Lsn {
        *self.read_points.entry(self.vdl).or_default() += 1;
        self.after_input();
        self.vdl
    }

    /// R4: a read at `read_point` is over.
    pub fn end_read(&mut self, read_point: Lsn) {
        if let Some(count) = self.read_points.get_mut(&read_point) {
            *count -= 1;
            if *count == 0 {
                self.read_points.remove(&read_point);
            }
        }
        self.prune_history();
        self.after_input();
    }

    /// Keeps each PG's history from its newest LSN ≤ PGMRPL on: no read needs older ones.
    fn prune_history(&mut self) {
        let floor = self.pgmrpl();
        for track in self.pgs.values_mut() {
            if let Some(&keep) = track.history.range(..=floor).next_back() {
                track.history = track.history.split_off(&keep);
            }
        }
    }

    /// R4: the lowest read point in use, or VDL when none.
    pub fn pgmrpl(&self) -> Lsn {
        self.read_points
            .first_key_value()
            .map_or(self.vdl, |(&lsn, _)| lsn)
    }

    /// Commits not yet acknowledged.
    pub fn waiting_commits(&self) -> usize {
        self.waiting_commits.len()
    }
}

#[cfg(test)]
mod invariant_tests {
    //! `assert_invariants` must catch a broken machine, not only pass a sound one.
    use super::*;
    use crate::record::{Edit, RedoBody};

    fn writer_with_commits(commits: u32) -> WriterState {
        let mut writer = WriterState::new(
            WriterConfig {
                geometry: Geometry { pg_pages: 16 },
                quorum: QuorumConfig::AURORA,
                lal: 1_000,
            },
            WriterStart::empty(Epoch(1)),
        );
        for page_no in 0..commits {
            let mut mtr = Mtr::new();
            mtr.push(
                PageId::new(1, page_no),
                RedoBody::Edits(vec![Edit {
                    offset: 0,
                    bytes: vec![1],
                }]),
            );
            let submitted = writer.submit_mtr(mtr).expect("room under LAL");
            for segment in WriterState::segments_of(PgId(0)) {
                writer.handle_ack(segment, submitted.commit_lsn, Epoch(1));
            }
        }
        writer
    }

    #[test]
    fn a_sound_writer_passes() {
        writer_with_commits(3).assert_invariants();
    }

    #[test]
    #[should_panic(expected = "C3: VDL")]
    fn vdl_above_vcl_is_caught() {
        let mut writer = writer_with_commits(2);
        writer.vdl = writer.vcl.next();
        writer.assert_invariants();
    }

    #[test]
    #[should_panic(expected = "C2: VCL fell")]
    fn a_falling_vcl_is_caught() {
        let mut writer = writer_with_commits(3);
        writer.vcl = Lsn(1);
        writer.vdl = Lsn(1);
        writer.assert_invariants();
    }

    #[test]
    #[should_panic(expected = "C5: a commit at or below VDL")]
    fn a_commit_left_waiting_below_vdl_is_caught() {
        let mut writer = writer_with_commits(2);
        writer.waiting_commits.insert(Lsn(1));
        writer.assert_invariants();
    }
}
