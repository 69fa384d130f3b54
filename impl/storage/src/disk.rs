//! The disk, behind a narrow trait: the real one on `std::fs`, and [`crate::FaultyDisk`] for
//! tests and the deterministic simulator.
//!
//! What the engine assumes of a disk (docs/storage-node.md, "Assumptions"): `sync` makes the
//! bytes written to a file durable; `sync_dir` makes the creation, rename and removal of the
//! directory's entries durable; a crash may drop or tear (at any byte) whatever was written
//! after the last `sync`; `rename` replaces its target atomically.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the files the real disk creates: owner read and write only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the directories the real disk creates: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create the file, empty; it must not exist yet.
    CreateNew,
}

/// One open file. Offsets and lengths are `u64` bytes.
pub trait DiskFile: Send + Debug {
    /// The file's current length in bytes.
    fn size_bytes(&self) -> io::Result<u64>;
    /// Appends `bytes` at the end; returns the offset they were written at.
    fn append(&mut self, bytes: &[u8]) -> io::Result<u64>;
    /// Writes `bytes` at `offset` (extending the file if needed).
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes every byte written so far durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
    /// A second handle on the same file that can only make it durable, so a group commit
    /// can fsync without holding whatever owns this one (S25).
    fn sync_handle(&self) -> io::Result<Box<dyn FileSync>>;
}

/// Makes a file's written bytes durable, like [`DiskFile::sync`], through its own handle:
/// every byte written to the file before the call is durable when it returns `Ok`.
pub trait FileSync: Send + Debug {
    fn sync(&self) -> io::Result<()>;
}

/// A filesystem: files by path, and directories.
pub trait Disk: Send + Sync + Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>>;
    /// Creates a directory (its parent must exist); not an error if it exists.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Replaces `to` with `from` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Reads a whole file. `max_bytes` bounds what is read from disk (a limit on everything).
pub fn read_all(file: &dyn DiskFile, max_bytes: u64) -> io::Result<Vec<u8>> {
    let len = file.size_bytes()?;
    if len > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file of {len} bytes exceeds the limit of {max_bytes}"),
        ));
    }
    let mut bytes = vec![0; len as usize];
    file.read_at(0, &mut bytes)?;
    Ok(bytes)
}

/// Bytes the real disk wrote in this process, over every file (for `sixfold bench`).
pub static STD_DISK_BYTES_WRITTEN: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// The real disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdDisk;

#[derive(Debug)]
struct StdFile {
    file: File,
}

impl DiskFile for StdFile {
    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let offset = self.size_bytes()?;
        self.write_at(offset, bytes)?;
        Ok(offset)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, bytes, offset)?;
        STD_DISK_BYTES_WRITTEN.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync: the file's length is data for this purpose (it changes on append).
        self.file.sync_data()
    }

    fn sync_handle(&self) -> io::Result<Box<dyn FileSync>> {
        Ok(Box::new(StdFileSync {
            file: self.file.try_clone()?,
        }))
    }
}

/// A duplicated descriptor: fdatasync through it covers the writes made through any
/// descriptor of the same open file.
#[derive(Debug)]
struct StdFileSync {
    file: File,
}

impl FileSync for StdFileSync {
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Disk for StdDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        // Segment files hold the volume's data: the owner's alone (spec/wire.md A6).
        options.read(true).write(true).mode(PRIVATE_FILE_MODE);
        if mode == OpenMode::CreateNew {
            options.create_new(true);
        }
        Ok(Box::new(StdFile {
            file: options.open(path)?,
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        match std::fs::DirBuilder::new()
            .mode(PRIVATE_DIR_MODE)
            .create(path)
        {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            // Names that are not UTF-8 are not ours: skip them.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// `{prefix}{seq:020}{suffix}`: numbered files (logs, page files) sort by name in creation
/// order.
pub fn numbered_file_name(prefix: &str, seq: u64, suffix: &str) -> String {
    format!("{prefix}{seq:020}{suffix}")
}

/// The sequence number of a [`numbered_file_name`], if `name` is one.
pub fn parse_numbered_file_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}
