//! Loom models of the page cache. Each runs a small scenario under every interleaving (up
//! to the preemption bound) of the real code, whose primitives come from loom under
//! `cfg(loom)`. Run:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p sixfold-pagecache --release --test loom
//! RUSTFLAGS="--cfg loom --cfg loom_mutant" CARGO_TARGET_DIR=target/loom-mutant \
//!     cargo test -p sixfold-pagecache --release --test loom
//! ```
//!
//! The second build compiles the cache's mutant switches (`sixfold_pagecache::mutant`):
//! each `mutant_*` test turns one on — a queue's eviction ignoring pins or the predicate,
//! an unpinned read ignoring redo's mark, redo skipping the shard barrier (K2) — and passes
//! only if loom finds the interleaving that breaks the model. Only those tests
//! run there.
#![cfg(loom)]
// Under `loom_mutant` only the scenarios the mutant breaks run.
#![cfg_attr(loom_mutant, allow(dead_code))]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::thread;
#[cfg(loom_mutant)]
use sixfold_pagecache::mutant::{self, Mutant};
use sixfold_pagecache::{ENTRY_OVERHEAD_BYTES, EntryMeta, Page, PageCache};

/// None: exhaustive. Every model here finishes exhaustively in seconds (see
/// docs/pagecache.md for the counts), so no interleaving is skipped.
const PREEMPTION_BOUND: Option<usize> = None;

/// Tiny pages keep the models fast; what matters is the synchronisation, not the size.
/// Eight bytes: the smallest buffer class, so a page costs exactly `PAGE_COST_BYTES`.
const PAGE_BYTES: usize = 8;
const PAGE_COST_BYTES: u64 = PAGE_BYTES as u64 + ENTRY_OVERHEAD_BYTES;

/// Explores the scenario's interleavings with at most `PREEMPTION_BOUND` preemptions per
/// execution, and returns how many executions loom ran (printed, and checked to be more
/// than one so a model that stopped exploring fails).
fn model(scenario: fn()) -> usize {
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = PREEMPTION_BOUND;
    let counter = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        scenario();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    println!("explored {executions} executions");
    assert!(executions > 1, "loom explored a single execution");
    executions
}

/// A page whose every byte is its LSN, so a torn or mismatched read shows.
fn page_at(lsn: u64, dirty: bool) -> Page {
    let bytes = vec![lsn as u8; PAGE_BYTES].into_boxed_slice();
    Page { lsn, bytes, dirty }
}

fn storage_node_cache(pages: u64) -> PageCache<u64, impl Fn(&EntryMeta) -> bool> {
    PageCache::new(pages * PAGE_COST_BYTES, 1, |meta: &EntryMeta| !meta.dirty).unwrap()
}

/// Single flight: two threads miss page 1 at once. Each loader would build a different
/// version, so both readers seeing the same LSN and bytes, and one build, show one load.
fn two_threads_load_the_same_missing_page() {
    let cache = Arc::new(storage_node_cache(4));
    let builds = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = [10u64, 20]
        .into_iter()
        .map(|version| {
            let cache = Arc::clone(&cache);
            let builds = Arc::clone(&builds);
            thread::spawn(move || {
                let guard = cache
                    .get_or_load(&1, || {
                        builds.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(page_at(version, false))
                    })
                    .unwrap();
                let read = guard.read();
                (read.lsn(), read.bytes().to_vec())
            })
        })
        .collect();
    let seen: Vec<_> = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    assert_eq!(builds.load(Ordering::SeqCst), 1, "page built twice");
    assert_eq!(seen[0], seen[1], "readers saw different pages");
    assert_eq!(seen[0].1, vec![seen[0].0 as u8; PAGE_BYTES]);
}

/// Single flight when the load fails: thread A's loader fails, thread B's succeeds. A
/// waiter on A's failed load must wake and retry (loom reports a waiter left asleep as a
/// deadlock), so B always gets the page, and a page is built at most once per thread.
fn a_failed_load_wakes_its_waiters() {
    let cache = Arc::new(storage_node_cache(4));
    let builds = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = [false, true]
        .into_iter()
        .map(|succeeds| {
            let cache = Arc::clone(&cache);
            let builds = Arc::clone(&builds);
            thread::spawn(move || {
                let result = cache.get_or_load(&1, || {
                    builds.fetch_add(1, Ordering::SeqCst);
                    if succeeds {
                        Ok(page_at(7, false))
                    } else {
                        Err("disk read failed")
                    }
                });
                result.map(|guard| guard.read().lsn())
            })
        })
        .collect();
    let results: Vec<_> = loaders
        .into_iter()
        .map(|loader| loader.join().unwrap())
        .collect();
    assert_eq!(
        results[1],
        Ok(7),
        "the succeeding loader's caller did not get the page"
    );
    assert!(matches!(results[0], Ok(7) | Err("disk read failed")));
    assert!(builds.load(Ordering::SeqCst) <= 2);
    assert_eq!(cache.peek(&1).map(|meta| meta.lsn), Some(7));
}

/// A pin against eviction: the cache holds one page; thread A loads page 1 and holds the
/// pin while thread B installs page 2, which needs room. While A holds its pin, page 1
/// must stay resident (an evicted pinned page would be reloaded beside A's copy and edits
/// to one would be lost to the other) and A's bytes must stay intact.
fn eviction_races_a_pin() {
    let cache = Arc::new(storage_node_cache(1));
    let pinner = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let guard = cache
                .get_or_load(&1, || Ok::<_, ()>(page_at(1, false)))
                .unwrap();
            assert!(cache.contains(&1), "pinned page evicted");
            assert_eq!(guard.read().bytes(), &[1u8; PAGE_BYTES][..]);
        })
    };
    let inserter = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || drop(cache.insert(&2, page_at(2, false))))
    };
    pinner.join().unwrap();
    inserter.join().unwrap();
}

/// Redo against a reader: the writer applies two records to page 1 while a reader reads
/// it. Every read sees bytes matching its LSN: one version, never a mix.
fn redo_applied_while_a_reader_reads() {
    let cache = Arc::new(storage_node_cache(4));
    drop(cache.insert(&1, page_at(1, false)));
    let writer = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            for lsn in [2u64, 3] {
                cache.apply(&1, lsn, |bytes| bytes.fill(lsn as u8)).unwrap();
            }
        })
    };
    let reader = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let guard = cache.get(&1).expect("dirty page evicted");
            let read = guard.read();
            assert_eq!(
                read.bytes(),
                &[read.lsn() as u8; PAGE_BYTES][..],
                "torn read"
            );
        })
    };
    writer.join().unwrap();
    reader.join().unwrap();
    assert_eq!(cache.peek(&1).map(|meta| meta.lsn), Some(3));
}

/// K1, K2: the unpinned read path against redo. The writer applies two records to page 1
/// while a reader reads it through `with_page`, which takes no pin and no page lock: every
/// read sees bytes matching its LSN, whether it took the unpinned path or fell back to a
/// pin (the writer had marked the page), and loom's cell finds no read overlapping a write.
fn redo_applied_while_an_unpinned_reader_reads() {
    let cache = Arc::new(storage_node_cache(4));
    drop(cache.insert(&1, page_at(1, false)));
    let writer = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            for lsn in [2u64, 3] {
                cache.apply(&1, lsn, |bytes| bytes.fill(lsn as u8)).unwrap();
            }
        })
    };
    let reader = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let (lsn, bytes) = cache
                .with_page(&1, |read| (read.lsn(), read.bytes().to_vec()))
                .expect("dirty page evicted");
            assert_eq!(bytes, vec![lsn as u8; PAGE_BYTES], "torn read");
        })
    };
    writer.join().unwrap();
    reader.join().unwrap();
    assert_eq!(cache.peek(&1).map(|meta| meta.lsn), Some(3));
}

/// K2: an install over a resident page (an upsert: the newer version's bytes copied into
/// the entry) against the unpinned read path. The reader sees LSN 1 or 2, bytes matching.
fn install_over_a_page_while_an_unpinned_reader_reads() {
    let cache = Arc::new(storage_node_cache(4));
    drop(cache.insert(&1, page_at(1, false)));
    let installer = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || drop(cache.insert(&1, page_at(2, false))))
    };
    let reader = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let (lsn, bytes) = cache
                .with_page(&1, |read| (read.lsn(), read.bytes().to_vec()))
                .expect("pinned or fresh page evicted");
            assert_eq!(bytes, vec![lsn as u8; PAGE_BYTES], "torn read");
        })
    };
    installer.join().unwrap();
    reader.join().unwrap();
    assert_eq!(cache.peek(&1).map(|meta| meta.lsn), Some(2));
}

/// Flusher against writer: the flusher copies dirty page 1 and marks it clean while the
/// writer applies a record. If the record landed after the copy, the page stays dirty
/// (the flushed bytes lack it); the copy itself is one consistent version.
fn flusher_copies_while_a_writer_modifies() {
    let cache = Arc::new(storage_node_cache(4));
    drop(cache.insert(&1, page_at(1, true)));
    let flusher = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let snapshot = cache
                .snapshot_for_flush(&1)
                .expect("dirty page not offered");
            assert_eq!(&snapshot.bytes[..], &[snapshot.lsn as u8; PAGE_BYTES][..]);
            cache.mark_clean(&1, snapshot.lsn);
            snapshot.lsn
        })
    };
    let writer = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || cache.apply(&1, 2, |bytes| bytes.fill(2)).unwrap())
    };
    let flushed_lsn = flusher.join().unwrap();
    writer.join().unwrap();
    let meta = cache.peek(&1).expect("dirty page evicted");
    assert_eq!(meta.lsn, 2);
    assert!(
        meta.dirty || flushed_lsn == 2,
        "redo after the flusher's copy was marked clean"
    );
}

/// R6 eviction predicate: the writer's cache (one page) evicts only pages at or below VDL.
/// Thread A applies redo at LSN 5 to page 1 (VDL 1); thread B advances VDL to 3 and
/// installs page 2, which needs room. If A's redo was applied, page 1 (LSN 5 > VDL) must
/// still be resident: a miss read at VDL would otherwise return a stale page.
fn eviction_predicate_keeps_pages_above_vdl() {
    let vdl = Arc::new(AtomicU64::new(1));
    let cache = {
        let vdl = Arc::clone(&vdl);
        let predicate = move |meta: &EntryMeta| meta.lsn <= vdl.load(Ordering::Acquire);
        Arc::new(PageCache::new(PAGE_COST_BYTES, 1, predicate).unwrap())
    };
    drop(cache.insert(&1, page_at(1, false)));
    let redo = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || cache.apply(&1, 5, |bytes| bytes.fill(5)).is_ok())
    };
    let installer = {
        let cache = Arc::clone(&cache);
        let vdl = Arc::clone(&vdl);
        thread::spawn(move || {
            vdl.store(3, Ordering::Release);
            drop(cache.insert(&2, page_at(2, false)));
        })
    };
    let applied = redo.join().unwrap();
    installer.join().unwrap();
    if applied {
        let meta = cache.peek(&1).expect("page above VDL evicted");
        assert_eq!(meta.lsn, 5, "page above VDL evicted");
    }
}

/// The writer's predicate (R6) over a shared VDL: only pages at or below it may go.
fn writer_cache(
    pages: u64,
    vdl: &Arc<AtomicU64>,
) -> Arc<PageCache<u64, impl Fn(&EntryMeta) -> bool + use<>>> {
    let vdl = Arc::clone(vdl);
    let predicate = move |meta: &EntryMeta| meta.lsn <= vdl.load(Ordering::Acquire);
    Arc::new(PageCache::new(pages * PAGE_COST_BYTES, 1, predicate).unwrap())
}

/// Puts page 1 in the main queue of a two-page cache, with page 3 in the probationary
/// queue and `refused` (which the cache's predicate must refuse), page 2 evicted: page 1
/// enters the main queue while it has room (and is hit, so it would be promoted if not),
/// pages 2 and 3 the probationary queue, and installing page 3 evicts page 2.
fn page_one_in_the_main_queue<P: Fn(&EntryMeta) -> bool>(cache: &PageCache<u64, P>, refused: Page) {
    drop(cache.insert(&1, page_at(1, false)));
    drop(cache.get(&1));
    drop(cache.insert(&2, page_at(1, false)));
    drop(cache.insert(&3, refused));
    assert!(cache.contains(&1) && !cache.contains(&2) && cache.contains(&3));
}

/// A pin against eviction from the main queue: page 1 is in the main queue, page 3
/// (dirty, refused) in the probationary one. Thread A pins page 1; thread B installs
/// page 4, which needs room: the probationary queue holds only vetoes (page 3 dirty, page
/// 4 pinned by its installer), so eviction goes to the main queue, where it must pass
/// over page 1 while A holds its pin.
fn main_queue_eviction_races_a_pin() {
    let cache = Arc::new(storage_node_cache(2));
    page_one_in_the_main_queue(&cache, page_at(3, true));
    let pinner = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            if let Some(guard) = cache.get(&1) {
                assert!(cache.contains(&1), "pinned page evicted");
                assert_eq!(guard.read().bytes(), &[1u8; PAGE_BYTES][..]);
            }
        })
    };
    let inserter = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || drop(cache.insert(&4, page_at(4, false))))
    };
    pinner.join().unwrap();
    inserter.join().unwrap();
}

/// R6 in the main queue: page 1 (LSN 1) is in the main queue of the writer's two-page
/// cache, page 3 (LSN 10, above VDL) in the probationary one. Thread A applies redo at LSN
/// 5 to page 1 (VDL 1); thread B advances VDL to 3 and installs page 4. Eviction reaches
/// the main queue (page 3 refused, page 4 pinned); if A's redo was applied, page 1 (LSN
/// 5 > VDL 3) must still be resident at LSN 5.
fn main_queue_keeps_pages_above_vdl() {
    let vdl = Arc::new(AtomicU64::new(1));
    let cache = writer_cache(2, &vdl);
    page_one_in_the_main_queue(&cache, page_at(10, false));
    let redo = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || cache.apply(&1, 5, |bytes| bytes.fill(5)).is_ok())
    };
    let installer = {
        let cache = Arc::clone(&cache);
        let vdl = Arc::clone(&vdl);
        thread::spawn(move || {
            vdl.store(3, Ordering::Release);
            drop(cache.insert(&4, page_at(1, false)));
        })
    };
    let applied = redo.join().unwrap();
    installer.join().unwrap();
    if applied {
        let meta = cache.peek(&1).expect("page above VDL evicted");
        assert_eq!(meta.lsn, 5, "page above VDL evicted");
    }
}

#[cfg(not(loom_mutant))]
mod models {
    use super::*;

    #[test]
    fn two_threads_missing_the_same_page_build_it_once() {
        model(two_threads_load_the_same_missing_page);
    }

    #[test]
    fn a_failed_load_wakes_its_waiters_to_retry() {
        model(a_failed_load_wakes_its_waiters);
    }

    #[test]
    fn a_pinned_page_is_never_evicted() {
        model(eviction_races_a_pin);
    }

    #[test]
    fn a_reader_sees_the_page_at_exactly_one_lsn() {
        model(redo_applied_while_a_reader_reads);
    }

    #[test]
    fn an_unpinned_reader_sees_the_page_at_exactly_one_lsn() {
        model(redo_applied_while_an_unpinned_reader_reads);
    }

    #[test]
    fn an_unpinned_reader_sees_an_install_over_the_page_whole() {
        model(install_over_a_page_while_an_unpinned_reader_reads);
    }

    #[test]
    fn redo_racing_the_flusher_leaves_the_page_dirty() {
        model(flusher_copies_while_a_writer_modifies);
    }

    #[test]
    fn a_page_above_vdl_is_never_evicted() {
        model(eviction_predicate_keeps_pages_above_vdl);
    }

    #[test]
    fn a_pinned_page_in_the_main_queue_is_never_evicted() {
        model(main_queue_eviction_races_a_pin);
    }

    #[test]
    fn a_page_above_vdl_in_the_main_queue_is_never_evicted() {
        model(main_queue_keeps_pages_above_vdl);
    }
}

/// Built with `--cfg loom_mutant`: each test turns on one mutant, a guard of eviction or of
/// K2 dropped, and passes only if loom finds the interleaving where its model fails.
#[cfg(loom_mutant)]
mod mutants {
    use super::*;

    fn model_with(mutant: Mutant, scenario: fn()) {
        mutant::set(Some(mutant));
        model(scenario);
    }

    #[test]
    #[should_panic(expected = "pinned page evicted")]
    fn mutant_small_queue_ignoring_pins_evicts_a_pinned_page() {
        model_with(Mutant::SmallQueueIgnoresPins, eviction_races_a_pin);
    }

    #[test]
    #[should_panic(expected = "page above VDL evicted")]
    fn mutant_small_queue_ignoring_pins_evicts_above_vdl() {
        model_with(
            Mutant::SmallQueueIgnoresPins,
            eviction_predicate_keeps_pages_above_vdl,
        );
    }

    #[test]
    #[should_panic(expected = "page above VDL evicted")]
    fn mutant_small_queue_ignoring_the_predicate_evicts_above_vdl() {
        model_with(
            Mutant::SmallQueueIgnoresPredicate,
            eviction_predicate_keeps_pages_above_vdl,
        );
    }

    #[test]
    #[should_panic(expected = "pinned page evicted")]
    fn mutant_main_queue_ignoring_pins_evicts_a_pinned_page() {
        model_with(
            Mutant::MainQueueIgnoresPins,
            main_queue_eviction_races_a_pin,
        );
    }

    #[test]
    #[should_panic(expected = "page above VDL evicted")]
    fn mutant_main_queue_ignoring_pins_evicts_above_vdl() {
        model_with(
            Mutant::MainQueueIgnoresPins,
            main_queue_keeps_pages_above_vdl,
        );
    }

    #[test]
    #[should_panic(expected = "page above VDL evicted")]
    fn mutant_main_queue_ignoring_the_predicate_evicts_above_vdl() {
        model_with(
            Mutant::MainQueueIgnoresPredicate,
            main_queue_keeps_pages_above_vdl,
        );
    }

    /// K2: a reader that skips the writer's mark reads while redo writes; loom's cell
    /// reports the unordered accesses.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn mutant_unpinned_read_ignoring_writers_races_redo() {
        model_with(
            Mutant::UnpinnedReadIgnoresWriters,
            redo_applied_while_an_unpinned_reader_reads,
        );
    }

    /// K2: redo that skips the shard barrier writes while a reader that entered before the
    /// mark still reads.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn mutant_redo_skipping_the_barrier_races_an_unpinned_read() {
        model_with(
            Mutant::WriterSkipsBarrier,
            redo_applied_while_an_unpinned_reader_reads,
        );
    }

    /// K2: an install over the page (an upsert) skipping the barrier races the same way.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn mutant_install_skipping_the_barrier_races_an_unpinned_read() {
        model_with(
            Mutant::WriterSkipsBarrier,
            install_over_a_page_while_an_unpinned_reader_reads,
        );
    }

    /// The K2 mutants touch only what unpinned readers rely on: the pinned reader's model
    /// (page lock against page lock) passes under both.
    #[test]
    fn the_k2_mutants_pass_the_pinned_reader_model() {
        for mutant in [
            Mutant::UnpinnedReadIgnoresWriters,
            Mutant::WriterSkipsBarrier,
        ] {
            model_with(mutant, redo_applied_while_a_reader_reads);
        }
    }

    /// The main-queue mutants leave the probationary-queue models alone and the other way
    /// round: each mutant is caught by the model of its own queue, not by accident.
    #[test]
    fn main_queue_mutants_pass_the_probationary_queue_models() {
        for mutant in [
            Mutant::MainQueueIgnoresPins,
            Mutant::MainQueueIgnoresPredicate,
        ] {
            model_with(mutant, eviction_races_a_pin);
            model_with(mutant, eviction_predicate_keeps_pages_above_vdl);
        }
    }
}
