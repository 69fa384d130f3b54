//! sixfold-pagecache against quick_cache (0.7, S3-FIFO-like with a ghost queue) on the same
//! access traces, side by side:
//!
//! - `hits`: a Zipf trace through caches that hold every page (the hit path only);
//! - `zipf`, `btree`, `scan`, `sixfold`, `table-scan`: five traces through caches smaller
//!   than what they touch (misses load, evictions run), at 1 and 2 threads;
//! - then a summary table: accesses per second (median of `SUMMARY_RUNS`) and hit ratio
//!   per trace.
//!
//! The traces (each thread gets its own seed):
//! - **zipf**: 16,384 pages, Zipf exponent 0.99, ranks scattered over the keys; an eighth
//!   of the pages fit.
//! - **btree**: synthetic, shaped like the writer's cache during `sixfold bench`'s
//!   1,000,000-row commit run (impl/bench/src/workload.rs): per transaction the volume's
//!   header page, 1–4 updates of uniformly random rows (root, interior, leaf of the
//!   `accounts` table: ~130 rows a leaf, fanout ~400 for 4 KiB SQLite pages), and one
//!   append to `history` (root, rightmost interior, rightmost leaf). Generated, not
//!   recorded: recording page ids from a real run needs a tracing hook in the writer. The
//!   cache holds 4,096 pages, the writer's default (`WriterOptions::cache_pages_max`).
//! - **scan**: a full scan of the 16,384 pages interleaved one for one with Zipf point
//!   reads of the same pages; an eighth fit. A scan-resistant cache keeps the point reads'
//!   hot pages through the scan.
//!
//! - **sixfold**: the writer cache of `sixfold bench` on a table ten times larger
//!   (10,000,000 rows, ~77,000 leaves), with hot rows: per transaction the header page,
//!   0–2 point reads and 1–4 updates (root, interior, leaf Zipfian over the leaves) and a
//!   `history` append; 4,096 pages (the writer's default).
//! - **table-scan**: a full scan of the 1,000,000-row `accounts` table (leaves in order
//!   through the interior pages), two point reads of hot rows (root, interior, Zipfian
//!   leaf) after each scanned leaf; 4,096 pages.
//!
//! An access is sixfold's `with_page_or_load` reading one byte (its unpinned hit path, K1)
//! or quick_cache's `get_or_insert_with` and a read of the same byte; the `hits, pinned`
//! row runs sixfold's `get_or_load` and `PinGuard::read` instead.
//!
//! Hit ratio: a trace twice as long as the measured one, the first half to warm the cache,
//! the second half counted, on one thread.
//!
//! `cargo bench -p sixfold-pagecache --bench cache -- --warm-up-time 1 --measurement-time 3`
//! (`-- summary` for the table alone; `PAGECACHE_BENCH_RATIOS_ONLY=1` for the hit ratios
//! alone).

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
const THREAD_COUNTS: [usize; 2] = [1, 2];
/// Runs per trace and cache in the summary table; it prints the median.
const SUMMARY_RUNS: usize = 9;
/// Passes over the trace per summary run.
const SUMMARY_PASSES: usize = 10;
/// Set (to anything) to print only the hit ratios: they are deterministic and take
/// seconds, where the throughput runs take minutes.
const RATIOS_ONLY_VARIABLE: &str = "PAGECACHE_BENCH_RATIOS_ONLY";

/// The `btree` trace's table: `sixfold bench`'s `accounts` (id, balance, a short note).
const TABLE_ROWS: u64 = 1_000_000;
const ROWS_PER_LEAF: u64 = 130;
const INTERIOR_FANOUT: u64 = 400;
const HISTORY_ROWS_PER_LEAF: u64 = 200;
/// The writer's default cache size, in pages.
const WRITER_CACHE_PAGES: u64 = 4_096;

/// splitmix64: a seeded generator so every run and every cache sees the same trace.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draws Zipf-distributed keys by inverse CDF; ranks are scattered over the key space so
/// hot pages do not share a shard.
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    /// Over the bench's `KEYS` pages.
    fn new(seed: u64) -> Self {
        Self::over(KEYS, seed)
    }

    /// Over `keys` items.
    fn over(keys: u64, seed: u64) -> Self {
        let weights: Vec<f64> = (1..=keys)
            .map(|rank| 1.0 / (rank as f64).powf(ZIPF_EXPONENT))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let cdf = weights
            .iter()
            .map(|weight| {
                cumulative += weight / total;
                cumulative
            })
            .collect();
        Self { cdf, state: seed }
    }

    fn next_key(&mut self) -> u64 {
        let keys = self.cdf.len() as u64;
        let uniform = (next_random(&mut self.state) >> 11) as f64 / (1u64 << 53) as f64;
        let rank = self
            .cdf
            .partition_point(|&c| c < uniform)
            .min(keys as usize - 1) as u64;
        rank.wrapping_mul(0x9e37_79b9_7f4a_7c15) % keys
    }
}

fn zipf_trace(seed: u64, accesses: usize) -> Vec<u64> {
    let mut zipf = Zipf::new(seed);
    (0..accesses).map(|_| zipf.next_key()).collect()
}

fn scan_trace(seed: u64, accesses: usize) -> Vec<u64> {
    let mut zipf = Zipf::new(seed);
    let mut trace = Vec::with_capacity(accesses);
    let mut scan_position = 0;
    while trace.len() < accesses {
        trace.push(scan_position);
        trace.push(zipf.next_key());
        scan_position = (scan_position + 1) % KEYS;
    }
    trace.truncate(accesses);
    trace
}

/// Page ids of the `btree` trace: the header page, then each table's pages by level.
fn btree_trace(seed: u64, accesses: usize) -> Vec<u64> {
    const HEADER: u64 = 0;
    const ACCOUNTS_ROOT: u64 = 1;
    const ACCOUNTS_INTERIOR: u64 = 1 << 20;
    const ACCOUNTS_LEAF: u64 = 2 << 20;
    const HISTORY_ROOT: u64 = 3 << 20;
    const HISTORY_INTERIOR: u64 = 4 << 20;
    const HISTORY_LEAF: u64 = 5 << 20;
    let mut state = seed;
    let mut history_rows = 0;
    let mut trace = Vec::with_capacity(accesses + 16);
    while trace.len() < accesses {
        trace.push(HEADER);
        let updates = 1 + next_random(&mut state) % 4;
        for _ in 0..updates {
            let row = next_random(&mut state) % TABLE_ROWS;
            let leaf = row / ROWS_PER_LEAF;
            trace.push(ACCOUNTS_ROOT);
            trace.push(ACCOUNTS_INTERIOR + leaf / INTERIOR_FANOUT);
            trace.push(ACCOUNTS_LEAF + leaf);
        }
        let history_leaf = history_rows / HISTORY_ROWS_PER_LEAF;
        trace.push(HISTORY_ROOT);
        trace.push(HISTORY_INTERIOR + history_leaf / INTERIOR_FANOUT);
        trace.push(HISTORY_LEAF + history_leaf);
        history_rows += 1;
    }
    trace.truncate(accesses);
    trace
}

/// Page ids of a B-tree table as the writer's cache sees them: the table's root, its
/// interior pages (one level), its leaves, each kind in its own id range.
struct BTreeTable {
    root: u64,
    interior: u64,
    leaf: u64,
}

impl BTreeTable {
    /// The table whose pages start at `base` (ids `base`, `base + 2^20`, `base + 2^21`).
    const fn at(base: u64) -> Self {
        Self {
            root: base,
            interior: base + (1 << 20),
            leaf: base + (2 << 20),
        }
    }

    /// The root-to-leaf path of a point lookup of `leaf`.
    fn lookup(&self, leaf: u64, trace: &mut Vec<u64>) {
        trace.push(self.root);
        trace.push(self.interior + leaf / INTERIOR_FANOUT);
        trace.push(self.leaf + leaf);
    }
}

/// The `sixfold` trace's table: ten times `sixfold bench`'s, so its leaves (~77,000) are
/// many more than the writer's cache holds.
const LARGE_TABLE_ROWS: u64 = 10 * TABLE_ROWS;
/// Point reads (`SELECT balance`) per transaction, on top of the updates.
const POINT_READS_MAX: u64 = 2;

/// `sixfold`: the writer cache of `sixfold bench`'s commit run on a large table, with hot
/// rows. Per transaction: the volume's header page (SQLite's page 1, read by every
/// transaction), 0–2 point reads and 1–4 updates of `accounts` rows (root, interior, leaf;
/// the leaf Zipfian over the table's leaves, ranks scattered, so the root and interior
/// pages are hot and a few leaves are), and one `history` append (root, rightmost
/// interior, rightmost leaf).
fn sixfold_trace(seed: u64, accesses: usize) -> Vec<u64> {
    const HEADER: u64 = 0;
    let accounts = BTreeTable::at(1);
    let history = BTreeTable::at(3 << 20);
    let leaves = LARGE_TABLE_ROWS / ROWS_PER_LEAF;
    let mut hot_leaves = Zipf::over(leaves, seed);
    let mut state = seed;
    let mut history_rows = 0;
    let mut trace = Vec::with_capacity(accesses + 32);
    while trace.len() < accesses {
        trace.push(HEADER);
        let point_reads = next_random(&mut state) % (POINT_READS_MAX + 1);
        let updates = 1 + next_random(&mut state) % 4;
        for _ in 0..point_reads + updates {
            accounts.lookup(hot_leaves.next_key(), &mut trace);
        }
        history.lookup(history_rows / HISTORY_ROWS_PER_LEAF, &mut trace);
        history_rows += 1;
    }
    trace.truncate(accesses);
    trace
}

/// `table-scan`: a full scan of `sixfold bench`'s `accounts` table (1,000,000 rows,
/// ~7,700 leaves, about twice what the writer's cache holds), leaf after leaf through
/// the interior pages, interleaved with point reads of hot rows (root, interior, Zipfian
/// leaf) — two per scanned leaf. A scan-resistant cache keeps the point reads' pages while
/// the scan streams through.
fn table_scan_trace(seed: u64, accesses: usize) -> Vec<u64> {
    const POINT_READS_PER_LEAF: usize = 2;
    let accounts = BTreeTable::at(1);
    let leaves = TABLE_ROWS / ROWS_PER_LEAF;
    let mut hot_leaves = Zipf::over(leaves, seed);
    let mut scanned = 0;
    let mut trace = Vec::with_capacity(accesses + 16);
    while trace.len() < accesses {
        let leaf = scanned % leaves;
        if leaf.is_multiple_of(INTERIOR_FANOUT) {
            trace.push(accounts.root);
            trace.push(accounts.interior + leaf / INTERIOR_FANOUT);
        }
        trace.push(accounts.leaf + leaf);
        scanned += 1;
        for _ in 0..POINT_READS_PER_LEAF {
            accounts.lookup(hot_leaves.next_key(), &mut trace);
        }
    }
    trace.truncate(accesses);
    trace
}

/// A trace of each thread, and how many pages the caches hold for it.
struct Workload {
    name: &'static str,
    capacity_pages: u64,
    generate: fn(u64, usize) -> Vec<u64>,
}

const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "zipf",
        capacity_pages: KEYS / 8,
        generate: zipf_trace,
    },
    Workload {
        name: "btree",
        capacity_pages: WRITER_CACHE_PAGES,
        generate: btree_trace,
    },
    Workload {
        name: "scan",
        capacity_pages: KEYS / 8,
        generate: scan_trace,
    },
    Workload {
        name: "sixfold",
        capacity_pages: WRITER_CACHE_PAGES,
        generate: sixfold_trace,
    },
    Workload {
        name: "table-scan",
        capacity_pages: WRITER_CACHE_PAGES,
        generate: table_scan_trace,
    },
];

impl Workload {
    fn traces(&self, accesses: usize) -> Vec<Vec<u64>> {
        (0..THREAD_COUNTS[1] as u64)
            .map(|seed| (self.generate)(seed + 1, accesses))
            .collect()
    }
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
    /// Loads so far.
    fn misses(&self) -> u64;
}

impl Hit for Sixfold {
    fn access(&self, key: u64) -> u8 {
        self.with_page_or_load(
            &key,
            || Ok::<_, ()>(Page::clean(1, page(key))),
            |read| read[PAGE_BYTES / 2],
        )
        .unwrap()
    }

    fn misses(&self) -> u64 {
        self.stats().misses
    }
}

/// sixfold through its pinning API (`get_or_load`, then a read of the pinned page): what
/// a caller that keeps the page across other work pays.
struct Pinned<'a>(&'a Sixfold);

impl Hit for Pinned<'_> {
    fn access(&self, key: u64) -> u8 {
        let guard = self
            .0
            .get_or_load(&key, || Ok::<_, ()>(Page::clean(1, page(key))))
            .unwrap();
        let read = guard.read();
        read[PAGE_BYTES / 2]
    }

    fn misses(&self) -> u64 {
        self.0.stats().misses
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

    fn misses(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
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

/// The calling thread's time on a CPU so far, from `/proc/thread-self/schedstat` (Linux);
/// `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let on_cpu_ns = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(on_cpu_ns))
}

/// As `run_threads` with `SUMMARY_PASSES` iterations, but returns the CPU time of the
/// busiest thread: on a shared machine wall time also counts the time a thread waited for
/// a core, which swamps the difference between the caches. (The kernel updates a thread's
/// CPU time at scheduler ticks, hence the passes: a run of ~100 ms keeps the tick's 4 ms
/// small.) Falls back to wall time where CPU time is unavailable.
fn run_threads_on_cpu<C: Hit>(cache: &C, traces: &[Vec<u64>]) -> Duration {
    let start = Instant::now();
    let busiest = thread::scope(|scope| {
        let threads: Vec<_> = traces
            .iter()
            .map(|trace| {
                scope.spawn(move || {
                    let before = thread_cpu_time();
                    for _ in 0..SUMMARY_PASSES {
                        for &key in trace {
                            black_box(cache.access(black_box(key)));
                        }
                    }
                    Some(thread_cpu_time()? - before?)
                })
            })
            .collect();
        let times: Option<Vec<Duration>> = threads
            .into_iter()
            .map(|thread| thread.join().expect("bench thread panicked"))
            .collect();
        times.and_then(|times| times.into_iter().max())
    });
    busiest.unwrap_or_else(|| start.elapsed())
}

fn bench_cache<C: Hit>(
    c: &mut Criterion,
    group_name: &str,
    name: &str,
    cache: &C,
    traces: &[Vec<u64>],
) {
    let mut group = c.benchmark_group(group_name);
    let accesses: usize = traces.iter().map(Vec::len).sum();
    group.throughput(Throughput::Elements(accesses as u64));
    group.bench_function(format!("{name}/{}-threads", traces.len()), |b| {
        b.iter_custom(|iterations| run_threads(cache, traces, iterations))
    });
    group.finish();
}

/// Caches holding every page of the Zipf trace.
fn prefilled(pages: u64) -> (Sixfold, Quick) {
    let sixfold = sixfold_cache(pages + pages / 8);
    let quick = Quick::new(pages + pages / 8);
    for key in 0..pages {
        drop(sixfold.insert(&key, Page::clean(1, page(key))));
        quick.cache.insert(key, Arc::from(page(key)));
    }
    (sixfold, quick)
}

fn hits(c: &mut Criterion) {
    let traces = zipf_traces();
    // Every page fits: the trace measures the hit path only.
    let (sixfold, quick) = prefilled(KEYS);
    for threads in THREAD_COUNTS {
        bench_cache(c, "hits", "sixfold", &sixfold, &traces[..threads]);
        bench_cache(c, "hits", "quick_cache", &quick, &traces[..threads]);
    }
    let stats = sixfold.stats();
    assert_eq!(
        (stats.misses, stats.evictions),
        (0, 0),
        "the hit benchmark missed"
    );
    assert_eq!(quick.misses(), 0, "the hit benchmark missed in quick_cache");
}

fn zipf_traces() -> Vec<Vec<u64>> {
    WORKLOADS[0].traces(TRACE_ACCESSES_PER_THREAD)
}

fn smaller_than_the_trace(c: &mut Criterion) {
    for workload in &WORKLOADS {
        let traces = workload.traces(TRACE_ACCESSES_PER_THREAD);
        let sixfold = sixfold_cache(workload.capacity_pages);
        let quick = Quick::new(workload.capacity_pages);
        for threads in THREAD_COUNTS {
            bench_cache(c, workload.name, "sixfold", &sixfold, &traces[..threads]);
            bench_cache(c, workload.name, "quick_cache", &quick, &traces[..threads]);
        }
    }
}

/// Hit ratio on one thread: warm on the first half of a double-length trace, count the
/// second half.
fn hit_ratio<C: Hit>(cache: &C, workload: &Workload) -> f64 {
    let trace = &workload.traces(2 * TRACE_ACCESSES_PER_THREAD)[0];
    let (warm, counted) = trace.split_at(TRACE_ACCESSES_PER_THREAD);
    run_threads(cache, &[warm.to_vec()], 1);
    let misses_before = cache.misses();
    run_threads(cache, &[counted.to_vec()], 1);
    1.0 - (cache.misses() - misses_before) as f64 / counted.len() as f64
}

/// Million accesses per CPU-second of the busiest thread (`run_threads_on_cpu`) of each
/// cache, median of `SUMMARY_RUNS` runs of the traces, the two caches alternating run by
/// run so a change in the machine's load hits both alike.
fn accesses_per_second<A: Hit, B: Hit>(first: &A, second: &B, traces: &[Vec<u64>]) -> (f64, f64) {
    let accesses = SUMMARY_PASSES * traces.iter().map(Vec::len).sum::<usize>();
    let rate = |elapsed: Duration| accesses as f64 / elapsed.as_secs_f64() / 1e6;
    let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
    for _ in 0..SUMMARY_RUNS {
        firsts.push(rate(run_threads_on_cpu(first, traces)));
        seconds.push(rate(run_threads_on_cpu(second, traces)));
    }
    firsts.sort_by(f64::total_cmp);
    seconds.sort_by(f64::total_cmp);
    (firsts[SUMMARY_RUNS / 2], seconds[SUMMARY_RUNS / 2])
}

fn summary_row(label: &str, threads: usize, sixfold: f64, quick: f64) {
    println!(
        "{label:<24} {threads:>7} {sixfold:>12.1} {quick:>12.1} {:>8.2}x",
        sixfold / quick
    );
}

/// The side-by-side table: throughput per trace and thread count, then hit ratios.
fn summary(_: &mut Criterion) {
    if std::env::var_os(POLICIES_VARIABLE).is_some() {
        return policies();
    }
    if std::env::var_os(RATIOS_ONLY_VARIABLE).is_some() {
        return ratios();
    }
    println!(
        "\nsummary (M accesses per CPU-second of the busiest thread, median of {SUMMARY_RUNS} runs)"
    );
    println!(
        "{:<24} {:>7} {:>12} {:>12} {:>9}",
        "trace", "threads", "sixfold", "quick_cache", "ratio"
    );
    let traces = zipf_traces();
    let (sixfold, quick) = prefilled(KEYS);
    for threads in THREAD_COUNTS {
        let rates = accesses_per_second(&sixfold, &quick, &traces[..threads]);
        summary_row("hits (all resident)", threads, rates.0, rates.1);
    }
    for threads in THREAD_COUNTS {
        let rates = accesses_per_second(&Pinned(&sixfold), &quick, &traces[..threads]);
        summary_row("hits, pinned", threads, rates.0, rates.1);
    }
    for workload in &WORKLOADS {
        let traces = workload.traces(TRACE_ACCESSES_PER_THREAD);
        let sixfold = sixfold_cache(workload.capacity_pages);
        let quick = Quick::new(workload.capacity_pages);
        for threads in THREAD_COUNTS {
            let rates = accesses_per_second(&sixfold, &quick, &traces[..threads]);
            let label = format!("{} ({} pages)", workload.name, workload.capacity_pages);
            summary_row(&label, threads, rates.0, rates.1);
        }
    }
    ratios();
}

fn ratios() {
    println!("\nhit ratio (1 thread, second half of a double-length trace)");
    println!("{:<24} {:>12} {:>12}", "trace", "sixfold", "quick_cache");
    for workload in &WORKLOADS {
        let sixfold = hit_ratio(&sixfold_cache(workload.capacity_pages), workload);
        let quick = hit_ratio(&Quick::new(workload.capacity_pages), workload);
        println!("{:<24} {sixfold:>12.3} {quick:>12.3}", workload.name);
    }
}

/// Set (to anything) to print the hit ratios of the reference policies below instead.
const POLICIES_VARIABLE: &str = "PAGECACHE_BENCH_POLICIES";

/// A replacement policy simulated on one thread, unsharded, capacity in pages: the
/// families the cache's policy was chosen among.
trait Policy {
    /// Accesses `key`, admitting it on a miss; returns whether it hit.
    fn access(&mut self, key: u64) -> bool;
}

/// CLOCK: one reference bit per page, a hand that clears bits until it finds a clear one.
struct Clock {
    slots: Vec<(u64, bool)>,
    index: std::collections::HashMap<u64, usize>,
    hand: usize,
    capacity: usize,
}

impl Policy for Clock {
    fn access(&mut self, key: u64) -> bool {
        if let Some(&slot) = self.index.get(&key) {
            self.slots[slot].1 = true;
            return true;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push((key, false));
            return false;
        }
        while self.slots[self.hand].1 {
            self.slots[self.hand].1 = false;
            self.hand = (self.hand + 1) % self.capacity;
        }
        self.index.remove(&self.slots[self.hand].0);
        self.slots[self.hand] = (key, false);
        self.index.insert(key, self.hand);
        self.hand = (self.hand + 1) % self.capacity;
        false
    }
}

/// SIEVE (Zhang et al., NSDI 2024): a FIFO whose hand walks from the oldest page towards
/// the newest, clearing visited bits and evicting the first unvisited page; survivors
/// stay in place. Kept as an insertion-ordered map of (key → visited) with the hand as an
/// insertion number.
struct Sieve {
    order: std::collections::BTreeMap<u64, (u64, bool)>,
    position: std::collections::HashMap<u64, u64>,
    next: u64,
    hand: Option<u64>,
    capacity: usize,
}

impl Sieve {
    fn evict(&mut self) {
        loop {
            let from = self.hand.unwrap_or(0);
            let (&at, &(key, visited)) = match self.order.range(from..).next() {
                Some(found) => found,
                None => self.order.iter().next().expect("full"),
            };
            if visited {
                self.order.insert(at, (key, false));
                self.hand = Some(at + 1);
                continue;
            }
            self.order.remove(&at);
            self.position.remove(&key);
            self.hand = Some(at + 1);
            return;
        }
    }
}

impl Policy for Sieve {
    fn access(&mut self, key: u64) -> bool {
        if let Some(&at) = self.position.get(&key) {
            self.order.insert(at, (key, true));
            return true;
        }
        if self.position.len() >= self.capacity {
            self.evict();
        }
        self.order.insert(self.next, (key, false));
        self.position.insert(key, self.next);
        self.next += 1;
        false
    }
}

/// Hit ratio of a simulated policy, counted as for the caches.
fn policy_hit_ratio(policy: &mut dyn Policy, workload: &Workload) -> f64 {
    let trace = &workload.traces(2 * TRACE_ACCESSES_PER_THREAD)[0];
    let (warm, counted) = trace.split_at(TRACE_ACCESSES_PER_THREAD);
    for &key in warm {
        policy.access(key);
    }
    let hits = counted.iter().filter(|&&key| policy.access(key)).count();
    hits as f64 / counted.len() as f64
}

fn policies() {
    println!("\nhit ratio of reference policies (1 thread, unsharded, simulated)");
    println!("{:<24} {:>12} {:>12}", "trace", "CLOCK", "SIEVE");
    for workload in &WORKLOADS {
        let capacity = workload.capacity_pages as usize;
        let mut clock = Clock {
            slots: Vec::new(),
            index: Default::default(),
            hand: 0,
            capacity,
        };
        let mut sieve = Sieve {
            order: Default::default(),
            position: Default::default(),
            next: 0,
            hand: None,
            capacity,
        };
        let clock = policy_hit_ratio(&mut clock, workload);
        let sieve = policy_hit_ratio(&mut sieve, workload);
        println!("{:<24} {clock:>12.3} {sieve:>12.3}", workload.name);
    }
}

criterion_group!(benches, hits, smaller_than_the_trace, summary);
criterion_main!(benches);
