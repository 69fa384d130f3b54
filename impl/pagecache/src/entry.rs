//! One cached page: its bytes behind a reader-writer lock, its LSN and dirty flag, and the
//! guard that holds a pin on it.

use std::ops::Deref;

use crate::error::ApplyError;
use crate::mutant::{self, Mutant};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering, RwLock, RwLockReadGuard, TryLockError};

/// Bytes charged per entry on top of the page's buffer (the page rounded up to a power of
/// two, at least 8): the entry's header, the map slot and the queue slot, rounded up. An
/// estimate; it keeps a cache of tiny pages bounded too.
pub const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// A page version handed to the cache by a loader or by `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The LSN of the last redo record the bytes include.
    pub lsn: u64,
    /// At most [`PAGE_BYTES_MAX`]; copied into the entry's own buffer when cached.
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
    /// The bytes the entry is charged: the page's buffer (its length rounded up to a
    /// power of two, at least 8) plus `ENTRY_OVERHEAD_BYTES`.
    pub cost_bytes: u64,
}

/// A copy of a dirty page taken for the flusher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushSnapshot {
    pub lsn: u64,
    pub bytes: Box<[u8]>,
}

/// The largest page the cache holds: pages are stored inline in a buffer of a fixed size
/// class (below), built on the stack first. sixfold's pages are 4 KiB.
pub const PAGE_BYTES_MAX: usize = 64 * 1024;

/// The smallest buffer an entry gets.
const BUFFER_BYTES_MIN: usize = 8;

/// A resident page. The shard's map owns one `Arc` of it; every other `Arc` is a pin (a
/// [`PinGuard`], or a finished load's cell holding the page for its waiters). So the pin
/// count is the strong count minus one, and a hit pins with the `Arc` clone it needs
/// anyway: no second counter to bump.
///
/// The bytes are the entry's last field, in the same allocation as the header: a read
/// finds the lock word and the bytes from one pointer, two cache lines loaded side by side,
/// where a separately allocated `Box<[u8]>` made the bytes a second miss after the
/// header's. `B` is `[u8]` once built: a buffer of the page's size class (the next power
/// of two, `BUFFER_BYTES_MIN` to `PAGE_BYTES_MAX`), of which the first `len` bytes are the
/// page. Built as `Entry<[u8; N]>` and unsized, so no `unsafe` is needed.
pub(crate) struct Entry<B: ?Sized = [u8]> {
    /// Written only under the `bytes` write lock, so a reader holding the read lock sees
    /// the LSN that matches the bytes.
    lsn: AtomicU64,
    /// Written only under the `bytes` write lock, like `lsn`.
    dirty: AtomicBool,
    /// The page's length: the first `len` bytes of the buffer.
    len: usize,
    cost_bytes: u64,
    bytes: RwLock<B>,
}

/// Builds the entry in the buffer class `$class` for each listed size class.
macro_rules! entry_in_class {
    ($page:expr, $class:expr, $($size:literal),+) => {
        match $class {
            $($size => Entry::inline::<$size>($page),)+
            class => panic!(
                "a page of {class} bytes is above PAGE_BYTES_MAX ({PAGE_BYTES_MAX}): \
                 page sizes are fixed by sixfold's page format"
            ),
        }
    };
}

impl Entry {
    /// A new entry holding `page`, in the buffer of its size class.
    ///
    /// Panics if the page is longer than [`PAGE_BYTES_MAX`] (page sizes are fixed by
    /// sixfold's page format: a bigger page is a bug of ours, not input).
    pub(crate) fn new(page: Page) -> Arc<Self> {
        let class = page.bytes.len().next_power_of_two().max(BUFFER_BYTES_MIN);
        entry_in_class!(
            page, class, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536
        )
    }

    /// Zeroes the buffer in the allocation (no page-sized value on the stack) and copies
    /// the page in while the entry is not shared yet.
    fn inline<const N: usize>(page: Page) -> Arc<Self> {
        let mut entry = std::sync::Arc::new(Entry::<[u8; N]> {
            lsn: AtomicU64::new(page.lsn),
            dirty: AtomicBool::new(page.dirty),
            len: page.bytes.len(),
            cost_bytes: N as u64 + ENTRY_OVERHEAD_BYTES,
            bytes: RwLock::new([0u8; N]),
        });
        let unshared = std::sync::Arc::get_mut(&mut entry).expect("just built");
        let buffer = unshared.bytes.get_mut().expect("never locked yet");
        buffer[..page.bytes.len()].copy_from_slice(&page.bytes);
        let entry: std::sync::Arc<Entry> = entry;
        #[cfg(loom)]
        let entry = Arc::from_std(entry);
        entry
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
    /// unpinned entry (a `PageRead` borrows a pin, or is an unpinned read holding the
    /// shard's read lock, which our write lock excludes), and we never wait for it under
    /// the shard lock.
    pub(crate) fn meta_if_unpinned(entry: &Arc<Self>) -> Option<EntryMeta> {
        if Arc::strong_count(entry) != 1 {
            return None;
        }
        let _bytes = entry.bytes.try_write().ok()?;
        Some(entry.meta())
    }

    /// K1: the bytes and the LSN they are at, without a pin, if no redo holds or awaits the
    /// page's lock (`None` then: the caller falls back to a pinned read rather than wait).
    /// For the unpinned read path, under the shard's read lock, which keeps eviction and
    /// removal out while the returned read lives; the page's read lock keeps redo out.
    /// The LSN is read after the lock is taken, so it is the one the bytes are at (the
    /// `ReadPathLsnBeforeLock` mutant reads it before).
    #[inline]
    pub(crate) fn try_read(&self) -> Option<PageRead<'_>> {
        let early_lsn =
            mutant::active(Mutant::ReadPathLsnBeforeLock).then(|| self.lsn.load(Ordering::Acquire));
        let bytes = match self.bytes.try_read() {
            Ok(bytes) => bytes,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(_)) => panic!("page lock poisoned: a redo edit panicked"),
        };
        let lsn = early_lsn.unwrap_or_else(|| self.lsn.load(Ordering::Acquire));
        Some(PageRead {
            bytes,
            len: self.len,
            lsn,
        })
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
    #[inline]
    pub(crate) fn pin(entry: &Arc<Entry>) -> Self {
        Self {
            entry: Arc::clone(entry),
        }
    }

    /// A consistent view: bytes and the LSN they are at, held against concurrent redo.
    /// Redo, upserts and `mark_clean` on this page wait until the `PageRead` is dropped,
    /// so the thread holding it must not call them for the same page (it would deadlock).
    #[inline]
    pub fn read(&self) -> PageRead<'_> {
        let bytes = self
            .entry
            .bytes
            .read()
            .expect("page lock poisoned: a redo edit panicked");
        let lsn = self.entry.lsn.load(Ordering::Acquire);
        PageRead {
            bytes,
            len: self.entry.len,
            lsn,
        }
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
        edit(&mut bytes[..self.entry.len]);
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
            bytes: read.bytes().into(),
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

    /// Replaces the page with `newer`'s (an entry built for an install that found the key
    /// resident, never shared) if it is newer; keeps the resident one otherwise. Returns
    /// whether it replaced.
    ///
    /// Panics if the sizes differ: a page's size is fixed by sixfold's page format, and
    /// the entry's byte cost was charged once, when it was created.
    pub(crate) fn upsert(&self, newer: &Entry) -> bool {
        let mut bytes = self
            .entry
            .bytes
            .write()
            .expect("page lock poisoned: a redo edit panicked");
        let newer_lsn = newer.lsn.load(Ordering::Acquire);
        if newer_lsn <= self.entry.lsn.load(Ordering::Acquire) {
            return false;
        }
        assert_eq!(self.entry.len, newer.len, "a cached page changed size");
        let newer_bytes = newer.bytes.read().expect("never shared, never poisoned");
        bytes[..newer.len].copy_from_slice(&newer_bytes[..newer.len]);
        self.entry.lsn.store(newer_lsn, Ordering::Release);
        let newer_dirty = newer.dirty.load(Ordering::Acquire);
        self.entry.dirty.store(newer_dirty, Ordering::Release);
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
    /// The entry's whole buffer; the page is its first `len` bytes.
    bytes: RwLockReadGuard<'a, [u8]>,
    len: usize,
    lsn: u64,
}

impl PageRead<'_> {
    #[inline]
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Deref for PageRead<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}
