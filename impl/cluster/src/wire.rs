//! The wire protocol of spec/wire.md: frames, messages, handshake.
//!
//! A frame is `u32 payload length | u32 CRC32C(payload) | payload`, little-endian; the
//! payload is a type byte and fixed-width little-endian fields. Records travel in the
//! record frame format of the core codec (they carry their own CRCs, L5). Decoding never
//! panics on any input (L6): every length is checked against the bytes left and a limit.
//! The handshake messages travel in these plain frames; every frame after the handshake is
//! sealed with the connection's keys ([`crate::session`], A4).

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use sixfold_core::codec::{decode_record, encode_record};

use crate::identity::{Identity, VOLUME_ID_BYTES, VolumeId};
use crate::session::{
    FrameAuthError, FrameOpener, FrameSealer, HandshakeError, SEALED_HEADER_BYTES,
};
use sixfold_core::segment::Hole;
use sixfold_core::{
    DbId, Epoch, GossipRequest, Lsn, PAGE_BYTES, PageId, PgId, RedoRecord, SegmentId,
    SegmentReport, TruncationRange,
};

/// Version of this wire protocol; both ends must speak the same one.
pub const WIRE_VERSION: u16 = 5;
/// Bytes before a frame's payload: length and CRC32C.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest payload a frame may carry, in bytes; a larger length closes the connection.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Records in one write batch or gossip answer, at most.
pub const BATCH_RECORDS_MAX: usize = 256;
/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of an HMAC-SHA256.
pub const MAC_BYTES: usize = 32;
/// Longest string field (cluster id, error text), in bytes.
pub const STRING_BYTES_MAX: usize = 1024;
/// Entries of one list field (holes, truncations, reports, held LSNs), at most.
pub const LIST_ENTRIES_MAX: usize = 1 << 20;
/// How long a started frame may take to arrive completely, in milliseconds.
pub const FRAME_READ_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {found} bytes exceeds MAX_FRAME_BYTES {max}")]
    Oversize { found: usize, max: usize },
    #[error("frame CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("a frame stalled for more than {FRAME_READ_TIMEOUT_MS} ms")]
    Stalled,
    #[error("stopped")]
    Stopped,
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    FrameAuth(#[from] FrameAuthError),
    /// I2: the peer's identity disagrees with this side's config.
    #[error("identity refused: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    /// I2: the peer refused this side's identity; its reason.
    #[error("identity refused by the node: {0}")]
    IdentityRefused(String),
}

/// Why a node refused a request (spec/wire.md, `Error` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// S7, E2: the request's epoch is below the node's; `epoch` carries the node's.
    StaleEpoch = 1,
    /// S13: the node does not host this segment under the config's placement.
    WrongSegment = 2,
    /// S13, S8: a record was refused (malformed, truncated, conflicting).
    RefusedRecord = 3,
    /// R3: the segment cannot serve this read point yet (SCL or PGMRPL).
    NotReady = 4,
    /// The request could not be decoded or is not allowed here.
    BadRequest = 5,
    /// The node failed (disk error); the request may be retried elsewhere.
    Internal = 6,
    /// Handshake refused: wrong version, cluster id or secret.
    Auth = 7,
    /// I2: the client's identity (cluster, volume, pg_pages, segments) disagrees with the
    /// node's; the message names both values.
    IdentityMismatch = 8,
    /// I2: a request other than `Identify` before identification succeeded.
    NotIdentified = 9,
}

impl ErrorCode {
    fn from_u16(code: u16) -> Option<ErrorCode> {
        Some(match code {
            1 => ErrorCode::StaleEpoch,
            2 => ErrorCode::WrongSegment,
            3 => ErrorCode::RefusedRecord,
            4 => ErrorCode::NotReady,
            5 => ErrorCode::BadRequest,
            6 => ErrorCode::Internal,
            7 => ErrorCode::Auth,
            8 => ErrorCode::IdentityMismatch,
            9 => ErrorCode::NotIdentified,
            _ => return None,
        })
    }
}

/// A segment's state as a node reports it in `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStatus {
    pub segment: SegmentId,
    pub epoch: Epoch,
    pub scl: Lsn,
    pub vdl_hint: Lsn,
    pub max_held: Lsn,
    pub records: u64,
    /// S17, S18, S19: empty when healthy; else what is wrong ("damaged: …", "blocked: …",
    /// "repairing: …").
    pub problem: String,
    /// S19, S20: the segment may have lost records it acknowledged (a read-only attach and
    /// recovery count it as no answer, R12, X11).
    pub repairing: bool,
}

/// What the last writer heartbeat told a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterInfo {
    pub epoch: Epoch,
    pub vcl: Lsn,
    pub vdl: Lsn,
    /// Milliseconds since the node received it.
    pub age_ms: u64,
}

/// Every message of spec/wire.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        version: u16,
        node_id: u32,
        nonce: [u8; NONCE_BYTES],
    },
    Auth {
        version: u16,
        cluster_id: String,
        node_id: u32,
        nonce: [u8; NONCE_BYTES],
        mac: [u8; MAC_BYTES],
    },
    AuthOk {
        node_id: u32,
        mac: [u8; MAC_BYTES],
    },
    Error {
        request_id: u64,
        code: ErrorCode,
        epoch: Epoch,
        message: String,
    },
    /// I2: the client's identity, its first message after the handshake.
    Identify {
        request_id: u64,
        identity: Identity,
    },
    /// I2: the node's identity, answering an `Identify` it accepted.
    Identified {
        request_id: u64,
        identity: Identity,
    },
    WriteBatch {
        request_id: u64,
        segment: SegmentId,
        epoch: Epoch,
        vdl_hint: Lsn,
        truncation: Option<TruncationRange>,
        records: Vec<RedoRecord>,
    },
    Ack {
        request_id: u64,
        segment: SegmentId,
        scl: Lsn,
        epoch: Epoch,
    },
    GetPage {
        request_id: u64,
        segment: SegmentId,
        epoch: Epoch,
        read_point: Lsn,
        pg_lsn: Lsn,
        page: PageId,
    },
    Page {
        request_id: u64,
        page: PageId,
        page_lsn: Lsn,
        bytes: Option<Vec<u8>>,
    },
    Gossip {
        request_id: u64,
        segment: SegmentId,
        request: GossipRequest,
    },
    GossipRecords {
        request_id: u64,
        segment: SegmentId,
        epoch: Epoch,
        truncations: Vec<TruncationRange>,
        records: Vec<RedoRecord>,
        /// S21: the answering segment's SCL (0 if not hosted).
        scl: Lsn,
        /// S20: the answering segment is repairing, or absent from a node that may have
        /// lost it.
        repairing: bool,
    },
    /// X5, S15: a recovery's truncation history, its own range newest.
    Truncate {
        request_id: u64,
        history: Vec<TruncationRange>,
    },
    RaiseEpoch {
        request_id: u64,
        epoch: Epoch,
    },
    Reports {
        request_id: u64,
        epoch: Epoch,
        truncations: Vec<TruncationRange>,
        reports: Vec<SegmentReport>,
        /// R10: how long the node's latest lease promise still runs, on its clock.
        lease_remaining_ms: u32,
        /// S20, X11: hosted segments that are repairing: no answer, never an empty one.
        repairing: Vec<SegmentId>,
        /// S20, X11: a placed segment this node does not host may be one it lost.
        absent_may_be_lost: bool,
        /// S23: the node's folder (0 when not yet durable).
        incarnation: u64,
        /// S23: the node hosts no segment and never did.
        blank: bool,
    },
    /// S23: the volume's genesis counted this node's answer from folder `incarnation`;
    /// answered by `StatusReply` once joined.
    JoinGenesis {
        request_id: u64,
        incarnation: u64,
    },
    Heartbeat {
        request_id: u64,
        epoch: Epoch,
        vcl: Lsn,
        vdl: Lsn,
        pgmrpl: Lsn,
        /// This epoch's truncation range (X4), so a node adopting the epoch applies it.
        truncation: Option<TruncationRange>,
    },
    Status {
        request_id: u64,
    },
    StatusReply {
        request_id: u64,
        node_id: u32,
        epoch: Epoch,
        writer: Option<WriterInfo>,
        segments: Vec<SegmentStatus>,
        /// R7: the lease granted to the heartbeat this answers, in ms (0: none).
        lease_ms: u32,
        /// S20: a placed segment this node does not host may be one it lost (a late node).
        absent_may_be_lost: bool,
    },
}

pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const AUTH: u8 = 0x02;
    pub const AUTH_OK: u8 = 0x03;
    pub const ERROR: u8 = 0x04;
    pub const IDENTIFY: u8 = 0x05;
    pub const IDENTIFIED: u8 = 0x06;
    pub const WRITE_BATCH: u8 = 0x10;
    pub const ACK: u8 = 0x11;
    pub const GET_PAGE: u8 = 0x12;
    pub const PAGE: u8 = 0x13;
    pub const GOSSIP: u8 = 0x14;
    pub const GOSSIP_RECORDS: u8 = 0x15;
    pub const TRUNCATE: u8 = 0x16;
    pub const RAISE_EPOCH: u8 = 0x17;
    pub const REPORTS: u8 = 0x18;
    pub const HEARTBEAT: u8 = 0x19;
    pub const STATUS: u8 = 0x1A;
    pub const STATUS_REPLY: u8 = 0x1B;
    pub const JOIN_GENESIS: u8 = 0x1C;
}

impl Message {
    /// The request id a response answers (0 for handshake messages).
    pub fn request_id(&self) -> u64 {
        match self {
            Message::Hello { .. } | Message::Auth { .. } | Message::AuthOk { .. } => 0,
            Message::Error { request_id, .. }
            | Message::Identify { request_id, .. }
            | Message::Identified { request_id, .. }
            | Message::WriteBatch { request_id, .. }
            | Message::Ack { request_id, .. }
            | Message::GetPage { request_id, .. }
            | Message::Page { request_id, .. }
            | Message::Gossip { request_id, .. }
            | Message::GossipRecords { request_id, .. }
            | Message::Truncate { request_id, .. }
            | Message::RaiseEpoch { request_id, .. }
            | Message::Reports { request_id, .. }
            | Message::JoinGenesis { request_id, .. }
            | Message::Heartbeat { request_id, .. }
            | Message::Status { request_id }
            | Message::StatusReply { request_id, .. } => *request_id,
        }
    }
}

// ---------------------------------------------------------------- encoding

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn string(&mut self, s: &str) {
        // Cut long text (error messages) at a character boundary so it stays UTF-8.
        let mut end = s.len().min(STRING_BYTES_MAX);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = &s.as_bytes()[..end];
        self.u16(bytes.len() as u16);
        self.bytes(bytes);
    }
    fn segment(&mut self, s: SegmentId) {
        self.u32(s.pg.0);
        self.u8(s.replica);
    }
    fn range(&mut self, r: &TruncationRange) {
        self.u64(r.lsn_begin.0);
        self.u64(r.lsn_end.0);
        self.u64(r.epoch.0);
    }
    fn ranges(&mut self, ranges: &[TruncationRange]) {
        self.u32(ranges.len() as u32);
        for r in ranges {
            self.range(r);
        }
    }
    fn page(&mut self, p: PageId) {
        self.u32(p.db.0);
        self.u32(p.page_no);
    }
    fn identity(&mut self, identity: &Identity) {
        self.string(&identity.cluster_id);
        self.bytes(&identity.volume_id.0);
        self.u32(identity.pg_pages);
        self.u32(identity.node_id);
        self.u32(identity.segments.len() as u32);
        for &segment in &identity.segments {
            self.segment(segment);
        }
    }
    fn records(&mut self, records: &[RedoRecord]) {
        self.u32(records.len() as u32);
        for record in records {
            encode_record(record, &mut self.0);
        }
    }
}

/// What every write batch of a writer carries besides its records (W5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub epoch: Epoch,
    pub vdl_hint: Lsn,
    pub truncation: Option<TruncationRange>,
}

/// A record encoded once (C20): its wire bytes are shared by the write batches of all
/// six segments of its PG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRecord(std::sync::Arc<[u8]>);

impl EncodedRecord {
    pub fn new(record: &RedoRecord) -> EncodedRecord {
        EncodedRecord(sixfold_core::codec::encode_record_to_vec(record).into())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Bytes of a write batch payload besides its records, at most.
pub const WRITE_BATCH_HEADER_BYTES_MAX: usize = 128;

/// C20: the payload of a write batch from records encoded once; byte for byte what
/// [`encode`] makes of the same `Message::WriteBatch`.
pub fn encode_write_batch(
    request_id: u64,
    segment: SegmentId,
    header: &BatchHeader,
    records: &[EncodedRecord],
) -> Vec<u8> {
    let bytes: usize = records.iter().map(EncodedRecord::len).sum();
    let mut o = Out(Vec::with_capacity(WRITE_BATCH_HEADER_BYTES_MAX + bytes));
    o.u8(kind::WRITE_BATCH);
    o.u64(request_id);
    o.segment(segment);
    o.u64(header.epoch.0);
    o.u64(header.vdl_hint.0);
    match &header.truncation {
        Some(range) => {
            o.u8(1);
            o.range(range);
        }
        None => o.u8(0),
    }
    o.u32(records.len() as u32);
    for record in records {
        o.0.extend_from_slice(&record.0);
    }
    o.0
}

/// Encodes a message as a frame payload (type byte and fields).
pub fn encode(message: &Message) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(64));
    match message {
        Message::Hello {
            version,
            node_id,
            nonce,
        } => {
            o.u8(kind::HELLO);
            o.u16(*version);
            o.u32(*node_id);
            o.bytes(nonce);
        }
        Message::Auth {
            version,
            cluster_id,
            node_id,
            nonce,
            mac,
        } => {
            o.u8(kind::AUTH);
            o.u16(*version);
            o.string(cluster_id);
            o.u32(*node_id);
            o.bytes(nonce);
            o.bytes(mac);
        }
        Message::AuthOk { node_id, mac } => {
            o.u8(kind::AUTH_OK);
            o.u32(*node_id);
            o.bytes(mac);
        }
        Message::Error {
            request_id,
            code,
            epoch,
            message,
        } => {
            o.u8(kind::ERROR);
            o.u64(*request_id);
            o.u16(*code as u16);
            o.u64(epoch.0);
            o.string(message);
        }
        Message::Identify {
            request_id,
            identity,
        } => {
            o.u8(kind::IDENTIFY);
            o.u64(*request_id);
            o.identity(identity);
        }
        Message::Identified {
            request_id,
            identity,
        } => {
            o.u8(kind::IDENTIFIED);
            o.u64(*request_id);
            o.identity(identity);
        }
        Message::WriteBatch {
            request_id,
            segment,
            epoch,
            vdl_hint,
            truncation,
            records,
        } => {
            o.u8(kind::WRITE_BATCH);
            o.u64(*request_id);
            o.segment(*segment);
            o.u64(epoch.0);
            o.u64(vdl_hint.0);
            match truncation {
                Some(range) => {
                    o.u8(1);
                    o.range(range);
                }
                None => o.u8(0),
            }
            o.records(records);
        }
        Message::Ack {
            request_id,
            segment,
            scl,
            epoch,
        } => {
            o.u8(kind::ACK);
            o.u64(*request_id);
            o.segment(*segment);
            o.u64(scl.0);
            o.u64(epoch.0);
        }
        Message::GetPage {
            request_id,
            segment,
            epoch,
            read_point,
            pg_lsn,
            page,
        } => {
            o.u8(kind::GET_PAGE);
            o.u64(*request_id);
            o.segment(*segment);
            o.u64(epoch.0);
            o.u64(read_point.0);
            o.u64(pg_lsn.0);
            o.page(*page);
        }
        Message::Page {
            request_id,
            page,
            page_lsn,
            bytes,
        } => {
            o.u8(kind::PAGE);
            o.u64(*request_id);
            o.page(*page);
            o.u64(page_lsn.0);
            match bytes {
                Some(bytes) => {
                    o.u8(1);
                    o.bytes(bytes);
                }
                None => o.u8(0),
            }
        }
        Message::Gossip {
            request_id,
            segment,
            request,
        } => {
            o.u8(kind::GOSSIP);
            o.u64(*request_id);
            o.segment(*segment);
            o.u64(request.epoch.0);
            o.u64(request.scl.0);
            o.u64(request.max_held.0);
            o.u32(request.holes.len() as u32);
            for hole in &request.holes {
                o.u64(hole.after.0);
                o.u64(hole.before.0);
            }
            o.ranges(&request.truncations);
        }
        Message::GossipRecords {
            request_id,
            segment,
            epoch,
            truncations,
            records,
            scl,
            repairing,
        } => {
            o.u8(kind::GOSSIP_RECORDS);
            o.u64(*request_id);
            o.segment(*segment);
            o.u64(epoch.0);
            o.ranges(truncations);
            o.records(records);
            o.u64(scl.0);
            o.u8(*repairing as u8);
        }
        Message::Truncate {
            request_id,
            history,
        } => {
            o.u8(kind::TRUNCATE);
            o.u64(*request_id);
            o.ranges(history);
        }
        Message::RaiseEpoch { request_id, epoch } => {
            o.u8(kind::RAISE_EPOCH);
            o.u64(*request_id);
            o.u64(epoch.0);
        }
        Message::Reports {
            request_id,
            epoch,
            truncations,
            reports,
            lease_remaining_ms,
            repairing,
            absent_may_be_lost,
            incarnation,
            blank,
        } => {
            o.u8(kind::REPORTS);
            o.u64(*request_id);
            o.u64(epoch.0);
            o.ranges(truncations);
            o.u32(reports.len() as u32);
            for report in reports {
                o.segment(report.segment);
                o.u64(report.epoch.0);
                o.u64(report.scl.0);
                o.u64(report.vdl_hint.0);
                o.u64(report.tip_at_hint.0);
                o.u32(report.held.len() as u32);
                for &(lsn, cpl, epoch) in &report.held {
                    o.u64(lsn.0);
                    o.u8(cpl as u8);
                    o.u64(epoch.0);
                }
                o.ranges(&report.truncations);
            }
            o.u32(*lease_remaining_ms);
            o.u32(repairing.len() as u32);
            for segment in repairing {
                o.segment(*segment);
            }
            o.u8(*absent_may_be_lost as u8);
            o.u64(*incarnation);
            o.u8(*blank as u8);
        }
        Message::JoinGenesis {
            request_id,
            incarnation,
        } => {
            o.u8(kind::JOIN_GENESIS);
            o.u64(*request_id);
            o.u64(*incarnation);
        }
        Message::Heartbeat {
            request_id,
            epoch,
            vcl,
            vdl,
            pgmrpl,
            truncation,
        } => {
            o.u8(kind::HEARTBEAT);
            o.u64(*request_id);
            o.u64(epoch.0);
            o.u64(vcl.0);
            o.u64(vdl.0);
            o.u64(pgmrpl.0);
            match truncation {
                Some(range) => {
                    o.u8(1);
                    o.range(range);
                }
                None => o.u8(0),
            }
        }
        Message::Status { request_id } => {
            o.u8(kind::STATUS);
            o.u64(*request_id);
        }
        Message::StatusReply {
            request_id,
            node_id,
            epoch,
            writer,
            segments,
            lease_ms,
            absent_may_be_lost,
        } => {
            o.u8(kind::STATUS_REPLY);
            o.u64(*request_id);
            o.u32(*node_id);
            o.u64(epoch.0);
            match writer {
                Some(info) => {
                    o.u8(1);
                    o.u64(info.epoch.0);
                    o.u64(info.vcl.0);
                    o.u64(info.vdl.0);
                    o.u64(info.age_ms);
                }
                None => o.u8(0),
            }
            o.u32(segments.len() as u32);
            for s in segments {
                o.segment(s.segment);
                o.u64(s.epoch.0);
                o.u64(s.scl.0);
                o.u64(s.vdl_hint.0);
                o.u64(s.max_held.0);
                o.u64(s.records);
                o.string(&s.problem);
                o.u8(s.repairing as u8);
            }
            o.u32(*lease_ms);
            o.u8(*absent_may_be_lost as u8);
        }
    }
    o.0
}

// ---------------------------------------------------------------- decoding

struct In<'a> {
    bytes: &'a [u8],
}

fn malformed(what: &str) -> WireError {
    WireError::Malformed(what.to_string())
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(malformed("message shorter than its fields"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn lsn(&mut self) -> Result<Lsn, WireError> {
        Ok(Lsn(self.u64()?))
    }
    fn epoch(&mut self) -> Result<Epoch, WireError> {
        Ok(Epoch(self.u64()?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        Ok(self.take(N)?.try_into().expect("N"))
    }
    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed("flag byte is neither 0 nor 1")),
        }
    }
    fn string(&mut self) -> Result<String, WireError> {
        let len = self.u16()? as usize;
        if len > STRING_BYTES_MAX {
            return Err(malformed("string longer than STRING_BYTES_MAX"));
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
    /// A list count, checked against a limit and the bytes left (`entry_bytes` each).
    fn count(&mut self, entry_bytes: usize, max: usize) -> Result<usize, WireError> {
        let count = self.u32()? as usize;
        if count > max || count.saturating_mul(entry_bytes) > self.bytes.len() {
            return Err(malformed("list count exceeds its limit or the message"));
        }
        Ok(count)
    }
    fn segment(&mut self) -> Result<SegmentId, WireError> {
        let pg = PgId(self.u32()?);
        let replica = self.u8()?;
        if replica as usize >= sixfold_core::SEGMENTS_PER_PG {
            return Err(malformed("replica index out of 0..6"));
        }
        Ok(SegmentId { pg, replica })
    }
    fn range(&mut self) -> Result<TruncationRange, WireError> {
        let range = TruncationRange {
            lsn_begin: self.lsn()?,
            lsn_end: self.lsn()?,
            epoch: self.epoch()?,
        };
        if range.lsn_end < range.lsn_begin {
            return Err(malformed("truncation range ends before it begins"));
        }
        Ok(range)
    }
    fn identity(&mut self) -> Result<Identity, WireError> {
        let cluster_id = self.string()?;
        let volume_id = VolumeId(self.array::<VOLUME_ID_BYTES>()?);
        let pg_pages = self.u32()?;
        let node_id = self.u32()?;
        let count = self.count(5, LIST_ENTRIES_MAX)?;
        let segments = (0..count)
            .map(|_| self.segment())
            .collect::<Result<_, _>>()?;
        Ok(Identity {
            cluster_id,
            volume_id,
            pg_pages,
            node_id,
            segments,
        })
    }
    fn ranges(&mut self) -> Result<Vec<TruncationRange>, WireError> {
        let count = self.count(24, LIST_ENTRIES_MAX)?;
        (0..count).map(|_| self.range()).collect()
    }
    fn page(&mut self) -> Result<PageId, WireError> {
        Ok(PageId {
            db: DbId(self.u32()?),
            page_no: self.u32()?,
        })
    }
    fn records(&mut self) -> Result<Vec<RedoRecord>, WireError> {
        let count = self.count(sixfold_core::codec::RECORD_HEADER_BYTES, BATCH_RECORDS_MAX)?;
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            // L5: a record whose CRC fails is never applied: the whole message is refused.
            let (verified, used) = decode_record(self.bytes)
                .map_err(|error| WireError::Malformed(format!("record frame: {error}")))?;
            self.bytes = &self.bytes[used..];
            records.push(verified.into_record());
        }
        Ok(records)
    }
    fn end(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(malformed("bytes after the last field"))
        }
    }
}

/// Decodes a frame payload. Never panics (L6).
pub fn decode(payload: &[u8]) -> Result<Message, WireError> {
    let mut i = In { bytes: payload };
    let message = match i.u8()? {
        kind::HELLO => Message::Hello {
            version: i.u16()?,
            node_id: i.u32()?,
            nonce: i.array()?,
        },
        kind::AUTH => Message::Auth {
            version: i.u16()?,
            cluster_id: i.string()?,
            node_id: i.u32()?,
            nonce: i.array()?,
            mac: i.array()?,
        },
        kind::AUTH_OK => Message::AuthOk {
            node_id: i.u32()?,
            mac: i.array()?,
        },
        kind::ERROR => Message::Error {
            request_id: i.u64()?,
            code: ErrorCode::from_u16(i.u16()?).ok_or_else(|| malformed("unknown error code"))?,
            epoch: i.epoch()?,
            message: i.string()?,
        },
        kind::IDENTIFY => Message::Identify {
            request_id: i.u64()?,
            identity: i.identity()?,
        },
        kind::IDENTIFIED => Message::Identified {
            request_id: i.u64()?,
            identity: i.identity()?,
        },
        kind::WRITE_BATCH => Message::WriteBatch {
            request_id: i.u64()?,
            segment: i.segment()?,
            epoch: i.epoch()?,
            vdl_hint: i.lsn()?,
            truncation: if i.flag()? { Some(i.range()?) } else { None },
            records: i.records()?,
        },
        kind::ACK => Message::Ack {
            request_id: i.u64()?,
            segment: i.segment()?,
            scl: i.lsn()?,
            epoch: i.epoch()?,
        },
        kind::GET_PAGE => Message::GetPage {
            request_id: i.u64()?,
            segment: i.segment()?,
            epoch: i.epoch()?,
            read_point: i.lsn()?,
            pg_lsn: i.lsn()?,
            page: i.page()?,
        },
        kind::PAGE => Message::Page {
            request_id: i.u64()?,
            page: i.page()?,
            page_lsn: i.lsn()?,
            bytes: if i.flag()? {
                Some(i.take(PAGE_BYTES)?.to_vec())
            } else {
                None
            },
        },
        kind::GOSSIP => {
            let request_id = i.u64()?;
            let segment = i.segment()?;
            let epoch = i.epoch()?;
            let scl = i.lsn()?;
            let max_held = i.lsn()?;
            let count = i.count(16, LIST_ENTRIES_MAX)?;
            let holes = (0..count)
                .map(|_| {
                    Ok(Hole {
                        after: i.lsn()?,
                        before: i.lsn()?,
                    })
                })
                .collect::<Result<_, WireError>>()?;
            Message::Gossip {
                request_id,
                segment,
                request: GossipRequest {
                    epoch,
                    scl,
                    holes,
                    max_held,
                    truncations: i.ranges()?,
                },
            }
        }
        kind::GOSSIP_RECORDS => Message::GossipRecords {
            request_id: i.u64()?,
            segment: i.segment()?,
            epoch: i.epoch()?,
            truncations: i.ranges()?,
            records: i.records()?,
            scl: i.lsn()?,
            repairing: i.flag()?,
        },
        kind::TRUNCATE => Message::Truncate {
            request_id: i.u64()?,
            history: i.ranges()?,
        },
        kind::RAISE_EPOCH => Message::RaiseEpoch {
            request_id: i.u64()?,
            epoch: i.epoch()?,
        },
        kind::REPORTS => decode_reports(&mut i)?,
        kind::JOIN_GENESIS => Message::JoinGenesis {
            request_id: i.u64()?,
            incarnation: i.u64()?,
        },
        kind::HEARTBEAT => Message::Heartbeat {
            request_id: i.u64()?,
            epoch: i.epoch()?,
            vcl: i.lsn()?,
            vdl: i.lsn()?,
            pgmrpl: i.lsn()?,
            truncation: if i.flag()? { Some(i.range()?) } else { None },
        },
        kind::STATUS => Message::Status {
            request_id: i.u64()?,
        },
        kind::STATUS_REPLY => decode_status_reply(&mut i)?,
        other => return Err(WireError::UnknownType(other)),
    };
    i.end()?;
    Ok(message)
}

fn decode_reports(i: &mut In<'_>) -> Result<Message, WireError> {
    let request_id = i.u64()?;
    let epoch = i.epoch()?;
    let truncations = i.ranges()?;
    let count = i.count(45, LIST_ENTRIES_MAX)?;
    let mut reports = Vec::with_capacity(count);
    for _ in 0..count {
        let segment = i.segment()?;
        let epoch = i.epoch()?;
        let scl = i.lsn()?;
        let vdl_hint = i.lsn()?;
        let tip_at_hint = i.lsn()?;
        let held_count = i.count(17, LIST_ENTRIES_MAX)?;
        let held = (0..held_count)
            .map(|_| Ok((i.lsn()?, i.flag()?, Epoch(i.u64()?))))
            .collect::<Result<_, WireError>>()?;
        reports.push(SegmentReport {
            segment,
            epoch,
            scl,
            vdl_hint,
            tip_at_hint,
            held,
            truncations: i.ranges()?,
        });
    }
    let lease_remaining_ms = i.u32()?;
    let repairing_count = i.count(5, LIST_ENTRIES_MAX)?;
    let repairing = (0..repairing_count)
        .map(|_| i.segment())
        .collect::<Result<_, WireError>>()?;
    Ok(Message::Reports {
        request_id,
        epoch,
        truncations,
        reports,
        lease_remaining_ms,
        repairing,
        absent_may_be_lost: i.flag()?,
        incarnation: i.u64()?,
        blank: i.flag()?,
    })
}

fn decode_status_reply(i: &mut In<'_>) -> Result<Message, WireError> {
    let request_id = i.u64()?;
    let node_id = i.u32()?;
    let epoch = i.epoch()?;
    let writer = if i.flag()? {
        Some(WriterInfo {
            epoch: i.epoch()?,
            vcl: i.lsn()?,
            vdl: i.lsn()?,
            age_ms: i.u64()?,
        })
    } else {
        None
    };
    let count = i.count(48, LIST_ENTRIES_MAX)?;
    let segments = (0..count)
        .map(|_| {
            Ok(SegmentStatus {
                segment: i.segment()?,
                epoch: i.epoch()?,
                scl: i.lsn()?,
                vdl_hint: i.lsn()?,
                max_held: i.lsn()?,
                records: i.u64()?,
                problem: i.string()?,
                repairing: i.flag()?,
            })
        })
        .collect::<Result<_, WireError>>()?;
    Ok(Message::StatusReply {
        request_id,
        node_id,
        epoch,
        writer,
        segments,
        lease_ms: i.u32()?,
        absent_may_be_lost: i.flag()?,
    })
}

// ---------------------------------------------------------------- frames

/// Bytes of every frame this process wrote, for `sixfold bench`'s bytes per commit.
pub static FRAME_BYTES_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl WireError {
    /// The peer went away (reset, broken pipe, end of stream mid-frame): not a bad frame,
    /// so it is logged as what it is.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            WireError::Closed => true,
            WireError::Io(error) => matches!(
                error.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::NotConnected
            ),
            _ => false,
        }
    }
}

/// Writes one frame: length, CRC32C, payload.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), WireError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(WireError::Oversize {
            found: payload.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)?;
    FRAME_BYTES_SENT.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

pub fn send(w: &mut impl Write, message: &Message) -> Result<(), WireError> {
    write_frame(w, &encode(message))
}

/// Reads exactly `buf.len()` bytes from a stream with a short read timeout. While nothing
/// of a frame has arrived, each timeout asks `idle` whether to keep waiting; once a frame
/// has started, it must complete within [`FRAME_READ_TIMEOUT_MS`].
fn read_exact_polling(
    r: &mut impl Read,
    buf: &mut [u8],
    frame_started: bool,
    idle: &mut dyn FnMut() -> bool,
) -> Result<(), WireError> {
    let mut filled = 0;
    let mut started_at = frame_started.then(Instant::now);
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Err(WireError::Closed),
            Ok(n) => {
                filled += n;
                started_at.get_or_insert_with(Instant::now);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                match started_at {
                    None => {
                        if !idle() {
                            return Err(WireError::Stopped);
                        }
                    }
                    Some(at) => {
                        if at.elapsed() > Duration::from_millis(FRAME_READ_TIMEOUT_MS) {
                            return Err(WireError::Stalled);
                        }
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    Ok(())
}

/// Reads one frame and checks its length limit and CRC before returning the payload.
pub fn read_frame(r: &mut impl Read, idle: &mut dyn FnMut() -> bool) -> Result<Vec<u8>, WireError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    read_exact_polling(r, &mut header, false, idle)?;
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4")) as usize;
    let stored = u32::from_le_bytes(header[4..8].try_into().expect("4"));
    if length > MAX_FRAME_BYTES {
        return Err(WireError::Oversize {
            found: length,
            max: MAX_FRAME_BYTES,
        });
    }
    let mut payload = vec![0u8; length];
    read_exact_polling(r, &mut payload, true, idle)?;
    let computed = crc32c::crc32c(&payload);
    if stored != computed {
        return Err(WireError::Crc { stored, computed });
    }
    Ok(payload)
}

/// Reads and decodes one message.
pub fn receive(r: &mut impl Read, idle: &mut dyn FnMut() -> bool) -> Result<Message, WireError> {
    decode(&read_frame(r, idle)?)
}

// ---------------------------------------------------------------- sealed frames

/// Writes one sealed frame (A4): `u32 len ‖ ciphertext ‖ tag` under the sender's key.
pub fn write_sealed_frame(
    w: &mut impl Write,
    sealer: &mut FrameSealer,
    payload: &[u8],
) -> Result<(), WireError> {
    w.write_all(&seal_frame(sealer, payload)?)?;
    Ok(())
}

/// One sealed frame (A4), ready to write; frames sealed in order may be written together.
pub fn seal_frame(sealer: &mut FrameSealer, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(WireError::Oversize {
            found: payload.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let frame = sealer.seal(payload)?;
    FRAME_BYTES_SENT.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(frame)
}

/// Encodes, seals and writes one message.
pub fn send_sealed(
    w: &mut impl Write,
    sealer: &mut FrameSealer,
    message: &Message,
) -> Result<(), WireError> {
    write_sealed_frame(w, sealer, &encode(message))
}

/// Reads one sealed frame: the length is checked before anything is allocated, then the
/// tag under the expected sequence number (A4) before the payload is returned.
pub fn read_sealed_frame(
    r: &mut impl Read,
    opener: &mut FrameOpener,
    idle: &mut dyn FnMut() -> bool,
) -> Result<Vec<u8>, WireError> {
    let mut header = [0u8; SEALED_HEADER_BYTES];
    read_exact_polling(r, &mut header, false, idle)?;
    let length = u32::from_le_bytes(header) as usize;
    FrameOpener::check_length(length)?;
    let mut body = vec![0u8; length];
    read_exact_polling(r, &mut body, true, idle)?;
    Ok(opener.open(header, body)?)
}

/// Reads, opens and decodes one message of an authenticated connection.
pub fn receive_sealed(
    r: &mut impl Read,
    opener: &mut FrameOpener,
    idle: &mut dyn FnMut() -> bool,
) -> Result<Message, WireError> {
    decode(&read_sealed_frame(r, opener, idle)?)
}

/// A fresh handshake nonce from the thread's CSPRNG.
pub fn random_nonce() -> [u8; NONCE_BYTES] {
    use rand::RngCore;
    let mut nonce = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixfold_core::{Edit, RedoBody};

    fn record(lsn: u64) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            pg: PgId(2),
            prev_lsn_pg: Lsn(lsn - 1),
            prev_lsn_page: Lsn(0),
            epoch: Epoch(3),
            page: PageId::new(1, 2050),
            cpl: true,
            body: RedoBody::Edits(vec![Edit {
                offset: 7,
                bytes: vec![1, 2, 3],
            }]),
        }
    }

    #[test]
    fn a_reset_connection_is_connection_loss_not_a_bad_frame() {
        // A reset from the peer is logged as a lost connection; a bad CRC is a bad frame.
        struct Reset;
        impl Read for Reset {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from(ErrorKind::ConnectionReset))
            }
        }
        let error = read_frame(&mut Reset, &mut || true).unwrap_err();
        assert!(error.is_connection_loss(), "{error}");
        let mut frame = Vec::new();
        write_frame(&mut frame, b"payload").unwrap();
        frame[4] ^= 1;
        let error = read_frame(&mut std::io::Cursor::new(frame), &mut || true).unwrap_err();
        assert!(!error.is_connection_loss(), "{error}");
    }

    #[test]
    fn every_message_round_trips() {
        // L5: records inside a batch keep their own frames and CRCs.
        let segment = SegmentId {
            pg: PgId(2),
            replica: 5,
        };
        let range = TruncationRange {
            lsn_begin: Lsn(10),
            lsn_end: Lsn(20),
            epoch: Epoch(3),
        };
        let messages = vec![
            Message::Hello {
                version: 1,
                node_id: 4,
                nonce: [9; 32],
            },
            Message::Auth {
                version: 1,
                cluster_id: "demo".into(),
                node_id: 0,
                nonce: [1; 32],
                mac: [2; 32],
            },
            Message::WriteBatch {
                request_id: 7,
                segment,
                epoch: Epoch(3),
                vdl_hint: Lsn(4),
                truncation: Some(range),
                records: vec![record(5), record(6)],
            },
            Message::Identify {
                request_id: 1,
                identity: Identity {
                    cluster_id: "demo".into(),
                    volume_id: VolumeId([7; VOLUME_ID_BYTES]),
                    pg_pages: 1024,
                    node_id: 0,
                    segments: vec![],
                },
            },
            Message::Identified {
                request_id: 1,
                identity: Identity {
                    cluster_id: "demo".into(),
                    volume_id: VolumeId([8; VOLUME_ID_BYTES]),
                    pg_pages: 512,
                    node_id: 3,
                    segments: vec![segment],
                },
            },
            Message::Page {
                request_id: 8,
                page: PageId::new(1, 2),
                page_lsn: Lsn(5),
                bytes: Some(vec![7; PAGE_BYTES]),
            },
            Message::Gossip {
                request_id: 9,
                segment,
                request: GossipRequest {
                    epoch: Epoch(3),
                    scl: Lsn(4),
                    holes: vec![Hole {
                        after: Lsn(4),
                        before: Lsn(9),
                    }],
                    max_held: Lsn(9),
                    truncations: vec![range],
                },
            },
            Message::Reports {
                request_id: 1,
                epoch: Epoch(4),
                truncations: vec![range],
                reports: vec![SegmentReport {
                    segment,
                    epoch: Epoch(4),
                    scl: Lsn(3),
                    vdl_hint: Lsn(2),
                    tip_at_hint: Lsn(2),
                    held: vec![(Lsn(5), true, Epoch(1))],
                    truncations: vec![],
                }],
                lease_remaining_ms: 1_021,
                repairing: vec![SegmentId {
                    pg: PgId(7),
                    replica: 5,
                }],
                absent_may_be_lost: true,
                incarnation: 0x5eed_f01d,
                blank: false,
            },
            Message::JoinGenesis {
                request_id: 12,
                incarnation: 0x5eed_f01d,
            },
            Message::GossipRecords {
                request_id: 10,
                segment,
                epoch: Epoch(4),
                truncations: vec![range],
                records: vec![],
                scl: Lsn(6),
                repairing: true,
            },
            Message::Heartbeat {
                request_id: 3,
                epoch: Epoch(4),
                vcl: Lsn(9),
                vdl: Lsn(8),
                pgmrpl: Lsn(7),
                truncation: Some(range),
            },
            Message::StatusReply {
                request_id: 2,
                node_id: 1,
                epoch: Epoch(4),
                writer: Some(WriterInfo {
                    epoch: Epoch(4),
                    vcl: Lsn(9),
                    vdl: Lsn(8),
                    age_ms: 12,
                }),
                segments: vec![SegmentStatus {
                    segment,
                    epoch: Epoch(4),
                    scl: Lsn(3),
                    vdl_hint: Lsn(2),
                    max_held: Lsn(5),
                    problem: "blocked: disk full".into(),
                    records: 4,
                    repairing: true,
                }],
                lease_ms: 1_021,
                absent_may_be_lost: true,
            },
        ];
        for message in messages {
            assert_eq!(decode(&encode(&message)).unwrap(), message);
        }
    }

    #[test]
    fn a_batch_of_records_encoded_once_equals_the_message_encoding() {
        // C20: records encoded once make the same payload as encoding the message.
        let segment = SegmentId {
            pg: PgId(2),
            replica: 4,
        };
        let records = vec![record(5), record(6), record(9)];
        for truncation in [
            None,
            Some(TruncationRange {
                lsn_begin: Lsn(10),
                lsn_end: Lsn(20),
                epoch: Epoch(3),
            }),
        ] {
            let header = BatchHeader {
                epoch: Epoch(3),
                vdl_hint: Lsn(4),
                truncation,
            };
            let encoded: Vec<EncodedRecord> = records.iter().map(EncodedRecord::new).collect();
            let once = encode_write_batch(11, segment, &header, &encoded);
            let message = Message::WriteBatch {
                request_id: 11,
                segment,
                epoch: header.epoch,
                vdl_hint: header.vdl_hint,
                truncation,
                records: records.clone(),
            };
            assert_eq!(once, encode(&message));
            assert_eq!(decode(&once).unwrap(), message);
        }
    }

    #[test]
    fn truncated_and_corrupted_payloads_are_typed_errors() {
        // L6: every prefix and every single-byte flip decodes to a message or an error.
        let payload = encode(&Message::WriteBatch {
            request_id: 7,
            segment: SegmentId {
                pg: PgId(2),
                replica: 1,
            },
            epoch: Epoch(3),
            vdl_hint: Lsn(4),
            truncation: None,
            records: vec![record(5)],
        });
        for cut in 0..payload.len() {
            assert!(decode(&payload[..cut]).is_err());
        }
        for at in 0..payload.len() {
            let mut bad = payload.clone();
            bad[at] ^= 0x5a;
            let _ = decode(&bad);
        }
    }

    #[test]
    fn long_error_text_is_cut_at_a_character_boundary() {
        // L6: an error message longer than STRING_BYTES_MAX still decodes.
        let message = Message::Error {
            request_id: 1,
            code: ErrorCode::Internal,
            epoch: Epoch(1),
            message: "é".repeat(STRING_BYTES_MAX),
        };
        match decode(&encode(&message)).unwrap() {
            Message::Error { message, .. } => assert!(message.len() <= STRING_BYTES_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversize_and_crc_failures_are_refused() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&((MAX_FRAME_BYTES + 1) as u32).to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        let error = read_frame(&mut frame.as_slice(), &mut || true).unwrap_err();
        assert!(matches!(error, WireError::Oversize { .. }));
        let mut good = Vec::new();
        send(&mut good, &Message::Status { request_id: 1 }).unwrap();
        *good.last_mut().unwrap() ^= 1;
        let error = read_frame(&mut good.as_slice(), &mut || true).unwrap_err();
        assert!(matches!(error, WireError::Crc { .. }));
    }
}
