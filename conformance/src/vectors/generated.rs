//! Vectors derived from runs (`conformance/vectors/generated/<suite>.json`), so the suites
//! hold over a thousand cases, not tens:
//! - recovery: every recovery of `sixfold sim` runs (the deterministic simulator with all
//!   faults): the reports each recovering writer took (`report_taken` trace events) are the
//!   input; the simulator's own decision (`recovery_completed`) must equal the reference's
//!   output, which [`recovery_cases`] asserts;
//! - writer, segment, codec: runs of the core state machines driven by a seeded random
//!   scheduler: a `WriterState` allocating MTRs, its records delivered to one segment lost,
//!   duplicated and reordered, with epoch changes, truncations, reports, gossip and
//!   collection between; acks at realistic SCLs; the records' frames, cut and bit-flipped.
//!
//! Inputs come from the runs; expected outputs from [`super::evaluate`], like every vector.

use serde_json::{Value, json};
use sixfold_core::codec::encode_record_to_vec;
use sixfold_core::{
    Edit, Epoch, Geometry, Mtr, PageId, QuorumConfig, RedoBody, RedoRecord, WriterConfig,
    WriterStart, WriterState,
};

use super::{RecordSpec, ReportSpec, Rng, VectorFile, file_of, hex};
use crate::sim::{self, FaultSet, Scope, SimOptions, Workload};
use crate::trace::{SimEvent, TraceEvent};

/// Simulator seeds the recovery suite is drawn from.
pub const RECOVERY_SEEDS: u64 = 120;
pub const WRITER_CASES: usize = 250;
pub const SEGMENT_CASES: usize = 300;
pub const CODEC_CASES: usize = 200;

/// Every generated suite (no wire: its layouts are few and hand-written).
pub fn generate() -> Vec<VectorFile> {
    vec![
        file_of("writer", writer_cases()),
        file_of("segment", segment_cases()),
        file_of("recovery", recovery_cases()),
        file_of("codec", codec_cases()),
    ]
}

type Input = (String, Vec<&'static str>, Value);

// ---- recovery, from the simulator ----

fn parse_segment(text: &str) -> Option<(u32, u8)> {
    let (pg, replica) = text.strip_prefix("pg")?.split_once('.')?;
    Some((pg.parse().ok()?, replica.parse().ok()?))
}

/// One case per recovery that decided in the first [`RECOVERY_SEEDS`] seeds.
pub fn recovery_cases() -> Vec<Input> {
    let mut cases = Vec::new();
    for seed in 0..RECOVERY_SEEDS {
        let outcome = sim::run(SimOptions {
            seed,
            faults: FaultSet::all(),
            mtrs: 60,
            mutant: None,
            scope: Scope::Full,
            workload: Workload::Pages,
        });
        assert!(outcome.passed(), "seed {seed}: {:?}", outcome.failure);
        let mut pending: std::collections::BTreeMap<String, (u64, Vec<ReportSpec>)> =
            Default::default();
        for line in &outcome.trace.lines {
            match &line.event {
                TraceEvent::Sim(SimEvent::WriterStarted { epoch }) => {
                    pending.insert(line.actor.clone(), (*epoch, Vec::new()));
                }
                TraceEvent::Sim(SimEvent::ReportTaken {
                    segment,
                    epoch,
                    scl,
                    vdl_hint,
                    tip_at_hint,
                    held,
                    truncations,
                }) => {
                    let (Some((pg, replica)), Some((_, reports))) =
                        (parse_segment(segment), pending.get_mut(&line.actor))
                    else {
                        continue;
                    };
                    reports.push(ReportSpec {
                        pg,
                        replica,
                        epoch: *epoch,
                        scl: *scl,
                        vdl_hint: *vdl_hint,
                        tip_at_hint: *tip_at_hint,
                        held: held.clone(),
                        truncations: truncations.clone(),
                    });
                }
                TraceEvent::Protocol(sixfold_core::ProtocolEvent::RecoveryCompleted {
                    epoch,
                    vcl,
                    vdl,
                }) => {
                    let Some((started, reports)) = pending.remove(&line.actor) else {
                        continue;
                    };
                    assert_eq!(started, epoch.0);
                    let input = json!({"lal": Scope::Full.lal(), "epoch": epoch.0, "pgs": [0, 1], "reports": reports});
                    let expected = super::evaluate("recovery", &input).expect("schema");
                    assert_eq!(
                        (expected["vcl"].as_u64(), expected["vdl"].as_u64()),
                        (Some(vcl.0), Some(vdl.0)),
                        "seed {seed}: the vector's decision differs from the simulator's"
                    );
                    cases.push((
                        format!("sim seed {seed}, recovery at epoch {}", epoch.0),
                        vec!["X3", "X4", "X7", "X9"],
                        input,
                    ));
                }
                _ => {}
            }
        }
    }
    cases
}

// ---- writer ----

const PG_PAGES: u32 = 4;

fn writer_cases() -> Vec<Input> {
    let mut rng = Rng(0x6E4E_7A7E);
    (0..WRITER_CASES)
        .map(|index| {
            let lal = 4 + rng.below(12);
            let mut steps = Vec::new();
            let mut allocated = 0u64;
            let mut scls = [[0u64; 6]; 3];
            let mut reads: Vec<u64> = Vec::new();
            for _ in 0..8 + rng.below(12) {
                match rng.below(10) {
                    0..=2 => {
                        let pages: Vec<(u32, u32)> = (0..rng.below(4))
                            .map(|_| (1 + rng.below(2) as u32, rng.below(3 * PG_PAGES as u64) as u32))
                            .collect();
                        allocated += pages.len() as u64;
                        steps.push(json!({"op": "submit", "pages": pages}));
                    }
                    3..=7 if allocated > 0 => {
                        let pg = rng.below(3) as usize;
                        let replica = rng.below(6) as usize;
                        let scl = (scls[pg][replica] + 1 + rng.below(3)).min(allocated);
                        scls[pg][replica] = scl;
                        let epoch = if rng.below(40) == 0 { 2 } else { 1 };
                        steps.push(json!({"op": "ack", "pg": pg, "replica": replica, "scl": scl, "epoch": epoch}));
                    }
                    8 => {
                        if let Some(point) = reads.pop() {
                            steps.push(json!({"op": "end_read", "read_point": point}));
                        } else {
                            steps.push(json!({"op": "begin_read"}));
                            reads.push(u64::MAX);
                        }
                    }
                    _ => {
                        let pg = rng.below(3);
                        steps.push(json!({"op": "resend", "pg": pg, "replica": rng.below(6)}));
                    }
                }
            }
            let input = json!({"pg_pages": PG_PAGES, "lal": lal, "steps": steps});
            (format!("generated writer run #{index}"), vec!["W1", "W3", "W6", "W7", "C1", "C2", "C3", "C5"], fix_read_points(input))
        })
        .collect()
}

/// `end_read` must name a read point `begin_read` returned: run the reference to learn it.
fn fix_read_points(mut input: Value) -> Value {
    let output = super::evaluate("writer", &input).expect("schema");
    let mut open: Vec<u64> = Vec::new();
    let steps = input["steps"].as_array_mut().expect("steps");
    for (step, out) in steps
        .iter_mut()
        .zip(output["steps"].as_array().expect("steps"))
    {
        match step["op"].as_str() {
            Some("begin_read") => open.extend(out["result"]["read_point"].as_u64()),
            Some("end_read") => step["read_point"] = json!(open.pop().unwrap_or(0)),
            _ => {}
        }
    }
    input
}

// ---- segment ----

/// A writer's stream of records for PG 0, as a run of the core writer makes them.
fn record_stream(rng: &mut Rng, epoch: u64, count: usize, start: &mut u64) -> Vec<RedoRecord> {
    let config = WriterConfig {
        geometry: Geometry { pg_pages: PG_PAGES },
        quorum: QuorumConfig::AURORA,
        lal: 1_000,
    };
    let mut writer = WriterState::new(config, WriterStart::empty(Epoch(epoch)));
    let mut records = Vec::new();
    while records.len() < count {
        let mut mtr = Mtr::new();
        for _ in 0..1 + rng.below(3) {
            let page = PageId::new(1, rng.below(2 * PG_PAGES as u64) as u32);
            let offset = rng.below(4000) as u16;
            let bytes = (0..1 + rng.below(4))
                .map(|_| rng.below(256) as u8)
                .collect();
            mtr.push(page, RedoBody::Edits(vec![Edit { offset, bytes }]));
        }
        let submitted = writer.submit_mtr(mtr).expect("LAL is wide");
        records.extend(submitted.records.into_iter().filter(|r| r.pg.0 == 0));
    }
    // Shift the stream above `start` so later epochs allocate above earlier ones (X7).
    let shift = *start;
    for record in &mut records {
        record.lsn.0 += shift;
        if record.prev_lsn_pg.0 > 0 || shift > 0 {
            record.prev_lsn_pg.0 += shift;
        }
        if record.prev_lsn_page.0 > 0 {
            record.prev_lsn_page.0 += shift;
        }
    }
    *start = records.last().map_or(shift, |r| r.lsn.0);
    records
}

fn segment_cases() -> Vec<Input> {
    let mut rng = Rng(0x5E6E_0017);
    (0..SEGMENT_CASES)
        .map(|index| {
            let mut steps = Vec::new();
            let mut top = 0u64;
            let mut epoch = 1u64;
            let count = 3 + rng.below(6) as usize;
            let first = record_stream(&mut rng, epoch, count, &mut top);
            let mut stream: Vec<(u64, RedoRecord)> = first.into_iter().map(|r| (epoch, r)).collect();
            if rng.below(2) == 0 {
                // A recovery: a new epoch truncates above some LSN and writes above the range.
                epoch += 1 + rng.below(2);
                let keep = stream.len() as u64 * rng.below(100) / 100;
                let begin = stream.get(keep as usize).map_or(top, |(_, r)| r.prev_lsn_pg.0);
                let end = top + rng.below(4);
                steps.push(json!({"op": "raise_epoch", "epoch": epoch}));
                if rng.below(3) != 0 {
                    steps.push(json!({"op": "truncate", "lsn_begin": begin, "lsn_end": end, "epoch": epoch}));
                }
                let mut next = end;
                let count = 2 + rng.below(4) as usize;
                let mut later = record_stream(&mut rng, epoch, count, &mut next);
                if let Some(first) = later.first_mut() {
                    first.prev_lsn_pg.0 = begin;
                }
                stream.extend(later.into_iter().map(|r| (epoch, r)));
            }
            let writes = stream.len() + rng.below(4) as usize;
            for _ in 0..writes {
                let (batch_epoch, record) = &stream[rng.below(stream.len() as u64) as usize];
                let hint = rng.below(record.lsn.0);
                steps.push(json!({"op": "write", "epoch": batch_epoch, "vdl_hint": hint,
                    "record": RecordSpec::from_record(record)}));
                match rng.below(12) {
                    0 => steps.push(json!({"op": "report"})),
                    1 => steps.push(json!({"op": "gossip_answer", "epoch": epoch, "scl": rng.below(4), "max_held": rng.below(8), "holes": []})),
                    2 => steps.push(json!({"op": "forget", "lsn": rng.below(record.lsn.0 + 1)})),
                    3 => steps.push(json!({"op": "adopt_epoch", "epoch": epoch + rng.below(2)})),
                    _ => {}
                }
            }
            steps.push(json!({"op": "report"}));
            (
                format!("generated segment run #{index}"),
                vec!["S3", "S4", "S5", "S7", "S8", "S14", "S15"],
                json!({"pg": 0, "steps": steps}),
            )
        })
        .collect()
}

// ---- codec ----

fn codec_cases() -> Vec<Input> {
    let mut rng = Rng(0xC0DE_C0DE);
    let mut top = 0;
    let records = record_stream(&mut rng, 1, CODEC_CASES, &mut top);
    records
        .iter()
        .enumerate()
        .take(CODEC_CASES)
        .map(|(index, record)| {
            let frame = encode_record_to_vec(record);
            let input = match index % 4 {
                0 => json!({"op": "encode", "record": RecordSpec::from_record(record)}),
                1 => json!({"op": "decode", "hex": hex(&frame)}),
                2 => {
                    let mut flipped = frame.clone();
                    let bit = rng.below(flipped.len() as u64 * 8) as usize;
                    flipped[bit / 8] ^= 1 << (bit % 8);
                    json!({"op": "decode", "hex": hex(&flipped)})
                }
                _ => {
                    let cut = rng.below(frame.len() as u64) as usize;
                    json!({"op": "decode", "hex": hex(&frame[..cut])})
                }
            };
            (format!("generated frame #{index}"), vec!["L5", "L6"], input)
        })
        .collect()
}
