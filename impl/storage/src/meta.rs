//! The durable metadata of one segment, in a small checksummed file replaced atomically
//! (write `meta.tmp`, fsync, rename over `meta`, fsync the directory).
//!
//! Layout, little-endian: magic `"SIXM"` u32, version u8, 3 zero bytes, segment pg u32,
//! replica u8, 3 zero bytes, epoch u64, VDL hint u64, checkpoint u64, forgotten-through u64,
//! PGMRPL u64, truncation count u32, then per truncation (begin u64, end u64, epoch u64),
//! then CRC32C of everything before, u32.

use std::path::Path;

use std::collections::BTreeMap;

use sixfold_core::{DbId, Epoch, Lsn, PageId, PgId, SegmentId, TruncationRange};

use crate::disk::{Disk, OpenMode, read_all};
use crate::error::StorageError;

pub const META_FILE: &str = "meta";
const META_MAGIC: u32 = u32::from_le_bytes(*b"SIXM");
const META_VERSION: u8 = 1;
const META_FIXED_BYTES: usize = 4 + 4 + 4 + 4 + 5 * 8 + 4;
const TRUNCATION_BYTES: usize = 24;
/// Truncation ranges one segment keeps: the one limit of the core (S15).
pub use sixfold_core::types::TRUNCATIONS_MAX;
const META_BYTES_MAX: u64 = (META_FIXED_BYTES + TRUNCATIONS_MAX * TRUNCATION_BYTES + 4) as u64;

/// What a segment must remember across a crash besides its records and pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    pub segment: SegmentId,
    /// S7: the highest epoch seen.
    pub epoch: Epoch,
    pub vdl_hint: Lsn,
    /// S10: every record ≤ this is in a durable page version.
    pub checkpoint: Lsn,
    /// S10: records ≤ this were garbage-collected (a chain LSN of the PG).
    pub forgotten_through: Lsn,
    pub pgmrpl: Lsn,
    /// S8: void ranges, in the order they arrived.
    pub truncations: Vec<TruncationRange>,
}

impl SegmentMeta {
    pub fn new(segment: SegmentId) -> SegmentMeta {
        SegmentMeta {
            segment,
            epoch: Epoch(0),
            vdl_hint: Lsn::ZERO,
            checkpoint: Lsn::ZERO,
            forgotten_through: Lsn::ZERO,
            pgmrpl: Lsn::ZERO,
            truncations: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.truncations.len() <= TRUNCATIONS_MAX,
            "truncations bounded on intake"
        );
        let mut out = Vec::with_capacity(META_FIXED_BYTES + self.truncations.len() * 24 + 4);
        out.extend_from_slice(&META_MAGIC.to_le_bytes());
        out.extend_from_slice(&[META_VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.segment.pg.0.to_le_bytes());
        out.extend_from_slice(&[self.segment.replica, 0, 0, 0]);
        for value in [
            self.epoch.0,
            self.vdl_hint.0,
            self.checkpoint.0,
            self.forgotten_through.0,
            self.pgmrpl.0,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&(self.truncations.len() as u32).to_le_bytes());
        for range in &self.truncations {
            out.extend_from_slice(&range.lsn_begin.0.to_le_bytes());
            out.extend_from_slice(&range.lsn_end.0.to_le_bytes());
            out.extend_from_slice(&range.epoch.0.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(
            SegmentMeta::decode(&out).as_ref(),
            Ok(self),
            "meta round-trips"
        );
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentMeta, &'static str> {
        if bytes.len() < META_FIXED_BYTES + 4 {
            return Err("meta file too short");
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().map_err(|_| "crc")?) {
            return Err("meta CRC32C mismatch");
        }
        let mut reader = Reader { bytes: body, at: 0 };
        if reader.u32()? != META_MAGIC {
            return Err("bad meta magic");
        }
        if reader.u32()? != u32::from(META_VERSION) {
            return Err("unsupported meta version");
        }
        let pg = PgId(reader.u32()?);
        let replica_word = reader.u32()?;
        if replica_word > u32::from(u8::MAX) {
            return Err("reserved meta bytes set");
        }
        let mut meta = SegmentMeta::new(SegmentId {
            pg,
            replica: replica_word as u8,
        });
        meta.epoch = Epoch(reader.u64()?);
        meta.vdl_hint = Lsn(reader.u64()?);
        meta.checkpoint = Lsn(reader.u64()?);
        meta.forgotten_through = Lsn(reader.u64()?);
        meta.pgmrpl = Lsn(reader.u64()?);
        let count = reader.u32()? as usize;
        if count > TRUNCATIONS_MAX {
            return Err("too many truncation ranges");
        }
        for _ in 0..count {
            let lsn_begin = Lsn(reader.u64()?);
            let lsn_end = Lsn(reader.u64()?);
            let epoch = Epoch(reader.u64()?);
            meta.truncations.push(TruncationRange {
                lsn_begin,
                lsn_end,
                epoch,
            });
        }
        if reader.at != body.len() {
            return Err("bytes after the last truncation range");
        }
        Ok(meta)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let end = self.at.checked_add(N).ok_or("meta overflow")?;
        let slice = self.bytes.get(self.at..end).ok_or("meta truncated")?;
        self.at = end;
        slice.try_into().map_err(|_| "meta truncated")
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        self.take::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

/// Replaces `dir/name` atomically and durably: write `name.tmp`, fsync, rename over
/// `name`, fsync the directory.
pub fn write_atomic(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), StorageError> {
    let temp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    match disk.remove(&temp) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(StorageError::io("remove", &temp)(error)),
    }
    let mut file = disk
        .open(&temp, OpenMode::CreateNew)
        .map_err(StorageError::io("create", &temp))?;
    file.write_at(0, bytes)
        .map_err(StorageError::io("write", &temp))?;
    file.sync().map_err(StorageError::io("fsync", &temp))?;
    disk.rename(&temp, &target)
        .map_err(StorageError::io("rename", &target))?;
    disk.sync_dir(dir)
        .map_err(StorageError::io("fsync dir", dir))
}

/// Reads a whole small file; `Ok(None)` when there is none.
pub fn read_optional(
    disk: &dyn Disk,
    path: &Path,
    bytes_max: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    let file = match disk.open(path, OpenMode::Existing) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("open", path)(error)),
    };
    read_all(file.as_ref(), bytes_max)
        .map(Some)
        .map_err(StorageError::io("read", path))
}

/// Replaces `dir/meta` atomically and durably.
pub fn write_meta(disk: &dyn Disk, dir: &Path, meta: &SegmentMeta) -> Result<(), StorageError> {
    write_atomic(disk, dir, META_FILE, &meta.encode())
}

/// Reads `dir/meta`; `Ok(None)` when there is none.
pub fn read_meta(disk: &dyn Disk, dir: &Path) -> Result<Option<SegmentMeta>, StorageError> {
    let path = dir.join(META_FILE);
    let Some(bytes) = read_optional(disk, &path, META_BYTES_MAX)? else {
        return Ok(None);
    };
    SegmentMeta::decode(&bytes)
        .map(Some)
        .map_err(|reason| StorageError::Corrupt {
            path,
            offset: 0,
            reason: reason.into(),
        })
}

/// The page directory (`pagedir`): for every page whose records below the GC point were
/// collected, the LSN of the version a read must start from or above (its "cover"). With
/// it a restart knows which versions must exist, so a lost or unreadable page frame is
/// found even when its own header is damaged (S11).
///
/// Layout, little-endian: magic `"SIXD"` u32, version u8, 3 zero bytes, count u32, then
/// per page (db u32, page number u32, LSN u64), then CRC32C of everything before, u32.
pub const PAGEDIR_FILE: &str = "pagedir";
const PAGEDIR_MAGIC: u32 = u32::from_le_bytes(*b"SIXD");
const PAGEDIR_ENTRY_BYTES: usize = 16;
/// Pages one segment may hold versions of: 10 GiB of 4 KiB pages per database for up to
/// 64 databases. A limit on what is read from disk, not a design target.
pub const PAGEDIR_ENTRIES_MAX: usize = 64 * 2_621_440;

pub fn encode_pagedir(covers: &BTreeMap<PageId, Lsn>) -> Vec<u8> {
    assert!(
        covers.len() <= PAGEDIR_ENTRIES_MAX,
        "pages bounded by the PG size"
    );
    let mut out = Vec::with_capacity(12 + covers.len() * PAGEDIR_ENTRY_BYTES + 4);
    out.extend_from_slice(&PAGEDIR_MAGIC.to_le_bytes());
    out.extend_from_slice(&[META_VERSION, 0, 0, 0]);
    out.extend_from_slice(&(covers.len() as u32).to_le_bytes());
    for (page, lsn) in covers {
        out.extend_from_slice(&page.db.0.to_le_bytes());
        out.extend_from_slice(&page.page_no.to_le_bytes());
        out.extend_from_slice(&lsn.0.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub fn decode_pagedir(bytes: &[u8]) -> Result<BTreeMap<PageId, Lsn>, &'static str> {
    if bytes.len() < 16 {
        return Err("page directory too short");
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().map_err(|_| "crc")?) {
        return Err("page directory CRC32C mismatch");
    }
    let mut reader = Reader { bytes: body, at: 0 };
    if reader.u32()? != PAGEDIR_MAGIC || reader.u32()? != u32::from(META_VERSION) {
        return Err("bad page directory header");
    }
    let count = reader.u32()? as usize;
    if count > PAGEDIR_ENTRIES_MAX || body.len() != 12 + count * PAGEDIR_ENTRY_BYTES {
        return Err("page directory length does not match its count");
    }
    let mut covers = BTreeMap::new();
    for _ in 0..count {
        let page = PageId {
            db: DbId(reader.u32()?),
            page_no: reader.u32()?,
        };
        covers.insert(page, Lsn(reader.u64()?));
    }
    Ok(covers)
}

pub fn read_pagedir(disk: &dyn Disk, dir: &Path) -> Result<BTreeMap<PageId, Lsn>, StorageError> {
    let path = dir.join(PAGEDIR_FILE);
    let max = (16 + PAGEDIR_ENTRIES_MAX * PAGEDIR_ENTRY_BYTES) as u64;
    let Some(bytes) = read_optional(disk, &path, max)? else {
        return Ok(BTreeMap::new());
    };
    decode_pagedir(&bytes).map_err(|reason| StorageError::Corrupt {
        path,
        offset: 0,
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> SegmentMeta {
        let mut meta = SegmentMeta::new(SegmentId {
            pg: PgId(7),
            replica: 5,
        });
        meta.epoch = Epoch(3);
        meta.vdl_hint = Lsn(90);
        meta.checkpoint = Lsn(80);
        meta.forgotten_through = Lsn(79);
        meta.pgmrpl = Lsn(85);
        meta.truncations.push(TruncationRange {
            lsn_begin: Lsn(100),
            lsn_end: Lsn(200),
            epoch: Epoch(3),
        });
        meta
    }

    #[test]
    fn meta_and_pagedir_round_trip_and_detect_every_single_bit_flip() {
        let bytes = meta().encode();
        assert_eq!(SegmentMeta::decode(&bytes), Ok(meta()));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentMeta::decode(&flipped).is_err(), "bit {bit}");
        }
        let covers = BTreeMap::from([(PageId::new(1, 2), Lsn(3)), (PageId::new(0, 9), Lsn(4))]);
        let bytes = encode_pagedir(&covers);
        assert_eq!(decode_pagedir(&bytes), Ok(covers));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_pagedir(&flipped).is_err(), "bit {bit}");
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            // L6 for our own files: an error, never a panic.
            let _ = SegmentMeta::decode(&bytes);
            let _ = decode_pagedir(&bytes);
        }

        #[test]
        fn a_valid_crc_over_garbage_is_still_refused_or_well_formed(mut body in prop::collection::vec(any::<u8>(), 0..300)) {
            // Structure is checked after the CRC: re-sealing garbage must not panic either.
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            let _ = SegmentMeta::decode(&body);
            let _ = decode_pagedir(&body);
        }
    }
}
