//! The cache: shards, the eviction predicate, and the operations that cross the shard lock
//! and the entry locks in a fixed order: shard, then load cell; a page's lock, then its
//! shard's (a writer's barrier, K2); never a wait for a page's lock while holding a shard
//! lock.

use std::hash::{BuildHasher, Hash};

use crate::entry::{Entry, EntryMeta, FlushSnapshot, Page, PageRead, PinGuard};
use crate::error::{ApplyError, ConfigError, RemoveError};
use crate::hash::FxBuildHasher;
use crate::shard::{Counters, Installed, Lookup, ResidentLookup as Resident, Shard};
use crate::striped::StripedCounter;
use crate::sync::{read, write};

/// Upper bound on shards: more than a few per core only spreads the capacity thinner.
pub const SHARDS_MAX: usize = 1024;

/// A dirty page reported to the flusher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyPage<K> {
    pub key: K,
    pub lsn: u64,
}

/// Counters and sizes summed over the shards one shard at a time, so under concurrent use
/// the sum is not one instant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    /// Lookups that found nothing and ran their loader.
    pub misses: u64,
    /// Lookups that found a load in flight and waited for it instead of loading.
    pub load_waits: u64,
    pub load_failures: u64,
    pub evictions: u64,
    pub entries: u64,
    /// May exceed `capacity_bytes` while entries are pinned or refused by the predicate.
    pub bytes_used: u64,
    pub capacity_bytes: u64,
}

/// A sharded page cache bounded by bytes. See the crate docs for the design.
pub struct PageCache<K, P> {
    shards: Box<[Shard<K>]>,
    hasher: FxBuildHasher,
    capacity_bytes: u64,
    /// Hits of every shard, striped by thread so hits write no shared line.
    hits: StripedCounter,
    /// May this unpinned entry be evicted? Called under a shard's write lock: keep it
    /// cheap, never call back into the cache from it, never panic (the lock would be
    /// poisoned and every later access to the shard would panic).
    predicate: P,
}

impl<K, P> PageCache<K, P>
where
    K: Hash + Eq + Clone,
    P: Fn(&EntryMeta) -> bool,
{
    /// A cache of `capacity_bytes` split evenly over `shards`. The predicate is the
    /// eviction policy's veto: storage node `|m| !m.dirty`, writer (R6)
    /// `move |m| m.lsn <= vdl.load(Ordering::Acquire)`.
    pub fn new(capacity_bytes: u64, shards: usize, predicate: P) -> Result<Self, ConfigError> {
        if shards == 0 || shards > SHARDS_MAX {
            return Err(ConfigError::ShardCount {
                shards,
                max: SHARDS_MAX,
            });
        }
        if capacity_bytes < shards as u64 {
            return Err(ConfigError::CapacityBelowShardCount {
                capacity_bytes,
                shards,
            });
        }
        let base = capacity_bytes / shards as u64;
        let remainder = capacity_bytes % shards as u64;
        let shards = (0..shards as u64)
            .map(|index| Shard::new(base + u64::from(index < remainder)))
            .collect();
        Ok(Self {
            shards,
            hasher: FxBuildHasher::default(),
            capacity_bytes,
            hits: StripedCounter::default(),
            predicate,
        })
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Returns the page pinned, loading it on a miss. Single flight: threads that miss a
    /// page while another loads it wait for that load and get its entry; their loaders do
    /// not run. If the load fails, the loader's caller gets its error and each waiter
    /// retries, one of them loading with its own loader.
    ///
    /// The loader runs without any cache lock held, but it must not access `key` in this
    /// cache (it would wait for itself).
    pub fn get_or_load<E>(
        &self,
        key: &K,
        loader: impl FnOnce() -> Result<Page, E>,
    ) -> Result<PinGuard, E> {
        let shard = self.shard(key);
        if let Some(guard) = read(&shard.state).pin_ready(key, true) {
            self.hits.increment();
            return Ok(guard);
        }
        self.get_or_load_locked(shard, key, loader)
    }

    /// `get_or_load` after its read-locked lookup missed: under the write lock, a hit, a
    /// load in flight to join, or a load to start.
    fn get_or_load_locked<E>(
        &self,
        shard: &Shard<K>,
        key: &K,
        loader: impl FnOnce() -> Result<Page, E>,
    ) -> Result<PinGuard, E> {
        loop {
            let lookup = write(&shard.state).lookup_or_start_load(key);
            match lookup {
                Lookup::Hit(guard) => {
                    self.hits.increment();
                    return Ok(guard);
                }
                Lookup::Wait(cell) => {
                    Counters::add(&shard.counters.load_waits, 1);
                    if let Some(guard) = cell.wait() {
                        return Ok(guard);
                    }
                }
                // We return whatever the loader gives, so it runs at most once.
                Lookup::Load(load_id) => {
                    Counters::add(&shard.counters.misses, 1);
                    return self.run_loader(shard, key, load_id, loader);
                }
            }
        }
    }

    /// Runs `read` on the page's bytes and LSN, loading the page on a miss as `get_or_load`
    /// does, and returns what `read` returns. The hit path of a read that copies or
    /// inspects a page: on a resident page that no redo is writing it takes no pin and no
    /// page lock (nothing written to the page's entry), only the shard's read lock, and
    /// runs `read` under it; otherwise it pins as `get_or_load` and reads.
    ///
    /// K1, K2: `read` sees the bytes and the one LSN they are at. If redo has marked the
    /// page, the read falls back to a pin, releasing the shard's lock first, and waits for
    /// the page's lock with no shard lock held.
    ///
    /// `read` must be short and must not call into this cache: it may run under the
    /// shard's read lock, which an install into the shard waits for (and a second read
    /// lock of the same shard may wait behind that install).
    pub fn with_page_or_load<R, E>(
        &self,
        key: &K,
        loader: impl FnOnce() -> Result<Page, E>,
        read: impl FnOnce(&PageRead<'_>) -> R,
    ) -> Result<R, E> {
        let shard = self.shard(key);
        let mut read = Some(read);
        if let Some(result) = self.read_unpinned(shard, key, &mut read) {
            return Ok(result);
        }
        // The read-locked lookup just ran: go on under the write lock.
        let guard = self.get_or_load_locked(shard, key, loader)?;
        let page = guard.read();
        Ok((read.take().expect("not run by the unpinned path"))(&page))
    }

    /// Runs `read` on the page if it is resident (waiting for a load in flight), as
    /// `with_page_or_load` without loading; `None` if the page is not resident. Counts a
    /// hit or a miss. Same rules for `read` (K1 for both).
    pub fn with_page<R>(&self, key: &K, read: impl FnOnce(&PageRead<'_>) -> R) -> Option<R> {
        let shard = self.shard(key);
        let mut read = Some(read);
        if let Some(result) = self.read_unpinned(shard, key, &mut read) {
            return Some(result);
        }
        let resident = write(&shard.state).resident(key, true);
        self.count(shard, &resident);
        let guard = Self::settle(resident)?;
        let page = guard.read();
        Some((read.take().expect("not run by the unpinned path"))(&page))
    }

    /// Returns the page pinned if it is resident (waiting for a load in flight); never
    /// loads. Counts a hit or a miss.
    pub fn get(&self, key: &K) -> Option<PinGuard> {
        let shard = self.shard(key);
        let resident = self.resident(shard, key, true);
        self.count(shard, &resident);
        Self::settle(resident)
    }

    /// Counts a read's lookup: a hit, a wait for a load, or a miss.
    fn count(&self, shard: &Shard<K>, resident: &Resident) {
        match resident {
            Resident::Hit(_) => self.hits.increment(),
            Resident::Wait(_) => Counters::add(&shard.counters.load_waits, 1),
            Resident::Absent => Counters::add(&shard.counters.misses, 1),
        }
    }

    /// Puts a page built elsewhere into the cache and returns it pinned. If the key is
    /// resident the newer of the two versions (by LSN) stays, in the same entry, so pins
    /// on it see the change; if a load is in flight this page resolves it.
    ///
    /// Panics if the key is resident with a page of another size (page sizes are fixed by
    /// sixfold's page format; the entry's byte cost was charged when it was created).
    pub fn insert(&self, key: &K, page: Page) -> PinGuard {
        self.install(self.shard(key), key, page)
    }

    /// Applies one redo record to a resident page (S9: LSN order; the page becomes dirty),
    /// as a K2 writer: after the page's lock, the shard's write lock is taken and released
    /// once so unpinned readers already in the shard finish first; `edit` runs with no
    /// shard lock held.
    /// A page not resident is left to whoever loads it next: a load reads the page from
    /// its durable source, which must then include the record.
    pub fn apply(
        &self,
        key: &K,
        new_lsn: u64,
        edit: impl FnOnce(&mut [u8]),
    ) -> Result<(), ApplyError> {
        let shard = self.shard(key);
        let barrier = || drop(write(&shard.state));
        self.pin_resident(key)
            .ok_or(ApplyError::NotCached)?
            .apply(barrier, new_lsn, edit)
    }

    /// Copies a dirty resident page for the flusher; `None` if absent or clean.
    pub fn snapshot_for_flush(&self, key: &K) -> Option<FlushSnapshot> {
        self.pin_resident(key)?.snapshot_for_flush()
    }

    /// After the flusher wrote the snapshot taken at `flushed_lsn`: clears the dirty flag
    /// only if the page has not changed since. Returns whether it cleared.
    pub fn mark_clean(&self, key: &K, flushed_lsn: u64) -> bool {
        self.pin_resident(key)
            .is_some_and(|guard| guard.mark_clean(flushed_lsn))
    }

    /// Up to `limit_pages` dirty pages with their LSNs, for the flusher.
    pub fn dirty_pages(&self, limit_pages: usize) -> Vec<DirtyPage<K>> {
        let mut dirty = Vec::new();
        for shard in self.shards.iter() {
            read(&shard.state).collect_dirty(limit_pages, &mut dirty);
        }
        dirty
    }

    /// Drops an unpinned page, whatever the predicate says (e.g. its segment is gone);
    /// returns its metadata, or `None` if it was not resident.
    pub fn remove(&self, key: &K) -> Result<Option<EntryMeta>, RemoveError> {
        write(&self.shard(key).state).remove(key)
    }

    /// Whether the page is resident. No pin, no hit counted, no access counted for eviction.
    pub fn contains(&self, key: &K) -> bool {
        self.peek(key).is_some()
    }

    /// The metadata of a resident page. No pin, no hit counted, no access counted for eviction.
    pub fn peek(&self, key: &K) -> Option<EntryMeta> {
        read(&self.shard(key).state).meta(key)
    }

    /// Evicts down to capacity where pins and the predicate allow. Eviction otherwise runs
    /// only when a page is installed; call this after unpinning a lot or after the VDL
    /// advanced (R6) to give back memory held over capacity.
    pub fn trim(&self) {
        for shard in self.shards.iter() {
            let evicted = write(&shard.state).evict_to_fit(&self.predicate);
            Counters::add(&shard.counters.evictions, evicted);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            hits: self.hits.get(),
            misses: 0,
            load_waits: 0,
            load_failures: 0,
            evictions: 0,
            entries: 0,
            bytes_used: 0,
            capacity_bytes: self.capacity_bytes,
        };
        for shard in self.shards.iter() {
            let counters = &shard.counters;
            stats.misses += Counters::get(&counters.misses);
            stats.load_waits += Counters::get(&counters.load_waits);
            stats.load_failures += Counters::get(&counters.load_failures);
            stats.evictions += Counters::get(&counters.evictions);
            let state = read(&shard.state);
            stats.bytes_used += state.bytes_used();
            stats.entries += state.resident_entries() as u64;
        }
        stats
    }

    fn shard(&self, key: &K) -> &Shard<K> {
        // High bits: the maps index buckets with the low ones.
        let hash = self.hasher.hash_one(key);
        &self.shards[((hash >> 32) % self.shards.len() as u64) as usize]
    }

    /// The unpinned hit path of `with_page…`: `read` run under the shard's read lock (K1,
    /// K2), counted as a hit; `None` (and `read` not run) to fall back.
    #[inline]
    fn read_unpinned<R, F>(&self, shard: &Shard<K>, key: &K, read: &mut Option<F>) -> Option<R>
    where
        F: FnOnce(&PageRead<'_>) -> R,
    {
        let result = crate::sync::read(&shard.state).read_ready(key, read)?;
        self.hits.increment();
        Some(result)
    }

    /// A pin for an internal access (redo, flusher): not counted as an access for eviction, no counters.
    fn pin_resident(&self, key: &K) -> Option<PinGuard> {
        let shard = self.shard(key);
        Self::settle(self.resident(shard, key, false))
    }

    /// A pin on a resident entry (read lock), else a place in its load's queue or nothing
    /// (write lock: joining a load changes its waiter count).
    fn resident(&self, shard: &Shard<K>, key: &K, referenced: bool) -> Resident {
        if let Some(guard) = read(&shard.state).pin_ready(key, referenced) {
            return Resident::Hit(guard);
        }
        write(&shard.state).resident(key, referenced)
    }

    fn settle(resident: Resident) -> Option<PinGuard> {
        match resident {
            Resident::Hit(guard) => Some(guard),
            Resident::Wait(cell) => cell.wait(),
            Resident::Absent => None,
        }
    }

    fn run_loader<E>(
        &self,
        shard: &Shard<K>,
        key: &K,
        load_id: u64,
        loader: impl FnOnce() -> Result<Page, E>,
    ) -> Result<PinGuard, E> {
        let mut abandon = AbandonLoad {
            shard,
            key,
            load_id,
            armed: true,
        };
        let page = loader()?; // The error path drops `abandon`, which wakes the waiters.
        abandon.armed = false;
        Ok(self.install(shard, key, page))
    }

    /// Builds the entry (allocation and copy of the page) before taking the shard lock.
    fn install(&self, shard: &Shard<K>, key: &K, page: Page) -> PinGuard {
        let entry = Entry::new(page);
        let (installed, evicted) = write(&shard.state).install(key, entry, &self.predicate);
        Counters::add(&shard.counters.evictions, evicted);
        match installed {
            Installed::New { guard, resolved } => {
                if let Some((cell, entry)) = resolved {
                    cell.finish(Some(entry));
                }
                guard
            }
            Installed::Existing(guard, newer) => {
                guard.upsert(|| drop(write(&shard.state)), newer);
                guard
            }
        }
    }
}

/// Ends a load that did not install a page (the loader returned an error or panicked), so
/// its waiters retry instead of waiting forever.
struct AbandonLoad<'a, K: Hash + Eq + Clone> {
    shard: &'a Shard<K>,
    key: &'a K,
    load_id: u64,
    armed: bool,
}

impl<K: Hash + Eq + Clone> Drop for AbandonLoad<'_, K> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        Counters::add(&self.shard.counters.load_failures, 1);
        let waiters = write(&self.shard.state).abandon_load(self.key, self.load_id);
        if let Some(cell) = waiters {
            cell.finish(None);
        }
    }
}
