//! The bytes in the backup store: staged redo objects (B6) and manifest points (B9), with
//! the checks every object passes before any of its contents is used (B16).

use std::collections::BTreeMap;

use sixfold_core::codec::{decode_record, encode_record};
use sixfold_core::{Lsn, PgId, RedoRecord};

/// B6: the magic of a redo object's trailer.
pub const REDO_MAGIC: &[u8; 8] = b"SIXFSTG1";
/// B6: `magic | pg u32 | from u64 | to u64 | count u32 | crc32c u32`.
pub const REDO_TRAILER_BYTES: usize = 8 + 4 + 8 + 8 + 4 + 4;
/// B9: the first line of a manifest point.
pub const MANIFEST_HEADER: &str = "sixfold-manifest 1";

/// B6: the folder of a PG's redo objects.
pub fn redo_dir(pg: PgId) -> String {
    format!("redo/pg{:010}", pg.0)
}

/// B6: a redo object's name, `redo/pg{PG}/{from}-{to}` (20-digit decimal LSNs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedoObjectName {
    pub pg: PgId,
    pub from: Lsn,
    pub to: Lsn,
}

impl RedoObjectName {
    pub fn name(&self) -> String {
        format!(
            "{}/{:020}-{:020}",
            redo_dir(self.pg),
            self.from.0,
            self.to.0
        )
    }

    /// The name's parts; `None` for a name that is not a redo object's.
    pub fn parse(name: &str) -> Option<RedoObjectName> {
        let rest = name.strip_prefix("redo/pg")?;
        let (pg, range) = rest.split_once('/')?;
        let (from, to) = range.split_once('-')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(pg, 10) || !digits(from, 20) || !digits(to, 20) {
            return None;
        }
        let object = RedoObjectName {
            pg: PgId(pg.parse().ok()?),
            from: Lsn(from.parse().ok()?),
            to: Lsn(to.parse().ok()?),
        };
        (object.from < object.to).then_some(object)
    }
}

/// B6: an object holding `records` (every record of the PG in `(from, to]`, in LSN order),
/// each framed as on disk, then the trailer.
pub fn encode_redo_object(name: &RedoObjectName, records: &[RedoRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        encode_record(record, &mut out);
    }
    out.extend_from_slice(REDO_MAGIC);
    out.extend_from_slice(&name.pg.0.to_le_bytes());
    out.extend_from_slice(&name.from.0.to_le_bytes());
    out.extend_from_slice(&name.to.0.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// B16: the records of a redo object, once its CRC, its trailer against its name, and each
/// record (frame CRCs, PG, LSN inside `(from, to]`, increasing) are checked. The error
/// string says what failed.
pub fn decode_redo_object(name: &RedoObjectName, bytes: &[u8]) -> Result<Vec<RedoRecord>, String> {
    if bytes.len() < REDO_TRAILER_BYTES {
        return Err(format!("{} bytes, shorter than its trailer", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let trailer = &body[body.len() - (REDO_TRAILER_BYTES - 4)..];
    let u64_at = |at: usize| u64::from_le_bytes(trailer[at..at + 8].try_into().expect("8"));
    let u32_at = |at: usize| u32::from_le_bytes(trailer[at..at + 4].try_into().expect("4"));
    if &trailer[..8] != REDO_MAGIC {
        return Err("bad trailer magic".into());
    }
    let (pg, from, to, count) = (
        PgId(u32_at(8)),
        Lsn(u64_at(12)),
        Lsn(u64_at(20)),
        u32_at(28),
    );
    if (pg, from, to) != (name.pg, name.from, name.to) {
        return Err(format!(
            "trailer says pg{} ({}, {}], the name says otherwise",
            pg.0, from.0, to.0
        ));
    }
    let mut frames = &body[..body.len() - trailer.len()];
    let mut records: Vec<RedoRecord> = Vec::new();
    while !frames.is_empty() {
        let (verified, used) = decode_record(frames)
            .map_err(|e| format!("record {} after {}: {e}", records.len(), from.0))?;
        let record = verified.into_record();
        let after = records.last().map_or(from, |r| r.lsn);
        if record.pg != pg || record.lsn <= after || record.lsn > to {
            return Err(format!(
                "record {} (pg{}) is out of place in pg{} ({}, {}]",
                record.lsn.0, record.pg.0, pg.0, from.0, to.0
            ));
        }
        records.push(record);
        frames = &frames[used..];
    }
    if records.len() != count as usize {
        return Err(format!(
            "{} records, the trailer says {count}",
            records.len()
        ));
    }
    Ok(records)
}

/// B9: one manifest point: at wall-clock `time_ms`, the volume's VDL was `vdl`, and each
/// PG's last LSN at or below it was `pg_last` (a PG not named has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestPoint {
    pub vdl: Lsn,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub pg_pages: u32,
    pub volume_id: String,
    pub pg_last: BTreeMap<PgId, Lsn>,
    /// Membership: `(node id, AZ, address)`.
    pub nodes: Vec<(u32, String, String)>,
}

impl ManifestPoint {
    /// B9: `manifest/{vdl}` (20-digit decimal).
    pub fn name(&self) -> String {
        manifest_name(self.vdl)
    }

    /// B9: a text object, one field a line, ending with a CRC32C line over the rest.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!(
            "{MANIFEST_HEADER}\nvolume_id {}\npg_pages {}\nvdl {}\ntime_ms {}\n",
            self.volume_id, self.pg_pages, self.vdl.0, self.time_ms
        );
        for (pg, last) in &self.pg_last {
            text.push_str(&format!("pg {} {}\n", pg.0, last.0));
        }
        for (id, az, addr) in &self.nodes {
            text.push_str(&format!("node {id} {az} {addr}\n"));
        }
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("crc32c {crc:08x}\n"));
        text.into_bytes()
    }

    /// B16: a manifest point whose CRC and fields check.
    pub fn decode(bytes: &[u8]) -> Result<ManifestPoint, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("too short")?;
        let (body, crc_line) = text.split_at(body_end);
        let stored = crc_line
            .trim_end()
            .strip_prefix("crc32c ")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or("no CRC line")?;
        let computed = crc32c::crc32c(body.as_bytes());
        if stored != computed {
            return Err(format!(
                "CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let mut lines = body.lines();
        if lines.next() != Some(MANIFEST_HEADER) {
            return Err("bad header line".into());
        }
        let mut point = ManifestPoint {
            vdl: Lsn::ZERO,
            time_ms: 0,
            pg_pages: 0,
            volume_id: String::new(),
            pg_last: BTreeMap::new(),
            nodes: Vec::new(),
        };
        for line in lines {
            parse_manifest_line(&mut point, line).ok_or(format!("bad line {line:?}"))?;
        }
        if point.pg_pages == 0 {
            return Err("no pg_pages".into());
        }
        Ok(point)
    }
}

fn parse_manifest_line(point: &mut ManifestPoint, line: &str) -> Option<()> {
    let mut words = line.split(' ');
    let key = words.next()?;
    let mut number = || words.next()?.parse::<u64>().ok();
    match key {
        "volume_id" => point.volume_id = line.strip_prefix("volume_id ")?.to_string(),
        "pg_pages" => point.pg_pages = u32::try_from(number()?).ok()?,
        "vdl" => point.vdl = Lsn(number()?),
        "time_ms" => point.time_ms = number()?,
        "pg" => {
            let pg = PgId(u32::try_from(number()?).ok()?);
            point.pg_last.insert(pg, Lsn(number()?));
        }
        "node" => {
            let id = u32::try_from(number()?).ok()?;
            let az = words.next()?.to_string();
            let addr = words.next()?.to_string();
            point.nodes.push((id, az, addr));
        }
        _ => return None,
    }
    Some(())
}

/// B9: the name of the manifest point at `vdl`.
pub fn manifest_name(vdl: Lsn) -> String {
    format!("manifest/{:020}", vdl.0)
}

/// The VDL a manifest object's name gives, if it is one.
pub fn parse_manifest_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix("manifest/")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(Lsn))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixfold_core::{Edit, Epoch, PageId, RedoBody};

    fn record(lsn: u64, prev: u64) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            pg: PgId(3),
            prev_lsn_pg: Lsn(prev),
            prev_lsn_page: Lsn(prev),
            epoch: Epoch(1),
            page: PageId::new(1, 7),
            cpl: true,
            body: RedoBody::Edits(vec![Edit {
                offset: 10,
                bytes: vec![lsn as u8; 5],
            }]),
        }
    }

    fn name(from: u64, to: u64) -> RedoObjectName {
        RedoObjectName {
            pg: PgId(3),
            from: Lsn(from),
            to: Lsn(to),
        }
    }

    #[test]
    fn redo_object_round_trips_and_its_name_parses() {
        // B6: framed records and a trailer; the name carries pg, from and to.
        let records = vec![record(5, 0), record(9, 5)];
        let bytes = encode_redo_object(&name(0, 12), &records);
        assert_eq!(decode_redo_object(&name(0, 12), &bytes).unwrap(), records);
        let text = name(0, 12).name();
        assert_eq!(
            text,
            "redo/pg0000000003/00000000000000000000-00000000000000000012"
        );
        assert_eq!(RedoObjectName::parse(&text), Some(name(0, 12)));
        assert_eq!(RedoObjectName::parse("redo/pg3/0-12"), None);
    }

    #[test]
    fn every_damaged_byte_and_a_wrong_name_are_refused() {
        // B16: a flipped byte anywhere fails the object's CRC or a record's; the trailer
        // must match the name; a record outside (from, to] is refused.
        let records = vec![record(5, 0), record(9, 5)];
        let bytes = encode_redo_object(&name(0, 12), &records);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(
                decode_redo_object(&name(0, 12), &damaged).is_err(),
                "byte {at}"
            );
        }
        let error = decode_redo_object(&name(0, 13), &bytes).unwrap_err();
        assert!(error.contains("name"), "{error}");
        let outside = encode_redo_object(&name(6, 12), &records);
        assert!(decode_redo_object(&name(6, 12), &outside).is_err());
        assert!(decode_redo_object(&name(0, 12), &bytes[..10]).is_err());
    }

    #[test]
    fn manifest_point_round_trips_and_refuses_damage() {
        // B9, B16.
        let point = ManifestPoint {
            vdl: Lsn(42),
            time_ms: 1_700_000_000_123,
            pg_pages: 1024,
            volume_id: "00ff".into(),
            pg_last: BTreeMap::from([(PgId(0), Lsn(40)), (PgId(2), Lsn(42))]),
            nodes: vec![(1, "az1".into(), "127.0.0.1:7101".into())],
        };
        let bytes = point.encode();
        assert_eq!(ManifestPoint::decode(&bytes).unwrap(), point);
        assert_eq!(parse_manifest_name(&point.name()), Some(Lsn(42)));
        let mut damaged = bytes.clone();
        damaged[30] ^= 1;
        assert!(ManifestPoint::decode(&damaged).unwrap_err().contains("CRC"));
    }
}
