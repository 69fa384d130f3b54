//! Private files and one process per data dir (A6, A7).
//!
//! The config file holds the cluster secret and a data dir holds every acknowledged row,
//! so both are the owner's alone: created 0600/0700, and a node refuses to start on one
//! that group or others can read, the way PostgreSQL refuses a group-readable data dir.
//! A lock file in each data dir, held with `flock` for the life of the node, keeps a second
//! process off the same segments.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a data dir (and of the embedded cluster's folder) when sixfold creates it.
pub const DATA_DIR_MODE: u32 = 0o700;
/// Mode of a file holding the secret or data when sixfold creates it.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Permission bits that let group or others read, write or enter.
const SHARED_MODE_BITS: u32 = 0o077;
/// Name of the lock file inside a data dir; it holds the holder's pid.
pub const LOCK_FILE: &str = "LOCK";
/// Bytes of a lock file read to find the holder's pid, at most.
const LOCK_FILE_BYTES_MAX: u64 = 64;

/// What a private path is, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivatePath {
    /// The cluster config: holds the secret.
    Config,
    /// A node's data dir: holds the segments.
    DataDir,
}

impl PrivatePath {
    fn describe(self) -> &'static str {
        match self {
            PrivatePath::Config => "config file (it holds the cluster secret)",
            PrivatePath::DataDir => "data dir (it holds the volume's data)",
        }
    }

    fn fixed_mode(self) -> u32 {
        match self {
            PrivatePath::Config => PRIVATE_FILE_MODE,
            PrivatePath::DataDir => DATA_DIR_MODE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(
        "{} {} is open to group or others (mode {mode:04o}); refusing to start: run \
         `chmod {fix:o} {}` (A6)",
        kind.describe(), path.display(), path.display()
    )]
    Shared {
        kind: PrivatePath,
        path: PathBuf,
        mode: u32,
        fix: u32,
    },
    #[error(
        "data dir {} is in use by another process (pid {holder}, written in {}); stop that \
         process first, or give this node its own data dir (A7)",
        dir.display(), lock.display()
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error(
        "data dir {} is not usable: cannot {action} it: {source}; refusing to start (A8)",
        dir.display()
    )]
    Unusable {
        dir: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FilesError + 'a {
    move |source| FilesError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700; an existing dir is left as it is
/// (then [`check_private`] says whether it may be used).
pub fn create_private_dir(dir: &Path) -> Result<(), FilesError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .map_err(io_error("create", dir))
}

/// A6: refuses a config file or data dir that group or others can read, write or enter,
/// with the `chmod` that fixes it.
pub fn check_private(path: &Path, kind: PrivatePath) -> Result<(), FilesError> {
    let metadata = std::fs::metadata(path).map_err(io_error("inspect", path))?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & SHARED_MODE_BITS != 0 {
        return Err(FilesError::Shared {
            kind,
            path: path.to_path_buf(),
            mode,
            fix: kind.fixed_mode(),
        });
    }
    Ok(())
}

/// Writes a new file only its owner can read (the embedded cluster's config).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(io_error("create", path))?;
    file.write_all(bytes).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("sync", path))
}

/// A7: the exclusive lock on a data dir, held until dropped (the kernel also drops it when
/// the process dies, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes `dir/LOCK` with a non-blocking exclusive `flock` and writes our pid into it;
    /// if another process holds it, the error names that process's pid.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, FilesError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(io_error("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(FilesError::Locked {
                    dir: dir.to_path_buf(),
                    holder: holder_pid(&mut file),
                    lock: path,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(FilesError::Io {
                    action: "lock",
                    path,
                    source,
                });
            }
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io_error("write the pid into", &path))?;
        probe_writable(dir)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Name of the file [`probe_writable`] writes and removes.
const PROBE_FILE: &str = "write-probe.tmp";

/// A8: a data dir must take a new file, a write, an fsync, a removal and a directory
/// fsync before the node listens: a read-only, full or broken file system stops the node
/// at start with the reason, not at the first write with a queue of failing batches.
pub fn probe_writable(dir: &Path) -> Result<(), FilesError> {
    let path = dir.join(PROBE_FILE);
    let unusable = |action: &'static str| {
        let dir = dir.to_path_buf();
        move |source: io::Error| FilesError::Unusable {
            dir,
            action,
            source,
        }
    };
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(unusable("remove an old probe file in")(error));
        }
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&path)
        .map_err(unusable("create a file in"))?;
    file.write_all(&[0u8; 4096])
        .map_err(unusable("write a file in"))?;
    file.sync_all().map_err(unusable("fsync a file in"))?;
    drop(file);
    std::fs::remove_file(&path).map_err(unusable("remove a file in"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(unusable("fsync"))
}

/// The pid a lock holder wrote, or why it cannot be told.
fn holder_pid(file: &mut File) -> String {
    let mut text = String::new();
    let read = Read::by_ref(file)
        .take(LOCK_FILE_BYTES_MAX)
        .read_to_string(&mut text);
    match read {
        Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
        Ok(_) => "unknown: the holder is still starting".into(),
        Err(error) => format!("unknown: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_dirs_and_files_are_private() {
        // A6: 0700 dirs, 0600 files, whatever the umask.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode_of(&dir), DATA_DIR_MODE);
        let file = dir.join("cluster.toml");
        write_private_file(&file, b"secret = \"s\"").unwrap();
        assert_eq!(mode_of(&file), PRIVATE_FILE_MODE);
        check_private(&dir, PrivatePath::DataDir).unwrap();
        check_private(&file, PrivatePath::Config).unwrap();
    }

    #[test]
    fn a_readable_config_or_dir_is_refused_with_the_fix() {
        // A6: the message names the path and the chmod that fixes it.
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("cluster.toml");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = check_private(&file, PrivatePath::Config)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", file.display())) && text.contains("0644"),
            "{text}"
        );
        let dir = root.path().join("node1");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let text = check_private(&dir, PrivatePath::DataDir)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(&format!("chmod 700 {}", dir.display())),
            "{text}"
        );
    }

    #[test]
    fn a_second_lock_on_a_data_dir_names_the_holder() {
        // A7: the second taker is refused and told the holder's pid; the lock is free again
        // once the holder drops it.
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let text = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert_eq!(mode_of(&dir.path().join(LOCK_FILE)), PRIVATE_FILE_MODE);
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
