//! Seed inputs for each target: one valid example of each format, so the fuzzer starts
//! from inputs that pass the checks instead of finding every magic number itself.
//! `cargo run -p sixfold-fuzz --bin fuzz-seeds -- fuzz/corpus` writes them.

use sixfold_cluster::session::{ClientHandshake, ServerHandshake};
use sixfold_cluster::wire::{self, ErrorCode, Message, NONCE_BYTES, SegmentStatus, WriterInfo};
use sixfold_conformance::sim::{self, FaultSet, Scope, SimOptions, Workload};
use sixfold_core::codec::{self, PageImage};
use sixfold_core::{
    DbId, Edit, Epoch, GossipRequest, Hole, Lsn, PageId, PgId, RedoBody, RedoRecord, SegmentId,
    SegmentReport, TruncationRange, types::PAGE_BYTES,
};
use sixfold_storage::meta::{self, SegmentMeta};

/// `(target, seed name, bytes)` for every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push((target, name.to_string(), bytes));
    };
    for (name, message) in messages() {
        add("wire", name, wire::encode(&message));
    }
    for (name, bytes) in session_inputs() {
        add("session", name, bytes);
    }
    let records = [
        record(5, edits()),
        record(6, RedoBody::FullImage(vec![3; PAGE_BYTES])),
    ];
    add("record", "edits", codec::encode_record_to_vec(&records[0]));
    add(
        "record",
        "full_image",
        codec::encode_record_to_vec(&records[1]),
    );
    add(
        "record",
        "log",
        records
            .iter()
            .flat_map(codec::encode_record_to_vec)
            .collect(),
    );
    let mut page = Vec::new();
    codec::encode_page(&page_image(), &mut page);
    add("page", "page", page);
    add("segment_meta", "meta", segment_meta().encode());
    let covers = [(PageId::new(1, 2), Lsn(9)), (PageId::new(1, 7), Lsn(12))];
    add(
        "segment_meta",
        "pagedir",
        meta::encode_pagedir(&covers.into_iter().collect()),
    );
    let ports = [7101, 7102, 7103, 7104, 7105, 7106];
    let six = sixfold_cluster::config::six_node_toml("demo", "s3cret", 16, &ports);
    // A fixed volume id, so the seed is the same on every run.
    let six: String = six
        .lines()
        .map(|line| match line.starts_with("volume_id") {
            true => "volume_id = \"000102030405060708090a0b0c0d0e0f\"\n".to_string(),
            false => format!("{line}\n"),
        })
        .collect();
    add("config", "six_nodes", six.into_bytes());
    add("trace", "sim_seed_1", sim_trace(1, 120).into_bytes());
    seeds
}

fn segment() -> SegmentId {
    SegmentId {
        pg: PgId(2),
        replica: 5,
    }
}

fn range() -> TruncationRange {
    TruncationRange {
        lsn_begin: Lsn(10),
        lsn_end: Lsn(20),
        epoch: Epoch(3),
    }
}

fn edits() -> RedoBody {
    RedoBody::Edits(vec![
        Edit {
            offset: 7,
            bytes: vec![1, 2, 3],
        },
        Edit {
            offset: 4000,
            bytes: vec![9; 96],
        },
    ])
}

fn record(lsn: u64, body: RedoBody) -> RedoRecord {
    RedoRecord {
        lsn: Lsn(lsn),
        pg: PgId(2),
        prev_lsn_pg: Lsn(lsn - 1),
        prev_lsn_page: Lsn(0),
        epoch: Epoch(3),
        page: PageId::new(1, 2050),
        cpl: lsn.is_multiple_of(2),
        body,
    }
}

fn page_image() -> PageImage {
    PageImage {
        page: PageId {
            db: DbId(1),
            page_no: 2,
        },
        lsn: Lsn(9),
        bytes: (0..PAGE_BYTES).map(|i| i as u8).collect(),
    }
}

fn segment_meta() -> SegmentMeta {
    let mut meta = SegmentMeta::new(segment());
    meta.epoch = Epoch(3);
    meta.vdl_hint = Lsn(40);
    meta.checkpoint = Lsn(30);
    meta.truncations = vec![range()];
    meta
}

/// One message of each kind.
fn messages() -> Vec<(&'static str, Message)> {
    let status = SegmentStatus {
        segment: segment(),
        epoch: Epoch(3),
        scl: Lsn(8),
        vdl_hint: Lsn(7),
        max_held: Lsn(9),
        records: 4,
        problem: "blocked: disk full".into(),
        repairing: true,
    };
    vec![
        (
            "hello",
            Message::Hello {
                version: wire::WIRE_VERSION,
                node_id: 4,
                nonce: [9; 32],
            },
        ),
        (
            "auth",
            Message::Auth {
                version: wire::WIRE_VERSION,
                cluster_id: "demo".into(),
                node_id: 0,
                nonce: [1; 32],
                mac: [2; 32],
            },
        ),
        (
            "auth_ok",
            Message::AuthOk {
                node_id: 3,
                mac: [4; 32],
            },
        ),
        (
            "error",
            Message::Error {
                request_id: 9,
                code: ErrorCode::StaleEpoch,
                epoch: Epoch(4),
                message: "stale".into(),
            },
        ),
        (
            "write_batch",
            Message::WriteBatch {
                request_id: 7,
                segment: segment(),
                epoch: Epoch(3),
                vdl_hint: Lsn(4),
                truncation: Some(range()),
                records: vec![record(5, edits()), record(6, edits())],
            },
        ),
        (
            "ack",
            Message::Ack {
                request_id: 7,
                segment: segment(),
                scl: Lsn(6),
                epoch: Epoch(3),
            },
        ),
        (
            "get_page",
            Message::GetPage {
                request_id: 8,
                segment: segment(),
                epoch: Epoch(3),
                read_point: Lsn(6),
                pg_lsn: Lsn(6),
                page: PageId::new(1, 2),
            },
        ),
        (
            "page",
            Message::Page {
                request_id: 8,
                page: PageId::new(1, 2),
                page_lsn: Lsn(5),
                bytes: Some(vec![7; PAGE_BYTES]),
            },
        ),
        (
            "gossip",
            Message::Gossip {
                request_id: 10,
                segment: segment(),
                request: GossipRequest {
                    epoch: Epoch(3),
                    scl: Lsn(4),
                    holes: vec![Hole {
                        after: Lsn(4),
                        before: Lsn(8),
                    }],
                    max_held: Lsn(9),
                    truncations: vec![range()],
                },
            },
        ),
        (
            "gossip_records",
            Message::GossipRecords {
                request_id: 10,
                segment: segment(),
                epoch: Epoch(3),
                truncations: vec![range()],
                records: vec![record(5, edits())],
                scl: Lsn(4),
                repairing: false,
            },
        ),
        (
            "truncate",
            Message::Truncate {
                request_id: 11,
                history: vec![range()],
            },
        ),
        (
            "raise_epoch",
            Message::RaiseEpoch {
                request_id: 12,
                epoch: Epoch(5),
            },
        ),
        (
            "reports",
            Message::Reports {
                request_id: 13,
                epoch: Epoch(3),
                truncations: vec![range()],
                reports: vec![SegmentReport {
                    segment: segment(),
                    epoch: Epoch(3),
                    scl: Lsn(8),
                    vdl_hint: Lsn(6),
                    tip_at_hint: Lsn(6),
                    held: vec![(Lsn(7), false, Epoch(3)), (Lsn(8), true, Epoch(3))],
                    truncations: vec![range()],
                }],
                lease_remaining_ms: 1_021,
                repairing: vec![segment()],
                absent_may_be_lost: true,
                incarnation: 0x5eed,
                blank: false,
            },
        ),
        (
            "join_genesis",
            Message::JoinGenesis {
                request_id: 14,
                incarnation: 0x5eed,
            },
        ),
        (
            "heartbeat",
            Message::Heartbeat {
                request_id: 14,
                epoch: Epoch(3),
                vcl: Lsn(9),
                vdl: Lsn(8),
                pgmrpl: Lsn(2),
                truncation: Some(range()),
            },
        ),
        ("status", Message::Status { request_id: 15 }),
        (
            "status_reply",
            Message::StatusReply {
                request_id: 15,
                node_id: 2,
                epoch: Epoch(3),
                writer: Some(WriterInfo {
                    epoch: Epoch(3),
                    vcl: Lsn(9),
                    vdl: Lsn(8),
                    age_ms: 40,
                }),
                segments: vec![status],
                lease_ms: 1_021,
                absent_may_be_lost: false,
            },
        ),
    ]
}

/// Inputs of the `session` target: a mode byte, then what that mode reads.
fn session_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let config = crate::session_config();
    let server = ServerHandshake::new(config, 1, [1; NONCE_BYTES]);
    let client = ClientHandshake::new(config, 0, 1, [2; NONCE_BYTES]);
    let hello = server.hello();
    let (awaiting, auth) = ClientHandshake::new(config, 0, 1, [2; NONCE_BYTES])
        .handle_hello(hello.clone())
        .expect("own hello");
    let (_, auth_ok) = server.handle_auth(auth.clone()).expect("own auth");
    drop((awaiting, client));
    let (mut client_session, _) = crate::session_pair(config);
    let status = wire::encode(&Message::Status { request_id: 1 });
    let mut sealed = client_session.sealer.seal(&status).expect("fresh");
    sealed.extend(client_session.sealer.seal(&status).expect("second"));
    let with_mode = |mode: u8, bytes: Vec<u8>| [vec![mode], bytes].concat();
    vec![
        ("server_auth", with_mode(0, wire::encode(&auth))),
        ("client_hello", with_mode(1, wire::encode(&hello))),
        ("client_auth_ok", with_mode(2, wire::encode(&auth_ok))),
        ("sealed_frames", with_mode(3, sealed)),
        ("sealed_payload", with_mode(4, status)),
    ]
}

/// The first `lines` lines of a simulator trace (the model's scope, no faults).
fn sim_trace(seed: u64, lines: usize) -> String {
    let outcome = sim::run(SimOptions {
        seed,
        faults: FaultSet::none(),
        mtrs: 6,
        mutant: None,
        scope: Scope::Model,
        workload: Workload::Pages,
    });
    outcome
        .trace
        .to_json_lines()
        .lines()
        .take(lines)
        .map(|l| format!("{l}\n"))
        .collect()
}
