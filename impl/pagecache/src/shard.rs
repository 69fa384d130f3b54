//! One shard: a map from key to slot, the S3-FIFO queues (probationary, main, ghost), the
//! shard's byte budget and counters. `ShardState` runs under the shard's lock: `&self`
//! methods under the read lock, `&mut self` ones under the write lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

use crate::entry::{Entry, EntryMeta, PageRead, PinGuard};
use crate::hash::FxBuildHasher;
use crate::mutant::{self, Mutant};
use crate::sync::unmodeled::{AtomicU8, AtomicU64};
use crate::sync::{Arc, Condvar, Mutex, Ordering, RwLock, lock};

/// The access count saturates here (two bits, as in S3-FIFO): enough to tell a page read
/// once from one in steady use, and a main-queue page then survives at most this many
/// sweeps without a hit.
pub(crate) const FREQUENCY_MAX: u8 = 3;
/// The probationary queue's share of a shard's bytes, in percent. New pages enter it
/// once the main queue is full; only those hit while in it move to the main queue, so a
/// scan passes through it and leaves the main queue's pages alone. Measured on the
/// benchmark's five traces (docs/pagecache.md): 0.5–1.5% tie quick_cache on all of them;
/// 2–3% lose the table-scan trace once the main queue is filled first (below).
pub(crate) const SMALL_QUEUE_PERCENT: u64 = 1;
/// Keys remembered after eviction from the probationary queue, in percent of the
/// resident entries. A page missed again while remembered was evicted too early and is
/// installed straight into the main queue. Measured: 50% best; 100% and 200% let too
/// many one-off pages into the main queue, 25% too few repeat ones.
pub(crate) const GHOST_PERCENT: usize = 50;
/// The ghost's size in a shard with very few entries.
const GHOST_ENTRIES_MIN: usize = 16;
/// Stale queue slots (left by `remove`) tolerated beyond the live ones before a queue
/// is compacted.
const QUEUE_STALE_SLACK: usize = 64;
/// How many times eviction may go round the queues: a main-queue entry needs at most
/// `FREQUENCY_MAX + 1` visits, a probationary one one more (it is promoted first).
const EVICTION_ROUNDS_MAX: usize = FREQUENCY_MAX as usize + 2;

/// How a load in flight ends, as its waiters see it.
enum LoadState {
    Pending,
    /// The entry; this `Arc` is a pin held for the waiters until the last has its own.
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

    /// Blocks until the load ends; `Some` carries this waiter's pin, cloned from the
    /// cell's (a pin, so the entry is resident: no shard lock needed).
    pub(crate) fn wait(&self) -> Option<PinGuard> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                LoadState::Pending => {
                    state = self.finished.wait(state).expect("load cell lock poisoned");
                }
                LoadState::Ready(entry) => return Some(PinGuard::pin(entry)),
                LoadState::Failed => return None,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// Probationary: new pages, FIFO, evicted unless hit while in it.
    Small,
    /// Pages hit while probationary, or missed again soon after eviction (ghost).
    Main,
}

struct Resident {
    /// The map's `Arc`: the one reference that is not a pin.
    entry: Arc<Entry>,
    /// Hits since the entry was last looked at by eviction, saturating at
    /// `FREQUENCY_MAX`. Written by hits under the read lock, hence atomic; a hit writes
    /// it only when it is below the maximum, so a hot entry's line stays shared.
    frequency: AtomicU8,
    queue: Queue,
    /// Tells this entry's queue slot from a stale one left by an earlier entry of the key.
    install_id: u64,
}

impl Resident {
    #[inline]
    fn touch(&self) {
        let frequency = self.frequency.load(Ordering::Relaxed);
        if frequency < FREQUENCY_MAX {
            self.frequency.store(frequency + 1, Ordering::Relaxed);
        }
    }
}

enum Slot {
    Ready(Resident),
    /// Being loaded by the holder of `load_id`. The cell its waiters sleep on is created
    /// by the first of them: an uncontended miss allocates none and makes no wake-up
    /// system call.
    Loading {
        load_id: u64,
        cell: Option<Arc<LoadCell>>,
    },
}

/// A queue slot: the key and which installation of it this is.
struct Queued<K> {
    key: K,
    install_id: u64,
}

/// What one step of eviction did.
enum Step {
    Evicted,
    /// Promoted, frequency decremented, or a stale slot dropped: progress, no eviction.
    Moved,
    /// Pinned or refused by the predicate; put back at the tail.
    Vetoed,
}

/// The outcome of a lookup that may start a load.
pub(crate) enum Lookup {
    Hit(PinGuard),
    /// Another thread is loading; wait on the cell.
    Wait(Arc<LoadCell>),
    /// Nothing there: we are the loader of this load id and must install or abandon.
    Load(u64),
}

/// The outcome of a lookup that does not start a load.
pub(crate) enum ResidentLookup {
    Hit(PinGuard),
    Wait(Arc<LoadCell>),
    Absent,
}

/// The outcome of installing a page.
pub(crate) enum Installed {
    /// A new entry; if it resolved a load with waiters, their cell must be finished with
    /// the entry (an `Arc` cloned under the shard lock: the waiters' pin).
    New {
        guard: PinGuard,
        resolved: Option<(Arc<LoadCell>, Arc<Entry>)>,
    },
    /// The key was resident: the caller upserts the new entry's page into this entry
    /// outside the shard lock (the entry's write lock must never be waited for under it).
    Existing(PinGuard, Arc<Entry>),
}

/// Per-shard statistics of the slow paths (hits are counted cache-wide, striped by thread:
/// `PageCache::hits`).
#[derive(Default)]
pub(crate) struct Counters {
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
    small: VecDeque<Queued<K>>,
    main: VecDeque<Queued<K>>,
    small_bytes: u64,
    main_bytes: u64,
    small_entries: usize,
    main_entries: usize,
    /// Hashes of keys evicted from the probationary queue, oldest first, and the same
    /// as a set. A ghost hit removes the hash from the set only; its queue slot ages out.
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64, FxBuildHasher>,
    capacity_bytes: u64,
    /// Identifies a load (so its loader can tell its slot from a later load's) and an
    /// installation (so a queue slot can tell its entry from a later one of the key).
    next_id: u64,
}

impl<K: Hash + Eq + Clone> ShardState<K> {
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        Self {
            map: HashMap::default(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_bytes: 0,
            main_bytes: 0,
            small_entries: 0,
            main_entries: 0,
            ghost: VecDeque::new(),
            ghost_set: HashSet::default(),
            capacity_bytes,
            next_id: 0,
        }
    }

    pub(crate) fn bytes_used(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    pub(crate) fn resident_entries(&self) -> usize {
        self.small_entries + self.main_entries
    }

    /// The hit path, under the read lock: pins a resident entry. Pins may be taken under
    /// the read lock because eviction and removal hold the write lock.
    #[inline]
    pub(crate) fn pin_ready(&self, key: &K, referenced: bool) -> Option<PinGuard> {
        let Some(Slot::Ready(resident)) = self.map.get(key) else {
            return None;
        };
        if referenced {
            resident.touch();
        }
        Some(PinGuard::pin(&resident.entry))
    }

    /// K1, the unpinned hit path, under the read lock: runs `read` on a resident page's bytes
    /// with no pin taken and no page lock. The shard's read lock, held until `read`
    /// returns, keeps eviction and removal out, and redo too (K2: a writer waits for it).
    /// Returns `None`, `read` left in place, if the page is absent, loading, or marked by a
    /// writer: the caller then takes the pinned path, so no page lock is ever waited for
    /// here.
    #[inline]
    pub(crate) fn read_ready<R, F>(&self, key: &K, read: &mut Option<F>) -> Option<R>
    where
        F: FnOnce(&PageRead<'_>) -> R,
    {
        let Some(Slot::Ready(resident)) = self.map.get(key) else {
            return None;
        };
        let page = resident.entry.read_unpinned()?;
        resident.touch();
        let read = read.take().expect("the read runs once");
        Some(read(&page))
    }

    /// A read access after `pin_ready` missed, under the write lock: pins a hit, joins a
    /// load in flight, or starts one.
    pub(crate) fn lookup_or_start_load(&mut self, key: &K) -> Lookup {
        match self.resident(key, true) {
            ResidentLookup::Hit(guard) => Lookup::Hit(guard),
            ResidentLookup::Wait(cell) => Lookup::Wait(cell),
            ResidentLookup::Absent => {
                let load_id = self.take_id();
                let slot = Slot::Loading {
                    load_id,
                    cell: None,
                };
                self.map.insert(key.clone(), slot);
                Lookup::Load(load_id)
            }
        }
    }

    /// Pins a resident entry or joins its load (write lock: the load's cell may be
    /// created). `referenced` counts an access (reads do; the flusher's and redo's
    /// internal accesses do not).
    pub(crate) fn resident(&mut self, key: &K, referenced: bool) -> ResidentLookup {
        match self.map.get_mut(key) {
            None => ResidentLookup::Absent,
            Some(Slot::Loading { cell, .. }) => ResidentLookup::Wait(Arc::clone(
                cell.get_or_insert_with(|| Arc::new(LoadCell::new())),
            )),
            Some(Slot::Ready(resident)) => {
                if referenced {
                    resident.touch();
                }
                ResidentLookup::Hit(PinGuard::pin(&resident.entry))
            }
        }
    }

    pub(crate) fn meta(&self, key: &K) -> Option<EntryMeta> {
        match self.map.get(key)? {
            Slot::Ready(resident) => Some(resident.entry.meta()),
            Slot::Loading { .. } => None,
        }
    }

    /// Installs a page: a new entry if none is resident (resolving a load in flight, whoever
    /// started it), else a pin on the resident one for the caller to upsert into. A new
    /// entry goes to the main queue if the ghost remembers its key or the main queue has
    /// room (the cache is filling), else to the probationary one. Evicts to fit with the new entry pinned, so it cannot evict
    /// itself; returns how many it evicted.
    pub(crate) fn install<P>(
        &mut self,
        key: &K,
        entry: Arc<Entry>,
        predicate: &P,
    ) -> (Installed, u64)
    where
        P: Fn(&EntryMeta) -> bool,
    {
        let cell = match self.map.get(key) {
            Some(Slot::Ready(resident)) => {
                let guard = PinGuard::pin(&resident.entry);
                return (Installed::Existing(guard, entry), 0);
            }
            Some(Slot::Loading { cell, .. }) => cell.clone(),
            None => None,
        };
        let guard = PinGuard::pin(&entry);
        let resolved = cell.map(|cell| (cell, Arc::clone(&entry)));
        let cost_bytes = entry.cost_bytes();
        let install_id = self.take_id();
        let queue = if self.ghost_set.remove(&self.hash(key)) || self.main_has_room(cost_bytes) {
            self.main_bytes += cost_bytes;
            self.main_entries += 1;
            self.main.push_back(Queued {
                key: key.clone(),
                install_id,
            });
            Queue::Main
        } else {
            self.small_bytes += cost_bytes;
            self.small_entries += 1;
            self.small.push_back(Queued {
                key: key.clone(),
                install_id,
            });
            Queue::Small
        };
        let resident = Resident {
            entry,
            frequency: AtomicU8::new(0),
            queue,
            install_id,
        };
        self.map.insert(key.clone(), Slot::Ready(resident));
        let evicted = self.evict_to_fit(predicate);
        (Installed::New { guard, resolved }, evicted)
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
    /// Its queue slot goes stale and is dropped when eviction reaches it or the queue is
    /// compacted.
    pub(crate) fn remove(&mut self, key: &K) -> Result<Option<EntryMeta>, crate::RemoveError> {
        let meta = match self.map.get(key) {
            None => return Ok(None),
            Some(Slot::Loading { .. }) => return Err(crate::RemoveError::Loading),
            Some(Slot::Ready(resident)) => {
                Entry::meta_if_unpinned(&resident.entry).ok_or(crate::RemoveError::Pinned)?
            }
        };
        self.unlink(key);
        self.compact_queues();
        Ok(Some(meta))
    }

    /// S3-FIFO eviction until the shard fits: the probationary queue while it holds more
    /// than its share (or the main queue is empty), else the main queue. A probationary
    /// entry hit since it came in moves to the main queue, one not hit is evicted and its
    /// key remembered in the ghost; a main entry with hits has its count decremented and
    /// goes round again, one without is evicted. Pinned entries and those the predicate
    /// refuses (R6 for the writer, dirty for the storage node) go back to their queue's
    /// tail. When a queue yields only vetoes for a whole turn it is exhausted; when both
    /// are, the shard stays over capacity until a later install or `trim` (documented in
    /// the crate docs): waiting here could deadlock against the pin holder, and R6 forbids
    /// evicting above VDL. Returns how many it evicted.
    pub(crate) fn evict_to_fit<P>(&mut self, predicate: &P) -> u64
    where
        P: Fn(&EntryMeta) -> bool,
    {
        let mut evicted = 0;
        let mut budget = EVICTION_ROUNDS_MAX * (self.small.len() + self.main.len()) + 1;
        // Vetoes in a row per queue (small, main) since that queue last made progress.
        let mut vetoes = [0usize; 2];
        while self.bytes_used() > self.capacity_bytes && budget > 0 {
            budget -= 1;
            let small_open = vetoes[0] < self.small.len();
            let main_open = vetoes[1] < self.main.len();
            let from_small = match (small_open, main_open) {
                (false, false) => break,
                (true, false) => true,
                (false, true) => false,
                (true, true) => self.small_bytes > self.small_target_bytes(),
            };
            let queue = usize::from(!from_small);
            let step = if from_small {
                self.advance_small(predicate)
            } else {
                self.advance_main(predicate)
            };
            match step {
                Step::Evicted => {
                    evicted += 1;
                    vetoes = [0, 0];
                }
                // A promotion adds to the main queue: its vetoes so far no longer cover it.
                Step::Moved => vetoes = if from_small { [0, 0] } else { [vetoes[0], 0] },
                Step::Vetoed => vetoes[queue] += 1,
            }
        }
        evicted
    }

    /// Dirty resident pages, at most `limit_pages` of them.
    pub(crate) fn collect_dirty(&self, limit_pages: usize, out: &mut Vec<crate::DirtyPage<K>>) {
        for (key, slot) in &self.map {
            if out.len() >= limit_pages {
                return;
            }
            let Slot::Ready(resident) = slot else {
                continue;
            };
            let meta = resident.entry.meta();
            if meta.dirty {
                out.push(crate::DirtyPage {
                    key: key.clone(),
                    lsn: meta.lsn,
                });
            }
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn hash(&self, key: &K) -> u64 {
        FxBuildHasher::default().hash_one(key)
    }

    /// While the cache fills, new pages go straight to the main queue until it holds
    /// all but the probationary queue's share (as quick_cache does): the first pages of a
    /// trace are as likely to be hot as any, and the root and interior pages of a B-tree
    /// are among them. Measured: +0.006 hit ratio on the table-scan trace, the others
    /// within ±0.002.
    fn main_has_room(&self, cost_bytes: u64) -> bool {
        self.main_bytes + cost_bytes <= self.capacity_bytes - self.small_target_bytes()
    }

    fn small_target_bytes(&self) -> u64 {
        self.capacity_bytes * SMALL_QUEUE_PERCENT / 100
    }

    /// The resident entry a queue slot stands for, if the slot is not stale.
    fn live(&self, queued: &Queued<K>, queue: Queue) -> Option<&Resident> {
        match self.map.get(&queued.key) {
            Some(Slot::Ready(resident))
                if resident.install_id == queued.install_id && resident.queue == queue =>
            {
                Some(resident)
            }
            _ => None,
        }
    }

    /// The metadata an eviction decision reads, or `None` if the entry is pinned. The
    /// guard a `…IgnoresPins` mutant drops.
    fn unpinned_meta(resident: &Resident, ignore_pins: Mutant) -> Option<EntryMeta> {
        if mutant::active(ignore_pins) {
            return Some(resident.entry.meta());
        }
        Entry::meta_if_unpinned(&resident.entry)
    }

    /// The predicate's verdict (R6 for the writer); a `…IgnoresPredicate` mutant drops it.
    fn allowed<P: Fn(&EntryMeta) -> bool>(predicate: &P, meta: &EntryMeta, ignore: Mutant) -> bool {
        mutant::active(ignore) || predicate(meta)
    }

    fn advance_small<P: Fn(&EntryMeta) -> bool>(&mut self, predicate: &P) -> Step {
        let queued = self.small.pop_front().expect("an open queue is not empty");
        let Some(resident) = self.live(&queued, Queue::Small) else {
            return Step::Moved;
        };
        if resident.frequency.load(Ordering::Relaxed) > 0 {
            let cost_bytes = resident.entry.cost_bytes();
            if let Some(Slot::Ready(resident)) = self.map.get_mut(&queued.key) {
                resident.queue = Queue::Main;
                resident.frequency.store(0, Ordering::Relaxed);
            }
            self.small_bytes -= cost_bytes;
            self.small_entries -= 1;
            self.main_bytes += cost_bytes;
            self.main_entries += 1;
            self.main.push_back(queued);
            return Step::Moved;
        }
        let evictable =
            Self::unpinned_meta(resident, Mutant::SmallQueueIgnoresPins).is_some_and(|meta| {
                Self::allowed(predicate, &meta, Mutant::SmallQueueIgnoresPredicate)
            });
        if !evictable {
            self.small.push_back(queued);
            return Step::Vetoed;
        }
        self.unlink(&queued.key);
        self.remember(&queued.key);
        Step::Evicted
    }

    fn advance_main<P: Fn(&EntryMeta) -> bool>(&mut self, predicate: &P) -> Step {
        let queued = self.main.pop_front().expect("an open queue is not empty");
        let Some(resident) = self.live(&queued, Queue::Main) else {
            return Step::Moved;
        };
        let frequency = resident.frequency.load(Ordering::Relaxed);
        if frequency > 0 {
            resident.frequency.store(frequency - 1, Ordering::Relaxed);
            self.main.push_back(queued);
            return Step::Moved;
        }
        let evictable = Self::unpinned_meta(resident, Mutant::MainQueueIgnoresPins)
            .is_some_and(|meta| Self::allowed(predicate, &meta, Mutant::MainQueueIgnoresPredicate));
        if !evictable {
            self.main.push_back(queued);
            return Step::Vetoed;
        }
        self.unlink(&queued.key);
        Step::Evicted
    }

    /// Puts an evicted probationary key into the ghost, forgetting the oldest beyond the
    /// ghost's size.
    fn remember(&mut self, key: &K) {
        let hash = self.hash(key);
        if self.ghost_set.insert(hash) {
            self.ghost.push_back(hash);
        }
        let ghost_entries_max =
            (self.resident_entries() * GHOST_PERCENT / 100).max(GHOST_ENTRIES_MIN);
        while self.ghost.len() > ghost_entries_max {
            let oldest = self.ghost.pop_front().expect("longer than its maximum");
            self.ghost_set.remove(&oldest);
        }
    }

    /// Drops a resident entry from the map and the byte count (its queue slot goes stale).
    fn unlink(&mut self, key: &K) {
        let Some(Slot::Ready(resident)) = self.map.remove(key) else {
            unreachable!("unlinking an entry that is not resident");
        };
        let cost_bytes = resident.entry.cost_bytes();
        match resident.queue {
            Queue::Small => {
                self.small_bytes -= cost_bytes;
                self.small_entries -= 1;
            }
            Queue::Main => {
                self.main_bytes -= cost_bytes;
                self.main_entries -= 1;
            }
        }
    }

    /// Drops stale slots from a queue that holds too many (only `remove` leaves them
    /// behind), so queues stay bounded by the live entries.
    fn compact_queues(&mut self) {
        if self.small.len() > 2 * self.small_entries + QUEUE_STALE_SLACK {
            let small = std::mem::take(&mut self.small);
            self.small = small
                .into_iter()
                .filter(|queued| self.live(queued, Queue::Small).is_some())
                .collect();
        }
        if self.main.len() > 2 * self.main_entries + QUEUE_STALE_SLACK {
            let main = std::mem::take(&mut self.main);
            self.main = main
                .into_iter()
                .filter(|queued| self.live(queued, Queue::Main).is_some())
                .collect();
        }
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
