//! One cached page: its bytes behind a reader-writer lock, its LSN and dirty flag, and the
//! guard that holds a pin on it.

use std::ops::Deref;

use crate::error::ApplyError;
use crate::mutant::{self, Mutant};
use crate::sync::{
    Arc, AtomicBool, AtomicU64, BytesRef, Ordering, PageBytes, RwLock, RwLockReadGuard,
};

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
/// finds the header and the bytes from one pointer, where a separately allocated
/// `Box<[u8]>` made the bytes a second miss after the header's. `B` is `[u8]` once built:
/// a buffer of the page's size class (the next power of two, `BUFFER_BYTES_MIN` to
/// `PAGE_BYTES_MAX`), of which the first `len` bytes are the page. Built as
/// `Entry<[u8; N]>` and unsized.
///
/// K2: the bytes are read under `lock`'s read side (pinned reads) or under the shard's read
/// lock with `writing` clear (unpinned reads, which write nothing here); they are written
/// under `lock`'s write side with `writing` set, after the shard barrier has let out every
/// unpinned reader that could have missed the flag.
pub(crate) struct Entry<B: ?Sized = [u8]> {
    /// Written only by a K2 writer, so a reader sees the LSN that matches the bytes.
    lsn: AtomicU64,
    /// Written only under `lock`'s write side.
    dirty: AtomicBool,
    /// K2: set while a writer may touch the bytes; unpinned reads that see it fall back to
    /// a pinned read (which waits on `lock`).
    writing: AtomicBool,
    /// The page's length: the first `len` bytes of the buffer.
    len: usize,
    cost_bytes: u64,
    /// Pinned readers and every writer of the bytes, LSN and dirty flag.
    lock: RwLock<()>,
    bytes: PageBytes<B>,
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
            writing: AtomicBool::new(false),
            len: page.bytes.len(),
            cost_bytes: N as u64 + ENTRY_OVERHEAD_BYTES,
            lock: RwLock::new(()),
            bytes: PageBytes::new([0u8; N]),
        });
        let unshared = std::sync::Arc::get_mut(&mut entry).expect("just built");
        let buffer = unshared.bytes.exclusive();
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
    /// unpinned entry (a pinned `PageRead` borrows a pin; an unpinned read takes no page
    /// lock), and we never wait for it under the shard lock.
    pub(crate) fn meta_if_unpinned(entry: &Arc<Self>) -> Option<EntryMeta> {
        if Arc::strong_count(entry) != 1 {
            return None;
        }
        let _bytes = entry.lock.try_write().ok()?;
        Some(entry.meta())
    }

    /// K1, K2: the bytes and the LSN they are at, without a pin and without a write to
    /// the entry, if no writer has marked the page (`None` then: the caller falls back to
    /// a pinned read rather than wait). For the unpinned read path, under the shard's read
    /// lock, which keeps eviction and removal out while the returned read lives, and keeps
    /// out every writer that marks the page from now on (its barrier waits for us). A
    /// writer that marked it earlier and finished cleared the mark with `Release` after
    /// its last write, so the `Acquire` load orders its bytes before ours.
    #[inline]
    pub(crate) fn read_unpinned(&self) -> Option<PageRead<'_>> {
        let skip_check = mutant::active(Mutant::UnpinnedReadIgnoresWriters);
        if !skip_check && self.writing.load(Ordering::Acquire) {
            return None;
        }
        let lsn = self.lsn.load(Ordering::Acquire);
        Some(PageRead {
            // SAFETY: K2, as above: no writer touches the bytes while we hold the shard's
            // read lock with the mark seen clear.
            bytes: unsafe { self.bytes.read() },
            len: self.len,
            lsn,
            _lock: None,
        })
    }

    /// K2: runs `write` on the bytes, LSN and dirty flag as a writer: holding the page's
    /// write lock (pinned readers and other writers out), with the page marked (unpinned
    /// readers arriving from now on fall back), after `barrier` — the shard's write lock
    /// taken and released — has waited for every unpinned reader already in the shard.
    /// `write` runs with no shard lock held. `check` runs first, under the page lock only:
    /// a write it refuses costs no barrier.
    fn write<T, R>(
        &self,
        barrier: impl FnOnce(),
        check: impl FnOnce(&Self) -> Result<T, R>,
        write: impl FnOnce(&Self, &mut [u8], T),
    ) -> Result<(), R> {
        let _lock = self
            .lock
            .write()
            .expect("page lock poisoned: a redo edit panicked");
        let checked = check(self)?;
        self.writing.store(true, Ordering::Relaxed);
        if !mutant::active(Mutant::WriterSkipsBarrier) {
            barrier();
        }
        // The write access (tracked under loom) ends with this block, before the mark clears.
        {
            // SAFETY: K2: the page lock's write side excludes pinned readers and writers;
            // the mark, stored before the barrier, is seen by every unpinned reader
            // entering the shard after it, and the barrier waited for those already inside.
            let mut bytes = unsafe { self.bytes.write() };
            write(self, &mut bytes[..self.len], checked);
        }
        self.writing.store(false, Ordering::Release);
        Ok(())
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
        let lock = self
            .entry
            .lock
            .read()
            .expect("page lock poisoned: a redo edit panicked");
        let lsn = self.entry.lsn.load(Ordering::Acquire);
        PageRead {
            // SAFETY: K2: writers hold the page's write lock, which our read lock excludes
            // for the `PageRead`'s life.
            bytes: unsafe { self.entry.bytes.read() },
            len: self.entry.len,
            lsn,
            _lock: Some(lock),
        }
    }

    /// The page's LSN now; it may rise right after. Use `read` for a matching pair.
    pub fn lsn(&self) -> u64 {
        self.entry.lsn.load(Ordering::Acquire)
    }

    pub fn is_dirty(&self) -> bool {
        self.entry.dirty.load(Ordering::Acquire)
    }

    /// Applies one redo record as a K2 writer: runs `edit` on the bytes and moves the page
    /// to `new_lsn`, marking it dirty, so readers see before or after. `barrier` takes and
    /// releases the page's shard's write lock (the cache passes it: a guard does not know
    /// its shard).
    pub(crate) fn apply(
        &self,
        barrier: impl FnOnce(),
        new_lsn: u64,
        edit: impl FnOnce(&mut [u8]),
    ) -> Result<(), ApplyError> {
        let in_order = |entry: &Entry| {
            let current_lsn = entry.lsn.load(Ordering::Acquire);
            // S9: in LSN order only.
            if new_lsn <= current_lsn {
                return Err(ApplyError::LsnNotAfter {
                    current_lsn,
                    new_lsn,
                });
            }
            Ok(())
        };
        self.entry.write(barrier, in_order, |entry, bytes, ()| {
            edit(bytes);
            entry.lsn.store(new_lsn, Ordering::Release);
            entry.dirty.store(true, Ordering::Release);
        })
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
    /// Unpinned reads do not read the flag: no barrier needed.
    pub fn mark_clean(&self, flushed_lsn: u64) -> bool {
        let _lock = self
            .entry
            .lock
            .write()
            .expect("page lock poisoned: a redo edit panicked");
        if self.entry.lsn.load(Ordering::Acquire) != flushed_lsn {
            return false;
        }
        self.entry.dirty.store(false, Ordering::Release);
        true
    }

    /// Replaces the page with `newer`'s (an entry built for an install that found the key
    /// resident, never shared) if it is newer, as a K2 writer (`barrier` as for `apply`);
    /// keeps the resident one otherwise. Returns whether it replaced.
    ///
    /// Panics if the sizes differ: a page's size is fixed by sixfold's page format, and
    /// the entry's byte cost was charged once, when it was created.
    pub(crate) fn upsert(&self, barrier: impl FnOnce(), mut newer: Arc<Entry>) -> bool {
        let newer_lsn = newer.lsn.load(Ordering::Acquire);
        let newer_dirty = newer.dirty.load(Ordering::Acquire);
        let newer_len = newer.len;
        let is_newer = |entry: &Entry| {
            if newer_lsn <= entry.lsn.load(Ordering::Acquire) {
                return Err(());
            }
            assert_eq!(entry.len, newer_len, "a cached page changed size");
            Ok(())
        };
        let newer_bytes = Arc::get_mut(&mut newer)
            .expect("built for this install, never shared")
            .bytes
            .exclusive();
        self.entry
            .write(barrier, is_newer, |entry, bytes, ()| {
                bytes.copy_from_slice(&newer_bytes[..newer_len]);
                entry.lsn.store(newer_lsn, Ordering::Release);
                entry.dirty.store(newer_dirty, Ordering::Release);
            })
            .is_ok()
    }
}

impl std::fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinGuard")
            .field("meta", &self.entry.meta())
            .finish()
    }
}

/// A read of a page: the bytes and the one LSN they are at, held against redo (K1, K2) —
/// by the page's read lock on the pinned path, by the shard's read lock on the unpinned one
/// (the caller holds it for the read's whole life).
pub struct PageRead<'a> {
    /// The entry's whole buffer; the page is its first `len` bytes.
    bytes: BytesRef<'a, [u8]>,
    len: usize,
    lsn: u64,
    /// The page's read lock, on the pinned path.
    _lock: Option<RwLockReadGuard<'a, ()>>,
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
