//! Cache hits per second on 1 and 2 threads, sixfold-pagecache against quick_cache, on the
//! same Zipf-distributed access trace; then the same trace through a cache that holds an
//! eighth of the pages (misses load, evictions run), with the hit ratio printed.
//!
//! `cargo bench -p sixfold-pagecache --bench cache -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sixfold_pagecache::{ENTRY_OVERHEAD_BYTES, EntryMeta, Page, PageCache};

const KEYS: u64 = 16_384;
const PAGE_BYTES: usize = 1024;
const TRACE_ACCESSES_PER_THREAD: usize = 1 << 16;
/// Zipf exponent: ~1 is the usual skew of page accesses (a few hot pages, a long tail).
const ZIPF_EXPONENT: f64 = 0.99;
const SHARDS: usize = 16;

/// splitmix64: a seeded generator so every run and every cache sees the same trace.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A Zipf trace by inverse CDF; ranks are scattered over the key space so hot pages do
/// not share a shard.
fn zipf_trace(seed: u64, accesses: usize) -> Vec<u64> {
    let weights: Vec<f64> = (1..=KEYS)
        .map(|rank| 1.0 / (rank as f64).powf(ZIPF_EXPONENT))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = 0.0;
    let cdf: Vec<f64> = weights
        .iter()
        .map(|weight| {
            cumulative += weight / total;
            cumulative
        })
        .collect();
    let mut state = seed;
    (0..accesses)
        .map(|_| {
            let uniform = (next_random(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cdf.partition_point(|&c| c < uniform).min(KEYS as usize - 1) as u64;
            rank.wrapping_mul(0x9e37_79b9_7f4a_7c15) % KEYS
        })
        .collect()
}

fn page(key: u64) -> Box<[u8]> {
    vec![key as u8; PAGE_BYTES].into_boxed_slice()
}

type Sixfold = PageCache<u64, fn(&EntryMeta) -> bool>;
/// quick_cache with a load counter (its own hit/miss counters need its `stats` feature,
/// which would slow the hit path we compare).
struct Quick {
    cache: quick_cache::sync::Cache<u64, Arc<[u8]>>,
    loads: AtomicU64,
}

impl Quick {
    fn new(pages: u64) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(pages as usize),
            loads: AtomicU64::new(0),
        }
    }
}

fn clean_only(meta: &EntryMeta) -> bool {
    !meta.dirty
}

fn sixfold_cache(pages: u64) -> Sixfold {
    let capacity_bytes = pages * (PAGE_BYTES as u64 + ENTRY_OVERHEAD_BYTES);
    PageCache::new(capacity_bytes, SHARDS, clean_only as fn(&EntryMeta) -> bool).unwrap()
}

trait Hit: Sync {
    /// Looks the key up (loading on a miss) and reads a byte of the page.
    fn access(&self, key: u64) -> u8;
}

impl Hit for Sixfold {
    fn access(&self, key: u64) -> u8 {
        let guard = self
            .get_or_load(&key, || Ok::<_, ()>(Page::clean(1, page(key))))
            .unwrap();
        let read = guard.read();
        read[PAGE_BYTES / 2]
    }
}

impl Hit for Quick {
    fn access(&self, key: u64) -> u8 {
        let load = || {
            self.loads.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ()>(Arc::from(page(key)))
        };
        let bytes = self.cache.get_or_insert_with(&key, load).unwrap();
        bytes[PAGE_BYTES / 2]
    }
}

/// Runs each thread's trace `iterations` times; returns the wall time of the slowest.
fn run_threads<C: Hit>(cache: &C, traces: &[Vec<u64>], iterations: u64) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for trace in traces {
            scope.spawn(move || {
                for _ in 0..iterations {
                    for &key in trace {
                        black_box(cache.access(black_box(key)));
                    }
                }
            });
        }
    });
    start.elapsed()
}

fn bench_cache<C: Hit>(
    c: &mut Criterion,
    group_name: &str,
    name: &str,
    cache: &C,
    traces: &[Vec<u64>],
) {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(
        (TRACE_ACCESSES_PER_THREAD * traces.len()) as u64,
    ));
    group.bench_function(format!("{name}/{}-threads", traces.len()), |b| {
        b.iter_custom(|iterations| run_threads(cache, traces, iterations))
    });
    group.finish();
}

fn hits(c: &mut Criterion) {
    let traces: Vec<Vec<u64>> = (0..2)
        .map(|seed| zipf_trace(seed + 1, TRACE_ACCESSES_PER_THREAD))
        .collect();
    // Every page fits: the trace measures the hit path only.
    let sixfold = sixfold_cache(KEYS + KEYS / 8);
    let quick = Quick::new(KEYS + KEYS / 8);
    for key in 0..KEYS {
        drop(sixfold.insert(&key, Page::clean(1, page(key))));
        quick.cache.insert(key, Arc::from(page(key)));
    }
    for threads in [1, 2] {
        bench_cache(c, "hits", "sixfold", &sixfold, &traces[..threads]);
        bench_cache(c, "hits", "quick_cache", &quick, &traces[..threads]);
    }
    let stats = sixfold.stats();
    assert_eq!(
        (stats.misses, stats.evictions),
        (0, 0),
        "the hit benchmark missed"
    );
    assert_eq!(
        quick.loads.load(Ordering::Relaxed),
        0,
        "the hit benchmark missed in quick_cache"
    );
}

fn eighth_resident(c: &mut Criterion) {
    let traces: Vec<Vec<u64>> = (0..2)
        .map(|seed| zipf_trace(seed + 1, TRACE_ACCESSES_PER_THREAD))
        .collect();
    let sixfold = sixfold_cache(KEYS / 8);
    let quick = Quick::new(KEYS / 8);
    for threads in [1, 2] {
        bench_cache(
            c,
            "eighth-resident",
            "sixfold",
            &sixfold,
            &traces[..threads],
        );
        bench_cache(
            c,
            "eighth-resident",
            "quick_cache",
            &quick,
            &traces[..threads],
        );
    }
    // Hit ratio on fresh caches: one warming pass, then one counted pass.
    let sixfold = sixfold_cache(KEYS / 8);
    let quick = Quick::new(KEYS / 8);
    run_threads(&sixfold, &traces[..1], 1);
    run_threads(&quick, &traces[..1], 1);
    let (sixfold_misses, quick_loads) =
        (sixfold.stats().misses, quick.loads.load(Ordering::Relaxed));
    run_threads(&sixfold, &traces[..1], 1);
    run_threads(&quick, &traces[..1], 1);
    let accesses = TRACE_ACCESSES_PER_THREAD as f64;
    let sixfold_ratio = 1.0 - (sixfold.stats().misses - sixfold_misses) as f64 / accesses;
    let quick_ratio = 1.0 - (quick.loads.load(Ordering::Relaxed) - quick_loads) as f64 / accesses;
    println!(
        "eighth-resident hit ratio: sixfold (CLOCK) {sixfold_ratio:.3}, quick_cache (S3-FIFO) {quick_ratio:.3}"
    );
}

criterion_group!(benches, hits, eighth_resident);
criterion_main!(benches);
