//! The state of the replica model: the writer and the volume, the replicas, the stream
//! between them, and the ghost history.
//!
//! A page's content is abstract: the set of LSNs applied to it. The writer's page `p` at a
//! point `v` is the set of records of `p` with LSN ≤ `v`, so a page built from part of its
//! redo, or holding a record above the point, differs from it.

pub use crate::quorum::state::{Lsn, LsnSet, bit, contains, format_set, members, range};

/// The highest LSN the model allocates.
pub const LSN_CAP_MAX: Lsn = 6;
/// Record table size: index `l` is LSN `l`.
pub const RECORD_SLOTS: usize = LSN_CAP_MAX as usize + 1;
pub const PAGES_MAX: usize = 3;
pub const REPLICAS_MAX: usize = 2;

/// The writer, the records it allocated and what storage holds of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Volume {
    /// The page of record `l` (index `l`); a record's header, which the stream carries.
    pub page_of: [u8; RECORD_SLOTS],
    /// The CPLs among the allocated records (L2).
    pub cpls: LsnSet,
    /// The highest LSN allocated.
    pub allocated: Lsn,
    /// Every LSN up to this is durable at a write quorum (VCL).
    pub durable: Lsn,
    /// The writer's VDL (C3).
    pub vdl: Lsn,
    /// Whether the writer is still running (false once a replica is promoted).
    pub writer_alive: bool,
    /// The oldest read point the writer has received from each replica (P8).
    pub reported: [Lsn; REPLICAS_MAX],
    /// Storage's collection horizon: the PGMRPL it was sent (R4, S10). A read below it
    /// is refused (R3).
    pub collected: Lsn,
}

impl Volume {
    /// The writer's page at point `lsn`: its records at or below it.
    pub fn page_at(&self, page: u8, lsn: Lsn) -> LsnSet {
        self.records_of(page, range(0, lsn.min(self.allocated)))
    }

    /// The records of `page` among `set`.
    pub fn records_of(&self, page: u8, set: LsnSet) -> LsnSet {
        members(set)
            .filter(|lsn| self.page_of[*lsn as usize] == page)
            .fold(0, |acc, lsn| acc | bit(lsn))
    }

    /// The highest CPL at or below `lsn` (0 if none).
    pub fn cpl_at_or_below(&self, lsn: Lsn) -> Lsn {
        members(self.cpls & range(0, lsn)).last().unwrap_or(0)
    }
}

/// One read replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    /// Its applied VDL (P3).
    pub read_point: Lsn,
    /// The highest VDL it has heard (P2).
    pub heard_vdl: Lsn,
    /// Records it holds: above its read point, or kept for an open read (P6).
    pub held: LsnSet,
    /// Pages it holds, each as the set of LSNs applied to it.
    pub cache: [Option<LsnSet>; PAGES_MAX],
    /// Open storage reads: page `p` is being read at this read point.
    pub reading: [Option<Lsn>; PAGES_MAX],
    /// The oldest read point it last reported (P8).
    pub reported: Lsn,
    /// Promoted to writer (P9): it takes no stream any more.
    pub promoted: bool,
}

impl Replica {
    pub const fn new() -> Self {
        Replica {
            read_point: 0,
            heard_vdl: 0,
            held: 0,
            cache: [None; PAGES_MAX],
            reading: [None; PAGES_MAX],
            reported: 0,
            promoted: false,
        }
    }

    /// P8: the lowest read point of its open reads, or its read point.
    pub fn oldest_read_point(&self) -> Lsn {
        self.reading
            .iter()
            .flatten()
            .fold(self.read_point, |oldest, point| oldest.min(*point))
    }

    /// Pages held or being read.
    pub fn pages_in_use(&self) -> usize {
        let held = self.cache.iter().flatten().count();
        held + self.reading.iter().flatten().count()
    }
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

/// Messages in flight, as sets (the stream reorders; a delivered message that could
/// change nothing again is dropped, which is what a duplicate does).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stream {
    /// Records on their way to each replica.
    pub redo: [LsnSet; REPLICAS_MAX],
    /// VDLs on their way to each replica (bit 0 is never sent: VDL 0 is no news).
    pub vdl: [LsnSet; REPLICAS_MAX],
    /// Oldest read points on their way from each replica to the writer.
    pub reports: [LsnSet; REPLICAS_MAX],
}

/// What the system cannot see, kept to state the properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// Every VDL the writer reached, and the recovered VDL (bit 0: the empty volume).
    pub vdls: LsnSet,
    /// The highest VDL the old writer reached, when a replica was promoted.
    pub old_writer_vdl: Lsn,
    /// The VDL the promoted replica's recovery found.
    pub recovered_vdl: Option<Lsn>,
    /// A storage read by a replica was refused: its read point was below the collection
    /// horizon.
    pub read_refused: bool,
    /// A replica's read point went backwards.
    pub read_point_regressed: bool,
    /// Witnesses that the model does what it is for.
    pub redo_applied_to_cache: bool,
    pub late_read_caught_up: bool,
    pub warm_promotion: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub volume: Volume,
    pub replicas: [Replica; REPLICAS_MAX],
    pub stream: Stream,
    pub ghost: Ghost,
}

impl State {
    pub fn initial() -> Self {
        State {
            volume: Volume {
                page_of: [0; RECORD_SLOTS],
                cpls: 0,
                allocated: 0,
                durable: 0,
                vdl: 0,
                writer_alive: true,
                reported: [0; REPLICAS_MAX],
                collected: 0,
            },
            replicas: [Replica::new(), Replica::new()],
            stream: Stream::default(),
            ghost: Ghost {
                vdls: 1,
                ..Ghost::default()
            },
        }
    }
}
