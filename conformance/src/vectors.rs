//! Conformance vectors: cases with inputs and expected outputs for writer bookkeeping
//! (W, C, R), one segment (S), recovery planning (X, E), the record codec (L, S9, S12) and
//! wire frames. spec/conformance.md and `conformance/schema/*.json` specify every suite's
//! input and output. [`evaluate`] is the reference: it computes an output from an input with
//! `sixfold-core`. `sixfold conformance-target` serves it on stdin/stdout; the committed files
//! in `conformance/vectors/` are its outputs, kept stable by snapshot tests.

mod cases;
pub mod generated;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sixfold_core::codec::{decode_record, encode_record_to_vec, scan_log};
use sixfold_core::{
    Edit, Epoch, Geometry, GossipRequest, Hole, Lsn, Mtr, PageId, PgId, ProtocolEvent,
    QuorumConfig, RecoveryError, RecoveryPlanner, RedoBody, RedoRecord, SegmentError, SegmentId,
    SegmentReport, SegmentState, TruncationRange, WriteError, WriterConfig, WriterStart,
    WriterState,
};

/// The suites, each one file `conformance/vectors/<suite>.json` (hand-written cases) and
/// one `conformance/vectors/generated/<suite>.json` (derived from simulations).
pub const SUITES: [&str; 5] = ["writer", "segment", "recovery", "codec", "wire"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    /// Rule IDs of spec/ the case pins (the spec-coverage test checks every rule is pinned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
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

/// A record as vectors spell it. With no body field, the body is one edit at offset 0 of
/// one byte, `lsn mod 256` (spec/conformance.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RecordSpec {
    pub(crate) lsn: u64,
    pub(crate) pg: u32,
    pub(crate) prev_lsn_pg: u64,
    #[serde(default)]
    pub(crate) prev_lsn_page: u64,
    #[serde(default = "one")]
    pub(crate) epoch: u64,
    pub(crate) page: (u32, u32),
    #[serde(default)]
    pub(crate) cpl: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) edits: Option<Vec<(u16, String)>>,
    /// A full image whose 4096 bytes all equal this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) full_image_byte: Option<u8>,
    /// A full image as 8192 hex digits, when its bytes are not all equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) full_image: Option<String>,
}

fn one() -> u64 {
    1
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

impl RecordSpec {
    pub(crate) fn to_record(&self) -> RedoRecord {
        let body = match (&self.full_image_byte, &self.full_image, &self.edits) {
            (Some(byte), _, _) => RedoBody::FullImage(vec![*byte; sixfold_core::PAGE_BYTES]),
            (None, Some(image), _) => RedoBody::FullImage(unhex(image).unwrap_or_default()),
            (None, None, Some(edits)) => RedoBody::Edits(
                edits
                    .iter()
                    .map(|(offset, bytes)| Edit {
                        offset: *offset,
                        bytes: unhex(bytes).unwrap_or_default(),
                    })
                    .collect(),
            ),
            (None, None, None) => RedoBody::Edits(vec![Edit {
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

    pub(crate) fn from_record(record: &RedoRecord) -> RecordSpec {
        let (edits, full_image_byte, full_image) = match &record.body {
            RedoBody::FullImage(image) if image.iter().all(|&b| b == image[0]) => {
                (None, Some(image[0]), None)
            }
            RedoBody::FullImage(image) => (None, None, Some(hex(image))),
            RedoBody::Edits(edits) => (
                Some(edits.iter().map(|e| (e.offset, hex(&e.bytes))).collect()),
                None,
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
            full_image,
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
pub(crate) struct WriterInput {
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
    /// R2, R4: a read starts at VDL.
    BeginRead,
    /// R4: a read at `read_point` ends.
    EndRead { read_point: u64 },
    /// R1, R3, R5: which segments may serve a read of `pg` at `read_point`.
    ReadCandidates { pg: u32, read_point: u64 },
    /// W7: the records to send again to one segment.
    Resend { pg: u32, replica: u8 },
}

fn write_error_kind(error: &WriteError) -> &'static str {
    match error {
        WriteError::Backpressure { .. } => "backpressure",
        WriteError::Fenced { .. } => "fenced",
        WriteError::EmptyMtr => "empty_mtr",
        WriteError::Malformed { .. } => "malformed",
        WriteError::PageLsnUnknown { .. } => "page_lsn_unknown",
        WriteError::MtrLargerThanLal { .. } => "mtr_larger_than_lal",
    }
}

fn segment_id(pg: u32, replica: u8) -> SegmentId {
    SegmentId {
        pg: PgId(pg),
        replica: replica.min(5),
    }
}

fn writer_step(writer: &mut WriterState, step: WriterStep) -> Value {
    match step {
        WriterStep::Submit { pages } => {
            let mut mtr = Mtr::new();
            for (db, page_no) in pages {
                let body = RedoBody::Edits(vec![Edit {
                    offset: 0,
                    bytes: vec![1],
                }]);
                mtr.push(PageId::new(db, page_no), body);
            }
            match writer.submit_mtr(mtr) {
                Ok(submitted) => json!({
                    "records": submitted.records.iter().map(|r| json!([r.lsn.0, r.pg.0, r.prev_lsn_pg.0, r.prev_lsn_page.0, r.cpl])).collect::<Vec<_>>(),
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
            writer.handle_ack(segment_id(pg, replica), Lsn(scl), Epoch(epoch));
            json!("ok")
        }
        WriterStep::BeginRead => json!({ "read_point": writer.begin_read().0 }),
        WriterStep::EndRead { read_point } => {
            writer.end_read(Lsn(read_point));
            json!("ok")
        }
        WriterStep::ReadCandidates { pg, read_point } => {
            let replicas: Vec<u8> = writer
                .read_candidates(PgId(pg), Lsn(read_point))
                .iter()
                .map(|s| s.replica)
                .collect();
            json!({ "pg_lsn": writer.pg_lsn_at(PgId(pg), Lsn(read_point)).0, "replicas": replicas })
        }
        WriterStep::Resend { pg, replica } => {
            let lsns: Vec<u64> = writer
                .records_to_resend(segment_id(pg, replica))
                .iter()
                .map(|r| r.lsn.0)
                .collect();
            json!({ "lsns": lsns })
        }
    }
}

pub(crate) fn evaluate_writer(input: WriterInput) -> Value {
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
        let result = writer_step(&mut writer, step);
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
            "pgmrpl": writer.pgmrpl().0,
            "acknowledged": acknowledged,
            "failed": failed,
            "fenced": writer.fenced_by().is_some(),
        }));
    }
    json!({ "steps": outputs })
}

// ---- segment ----

#[derive(Deserialize)]
pub(crate) struct SegmentInput {
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
    /// A recovery's RaiseEpoch: strictly above the segment's epoch (E1, E4).
    RaiseEpoch { epoch: u64 },
    /// An open writer's epoch (heartbeat): at or above the segment's (S7).
    AdoptEpoch { epoch: u64 },
    /// The segment's recovery report (X1).
    Report,
    /// A peer's gossip request; the answer's LSNs (S6).
    GossipAnswer {
        epoch: u64,
        scl: u64,
        max_held: u64,
        holes: Vec<(u64, u64)>,
    },
    /// S10: collect records at or below `lsn` (capped at SCL).
    Forget { lsn: u64 },
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

fn ranges_json(ranges: &[TruncationRange]) -> Vec<(u64, u64, u64)> {
    ranges
        .iter()
        .map(|r| (r.lsn_begin.0, r.lsn_end.0, r.epoch.0))
        .collect()
}

fn report_json(report: &SegmentReport) -> Value {
    json!({
        "epoch": report.epoch.0,
        "scl": report.scl.0,
        "vdl_hint": report.vdl_hint.0,
        "tip_at_hint": report.tip_at_hint.0,
        "held": report.held.iter().map(|&(l, cpl, e)| (l.0, cpl, e.0)).collect::<Vec<_>>(),
        "truncations": ranges_json(&report.truncations),
    })
}

fn segment_step(segment: &mut SegmentState, step: SegmentStep) -> Result<Value, SegmentError> {
    match step {
        SegmentStep::Write {
            epoch,
            vdl_hint,
            record,
        } => segment
            .handle_write(Epoch(epoch), Lsn(vdl_hint), record.to_record())
            .map(|accepted| {
                json!(if accepted.inserted {
                    "stored"
                } else {
                    "duplicate"
                })
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
                .map(|_| json!("truncated"))
        }
        SegmentStep::RaiseEpoch { epoch } => {
            segment.begin_recovery(Epoch(epoch)).map(|_| json!("ok"))
        }
        SegmentStep::AdoptEpoch { epoch } => segment.raise_epoch(Epoch(epoch)).map(|_| json!("ok")),
        SegmentStep::Report => Ok(json!({ "report": report_json(&segment.report()) })),
        SegmentStep::GossipAnswer {
            epoch,
            scl,
            max_held,
            holes,
        } => {
            let request = GossipRequest {
                epoch: Epoch(epoch),
                scl: Lsn(scl),
                holes: holes
                    .iter()
                    .map(|&(after, before)| Hole {
                        after: Lsn(after),
                        before: Lsn(before),
                    })
                    .collect(),
                max_held: Lsn(max_held),
                truncations: Vec::new(),
            };
            let lsns: Vec<u64> = segment
                .answer_gossip(&request)
                .iter()
                .map(|r| r.lsn.0)
                .collect();
            Ok(json!({ "lsns": lsns }))
        }
        SegmentStep::Forget { lsn } => Ok(json!({ "forgotten": segment.forget_through(Lsn(lsn)) })),
    }
}

pub(crate) fn evaluate_segment(input: SegmentInput) -> Value {
    let mut segment = SegmentState::new(SegmentId {
        pg: PgId(input.pg),
        replica: 0,
    });
    let mut outputs = Vec::new();
    for step in input.steps {
        let result = segment_step(&mut segment, step)
            .unwrap_or_else(|error| json!(segment_error_kind(&error)));
        let holes: Vec<(u64, u64)> = segment
            .holes()
            .iter()
            .map(|hole| (hole.after.0, hole.before.0))
            .collect();
        let held: Vec<u64> = segment.records().map(|r| r.lsn.0).collect();
        outputs.push(json!({
            "result": result,
            "scl": segment.scl().0,
            "epoch": segment.epoch().0,
            "vdl_hint": segment.vdl_hint().0,
            "holes": holes,
            "held": held,
            "truncations": ranges_json(segment.truncations()),
        }));
    }
    json!({ "steps": outputs })
}

// ---- recovery ----

#[derive(Deserialize)]
pub(crate) struct RecoveryInput {
    lal: u64,
    epoch: u64,
    pgs: Vec<u32>,
    reports: Vec<ReportSpec>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct ReportSpec {
    pub(crate) pg: u32,
    pub(crate) replica: u8,
    pub(crate) epoch: u64,
    pub(crate) scl: u64,
    pub(crate) vdl_hint: u64,
    pub(crate) tip_at_hint: u64,
    /// `(lsn, cpl, epoch of the writer that made it)`.
    pub(crate) held: Vec<(u64, bool, u64)>,
    #[serde(default)]
    pub(crate) truncations: Vec<(u64, u64, u64)>,
}

fn recovery_error_kind(error: &RecoveryError) -> &'static str {
    match error {
        RecoveryError::NoReadQuorum { .. } => "no_read_quorum",
        RecoveryError::EpochTooLow { .. } => "epoch_too_low",
        RecoveryError::UnknownPg { .. } => "unknown_pg",
    }
}

fn to_report(spec: &ReportSpec) -> SegmentReport {
    SegmentReport {
        segment: segment_id(spec.pg, spec.replica),
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
    }
}

pub(crate) fn evaluate_recovery(input: RecoveryInput) -> Value {
    let pgs: BTreeSet<PgId> = input.pgs.iter().map(|&pg| PgId(pg)).collect();
    let mut planner =
        RecoveryPlanner::new(QuorumConfig::AURORA, input.lal, Epoch(input.epoch), pgs);
    for spec in &input.reports {
        if let Err(error) = planner.handle_report(to_report(spec)) {
            return json!({ "error": recovery_error_kind(&error) });
        }
    }
    match planner.plan() {
        Ok((plan, _)) => json!({
            "vcl": plan.vcl.0,
            "vdl": plan.vdl.0,
            "truncation": [plan.truncation.lsn_begin.0, plan.truncation.lsn_end.0, plan.truncation.epoch.0],
            "history": ranges_json(&plan.history),
            "last_lsn_by_pg": plan.last_lsn_by_pg.iter().map(|(pg, lsn)| (pg.0.to_string(), lsn.0)).collect::<BTreeMap<_, _>>(),
            "next_lsn": plan.writer_start().next_lsn.0,
        }),
        Err(error) => json!({ "error": recovery_error_kind(&error) }),
    }
}

// ---- codec ----

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum CodecInput {
    Encode {
        record: RecordSpec,
    },
    Decode {
        hex: String,
    },
    /// S12: a log of frames back to back.
    Scan {
        hex: String,
    },
    /// S9: a page's records applied to a zero page up to `read_lsn`.
    Apply {
        records: Vec<RecordSpec>,
        read_lsn: u64,
    },
}

pub(crate) fn evaluate_codec(input: CodecInput) -> Value {
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
        CodecInput::Scan { hex: text } => {
            let Some(bytes) = unhex(&text) else {
                return json!({ "error": "bad_hex" });
            };
            let scan = scan_log(&bytes);
            json!({
                "lsns": scan.records.iter().map(|r| r.record().lsn.0).collect::<Vec<_>>(),
                "valid_bytes": scan.valid_bytes,
                "damaged_at": scan.damaged_at,
            })
        }
        CodecInput::Apply { records, read_lsn } => {
            let mut records: Vec<RedoRecord> = records.iter().map(RecordSpec::to_record).collect();
            records.sort_by_key(|r| r.lsn);
            let zero = vec![0u8; sixfold_core::PAGE_BYTES];
            match sixfold_core::redo::materialize(&zero, Lsn::ZERO, &records, Lsn(read_lsn)) {
                Ok((page, page_lsn)) => {
                    json!({ "page_lsn": page_lsn.0, "runs": nonzero_runs(&page) })
                }
                Err(sixfold_core::redo::RedoError::BrokenChain { .. }) => {
                    json!({ "error": "broken_chain" })
                }
                Err(sixfold_core::redo::RedoError::Malformed { .. }) => {
                    json!({ "error": "malformed" })
                }
            }
        }
    }
}

/// A page as its maximal runs of non-zero bytes: `[offset, hex]`.
fn nonzero_runs(page: &[u8]) -> Vec<(usize, String)> {
    let mut runs = Vec::new();
    let mut at = 0;
    while at < page.len() {
        if page[at] == 0 {
            at += 1;
            continue;
        }
        let start = at;
        while at < page.len() && page[at] != 0 {
            at += 1;
        }
        runs.push((start, hex(&page[start..at])));
    }
    runs
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

/// The hand-written cases of every suite with the reference outputs
/// (`conformance/vectors/<suite>.json`).
pub fn generate() -> Vec<VectorFile> {
    SUITES
        .iter()
        .map(|&suite| file_of(suite, cases::inputs(suite)))
        .collect()
}

/// A suite's file from `(name, rules, input)` triples, with the reference's outputs.
pub(crate) fn file_of(suite: &str, inputs: Vec<(String, Vec<&str>, Value)>) -> VectorFile {
    let cases = inputs
        .into_iter()
        .map(|(name, rules, input)| {
            let expected = evaluate(suite, &input).expect("generated inputs fit the schema");
            Case {
                name,
                rules: rules.into_iter().map(str::to_string).collect(),
                input,
                expected,
            }
        })
        .collect();
    VectorFile {
        suite: suite.to_string(),
        about: cases::about(suite).to_string(),
        cases,
    }
}

/// A small deterministic generator (xorshift64*), so the random cases are the same on
/// every machine without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---- wire ----

#[derive(Deserialize)]
pub(crate) struct WireInput {
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

pub(crate) fn evaluate_wire(input: WireInput) -> Value {
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
