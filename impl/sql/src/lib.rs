//! sixfold-sql: stock SQLite (through rusqlite) on a sixfold page volume, the way Aurora
//! runs MySQL on its storage.
//!
//! - [`PageVolume`]: what the SQL layer needs of the volume (the writer implements it).
//! - [`MemVolume`]: an in-memory multi-version volume for tests, with fault hooks.
//! - [`ClusterVolume`]: the networked quorum writer of sixfold-cluster as a volume.
//! - [`Catalog`]: database names → ids, stored in database 0 (V3).
//! - [`open_connection`]: a rusqlite connection to one database of a volume, through a
//!   VFS registered once per volume instance (V4–V7).
//! - [`shell`]: the statement runner behind `sixfold sql`.
//! - [`slt`]: a sqllogictest runner over the VFS.
//! - [`export_database`], [`import_database`]: one database to or from a plain SQLite
//!   file (spec/backup.md B1–B5).
//!
//! docs/sql.md explains the design: the commit point, snapshot reads, what is refused.

mod catalog;
mod cluster_volume;
mod file;
mod memvolume;
mod readonly_volume;
mod registry;
pub mod shell;
pub mod slt;
mod transfer;
mod vfs;
mod volume;

use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, ffi};

pub use catalog::{
    CATALOG_DB, Catalog, CatalogError, DATABASES_MAX, DB_NAME_BYTES_MAX, DatabaseInfo,
    IMPORT_MTR_PAGES, META_PAGE_NO, SQL_DB_ID_END, validate_name,
};
pub use cluster_volume::{ClusterVolume, DURABLE_POLL_MS};
pub use memvolume::{MemVolume, MemVolumeStats};
pub use readonly_volume::ReadOnlyVolume;
pub use transfer::{ImportFile, TransferError, TransferSummary, export_database, import_database};
pub use vfs::last_vfs_error;
pub use volume::{PAGE_SIZE, PageVolume, PageWrite, VolumeError, check_writes};

fn sqlite_error(code: i32, text: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(text))
}

/// V6: refuses to run on an SQLite built without SQLITE_ENABLE_BATCH_ATOMIC_WRITE
/// (the workspace `.cargo/config.toml` sets it for the bundled build).
pub fn require_batch_atomic_write() -> rusqlite::Result<()> {
    // SAFETY: sqlite3_compileoption_used only reads a static NUL-terminated string.
    let used = unsafe { ffi::sqlite3_compileoption_used(c"ENABLE_BATCH_ATOMIC_WRITE".as_ptr()) };
    if used == 1 {
        return Ok(());
    }
    Err(sqlite_error(
        ffi::SQLITE_MISUSE,
        "sixfold: SQLite was built without SQLITE_ENABLE_BATCH_ATOMIC_WRITE (V6); \
         build through the workspace so .cargo/config.toml sets LIBSQLITE3_FLAGS"
            .into(),
    ))
}

/// Opens a connection to database `db_name` of `volume` (V4). The database must exist
/// (see [`Catalog::create_database`]). The VFS is registered with SQLite once per volume
/// instance, under a unique name; connections of one volume share its lock table.
pub fn open_connection(volume: Arc<dyn PageVolume>, db_name: &str) -> rusqlite::Result<Connection> {
    require_batch_atomic_write()?;
    let catalog = Catalog::new(volume.clone());
    match catalog.lookup(db_name) {
        Ok(Some(_)) => {}
        Ok(None) => {
            let text = format!("sixfold: no database named {db_name:?}");
            return Err(sqlite_error(ffi::SQLITE_CANTOPEN, text));
        }
        Err(error) => {
            let code = match error {
                CatalogError::InvalidName { .. } => ffi::SQLITE_CANTOPEN,
                _ => ffi::SQLITE_IOERR,
            };
            return Err(sqlite_error(code, format!("sixfold: {error}")));
        }
    }
    let state = registry::state_for(&volume);
    let vfs_name = vfs::ensure_registered(&state)
        .map_err(|code| sqlite_error(code, "sixfold: registering the VFS failed".into()))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags_and_vfs(db_name, flags, vfs_name.as_str())
}
