//! The cache against an obvious model under random operations (single-threaded; the
//! concurrent guarantees are loom's). The model is two maps: `durable`, what the disk
//! holds (loads read it, the flusher writes it), and `latest`, the newest version of
//! each page. With the storage node's predicate (only clean pages are evicted) the cache
//! must never lose an update: a resident page is at `latest`, dirty exactly when
//! `latest != durable`, and a page that is not resident has `latest == durable`.
#![cfg(not(loom))]

use std::collections::HashMap;

use proptest::prelude::*;
use sixfold_pagecache::{
    ApplyError, ENTRY_OVERHEAD_BYTES, EntryMeta, Page, PageCache, PinGuard, RemoveError,
};

const KEYS: u64 = 8;
const PAGE_BYTES: usize = 16;
const PAGE_COST_BYTES: u64 = PAGE_BYTES as u64 + ENTRY_OVERHEAD_BYTES;
const CAPACITY_PAGES: u64 = 4;
const PINS_MAX: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Load(u64),
    Get(u64),
    Insert {
        key: u64,
        dirty: bool,
    },
    Apply(u64),
    Flush(u64),
    /// The flusher copies, a redo lands, the flusher reports its copy as written.
    FlushRacingRedo(u64),
    Remove(u64),
    Pin(u64),
    Unpin(usize),
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        key.clone().prop_map(Op::Load),
        key.clone().prop_map(Op::Get),
        (key.clone(), any::<bool>()).prop_map(|(key, dirty)| Op::Insert { key, dirty }),
        key.clone().prop_map(Op::Apply),
        key.clone().prop_map(Op::Flush),
        key.clone().prop_map(Op::FlushRacingRedo),
        key.clone().prop_map(Op::Remove),
        key.clone().prop_map(Op::Pin),
        (0..PINS_MAX).prop_map(Op::Unpin),
        Just(Op::Trim),
    ]
}

/// The bytes of page `key` at `lsn`: every version is distinct and checkable.
fn bytes_at(key: u64, lsn: u64) -> Box<[u8]> {
    let mut bytes = vec![key as u8; PAGE_BYTES];
    bytes[..8].copy_from_slice(&lsn.to_le_bytes());
    bytes.into_boxed_slice()
}

fn clean_only(meta: &EntryMeta) -> bool {
    !meta.dirty
}

struct Harness {
    cache: PageCache<u64, fn(&EntryMeta) -> bool>,
    durable: HashMap<u64, u64>,
    latest: HashMap<u64, u64>,
    next_lsn: u64,
    pins: Vec<(u64, PinGuard)>,
}

impl Harness {
    fn new() -> Self {
        let predicate = clean_only as fn(&EntryMeta) -> bool;
        Self {
            cache: PageCache::new(CAPACITY_PAGES * PAGE_COST_BYTES, 1, predicate).unwrap(),
            durable: (0..KEYS).map(|key| (key, 0)).collect(),
            latest: (0..KEYS).map(|key| (key, 0)).collect(),
            next_lsn: 1,
            pins: Vec::new(),
        }
    }

    fn fresh_lsn(&mut self) -> u64 {
        self.next_lsn += 1;
        self.next_lsn
    }

    fn check_read(&self, key: u64, guard: &PinGuard) {
        let read = guard.read();
        assert_eq!(
            read.lsn(),
            self.latest[&key],
            "page {key} not at its latest version"
        );
        assert_eq!(
            read.bytes(),
            &bytes_at(key, read.lsn())[..],
            "page {key} bytes"
        );
    }

    /// Runs one operation; returns the key it installed or updated, if any (a new entry is
    /// exempt from the over-capacity check: it was pinned while eviction ran).
    fn run(&mut self, op: &Op) -> Option<u64> {
        match *op {
            Op::Load(key) => {
                let lsn = self.durable[&key];
                let guard = self
                    .cache
                    .get_or_load(&key, || Ok::<_, ()>(Page::clean(lsn, bytes_at(key, lsn))))
                    .unwrap();
                self.check_read(key, &guard);
                return Some(key);
            }
            Op::Get(key) => {
                if let Some(guard) = self.cache.get(&key) {
                    self.check_read(key, &guard);
                }
            }
            Op::Insert { key, dirty } => {
                let lsn = self.fresh_lsn();
                let page = Page {
                    lsn,
                    bytes: bytes_at(key, lsn),
                    dirty,
                };
                assert_eq!(self.cache.insert(&key, page).lsn(), lsn);
                self.latest.insert(key, lsn);
                if !dirty {
                    self.durable.insert(key, lsn);
                }
                return Some(key);
            }
            Op::Apply(key) => self.apply(key),
            Op::Flush(key) => match self.cache.snapshot_for_flush(&key) {
                Some(snapshot) => {
                    assert_eq!(snapshot.lsn, self.latest[&key]);
                    assert_eq!(snapshot.bytes, bytes_at(key, snapshot.lsn));
                    self.durable.insert(key, snapshot.lsn);
                    assert!(self.cache.mark_clean(&key, snapshot.lsn));
                }
                None => assert_eq!(
                    self.latest[&key], self.durable[&key],
                    "dirty page {key} not offered"
                ),
            },
            Op::FlushRacingRedo(key) => {
                if let Some(snapshot) = self.cache.snapshot_for_flush(&key) {
                    self.durable.insert(key, snapshot.lsn);
                    self.apply(key);
                    assert!(
                        !self.cache.mark_clean(&key, snapshot.lsn),
                        "stale flush cleaned page {key}"
                    );
                }
            }
            Op::Remove(key) => match self.cache.remove(&key) {
                Ok(Some(meta)) => {
                    assert_eq!(meta.lsn, self.latest[&key]);
                    self.latest.insert(key, self.durable[&key]);
                }
                Ok(None) => {}
                Err(RemoveError::Pinned) => {
                    assert!(
                        self.pins.iter().any(|(pinned, _)| *pinned == key),
                        "unpinned page {key} reported pinned"
                    )
                }
                Err(RemoveError::Loading) => panic!("no load is in flight"),
            },
            Op::Pin(key) => {
                if self.pins.len() < PINS_MAX
                    && let Some(guard) = self.cache.get(&key)
                {
                    self.check_read(key, &guard);
                    self.pins.push((key, guard));
                }
            }
            Op::Unpin(index) => {
                if !self.pins.is_empty() {
                    let len = self.pins.len();
                    self.pins.swap_remove(index % len);
                }
            }
            Op::Trim => {
                self.cache.trim();
                return None;
            }
        }
        None
    }

    fn apply(&mut self, key: u64) {
        let lsn = self.fresh_lsn();
        let edit = |bytes: &mut [u8]| bytes.copy_from_slice(&bytes_at(key, lsn));
        match self.cache.apply(&key, lsn, edit) {
            Ok(()) => {
                self.latest.insert(key, lsn);
            }
            Err(ApplyError::NotCached) => {
                assert_eq!(
                    self.latest[&key], self.durable[&key],
                    "dirty page {key} evicted"
                )
            }
            Err(error) => panic!("fresh LSN refused: {error}"),
        }
    }

    fn check_invariants(&self, op: &Op, installed: Option<u64>) {
        let mut resident_bytes = 0;
        let mut evictable_resident = false;
        for key in 0..KEYS {
            let pinned = self.pins.iter().any(|(pinned, _)| *pinned == key);
            match self.cache.peek(&key) {
                Some(meta) => {
                    assert_eq!(meta.lsn, self.latest[&key], "page {key} lost an update");
                    assert_eq!(
                        meta.dirty,
                        self.latest[&key] != self.durable[&key],
                        "page {key} dirty flag"
                    );
                    resident_bytes += meta.cost_bytes;
                    evictable_resident |= !pinned && !meta.dirty && installed != Some(key);
                }
                None => {
                    assert!(!pinned, "pinned page {key} evicted");
                    assert_eq!(
                        self.latest[&key], self.durable[&key],
                        "dirty page {key} evicted"
                    );
                }
            }
        }
        let stats = self.cache.stats();
        assert_eq!(stats.bytes_used, resident_bytes, "byte accounting");
        let evicted_after = installed.is_some() || matches!(op, Op::Trim);
        if evicted_after && stats.bytes_used > stats.capacity_bytes {
            assert!(
                !evictable_resident,
                "over capacity with an evictable page after {op:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_cache_matches_the_model(ops in prop::collection::vec(op(), 1..200)) {
        let mut harness = Harness::new();
        for op in &ops {
            // Eviction runs only when an entry is created, not when one is updated.
            let resident_before: Vec<bool> = (0..KEYS).map(|key| harness.cache.contains(&key)).collect();
            let installed = harness.run(op).filter(|&key| !resident_before[key as usize]);
            harness.check_invariants(op, installed);
        }
    }
}
