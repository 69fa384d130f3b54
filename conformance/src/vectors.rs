//! Conformance vectors: cases with inputs and expected outputs for writer bookkeeping
//! (W1, C1–C5), segment SCL and holes (S3–S8), recovery planning (X2–X4, X7) and codec
//! bytes (L4–L6). [`evaluate`] is the reference: it computes an output from an input with
//! `sixfold-core`. `sixfold conformance-target` serves it on stdin/stdout; the committed files
//! in `conformance/vectors/` are its outputs, kept stable by a snapshot test.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sixfold_core::codec::{decode_record, encode_record_to_vec};
use sixfold_core::{
    Edit, Epoch, Geometry, Lsn, Mtr, PageId, PgId, ProtocolEvent, QuorumConfig, RecoveryError,
    RecoveryPlanner, RedoBody, RedoRecord, SegmentError, SegmentId, SegmentReport, SegmentState,
    TruncationRange, WriteError, WriterConfig, WriterStart, WriterState,
};

/// The suites, each one file `conformance/vectors/<suite>.json`.
pub const SUITES: [&str; 5] = ["writer", "segment", "recovery", "codec", "wire"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub input: Value,
    pub expected: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorFile {
    pub suite: String,
    /// What the suite checks, for the reader of the JSON.
    pub about: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("unknown suite {0:?}; suites: writer, segment, recovery, codec, wire")]
    UnknownSuite(String),
    #[error("input does not match the suite's schema: {0}")]
    Schema(#[from] serde_json::Error),
}

/// A record as vectors spell it; `edits` defaults to one byte at offset 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RecordSpec {
    lsn: u64,
    pg: u32,
    prev_lsn_pg: u64,
    #[serde(default)]
    prev_lsn_page: u64,
    #[serde(default = "one")]
    epoch: u64,
    page: (u32, u32),
    #[serde(default)]
    cpl: bool,
    #[serde(default)]
    edits: Option<Vec<(u16, String)>>,
    #[serde(default)]
    full_image_byte: Option<u8>,
}

fn one() -> u64 {
    1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

impl RecordSpec {
    fn to_record(&self) -> RedoRecord {
        let body = match (&self.full_image_byte, &self.edits) {
            (Some(byte), _) => RedoBody::FullImage(vec![*byte; sixfold_core::PAGE_BYTES]),
            (None, Some(edits)) => RedoBody::Edits(
                edits
                    .iter()
                    .map(|(offset, bytes)| Edit {
                        offset: *offset,
                        bytes: unhex(bytes).unwrap_or_default(),
                    })
                    .collect(),
            ),
            (None, None) => RedoBody::Edits(vec![Edit {
                offset: 0,
                bytes: vec![self.lsn as u8],
            }]),
        };
        RedoRecord {
            lsn: Lsn(self.lsn),
            pg: PgId(self.pg),
            prev_lsn_pg: Lsn(self.prev_lsn_pg),
            prev_lsn_page: Lsn(self.prev_lsn_page),
            epoch: Epoch(self.epoch),
            page: PageId::new(self.page.0, self.page.1),
            cpl: self.cpl,
            body,
        }
    }

    fn from_record(record: &RedoRecord) -> RecordSpec {
        let (edits, full_image_byte) = match &record.body {
            RedoBody::FullImage(image) => (None, Some(image[0])),
            RedoBody::Edits(edits) => (
                Some(edits.iter().map(|e| (e.offset, hex(&e.bytes))).collect()),
                None,
            ),
        };
        RecordSpec {
            lsn: record.lsn.0,
            pg: record.pg.0,
            prev_lsn_pg: record.prev_lsn_pg.0,
            prev_lsn_page: record.prev_lsn_page.0,
            epoch: record.epoch.0,
            page: (record.page.db.0, record.page.page_no),
            cpl: record.cpl,
            edits,
            full_image_byte,
        }
    }
}

/// Computes the expected output of `input` in `suite` (the reference implementation).
pub fn evaluate(suite: &str, input: &Value) -> Result<Value, VectorError> {
    match suite {
        "writer" => Ok(evaluate_writer(serde_json::from_value(input.clone())?)),
        "segment" => Ok(evaluate_segment(serde_json::from_value(input.clone())?)),
        "recovery" => Ok(evaluate_recovery(serde_json::from_value(input.clone())?)),
        "codec" => Ok(evaluate_codec(serde_json::from_value(input.clone())?)),
        "wire" => Ok(evaluate_wire(serde_json::from_value(input.clone())?)),
        other => Err(VectorError::UnknownSuite(other.to_string())),
    }
}

// ---- writer ----

#[derive(Deserialize)]
struct WriterInput {
    pg_pages: u32,
    lal: u64,
    steps: Vec<WriterStep>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum WriterStep {
    /// An MTR changing these `(db, page)`s, one byte each.
    Submit { pages: Vec<(u32, u32)> },
    Ack {
        pg: u32,
        replica: u8,
        scl: u64,
        epoch: u64,
    },
}

fn write_error_kind(error: &WriteError) -> &'static str {
    match error {
        WriteError::Backpressure { .. } => "backpressure",
        WriteError::Fenced { .. } => "fenced",
        WriteError::EmptyMtr => "empty_mtr",
        WriteError::Malformed { .. } => "malformed",
        WriteError::PageLsnUnknown { .. } => "page_lsn_unknown",
    }
}

fn evaluate_writer(input: WriterInput) -> Value {
    let config = WriterConfig {
        geometry: Geometry {
            pg_pages: input.pg_pages.max(1),
        },
        quorum: QuorumConfig::AURORA,
        lal: input.lal,
    };
    let mut writer = WriterState::new(config, WriterStart::empty(Epoch(1)));
    let mut outputs = Vec::new();
    for step in input.steps {
        let result = match step {
            WriterStep::Submit { pages } => {
                let mut mtr = Mtr::new();
                for (db, page_no) in pages {
                    mtr.push(
                        PageId::new(db, page_no),
                        RedoBody::Edits(vec![Edit {
                            offset: 0,
                            bytes: vec![1],
                        }]),
                    );
                }
                match writer.submit_mtr(mtr) {
                    Ok(submitted) => json!({
                        "lsns": submitted.records.iter().map(|r| r.lsn.0).collect::<Vec<_>>(),
                        "commit_lsn": submitted.commit_lsn.0,
                    }),
                    Err(error) => json!({ "error": write_error_kind(&error) }),
                }
            }
            WriterStep::Ack {
                pg,
                replica,
                scl,
                epoch,
            } => {
                writer.handle_ack(
                    SegmentId {
                        pg: PgId(pg),
                        replica,
                    },
                    Lsn(scl),
                    Epoch(epoch),
                );
                json!("ok")
            }
        };
        let mut acknowledged = Vec::new();
        let mut failed = Vec::new();
        while let Some(event) = writer.poll_event() {
            match event {
                ProtocolEvent::CommitAcknowledged { lsn } => acknowledged.push(lsn.0),
                ProtocolEvent::CommitFailed { lsn } => failed.push(lsn.0),
                _ => {}
            }
        }
        let pgcl: BTreeMap<String, u64> = writer
            .pgs()
            .map(|pg| (pg.0.to_string(), writer.pgcl(pg).0))
            .collect();
        outputs.push(json!({
            "result": result,
            "pgcl": pgcl,
            "vcl": writer.vcl().0,
            "vdl": writer.vdl().0,
            "acknowledged": acknowledged,
            "failed": failed,
            "fenced": writer.fenced_by().is_some(),
        }));
    }
    json!({ "steps": outputs })
}

// ---- segment ----

#[derive(Deserialize)]
struct SegmentInput {
    pg: u32,
    steps: Vec<SegmentStep>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum SegmentStep {
    Write {
        epoch: u64,
        vdl_hint: u64,
        record: RecordSpec,
    },
    Truncate {
        lsn_begin: u64,
        lsn_end: u64,
        epoch: u64,
    },
    RaiseEpoch {
        epoch: u64,
    },
}

fn segment_error_kind(error: &SegmentError) -> &'static str {
    match error {
        SegmentError::StaleEpoch { .. } => "stale_epoch",
        SegmentError::WrongPg { .. } => "wrong_pg",
        SegmentError::Truncated { .. } => "truncated",
        SegmentError::Malformed { .. } => "malformed",
        SegmentError::BacklinkConflict { .. } => "backlink_conflict",
        SegmentError::DuplicateMismatch { .. } => "duplicate_mismatch",
        SegmentError::TooManyTruncations { .. } => "too_many_truncations",
    }
}

fn evaluate_segment(input: SegmentInput) -> Value {
    let mut segment = SegmentState::new(SegmentId {
        pg: PgId(input.pg),
        replica: 0,
    });
    let mut outputs = Vec::new();
    for step in input.steps {
        let result = match step {
            SegmentStep::Write {
                epoch,
                vdl_hint,
                record,
            } => segment
                .handle_write(Epoch(epoch), Lsn(vdl_hint), record.to_record())
                .map(|accepted| {
                    if accepted.inserted {
                        "stored"
                    } else {
                        "duplicate"
                    }
                }),
            SegmentStep::Truncate {
                lsn_begin,
                lsn_end,
                epoch,
            } => {
                // A vector's truncation is one recovery's range: the history it leaves is
                // the segment's own plus that range (S15). A lower epoch is refused (S7).
                let mut history = segment.truncations().to_vec();
                history.push(TruncationRange {
                    lsn_begin: Lsn(lsn_begin),
                    lsn_end: Lsn(lsn_end),
                    epoch: Epoch(epoch),
                });
                segment
                    .raise_epoch(Epoch(epoch))
                    .and_then(|_| segment.handle_truncate(&history))
                    .map(|_| "truncated")
            }
            SegmentStep::RaiseEpoch { epoch } => segment.raise_epoch(Epoch(epoch)).map(|_| "ok"),
        };
        let result = match result {
            Ok(kind) => kind,
            Err(error) => segment_error_kind(&error),
        };
        let holes: Vec<(u64, u64)> = segment
            .holes()
            .iter()
            .map(|hole| (hole.after.0, hole.before.0))
            .collect();
        outputs.push(json!({
            "result": result,
            "scl": segment.scl().0,
            "epoch": segment.epoch().0,
            "holes": holes,
        }));
    }
    json!({ "steps": outputs })
}

// ---- recovery ----

#[derive(Deserialize)]
struct RecoveryInput {
    lal: u64,
    epoch: u64,
    pgs: Vec<u32>,
    reports: Vec<ReportSpec>,
}

#[derive(Clone, Serialize, Deserialize)]
struct ReportSpec {
    pg: u32,
    replica: u8,
    epoch: u64,
    scl: u64,
    vdl_hint: u64,
    tip_at_hint: u64,
    /// `(lsn, cpl, epoch of the writer that made it)`.
    held: Vec<(u64, bool, u64)>,
    #[serde(default)]
    truncations: Vec<(u64, u64, u64)>,
}

fn recovery_error_kind(error: &RecoveryError) -> &'static str {
    match error {
        RecoveryError::NoReadQuorum { .. } => "no_read_quorum",
        RecoveryError::EpochTooLow { .. } => "epoch_too_low",
        RecoveryError::UnknownPg { .. } => "unknown_pg",
    }
}

fn evaluate_recovery(input: RecoveryInput) -> Value {
    let pgs: BTreeSet<PgId> = input.pgs.iter().map(|&pg| PgId(pg)).collect();
    let mut planner =
        RecoveryPlanner::new(QuorumConfig::AURORA, input.lal, Epoch(input.epoch), pgs);
    for spec in input.reports {
        let report = SegmentReport {
            segment: SegmentId {
                pg: PgId(spec.pg),
                replica: spec.replica,
            },
            epoch: Epoch(spec.epoch),
            scl: Lsn(spec.scl),
            vdl_hint: Lsn(spec.vdl_hint),
            tip_at_hint: Lsn(spec.tip_at_hint),
            held: spec
                .held
                .iter()
                .map(|&(l, cpl, epoch)| (Lsn(l), cpl, Epoch(epoch)))
                .collect(),
            truncations: spec
                .truncations
                .iter()
                .map(|&(b, e, epoch)| TruncationRange {
                    lsn_begin: Lsn(b),
                    lsn_end: Lsn(e),
                    epoch: Epoch(epoch),
                })
                .collect(),
        };
        if let Err(error) = planner.handle_report(report) {
            return json!({ "error": recovery_error_kind(&error) });
        }
    }
    match planner.plan() {
        Ok((plan, _)) => json!({
            "vcl": plan.vcl.0,
            "vdl": plan.vdl.0,
            "truncation": [plan.truncation.lsn_begin.0, plan.truncation.lsn_end.0, plan.truncation.epoch.0],
            "last_lsn_by_pg": plan.last_lsn_by_pg.iter().map(|(pg, lsn)| (pg.0.to_string(), lsn.0)).collect::<BTreeMap<_, _>>(),
            "next_lsn": plan.writer_start().next_lsn.0,
        }),
        Err(error) => json!({ "error": recovery_error_kind(&error) }),
    }
}

// ---- codec ----

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum CodecInput {
    Encode { record: RecordSpec },
    Decode { hex: String },
}

fn evaluate_codec(input: CodecInput) -> Value {
    match input {
        CodecInput::Encode { record } => {
            let record = record.to_record();
            if !record.body.is_well_formed() {
                return json!({ "error": "malformed" });
            }
            json!({ "hex": hex(&encode_record_to_vec(&record)) })
        }
        CodecInput::Decode { hex: text } => {
            let Some(bytes) = unhex(&text) else {
                return json!({ "error": "bad_hex" });
            };
            match decode_record(&bytes) {
                Ok((record, frame_bytes)) => json!({
                    "record": RecordSpec::from_record(record.record()),
                    "frame_bytes": frame_bytes,
                }),
                Err(error) => json!({ "error": decode_error_kind(&error) }),
            }
        }
    }
}

fn decode_error_kind(error: &sixfold_core::DecodeError) -> &'static str {
    use sixfold_core::DecodeError::*;
    match error {
        Truncated { .. } => "truncated",
        BadMagic { .. } => "bad_magic",
        BadVersion { .. } => "bad_version",
        HeaderCrc { .. } => "header_crc",
        BodyCrc { .. } => "body_crc",
        Oversize { .. } => "oversize",
        Malformed(_) => "malformed",
    }
}

// ---- the committed cases ----

/// A small deterministic generator (xorshift64*), so the random cases are the same on
/// every machine without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn ack(pg: u32, replica: u8, scl: u64) -> Value {
    json!({"op": "ack", "pg": pg, "replica": replica, "scl": scl, "epoch": 1})
}

fn writer_inputs() -> Vec<(String, Value)> {
    let mut cases = vec![
        (
            "write quorum releases the commit (C1, C4)".to_string(),
            json!({"pg_pages": 4, "lal": 100, "steps": [
                {"op": "submit", "pages": [[1, 0]]},
                ack(0, 0, 1), ack(0, 1, 1), ack(0, 2, 1), ack(0, 5, 1)]}),
        ),
        (
            "an MTR across PGs waits for its CPL (C2, C3, C4)".to_string(),
            json!({"pg_pages": 4, "lal": 100, "steps": [
                {"op": "submit", "pages": [[1, 0], [1, 4]]},
                ack(0, 0, 1), ack(0, 1, 1), ack(0, 2, 1), ack(0, 3, 1),
                ack(1, 0, 2), ack(1, 1, 2), ack(1, 2, 2), ack(1, 3, 2)]}),
        ),
        (
            "LAL back-pressure (W1)".to_string(),
            json!({"pg_pages": 4, "lal": 2, "steps": [
                {"op": "submit", "pages": [[1, 0], [1, 1]]},
                {"op": "submit", "pages": [[1, 2]]},
                ack(0, 0, 2), ack(0, 1, 2), ack(0, 2, 2), ack(0, 3, 2),
                {"op": "submit", "pages": [[1, 2]]}]}),
        ),
        (
            "a newer epoch's ack fences the writer (W6, E3, C6)".to_string(),
            json!({"pg_pages": 4, "lal": 100, "steps": [
                {"op": "submit", "pages": [[1, 0]]},
                {"op": "ack", "pg": 0, "replica": 0, "scl": 1, "epoch": 0},
                {"op": "ack", "pg": 0, "replica": 1, "scl": 1, "epoch": 2},
                ack(0, 2, 1),
                {"op": "submit", "pages": [[1, 1]]}]}),
        ),
    ];
    let mut rng = Rng(0x5158_F01D);
    for index in 0..12 {
        let mut steps = Vec::new();
        let mut allocated = 0u64;
        for _ in 0..(4 + rng.below(10)) {
            if rng.below(3) == 0 || allocated == 0 {
                let pages: Vec<(u32, u32)> = (0..1 + rng.below(3))
                    .map(|_| (1, rng.below(12) as u32))
                    .collect();
                allocated += pages.len() as u64;
                steps.push(json!({"op": "submit", "pages": pages}));
            } else {
                steps.push(ack(
                    rng.below(3) as u32,
                    rng.below(6) as u8,
                    1 + rng.below(allocated),
                ));
            }
        }
        cases.push((
            format!("random writer bookkeeping #{index}"),
            json!({"pg_pages": 4, "lal": 20, "steps": steps}),
        ));
    }
    cases
}

fn record(lsn: u64, prev: u64, cpl: bool) -> Value {
    json!({"lsn": lsn, "pg": 0, "prev_lsn_pg": prev, "page": [1, 0], "cpl": cpl})
}

fn write(epoch: u64, record: Value) -> Value {
    json!({"op": "write", "epoch": epoch, "vdl_hint": 0, "record": record})
}

fn segment_inputs() -> Vec<(String, Value)> {
    let mut cases = vec![
        (
            "SCL follows backlinks in any order, duplicates change nothing (S3, S4, S5)".into(),
            json!({"pg": 0, "steps": [
                write(1, record(9, 5, true)), write(1, record(2, 0, true)),
                write(1, record(2, 0, true)), write(1, record(5, 2, true))]}),
        ),
        (
            "stale epochs are refused (S7)".into(),
            json!({"pg": 0, "steps": [
                {"op": "raise_epoch", "epoch": 3}, write(2, record(1, 0, true)),
                {"op": "raise_epoch", "epoch": 2}, write(3, record(1, 0, true))]}),
        ),
        (
            "truncation voids and refuses (S8)".into(),
            json!({"pg": 0, "steps": [
                write(1, record(1, 0, true)), write(1, record(2, 1, false)),
                write(1, record(3, 2, true)),
                {"op": "truncate", "lsn_begin": 1, "lsn_end": 10, "epoch": 2},
                write(2, record(2, 1, false)),
                write(2, json!({"lsn": 11, "pg": 0, "prev_lsn_pg": 1, "page": [1, 0], "cpl": true, "epoch": 2}))]}),
        ),
        (
            "bad records are refused (S13)".into(),
            json!({"pg": 0, "steps": [
                write(1, json!({"lsn": 1, "pg": 7, "prev_lsn_pg": 0, "page": [1, 0]})),
                write(1, json!({"lsn": 3, "pg": 0, "prev_lsn_pg": 5, "page": [1, 0]})),
                write(1, json!({"lsn": 4, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": [[4095, "0102"]]})),
                write(1, record(1, 0, true)),
                write(1, json!({"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "cpl": true, "edits": [[1, "ff"]]}))]}),
        ),
    ];
    let mut rng = Rng(0xC0FF_EE11);
    for index in 0..12 {
        let count = 3 + rng.below(8);
        let mut chain = Vec::new();
        let mut lsn = 0;
        for _ in 0..count {
            let prev = lsn;
            lsn += 1 + rng.below(3);
            chain.push(record(lsn, prev, rng.below(2) == 0));
        }
        let mut steps = Vec::new();
        for _ in 0..count + 2 {
            let pick = rng.below(chain.len() as u64) as usize;
            steps.push(write(1, chain[pick].clone()));
        }
        cases.push((
            format!("random arrival order #{index}"),
            json!({"pg": 0, "steps": steps}),
        ));
    }
    cases
}

fn report(pg: u32, replica: u8, hint: u64, held: &[(u64, bool)]) -> ReportSpec {
    let held = held.iter().map(|&(lsn, cpl)| (lsn, cpl, 1)).collect();
    ReportSpec {
        pg,
        replica,
        epoch: 2,
        scl: 0,
        vdl_hint: hint,
        tip_at_hint: hint,
        held,
        truncations: Vec::new(),
    }
}

fn recovery_inputs() -> Vec<(String, Value)> {
    let input = |pgs: &[u32], reports: Vec<ReportSpec>| json!({"lal": 100, "epoch": 2, "pgs": pgs, "reports": reports});
    let mut cases = vec![
        (
            "fewer than a read quorum is refused (X2)".into(),
            input(&[0], vec![report(0, 0, 0, &[]), report(0, 1, 0, &[])]),
        ),
        (
            "VCL stops at the first LSN nobody holds (X3, X4)".into(),
            input(
                &[0, 1],
                vec![
                    report(0, 0, 0, &[(1, false), (3, true)]),
                    report(0, 1, 0, &[]),
                    report(0, 2, 0, &[]),
                    report(1, 0, 0, &[(2, true), (5, true)]),
                    report(1, 1, 0, &[]),
                    report(1, 2, 0, &[]),
                ],
            ),
        ),
        (
            "a partial MTR is dropped (X4)".into(),
            input(
                &[0],
                vec![
                    report(0, 0, 0, &[(1, true), (2, false)]),
                    report(0, 1, 0, &[]),
                    report(0, 2, 0, &[]),
                ],
            ),
        ),
    ];
    let mut rng = Rng(0xBEEF_0042);
    for index in 0..12 {
        let top = 4 + rng.below(10);
        let mut reports = Vec::new();
        for pg in 0..2u32 {
            for replica in 0..3 + rng.below(4) as u8 {
                let mut held: Vec<(u64, bool)> = Vec::new();
                for lsn in (1..=top).filter(|lsn| (*lsn as u32) % 2 == pg) {
                    if rng.below(4) != 0 {
                        held.push((lsn, rng.below(2) == 0));
                    }
                }
                reports.push(report(pg, replica, 0, &held));
            }
        }
        cases.push((format!("random reports #{index}"), input(&[0, 1], reports)));
    }
    cases
}

fn codec_inputs() -> Vec<(String, Value)> {
    let first =
        json!({"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 2], "edits": [[16, "68656c6c6f"]]});
    let encoded = hex(&encode_record_to_vec(
        &serde_json::from_value::<RecordSpec>(first.clone())
            .expect("valid spec")
            .to_record(),
    ));
    let mut flipped = unhex(&encoded).expect("hex");
    flipped[70] ^= 0x01;
    let mut cases = vec![
        (
            "encode an edit record (L5)".into(),
            json!({"op": "encode", "record": first}),
        ),
        (
            "encode a full image (L4, L5)".into(),
            json!({"op": "encode", "record": {"lsn": 9, "pg": 3, "prev_lsn_pg": 4, "prev_lsn_page": 2, "page": [2, 3075], "cpl": true, "full_image_byte": 90, "epoch": 7}}),
        ),
        (
            "decode a valid frame (L5)".into(),
            json!({"op": "decode", "hex": encoded}),
        ),
        (
            "a flipped body bit is caught (L5)".into(),
            json!({"op": "decode", "hex": hex(&flipped)}),
        ),
        (
            "a cut frame is truncated (L6)".into(),
            json!({"op": "decode", "hex": &encoded[..100]}),
        ),
        (
            "garbage has a bad magic (L6)".into(),
            json!({"op": "decode", "hex": "00".repeat(80)}),
        ),
    ];
    let mut rng = Rng(0xD00D_F00D);
    for index in 0..8 {
        let lsn = 1 + rng.below(1 << 40);
        let edits: Vec<(u16, String)> = (0..1 + rng.below(3))
            .map(|_| {
                let len = 1 + rng.below(8) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                (rng.below(4000) as u16, hex(&bytes))
            })
            .collect();
        let spec = json!({"lsn": lsn, "pg": rng.below(9), "prev_lsn_pg": rng.below(lsn), "prev_lsn_page": rng.below(lsn),
            "epoch": 1 + rng.below(5), "page": [rng.below(4), rng.below(5000)], "cpl": rng.below(2) == 0, "edits": edits});
        cases.push((
            format!("random encode #{index}"),
            json!({"op": "encode", "record": spec}),
        ));
    }
    cases
}

fn about(suite: &str) -> &'static str {
    match suite {
        "writer" => {
            "Writer bookkeeping: MTR submissions and acks in; per step the result, PGCL by PG, VCL, VDL, commits acknowledged and failed, fenced (W1, W3, W6, C1-C6, E3). Geometry pg_pages as given, quorum 6/4/3, epoch 1, every change one byte at offset 0."
        }
        "segment" => {
            "One segment of a PG: writes, truncations and epoch raises in; per step the result, SCL, epoch and holes (S3-S8, S13)."
        }
        "recovery" => {
            "Recovery planning: segment reports in; VCL, VDL, truncation range, last LSN by PG and the next LSN out, or an error (X2-X4, X7, E1). Quorum 6/4/3."
        }
        "codec" => {
            "Record frames of spec/formats.md: encode a record to hex, or decode hex to a record or an error kind (L4-L6)."
        }
        _ => "",
    }
}

/// Every suite's cases with the reference outputs.
pub fn generate() -> Vec<VectorFile> {
    SUITES
        .iter()
        .map(|&suite| {
            let inputs = match suite {
                "writer" => writer_inputs(),
                "segment" => segment_inputs(),
                "recovery" => recovery_inputs(),
                "wire" => wire_inputs(),
                _ => codec_inputs(),
            };
            let cases = inputs
                .into_iter()
                .map(|(name, input)| {
                    let expected =
                        evaluate(suite, &input).expect("generated inputs fit the schema");
                    Case {
                        name,
                        input,
                        expected,
                    }
                })
                .collect();
            VectorFile {
                suite: suite.to_string(),
                about: about(suite).to_string(),
                cases,
            }
        })
        .collect()
}

// ---- wire ----

#[derive(Deserialize)]
struct WireInput {
    /// One frame: u32 length, u32 CRC32C, payload.
    frame: String,
}

fn wire_error_kind(error: &sixfold_cluster::wire::WireError) -> &'static str {
    use sixfold_cluster::wire::WireError::*;
    match error {
        Closed | Io(_) | Stalled | Stopped => "closed",
        Oversize { .. } => "oversize",
        Crc { .. } => "crc",
        Malformed(_) => "malformed",
        UnknownType(_) => "unknown_type",
        Handshake(_) => "handshake",
        FrameAuth(_) => "frame_auth",
        Identity(_) | IdentityRefused(_) => "identity",
    }
}

fn evaluate_wire(input: WireInput) -> Value {
    use sixfold_cluster::wire::{decode, encode, read_frame};
    let Some(bytes) = unhex(&input.frame) else {
        return json!({ "error": "bad_hex" });
    };
    let mut reader = std::io::Cursor::new(bytes);
    let payload = match read_frame(&mut reader, &mut || false) {
        Ok(payload) => payload,
        Err(error) => return json!({ "error": wire_error_kind(&error) }),
    };
    match decode(&payload) {
        Ok(message) => {
            let debug = format!("{message:?}");
            let name: String = debug
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            json!({ "type": name, "reencodes": encode(&message) == payload })
        }
        Err(error) => json!({ "error": wire_error_kind(&error) }),
    }
}

fn wire_inputs() -> Vec<(String, Value)> {
    use sixfold_cluster::wire::{Message, encode, write_frame};
    let frame = |message: &Message| {
        let mut out = Vec::new();
        write_frame(&mut out, &encode(message)).expect("in-memory write");
        out
    };
    let record: RedoRecord = serde_json::from_value::<RecordSpec>(
        json!({"lsn": 7, "pg": 0, "prev_lsn_pg": 3, "page": [1, 2], "cpl": true, "edits": [[16, "68656c6c6f"]]}),
    )
    .expect("valid spec")
    .to_record();
    let segment = SegmentId {
        pg: PgId(0),
        replica: 2,
    };
    let messages = [
        (
            "ack",
            Message::Ack {
                request_id: 9,
                segment,
                scl: Lsn(7),
                epoch: Epoch(3),
            },
        ),
        (
            "write batch with one record and a truncation",
            Message::WriteBatch {
                request_id: 10,
                segment,
                epoch: Epoch(3),
                vdl_hint: Lsn(5),
                truncation: Some(TruncationRange {
                    lsn_begin: Lsn(1),
                    lsn_end: Lsn(4),
                    epoch: Epoch(3),
                }),
                records: vec![record],
            },
        ),
        (
            "get page",
            Message::GetPage {
                request_id: 11,
                segment,
                epoch: Epoch(3),
                read_point: Lsn(7),
                pg_lsn: Lsn(7),
                page: PageId::new(1, 2),
            },
        ),
    ];
    let mut cases = Vec::new();
    for (name, message) in &messages {
        let bytes = frame(message);
        cases.push((format!("{name} (valid)"), json!({ "frame": hex(&bytes) })));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        cases.push((
            format!("{name}, a payload bit flipped: CRC"),
            json!({ "frame": hex(&flipped) }),
        ));
        cases.push((
            format!("{name}, cut short"),
            json!({ "frame": hex(&bytes[..bytes.len() - 3]) }),
        ));
    }
    let mut oversize = vec![0u8; 8];
    oversize[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push((
        "a length above MAX_FRAME_BYTES".into(),
        json!({ "frame": hex(&oversize) }),
    ));
    let mut unknown = Vec::new();
    write_frame(&mut unknown, &[0xEE, 0, 0, 0]).expect("in-memory write");
    cases.push((
        "an unknown message type".into(),
        json!({ "frame": hex(&unknown) }),
    ));
    let mut short = Vec::new();
    let ack = encode(&messages[0].1);
    write_frame(&mut short, &ack[..ack.len() - 4]).expect("in-memory write");
    cases.push((
        "an ack missing its last field".into(),
        json!({ "frame": hex(&short) }),
    ));
    cases
}
