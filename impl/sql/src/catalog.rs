//! The catalog (V3) and the per-database metadata page.
//!
//! Layout on the volume:
//! - Database 0 is the catalog. Its pages 0, 1, 2, … hold one byte stream:
//!   `magic "SIXFCAT1" | version u32 | next_db_id u32 | count u32 | stream_bytes u32`
//!   followed by `count` entries `db_id u32 | name_len u8 | name`, sorted by name,
//!   continuing from page to page. All integers are little-endian.
//! - Every database's page 0 is its metadata page:
//!   `magic "SIXFDB01" | db_id u32 | page_bytes u32 | size_bytes u64 | size_pages u32 |
//!   name_len u8 | name`. `size_bytes` is the SQLite file size; `size_pages` is
//!   `ceil(size_bytes / 4096)`, kept for readers of the raw volume.
//! - SQLite's page N (1-based, at byte offset (N-1)·4096) is the database's page N.
//!
//! Every change is one `commit()` (one MTR, V3/V5): create writes the catalog pages and
//! the new database's metadata page together; drop writes the catalog pages and a zeroed
//! metadata page together. Database ids are never reused, so pages a dropped database
//! left on the volume can never show through in a new one.

use std::sync::Arc;

use crate::registry::{VolumeState, state_for};
use crate::volume::{PAGE_SIZE, PageVolume, PageWrite, VolumeError};

/// The catalog's database id (V3).
pub const CATALOG_DB: u32 = 0;
/// Page number of a database's metadata page.
pub const META_PAGE_NO: u32 = 0;
/// Longest database name, in bytes.
pub const DB_NAME_BYTES_MAX: usize = 64;
/// Most databases a volume's catalog holds.
pub const DATABASES_MAX: u32 = 1024;
/// B4: most pages one MTR of an import writes (1 MiB of images; the writer's bound is
/// 2 048 pages).
pub const IMPORT_MTR_PAGES: usize = 256;
/// SQL database ids stay below this: ids from here up belong to `sixfold load`'s
/// page-level databases (`sixfold_cluster::writer::PAGE_DB_ID_BASE`), so the two never
/// share pages.
pub const SQL_DB_ID_END: u32 = 0x8000_0000;

const CATALOG_MAGIC: &[u8; 8] = b"SIXFCAT1";
const CATALOG_VERSION: u32 = 1;
const CATALOG_HEADER_BYTES: usize = 24;
const META_MAGIC: &[u8; 8] = b"SIXFDB01";
/// Catalog stream bound: header plus `DATABASES_MAX` entries of the longest name.
const CATALOG_STREAM_BYTES_MAX: usize =
    CATALOG_HEADER_BYTES + DATABASES_MAX as usize * (5 + DB_NAME_BYTES_MAX);
/// File names SQLite derives from a database name; a database may not be named so.
const RESERVED_SUFFIXES: [&str; 3] = ["-journal", "-wal", "-shm"];

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The name is not a valid database name.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A database of that name exists.
    #[error("database {0:?} already exists")]
    AlreadyExists(String),
    /// No database of that name exists.
    #[error("no database named {0:?}")]
    NotFound(String),
    /// The database is open in this process; it cannot be dropped.
    #[error("database {name:?} is open ({open_files} open files)")]
    InUse {
        /// The database.
        name: String,
        /// How many files have it open.
        open_files: u32,
    },
    /// The catalog holds [`DATABASES_MAX`] databases or has used up its ids.
    #[error("catalog full ({DATABASES_MAX} databases max)")]
    Full,
    /// A catalog or metadata page does not decode.
    #[error("corrupt catalog or metadata: {0}")]
    Corrupt(String),
    /// A file to import is larger than a database can be (2³² − 1 pages).
    #[error("{0} bytes is more than a database holds")]
    TooLarge(u64),
    /// Reading the content of a database to import failed.
    #[error("reading the file to import: {0}")]
    Source(String),
    /// The volume failed.
    #[error("volume: {0}")]
    Volume(#[from] VolumeError),
}

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// The database name.
    pub name: String,
    /// Its id on the volume (V1).
    pub db_id: u32,
}

/// Checks a database name: 1–64 bytes of `[A-Za-z0-9_.-]`, starting with a letter,
/// digit or `_`, not ending in a suffix SQLite uses for its side files.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |reason| {
        Err(CatalogError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > DB_NAME_BYTES_MAX {
        return invalid("longer than 64 bytes");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.chars().all(allowed) {
        return invalid("only ASCII letters, digits, '_', '.' and '-' are allowed");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("must start with a letter, digit or '_'");
    }
    if RESERVED_SUFFIXES
        .iter()
        .any(|suffix| name.ends_with(suffix))
    {
        return invalid("ends in -journal, -wal or -shm");
    }
    Ok(())
}

/// The decoded catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogData {
    next_db_id: u32,
    /// Sorted by name.
    entries: Vec<DatabaseInfo>,
}

impl CatalogData {
    fn empty() -> Self {
        Self {
            next_db_id: 1,
            entries: Vec::new(),
        }
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<u32> {
        self.entries
            .binary_search_by(|entry| entry.name.as_str().cmp(name))
            .ok()
            .map(|index| self.entries[index].db_id)
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CATALOG_HEADER_BYTES + self.entries.len() * 16);
        bytes.extend_from_slice(CATALOG_MAGIC);
        bytes.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
        bytes.extend_from_slice(&self.next_db_id.to_le_bytes());
        let count = u32::try_from(self.entries.len()).expect("entries bounded by DATABASES_MAX");
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]); // stream_bytes, set below
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.db_id.to_le_bytes());
            let name_len = u8::try_from(entry.name.len()).expect("names validated");
            bytes.push(name_len);
            bytes.extend_from_slice(entry.name.as_bytes());
        }
        let stream_bytes = u32::try_from(bytes.len()).expect("stream bounded");
        bytes[20..24].copy_from_slice(&stream_bytes.to_le_bytes());
        debug_assert_eq!(Self::decode(&bytes).as_ref(), Ok(self));
        bytes
    }

    fn decode(stream: &[u8]) -> Result<Self, String> {
        let header = stream
            .get(..CATALOG_HEADER_BYTES)
            .ok_or("catalog header truncated")?;
        if &header[..8] != CATALOG_MAGIC {
            return Err("catalog magic missing".into());
        }
        let version = read_u32(header, 8);
        if version != CATALOG_VERSION {
            return Err(format!("catalog version {version} unknown"));
        }
        let next_db_id = read_u32(header, 12);
        let count = read_u32(header, 16);
        if count > DATABASES_MAX {
            return Err(format!("catalog count {count} over {DATABASES_MAX}"));
        }
        let mut at = CATALOG_HEADER_BYTES;
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let fixed = stream.get(at..at + 5).ok_or("catalog entry truncated")?;
            let db_id = read_u32(fixed, 0);
            let name_len = usize::from(fixed[4]);
            let name_bytes = stream
                .get(at + 5..at + 5 + name_len)
                .ok_or("catalog name truncated")?;
            let name =
                String::from_utf8(name_bytes.to_vec()).map_err(|_| "catalog name not UTF-8")?;
            validate_name(&name).map_err(|e| e.to_string())?;
            if db_id == CATALOG_DB || db_id >= next_db_id {
                return Err(format!("catalog entry {name:?} has bad id {db_id}"));
            }
            entries.push(DatabaseInfo { name, db_id });
            at += 5 + name_len;
        }
        if !entries.windows(2).all(|pair| pair[0].name < pair[1].name) {
            return Err("catalog entries not sorted and unique".into());
        }
        Ok(Self {
            next_db_id,
            entries,
        })
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the catalog as of `read_point`.
pub(crate) fn read_catalog(
    volume: &dyn PageVolume,
    read_point: u64,
) -> Result<(CatalogData, Vec<Vec<u8>>), CatalogError> {
    let Some(first) = volume.read_page(CATALOG_DB, 0, read_point)? else {
        return Ok((CatalogData::empty(), Vec::new()));
    };
    let stream_bytes = read_u32(&first, 20) as usize;
    if !(CATALOG_HEADER_BYTES..=CATALOG_STREAM_BYTES_MAX).contains(&stream_bytes) {
        return Err(CatalogError::Corrupt(format!(
            "catalog stream of {stream_bytes} bytes"
        )));
    }
    let mut pages = vec![first];
    while pages.len() * PAGE_SIZE < stream_bytes {
        let page_no = u32::try_from(pages.len()).expect("bounded by stream size");
        let page = volume
            .read_page(CATALOG_DB, page_no, read_point)?
            .ok_or_else(|| CatalogError::Corrupt(format!("catalog page {page_no} missing")))?;
        pages.push(page);
    }
    let stream: Vec<u8> = pages.concat();
    let data = CatalogData::decode(&stream[..stream_bytes]).map_err(CatalogError::Corrupt)?;
    Ok((data, pages))
}

/// Runs `f` at a fresh read point, ending the read afterwards (R2, R4).
pub(crate) fn at_read_point<T>(
    volume: &dyn PageVolume,
    f: impl FnOnce(u64) -> Result<T, CatalogError>,
) -> Result<T, CatalogError> {
    let read_point = volume.begin_read()?;
    let result = f(read_point);
    volume.end_read(read_point);
    result
}

/// The metadata page of a database (page 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetaPage {
    pub(crate) db_id: u32,
    pub(crate) size_bytes: u64,
    pub(crate) name: String,
}

impl MetaPage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut page = vec![0u8; PAGE_SIZE];
        page[..8].copy_from_slice(META_MAGIC);
        page[8..12].copy_from_slice(&self.db_id.to_le_bytes());
        let page_bytes = u32::try_from(PAGE_SIZE).expect("4096 fits");
        page[12..16].copy_from_slice(&page_bytes.to_le_bytes());
        page[16..24].copy_from_slice(&self.size_bytes.to_le_bytes());
        let size_pages = u32::try_from(self.size_bytes.div_ceil(PAGE_SIZE as u64))
            .expect("file size bounded by u32 pages");
        page[24..28].copy_from_slice(&size_pages.to_le_bytes());
        let name_len = u8::try_from(self.name.len()).expect("names validated");
        page[28] = name_len;
        page[29..29 + self.name.len()].copy_from_slice(self.name.as_bytes());
        debug_assert_eq!(Self::decode(&page, self.db_id).as_ref(), Ok(self));
        page
    }

    pub(crate) fn decode(page: &[u8], db_id: u32) -> Result<Self, String> {
        if page.len() != PAGE_SIZE || &page[..8] != META_MAGIC {
            return Err(format!("database {db_id} has no metadata page"));
        }
        let found_id = read_u32(page, 8);
        if found_id != db_id {
            return Err(format!(
                "metadata page of database {db_id} names {found_id}"
            ));
        }
        let size_bytes = read_u64(page, 16);
        let name_len = usize::from(page[28]);
        let name = String::from_utf8(page[29..29 + name_len].to_vec())
            .map_err(|_| format!("metadata name of database {db_id} not UTF-8"))?;
        Ok(Self {
            db_id,
            size_bytes,
            name,
        })
    }
}

/// The catalog of one volume: create, drop and list its databases (V3).
pub struct Catalog {
    volume: Arc<dyn PageVolume>,
    state: Arc<VolumeState>,
}

impl Catalog {
    /// The catalog of `volume`.
    pub fn new(volume: Arc<dyn PageVolume>) -> Self {
        let state = state_for(&volume);
        Self { volume, state }
    }

    /// Creates an empty database; returns its id. One MTR: catalog pages and the new
    /// database's metadata page (V3, V5).
    pub fn create_database(&self, name: &str) -> Result<u32, CatalogError> {
        validate_name(name)?;
        let _guard = self.state.catalog_guard();
        at_read_point(self.volume.as_ref(), |read_point| {
            let (mut data, old_pages) = read_catalog(self.volume.as_ref(), read_point)?;
            let Err(index) = data
                .entries
                .binary_search_by(|entry| entry.name.as_str().cmp(name))
            else {
                return Err(CatalogError::AlreadyExists(name.to_owned()));
            };
            if data.entries.len() >= DATABASES_MAX as usize || data.next_db_id >= SQL_DB_ID_END {
                return Err(CatalogError::Full);
            }
            let db_id = data.next_db_id;
            data.next_db_id += 1;
            let info = DatabaseInfo {
                name: name.to_owned(),
                db_id,
            };
            data.entries.insert(index, info);
            let meta = MetaPage {
                db_id,
                size_bytes: 0,
                name: name.to_owned(),
            };
            let mut writes = catalog_writes(&data, &old_pages);
            writes.push(PageWrite {
                db: db_id,
                page_no: META_PAGE_NO,
                image: meta.encode(),
            });
            self.volume.commit(writes)?;
            Ok(db_id)
        })
    }

    /// Drops a database. Refused while a connection of this process has it open. One
    /// MTR: catalog pages and a zeroed metadata page (V3, V5).
    pub fn drop_database(&self, name: &str) -> Result<(), CatalogError> {
        validate_name(name)?;
        let _guard = self.state.catalog_guard();
        at_read_point(self.volume.as_ref(), |read_point| {
            let (mut data, old_pages) = read_catalog(self.volume.as_ref(), read_point)?;
            let Ok(index) = data
                .entries
                .binary_search_by(|entry| entry.name.as_str().cmp(name))
            else {
                return Err(CatalogError::NotFound(name.to_owned()));
            };
            let db_id = data.entries[index].db_id;
            let open_files = self.state.open_files(db_id);
            if open_files > 0 {
                return Err(CatalogError::InUse {
                    name: name.to_owned(),
                    open_files,
                });
            }
            data.entries.remove(index);
            let mut writes = catalog_writes(&data, &old_pages);
            writes.push(PageWrite {
                db: db_id,
                page_no: META_PAGE_NO,
                image: vec![0; PAGE_SIZE],
            });
            self.volume.commit(writes)?;
            Ok(())
        })
    }

    /// B4, B5: creates database `name` holding the `size_bytes` bytes `content` yields (an
    /// SQLite file), visible to readers whole or not at all. Three steps: one MTR reserves
    /// a fresh id (the catalog's `next_db_id` moves on, no name yet); MTRs of at most
    /// [`IMPORT_MTR_PAGES`] pages write the content under that unnamed id; one last MTR
    /// adds the catalog entry and the metadata page. A failure before the last MTR leaves
    /// only pages of an id no name points to and no later database reuses (V3).
    pub fn import_database(
        &self,
        name: &str,
        size_bytes: u64,
        content: &mut dyn std::io::Read,
    ) -> Result<u32, CatalogError> {
        validate_name(name)?;
        if size_bytes.div_ceil(PAGE_SIZE as u64) >= u64::from(u32::MAX) {
            return Err(CatalogError::TooLarge(size_bytes));
        }
        let _guard = self.state.catalog_guard();
        let db_id = self.reserve_id(name)?;
        self.write_content(db_id, size_bytes, content)?;
        at_read_point(self.volume.as_ref(), |read_point| {
            let (mut data, old_pages) = read_catalog(self.volume.as_ref(), read_point)?;
            let Err(index) = data
                .entries
                .binary_search_by(|entry| entry.name.as_str().cmp(name))
            else {
                return Err(CatalogError::AlreadyExists(name.to_owned()));
            };
            if data.entries.len() >= DATABASES_MAX as usize {
                return Err(CatalogError::Full);
            }
            let info = DatabaseInfo {
                name: name.to_owned(),
                db_id,
            };
            data.entries.insert(index, info);
            let meta = MetaPage {
                db_id,
                size_bytes,
                name: name.to_owned(),
            };
            let mut writes = catalog_writes(&data, &old_pages);
            writes.push(PageWrite {
                db: db_id,
                page_no: META_PAGE_NO,
                image: meta.encode(),
            });
            self.volume.commit(writes)?;
            Ok(db_id)
        })
    }

    /// B4: one MTR that takes the next id without naming it; refuses a name that exists (B5).
    fn reserve_id(&self, name: &str) -> Result<u32, CatalogError> {
        at_read_point(self.volume.as_ref(), |read_point| {
            let (mut data, old_pages) = read_catalog(self.volume.as_ref(), read_point)?;
            if data.lookup(name).is_some() {
                return Err(CatalogError::AlreadyExists(name.to_owned()));
            }
            if data.entries.len() >= DATABASES_MAX as usize || data.next_db_id >= SQL_DB_ID_END {
                return Err(CatalogError::Full);
            }
            let db_id = data.next_db_id;
            data.next_db_id += 1;
            self.volume.commit(catalog_writes(&data, &old_pages))?;
            Ok(db_id)
        })
    }

    /// B4: the content as SQLite's pages 1, 2, … of `db_id`, [`IMPORT_MTR_PAGES`] per MTR;
    /// pages of zeros are skipped (an unwritten page of a fresh id reads as zeros).
    fn write_content(
        &self,
        db_id: u32,
        size_bytes: u64,
        content: &mut dyn std::io::Read,
    ) -> Result<(), CatalogError> {
        let mut page_no: u32 = 1;
        let mut left = size_bytes;
        while left > 0 {
            let mut writes = Vec::new();
            while left > 0 && writes.len() < IMPORT_MTR_PAGES {
                let take = left.min(PAGE_SIZE as u64) as usize;
                let mut image = vec![0u8; PAGE_SIZE];
                content.read_exact(&mut image[..take]).map_err(|error| {
                    CatalogError::Source(format!("reading page {page_no}: {error}"))
                })?;
                if image.iter().any(|&byte| byte != 0) {
                    writes.push(PageWrite {
                        db: db_id,
                        page_no,
                        image,
                    });
                }
                left -= take as u64;
                page_no += 1;
            }
            if !writes.is_empty() {
                self.volume.commit(writes)?;
            }
        }
        Ok(())
    }

    /// The databases, sorted by name.
    pub fn list_databases(&self) -> Result<Vec<DatabaseInfo>, CatalogError> {
        at_read_point(self.volume.as_ref(), |read_point| {
            Ok(read_catalog(self.volume.as_ref(), read_point)?.0.entries)
        })
    }

    /// The id of the database `name`, if it exists.
    pub fn lookup(&self, name: &str) -> Result<Option<u32>, CatalogError> {
        validate_name(name)?;
        at_read_point(self.volume.as_ref(), |read_point| {
            Ok(read_catalog(self.volume.as_ref(), read_point)?
                .0
                .lookup(name))
        })
    }
}

/// The catalog pages whose image changes (V7 diffs further; unchanged pages are not
/// part of the MTR at all).
fn catalog_writes(data: &CatalogData, old_pages: &[Vec<u8>]) -> Vec<PageWrite> {
    let stream = data.encode();
    assert!(stream.len() <= CATALOG_STREAM_BYTES_MAX);
    stream
        .chunks(PAGE_SIZE)
        .enumerate()
        .filter_map(|(index, chunk)| {
            let mut image = chunk.to_vec();
            image.resize(PAGE_SIZE, 0);
            let unchanged = old_pages.get(index).is_some_and(|old| *old == image);
            let page_no = u32::try_from(index).expect("bounded by stream size");
            (!unchanged).then_some(PageWrite {
                db: CATALOG_DB,
                page_no,
                image,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemVolume;

    fn catalog() -> (Arc<MemVolume>, Catalog) {
        let volume = Arc::new(MemVolume::new());
        let catalog = Catalog::new(volume.clone());
        (volume, catalog)
    }

    #[test]
    fn create_list_drop_round_trip() {
        // V3: name → DbId lives in database 0 and survives re-reading.
        let (volume, catalog) = catalog();
        assert_eq!(catalog.create_database("b").unwrap(), 1);
        assert_eq!(catalog.create_database("a").unwrap(), 2);
        let names: Vec<_> = catalog
            .list_databases()
            .unwrap()
            .into_iter()
            .map(|info| (info.name, info.db_id))
            .collect();
        assert_eq!(names, vec![("a".into(), 2), ("b".into(), 1)]);
        catalog.drop_database("b").unwrap();
        assert_eq!(catalog.lookup("b").unwrap(), None);
        // Ids are never reused.
        assert_eq!(catalog.create_database("b").unwrap(), 3);
        // A second Catalog over the same volume reads the same thing from the pages.
        let again = Catalog::new(volume);
        assert_eq!(again.lookup("a").unwrap(), Some(2));
        assert_eq!(again.lookup("b").unwrap(), Some(3));
    }

    #[test]
    fn each_catalog_change_is_one_commit() {
        // V3/V5: a create is one MTR holding the catalog page and the metadata page.
        let (volume, catalog) = catalog();
        catalog.create_database("x").unwrap();
        assert_eq!(volume.stats().commits_ok, 1);
        assert_eq!(volume.stats().vdl, 2);
        let read_point = volume.begin_read().unwrap();
        let meta = volume
            .read_page(1, META_PAGE_NO, read_point)
            .unwrap()
            .unwrap();
        volume.end_read(read_point);
        let decoded = MetaPage::decode(&meta, 1).unwrap();
        assert_eq!((decoded.size_bytes, decoded.name.as_str()), (0, "x"));
    }

    #[test]
    fn duplicate_missing_and_invalid_names_are_typed_errors() {
        let (_volume, catalog) = catalog();
        catalog.create_database("db").unwrap();
        assert!(matches!(
            catalog.create_database("db"),
            Err(CatalogError::AlreadyExists(_))
        ));
        assert!(matches!(
            catalog.drop_database("nope"),
            Err(CatalogError::NotFound(_))
        ));
        for bad in ["", "a/b", ":memory:", "-x", ".x", "x-journal", "x-wal", "é"] {
            assert!(
                matches!(validate_name(bad), Err(CatalogError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        let long = "a".repeat(DB_NAME_BYTES_MAX + 1);
        assert!(validate_name(&long).is_err());
        assert!(validate_name(&"a".repeat(DB_NAME_BYTES_MAX)).is_ok());
    }

    #[test]
    fn failed_commit_leaves_catalog_unchanged() {
        // V3: the catalog changes only through a commit that succeeded.
        let (volume, catalog) = catalog();
        catalog.create_database("keep").unwrap();
        volume.fail_next_commits(1);
        assert!(matches!(
            catalog.create_database("lost"),
            Err(CatalogError::Volume(_))
        ));
        assert_eq!(catalog.lookup("lost").unwrap(), None);
        assert_eq!(catalog.list_databases().unwrap().len(), 1);
    }

    #[test]
    fn catalog_spanning_many_pages_round_trips() {
        // Enough long names to span several catalog pages.
        let (_volume, catalog) = catalog();
        let names: Vec<String> = (0..200).map(|n| format!("{n:0>60}")).collect();
        for name in &names {
            catalog.create_database(name).unwrap();
        }
        let listed = catalog.list_databases().unwrap();
        assert_eq!(listed.len(), 200);
        assert!(
            listed
                .iter()
                .zip(&names)
                .all(|(info, name)| info.name == *name)
        );
        catalog.drop_database(&names[0]).unwrap();
        assert_eq!(catalog.list_databases().unwrap().len(), 199);
    }

    #[test]
    fn corrupt_catalog_is_a_typed_error() {
        let (volume, catalog) = catalog();
        let mut garbage = vec![0xAB; PAGE_SIZE];
        garbage[20..24].copy_from_slice(&100u32.to_le_bytes());
        volume
            .commit(vec![PageWrite {
                db: CATALOG_DB,
                page_no: 0,
                image: garbage,
            }])
            .unwrap();
        assert!(matches!(
            catalog.list_databases(),
            Err(CatalogError::Corrupt(_))
        ));
    }
}
