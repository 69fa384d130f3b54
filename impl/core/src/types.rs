//! Identifiers of the protocol. Newtypes so an LSN is never mistaken for a page number.

use serde::{Deserialize, Serialize};

/// Bytes in one page of every database (spec: "page").
pub const PAGE_BYTES: usize = 4096;

/// Segments of one protection group (Q1).
pub const SEGMENTS_PER_PG: usize = 6;

/// Truncation ranges a truncation history may hold, everywhere: a segment's metadata, a
/// node's store, a recovery's plan, a gossip message (S15). Each recovery adds one range;
/// a longer history is refused with a typed error, never cut.
pub const TRUNCATIONS_MAX: usize = 4096;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Log sequence number: volume-wide, dense, allocated only by the writer (L1). 0 = nothing.
    Lsn(u64)
);
id_type!(
    /// Volume epoch: raised by every recovery; storage rejects lower ones (E1, S7).
    Epoch(u64)
);
id_type!(
    /// Protection group: page numbers `[k·pg_pages, (k+1)·pg_pages)` of every database (W2).
    PgId(u32)
);
id_type!(
    /// A storage node.
    NodeId(u32)
);
id_type!(
    /// An availability zone (a failure domain).
    AzId(u32)
);
id_type!(
    /// A database of the volume; 0 is the catalog (V3).
    DbId(u32)
);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    /// The LSN after this one. LSNs are `u64` and never wrap in practice; wrapping would be
    /// a bug of ours, so it is asserted.
    pub fn next(self) -> Lsn {
        Lsn(self.0.checked_add(1).expect("LSN space exhausted"))
    }
}

impl Epoch {
    pub fn next(self) -> Epoch {
        Epoch(self.0.checked_add(1).expect("epoch space exhausted"))
    }
}

/// A page of a database: `(DbId, page number)` (V1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PageId {
    pub db: DbId,
    pub page_no: u32,
}

impl PageId {
    pub fn new(db: u32, page_no: u32) -> PageId {
        PageId {
            db: DbId(db),
            page_no,
        }
    }
}

impl std::fmt::Display for PageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "db{}/p{}", self.db.0, self.page_no)
    }
}

/// One replica of a PG: `(PgId, replica index 0..6)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentId {
    pub pg: PgId,
    pub replica: u8,
}

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pg{}.{}", self.pg.0, self.replica)
    }
}

/// How the volume's page space is cut into PGs (W2, V2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// Pages per protection group (of each database).
    pub pg_pages: u32,
}

impl Geometry {
    /// W2: a page's PG is `page_no / pg_pages`; it never changes.
    pub fn pg_of(&self, page: PageId) -> PgId {
        debug_assert!(self.pg_pages > 0);
        PgId(page.page_no / self.pg_pages)
    }
}

/// A truncation range `(lsn_begin, lsn_end]` written in `epoch` (S8, X4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TruncationRange {
    pub lsn_begin: Lsn,
    pub lsn_end: Lsn,
    pub epoch: Epoch,
}

impl TruncationRange {
    pub fn contains(&self, lsn: Lsn) -> bool {
        self.lsn_begin < lsn && lsn <= self.lsn_end
    }

    /// S8: a range voids the records in it written in its own epoch or earlier (its own
    /// writer allocates only above it). A record of a later epoch is never void by it: a
    /// later writer that did not see the range (its recovery never completed) may have
    /// allocated inside it.
    pub fn voids(&self, lsn: Lsn, record_epoch: Epoch) -> bool {
        record_epoch <= self.epoch && self.contains(lsn)
    }
}

/// S15: the epoch of a truncation history, the set of ranges in force as the recovery of
/// that epoch left them: its newest range's epoch (0 for none).
pub fn history_epoch(history: &[TruncationRange]) -> Epoch {
    history
        .iter()
        .map(|range| range.epoch)
        .max()
        .unwrap_or(Epoch(0))
}
