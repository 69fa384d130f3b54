//! One shard: a map from key to slot, a CLOCK ring of resident entries, the shard's byte
//! budget and counters. `ShardState` runs under the shard's lock: `&self` methods under the
//! read lock, `&mut self` ones under the write lock.

use std::collections::HashMap;
use std::hash::Hash;

use crate::entry::{Entry, EntryMeta, Page, PinGuard};
use crate::hash::FxBuildHasher;
use crate::sync::unmodeled::{AtomicBool, AtomicU64};
use crate::sync::{Arc, Condvar, Mutex, Ordering, RwLock, lock};

/// How a load in flight ends, as its waiters see it.
enum LoadState {
    Pending,
    /// The entry, with one pin already counted for each registered waiter.
    Ready(Arc<Entry>),
    /// The loader failed or panicked; waiters retry (one of them becomes the loader).
    Failed,
}

/// Where the threads that miss a page being loaded wait for it (single flight).
pub(crate) struct LoadCell {
    state: Mutex<LoadState>,
    finished: Condvar,
}

impl LoadCell {
    fn new() -> Self {
        Self {
            state: Mutex::new(LoadState::Pending),
            finished: Condvar::new(),
        }
    }

    pub(crate) fn finish(&self, outcome: Option<Arc<Entry>>) {
        let mut state = lock(&self.state);
        debug_assert!(matches!(*state, LoadState::Pending), "load finished twice");
        *state = match outcome {
            Some(entry) => LoadState::Ready(entry),
            None => LoadState::Failed,
        };
        drop(state);
        self.finished.notify_all();
    }

    /// Blocks until the load ends; `Some` carries this waiter's pre-counted pin.
    pub(crate) fn wait(&self) -> Option<PinGuard> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                LoadState::Pending => {
                    state = self.finished.wait(state).expect("load cell lock poisoned");
                }
                LoadState::Ready(entry) => return Some(PinGuard::adopt(Arc::clone(entry))),
                LoadState::Failed => return None,
            }
        }
    }
}

enum Slot {
    /// Resident, at this index of the ring.
    Ready(usize),
    /// Being loaded by the holder of `load_id`; `waiters` threads registered under the
    /// shard lock and each will be handed a pin when the page is installed. The cell they
    /// wait on is created by the first of them: an uncontended miss allocates none and
    /// makes no wake-up system call.
    Loading {
        load_id: u64,
        waiters: u32,
        cell: Option<Arc<LoadCell>>,
    },
}

struct RingSlot<K> {
    key: K,
    entry: Arc<Entry>,
    /// CLOCK's reference bit: set by a hit (under the read lock, hence atomic), cleared by
    /// the hand, which evicts only entries it finds cleared: a second chance for pages in
    /// use.
    referenced: AtomicBool,
}

impl<K> RingSlot<K> {
    fn reference(&self) {
        // Read first: a hot page's bit is already set and the line stays shared.
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }
}

/// The outcome of a lookup that may start a load.
pub(crate) enum Lookup {
    Hit(PinGuard),
    /// Another thread is loading; wait on the cell (a pin is reserved for us).
    Wait(Arc<LoadCell>),
    /// Nothing there: we are the loader of this load id and must install or abandon.
    Load(u64),
}

/// The outcome of a lookup that does not start a load.
pub(crate) enum Resident {
    Hit(PinGuard),
    Wait(Arc<LoadCell>),
    Absent,
}

/// The outcome of installing a page.
pub(crate) enum Installed {
    /// A new entry; if it resolved a load with waiters, their cell must be finished with
    /// the entry.
    New {
        guard: PinGuard,
        entry: Arc<Entry>,
        resolved: Option<Arc<LoadCell>>,
    },
    /// The key was resident: the caller upserts the page into this entry outside the
    /// shard lock (the entry's write lock must never be waited for under it).
    Existing(PinGuard, Page),
}

/// Per-shard statistics; atomics so hits can count under the read lock.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) load_waits: AtomicU64,
    pub(crate) load_failures: AtomicU64,
    pub(crate) evictions: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub(crate) struct ShardState<K> {
    map: HashMap<K, Slot, FxBuildHasher>,
    ring: Vec<Option<RingSlot<K>>>,
    free_ring_indexes: Vec<usize>,
    hand: usize,
    bytes_used: u64,
    capacity_bytes: u64,
    /// Identifies a load so its loader can tell its slot from a later load's.
    next_load_id: u64,
}

impl<K: Hash + Eq + Clone> ShardState<K> {
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        Self {
            map: HashMap::default(),
            ring: Vec::new(),
            free_ring_indexes: Vec::new(),
            hand: 0,
            bytes_used: 0,
            capacity_bytes,
            next_load_id: 0,
        }
    }

    pub(crate) fn bytes_used(&self) -> u64 {
        self.bytes_used
    }

    pub(crate) fn resident_entries(&self) -> usize {
        self.ring.len() - self.free_ring_indexes.len()
    }

    /// The hit path, under the read lock: pins a resident entry. Pins may be taken under
    /// the read lock because eviction and removal hold the write lock.
    pub(crate) fn pin_ready(&self, key: &K, referenced: bool) -> Option<PinGuard> {
        let Slot::Ready(index) = self.map.get(key)? else {
            return None;
        };
        let slot = self.ring_slot(*index);
        if referenced {
            slot.reference();
        }
        Some(PinGuard::pin(&slot.entry))
    }

    /// A read access after `pin_ready` missed, under the write lock: pins a hit, joins a
    /// load in flight, or starts one.
    pub(crate) fn lookup_or_start_load(&mut self, key: &K) -> Lookup {
        match self.resident(key, true) {
            Resident::Hit(guard) => Lookup::Hit(guard),
            Resident::Wait(cell) => Lookup::Wait(cell),
            Resident::Absent => {
                let load_id = self.next_load_id;
                self.next_load_id += 1;
                let slot = Slot::Loading {
                    load_id,
                    waiters: 0,
                    cell: None,
                };
                self.map.insert(key.clone(), slot);
                Lookup::Load(load_id)
            }
        }
    }

    /// Pins a resident entry or registers as a waiter on its load (write lock: the waiter
    /// count changes). `referenced` sets the CLOCK bit (reads do; the flusher's and redo's
    /// internal accesses do not).
    pub(crate) fn resident(&mut self, key: &K, referenced: bool) -> Resident {
        match self.map.get_mut(key) {
            None => Resident::Absent,
            Some(Slot::Loading { waiters, cell, .. }) => {
                *waiters += 1;
                Resident::Wait(Arc::clone(
                    cell.get_or_insert_with(|| Arc::new(LoadCell::new())),
                ))
            }
            Some(Slot::Ready(index)) => {
                let slot = self.ring[*index]
                    .as_ref()
                    .expect("map points at an empty ring slot");
                if referenced {
                    slot.reference();
                }
                Resident::Hit(PinGuard::pin(&slot.entry))
            }
        }
    }

    pub(crate) fn meta(&self, key: &K) -> Option<EntryMeta> {
        match self.map.get(key)? {
            Slot::Ready(index) => Some(self.ring_slot(*index).entry.meta()),
            Slot::Loading { .. } => None,
        }
    }

    /// Installs a page: a new entry if none is resident (resolving a load in flight, whoever
    /// started it), else a pin on the resident one for the caller to upsert into. Evicts
    /// to fit with the new entry pinned, so it cannot evict itself; returns how many it
    /// evicted.
    pub(crate) fn install<P>(&mut self, key: &K, page: Page, predicate: &P) -> (Installed, u64)
    where
        P: Fn(&EntryMeta) -> bool,
    {
        let (waiters, resolved) = match self.map.get(key) {
            Some(Slot::Ready(index)) => {
                let guard = PinGuard::pin(&self.ring_slot(*index).entry);
                return (Installed::Existing(guard, page), 0);
            }
            Some(Slot::Loading { waiters, cell, .. }) => {
                debug_assert_eq!(*waiters > 0, cell.is_some(), "waiters without a cell");
                (*waiters, cell.clone())
            }
            None => (0, None),
        };
        let entry = Arc::new(Entry::new(page, 1 + waiters));
        let guard = PinGuard::adopt(Arc::clone(&entry));
        self.bytes_used += entry.cost_bytes();
        let ring_slot = RingSlot {
            key: key.clone(),
            entry: Arc::clone(&entry),
            referenced: AtomicBool::new(false),
        };
        let index = match self.free_ring_indexes.pop() {
            Some(index) => {
                debug_assert!(self.ring[index].is_none(), "free ring slot is occupied");
                self.ring[index] = Some(ring_slot);
                index
            }
            None => {
                self.ring.push(Some(ring_slot));
                self.ring.len() - 1
            }
        };
        self.map.insert(key.clone(), Slot::Ready(index));
        let evicted = self.evict_to_fit(predicate);
        (
            Installed::New {
                guard,
                entry,
                resolved,
            },
            evicted,
        )
    }

    /// Removes a load slot whose loader failed, if it is still that loader's. Returns
    /// its waiters' cell, to be failed, if it was and had waiters. If it was not, an
    /// `insert` already resolved the load with its page.
    pub(crate) fn abandon_load(&mut self, key: &K, load_id: u64) -> Option<Arc<LoadCell>> {
        let ours = matches!(
            self.map.get(key),
            Some(Slot::Loading { load_id: slot_load_id, .. }) if *slot_load_id == load_id
        );
        if !ours {
            return None;
        }
        match self.map.remove(key) {
            Some(Slot::Loading { cell, .. }) => cell,
            _ => unreachable!("checked above: the slot is this load's"),
        }
    }

    /// Removes an unpinned resident entry, ignoring the predicate; returns its metadata.
    pub(crate) fn remove(&mut self, key: &K) -> Result<Option<EntryMeta>, crate::RemoveError> {
        let index = match self.map.get(key) {
            None => return Ok(None),
            Some(Slot::Loading { .. }) => return Err(crate::RemoveError::Loading),
            Some(Slot::Ready(index)) => *index,
        };
        let entry = &self.ring_slot(index).entry;
        if entry.is_pinned() {
            return Err(crate::RemoveError::Pinned);
        }
        let meta = entry.meta();
        self.unlink(index);
        Ok(Some(meta))
    }

    /// CLOCK: sweeps at most twice round the ring (the first pass may only clear reference
    /// bits), evicting unpinned, unreferenced entries the predicate accepts until the shard
    /// fits. If everything left is pinned or refused the shard stays over capacity until a
    /// later install or `trim` (documented in the crate docs): waiting here could deadlock
    /// against the pin holder, and R6 forbids evicting above VDL. Returns how many it
    /// evicted.
    pub(crate) fn evict_to_fit<P>(&mut self, predicate: &P) -> u64
    where
        P: Fn(&EntryMeta) -> bool,
    {
        let mut evicted = 0;
        let ring_len = self.ring.len();
        let mut budget = 2 * ring_len;
        while self.bytes_used > self.capacity_bytes && budget > 0 {
            budget -= 1;
            let index = self.hand;
            self.hand = (self.hand + 1) % ring_len;
            let Some(slot) = self.ring[index].as_ref() else {
                continue;
            };
            // The guard `loom_mutant` drops: tests/loom.rs must catch its absence.
            if !cfg!(loom_mutant) && slot.entry.is_pinned() {
                continue;
            }
            if slot.referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            // R6 for the writer (LSN ≤ VDL), "clean only" for the storage node. Stable: the
            // entry is unpinned, and pins (which redo and the flusher hold while they change
            // LSN and dirty) are only taken under the shard lock, whose write side we hold.
            if !predicate(&slot.entry.meta()) {
                continue;
            }
            self.unlink(index);
            evicted += 1;
        }
        evicted
    }

    /// Dirty resident pages, at most `limit_pages` of them.
    pub(crate) fn collect_dirty(&self, limit_pages: usize, out: &mut Vec<crate::DirtyPage<K>>) {
        for slot in self.ring.iter().flatten() {
            if out.len() >= limit_pages {
                return;
            }
            let meta = slot.entry.meta();
            if meta.dirty {
                out.push(crate::DirtyPage {
                    key: slot.key.clone(),
                    lsn: meta.lsn,
                });
            }
        }
    }

    fn ring_slot(&self, index: usize) -> &RingSlot<K> {
        self.ring[index]
            .as_ref()
            .expect("map points at an empty ring slot")
    }

    fn unlink(&mut self, index: usize) {
        let slot = self.ring[index]
            .take()
            .expect("unlinking an empty ring slot");
        let removed = self.map.remove(&slot.key);
        debug_assert!(
            matches!(removed, Some(Slot::Ready(i)) if i == index),
            "map and ring disagree"
        );
        self.bytes_used -= slot.entry.cost_bytes();
        self.free_ring_indexes.push(index);
    }
}

/// A shard: its state behind one reader-writer lock (hits read, everything else writes)
/// and its counters beside it. Aligned to 128 bytes (two cache lines, the unit Intel's
/// adjacent-line prefetcher moves) so neighbouring shards in the array never share a line:
/// every hit writes its shard's lock word and hit counter.
#[repr(align(128))]
pub(crate) struct Shard<K> {
    pub(crate) state: RwLock<ShardState<K>>,
    pub(crate) counters: Counters,
}

impl<K: Hash + Eq + Clone> Shard<K> {
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let state = RwLock::new(ShardState::new(capacity_bytes));
        Self {
            state,
            counters: Counters::default(),
        }
    }
}
