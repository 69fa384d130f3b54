//! Protocol events every state machine emits, for tracing and trace validation.

use serde::{Deserialize, Serialize};

use crate::types::{Epoch, Lsn, PgId, SegmentId, TruncationRange};

/// One step of the protocol as a state machine saw it (spec/trace.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProtocolEvent {
    /// The writer allocated a record and queued it for its PG's segments (W3, W4).
    RecordSent {
        lsn: Lsn,
        pg: PgId,
        cpl: bool,
        epoch: Epoch,
    },
    /// A segment stored a record (S3) and its SCL is now `scl`.
    RecordStored {
        segment: SegmentId,
        lsn: Lsn,
        scl: Lsn,
        epoch: Epoch,
    },
    /// The writer took an ack (W6).
    AckTaken {
        segment: SegmentId,
        scl: Lsn,
        epoch: Epoch,
    },
    /// PGCL of a PG advanced (C1).
    PgclAdvanced { pg: PgId, pgcl: Lsn },
    /// VCL advanced (C2).
    VclAdvanced { vcl: Lsn },
    /// VDL advanced (C3).
    VdlAdvanced { vdl: Lsn },
    /// A commit was acknowledged to its client (C4).
    CommitAcknowledged { lsn: Lsn },
    /// A commit failed because the writer was fenced (C6).
    CommitFailed { lsn: Lsn },
    /// A truncation range was planned or applied (X4, S8).
    Truncated { range: TruncationRange },
    /// A volume epoch took effect at a writer or a segment (E1, S7).
    EpochChanged { epoch: Epoch },
    /// The writer learned it was fenced by a newer epoch (E3).
    Fenced { by: Epoch },
    /// A recovery finished with this VDL (X4).
    RecoveryCompleted { epoch: Epoch, vcl: Lsn, vdl: Lsn },
}
