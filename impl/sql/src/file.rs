//! The files SQLite opens through the VFS, in safe Rust (the FFI glue is in `vfs.rs`).
//!
//! - [`MainFile`]: a database file on the volume (V4). Reads come from the volume at the
//!   file's read point (R2), taken when SQLite takes its SHARED lock. Writes are buffered
//!   per file until the commit point, where the whole transaction becomes one
//!   `commit()` (V5).
//! - [`MemFile`]: journals and temporary files, private and in memory (V4).
//!
//! Commit points (see docs/sql.md): SQLITE_FCNTL_COMMIT_ATOMIC_WRITE on the batch path,
//! and xSync of the database file on the journal path (a transaction that spilled pages
//! out of the cache, or a batch that failed and is retried). Both commit the whole
//! buffer, so a transaction is atomic whichever path SQLite takes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::ffi;

use crate::catalog::{META_PAGE_NO, MetaPage};
use crate::registry::{LockLevel, LockRefused, VolumeState};
use crate::volume::{PAGE_SIZE, PageVolume, PageWrite, VolumeError};

const PAGE_BYTES: u64 = PAGE_SIZE as u64;

/// A failed file operation: the SQLite result code and the text kept for reporting.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: i32,
    pub(crate) text: String,
}

impl Fail {
    fn new(code: i32, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    fn volume(code: i32, what: &str, error: &VolumeError) -> Self {
        Self::new(code, format!("sixfold: {what}: {error}"))
    }
}

/// The changes of the open write transaction of one file, not yet committed.
#[derive(Debug, Clone, Default)]
struct Txn {
    /// Volume page number → full image.
    dirty: BTreeMap<u32, Vec<u8>>,
    /// The file size the transaction set, if it changed it.
    size_bytes: Option<u64>,
    /// The smallest size the file had during the transaction: pages beyond it that are
    /// not rewritten must read as zeros after commit.
    size_bytes_min: Option<u64>,
}

impl Txn {
    fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.size_bytes.is_none()
    }
}

/// Volume page number holding byte `offset` of the SQLite file (page N at (N-1)·4096).
fn page_of(offset: u64) -> Result<u32, Fail> {
    u32::try_from(offset / PAGE_BYTES + 1)
        .map_err(|_| Fail::new(ffi::SQLITE_FULL, "sixfold: file offset beyond 2^32 pages"))
}

/// A database file on the volume.
pub(crate) struct MainFile {
    state: Arc<VolumeState>,
    volume: Arc<dyn PageVolume>,
    db_id: u32,
    name: String,
    handle_id: u64,
    lock: LockLevel,
    /// The read point registered while holding SHARED or above (R2, R4).
    read_point: Option<u64>,
    /// Committed size at `read_point`, cached.
    size_cache: Option<(u64, u64)>,
    txn: Txn,
    /// The transaction as it was at BEGIN_ATOMIC_WRITE, restored by ROLLBACK_ATOMIC_WRITE.
    batch_saved: Option<Txn>,
    last_error: Option<String>,
}

impl MainFile {
    pub(crate) fn new(
        state: Arc<VolumeState>,
        volume: Arc<dyn PageVolume>,
        db_id: u32,
        name: String,
    ) -> Self {
        let handle_id = state.new_handle_id();
        state.open_delta(db_id, true);
        Self {
            state,
            volume,
            db_id,
            name,
            handle_id,
            lock: LockLevel::None,
            read_point: None,
            size_cache: None,
            txn: Txn::default(),
            batch_saved: None,
            last_error: None,
        }
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub(crate) fn record_error(&mut self, fail: &Fail) {
        tracing::warn!(db = %self.name, code = fail.code, "{}", fail.text);
        self.last_error = Some(fail.text.clone());
    }

    /// Runs `f` at the file's read point, or at a transient one when SQLite reads
    /// without a lock (it reads the header at open).
    fn at_read_point<T>(
        &mut self,
        f: impl FnOnce(&mut Self, u64) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        if let Some(read_point) = self.read_point {
            return f(self, read_point);
        }
        let read_point = self
            .volume
            .begin_read()
            .map_err(|e| Fail::volume(ffi::SQLITE_IOERR_READ, "begin read", &e))?;
        let result = f(self, read_point);
        self.volume.end_read(read_point);
        result
    }

    fn base_page(&self, page_no: u32, read_point: u64) -> Result<Option<Vec<u8>>, Fail> {
        self.volume
            .read_page(self.db_id, page_no, read_point)
            .map_err(|e| Fail::volume(ffi::SQLITE_IOERR_READ, "read page", &e))
    }

    /// The file size committed as of `read_point`, from the metadata page.
    fn committed_size(&mut self, read_point: u64) -> Result<u64, Fail> {
        if let Some((cached_at, size)) = self.size_cache
            && cached_at == read_point
        {
            return Ok(size);
        }
        let page = self.base_page(META_PAGE_NO, read_point)?.ok_or_else(|| {
            Fail::new(
                ffi::SQLITE_IOERR_READ,
                format!(
                    "sixfold: database {:?} has no metadata page (dropped?)",
                    self.name
                ),
            )
        })?;
        let meta = MetaPage::decode(&page, self.db_id)
            .map_err(|text| Fail::new(ffi::SQLITE_CORRUPT, format!("sixfold: {text}")))?;
        self.size_cache = Some((read_point, meta.size_bytes));
        Ok(meta.size_bytes)
    }

    fn size_at(&mut self, read_point: u64) -> Result<u64, Fail> {
        match self.txn.size_bytes {
            Some(size) => Ok(size),
            None => self.committed_size(read_point),
        }
    }

    /// The image of a page as this file sees it: its own write, else the volume's;
    /// zeros for a page wholly past the end of the file (the volume may still hold what
    /// a shrink cut off).
    fn current_page(&mut self, page_no: u32, read_point: u64) -> Result<Vec<u8>, Fail> {
        if let Some(image) = self.txn.dirty.get(&page_no) {
            return Ok(image.clone());
        }
        let size = self.size_at(read_point)?;
        if u64::from(page_no - 1) * PAGE_BYTES >= size {
            return Ok(vec![0; PAGE_SIZE]);
        }
        Ok(self
            .base_page(page_no, read_point)?
            .unwrap_or_else(|| vec![0; PAGE_SIZE]))
    }

    /// xFileSize.
    pub(crate) fn file_size(&mut self) -> Result<u64, Fail> {
        self.at_read_point(|file, read_point| file.size_at(read_point))
    }

    /// xRead: fills `buf` from `offset`; past the end of file, zeros and SHORT_READ.
    pub(crate) fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<i32, Fail> {
        self.at_read_point(|file, read_point| {
            let size = file.size_at(read_point)?;
            let end = offset + buf.len() as u64;
            let mut at = offset;
            while at < end.min(size) {
                let page_no = page_of(at)?;
                let in_page = (at % PAGE_BYTES) as usize;
                let chunk = (PAGE_SIZE - in_page).min((end - at) as usize);
                let image = file.current_page(page_no, read_point)?;
                let out = (at - offset) as usize;
                buf[out..out + chunk].copy_from_slice(&image[in_page..in_page + chunk]);
                at += chunk as u64;
            }
            if end > size {
                let valid = size.saturating_sub(offset).min(buf.len() as u64) as usize;
                buf[valid..].fill(0);
                return Ok(ffi::SQLITE_IOERR_SHORT_READ);
            }
            Ok(ffi::SQLITE_OK)
        })
    }

    fn require_writer(&self, what: &str) -> Result<u64, Fail> {
        match self.read_point {
            Some(read_point) if self.lock >= LockLevel::Reserved => Ok(read_point),
            _ => Err(Fail::new(
                ffi::SQLITE_IOERR_WRITE,
                format!("sixfold: {what} without a RESERVED lock"),
            )),
        }
    }

    /// xWrite: buffered until the commit point (V5).
    pub(crate) fn write(&mut self, data: &[u8], offset: u64) -> Result<(), Fail> {
        let read_point = self.require_writer("write")?;
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let page_no = page_of(at)?;
            let in_page = (at % PAGE_BYTES) as usize;
            let chunk = (PAGE_SIZE - in_page).min((end - at) as usize);
            let mut image = if chunk == PAGE_SIZE {
                vec![0; PAGE_SIZE]
            } else {
                self.current_page(page_no, read_point)?
            };
            let from = (at - offset) as usize;
            image[in_page..in_page + chunk].copy_from_slice(&data[from..from + chunk]);
            self.txn.dirty.insert(page_no, image);
            at += chunk as u64;
        }
        let size = self.size_at(read_point)?;
        if end > size {
            self.set_size(size, end);
        }
        Ok(())
    }

    fn set_size(&mut self, size_before: u64, size_after: u64) {
        let low = self.txn.size_bytes_min.unwrap_or(size_before);
        self.txn.size_bytes_min = Some(low.min(size_after));
        self.txn.size_bytes = Some(size_after);
    }

    /// xTruncate: buffered like a write; VACUUM shrinks the file this way.
    pub(crate) fn truncate(&mut self, size_after: u64) -> Result<(), Fail> {
        let read_point = self.require_writer("truncate")?;
        let size_before = self.size_at(read_point)?;
        let first_gone = size_after.div_ceil(PAGE_BYTES) + 1;
        self.txn
            .dirty
            .retain(|&page_no, _| u64::from(page_no) < first_gone);
        let tail = (size_after % PAGE_BYTES) as usize;
        if tail != 0 && size_after < size_before {
            // The last page is cut: bytes past the end must read as zeros if it grows.
            let page_no = page_of(size_after)?;
            let mut image = self.current_page(page_no, read_point)?;
            image[tail..].fill(0);
            self.txn.dirty.insert(page_no, image);
        }
        self.set_size(size_before, size_after);
        Ok(())
    }

    /// The MTR for the buffered transaction: changed pages, zeroed pages for holes left
    /// by a shrink, and the metadata page when the size changed (V5).
    fn build_mtr(&mut self, txn: &Txn, read_point: u64) -> Result<Vec<PageWrite>, Fail> {
        let committed = self.committed_size(read_point)?;
        let size = txn.size_bytes.unwrap_or(committed);
        let pages = size.div_ceil(PAGE_BYTES);
        let mut writes = Vec::new();
        for (&page_no, image) in txn.dirty.range(..=u32::try_from(pages).unwrap_or(u32::MAX)) {
            let base = self.base_page(page_no, read_point)?;
            let unchanged = match &base {
                Some(old) => old == image,
                None => image.iter().all(|&b| b == 0),
            };
            if !unchanged {
                writes.push(self.page_write(page_no, image.clone()));
            }
        }
        // Pages between the smallest size of the transaction and the new size that it
        // did not write must read as zeros: the volume may hold older contents there.
        let low = txn.size_bytes_min.unwrap_or(committed).min(committed);
        for page in low.div_ceil(PAGE_BYTES) + 1..=pages {
            let page_no = u32::try_from(page).expect("bounded by page_of");
            if txn.dirty.contains_key(&page_no) {
                continue;
            }
            let stale = self
                .base_page(page_no, read_point)?
                .is_some_and(|old| old.iter().any(|&b| b != 0));
            if stale {
                writes.push(self.page_write(page_no, vec![0; PAGE_SIZE]));
            }
        }
        if size != committed {
            let meta = MetaPage {
                db_id: self.db_id,
                size_bytes: size,
                name: self.name.clone(),
            };
            writes.push(self.page_write(META_PAGE_NO, meta.encode()));
        }
        Ok(writes)
    }

    fn page_write(&self, page_no: u32, image: Vec<u8>) -> PageWrite {
        PageWrite {
            db: self.db_id,
            page_no,
            image,
        }
    }

    /// The commit point: the whole buffered transaction as one `commit()` (V5). Returns
    /// only after the volume returned, i.e. after the MTR is durable (C4). On failure the
    /// buffer is dropped: SQLite rolls the transaction back (or retries it).
    fn commit(&mut self, code_on_failure: i32) -> Result<(), Fail> {
        let read_point = self.require_writer("commit")?;
        let txn = std::mem::take(&mut self.txn);
        let writes = self.build_mtr(&txn, read_point)?;
        if writes.is_empty() {
            return Ok(());
        }
        let lsn = self.volume.commit(writes).map_err(|e| {
            // W12: a limit says which one, as SQLITE_FULL; SQLite does not retry it.
            let code = match e {
                VolumeError::TooLarge(_) => ffi::SQLITE_FULL,
                _ => code_on_failure,
            };
            Fail::volume(code, "commit", &e)
        })?;
        self.state.note_commit(self.db_id, self.handle_id, lsn);
        // R2: move the read point to the new VDL (≥ lsn) so that this connection reads
        // what it just wrote; nobody else wrote this database meanwhile (we hold
        // RESERVED).
        let read_point_new = self
            .volume
            .begin_read()
            .map_err(|e| Fail::volume(code_on_failure, "begin read after commit", &e))?;
        assert!(
            read_point_new >= lsn,
            "VDL below a commit LSN just returned (C4)"
        );
        self.volume.end_read(read_point);
        self.read_point = Some(read_point_new);
        Ok(())
    }

    /// xSync: the commit point of the journal path.
    pub(crate) fn sync(&mut self) -> Result<(), Fail> {
        if self.batch_saved.is_some() || self.txn.is_empty() {
            return Ok(());
        }
        self.commit(ffi::SQLITE_IOERR_FSYNC)
    }

    /// SQLITE_FCNTL_BEGIN_ATOMIC_WRITE.
    pub(crate) fn begin_batch(&mut self) -> Result<(), Fail> {
        self.require_writer("batch")?;
        self.batch_saved = Some(self.txn.clone());
        Ok(())
    }

    /// SQLITE_FCNTL_COMMIT_ATOMIC_WRITE: the commit point of the batch path. A failure
    /// is SQLITE_IOERR_COMMIT_ATOMIC: SQLite rolls the batch back and may retry the
    /// transaction through its journal, which commits at xSync instead.
    pub(crate) fn commit_batch(&mut self) -> Result<(), Fail> {
        if self.batch_saved.is_none() {
            return Err(Fail::new(
                ffi::SQLITE_IOERR_COMMIT_ATOMIC,
                "sixfold: COMMIT_ATOMIC_WRITE without BEGIN_ATOMIC_WRITE",
            ));
        }
        self.commit(ffi::SQLITE_IOERR_COMMIT_ATOMIC)?;
        self.batch_saved = None;
        Ok(())
    }

    /// SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE: drop what the batch wrote.
    pub(crate) fn rollback_batch(&mut self) {
        if let Some(saved) = self.batch_saved.take() {
            self.txn = saved;
        }
    }

    /// xLock.
    pub(crate) fn lock(&mut self, level: LockLevel) -> Result<i32, Fail> {
        if self.lock >= level {
            return Ok(ffi::SQLITE_OK);
        }
        if self.lock == LockLevel::None {
            // R2: the read point is taken with the SHARED lock.
            let read_point = self
                .volume
                .begin_read()
                .map_err(|e| Fail::volume(ffi::SQLITE_IOERR_LOCK, "begin read", &e))?;
            self.state.shared_delta(self.db_id, true);
            self.read_point = Some(read_point);
            self.lock = LockLevel::Shared;
            self.last_error = None;
        }
        if level <= LockLevel::Shared {
            return Ok(ffi::SQLITE_OK);
        }
        if self.lock == LockLevel::Shared {
            let read_point = self.read_point.expect("SHARED holds a read point");
            match self
                .state
                .acquire_writer(self.db_id, self.handle_id, read_point)
            {
                Ok(()) => self.lock = LockLevel::Reserved,
                Err(LockRefused::OtherWriter) => return Ok(ffi::SQLITE_BUSY),
                Err(LockRefused::StaleSnapshot {
                    read_point,
                    last_commit_lsn,
                }) => {
                    self.last_error = Some(format!(
                        "sixfold: snapshot at {read_point} is older than commit {last_commit_lsn}; \
                         end the read transaction and retry"
                    ));
                    return Ok(ffi::SQLITE_BUSY);
                }
            }
        }
        // Readers read snapshots, so PENDING and EXCLUSIVE wait for nobody: the single
        // writer already excludes other writers with RESERVED.
        self.lock = level;
        Ok(ffi::SQLITE_OK)
    }

    /// xUnlock to SHARED or NONE.
    pub(crate) fn unlock(&mut self, level: LockLevel) -> Result<(), Fail> {
        let mut result = Ok(());
        if self.lock >= LockLevel::Reserved && level < LockLevel::Reserved {
            result = self.end_write();
            self.state.release_writer(self.db_id, self.handle_id);
        }
        if level == LockLevel::None && self.lock >= LockLevel::Shared {
            let read_point = self.read_point.take().expect("SHARED holds a read point");
            self.volume.end_read(read_point);
            self.state.shared_delta(self.db_id, false);
            self.size_cache = None;
        }
        self.lock = self.lock.min(level);
        result
    }

    /// Leaving RESERVED. What is still buffered went through no commit point: either the
    /// shrink SQLite does after its commit (pager_end_transaction truncates the file
    /// once the transaction is durable) — committed now as its own MTR — or pages of an
    /// abandoned transaction, which are dropped.
    fn end_write(&mut self) -> Result<(), Fail> {
        self.batch_saved = None;
        if self.txn.is_empty() {
            return Ok(());
        }
        if !self.txn.dirty.is_empty() {
            let pages = self.txn.dirty.len();
            tracing::warn!(db = %self.name, pages, "dropping writes that reached no commit point");
            self.txn = Txn::default();
            return Ok(());
        }
        let size = self
            .txn
            .size_bytes
            .expect("non-empty txn without pages has a size");
        let committed = self.at_read_point(|file, read_point| file.committed_size(read_point))?;
        if size > committed {
            tracing::warn!(db = %self.name, "dropping a file extension that reached no commit point");
            self.txn = Txn::default();
            return Ok(());
        }
        self.commit(ffi::SQLITE_IOERR_TRUNCATE)
    }

    pub(crate) fn check_reserved(&self) -> bool {
        self.state.other_writer(self.db_id, self.handle_id)
    }

    /// xClose.
    pub(crate) fn close(&mut self) -> Result<(), Fail> {
        let result = self.unlock(LockLevel::None);
        self.state.open_delta(self.db_id, false);
        result
    }
}

/// A journal or temporary file: private to its opener, in memory (V4).
#[derive(Debug, Default)]
pub(crate) struct MemFile {
    data: Vec<u8>,
}

/// Largest in-memory journal or temporary file.
pub(crate) const MEM_FILE_BYTES_MAX: u64 = 1 << 32;

impl MemFile {
    pub(crate) fn read(&self, buf: &mut [u8], offset: u64) -> i32 {
        let len = self.data.len() as u64;
        let start = offset.min(len) as usize;
        let end = (offset + buf.len() as u64).min(len) as usize;
        let valid = end - start;
        buf[..valid].copy_from_slice(&self.data[start..end]);
        if valid < buf.len() {
            buf[valid..].fill(0);
            return ffi::SQLITE_IOERR_SHORT_READ;
        }
        ffi::SQLITE_OK
    }

    pub(crate) fn write(&mut self, data: &[u8], offset: u64) -> i32 {
        let end = offset + data.len() as u64;
        if end > MEM_FILE_BYTES_MAX {
            return ffi::SQLITE_FULL;
        }
        if end as usize > self.data.len() {
            self.data.resize(end as usize, 0);
        }
        self.data[offset as usize..end as usize].copy_from_slice(data);
        ffi::SQLITE_OK
    }

    pub(crate) fn truncate(&mut self, size: u64) {
        if (size as usize) < self.data.len() {
            self.data.truncate(size as usize);
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.data.len() as u64
    }
}
