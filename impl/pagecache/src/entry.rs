//! One cached page: its bytes behind a reader-writer lock, its LSN and dirty flag, and the
//! guard that holds a pin on it.

use std::ops::Deref;

use crate::error::ApplyError;
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering, RwLock, RwLockReadGuard};

/// Bytes charged per entry on top of the page itself: the `Entry` allocation, the map slot
/// and the queue slot, rounded up. An estimate; it keeps a cache of tiny pages bounded too.
pub const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// A page version handed to the cache by a loader or by `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The LSN of the last redo record the bytes include.
    pub lsn: u64,
    pub bytes: Box<[u8]>,
    /// Dirty: the bytes are newer than what the flusher has written; the storage node's
    /// predicate keeps such pages resident.
    pub dirty: bool,
}

impl Page {
    /// A page that is already durable elsewhere (read from disk or from a segment).
    pub fn clean(lsn: u64, bytes: Box<[u8]>) -> Self {
        Self {
            lsn,
            bytes,
            dirty: false,
        }
    }

    /// A page built in memory (e.g. materialized from redo) that the flusher must write.
    pub fn dirty(lsn: u64, bytes: Box<[u8]>) -> Self {
        Self {
            lsn,
            bytes,
            dirty: true,
        }
    }
}

/// What the eviction predicate sees of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    pub lsn: u64,
    pub dirty: bool,
    /// The bytes the entry is charged: page length plus `ENTRY_OVERHEAD_BYTES`.
    pub cost_bytes: u64,
}

/// A copy of a dirty page taken for the flusher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushSnapshot {
    pub lsn: u64,
    pub bytes: Box<[u8]>,
}

/// A resident page. The shard's map owns one `Arc` of it; every other `Arc` is a pin (a
/// [`PinGuard`], or a finished load's cell holding the page for its waiters). So the pin
/// count is the strong count minus one, and a hit pins with the `Arc` clone it needs
/// anyway: no second counter to bump.
pub(crate) struct Entry {
    /// Written only under the `bytes` write lock, so a reader holding the read lock sees
    /// the LSN that matches the bytes.
    lsn: AtomicU64,
    /// Written only under the `bytes` write lock, like `lsn`.
    dirty: AtomicBool,
    cost_bytes: u64,
    bytes: RwLock<Box<[u8]>>,
}

impl Entry {
    pub(crate) fn new(page: Page) -> Self {
        let cost_bytes = page.bytes.len() as u64 + ENTRY_OVERHEAD_BYTES;
        Self {
            lsn: AtomicU64::new(page.lsn),
            dirty: AtomicBool::new(page.dirty),
            cost_bytes,
            bytes: RwLock::new(page.bytes),
        }
    }

    pub(crate) fn cost_bytes(&self) -> u64 {
        self.cost_bytes
    }

    /// The metadata of an unpinned entry, or `None` if it is pinned. Called under the
    /// shard's write lock with the map's `Arc`, by eviction and removal.
    ///
    /// A strong count of one is stable there: new `Arc`s of a resident entry are cloned
    /// only under the shard lock (hits, installs) or from a pin (a load cell's), and there
    /// is none. The metadata is then stable too: redo, upserts and the flusher change it
    /// only through a pin. The `try_write` on the page lock orders us after the last of
    /// those changes (a lock acquisition reads the latest unlock, which happened after the
    /// change), whatever ordering the strong-count load has; it cannot fail for an
    /// unpinned entry (a `PageRead` borrows a pin), and we never wait for it under the
    /// shard lock.
    pub(crate) fn meta_if_unpinned(entry: &Arc<Self>) -> Option<EntryMeta> {
        if Arc::strong_count(entry) != 1 {
            return None;
        }
        let _bytes = entry.bytes.try_write().ok()?;
        Some(entry.meta())
    }

    /// The metadata as last written. Stable only while the caller holds the shard's write
    /// lock and the entry is unpinned (nobody can then be applying or cleaning it).
    pub(crate) fn meta(&self) -> EntryMeta {
        EntryMeta {
            lsn: self.lsn.load(Ordering::Acquire),
            dirty: self.dirty.load(Ordering::Acquire),
            cost_bytes: self.cost_bytes,
        }
    }
}

/// A pin on a cached page: while it lives the entry is neither evicted nor removed, so every
/// edit made through the cache lands on the bytes this guard reads (no second copy).
pub struct PinGuard {
    entry: Arc<Entry>,
}

impl PinGuard {
    /// Takes a new pin: under the shard lock, either side, from the map's `Arc`; or from
    /// an `Arc` that is itself a pin (a load cell's).
    pub(crate) fn pin(entry: &Arc<Entry>) -> Self {
        Self {
            entry: Arc::clone(entry),
        }
    }

    /// A consistent view: bytes and the LSN they are at, held against concurrent redo.
    /// Redo, upserts and `mark_clean` on this page wait until the `PageRead` is dropped,
    /// so the thread holding it must not call them for the same page (it would deadlock).
    pub fn read(&self) -> PageRead<'_> {
        let bytes = self
            .entry
            .bytes
            .read()
            .expect("page lock poisoned: a redo edit panicked");
        let lsn = self.entry.lsn.load(Ordering::Acquire);
        PageRead { bytes, lsn }
    }

    /// The page's LSN now; it may rise right after. Use `read` for a matching pair.
    pub fn lsn(&self) -> u64 {
        self.entry.lsn.load(Ordering::Acquire)
    }

    pub fn is_dirty(&self) -> bool {
        self.entry.dirty.load(Ordering::Acquire)
    }

    /// Applies one redo record: runs `edit` on the bytes and moves the page to `new_lsn`,
    /// marking it dirty, all under the write lock so readers see before or after.
    pub fn apply(&self, new_lsn: u64, edit: impl FnOnce(&mut [u8])) -> Result<(), ApplyError> {
        let mut bytes = self
            .entry
            .bytes
            .write()
            .expect("page lock poisoned: a redo edit panicked");
        let current_lsn = self.entry.lsn.load(Ordering::Acquire);
        // S9: in LSN order only.
        if new_lsn <= current_lsn {
            return Err(ApplyError::LsnNotAfter {
                current_lsn,
                new_lsn,
            });
        }
        edit(&mut bytes);
        self.entry.lsn.store(new_lsn, Ordering::Release);
        self.entry.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Copies a dirty page for the flusher; `None` when it is clean.
    pub fn snapshot_for_flush(&self) -> Option<FlushSnapshot> {
        let read = self.read();
        if !self.entry.dirty.load(Ordering::Acquire) {
            return None;
        }
        Some(FlushSnapshot {
            lsn: read.lsn,
            bytes: read.bytes.clone(),
        })
    }

    /// Clears the dirty flag if the page is still at `flushed_lsn`. A redo applied after
    /// the flusher's snapshot moved the LSN, so the page stays dirty and will be flushed
    /// again (otherwise the storage node could evict a page whose newest edit is nowhere).
    pub fn mark_clean(&self, flushed_lsn: u64) -> bool {
        let _bytes = self
            .entry
            .bytes
            .write()
            .expect("page lock poisoned: a redo edit panicked");
        if self.entry.lsn.load(Ordering::Acquire) != flushed_lsn {
            return false;
        }
        self.entry.dirty.store(false, Ordering::Release);
        true
    }

    /// Replaces the page with `page` if it is newer; keeps the resident one otherwise.
    /// Returns whether it replaced.
    ///
    /// Panics if the sizes differ: a page's size is fixed by sixfold's page format, and
    /// the entry's byte cost was charged once, when it was created.
    pub(crate) fn upsert(&self, page: Page) -> bool {
        let mut bytes = self
            .entry
            .bytes
            .write()
            .expect("page lock poisoned: a redo edit panicked");
        if page.lsn <= self.entry.lsn.load(Ordering::Acquire) {
            return false;
        }
        assert_eq!(bytes.len(), page.bytes.len(), "a cached page changed size");
        *bytes = page.bytes;
        self.entry.lsn.store(page.lsn, Ordering::Release);
        self.entry.dirty.store(page.dirty, Ordering::Release);
        true
    }
}

impl std::fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinGuard")
            .field("meta", &self.entry.meta())
            .finish()
    }
}

/// A read lock on a page: the bytes and the one LSN they are at.
pub struct PageRead<'a> {
    bytes: RwLockReadGuard<'a, Box<[u8]>>,
    lsn: u64,
}

impl PageRead<'_> {
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Deref for PageRead<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}
