//! Protocol traces as JSON lines (spec/trace.md): what each actor did, in order, so a run
//! can be replayed, hashed, and validated against the model.

use serde::{Deserialize, Serialize};
use sixfold_core::{ProtocolEvent, SegmentReport};

/// Simulator-level events: faults and lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SimEvent {
    WriterStarted {
        epoch: u64,
    },
    WriterCrashed,
    SecondWriterStarted,
    NodeCrashed,
    NodeRestarted {
        ok: bool,
    },
    Partitioned {
        kind: String,
    },
    PartitionHealed,
    DiskCorrupted {
        path: String,
        bytes: u32,
    },
    /// A whole valid frame of one of the node's files landed, durably, over another frame
    /// boundary: `write` is "source@offset -> target@offset".
    MisdirectedWrite {
        write: String,
    },
    Healed,
    /// After a group commit, a segment is durable through `scl` (S1): what its acks may say.
    Durable {
        segment: String,
        scl: u64,
    },
    /// A segment made a recovery's truncation range durable (S8, X5).
    TruncationApplied {
        segment: String,
        lsn_begin: u64,
        lsn_end: u64,
        epoch: u64,
    },
    /// A storage node made records durable and acknowledged them (S1).
    Flushed {
        acks: usize,
    },
    /// A segment answered recovery at an epoch (X1, E4).
    Reported {
        segment: String,
        epoch: u64,
        scl: u64,
    },
    /// A recovering writer took a segment's report (X1): everything recovery decides from.
    ReportTaken {
        segment: String,
        epoch: u64,
        scl: u64,
        vdl_hint: u64,
        tip_at_hint: u64,
        /// `[lsn, cpl, epoch]` of each LSN held above the hint.
        held: Vec<(u64, bool, u64)>,
        /// `[lsn_begin, lsn_end, epoch]` of each truncation range the segment holds.
        truncations: Vec<(u64, u64, u64)>,
    },
    /// A recovering writer took a segment's answer to its truncation write, with the SCL the
    /// segment reached (X5).
    TruncationAcked {
        segment: String,
        scl: u64,
    },
    /// A read was served (R1, R3).
    PageServed {
        segment: String,
        page: String,
        /// The epoch of the writer that asked (E2).
        epoch: u64,
        read_lsn: u64,
        lsn: u64,
    },
}

impl SimEvent {
    pub fn report_taken(report: &SegmentReport) -> SimEvent {
        SimEvent::ReportTaken {
            segment: report.segment.to_string(),
            epoch: report.epoch.0,
            scl: report.scl.0,
            vdl_hint: report.vdl_hint.0,
            tip_at_hint: report.tip_at_hint.0,
            held: report
                .held
                .iter()
                .map(|&(lsn, cpl, epoch)| (lsn.0, cpl, epoch.0))
                .collect(),
            truncations: report
                .truncations
                .iter()
                .map(|range| (range.lsn_begin.0, range.lsn_end.0, range.epoch.0))
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TraceEvent {
    Protocol(ProtocolEvent),
    Sim(SimEvent),
}

/// A trace line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("trace line {line}: {message}")]
pub struct TraceParseError {
    pub line: usize,
    pub message: String,
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLine {
    pub tick: u64,
    pub actor: String,
    #[serde(flatten)]
    pub event: TraceEvent,
}

#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub lines: Vec<TraceLine>,
    hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    pub fn push(&mut self, tick: u64, actor: &str, event: TraceEvent) {
        let line = TraceLine {
            tick,
            actor: actor.to_string(),
            event,
        };
        let text = serde_json::to_string(&line).expect("trace lines serialize");
        let mut hash = if self.lines.is_empty() {
            FNV_OFFSET
        } else {
            self.hash
        };
        for byte in text.bytes().chain(std::iter::once(b'\n')) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self.hash = hash;
        self.lines.push(line);
    }

    /// FNV-1a over the JSON lines: equal runs have equal hashes.
    pub fn hash(&self) -> u64 {
        if self.lines.is_empty() {
            FNV_OFFSET
        } else {
            self.hash
        }
    }

    /// Reads a trace written by [`Trace::to_json_lines`] (spec/trace.md): blank lines are
    /// skipped; any other line that is not a trace line is an error naming it. Never panics
    /// (L6): a trace file is bytes from disk.
    pub fn from_json_lines(text: &str) -> Result<Trace, TraceParseError> {
        let mut trace = Trace::default();
        for (index, text) in text.lines().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            let line: TraceLine = serde_json::from_str(text).map_err(|error| TraceParseError {
                line: index + 1,
                message: error.to_string(),
            })?;
            trace.push(line.tick, &line.actor, line.event);
        }
        Ok(trace)
    }

    pub fn to_json_lines(&self) -> String {
        self.lines
            .iter()
            .map(|line| serde_json::to_string(line).expect("trace lines serialize") + "\n")
            .collect()
    }
}
