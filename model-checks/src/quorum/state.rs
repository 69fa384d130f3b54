//! The state of the quorum model: segments, writers, the network and the ghost history.
//!
//! Everything is small fixed-width integers so that a state hashes and clones fast: the
//! checker visits tens of millions of them. LSNs are `u8` and sets of LSNs are `u16` bit
//! masks (bit `l` is LSN `l`; bit 0, "nothing", is never set).

/// A model LSN (L1). 0 means "nothing".
pub type Lsn = u8;
/// A set of LSNs as a bit mask.
pub type LsnSet = u16;
/// A volume epoch (E1). Epoch 0 is never used, so 0 can mean "none".
pub type Epoch = u8;
/// The epoch of a fresh volume's first writer, the one writer no recovery opened (E1).
pub const FIRST_EPOCH: Epoch = 1;
/// Index of a segment in the state: `pg * SEGMENTS_PER_PG + replica`.
pub type SegmentIndex = u8;

/// Q1: six segments per PG.
pub const SEGMENTS_PER_PG: usize = 6;
/// Q1: a write is durable at four of six.
pub const WRITE_QUORUM: usize = 4;
/// Q1: a read quorum is three of six.
pub const READ_QUORUM: usize = 3;
/// Q3: two segments of a PG in each of three AZs.
pub const AZ_COUNT: usize = 3;
/// The model holds at most two PGs.
pub const PG_COUNT_MAX: usize = 2;
/// The highest LSN an `LsnSet` can hold.
pub const LSN_CAP_MAX: Lsn = 15;
/// Record table size: index `l` is LSN `l`.
pub const RECORD_SLOTS: usize = LSN_CAP_MAX as usize + 1;

pub const fn bit(lsn: Lsn) -> LsnSet {
    1 << lsn
}

pub fn contains(set: LsnSet, lsn: Lsn) -> bool {
    lsn != 0 && set & bit(lsn) != 0
}

/// LSNs in `(lsn_begin, lsn_end]`, clipped to `LSN_CAP_MAX`.
pub fn range(lsn_begin: Lsn, lsn_end: Lsn) -> LsnSet {
    let mut set = 0;
    let mut lsn = lsn_begin.saturating_add(1);
    while lsn <= lsn_end.min(LSN_CAP_MAX) {
        set |= bit(lsn);
        lsn += 1;
    }
    set
}

/// LSNs in the set, ascending.
pub fn members(set: LsnSet) -> impl Iterator<Item = Lsn> {
    (1..=LSN_CAP_MAX).filter(move |lsn| contains(set, *lsn))
}

pub fn format_set(set: LsnSet) -> String {
    let lsns: Vec<String> = members(set).map(|lsn| lsn.to_string()).collect();
    format!("{{{}}}", lsns.join(","))
}

pub fn pg_of_segment(segment: SegmentIndex) -> usize {
    segment as usize / SEGMENTS_PER_PG
}

/// Q3: replicas 0,1 are in AZ 0, 2,3 in AZ 1, 4,5 in AZ 2.
pub fn az_of_segment(segment: SegmentIndex) -> usize {
    (segment as usize % SEGMENTS_PER_PG) / 2
}

pub fn segment_name(segment: SegmentIndex) -> String {
    let replica = segment as usize % SEGMENTS_PER_PG;
    let letter = if replica.is_multiple_of(2) { 'a' } else { 'b' };
    format!(
        "pg{}/az{}{}",
        pg_of_segment(segment),
        az_of_segment(segment),
        letter
    )
}

/// A redo record, as the writer made it. Content is abstract: record `l` writes the value `l`
/// to the one page of its PG, so a page's value is the LSN of its newest record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// Epoch of the writer that allocated it; 0 = LSN never allocated.
    pub epoch: Epoch,
    /// W2: the record's PG (and page: one page per PG).
    pub pg: u8,
    /// L3: `prev_lsn_pg` (also `prev_lsn_page`: the PG has one page).
    pub prev_lsn_pg: Lsn,
    /// First LSN of its MTR (L2: the MTR's LSNs are contiguous).
    pub mtr_first: Lsn,
    /// L2: the last record of its MTR carries the CPL flag.
    pub cpl: bool,
}

/// One replica of a PG on a storage node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    /// Durable: the highest epoch seen (S7, E5).
    pub epoch: Epoch,
    /// Durable: records on disk (never a truncated one, S8).
    pub held: LsnSet,
    /// Durable: the highest VDL hint seen with a durable write (W5).
    pub hint: Lsn,
    /// Durable: epoch of the truncation history the segment holds: the epoch of the recovery
    /// that left it in force (S15; 0 = none).
    pub truncation_epoch: Epoch,
    /// Durable: the truncation history, as the LSNs its ranges void (S8, S15). A newer
    /// history replaces it whole.
    pub truncated: LsnSet,
    /// Derived from `held` along `prev_lsn_pg` (S4); rebuilt from disk after a crash (S12).
    pub scl: Lsn,
    /// Volatile: records received and not yet fsynced (S1, S2).
    pub pending: LsnSet,
    /// Volatile: the highest VDL hint of the pending writes.
    pub pending_hint: Lsn,
    /// Ghost: the segment accepted a write or gossip of an epoch below its own (S7 broken).
    pub accepted_stale: bool,
    /// Volatile: the epoch of the writer this segment's node promised a read lease to and
    /// whose promise still runs (R7; 0 = none). Time is abstract: a promise ends by an
    /// explicit step, which also ends the writer's count of it (R11: the writer's hold ends
    /// first, so both ending together loses no behaviour that matters).
    pub promise: Epoch,
    /// Durable (node metadata): the segment lost its disk and may have lost records it
    /// acknowledged (S19). It takes writes and gossip, answers gossip, and reports to no
    /// recovery (S20, X11).
    pub repairing: bool,
    /// Durable (node metadata): the node's epoch when the segment lost its disk. Acks the
    /// segment gave before the loss are of this epoch or lower, and a writer may still count
    /// them; they stop mattering once a recovery of a higher epoch has completed without
    /// the segment (X11).
    pub lost_epoch: Epoch,
    /// Durable: the segment has learned that a writer above `lost_epoch` opened (a write,
    /// gossiped record or heartbeat of that writer): that writer's recovery completed.
    pub newer_writer_seen: bool,
    /// Volatile: the peers (replica numbers in the PG, a bit each) whose complete gossip
    /// answers, merged while the segment was repairing, each left its SCL at or above the
    /// peer's; three distinct non-repairing ones end the repair (S21).
    pub repair_peers: u8,
    /// Ghost: the records the segment held when it lost its disk that were then at a write
    /// quorum of its PG; it must hold them again (unless void) when its repair ends (S21).
    pub lost_at_quorum: LsnSet,
}

/// Recovery of a writer in progress (X1–X5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Recovery {
    /// Segments that answered the recovery read (X1), as a bit per segment index.
    pub reported: u16,
    /// Highest VDL hint reported (X3's F).
    pub hint_max: Lsn,
    /// Union of the LSNs the reporters hold above their hint (X1).
    pub held_above_hint: LsnSet,
    /// The newest truncation history reported: its recovery epoch and LSNs (X1, X9).
    pub truncation_epoch: Epoch,
    pub truncated: LsnSet,
    /// Set once a read quorum of every PG answered (X2).
    pub outcome: Option<RecoveryOutcome>,
    /// Segments repaired and made to hold the new epoch and truncation set (X5, E1).
    pub written: u16,
}

/// What recovery decided (X3, X4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecoveryOutcome {
    pub vcl: Lsn,
    pub vdl: Lsn,
    /// End of the truncation range; the new epoch allocates above it (X7).
    pub lsn_end: Lsn,
    /// Every LSN void from now on: the reported set plus `(VDL, VDL + LAL]`.
    pub truncated: LsnSet,
    /// Records above the hint, up to VDL, that repair sends (X5, Q5).
    pub repair: LsnSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// X1: a starting writer recovers before it writes.
    Recovering(Recovery),
    /// Writing: allocates LSNs, tracks acks, acknowledges commits.
    Active,
}

/// The one writer (or a partitioned, still running older writer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Writer {
    pub epoch: Epoch,
    pub phase: Phase,
    /// The next LSN to allocate (L1, W1).
    pub lsn_next: Lsn,
    pub vcl: Lsn,
    pub vdl: Lsn,
    /// Every LSN ≤ `lsn_base` predates this epoch (VDL of recovery + LAL, X7).
    pub lsn_base: Lsn,
    /// VDL this writer's recovery reached (0 for the first writer).
    pub vdl_recovered: Lsn,
    /// Truncated LSNs this writer's recovery made void.
    pub truncated: LsnSet,
    /// W3: last LSN allocated per PG.
    pub lsn_last_by_pg: [Lsn; PG_COUNT_MAX],
    /// W6: highest SCL acked by each segment in this epoch.
    pub scl_by_segment: [Lsn; SEGMENTS_PER_PG * PG_COUNT_MAX],
    /// C5: commit LSNs waiting for VDL.
    pub commits_waiting: LsnSet,
    /// R8: segments whose lease grant this writer still counts, as a bit per segment.
    pub leased: u16,
}

/// Messages. The network is a set that never forgets: a message can be delivered any number
/// of times (duplication, W7 re-sends) or never (loss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message {
    /// W4, W5: a record to one segment of its PG, with the writer's VDL. Its epoch is the
    /// epoch of the record's writer.
    Write {
        segment: SegmentIndex,
        lsn: Lsn,
        vdl_hint: Lsn,
    },
    /// W6: a segment's SCL and the epoch it holds.
    Ack {
        segment: SegmentIndex,
        scl: Lsn,
        epoch: Epoch,
    },
    /// E3: a write of this epoch was rejected as stale.
    Rejected { epoch: Epoch },
}

/// History the system does not have, kept to state the properties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ghost {
    /// Commit LSNs acknowledged to the client.
    pub acked: LsnSet,
    /// Highest VDL any writer ever reached.
    pub vdl_high: Lsn,
    /// Highest epoch ever picked (the next recovery picks one above it, E1).
    pub epoch_max: Epoch,
    /// Violations found by reads and acknowledgements (bits of `Violation`).
    pub violations: u8,
    pub recovery_completed: bool,
    pub read_after_recovery: bool,
    /// A partitioned old writer served a read under its lease (R9).
    pub stale_writer_read: bool,
    /// A repairing segment ended its repair (S21).
    pub repair_ended: bool,
    /// A segment lost, with its disk, a record of an acknowledged commit.
    pub disk_lost_acked: bool,
    /// A recovery completed after a disk loss, with a commit acknowledged before it.
    pub recovered_after_disk_loss: bool,
}

/// Violations observed during a step (a read's answer is only seen in the step).
pub mod violation {
    pub const READ_WRONG_VALUE: u8 = 1;
    pub const READ_PARTIAL_MTR: u8 = 2;
    pub const READ_LOST_ACKED: u8 = 4;
    pub const FENCED_ACK_NOT_DURABLE: u8 = 8;
    /// R9: a writer served a read that misses a commit a newer epoch acknowledged.
    pub const STALE_READ: u8 = 16;
    /// S21: a segment ended its repair without a record it held at a write quorum when it
    /// lost its disk.
    pub const REPAIR_ENDED_INCOMPLETE: u8 = 32;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub records: [Record; RECORD_SLOTS],
    pub segments: Vec<Segment>,
    pub writer: Option<Writer>,
    /// A writer partitioned away by a failover that still runs (a stale writer).
    pub writer_stale: Option<Writer>,
    /// Sorted and deduplicated: a set.
    pub network: Vec<Message>,
    pub writer_restarts: u8,
    pub segment_crashes: u8,
    /// Disk losses so far (S17, S19).
    pub disk_losses: u8,
    pub ghost: Ghost,
}

impl State {
    pub fn send(&mut self, message: Message) {
        if let Err(position) = self.network.binary_search(&message) {
            self.network.insert(position, message);
        }
    }

    pub fn in_network(&self, message: &Message) -> bool {
        self.network.binary_search(message).is_ok()
    }

    pub fn record(&self, lsn: Lsn) -> &Record {
        &self.records[lsn as usize]
    }

    pub fn is_allocated(&self, lsn: Lsn) -> bool {
        lsn != 0 && self.records[lsn as usize].epoch != 0
    }

    /// LSNs of the MTR that `lsn` belongs to.
    pub fn mtr_of(&self, lsn: Lsn) -> LsnSet {
        let first = self.record(lsn).mtr_first;
        let mut set = 0;
        let mut current = first;
        loop {
            set |= bit(current);
            if self.record(current).cpl || current >= LSN_CAP_MAX {
                return set;
            }
            current += 1;
        }
    }

    /// LSNs of one PG that were ever allocated.
    pub fn allocated_in_pg(&self, pg: usize) -> LsnSet {
        (1..=LSN_CAP_MAX)
            .filter(|lsn| self.is_allocated(*lsn) && self.record(*lsn).pg as usize == pg)
            .fold(0, |set, lsn| set | bit(lsn))
    }

    /// The newest allocated LSN of `pg` that is ≤ `lsn_limit` and not in `excluded`.
    pub fn last_in_pg(&self, pg: usize, lsn_limit: Lsn, excluded: LsnSet) -> Lsn {
        members(self.allocated_in_pg(pg) & !excluded)
            .filter(|lsn| *lsn <= lsn_limit)
            .last()
            .unwrap_or(0)
    }

    /// Segments of a PG that hold `lsn` (durably, not truncated).
    pub fn holders(&self, lsn: Lsn) -> usize {
        let pg = self.record(lsn).pg as usize;
        self.segments[pg * SEGMENTS_PER_PG..(pg + 1) * SEGMENTS_PER_PG]
            .iter()
            .filter(|segment| contains(segment.held, lsn))
            .count()
    }
}
