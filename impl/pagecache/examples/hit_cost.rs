//! Where a hit's time goes: nanoseconds of CPU time per hit (from
//! `/proc/thread-self/schedstat`, so other processes on a shared machine distort it less
//! than wall time), sixfold against quick_cache on the benchmark's all-resident Zipf trace,
//! with the page access cut down step by step:
//!
//! - `full`: pin, read lock, read byte 512 of the page (the benchmark's access);
//! - `no-bytes`: pin and read lock, no byte read (sixfold) — the page's own cache miss
//!   removed;
//! - `no-read`: pin only, the LSN instead of a read (sixfold).
//!
//! quick_cache always does its full access (`get_or_insert_with`, read byte 512).
//!
//! `cargo run --release -p sixfold-pagecache --example hit_cost` (Linux only).

use std::hint::black_box;
use std::sync::Arc;

use sixfold_pagecache::{ENTRY_OVERHEAD_BYTES, EntryMeta, Page, PageCache};

const KEYS: u64 = 16_384;
const PAGE_BYTES: usize = 1024;
const TRACE_ACCESSES: usize = 1 << 16;
const PASSES: usize = 20;
const ROUNDS: usize = 3;

fn cpu_time_ns() -> u64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("needs Linux's /proc/thread-self/schedstat");
    let on_cpu = schedstat
        .split_whitespace()
        .next()
        .expect("empty schedstat");
    on_cpu
        .parse()
        .expect("schedstat's first field is nanoseconds")
}

/// The benchmark's splitmix64 and Zipf(0.99) trace, ranks scattered over the keys.
fn zipf_trace() -> Vec<u64> {
    let weights: Vec<f64> = (1..=KEYS)
        .map(|rank| 1.0 / (rank as f64).powf(0.99))
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
    let mut state = 1u64;
    (0..TRACE_ACCESSES)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let uniform = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cdf.partition_point(|&c| c < uniform).min(KEYS as usize - 1) as u64;
            rank.wrapping_mul(0x9e37_79b9_7f4a_7c15) % KEYS
        })
        .collect()
}

/// CPU nanoseconds per access of `access` over the trace, `PASSES` times.
fn ns_per_access(trace: &[u64], mut access: impl FnMut(u64) -> u64) -> f64 {
    let start = cpu_time_ns();
    for _ in 0..PASSES {
        for &key in trace {
            black_box(access(black_box(key)));
        }
    }
    (cpu_time_ns() - start) as f64 / (PASSES * trace.len()) as f64
}

fn main() {
    let trace = zipf_trace();
    let capacity_bytes = 2 * KEYS * (PAGE_BYTES as u64 + ENTRY_OVERHEAD_BYTES);
    let clean_only = |meta: &EntryMeta| !meta.dirty;
    let sixfold = PageCache::<u64, _>::new(capacity_bytes, 16, clean_only).unwrap();
    let quick = quick_cache::sync::Cache::<u64, Arc<[u8]>>::new(2 * KEYS as usize);
    for key in 0..KEYS {
        let bytes = vec![key as u8; PAGE_BYTES].into_boxed_slice();
        drop(sixfold.insert(&key, Page::clean(1, bytes.clone())));
        quick.insert(key, Arc::from(bytes));
    }
    let never_loads = || -> Result<Page, ()> { panic!("the trace missed") };
    for round in 0..ROUNDS {
        let full = ns_per_access(&trace, |key| {
            let guard = sixfold.get_or_load(&key, never_loads).unwrap();
            u64::from(guard.read()[PAGE_BYTES / 2])
        });
        let unpinned = ns_per_access(&trace, |key| {
            let byte = sixfold.with_page_or_load(&key, never_loads, |read| read[PAGE_BYTES / 2]);
            u64::from(byte.unwrap())
        });
        let no_bytes = ns_per_access(&trace, |key| {
            let guard = sixfold.get_or_load(&key, never_loads).unwrap();
            guard.read().lsn()
        });
        let no_read = ns_per_access(&trace, |key| {
            sixfold.get_or_load(&key, never_loads).unwrap().lsn()
        });
        let quick_full = ns_per_access(&trace, |key| {
            let page = quick
                .get_or_insert_with(&key, || Err::<Arc<[u8]>, ()>(()))
                .expect("the trace missed");
            u64::from(page[PAGE_BYTES / 2])
        });
        println!(
            "round {round}: sixfold unpinned {unpinned:.1} ns, full {full:.1} ns, \
             no-bytes {no_bytes:.1} ns, no-read {no_read:.1} ns; quick_cache full {quick_full:.1} ns"
        );
    }
}
