//! R3, S9, S10: get_page returns the page exactly as of the read point, whatever was
//! materialized, cached, flushed or collected, compared with a brute-force model.

mod common;

use common::{Gen, assert_pages_exact, open, seg};
use proptest::prelude::*;
use sixfold_core::{Lsn, RedoBody};
use sixfold_storage::{FaultyDisk, StorageError};

#[derive(Clone, Debug)]
enum Op {
    /// Records over the first `pages` pages; every third is a full image.
    Write {
        records: usize,
        pages: u32,
    },
    Flush,
    /// Records delivered out of order (S3): the later half is made durable first.
    Reordered {
        records: usize,
        pages: u32,
    },
    /// Raise PGMRPL to this fraction (of 8) of the way from it to SCL.
    Pgmrpl(u8),
    Background,
    /// Read every page at this fraction (of 8) of the way from PGMRPL to SCL.
    Read(u8),
    Restart,
    ClearCache,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..6, 1u32..6).prop_map(|(records, pages)| Op::Write { records, pages }),
        3 => Just(Op::Flush),
        2 => (2usize..8, 1u32..4).prop_map(|(records, pages)| Op::Reordered { records, pages }),
        2 => (0u8..=8).prop_map(Op::Pgmrpl),
        3 => Just(Op::Background),
        3 => (0u8..=8).prop_map(Op::Read),
        1 => Just(Op::Restart),
        1 => Just(Op::ClearCache),
    ]
}

fn between(low: Lsn, high: Lsn, eighths: u8) -> Lsn {
    Lsn(low.0 + (high.0 - low.0) * u64::from(eighths) / 8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn get_page_equals_the_brute_force_model(seed in 0u64..1_000, ops in prop::collection::vec(op(), 1..60)) {
        // R3, S9, S10: the incremental engine against "apply every record ≤ read point".
        let disk = FaultyDisk::new(seed);
        let segment = seg(0, 0);
        let mut node = open(&disk);
        node.host_segment(segment).unwrap();
        let mut log = Gen::new(0, seed);
        for op in ops {
            match op {
                Op::Write { records, pages } => {
                    let batch: Vec<_> = (0..records)
                        .map(|i| {
                            if (log.last_lsn().0 + i as u64) % 3 == 2 {
                                let index = (log.random() % u64::from(pages)) as u32;
                                let page = log.page(0, index);
                                let image = (0..sixfold_core::PAGE_BYTES).map(|_| log.random() as u8).collect();
                                log.record(page, RedoBody::FullImage(image))
                            } else {
                                log.random_edit(pages)
                            }
                        })
                        .collect();
                    // The writer's VDL lags its last LSN a little (W5).
                    let hint = Lsn(log.last_lsn().0.saturating_sub(2));
                    node.submit(segment, log.epoch, hint, None, batch).unwrap();
                }
                Op::Flush => {
                    node.flush().unwrap();
                }
                Op::Reordered { records, pages } => {
                    let mut batch = log.batch(records, pages);
                    let early = batch.split_off(records / 2);
                    let hint = Lsn(log.last_lsn().0.saturating_sub(2));
                    node.submit(segment, log.epoch, hint, None, early).unwrap();
                    node.flush().unwrap();
                    let status = node.segment_status(segment).unwrap();
                    assert_pages_exact(&mut node, segment, &log, status.scl);
                    node.submit(segment, log.epoch, hint, None, batch).unwrap();
                }
                Op::Pgmrpl(eighths) => {
                    let status = node.segment_status(segment).unwrap();
                    node.set_pgmrpl(segment, between(status.pgmrpl, status.scl, eighths)).unwrap();
                }
                Op::Background => {
                    node.background_step().unwrap();
                }
                Op::Read(eighths) => {
                    let status = node.segment_status(segment).unwrap();
                    let read = between(status.pgmrpl, status.scl, eighths);
                    assert_pages_exact(&mut node, segment, &log, read);
                }
                Op::Restart => {
                    node.flush().unwrap();
                    drop(node);
                    disk.crash();
                    node = open(&disk);
                }
                Op::ClearCache => node.clear_cache(),
            }
        }
        node.flush().unwrap();
        let status = node.segment_status(segment).unwrap();
        prop_assert_eq!(status.scl, log.last_lsn());
        prop_assert!(!status.damaged);
        assert_pages_exact(&mut node, segment, &log, status.pgmrpl);
        assert_pages_exact(&mut node, segment, &log, status.scl);
    }
}

#[test]
fn collection_below_pgmrpl_keeps_reads_at_or_above_it_exact() {
    // S10, R3: records and versions below PGMRPL go; reads at or above stay exact; reads
    // below are refused.
    let disk = FaultyDisk::new(3);
    let segment = seg(0, 0);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    let mut log = Gen::new(0, 3);
    for _ in 0..40 {
        let batch = log.batch(5, 4);
        node.submit(segment, log.epoch, log.last_lsn(), None, batch)
            .unwrap();
        node.flush().unwrap();
    }
    let before = node.segment_status(segment).unwrap();
    assert_eq!(before.records, 200);
    node.set_pgmrpl(segment, Lsn(150)).unwrap();
    while node.background_step().unwrap() != Default::default() {}
    let after = node.segment_status(segment).unwrap();
    assert_eq!(after.checkpoint, Lsn(150));
    assert_eq!(after.forgotten_through, Lsn(150));
    assert_eq!(after.records, 50, "records ≤ PGMRPL collected");
    assert!(
        after.log_files < before.log_files,
        "whole old log files removed"
    );
    for page in log.pages() {
        let versions = node.page_versions(segment, page).unwrap();
        assert!(
            versions.iter().filter(|v| **v <= Lsn(150)).count() <= 1,
            "S10: only the newest version ≤ PGMRPL stays: {versions:?}"
        );
    }
    for read in [150, 151, 170, 199, 200] {
        assert_pages_exact(&mut node, segment, &log, Lsn(read));
    }
    let error = node
        .get_page(segment, log.epoch, log.all[0].page, Lsn(149), Lsn(149))
        .unwrap_err();
    assert!(matches!(error, StorageError::BelowPgmrpl { .. }), "{error}");
    node.clear_cache();
    for read in [150, 185, 200] {
        assert_pages_exact(&mut node, segment, &log, Lsn(read));
    }
    drop(node);
    disk.crash();
    let mut node = open(&disk);
    for read in [150, 185, 200] {
        assert_pages_exact(&mut node, segment, &log, Lsn(read));
    }
}

#[test]
fn redo_lands_on_cached_pages_first() {
    // Step 5 through the cache: a page read once is cached; later records are applied to
    // it in place, so the next read at the new VDL is a cache hit with no disk read.
    let disk = FaultyDisk::new(4);
    let segment = seg(0, 0);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    let mut log = Gen::new(0, 4);
    let page = log.page(0, 0);
    let edit = |log: &mut Gen, byte: u8| {
        log.record(
            page,
            RedoBody::Edits(vec![sixfold_core::Edit {
                offset: 10,
                bytes: vec![byte],
            }]),
        )
    };
    let first = edit(&mut log, 1);
    node.submit(segment, log.epoch, Lsn(1), None, vec![first])
        .unwrap();
    node.flush().unwrap();
    node.get_page(segment, log.epoch, page, Lsn(1), Lsn(1))
        .unwrap();
    let batch: Vec<_> = (2..=20).map(|b| edit(&mut log, b)).collect();
    node.submit(segment, log.epoch, Lsn(20), None, batch)
        .unwrap();
    node.flush().unwrap();
    let reads_before = disk.stats().reads;
    let hits_before = node.cache_stats().hits;
    let image = node
        .get_page(segment, log.epoch, page, Lsn(20), Lsn(20))
        .unwrap();
    assert_eq!((image.lsn, image.bytes[10]), (Lsn(20), 20));
    assert_eq!(node.cache_stats().hits, hits_before + 1);
    assert_eq!(disk.stats().reads, reads_before, "served from the cache");
    // The flusher writes the dirty page out later.
    node.background_step().unwrap();
    assert_eq!(node.page_versions(segment, page).unwrap(), vec![Lsn(20)]);
    // And a read in the past still rebuilds from the log.
    let old = node
        .get_page(segment, log.epoch, page, Lsn(7), Lsn(7))
        .unwrap();
    assert_eq!((old.lsn, old.bytes[10]), (Lsn(7), 7));
}
