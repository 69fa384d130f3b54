//! The hand-written cases: each pins a rule, a limit or an error kind, and names the rules
//! it pins (spec/conformance.md lists them per suite).

use serde_json::{Value, json};
use sixfold_core::codec::encode_record_to_vec;
use sixfold_core::{Epoch, Lsn, PageId, PgId, RedoRecord, SegmentId, TruncationRange};

use super::{RecordSpec, ReportSpec, Rng, hex};

pub(crate) type Input = (String, Vec<&'static str>, Value);

pub(crate) fn inputs(suite: &str) -> Vec<Input> {
    match suite {
        "writer" => writer_inputs(),
        "segment" => segment_inputs(),
        "recovery" => recovery_inputs(),
        "codec" => codec_inputs(),
        _ => wire_inputs(),
    }
}

pub(crate) fn about(suite: &str) -> &'static str {
    match suite {
        "writer" => {
            "Writer bookkeeping (spec/conformance.md, writer): MTR submissions, acks and reads in; per step the result, PGCL by PG, VCL, VDL, PGMRPL, commits acknowledged and failed, fenced. Quorum 6/4/3, epoch 1, every change one byte at offset 0."
        }
        "segment" => {
            "One segment of a PG (spec/conformance.md, segment): writes, truncations, epochs, reports, gossip answers and collection in; per step the result, SCL, epoch, VDL hint, holes, held LSNs and truncation ranges."
        }
        "recovery" => {
            "Recovery planning (spec/conformance.md, recovery): segment reports in; VCL, VDL, truncation range, history, last LSN by PG and the next LSN out, or an error. Quorum 6/4/3."
        }
        "codec" => {
            "Record frames of spec/formats.md (spec/conformance.md, codec): encode a record, decode a frame, scan a log, apply a page's redo."
        }
        _ => {
            "Plain frames of spec/wire.md (spec/conformance.md, wire): a frame in; its message type and whether it re-encodes byte for byte, or an error kind."
        }
    }
}

fn case(name: &str, rules: &[&'static str], input: Value) -> Input {
    (name.to_string(), rules.to_vec(), input)
}

// ---- writer ----

pub(crate) fn ack(pg: u32, replica: u8, scl: u64) -> Value {
    json!({"op": "ack", "pg": pg, "replica": replica, "scl": scl, "epoch": 1})
}

fn quorum_acks(pg: u32, scl: u64) -> Vec<Value> {
    (0..4).map(|replica| ack(pg, replica, scl)).collect()
}

fn steps(parts: Vec<Vec<Value>>) -> Vec<Value> {
    parts.into_iter().flatten().collect()
}

fn writer_inputs() -> Vec<Input> {
    let w = |lal: u64, steps: Vec<Value>| json!({"pg_pages": 4, "lal": lal, "steps": steps});
    let submit = |pages: &[(u32, u32)]| vec![json!({"op": "submit", "pages": pages})];
    let mut cases = vec![
        case(
            "write quorum releases the commit (C1, C4)",
            &["C1", "C4", "Q1", "W4"],
            w(
                100,
                steps(vec![
                    submit(&[(1, 0)]),
                    vec![ack(0, 0, 1), ack(0, 1, 1), ack(0, 2, 1), ack(0, 5, 1)],
                ]),
            ),
        ),
        case(
            "an MTR across PGs waits for its CPL (C2, C3, C4)",
            &["C2", "C3", "C4", "C5", "L2", "W2"],
            w(
                100,
                steps(vec![
                    submit(&[(1, 0), (1, 4)]),
                    quorum_acks(0, 1),
                    quorum_acks(1, 2),
                ]),
            ),
        ),
        case(
            "LAL back-pressure (W1)",
            &["W1"],
            w(
                2,
                steps(vec![
                    submit(&[(1, 0), (1, 1)]),
                    submit(&[(1, 2)]),
                    quorum_acks(0, 2),
                    submit(&[(1, 2)]),
                ]),
            ),
        ),
        case(
            "LAL at its exact limit: next LSN = VDL + LAL is allowed (W1)",
            &["W1", "L1"],
            w(
                3,
                steps(vec![submit(&[(1, 0), (1, 1), (1, 2)]), submit(&[(1, 3)])]),
            ),
        ),
        case(
            "a newer epoch's ack fences the writer (W6, E3, C6)",
            &["W6", "E3", "C6", "E5"],
            w(
                100,
                vec![
                    json!({"op": "submit", "pages": [[1, 0]]}),
                    json!({"op": "ack", "pg": 0, "replica": 0, "scl": 1, "epoch": 0}),
                    json!({"op": "ack", "pg": 0, "replica": 1, "scl": 1, "epoch": 2}),
                    ack(0, 2, 1),
                    json!({"op": "submit", "pages": [[1, 1]]}),
                ],
            ),
        ),
        case(
            "acks of a lower epoch, of an unknown PG and below the known SCL change nothing (W6)",
            &["W6"],
            w(
                100,
                vec![
                    json!({"op": "submit", "pages": [[1, 0], [1, 1]]}),
                    json!({"op": "ack", "pg": 0, "replica": 0, "scl": 2, "epoch": 0}),
                    json!({"op": "ack", "pg": 0, "replica": 1, "scl": 2, "epoch": 0}),
                    json!({"op": "ack", "pg": 0, "replica": 2, "scl": 2, "epoch": 0}),
                    json!({"op": "ack", "pg": 0, "replica": 3, "scl": 2, "epoch": 0}),
                    ack(7, 0, 2),
                    ack(0, 0, 2),
                    ack(0, 0, 1),
                    ack(0, 1, 2),
                    ack(0, 2, 2),
                    ack(0, 3, 2),
                ],
            ),
        ),
        case(
            "an ack's SCL counts only up to the PG's last allocated LSN (W6, C1)",
            &["W6", "C1"],
            w(100, steps(vec![submit(&[(1, 0)]), quorum_acks(0, 9)])),
        ),
        case(
            "an empty MTR is refused and changes nothing (W1)",
            &["L2"],
            w(
                100,
                vec![
                    json!({"op": "submit", "pages": []}),
                    json!({"op": "submit", "pages": [[1, 0]]}),
                ],
            ),
        ),
        case(
            "backlinks: PG and page (W3, L3)",
            &["W3", "L3", "W2", "L1"],
            w(
                100,
                steps(vec![
                    submit(&[(1, 0), (1, 5)]),
                    submit(&[(1, 1), (1, 0)]),
                    submit(&[(2, 0), (1, 4)]),
                ]),
            ),
        ),
        case(
            "a fenced writer refuses submissions and fails every waiter (C6, E3)",
            &["C6", "E3"],
            w(
                100,
                vec![
                    json!({"op": "submit", "pages": [[1, 0]]}),
                    json!({"op": "submit", "pages": [[1, 1]]}),
                    json!({"op": "ack", "pg": 0, "replica": 4, "scl": 0, "epoch": 5}),
                    json!({"op": "submit", "pages": [[1, 2]]}),
                    ack(0, 0, 2),
                ],
            ),
        ),
        case(
            "reads: read point at VDL, PGMRPL the lowest open read, candidates cover the PG's LSN (R1-R5)",
            &["R1", "R2", "R3", "R4", "R5"],
            w(
                100,
                steps(vec![
                    submit(&[(1, 0)]),
                    quorum_acks(0, 1),
                    vec![json!({"op": "begin_read"})],
                    submit(&[(1, 1)]),
                    vec![ack(0, 0, 2), ack(0, 1, 2), ack(0, 4, 2), ack(0, 5, 2)],
                    vec![
                        json!({"op": "read_candidates", "pg": 0, "read_point": 1}),
                        json!({"op": "read_candidates", "pg": 0, "read_point": 2}),
                        json!({"op": "begin_read"}),
                        json!({"op": "end_read", "read_point": 1}),
                        json!({"op": "read_candidates", "pg": 1, "read_point": 2}),
                        json!({"op": "end_read", "read_point": 2}),
                    ],
                ]),
            ),
        ),
        case(
            "re-send: records above the segment's SCL and above VDL (W7)",
            &["W7"],
            w(
                100,
                steps(vec![
                    submit(&[(1, 0), (1, 1)]),
                    submit(&[(1, 2), (1, 4)]),
                    vec![
                        ack(0, 0, 1),
                        json!({"op": "resend", "pg": 0, "replica": 0}),
                        json!({"op": "resend", "pg": 0, "replica": 5}),
                        json!({"op": "resend", "pg": 1, "replica": 0}),
                    ],
                    quorum_acks(0, 3),
                    quorum_acks(1, 4),
                    vec![json!({"op": "resend", "pg": 0, "replica": 5})],
                ]),
            ),
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
        cases.push(case(
            &format!("random writer bookkeeping #{index}"),
            &["C1", "C2", "C3"],
            json!({"pg_pages": 4, "lal": 20, "steps": steps}),
        ));
    }
    cases
}

// ---- segment ----

pub(crate) fn record(lsn: u64, prev: u64, cpl: bool) -> Value {
    json!({"lsn": lsn, "pg": 0, "prev_lsn_pg": prev, "page": [1, 0], "cpl": cpl})
}

fn record_of(epoch: u64, lsn: u64, prev: u64) -> Value {
    json!({"lsn": lsn, "pg": 0, "prev_lsn_pg": prev, "page": [1, 0], "cpl": true, "epoch": epoch})
}

pub(crate) fn write(epoch: u64, record: Value) -> Value {
    json!({"op": "write", "epoch": epoch, "vdl_hint": 0, "record": record})
}

fn truncate(lsn_begin: u64, lsn_end: u64, epoch: u64) -> Value {
    json!({"op": "truncate", "lsn_begin": lsn_begin, "lsn_end": lsn_end, "epoch": epoch})
}

/// Edits of `count` × 2048 bytes: 2 + count × 2052 body bytes.
fn big_edits(count: u16) -> Value {
    let bytes = "ab".repeat(2048);
    json!(
        (0..count)
            .map(|i| json!([(i % 2) * 2048, bytes]))
            .collect::<Vec<_>>()
    )
}

fn segment_inputs() -> Vec<Input> {
    let seg = |steps: Vec<Value>| json!({"pg": 0, "steps": steps});
    let mut cases = vec![
        case(
            "SCL follows backlinks in any order, duplicates change nothing (S3, S4, S5)",
            &["S3", "S4", "S5"],
            seg(vec![
                write(1, record(9, 5, true)),
                write(1, record(2, 0, true)),
                write(1, record(2, 0, true)),
                write(1, record(5, 2, true)),
            ]),
        ),
        case(
            "stale epochs are refused: after a recovery's raise, the old writer's writes are (S7, E4)",
            &["S7", "E2", "E4", "E5"],
            seg(vec![
                json!({"op": "raise_epoch", "epoch": 3}),
                write(2, record(1, 0, true)),
                json!({"op": "raise_epoch", "epoch": 2}),
                write(3, record(1, 0, true)),
            ]),
        ),
        case(
            "a recovery's RaiseEpoch must be above the segment's epoch; an equal one is stale (E1, E4)",
            &["E1", "E4", "S7"],
            seg(vec![
                json!({"op": "raise_epoch", "epoch": 2}),
                json!({"op": "raise_epoch", "epoch": 2}),
                json!({"op": "adopt_epoch", "epoch": 2}),
                json!({"op": "adopt_epoch", "epoch": 1}),
                json!({"op": "adopt_epoch", "epoch": 4}),
                json!({"op": "raise_epoch", "epoch": 5}),
            ]),
        ),
        case(
            "truncation voids and refuses (S8)",
            &["S8", "S13"],
            seg(vec![
                write(1, record(1, 0, true)),
                write(1, record(2, 1, false)),
                write(1, record(3, 2, true)),
                truncate(1, 10, 2),
                write(2, record(2, 1, false)),
                write(2, record_of(2, 11, 1)),
            ]),
        ),
        case(
            "a range never voids a record of a later epoch (S8)",
            &["S8"],
            seg(vec![
                truncate(2, 8, 2),
                write(3, record_of(3, 5, 0)),
                write(3, record_of(3, 6, 5)),
                write(3, record_of(2, 4, 0)),
            ]),
        ),
        case(
            "bad records are refused (S13)",
            &["S13", "L4"],
            seg(vec![
                write(
                    1,
                    json!({"lsn": 1, "pg": 7, "prev_lsn_pg": 0, "page": [1, 0]}),
                ),
                write(
                    1,
                    json!({"lsn": 3, "pg": 0, "prev_lsn_pg": 5, "page": [1, 0]}),
                ),
                write(
                    1,
                    json!({"lsn": 4, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": [[4095, "0102"]]}),
                ),
                write(1, record(1, 0, true)),
                write(
                    1,
                    json!({"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "cpl": true, "edits": [[1, "ff"]]}),
                ),
            ]),
        ),
        case(
            "an oversize body is refused as malformed; one at the bound is stored (S13, L4)",
            &["S13", "L4"],
            seg(vec![
                write(
                    1,
                    json!({"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": big_edits(4)}),
                ),
                write(
                    1,
                    json!({"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": big_edits(3)}),
                ),
                write(
                    1,
                    json!({"lsn": 2, "pg": 0, "prev_lsn_pg": 1, "page": [1, 0], "full_image_byte": 7}),
                ),
            ]),
        ),
        case(
            "refusals before the epoch check change nothing; later ones keep the raised epoch and hint (S7, S13)",
            &["S7", "S13", "W5"],
            seg(vec![
                write(1, record(1, 0, true)),
                json!({"op": "write", "epoch": 3, "vdl_hint": 1, "record": {"lsn": 2, "pg": 9, "prev_lsn_pg": 1, "page": [1, 0]}}),
                json!({"op": "write", "epoch": 3, "vdl_hint": 1, "record": {"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": [[0, "ee"]]}}),
                json!({"op": "write", "epoch": 4, "vdl_hint": 1, "record": {"lsn": 3, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0]}}),
            ]),
        ),
        case(
            "a later epoch's backlink drops skipped records; a skipped one arriving later is a duplicate (S14)",
            &["S14"],
            seg(vec![
                write(1, record(1, 0, true)),
                write(1, record_of(1, 2, 1)),
                write(1, record_of(1, 3, 2)),
                write(2, record_of(2, 20, 1)),
                write(2, record_of(1, 3, 2)),
                write(2, record_of(2, 21, 20)),
            ]),
        ),
        case(
            "a newer truncation history replaces the old one whole; an older or equal one changes nothing (S15)",
            &["S15", "X9"],
            seg(vec![
                write(1, record(1, 0, true)),
                truncate(1, 50, 2),
                truncate(1, 40, 2),
                truncate(5, 30, 1),
                write(3, record_of(3, 51, 1)),
                truncate(51, 80, 4),
            ]),
        ),
        case(
            "the recovery report: hint, tip at the hint, held above it, ranges (X1, tip_at_hint)",
            &["X1", "W5"],
            seg(vec![
                json!({"op": "write", "epoch": 1, "vdl_hint": 0, "record": record(1, 0, false)}),
                json!({"op": "write", "epoch": 1, "vdl_hint": 0, "record": record(2, 1, true)}),
                json!({"op": "write", "epoch": 1, "vdl_hint": 3, "record": record(5, 2, true)}),
                json!({"op": "write", "epoch": 1, "vdl_hint": 2, "record": record(7, 5, false)}),
                json!({"op": "report"}),
                json!({"op": "raise_epoch", "epoch": 2}),
                truncate(5, 60, 2),
                json!({"op": "report"}),
            ]),
        ),
        case(
            "gossip answers the asker's holes and everything above its highest LSN (S6)",
            &["S6", "S5"],
            seg(vec![
                write(1, record(1, 0, true)),
                write(1, record(3, 1, true)),
                write(1, record(4, 3, true)),
                write(1, record(8, 4, true)),
                json!({"op": "gossip_answer", "epoch": 1, "scl": 1, "max_held": 5, "holes": [[1, 5]]}),
                json!({"op": "gossip_answer", "epoch": 0, "scl": 0, "max_held": 0, "holes": []}),
                json!({"op": "gossip_answer", "epoch": 2, "scl": 0, "max_held": 3, "holes": []}),
            ]),
        ),
        case(
            "collection drops chained records up to SCL only (S10)",
            &["S10"],
            seg(vec![
                write(1, record(1, 0, true)),
                write(1, record(2, 1, true)),
                write(1, record(4, 3, true)),
                json!({"op": "forget", "lsn": 9}),
                json!({"op": "report"}),
                write(1, record(1, 0, true)),
                write(1, record(3, 2, true)),
            ]),
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
        cases.push(case(
            &format!("random arrival order #{index}"),
            &["S3", "S4", "S5"],
            json!({"pg": 0, "steps": steps}),
        ));
    }
    cases
}

// ---- recovery ----

pub(crate) fn report(pg: u32, replica: u8, hint: u64, held: &[(u64, bool)]) -> ReportSpec {
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

fn recovery_inputs() -> Vec<Input> {
    let input = |pgs: &[u32], reports: Vec<ReportSpec>| json!({"lal": 100, "epoch": 2, "pgs": pgs, "reports": reports});
    let at = |epoch: u64, pgs: &[u32], reports: Vec<ReportSpec>| json!({"lal": 10, "epoch": epoch, "pgs": pgs, "reports": reports});
    let with = |mut r: ReportSpec, f: &dyn Fn(&mut ReportSpec)| {
        f(&mut r);
        r
    };
    let empty3 = |pg: u32| {
        (0..3)
            .map(|replica| report(pg, replica, 0, &[]))
            .collect::<Vec<_>>()
    };
    let mut cases = vec![
        case(
            "fewer than a read quorum is refused (X2)",
            &["X2", "Q1"],
            input(&[0], vec![report(0, 0, 0, &[]), report(0, 1, 0, &[])]),
        ),
        case(
            "VCL stops at the first LSN nobody holds (X3, X4)",
            &["X3", "X4", "X7"],
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
        case(
            "recovery run again at a higher epoch over the same reports reaches the same VDL (X8)",
            &["X8"],
            json!({"lal": 100, "epoch": 3, "pgs": [0], "reports": [
                report(0, 0, 0, &[(1, true), (2, false)]), report(0, 1, 0, &[]), report(0, 2, 0, &[])]}),
        ),
        case(
            "a partial MTR is dropped (X4)",
            &["X4", "C3"],
            input(
                &[0],
                vec![
                    report(0, 0, 0, &[(1, true), (2, false)]),
                    report(0, 1, 0, &[]),
                    report(0, 2, 0, &[]),
                ],
            ),
        ),
        case(
            "a report of a higher epoch than the proposed one is refused (E1)",
            &["E1"],
            input(&[0], vec![with(report(0, 0, 0, &[]), &|r| r.epoch = 3)]),
        ),
        case(
            "a report of a PG not in the volume is refused",
            &["X1"],
            input(&[0], vec![report(4, 0, 0, &[])]),
        ),
        case(
            "VCL starts at the highest VDL hint; below it nothing is counted again (X3, tip_at_hint)",
            &["X3", "X7", "W5"],
            input(
                &[0],
                vec![
                    with(report(0, 0, 6, &[(7, false), (8, true)]), &|r| {
                        r.tip_at_hint = 6
                    }),
                    with(report(0, 1, 2, &[(5, true), (6, true)]), &|r| {
                        r.tip_at_hint = 2
                    }),
                    report(0, 2, 0, &[(1, true)]),
                ],
            ),
        ),
        case(
            "tip at the hint gives the PG's last LSN when no record at or below VDL is held (X7)",
            &["X7", "X6"],
            input(
                &[0, 1],
                vec![
                    with(report(0, 0, 9, &[]), &|r| r.tip_at_hint = 4),
                    report(0, 1, 0, &[]),
                    report(0, 2, 0, &[]),
                    with(report(1, 0, 9, &[]), &|r| r.tip_at_hint = 9),
                    report(1, 1, 0, &[]),
                    report(1, 2, 0, &[]),
                ],
            ),
        ),
        case(
            "a range in force counts as complete and raises the allocation base (X3, X4, X9)",
            &["X3", "X4", "X9", "W1"],
            at(
                3,
                &[0],
                vec![
                    with(report(0, 0, 0, &[(1, true), (14, true)]), &|r| {
                        r.epoch = 3;
                        r.truncations = vec![(1, 12, 2)];
                        r.held[1].2 = 2;
                    }),
                    with(report(0, 1, 0, &[(1, true), (3, true)]), &|r| r.epoch = 3),
                    with(report(0, 2, 0, &[]), &|r| r.epoch = 3),
                ],
            ),
        ),
        case(
            "only the newest history is in force; an older range outside it still bounds the base (X9, S15)",
            &["X9", "S15", "X4"],
            at(
                5,
                &[0],
                vec![
                    with(report(0, 0, 0, &[(1, true), (6, true)]), &|r| {
                        r.epoch = 5;
                        r.truncations = vec![(1, 20, 2)];
                    }),
                    with(report(0, 1, 0, &[(1, true), (2, false), (3, true)]), &|r| {
                        r.epoch = 5;
                        r.truncations = vec![(1, 30, 3), (3, 4, 4)];
                        r.held[1].2 = 3;
                        r.held[2].2 = 3;
                    }),
                    with(report(0, 2, 0, &[]), &|r| r.epoch = 5),
                ],
            ),
        ),
        case(
            "two histories of one epoch: the last report's, in (pg, replica) order, is in force (X9)",
            &["X9"],
            at(
                5,
                &[0],
                vec![
                    with(report(0, 0, 0, &[(1, true)]), &|r| {
                        r.epoch = 5;
                        r.truncations = vec![(1, 20, 4)];
                    }),
                    with(report(0, 1, 0, &[(1, true)]), &|r| {
                        r.epoch = 5;
                        r.truncations = vec![(2, 6, 3), (1, 3, 4)];
                    }),
                    with(report(0, 2, 0, &[(1, true), (4, true)]), &|r| r.epoch = 5),
                ],
            ),
        ),
        case(
            "two reports of one LSN: the higher epoch counts (X10)",
            &["X10"],
            at(
                4,
                &[0],
                vec![
                    with(report(0, 0, 0, &[(1, true), (2, true)]), &|r| r.epoch = 4),
                    with(report(0, 1, 0, &[(1, true), (2, false)]), &|r| {
                        r.epoch = 4;
                        r.held[1].2 = 3;
                    }),
                    with(report(0, 2, 0, &[]), &|r| r.epoch = 4),
                ],
            ),
        ),
        case(
            "two reports of one LSN and epoch: a CPL if either says so (X10)",
            &["X10", "L2"],
            input(
                &[0],
                vec![
                    report(0, 0, 0, &[(1, false)]),
                    report(0, 1, 0, &[(1, true)]),
                    report(0, 2, 0, &[]),
                ],
            ),
        ),
        case(
            "a record in a range of its own or a later epoch is void, not held (X3, S8)",
            &["X3", "S8", "X5"],
            at(
                4,
                &[0],
                vec![
                    with(report(0, 0, 0, &[(1, true), (2, true), (3, true)]), &|r| {
                        r.epoch = 4;
                        r.truncations = vec![(1, 2, 3)];
                    }),
                    with(report(0, 1, 0, &[(1, true)]), &|r| r.epoch = 4),
                    with(report(0, 2, 0, &[]), &|r| r.epoch = 4),
                ],
            ),
        ),
        case(
            "no reports of an empty volume: VDL 0, truncation (0, LAL] (X4, X7)",
            &["X4", "X7"],
            json!({"lal": 48, "epoch": 2, "pgs": [0, 1], "reports": ([empty3(0), empty3(1)].concat())}),
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
        cases.push(case(
            &format!("random reports #{index}"),
            &["X3", "X4"],
            input(&[0, 1], reports),
        ));
    }
    cases
}

// ---- codec ----

fn frame_of(spec: &Value) -> Vec<u8> {
    encode_record_to_vec(
        &serde_json::from_value::<RecordSpec>(spec.clone())
            .expect("valid spec")
            .to_record(),
    )
}

/// Recomputes both CRCs of a frame whose header or body was edited.
fn reseal(mut frame: Vec<u8>) -> Vec<u8> {
    let header_crc = crc32c::crc32c(&frame[0..56]);
    frame[56..60].copy_from_slice(&header_crc.to_le_bytes());
    let body_crc = crc32c::crc32c(&frame[64..]);
    frame[60..64].copy_from_slice(&body_crc.to_le_bytes());
    frame
}

fn decode(bytes: &[u8]) -> Value {
    json!({"op": "decode", "hex": hex(bytes)})
}

fn codec_inputs() -> Vec<Input> {
    let first =
        json!({"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 2], "edits": [[16, "68656c6c6f"]]});
    let encoded = frame_of(&first);
    let edited = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = encoded.clone();
        f(&mut bytes);
        reseal(bytes)
    };
    let mut flipped = encoded.clone();
    flipped[70] ^= 0x01;
    let mut image: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    image[0] = 1;
    let image_spec = json!({"lsn": 12, "pg": 1, "prev_lsn_pg": 11, "page": [3, 9], "full_image": hex(&image), "epoch": 2});
    let mut cases = vec![
        case(
            "encode an edit record (L5)",
            &["L5", "L3"],
            json!({"op": "encode", "record": first}),
        ),
        case(
            "encode a full image (L4, L5)",
            &["L4", "L5"],
            json!({"op": "encode", "record": {"lsn": 9, "pg": 3, "prev_lsn_pg": 4, "prev_lsn_page": 2, "page": [2, 3075], "cpl": true, "full_image_byte": 90, "epoch": 7}}),
        ),
        case("decode a valid frame (L5)", &["L5", "L6"], decode(&encoded)),
        case(
            "decode a full image of varied bytes (L4)",
            &["L4", "L6"],
            decode(&frame_of(&image_spec)),
        ),
        case(
            "decode ignores bytes after the frame and reports its length (L6)",
            &["L6"],
            decode(&[encoded.clone(), vec![0xAA; 9]].concat()),
        ),
        case(
            "a flipped body bit is caught (L5)",
            &["L5"],
            decode(&flipped),
        ),
        case(
            "a cut frame is truncated (L6)",
            &["L6"],
            json!({"op": "decode", "hex": hex(&encoded)[..100]}),
        ),
        case(
            "63 bytes: a header cut short is truncated, before any magic check (L6)",
            &["L6"],
            decode(&[0u8; 63]),
        ),
        case("garbage has a bad magic (L6)", &["L6"], decode(&[0u8; 80])),
        case(
            "a flipped header bit is a header CRC error (L5)",
            &["L5"],
            decode(&{
                let mut b = encoded.clone();
                b[20] ^= 4;
                b
            }),
        ),
        case(
            "version 2 with a valid header CRC is bad_version (L6)",
            &["L6"],
            decode(&edited(&|b| b[4] = 2)),
        ),
        case(
            "version 2 with a stale header CRC is header_crc: the CRC comes first (L6)",
            &["L6"],
            decode(&{
                let mut b = encoded.clone();
                b[4] = 2;
                b
            }),
        ),
        case(
            "body_bytes 8193 with a valid header CRC is oversize (L6)",
            &["L6", "L4"],
            decode(&edited(&|b| {
                b[8..12].copy_from_slice(&8193u32.to_le_bytes())
            })),
        ),
        case(
            "an unknown flag bit is malformed (L6)",
            &["L6"],
            decode(&edited(&|b| b[5] = 4)),
        ),
        case(
            "a reserved byte set is malformed (L6)",
            &["L6"],
            decode(&edited(&|b| b[7] = 1)),
        ),
        case(
            "a backlink not below the LSN is malformed (L3, L6)",
            &["L3", "L6"],
            decode(&edited(&|b| b[24..32].copy_from_slice(&1u64.to_le_bytes()))),
        ),
        case(
            "LSN 0 is malformed (L6)",
            &["L6"],
            decode(&edited(&|b| b[16..24].copy_from_slice(&0u64.to_le_bytes()))),
        ),
        case(
            "a full-image flag on an edit body is malformed (L4)",
            &["L4", "L6"],
            decode(&edited(&|b| b[5] = 2)),
        ),
        case(
            "an edit past the page end is malformed (L4)",
            &["L4", "L6"],
            decode(&edited(&|b| {
                b[66..68].copy_from_slice(&4092u16.to_le_bytes())
            })),
        ),
        case(
            "an edit of length 0 is malformed (L4)",
            &["L4", "L6"],
            decode(&reseal({
                let mut b = encoded[..66].to_vec();
                b.extend_from_slice(&[0, 0, 0, 0]);
                b[8..12].copy_from_slice(&6u32.to_le_bytes());
                b
            })),
        ),
        case(
            "bytes after the last edit are malformed (L4)",
            &["L4", "L6"],
            decode(&reseal({
                let mut b = encoded.clone();
                b.push(0);
                b[8..12].copy_from_slice(&12u32.to_le_bytes());
                b
            })),
        ),
        case(
            "odd hex is bad_hex",
            &["L6"],
            json!({"op": "decode", "hex": "abc"}),
        ),
        case(
            "encode refuses an oversize body (L4)",
            &["L4"],
            json!({"op": "encode", "record": {"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": big_edits(4)}}),
        ),
        case(
            "encode at the body bound: 2 + 3 × 2052 + 2050 = 8208 is over, 2 + 4 × 2046 = 8186 fits (L4)",
            &["L4"],
            json!({"op": "encode", "record": {"lsn": 1, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": [[0, "11".repeat(2042)], [2042, "22".repeat(2042)], [0, "33".repeat(2042)], [2042, "44".repeat(2042)]]}}),
        ),
        case(
            "a log scan: damage is skipped, a torn tail cut (S12, S11)",
            &["S12", "S11"],
            json!({"op": "scan", "hex": hex(&[
                encoded.clone(),
                flipped.clone(),
                frame_of(&json!({"lsn": 3, "pg": 0, "prev_lsn_pg": 1, "page": [1, 2]})),
                encoded[..40].to_vec()].concat())}),
        ),
        case(
            "redo applies a page's records in LSN order up to the read point (S9)",
            &["S9", "R3"],
            json!({"op": "apply", "read_lsn": 7, "records": [
                {"lsn": 5, "pg": 0, "prev_lsn_pg": 2, "prev_lsn_page": 2, "page": [1, 0], "edits": [[1, "0203"]]},
                {"lsn": 2, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0], "edits": [[0, "0101"], [4000, "ff"]]},
                {"lsn": 9, "pg": 0, "prev_lsn_pg": 5, "prev_lsn_page": 5, "page": [1, 0], "edits": [[0, "09"]]}]}),
        ),
        case(
            "redo stops at a broken page chain (S9)",
            &["S9"],
            json!({"op": "apply", "read_lsn": 9, "records": [
                {"lsn": 2, "pg": 0, "prev_lsn_pg": 0, "page": [1, 0]},
                {"lsn": 5, "pg": 0, "prev_lsn_pg": 2, "prev_lsn_page": 3, "page": [1, 0]}]}),
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
        cases.push(case(
            &format!("random encode #{index}"),
            &["L5"],
            json!({"op": "encode", "record": spec}),
        ));
    }
    cases
}

// ---- wire ----

fn wire_inputs() -> Vec<Input> {
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
        cases.push(case(
            &format!("{name} (valid)"),
            &["W5", "W6", "R3"],
            json!({ "frame": hex(&bytes) }),
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        cases.push(case(
            &format!("{name}, a payload bit flipped: CRC"),
            &["L5"],
            json!({ "frame": hex(&flipped) }),
        ));
        cases.push(case(
            &format!("{name}, cut short"),
            &["L6"],
            json!({ "frame": hex(&bytes[..bytes.len() - 3]) }),
        ));
    }
    let mut oversize = vec![0u8; 8];
    oversize[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(case(
        "a length above MAX_FRAME_BYTES",
        &["L6"],
        json!({ "frame": hex(&oversize) }),
    ));
    let mut unknown = Vec::new();
    write_frame(&mut unknown, &[0xEE, 0, 0, 0]).expect("in-memory write");
    cases.push(case(
        "an unknown message type",
        &["L6"],
        json!({ "frame": hex(&unknown) }),
    ));
    let mut short = Vec::new();
    let ack = encode(&messages[0].1);
    write_frame(&mut short, &ack[..ack.len() - 4]).expect("in-memory write");
    cases.push(case(
        "an ack missing its last field",
        &["L6"],
        json!({ "frame": hex(&short) }),
    ));
    let mut bad_replica = Vec::new();
    let mut payload = ack.clone();
    payload[13] = 6;
    write_frame(&mut bad_replica, &payload).expect("in-memory write");
    cases.push(case(
        "an ack naming replica 6 is malformed",
        &["Q1", "L6"],
        json!({ "frame": hex(&bad_replica) }),
    ));
    let mut trailing = Vec::new();
    write_frame(&mut trailing, &[ack.clone(), vec![0]].concat()).expect("in-memory write");
    cases.push(case(
        "a byte after the last field is malformed",
        &["L6"],
        json!({ "frame": hex(&trailing) }),
    ));
    cases
}
