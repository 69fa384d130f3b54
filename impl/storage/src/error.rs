//! The storage engine's errors: what failed, with the segment, LSN and path it concerns.

use std::io;
use std::path::PathBuf;

use sixfold_core::{DecodeError, Epoch, Lsn, PageId, PgId, SegmentError, SegmentId};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no segment of pg{pg} is hosted on this node (S13)")]
    PgNotHosted { pg: PgId },
    #[error("segment {segment} is not hosted on this node")]
    SegmentNotHosted { segment: SegmentId },
    #[error("segment {existing} of pg{} is already hosted here; one replica per node (Q6)", existing.pg)]
    PgAlreadyHosted { existing: SegmentId },
    #[error("{segment}: stale epoch {got}, segment has seen {seen} (S7)")]
    StaleEpoch {
        segment: SegmentId,
        got: Epoch,
        seen: Epoch,
    },
    #[error("{segment}: record {lsn} lies in truncated range ({begin}, {end}] (S8)")]
    Truncated {
        segment: SegmentId,
        lsn: Lsn,
        begin: Lsn,
        end: Lsn,
    },
    #[error("record {lsn}: frame of {bytes} bytes exceeds the maximum {max} (S13)")]
    Oversize { lsn: Lsn, bytes: usize, max: usize },
    #[error("record {lsn} is malformed: {reason} (S13, L4)")]
    Malformed { lsn: Lsn, reason: String },
    #[error("{segment}: record {lsn} differs from the stored record with the same LSN (S3)")]
    DuplicateMismatch { segment: SegmentId, lsn: Lsn },
    #[error(
        "{segment}: truncation history of epoch {held} is behind epoch {needed}; learning it from peers (S15)"
    )]
    HistoryBehind {
        segment: SegmentId,
        needed: Epoch,
        held: Epoch,
    },
    #[error("{segment}: truncation ({begin}, {end}] is not a range")]
    BadTruncation {
        segment: SegmentId,
        begin: Lsn,
        end: Lsn,
    },
    #[error("{segment}: {limit} reached: {value} (back-pressure)")]
    LimitReached {
        segment: SegmentId,
        limit: &'static str,
        value: u64,
    },
    #[error("configuration: {field} = {value} is out of range")]
    BadConfig { field: &'static str, value: u64 },
    /// S18: the segment's last group commit failed and the retry failed too; nothing more
    /// is queued for it until its disk takes writes again.
    #[error("{segment}: the disk refuses writes ({reason}); batch refused, nothing queued")]
    SegmentBlocked { segment: SegmentId, reason: String },
    #[error("write queue full: {queued_bytes} bytes queued, limit {max_bytes} (back-pressure)")]
    QueueFull { queued_bytes: u64, max_bytes: u64 },
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{segment}: read point {read_lsn} is below PGMRPL {pgmrpl} (R3)")]
    BelowPgmrpl {
        segment: SegmentId,
        read_lsn: Lsn,
        pgmrpl: Lsn,
    },
    #[error("{segment}: required LSN {required} is past SCL {scl} (R3)")]
    NotCaughtUp {
        segment: SegmentId,
        required: Lsn,
        scl: Lsn,
    },
    #[error("{segment}: required LSN {required} is past the read point {read_lsn} (R3)")]
    RequiredAboveReadPoint {
        segment: SegmentId,
        required: Lsn,
        read_lsn: Lsn,
    },
    #[error("{segment}: page {page} belongs to pg{pg}, not this segment's PG (W2)")]
    WrongPage {
        segment: SegmentId,
        page: PageId,
        pg: PgId,
    },
    #[error("{segment}: page {page} cannot be built at {read_lsn}: {reason} (S9, S11)")]
    PageUnavailable {
        segment: SegmentId,
        page: PageId,
        read_lsn: Lsn,
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        error: &DecodeError,
    ) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: error.to_string(),
        }
    }

    /// True when the error came from the disk (ENOSPC, EIO, ...), so a retry may succeed.
    pub fn is_io(&self) -> bool {
        matches!(self, StorageError::Io { .. })
    }
}

impl From<SegmentError> for StorageError {
    fn from(error: SegmentError) -> StorageError {
        match error {
            SegmentError::StaleEpoch { segment, got, seen } => {
                StorageError::StaleEpoch { segment, got, seen }
            }
            SegmentError::WrongPg { pg, .. } => StorageError::PgNotHosted { pg: PgId(pg) },
            SegmentError::Truncated {
                segment,
                lsn,
                begin,
                end,
            } => StorageError::Truncated {
                segment,
                lsn,
                begin,
                end,
            },
            SegmentError::Malformed { lsn, .. } => StorageError::Malformed {
                lsn,
                reason: "refused by the segment".into(),
            },
            SegmentError::BacklinkConflict {
                lsn, prev, holder, ..
            } => StorageError::Malformed {
                lsn,
                reason: format!("backlink {prev} already taken by {holder}"),
            },
            SegmentError::DuplicateMismatch { segment, lsn } => {
                StorageError::DuplicateMismatch { segment, lsn }
            }
            SegmentError::TooManyTruncations { segment, ranges } => StorageError::LimitReached {
                segment,
                limit: "TRUNCATIONS_MAX",
                value: ranges as u64,
            },
        }
    }
}
