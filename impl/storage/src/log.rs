//! A segment's redo log: append-only files `log-<seq>.sxr` of record frames
//! (codec::encode_record), rolled over by size. Records arrive out of LSN order (S3), so
//! files are numbered by a sequence, not by LSN; each file's LSNs are known in memory for
//! garbage collection and scrub repair.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sixfold_core::Lsn;
use sixfold_core::codec::{LogScan, RECORD_HEADER_BYTES, decode_record_header, scan_log};

use crate::disk::{
    Disk, DiskFile, FileSync, OpenMode, numbered_file_name, parse_numbered_file_name, read_all,
};
use crate::error::StorageError;

pub const LOG_PREFIX: &str = "log-";
pub const LOG_SUFFIX: &str = ".sxr";

pub fn log_file_name(seq: u64) -> String {
    numbered_file_name(LOG_PREFIX, seq, LOG_SUFFIX)
}

/// The sequence number of a log file name, if it is one.
pub fn parse_log_name(name: &str) -> Option<u64> {
    parse_numbered_file_name(name, LOG_PREFIX, LOG_SUFFIX)
}

/// What the engine knows of one log file.
#[derive(Debug, Clone, Default)]
pub struct LogFileInfo {
    /// Every LSN framed in it (possibly more: a failed write may or may not have landed).
    pub lsns: Vec<Lsn>,
    pub bytes: u64,
}

impl LogFileInfo {
    pub fn max_lsn(&self) -> Lsn {
        self.lsns.iter().copied().max().unwrap_or(Lsn::ZERO)
    }
}

#[derive(Debug)]
struct ActiveLog {
    seq: u64,
    file: Box<dyn DiskFile>,
    /// Where the next frame goes: the end of what was written successfully.
    end: u64,
    /// The file was created and its directory entry is not yet durable.
    dir_sync_pending: bool,
}

/// The log files of one segment.
#[derive(Debug)]
pub struct LogSet {
    dir: PathBuf,
    file_bytes_max: u64,
    pub files: BTreeMap<u64, LogFileInfo>,
    active: Option<ActiveLog>,
    next_seq: u64,
}

/// A log file read back on restart (S12).
pub struct LoadedLog {
    pub seq: u64,
    pub path: PathBuf,
    pub scan: LogScan,
    /// For each damaged frame, its LSN if the frame's header still passes its own CRC.
    pub damaged_lsns: Vec<(u64, Option<Lsn>)>,
    /// The cut tail's first frame, if its header passed: a complete frame whose body failed
    /// is media damage rather than a torn write, though both are cut.
    pub cut_lsn: Option<Lsn>,
    /// Bytes cut off the tail (S12).
    pub cut_bytes: u64,
}

/// The LSN a damaged frame claims, if its header alone verifies.
fn header_lsn(bytes: &[u8]) -> Option<Lsn> {
    decode_record_header(bytes).ok()?;
    let lsn = u64::from_le_bytes(bytes.get(16..24)?.try_into().ok()?);
    Some(Lsn(lsn))
}

impl LogSet {
    pub fn new(dir: &Path, file_bytes_max: u64) -> LogSet {
        LogSet {
            dir: dir.to_path_buf(),
            file_bytes_max,
            files: BTreeMap::new(),
            active: None,
            next_seq: 1,
        }
    }

    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(log_file_name(seq))
    }

    /// S12: reads every log file of the directory, cutting torn tails (and logging it).
    /// Files are returned in sequence order, the order their records were written.
    pub fn load(
        &mut self,
        disk: &dyn Disk,
        names: &[String],
        read_bytes_max: u64,
    ) -> Result<Vec<LoadedLog>, StorageError> {
        let mut loaded = Vec::new();
        let mut seqs: Vec<u64> = names
            .iter()
            .filter_map(|name| parse_log_name(name))
            .collect();
        seqs.sort_unstable();
        for seq in seqs {
            let path = self.path(seq);
            let mut file = disk
                .open(&path, OpenMode::Existing)
                .map_err(StorageError::io("open", &path))?;
            let bytes =
                read_all(file.as_ref(), read_bytes_max).map_err(StorageError::io("read", &path))?;
            let scan = scan_log(&bytes);
            let mut cut_lsn = None;
            let tail = &bytes[scan.valid_bytes..];
            if !tail.is_empty() {
                // A whole frame whose header verifies but whose body fails is media damage
                // rather than a torn write; both are cut, the first is also reported.
                let whole = decode_record_header(tail).is_ok_and(|h| h.frame_bytes() <= tail.len());
                cut_lsn = header_lsn(tail).filter(|_| whole);
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = scan.valid_bytes,
                    file_bytes = bytes.len(),
                    "S12: cutting the torn tail of a log file"
                );
                file.set_len(scan.valid_bytes as u64)
                    .map_err(StorageError::io("cut", &path))?;
                file.sync().map_err(StorageError::io("fsync", &path))?;
            }
            let damaged_lsns = scan
                .damaged_at
                .iter()
                .map(|&at| (at as u64, header_lsn(&bytes[at..])))
                .collect();
            self.files.insert(
                seq,
                LogFileInfo {
                    lsns: scan.records.iter().map(|r| r.record().lsn).collect(),
                    bytes: scan.valid_bytes as u64,
                },
            );
            self.next_seq = self.next_seq.max(seq + 1);
            let cut_bytes = (bytes.len() - scan.valid_bytes) as u64;
            loaded.push(LoadedLog {
                seq,
                path,
                scan,
                damaged_lsns,
                cut_lsn,
                cut_bytes,
            });
        }
        Ok(loaded)
    }

    /// Appends frames holding `lsns` to the active file (opening a new one when there is
    /// none or it is full). Not durable until [`LogSet::sync`].
    pub fn append(
        &mut self,
        disk: &dyn Disk,
        frames: &[u8],
        lsns: &[Lsn],
    ) -> Result<(), StorageError> {
        debug_assert!(frames.len() >= RECORD_HEADER_BYTES * lsns.len());
        let full = self.active.as_ref().is_some_and(|active| {
            active.end > 0 && active.end + frames.len() as u64 > self.file_bytes_max
        });
        if full {
            self.seal();
        }
        if self.active.is_none() {
            let seq = self.next_seq;
            let path = self.path(seq);
            let file = disk
                .open(&path, OpenMode::CreateNew)
                .map_err(StorageError::io("create", &path))?;
            self.next_seq += 1;
            self.files.insert(seq, LogFileInfo::default());
            self.active = Some(ActiveLog {
                seq,
                file,
                end: 0,
                dir_sync_pending: true,
            });
        }
        let active = self.active.as_mut().expect("opened above");
        let info = self
            .files
            .get_mut(&active.seq)
            .expect("active file is listed");
        // Listed before the write: if it fails the frames may still have landed.
        info.lsns.extend_from_slice(lsns);
        let path = self.dir.join(log_file_name(active.seq));
        match active.file.write_at(active.end, frames) {
            Ok(()) => {
                active.end += frames.len() as u64;
                info.bytes = active.end;
                Ok(())
            }
            Err(error) => {
                // Cut what may have landed so the next frame follows a whole one; if even
                // that fails, never write to this file again.
                if active.file.set_len(active.end).is_err() {
                    self.seal();
                }
                Err(StorageError::io("append", path)(error))
            }
        }
    }

    /// S1: makes everything appended durable: fsync of the file, and of the directory when
    /// the file is new. A failed fsync may have dropped the written pages (Linux marks them
    /// clean), so the file is sealed and the caller writes the batch again to a new one.
    pub fn sync(&mut self, disk: &dyn Disk) -> Result<(), StorageError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let path = self.dir.join(log_file_name(active.seq));
        if let Err(error) = active.file.sync() {
            self.seal();
            return Err(StorageError::io("fsync", path)(error));
        }
        if active.dir_sync_pending {
            if let Err(error) = disk.sync_dir(&self.dir) {
                self.seal();
                return Err(StorageError::io("fsync dir", &self.dir)(error));
            }
            active.dir_sync_pending = false;
        }
        Ok(())
    }

    /// S25: what [`LogSet::sync`] would do, as a job that runs without `self`: the active
    /// file's fsync through its own handle, and its directory's when the file is new.
    /// `None` when nothing was ever appended.
    pub fn sync_job(&self) -> Result<Option<LogSync>, StorageError> {
        let Some(active) = self.active.as_ref() else {
            return Ok(None);
        };
        let path = self.dir.join(log_file_name(active.seq));
        let file = active
            .file
            .sync_handle()
            .map_err(StorageError::io("dup", &path))?;
        Ok(Some(LogSync {
            seq: active.seq,
            file,
            path,
            dir: active.dir_sync_pending.then(|| self.dir.clone()),
        }))
    }

    /// S25: the outcome of a [`LogSync`]: like [`LogSet::sync`], a failed fsync seals the
    /// file (its pages may be gone), so a retry writes the frames to a new one.
    pub fn sync_done(&mut self, job: &LogSync, synced: bool) {
        if self.active_seq() != Some(job.seq) {
            return;
        }
        if !synced {
            self.seal();
        } else if let Some(active) = self.active.as_mut()
            && job.dir.is_some()
        {
            active.dir_sync_pending = false;
        }
    }

    /// Stops writing to the active file; the next append opens a new one.
    pub fn seal(&mut self) {
        self.active = None;
    }

    /// Bytes of log files on disk, as far as the engine knows.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|info| info.bytes).sum()
    }

    pub fn active_seq(&self) -> Option<u64> {
        self.active.as_ref().map(|active| active.seq)
    }

    /// S10: removes sealed files whose every record is at or below `forgotten_through`.
    pub fn collect(
        &mut self,
        disk: &dyn Disk,
        forgotten_through: Lsn,
    ) -> Result<usize, StorageError> {
        let active = self.active_seq();
        let dead: Vec<u64> = self
            .files
            .iter()
            .filter(|(seq, info)| Some(**seq) != active && info.max_lsn() <= forgotten_through)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &dead {
            self.remove(disk, *seq)?;
        }
        Ok(dead.len())
    }

    /// Removes a sealed file. Its removal need not be durable: a file that comes back
    /// after a crash holds only records that are collected or held elsewhere.
    pub fn remove(&mut self, disk: &dyn Disk, seq: u64) -> Result<(), StorageError> {
        assert_ne!(
            Some(seq),
            self.active_seq(),
            "the active log is never removed"
        );
        let path = self.path(seq);
        match disk.remove(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StorageError::io("remove", path)(error)),
        }
        self.files.remove(&seq);
        Ok(())
    }
}

/// S25: the fsync of one log file (and of its directory when the file is new), taken from
/// the [`LogSet`] so that it runs while the segment takes more writes.
#[derive(Debug)]
pub struct LogSync {
    seq: u64,
    file: Box<dyn FileSync>,
    path: PathBuf,
    dir: Option<PathBuf>,
}

impl LogSync {
    /// S1: everything appended to the file before the job was taken is durable on `Ok`.
    pub fn run(&self, disk: &dyn Disk) -> Result<(), StorageError> {
        self.file
            .sync()
            .map_err(StorageError::io("fsync", &self.path))?;
        if let Some(dir) = &self.dir {
            disk.sync_dir(dir)
                .map_err(StorageError::io("fsync dir", dir))?;
        }
        Ok(())
    }
}
