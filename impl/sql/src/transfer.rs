//! Export and import of one database as a plain SQLite file (spec/backup.md B1–B5).
//!
//! - [`export_database`]: SQLite's backup API copies the database from a connection on the
//!   volume (through the VFS) into a local file, in one read transaction: one read point
//!   (R2), so the file is the database as of one durable point (B1).
//! - [`import_database`]: a local SQLite file is first copied (backup API again, so a file
//!   in WAL mode or being written is read consistently), checked (`PRAGMA
//!   integrity_check`), and only then written to the volume, named in one last MTR (B3–B5).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::catalog::{Catalog, CatalogError};
use crate::volume::PageVolume;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// Problems `integrity_check` reports at most, in an error.
const INTEGRITY_ERRORS_MAX: usize = 10;

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// B3: the file to import is not an SQLite database.
    #[error("{path}: not an SQLite database ({reason})")]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// B3: the file to import is an SQLite database that fails its integrity check.
    #[error("{path}: corrupt SQLite database: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// The catalog refused (a name that exists or does not, an invalid name) or the
    /// volume failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// SQLite failed while copying.
    #[error("{context}: {source}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// SQLite answered something it should not have.
    #[error("{context}: {detail}")]
    Unexpected {
        /// What was being done.
        context: String,
        /// What happened.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl TransferError {
    /// True for a refusal of the user's input (exit 1), false for a failure (exit 2).
    pub fn is_refusal(&self) -> bool {
        match self {
            TransferError::NotSqlite { .. } | TransferError::Corrupt { .. } => true,
            TransferError::Catalog(error) => !matches!(
                error,
                CatalogError::Volume(_) | CatalogError::Corrupt(_) | CatalogError::Source(_)
            ),
            TransferError::Sqlite { .. }
            | TransferError::Unexpected { .. }
            | TransferError::Io { .. } => false,
        }
    }
}

fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> TransferError {
    let context = context.into();
    move |source| TransferError::Sqlite { context, source }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What an export or import copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferSummary {
    /// SQLite pages copied.
    pub pages: u64,
    /// Bytes of the SQLite file.
    pub bytes: u64,
}

/// Copies every page of `from` into `to` in one backup step: one read transaction on
/// `from`, one write transaction on `to`.
fn copy_whole(from: &Connection, to: &mut Connection, context: &str) -> Result<(), TransferError> {
    let backup = Backup::new(from, to).map_err(sqlite(context))?;
    match backup.step(-1).map_err(sqlite(context))? {
        StepResult::Done => Ok(()),
        other => Err(TransferError::Unexpected {
            context: context.to_owned(),
            detail: format!("the backup step ended with {other:?}"),
        }),
    }
}

/// A file next to `path` that the finished copy is renamed from (B1: a partial export
/// never appears under the name asked for).
fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "export".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}.sixfold-{}.partial", std::process::id()))
}

/// B1: writes database `name` of `volume` to `path` as a plain SQLite file (rollback
/// journal mode), as of one read point; replaces `path` only once the copy is complete
/// and synced.
pub fn export_database(
    volume: Arc<dyn PageVolume>,
    name: &str,
    path: &Path,
) -> Result<TransferSummary, TransferError> {
    if Catalog::new(volume.clone()).lookup(name)?.is_none() {
        return Err(CatalogError::NotFound(name.to_owned()).into());
    }
    let source = crate::open_connection(volume, name)
        .map_err(sqlite(format!("opening database {name:?} on the volume")))?;
    let staging = staging_path(path);
    let result = export_into(&source, &staging);
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
        return result;
    }
    if let Err(error) = std::fs::rename(&staging, path) {
        let _ = std::fs::remove_file(&staging);
        return Err(io(path)(error));
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(dir))?;
    }
    result
}

fn export_into(source: &Connection, staging: &Path) -> Result<TransferSummary, TransferError> {
    let _ = std::fs::remove_file(staging);
    let mut target = Connection::open(staging).map_err(sqlite("creating the export file"))?;
    copy_whole(source, &mut target, "copying the database")?;
    let summary = summary_of(&target)?;
    target
        .close()
        .map_err(|(_, error)| sqlite("closing the export file")(error))?;
    File::open(staging)
        .and_then(|file| file.sync_all())
        .map_err(io(staging))?;
    Ok(summary)
}

fn summary_of(conn: &Connection) -> Result<TransferSummary, TransferError> {
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .map_err(sqlite("reading the page count"))?;
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .map_err(sqlite("reading the page size"))?;
    let pages = u64::try_from(pages).unwrap_or(0);
    let page_size = u64::try_from(page_size).unwrap_or(0);
    Ok(TransferSummary {
        pages,
        bytes: pages * page_size,
    })
}

/// B3: refuses a file that does not start with SQLite's header, before SQLite opens it.
fn check_header(path: &Path) -> Result<(), TransferError> {
    use std::io::Read;
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    File::open(path)
        .map_err(io(path))?
        .take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut header)
        .map_err(io(path))?;
    if header.as_slice() == SQLITE_HEADER {
        return Ok(());
    }
    let reason = if header.is_empty() {
        "the file is empty".to_owned()
    } else {
        "its first 16 bytes are not \"SQLite format 3\\0\"".to_owned()
    };
    Err(TransferError::NotSqlite {
        path: path.to_owned(),
        reason,
    })
}

/// B3: an SQLite error while reading the file to import is the file's fault.
fn unreadable(path: &Path) -> impl FnOnce(rusqlite::Error) -> TransferError + '_ {
    move |error| match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => TransferError::NotSqlite {
            path: path.to_owned(),
            reason: error.to_string(),
        },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => TransferError::Corrupt {
            path: path.to_owned(),
            detail: error.to_string(),
        },
        _ => TransferError::Sqlite {
            context: format!("reading {}", path.display()),
            source: error,
        },
    }
}

/// B3: a consistent, checked copy of the SQLite file at `path`, in rollback-journal mode,
/// at `snapshot`.
fn checked_snapshot(path: &Path, snapshot: &Path) -> Result<TransferSummary, TransferError> {
    check_header(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let source = Connection::open_with_flags(path, flags).map_err(unreadable(path))?;
    let mut copy = Connection::open(snapshot).map_err(sqlite("creating a snapshot"))?;
    copy_whole(&source, &mut copy, "copying the file").map_err(|error| match error {
        TransferError::Sqlite { source, .. } => unreadable(path)(source),
        other => other,
    })?;
    drop(source);
    integrity_check(&copy).map_err(|detail| TransferError::Corrupt {
        path: path.to_owned(),
        detail,
    })?;
    // A WAL file's header says so (bytes 18–19); the volume refuses WAL (V6).
    let mode: String = copy
        .query_row("PRAGMA journal_mode=DELETE", [], |row| row.get(0))
        .map_err(sqlite("leaving WAL mode"))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(TransferError::Unexpected {
            context: "leaving WAL mode".into(),
            detail: format!("the journal mode stayed {mode}"),
        });
    }
    let summary = summary_of(&copy)?;
    copy.close()
        .map_err(|(_, error)| sqlite("closing the snapshot")(error))?;
    Ok(summary)
}

/// `PRAGMA integrity_check`: `Ok` if SQLite says "ok", else its first findings.
fn integrity_check(conn: &Connection) -> Result<(), String> {
    let mut statement = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|error| error.to_string())?;
    let rows: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.take(INTEGRITY_ERRORS_MAX).collect())
        .map_err(|error| error.to_string())?;
    if rows == ["ok"] {
        return Ok(());
    }
    Err(rows.join("; "))
}

/// B3: an SQLite file checked and copied aside, ready to load into a volume. Checking
/// needs no volume, so a bad file is refused before a writer is opened.
pub struct ImportFile {
    _dir: tempfile::TempDir,
    snapshot: PathBuf,
    summary: TransferSummary,
}

impl ImportFile {
    /// B3: a consistent copy of the SQLite file at `path` (through SQLite, so a file in WAL
    /// mode or being written is read as of one transaction), checked with `PRAGMA
    /// integrity_check`, in rollback-journal mode.
    pub fn check(path: &Path) -> Result<ImportFile, TransferError> {
        let dir = tempfile::tempdir().map_err(io(Path::new("temporary folder")))?;
        let snapshot = dir.path().join("import.db");
        let summary = checked_snapshot(path, &snapshot)?;
        Ok(ImportFile {
            _dir: dir,
            snapshot,
            summary,
        })
    }

    /// B4, B5: writes the file into `volume` as the new database `name`, named in the last
    /// MTR; refused if `name` exists.
    pub fn load(
        self,
        volume: Arc<dyn PageVolume>,
        name: &str,
    ) -> Result<TransferSummary, TransferError> {
        let file = File::open(&self.snapshot).map_err(io(&self.snapshot))?;
        let bytes = file.metadata().map_err(io(&self.snapshot))?.len();
        Catalog::new(volume).import_database(name, bytes, &mut BufReader::new(file))?;
        Ok(TransferSummary {
            pages: self.summary.pages,
            bytes,
        })
    }
}

/// B3–B5: loads the SQLite file at `path` into `volume` as the new database `name`.
/// Nothing is written to the volume before the file passed its checks (B3); readers see
/// the database whole or not at all (B4); a name that exists is refused (B5).
pub fn import_database(
    volume: Arc<dyn PageVolume>,
    name: &str,
    path: &Path,
) -> Result<TransferSummary, TransferError> {
    crate::validate_name(name)?;
    if Catalog::new(volume.clone()).lookup(name)?.is_some() {
        return Err(CatalogError::AlreadyExists(name.to_owned()).into());
    }
    ImportFile::check(path)?.load(volume, name)
}
