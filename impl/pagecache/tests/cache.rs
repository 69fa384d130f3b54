//! Behaviour of the page cache under std threads. The interleaving-level guarantees are in
//! `tests/loom.rs`; the random-operation comparison with a model is in `tests/model.rs`.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use sixfold_pagecache::{
    ApplyError, ConfigError, DirtyPage, ENTRY_OVERHEAD_BYTES, EntryMeta, PAGE_BYTES_MAX, Page,
    PageCache, RemoveError, SHARDS_MAX,
};

const PAGE_BYTES: usize = 64;
const PAGE_COST_BYTES: u64 = PAGE_BYTES as u64 + ENTRY_OVERHEAD_BYTES;

fn page_at(lsn: u64) -> Box<[u8]> {
    vec![lsn as u8; PAGE_BYTES].into_boxed_slice()
}

fn clean_only(meta: &EntryMeta) -> bool {
    !meta.dirty
}

/// One shard so capacity arithmetic in the tests is exact.
fn storage_node_cache(pages: u64) -> PageCache<u64, fn(&EntryMeta) -> bool> {
    PageCache::new(
        pages * PAGE_COST_BYTES,
        1,
        clean_only as fn(&EntryMeta) -> bool,
    )
    .unwrap()
}

fn load_clean(lsn: u64) -> impl FnOnce() -> Result<Page, String> {
    move || Ok(Page::clean(lsn, page_at(lsn)))
}

/// Polls until `condition` holds; panics after 10 s so a broken test cannot hang CI.
fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached in 10 s");
}

#[test]
fn configuration_out_of_range_is_a_typed_error() {
    assert_eq!(
        PageCache::<u64, _>::new(1 << 20, 0, clean_only).err(),
        Some(ConfigError::ShardCount {
            shards: 0,
            max: SHARDS_MAX
        })
    );
    assert_eq!(
        PageCache::<u64, _>::new(1 << 20, SHARDS_MAX + 1, clean_only).err(),
        Some(ConfigError::ShardCount {
            shards: SHARDS_MAX + 1,
            max: SHARDS_MAX
        })
    );
    assert_eq!(
        PageCache::<u64, _>::new(3, 4, clean_only).err(),
        Some(ConfigError::CapacityBelowShardCount {
            capacity_bytes: 3,
            shards: 4
        })
    );
}

#[test]
fn a_hit_returns_the_loaded_page_without_running_the_loader() {
    let cache = storage_node_cache(4);
    let first = cache.get_or_load(&7, load_clean(3)).unwrap();
    assert_eq!(
        (first.read().lsn(), first.read().bytes()),
        (3, &page_at(3)[..])
    );
    drop(first);
    let second = cache
        .get_or_load(&7, || -> Result<Page, String> {
            panic!("loader ran on a hit")
        })
        .unwrap();
    assert_eq!(second.lsn(), 3);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert_eq!(stats.bytes_used, PAGE_COST_BYTES);
}

#[test]
fn threads_missing_the_same_page_share_one_load() {
    let cache = Arc::new(storage_node_cache(4));
    let builds = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..4u64)
        .map(|thread_index| {
            let (cache, builds, start) = (cache.clone(), builds.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let guard = cache
                    .get_or_load(&1, || {
                        builds.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(50));
                        Ok::<_, String>(Page::clean(10 + thread_index, page_at(10 + thread_index)))
                    })
                    .unwrap();
                guard.lsn()
            })
        })
        .collect();
    let lsns: Vec<u64> = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    assert!(
        lsns.iter().all(|&lsn| lsn == lsns[0]),
        "readers saw different pages: {lsns:?}"
    );
    let stats = cache.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.load_waits, 3);
}

#[test]
fn a_failed_load_returns_its_error_and_caches_nothing() {
    let cache = storage_node_cache(4);
    let error = cache
        .get_or_load(&1, || Err::<Page, _>("disk read failed"))
        .unwrap_err();
    assert_eq!(error, "disk read failed");
    assert!(!cache.contains(&1));
    assert_eq!(cache.stats().load_failures, 1);
    assert_eq!(cache.get_or_load(&1, load_clean(2)).unwrap().lsn(), 2);
}

#[test]
fn a_panicking_loader_wakes_its_waiters_who_then_load() {
    let cache = Arc::new(storage_node_cache(4));
    let (release_panic, panic_released) = mpsc::channel::<()>();
    let panicking = {
        let cache = cache.clone();
        thread::spawn(move || {
            let _ = cache.get_or_load(&1, || -> Result<Page, String> {
                panic_released.recv().unwrap();
                panic!("loader panicked on purpose");
            });
        })
    };
    wait_until(|| cache.stats().misses == 1);
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache
                .get_or_load(&1, load_clean(4))
                .map(|guard| guard.lsn())
        })
    };
    wait_until(|| cache.stats().load_waits == 1);
    release_panic.send(()).unwrap();
    assert!(panicking.join().is_err());
    assert_eq!(waiter.join().unwrap(), Ok(4));
    assert_eq!(cache.stats().load_failures, 1);
}

#[test]
fn an_insert_resolves_a_load_in_flight_and_the_newer_version_wins() {
    let cache = Arc::new(storage_node_cache(4));
    let (release_load, load_released) = mpsc::channel::<()>();
    let loader = {
        let cache = cache.clone();
        thread::spawn(move || {
            let guard = cache
                .get_or_load(&1, || {
                    load_released.recv().unwrap();
                    Ok::<_, String>(Page::clean(5, page_at(5)))
                })
                .unwrap();
            let read = guard.read();
            (read.lsn(), read.bytes().to_vec())
        })
    };
    wait_until(|| cache.stats().misses == 1);
    assert_eq!(cache.insert(&1, Page::dirty(9, page_at(9))).lsn(), 9);
    release_load.send(()).unwrap();
    assert_eq!(loader.join().unwrap(), (9, page_at(9).to_vec()));
    let meta = cache.peek(&1).unwrap();
    assert_eq!((meta.lsn, meta.dirty), (9, true));
}

#[test]
fn insert_updates_a_resident_page_in_place_only_when_newer() {
    let cache = storage_node_cache(4);
    let pinned = cache.insert(&1, Page::clean(5, page_at(5)));
    drop(cache.insert(&1, Page::dirty(8, page_at(8))));
    assert_eq!(
        pinned.read().bytes(),
        &page_at(8)[..],
        "pin does not see the newer version"
    );
    drop(cache.insert(&1, Page::clean(6, page_at(6))));
    assert_eq!(
        (pinned.lsn(), pinned.is_dirty()),
        (8, true),
        "older version replaced newer"
    );
    assert_eq!(cache.stats().entries, 1);
}

#[test]
fn redo_is_applied_in_lsn_order_only() {
    // S9: a record at or below the page's LSN is refused and the page is unchanged.
    let cache = storage_node_cache(4);
    drop(cache.insert(&1, Page::clean(5, page_at(5))));
    assert_eq!(
        cache.apply(&1, 5, |bytes| bytes.fill(0)),
        Err(ApplyError::LsnNotAfter {
            current_lsn: 5,
            new_lsn: 5
        })
    );
    assert_eq!(
        cache.apply(&1, 4, |bytes| bytes.fill(0)),
        Err(ApplyError::LsnNotAfter {
            current_lsn: 5,
            new_lsn: 4
        })
    );
    assert_eq!(cache.get(&1).unwrap().read().bytes(), &page_at(5)[..]);
    assert_eq!(
        cache.apply(&2, 6, |bytes| bytes.fill(6)),
        Err(ApplyError::NotCached)
    );
    cache.apply(&1, 6, |bytes| bytes.fill(6)).unwrap();
    let meta = cache.peek(&1).unwrap();
    assert_eq!((meta.lsn, meta.dirty), (6, true));
}

#[test]
fn the_flusher_cannot_clean_a_page_changed_after_its_copy() {
    let cache = storage_node_cache(4);
    drop(cache.insert(&1, Page::dirty(5, page_at(5))));
    let snapshot = cache.snapshot_for_flush(&1).unwrap();
    assert_eq!((snapshot.lsn, &snapshot.bytes[..]), (5, &page_at(5)[..]));
    cache.apply(&1, 6, |bytes| bytes.fill(6)).unwrap();
    assert!(!cache.mark_clean(&1, snapshot.lsn));
    assert_eq!(cache.dirty_pages(10), vec![DirtyPage { key: 1, lsn: 6 }]);
    let snapshot = cache.snapshot_for_flush(&1).unwrap();
    assert!(cache.mark_clean(&1, snapshot.lsn));
    assert_eq!(cache.snapshot_for_flush(&1), None);
    assert!(cache.dirty_pages(10).is_empty());
}

#[test]
fn dirty_pages_reports_at_most_the_limit() {
    let cache = storage_node_cache(8);
    for key in 0..6 {
        drop(cache.insert(&key, Page::dirty(key + 1, page_at(key + 1))));
    }
    drop(cache.insert(&6, Page::clean(1, page_at(1))));
    assert_eq!(cache.dirty_pages(4).len(), 4);
    let mut all = cache.dirty_pages(100);
    all.sort_by_key(|page| page.key);
    let expected: Vec<_> = (0..6).map(|key| DirtyPage { key, lsn: key + 1 }).collect();
    assert_eq!(all, expected);
}

#[test]
fn a_page_hit_while_probationary_moves_to_the_main_queue() {
    let cache = storage_node_cache(2);
    drop(cache.insert(&1, Page::clean(1, page_at(1))));
    drop(cache.insert(&2, Page::clean(1, page_at(1))));
    drop(cache.get(&1));
    drop(cache.insert(&3, Page::clean(1, page_at(1))));
    assert!(cache.contains(&1) && !cache.contains(&2) && cache.contains(&3));
    assert_eq!(cache.stats().evictions, 1);
}

#[test]
fn a_scan_passes_through_without_evicting_the_pages_in_use() {
    // Eight pages in use (hit once each), then a scan of a hundred pages read once: the
    // scan goes through the probationary queue, the pages in use stay in the main one.
    let cache = storage_node_cache(10);
    for key in 0..8 {
        drop(cache.insert(&key, Page::clean(1, page_at(1))));
        drop(cache.get(&key));
    }
    for key in 100..200 {
        drop(cache.insert(&key, Page::clean(1, page_at(1))));
    }
    let kept: Vec<u64> = (0..8).filter(|key| cache.contains(key)).collect();
    assert_eq!(
        kept,
        (0..8).collect::<Vec<_>>(),
        "the scan evicted pages in use"
    );
    assert!(cache.stats().bytes_used <= cache.stats().capacity_bytes);
}

#[test]
fn a_page_missed_again_soon_after_eviction_returns_to_the_main_queue() {
    // Pages 50–52 fill the main queue (new pages go there while it has room). Page 1 is
    // then evicted unhit from the probationary queue; the ghost remembers it, so when it
    // is loaded again it goes to the main queue and outlives pages read once after it.
    let cache = storage_node_cache(4);
    for key in [50, 51, 52, 1, 2] {
        drop(cache.insert(&key, Page::clean(1, page_at(1))));
    }
    assert!(!cache.contains(&1));
    drop(cache.get_or_load(&1, load_clean(1)).unwrap());
    for key in 10..20 {
        drop(cache.insert(&key, Page::clean(1, page_at(1))));
    }
    assert!(
        cache.contains(&1),
        "a page remembered by the ghost was evicted"
    );
    assert!(!cache.contains(&2), "a page read once outlived the scan");
}

#[test]
fn removed_pages_leave_the_byte_accounting_and_eviction_exact() {
    // `remove` leaves a stale queue slot behind; many remove and reinstall cycles must
    // neither confuse eviction nor the counts.
    let cache = storage_node_cache(4);
    for round in 0..500u64 {
        let key = round % 6;
        drop(cache.insert(&key, Page::clean(round + 1, page_at(1))));
        if round % 3 == 0 {
            cache.remove(&key).unwrap();
        }
        let resident: u64 = (0..6)
            .filter_map(|key| cache.peek(&key))
            .map(|meta| meta.cost_bytes)
            .sum();
        let stats = cache.stats();
        assert_eq!(stats.bytes_used, resident);
        assert!(stats.bytes_used <= stats.capacity_bytes);
    }
}

#[test]
fn pinned_pages_hold_the_cache_over_capacity_until_trim() {
    let cache = storage_node_cache(2);
    let pins: Vec<_> = (0..3)
        .map(|key| cache.insert(&key, Page::clean(1, page_at(1))))
        .collect();
    assert_eq!(cache.stats().bytes_used, 3 * PAGE_COST_BYTES);
    assert_eq!(cache.stats().evictions, 0);
    cache.trim();
    assert_eq!(cache.stats().entries, 3, "trim evicted a pinned page");
    drop(pins);
    cache.trim();
    let stats = cache.stats();
    assert!(stats.bytes_used <= stats.capacity_bytes);
    assert_eq!(stats.entries, 2);
}

#[test]
fn the_storage_node_predicate_keeps_dirty_pages() {
    let cache = storage_node_cache(2);
    for key in 0..3 {
        drop(cache.insert(&key, Page::dirty(1, page_at(1))));
    }
    assert_eq!(cache.stats().entries, 3, "a dirty page was evicted");
    assert!(cache.mark_clean(&1, 1));
    cache.trim();
    assert!(cache.contains(&0) && !cache.contains(&1) && cache.contains(&2));
}

#[test]
fn the_writer_predicate_evicts_only_at_or_below_vdl() {
    // R6: the writer evicts a page only when its LSN ≤ VDL.
    let vdl = Arc::new(AtomicU64::new(10));
    let predicate = {
        let vdl = vdl.clone();
        move |meta: &EntryMeta| meta.lsn <= vdl.load(Ordering::Acquire)
    };
    let cache = PageCache::new(2 * PAGE_COST_BYTES, 1, predicate).unwrap();
    for (key, lsn) in [(1u64, 11u64), (2, 12), (3, 13)] {
        drop(cache.insert(&key, Page::clean(lsn, page_at(lsn))));
    }
    assert_eq!(cache.stats().entries, 3, "a page above VDL was evicted");
    vdl.store(12, Ordering::Release);
    cache.trim();
    // Page 1 went to the main queue (it had room), pages 2 and 3 to the probationary one,
    // which eviction takes first: page 2 (LSN 12 ≤ VDL) goes, page 3 (LSN 13) stays.
    assert!(cache.contains(&1) && !cache.contains(&2) && cache.contains(&3));
}

#[test]
fn remove_refuses_pinned_pages() {
    let cache = storage_node_cache(4);
    let pin = cache.insert(&1, Page::dirty(3, page_at(3)));
    assert_eq!(cache.remove(&1), Err(RemoveError::Pinned));
    drop(pin);
    let removed = cache.remove(&1).unwrap().unwrap();
    assert_eq!(
        (removed.lsn, removed.dirty, removed.cost_bytes),
        (3, true, PAGE_COST_BYTES)
    );
    assert_eq!(cache.remove(&1), Ok(None));
    assert_eq!(cache.stats().bytes_used, 0);
}

#[test]
fn remove_refuses_a_page_being_loaded() {
    let cache = Arc::new(storage_node_cache(4));
    let (release_load, load_released) = mpsc::channel::<()>();
    let loader = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache
                .get_or_load(&1, || {
                    load_released.recv().unwrap();
                    Ok::<_, String>(Page::clean(1, page_at(1)))
                })
                .map(|guard| guard.lsn())
        })
    };
    wait_until(|| cache.stats().misses == 1);
    assert_eq!(cache.remove(&1), Err(RemoveError::Loading));
    release_load.send(()).unwrap();
    assert_eq!(loader.join().unwrap(), Ok(1));
}

#[test]
fn concurrent_mixed_operations_keep_the_byte_accounting_exact() {
    let cache = Arc::new(PageCache::new(16 * PAGE_COST_BYTES, 4, clean_only).unwrap());
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mut state = worker.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for step in 0..20_000u64 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = state % 64;
                    match step % 5 {
                        0 => drop(cache.insert(&key, Page::dirty(step + 1, page_at(step + 1)))),
                        1 => {
                            let _ = cache.apply(&key, step + 1, |bytes| bytes.fill(1));
                        }
                        2 => {
                            if let Some(snapshot) = cache.snapshot_for_flush(&key) {
                                cache.mark_clean(&key, snapshot.lsn);
                            }
                        }
                        _ => {
                            let guard = cache.get_or_load(&key, load_clean(1)).unwrap();
                            let read = guard.read();
                            assert_eq!(read.len(), PAGE_BYTES);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let resident_bytes: u64 = (0..64)
        .filter_map(|key| cache.peek(&key))
        .map(|m| m.cost_bytes)
        .sum();
    let stats = cache.stats();
    assert_eq!(stats.bytes_used, resident_bytes);
    cache.trim();
    let dirty_bytes: u64 = (0..64)
        .filter_map(|key| cache.peek(&key))
        .filter(|m| m.dirty)
        .map(|m| m.cost_bytes)
        .sum();
    // After trim with no pins, a shard above its share holds only dirty (refused) pages.
    assert!(cache.stats().bytes_used <= stats.capacity_bytes + dirty_bytes);
}

/// K1: `with_page…` on a hit runs the read on the page at its LSN and counts a hit; on a
/// miss `with_page_or_load` loads and `with_page` returns `None`.
#[test]
fn an_unpinned_read_sees_the_page_and_counts_like_a_pinned_one() {
    let cache = storage_node_cache(4);
    assert_eq!(cache.with_page(&1, |read| read.lsn()), None);
    let loaded = cache.with_page_or_load(&1, load_clean(3), |read| (read.lsn(), read[0]));
    assert_eq!(loaded, Ok((3, 3)));
    cache.apply(&1, 4, |bytes| bytes.fill(4)).unwrap();
    let read = cache.with_page(&1, |read| (read.lsn(), read.bytes().to_vec()));
    assert_eq!(read, Some((4, vec![4; PAGE_BYTES])));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
    assert_eq!(cache.peek(&1).map(|meta| meta.lsn), Some(4));
}

/// K1, K2: an unpinned read of a page redo is writing falls back to a pin without keeping
/// the shard's lock. Redo here installs another page of the same shard while it holds
/// page 1's write lock; had the read waited for page 1's lock under the shard's read lock,
/// that install would wait for the read and the read for the redo: a deadlock (checked by
/// hand on the K1 design: with a blocking `read()` in place of `try_read` the watchdog
/// fires).
#[test]
fn an_unpinned_read_never_waits_for_redo_under_the_shard_lock() {
    let cache = Arc::new(storage_node_cache(4));
    drop(cache.insert(&1, Page::clean(1, page_at(1))));
    let (in_edit_tx, in_edit_rx) = mpsc::channel();
    let redo = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            cache
                .apply(&1, 2, |bytes| {
                    in_edit_tx.send(()).unwrap();
                    // Give the reader time to reach page 1's lock.
                    thread::sleep(Duration::from_millis(100));
                    drop(cache.insert(&2, Page::clean(1, page_at(1))));
                    bytes.fill(2);
                })
                .unwrap();
        })
    };
    in_edit_rx.recv().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let reader = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let read = cache.with_page(&1, |read| (read.lsn(), read[0]));
            done_tx.send(read).unwrap();
        })
    };
    let read = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("deadlock: the read waited for redo while holding the shard lock");
    assert_eq!(read, Some((2, 2)), "the read ran during the redo edit");
    redo.join().unwrap();
    reader.join().unwrap();
    assert!(cache.contains(&2));
}

/// K2: redo waits for an unpinned read already in the shard (the barrier). The read
/// holds the shard's read lock for 200 ms; redo starting meanwhile must not edit the page
/// before the read ends, and the read sees the page whole at LSN 1. Fails without the
/// barrier (checked by hand: the edit then runs during the read).
#[test]
fn redo_waits_for_an_unpinned_read_in_progress() {
    let cache = Arc::new(storage_node_cache(4));
    drop(cache.insert(&1, Page::clean(1, page_at(1))));
    let read_done = Arc::new(AtomicBool::new(false));
    let (in_read_tx, in_read_rx) = mpsc::channel();
    let reader = {
        let (cache, read_done) = (Arc::clone(&cache), Arc::clone(&read_done));
        thread::spawn(move || {
            cache.with_page(&1, |read| {
                in_read_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(200));
                let seen = (read.lsn(), read.bytes().to_vec());
                read_done.store(true, Ordering::SeqCst);
                seen
            })
        })
    };
    in_read_rx.recv().unwrap();
    cache
        .apply(&1, 2, |bytes| {
            assert!(
                read_done.load(Ordering::SeqCst),
                "redo edited during a read"
            );
            bytes.fill(2);
        })
        .unwrap();
    let (lsn, bytes) = reader.join().unwrap().expect("page resident");
    assert_eq!((lsn, bytes), (1, page_at(1).to_vec()));
    assert_eq!(
        cache.with_page(&1, |read| (read.lsn(), read[0])),
        Some((2, 2))
    );
}

/// Pages are stored in a buffer of their size class (a power of two): a page of another
/// length reads back at its own length, and its cost is its buffer's.
#[test]
fn a_page_of_any_length_up_to_the_maximum_reads_back_whole() {
    let cache = PageCache::new(1 << 20, 1, clean_only).unwrap();
    for (key, len) in [(1u64, 0usize), (2, 5), (3, 100), (4, PAGE_BYTES_MAX)] {
        let bytes: Box<[u8]> = (0..len).map(|i| i as u8).collect();
        drop(cache.insert(&key, Page::clean(1, bytes.clone())));
        let read = cache.with_page(&key, |read| read.bytes().to_vec());
        assert_eq!(read.as_deref(), Some(&bytes[..]));
        let class = len.next_power_of_two().max(8) as u64;
        let cost = cache.peek(&key).map(|meta| meta.cost_bytes);
        assert_eq!(cost, Some(class + ENTRY_OVERHEAD_BYTES));
        cache
            .apply(&key, 2, |page| assert_eq!(page.len(), len))
            .unwrap();
    }
}

/// A page above `PAGE_BYTES_MAX` is a bug of ours (page sizes are fixed by the page
/// format), refused loudly.
#[test]
#[should_panic(expected = "above PAGE_BYTES_MAX")]
fn a_page_above_the_maximum_panics() {
    let cache = PageCache::new(1 << 20, 1, clean_only).unwrap();
    let bytes = vec![0u8; PAGE_BYTES_MAX + 1].into_boxed_slice();
    drop(cache.insert(&1, Page::clean(1, bytes)));
}
