//! Byte-exact record frames and page images (spec/formats.md; L5, L6).
//!
//! Decoding never panics on any input: every length is checked before it is used, and a
//! frame is returned only after both CRC32C checks pass (L5).

use crate::record::{Edit, RedoBody, RedoRecord};
use crate::types::{DbId, Epoch, Lsn, PAGE_BYTES, PageId, PgId};

/// `"SIXR"` read as a little-endian `u32`.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"SIXR");
/// `"SIXP"` read as a little-endian `u32`.
pub const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"SIXP");
pub const FORMAT_VERSION: u8 = 1;
pub const RECORD_HEADER_BYTES: usize = 64;
/// The largest record body: a full image, or edits that are at most two pages of bytes.
pub const RECORD_BODY_BYTES_MAX: usize = 2 * PAGE_BYTES;
pub const RECORD_FRAME_BYTES_MAX: usize = RECORD_HEADER_BYTES + RECORD_BODY_BYTES_MAX;
pub const PAGE_HEADER_BYTES: usize = 32;
pub const PAGE_FRAME_BYTES: usize = PAGE_HEADER_BYTES + PAGE_BYTES;

const FLAG_CPL: u8 = 0b01;
const FLAG_FULL_IMAGE: u8 = 0b10;
const EDIT_HEADER_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("bad magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("unsupported format version {found}")]
    BadVersion { found: u8 },
    #[error("header CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("body CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BodyCrc { stored: u32, computed: u32 },
    #[error("body of {found} bytes exceeds the maximum {max}")]
    Oversize { found: usize, max: usize },
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// A record that passed its CRC and structural checks. Only [`decode_record`] makes one,
/// so a page can only be built from verified records (S9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRecord(RedoRecord);

impl VerifiedRecord {
    pub fn record(&self) -> &RedoRecord {
        &self.0
    }

    pub fn into_record(self) -> RedoRecord {
        self.0
    }
}

fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

fn encode_body(body: &RedoBody, out: &mut Vec<u8>) {
    match body {
        RedoBody::FullImage(image) => out.extend_from_slice(image),
        RedoBody::Edits(edits) => {
            let count = u16::try_from(edits.len()).expect("edit count fits u16 (L4)");
            out.extend_from_slice(&count.to_le_bytes());
            for edit in edits {
                let len = u16::try_from(edit.bytes.len()).expect("edit length fits u16 (L4)");
                out.extend_from_slice(&edit.offset.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&edit.bytes);
            }
        }
    }
}

/// Bytes the frame of `record` takes.
pub fn record_frame_bytes(record: &RedoRecord) -> usize {
    RECORD_HEADER_BYTES
        + match &record.body {
            RedoBody::FullImage(image) => image.len(),
            RedoBody::Edits(edits) => {
                2 + edits
                    .iter()
                    .map(|edit| EDIT_HEADER_BYTES + edit.bytes.len())
                    .sum::<usize>()
            }
        }
}

/// Appends the frame of `record` to `out`. The record must be well formed (our own
/// invariant, so asserted): encoding is for records the writer built.
pub fn encode_record(record: &RedoRecord, out: &mut Vec<u8>) {
    assert!(
        record.body.is_well_formed(),
        "L4: ill-formed record {}",
        record.lsn
    );
    let start = out.len();
    out.resize(start + RECORD_HEADER_BYTES, 0);
    encode_body(&record.body, out);
    let body_bytes = out.len() - start - RECORD_HEADER_BYTES;
    assert!(body_bytes <= RECORD_BODY_BYTES_MAX, "record body too large");
    let mut flags = 0;
    if record.cpl {
        flags |= FLAG_CPL;
    }
    if matches!(record.body, RedoBody::FullImage(_)) {
        flags |= FLAG_FULL_IMAGE;
    }
    let header = &mut out[start..start + RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    header[4] = FORMAT_VERSION;
    header[5] = flags;
    header[8..12].copy_from_slice(&(body_bytes as u32).to_le_bytes());
    header[12..16].copy_from_slice(&record.pg.0.to_le_bytes());
    header[16..24].copy_from_slice(&record.lsn.0.to_le_bytes());
    header[24..32].copy_from_slice(&record.prev_lsn_pg.0.to_le_bytes());
    header[32..40].copy_from_slice(&record.prev_lsn_page.0.to_le_bytes());
    header[40..48].copy_from_slice(&record.epoch.0.to_le_bytes());
    header[48..52].copy_from_slice(&record.page.db.0.to_le_bytes());
    header[52..56].copy_from_slice(&record.page.page_no.to_le_bytes());
    let header_crc = crc(&header[0..56]);
    header[56..60].copy_from_slice(&header_crc.to_le_bytes());
    let body_crc = crc(&out[start + RECORD_HEADER_BYTES..]);
    out[start + 60..start + 64].copy_from_slice(&body_crc.to_le_bytes());
    debug_assert_eq!(
        decode_record(&out[start..])
            .map(|(verified, _)| verified.into_record())
            .as_ref(),
        Ok(record),
        "encode then decode must round-trip"
    );
}

pub fn encode_record_to_vec(record: &RedoRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record_frame_bytes(record));
    encode_record(record, &mut out);
    out
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A record header whose own CRC passed: its lengths can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub flags: u8,
    pub body_bytes: usize,
}

impl RecordHeader {
    pub fn frame_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.body_bytes
    }
}

/// Checks a record header alone (magic, version, CRC, length bound).
pub fn decode_record_header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_BYTES,
            available: bytes.len(),
        });
    }
    let magic = u32_at(bytes, 0);
    if magic != RECORD_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let stored = u32_at(bytes, 56);
    let computed = crc(&bytes[0..56]);
    if stored != computed {
        return Err(DecodeError::HeaderCrc { stored, computed });
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(DecodeError::BadVersion { found: bytes[4] });
    }
    let body_bytes = u32_at(bytes, 8) as usize;
    if body_bytes > RECORD_BODY_BYTES_MAX {
        return Err(DecodeError::Oversize {
            found: body_bytes,
            max: RECORD_BODY_BYTES_MAX,
        });
    }
    Ok(RecordHeader {
        flags: bytes[5],
        body_bytes,
    })
}

fn decode_edits(mut body: &[u8]) -> Result<Vec<Edit>, DecodeError> {
    if body.len() < 2 {
        return Err(DecodeError::Malformed("edit list without a count"));
    }
    let count = u16_at(body, 0) as usize;
    body = &body[2..];
    let mut edits = Vec::with_capacity(count.min(PAGE_BYTES));
    for _ in 0..count {
        if body.len() < EDIT_HEADER_BYTES {
            return Err(DecodeError::Malformed("edit header past the body"));
        }
        let offset = u16_at(body, 0);
        let len = u16_at(body, 2) as usize;
        body = &body[EDIT_HEADER_BYTES..];
        if len == 0 || len > body.len() {
            return Err(DecodeError::Malformed("edit length out of the body"));
        }
        if offset as usize + len > PAGE_BYTES {
            return Err(DecodeError::Malformed("edit beyond the page"));
        }
        edits.push(Edit {
            offset,
            bytes: body[..len].to_vec(),
        });
        body = &body[len..];
    }
    if !body.is_empty() {
        return Err(DecodeError::Malformed("bytes after the last edit"));
    }
    Ok(edits)
}

/// Decodes one record frame at the start of `bytes`; returns it and the frame's length.
pub fn decode_record(bytes: &[u8]) -> Result<(VerifiedRecord, usize), DecodeError> {
    let header = decode_record_header(bytes)?;
    let frame_bytes = header.frame_bytes();
    if bytes.len() < frame_bytes {
        return Err(DecodeError::Truncated {
            needed: frame_bytes,
            available: bytes.len(),
        });
    }
    let body = &bytes[RECORD_HEADER_BYTES..frame_bytes];
    let stored = u32_at(bytes, 60);
    let computed = crc(body);
    if stored != computed {
        return Err(DecodeError::BodyCrc { stored, computed });
    }
    if header.flags & !(FLAG_CPL | FLAG_FULL_IMAGE) != 0 || u16_at(bytes, 6) != 0 {
        return Err(DecodeError::Malformed("unknown flags or reserved bits set"));
    }
    let body = if header.flags & FLAG_FULL_IMAGE != 0 {
        if body.len() != PAGE_BYTES {
            return Err(DecodeError::Malformed("full image is not one page"));
        }
        RedoBody::FullImage(body.to_vec())
    } else {
        RedoBody::Edits(decode_edits(body)?)
    };
    let lsn = Lsn(u64_at(bytes, 16));
    let prev_lsn_pg = Lsn(u64_at(bytes, 24));
    let prev_lsn_page = Lsn(u64_at(bytes, 32));
    if lsn == Lsn::ZERO || prev_lsn_pg >= lsn || prev_lsn_page >= lsn {
        return Err(DecodeError::Malformed(
            "backlink not below the record's LSN",
        ));
    }
    let record = RedoRecord {
        lsn,
        pg: PgId(u32_at(bytes, 12)),
        prev_lsn_pg,
        prev_lsn_page,
        epoch: Epoch(u64_at(bytes, 40)),
        page: PageId {
            db: DbId(u32_at(bytes, 48)),
            page_no: u32_at(bytes, 52),
        },
        cpl: header.flags & FLAG_CPL != 0,
        body,
    };
    Ok((VerifiedRecord(record), frame_bytes))
}

/// What a scan of a log file found (S12).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogScan {
    pub records: Vec<VerifiedRecord>,
    /// Byte offset where the valid log ends; bytes from here are a torn tail to cut.
    pub valid_bytes: usize,
    /// Offsets of frames that failed their checks with a valid frame after them:
    /// damage in the middle of the log, not a torn tail.
    pub damaged_at: Vec<usize>,
}

fn next_valid_header(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(RECORD_HEADER_BYTES - 1))
        .find(|&at| decode_record(&bytes[at..]).is_ok())
}

/// Scans a log of concatenated record frames (S12). A failing frame is a torn tail when no
/// valid frame follows it anywhere in the file; otherwise it is damage, skipped and reported,
/// and the scan resumes at the next valid frame.
pub fn scan_log(bytes: &[u8]) -> LogScan {
    let mut scan = LogScan::default();
    let mut at = 0;
    while at < bytes.len() {
        match decode_record(&bytes[at..]) {
            Ok((record, frame_bytes)) => {
                scan.records.push(record);
                at += frame_bytes;
                scan.valid_bytes = at;
            }
            Err(_) => match next_valid_header(bytes, at + 1) {
                Some(next) => {
                    scan.damaged_at.push(at);
                    at = next;
                }
                None => break,
            },
        }
    }
    scan
}

/// A page image as stored by a storage node (spec/formats.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageImage {
    pub page: PageId,
    /// The LSN of the last record applied to it.
    pub lsn: Lsn,
    pub bytes: Vec<u8>,
}

pub fn encode_page(image: &PageImage, out: &mut Vec<u8>) {
    assert_eq!(image.bytes.len(), PAGE_BYTES, "a page image is one page");
    let start = out.len();
    out.resize(start + PAGE_HEADER_BYTES, 0);
    out.extend_from_slice(&image.bytes);
    let header = &mut out[start..start + PAGE_HEADER_BYTES];
    header[0..4].copy_from_slice(&PAGE_MAGIC.to_le_bytes());
    header[4] = FORMAT_VERSION;
    header[8..12].copy_from_slice(&image.page.db.0.to_le_bytes());
    header[12..16].copy_from_slice(&image.page.page_no.to_le_bytes());
    header[16..24].copy_from_slice(&image.lsn.0.to_le_bytes());
    let page_crc = crc32c::crc32c_append(crc(&out[start..start + 28]), &image.bytes);
    out[start + 28..start + 32].copy_from_slice(&page_crc.to_le_bytes());
}

pub fn decode_page(bytes: &[u8]) -> Result<PageImage, DecodeError> {
    if bytes.len() < PAGE_FRAME_BYTES {
        return Err(DecodeError::Truncated {
            needed: PAGE_FRAME_BYTES,
            available: bytes.len(),
        });
    }
    let magic = u32_at(bytes, 0);
    if magic != PAGE_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let stored = u32_at(bytes, 28);
    let computed = crc32c::crc32c_append(
        crc(&bytes[0..28]),
        &bytes[PAGE_HEADER_BYTES..PAGE_FRAME_BYTES],
    );
    if stored != computed {
        return Err(DecodeError::BodyCrc { stored, computed });
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(DecodeError::BadVersion { found: bytes[4] });
    }
    Ok(PageImage {
        page: PageId {
            db: DbId(u32_at(bytes, 8)),
            page_no: u32_at(bytes, 12),
        },
        lsn: Lsn(u64_at(bytes, 16)),
        bytes: bytes[PAGE_HEADER_BYTES..PAGE_FRAME_BYTES].to_vec(),
    })
}
