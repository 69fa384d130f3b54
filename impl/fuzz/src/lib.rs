//! Fuzz targets for every decoder of bytes that come from a disk, a socket or a file the
//! operator wrote (L6, spec/wire.md §1: decoding never panics). Each target takes
//! arbitrary bytes and must return; a panic is a finding.
//!
//! The targets live here, in a workspace member built on stable with no fuzzing flags, so
//! `cargo test -p sixfold-fuzz` replays the corpus in `fuzz/corpus/<target>/` through each
//! of them. The coverage-guided engine (libFuzzer through `libfuzzer-sys`, instrumented with
//! stable `-Cpasses=sancov-module`) is the `fuzz/` crate outside the workspace;
//! `scripts/fuzz.sh` builds and runs it (docs/fuzzing.md).
//!
//! Most formats end in a CRC32C: random bytes almost never pass it, so each target also
//! decodes a copy whose checksums were recomputed, to reach the parsing behind the check.
//! Where a decode succeeds, encoding its result must give back an equal value.

use std::io::Cursor;
use std::path::Path;

use sixfold_cluster::ClusterConfig;
use sixfold_cluster::session::{ClientHandshake, ServerHandshake, Session};
use sixfold_cluster::wire::{self, Message, NONCE_BYTES};
use sixfold_conformance::trace::Trace;
use sixfold_core::codec::{
    self, PAGE_FRAME_BYTES, PAGE_HEADER_BYTES, RECORD_FRAME_BYTES_MAX, RECORD_HEADER_BYTES,
};
use sixfold_storage::meta::{self, SegmentMeta};

pub mod seeds;

/// A fuzz target: arbitrary bytes in; returns, or panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus folder and fuzz binary carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire),
    ("session", session),
    ("record", record),
    ("page", page),
    ("segment_meta", segment_meta),
    ("config", config),
    ("trace", trace),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// A wire message payload (every message kind), then a whole frame with its CRC fixed.
pub fn wire(data: &[u8]) {
    decode_round_trips(data);
    if data.len() > wire::MAX_FRAME_BYTES {
        return;
    }
    let mut frame = Vec::with_capacity(wire::FRAME_HEADER_BYTES + data.len());
    frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    frame.extend_from_slice(data);
    let payload = wire::read_frame(&mut Cursor::new(&frame), &mut || false)
        .expect("a frame with a right CRC and length reads back");
    assert_eq!(payload, data);
    // The same bytes taken as a frame header and payload: a length or CRC that lies.
    let _ = wire::receive(&mut Cursor::new(data), &mut || false);
}

fn decode_round_trips(payload: &[u8]) -> Option<Message> {
    let message = wire::decode(payload).ok()?;
    let again = wire::decode(&wire::encode(&message)).expect("an encoded message decodes");
    assert_eq!(again, message, "decode, encode, decode changes nothing");
    Some(message)
}

/// The handshake and sealed frames (A1–A4). The first byte picks what the rest is: a
/// message for either side of the handshake, a sealed frame from an attacker, or a payload
/// sealed by the real peer (so it passes the tag) and then opened and decoded.
pub fn session(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = session_config();
    let server = ServerHandshake::new(config, 1, [1; NONCE_BYTES]);
    let client = ClientHandshake::new(config, 0, 1, [2; NONCE_BYTES]);
    match mode % 5 {
        0 => {
            if let Ok(message) = wire::decode(rest) {
                let _ = server.handle_auth(message);
            }
        }
        1 => {
            if let Ok(message) = wire::decode(rest) {
                let _ = client.handle_hello(message);
            }
        }
        2 => {
            let (awaiting, _) = client.handle_hello(server.hello()).expect("own hello");
            if let Ok(message) = wire::decode(rest) {
                let _ = awaiting.handle_auth_ok(message);
            }
        }
        3 => {
            let (_, mut server_session) = session_pair(config);
            let mut reader = Cursor::new(rest);
            while wire::receive_sealed(&mut reader, &mut server_session.opener, &mut || false)
                .is_ok()
            {}
        }
        _ => {
            let (mut client_session, mut server_session) = session_pair(config);
            let payload = &rest[..rest.len().min(wire::MAX_FRAME_BYTES)];
            let frame = client_session.sealer.seal(payload).expect("fresh sealer");
            let opened = wire::read_sealed_frame(
                &mut Cursor::new(&frame),
                &mut server_session.opener,
                &mut || false,
            )
            .expect("a frame the peer sealed opens");
            assert_eq!(opened, payload);
            decode_round_trips(&opened);
        }
    }
}

fn session_config() -> &'static ClusterConfig {
    static CONFIG: std::sync::OnceLock<ClusterConfig> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = sixfold_cluster::config::six_node_toml(
            "fuzz",
            "fuzz secret",
            16,
            &[7101, 7102, 7103, 7104, 7105, 7106],
        );
        ClusterConfig::parse(&text, Path::new("/fuzz")).expect("generated config parses")
    })
}

fn session_pair(config: &ClusterConfig) -> (Session, Session) {
    let server = ServerHandshake::new(config, 1, [1; NONCE_BYTES]);
    let client = ClientHandshake::new(config, 0, 1, [2; NONCE_BYTES]);
    let (awaiting, auth) = client.handle_hello(server.hello()).expect("own hello");
    let (server_session, auth_ok) = server.handle_auth(auth).expect("own auth");
    let client_session = awaiting.handle_auth_ok(auth_ok).expect("own proof");
    (client_session, server_session)
}

/// Record frames (L5, L6) and a log file scan (S12), raw and with both CRCs fixed.
pub fn record(data: &[u8]) {
    record_round_trips(data);
    let _ = codec::scan_log(data);
    let mut fixed = data[..data.len().min(RECORD_FRAME_BYTES_MAX)].to_vec();
    if fix_record_crcs(&mut fixed) {
        record_round_trips(&fixed);
        let _ = codec::scan_log(&fixed);
    }
}

fn record_round_trips(bytes: &[u8]) {
    if let Ok((verified, used)) = codec::decode_record(bytes) {
        let record = verified.into_record();
        let encoded = codec::encode_record_to_vec(&record);
        assert_eq!(
            encoded.len(),
            used,
            "a decoded record re-encodes to its length"
        );
        let (again, _) = codec::decode_record(&encoded).expect("an encoded record decodes");
        assert_eq!(again.into_record(), record);
    }
}

/// Recomputes a record frame's header and body CRCs in place (spec/formats.md).
fn fix_record_crcs(frame: &mut [u8]) -> bool {
    if frame.len() < RECORD_HEADER_BYTES {
        return false;
    }
    let header_crc = crc32c::crc32c(&frame[0..56]);
    frame[56..60].copy_from_slice(&header_crc.to_le_bytes());
    let body_bytes = u32::from_le_bytes(frame[8..12].try_into().expect("4")) as usize;
    let body_end = RECORD_HEADER_BYTES
        .saturating_add(body_bytes)
        .min(frame.len());
    let body_crc = crc32c::crc32c(&frame[RECORD_HEADER_BYTES..body_end]);
    frame[60..64].copy_from_slice(&body_crc.to_le_bytes());
    true
}

/// Page frames (S11, S12), raw and with the CRC fixed; short inputs are padded to a frame.
pub fn page(data: &[u8]) {
    page_round_trips(data);
    let mut frame = data.to_vec();
    frame.resize(PAGE_FRAME_BYTES, 0);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&frame[0..28]),
        &frame[PAGE_HEADER_BYTES..PAGE_FRAME_BYTES],
    );
    frame[28..32].copy_from_slice(&crc.to_le_bytes());
    page_round_trips(&frame);
}

fn page_round_trips(bytes: &[u8]) {
    if let Ok(image) = codec::decode_page(bytes) {
        let mut encoded = Vec::new();
        codec::encode_page(&image, &mut encoded);
        assert_eq!(codec::decode_page(&encoded), Ok(image));
    }
}

/// A segment's `meta` and page directory files, raw and with the trailing CRC fixed.
pub fn segment_meta(data: &[u8]) {
    meta_round_trips(data);
    let _ = meta::decode_pagedir(data);
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        let body = fixed.len() - 4;
        let crc = crc32c::crc32c(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
        meta_round_trips(&fixed);
        if let Ok(covers) = meta::decode_pagedir(&fixed) {
            let encoded = meta::encode_pagedir(&covers);
            assert_eq!(meta::decode_pagedir(&encoded), Ok(covers));
        }
    }
}

fn meta_round_trips(bytes: &[u8]) {
    if let Ok(decoded) = SegmentMeta::decode(bytes) {
        assert_eq!(SegmentMeta::decode(&decoded.encode()), Ok(decoded));
    }
}

/// The cluster config file (TOML the operator wrote, or a file someone else can edit).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = ClusterConfig::parse(&text, Path::new("/fuzz/base")) {
        for pg in 0..4 {
            let _ = config.placement(sixfold_core::PgId(pg));
        }
        let _ = config.geometry();
    }
}

/// A trace file (spec/trace.md): read, then validated and refined against the model.
pub fn trace(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(trace) = Trace::from_json_lines(&text) {
        let _ = sixfold_conformance::validate::validate(&trace);
        let _ = sixfold_conformance::refine::refine(&trace, 2);
        let again = Trace::from_json_lines(&trace.to_json_lines()).expect("written trace reads");
        assert_eq!(again.hash(), trace.hash());
    }
}
