//! S13, S7, S8, R3, E2: bad input gets a typed error, and nothing accepted before is lost.

mod common;

use common::{Gen, assert_pages_exact, open, seg};
use sixfold_core::{Edit, Epoch, Lsn, PageId, PgId, RedoBody, RedoRecord, TruncationRange};
use sixfold_storage::{FaultyDisk, StorageError, StorageNode};

/// A node with ten acknowledged records of PG 0 at epoch 2.
fn loaded() -> (FaultyDisk, StorageNode, Gen) {
    let disk = FaultyDisk::new(9);
    let mut node = open(&disk);
    node.host_segment(seg(0, 0)).unwrap();
    node.host_segment(seg(1, 0)).unwrap();
    let mut log = Gen::new(0, 9);
    log.epoch = Epoch(2);
    node.submit(seg(0, 0), Epoch(2), Lsn::ZERO, None, log.batch(10, 3))
        .unwrap();
    node.flush().unwrap();
    (disk, node, log)
}

/// Nothing accepted before is lost: same records, same pages, even after a restart.
fn assert_intact(disk: &FaultyDisk, node: StorageNode, log: &Gen) {
    let held = node.held_records(seg(0, 0)).unwrap();
    assert_eq!(held, log.all[..10].to_vec());
    drop(node);
    disk.crash();
    let mut node = open(disk);
    assert_eq!(node.segment_status(seg(0, 0)).unwrap().scl, Lsn(10));
    assert_pages_exact(&mut node, seg(0, 0), log, Lsn(10));
}

fn next(log: &Gen, body: RedoBody) -> RedoRecord {
    RedoRecord {
        lsn: Lsn(11),
        pg: PgId(0),
        prev_lsn_pg: Lsn(10),
        prev_lsn_page: Lsn::ZERO,
        epoch: log.epoch,
        page: PageId::new(0, 5),
        cpl: true,
        body,
    }
}

fn refused(node: &mut StorageNode, log: &Gen, record: RedoRecord) -> StorageError {
    let error = node
        .submit(
            seg(0, 0),
            log.epoch,
            Lsn::ZERO,
            None,
            vec![log.all[0].clone(), record],
        )
        .unwrap_err();
    assert_eq!(
        node.queued_records(),
        0,
        "a refused batch queues nothing: {error}"
    );
    assert_eq!(node.flush().unwrap(), vec![]);
    error
}

#[test]
fn records_for_a_pg_not_hosted_are_refused() {
    // S13
    let (disk, mut node, log) = loaded();
    let mut other = next(
        &log,
        RedoBody::Edits(vec![Edit {
            offset: 0,
            bytes: vec![1],
        }]),
    );
    other.pg = PgId(7);
    let error = refused(&mut node, &log, other.clone());
    assert!(
        matches!(error, StorageError::PgNotHosted { pg: PgId(7) }),
        "{error}"
    );
    let error = node
        .submit(seg(7, 0), log.epoch, Lsn::ZERO, None, vec![other])
        .unwrap_err();
    assert!(
        matches!(error, StorageError::SegmentNotHosted { .. }),
        "{error}"
    );
    let error = node.host_segment(seg(0, 4)).unwrap_err();
    assert!(
        matches!(error, StorageError::PgAlreadyHosted { .. }),
        "Q6: {error}"
    );
    assert_intact(&disk, node, &log);
}

#[test]
fn stale_epochs_are_refused_for_writes_gossip_truncations_and_reads() {
    // S7, E2
    let (disk, mut node, log) = loaded();
    let record = next(
        &log,
        RedoBody::Edits(vec![Edit {
            offset: 0,
            bytes: vec![1],
        }]),
    );
    let stale = |error: StorageError| {
        matches!(
            error,
            StorageError::StaleEpoch {
                got: Epoch(1),
                seen: Epoch(2),
                ..
            }
        )
    };
    assert!(stale(
        node.submit(seg(0, 0), Epoch(1), Lsn::ZERO, None, vec![record.clone()])
            .unwrap_err()
    ));
    assert!(stale(
        node.handle_gossip(seg(0, 0), Epoch(1), &[], vec![record])
            .unwrap_err()
    ));
    let range = TruncationRange {
        lsn_begin: Lsn(3),
        lsn_end: Lsn(9),
        epoch: Epoch(1),
    };
    assert!(stale(node.truncate(seg(0, 0), &[range]).unwrap_err()));
    assert!(stale(node.raise_epoch(seg(0, 0), Epoch(1)).unwrap_err()));
    assert!(stale(
        node.get_page(seg(0, 0), Epoch(1), log.all[0].page, Lsn(10), Lsn(10))
            .unwrap_err()
    ));
    assert_intact(&disk, node, &log);
}

#[test]
fn records_inside_a_truncated_range_are_refused() {
    // S8, S13
    let (disk, mut node, log) = loaded();
    let range = TruncationRange {
        lsn_begin: Lsn(10),
        lsn_end: Lsn(20),
        epoch: Epoch(2),
    };
    node.truncate(seg(0, 0), &[range]).unwrap();
    let record = next(
        &log,
        RedoBody::Edits(vec![Edit {
            offset: 0,
            bytes: vec![1],
        }]),
    );
    let error = refused(&mut node, &log, record.clone());
    assert!(
        matches!(error, StorageError::Truncated { lsn: Lsn(11), .. }),
        "{error}"
    );
    // A batch carrying the held range (S15: its writer's own) is refused for the same record.
    let error = node
        .submit(
            seg(0, 0),
            Epoch(2),
            Lsn::ZERO,
            Some(range),
            vec![record.clone()],
        )
        .unwrap_err();
    assert!(matches!(error, StorageError::Truncated { .. }), "{error}");
    // S15: another range of the held epoch is not this writer's: refused, nothing voided.
    let error = node
        .submit(
            seg(0, 0),
            Epoch(2),
            Lsn::ZERO,
            Some(TruncationRange {
                lsn_begin: Lsn(10),
                lsn_end: Lsn(30),
                epoch: Epoch(2),
            }),
            vec![record],
        )
        .unwrap_err();
    assert!(
        matches!(error, StorageError::BadTruncation { .. }),
        "{error}"
    );
    let error = node
        .truncate(
            seg(0, 0),
            &[TruncationRange {
                lsn_begin: Lsn(9),
                lsn_end: Lsn(3),
                // S15: newer than the held history, else it would be a no-op.
                epoch: Epoch(3),
            }],
        )
        .unwrap_err();
    assert!(
        matches!(error, StorageError::BadTruncation { .. }),
        "{error}"
    );
    assert_intact(&disk, node, &log);
}

#[test]
fn oversize_and_malformed_records_are_refused() {
    // S13, L4, L3
    let (disk, mut node, log) = loaded();
    let edit = |offset: u16, len: usize| Edit {
        offset,
        bytes: vec![7; len],
    };
    let oversize = next(
        &log,
        RedoBody::Edits((0..3).map(|i| edit(i * 1000, 3000)).collect()),
    );
    let error = refused(&mut node, &log, oversize);
    assert!(
        matches!(error, StorageError::Oversize { lsn: Lsn(11), .. }),
        "{error}"
    );
    let too_many = next(
        &log,
        RedoBody::Edits((0..70_000).map(|_| edit(0, 1)).collect()),
    );
    let error = refused(&mut node, &log, too_many);
    assert!(matches!(error, StorageError::Oversize { .. }), "{error}");

    let malformed = [
        next(&log, RedoBody::FullImage(vec![1; 100])),
        next(&log, RedoBody::Edits(vec![edit(4090, 10)])),
        next(&log, RedoBody::Edits(vec![edit(0, 0)])),
        RedoRecord {
            lsn: Lsn::ZERO,
            prev_lsn_pg: Lsn::ZERO,
            ..next(&log, RedoBody::Edits(vec![edit(0, 1)]))
        },
        RedoRecord {
            prev_lsn_pg: Lsn(11),
            ..next(&log, RedoBody::Edits(vec![edit(0, 1)]))
        },
        RedoRecord {
            prev_lsn_page: Lsn(12),
            ..next(&log, RedoBody::Edits(vec![edit(0, 1)]))
        },
    ];
    for record in malformed {
        let error = refused(&mut node, &log, record.clone());
        assert!(
            matches!(error, StorageError::Malformed { .. }),
            "{record:?}: {error}"
        );
    }
    let mut changed = log.all[4].clone();
    changed.cpl = !changed.cpl;
    let error = refused(&mut node, &log, changed);
    assert!(
        matches!(error, StorageError::DuplicateMismatch { lsn: Lsn(5), .. }),
        "S3: {error}"
    );
    // A true duplicate changes nothing (S3).
    node.submit(
        seg(0, 0),
        log.epoch,
        Lsn::ZERO,
        None,
        log.all[..10].to_vec(),
    )
    .unwrap();
    assert_eq!(node.flush().unwrap()[0].scl, Lsn(10));
    assert_intact(&disk, node, &log);
}

#[test]
fn a_full_queue_pushes_back() {
    // A limit on everything: the group-commit queue is bounded in bytes.
    let (_disk, mut node, mut log) = loaded();
    let mut queued = 0;
    let error = loop {
        let image = RedoBody::FullImage(vec![queued as u8; sixfold_core::PAGE_BYTES]);
        let page = log.page(0, 1);
        let record = log.record(page, image);
        match node.submit(seg(0, 0), log.epoch, Lsn::ZERO, None, vec![record]) {
            Ok(_) => queued += 1,
            Err(error) => break error,
        }
        assert!(queued < 1000, "the queue must be bounded");
    };
    assert!(matches!(error, StorageError::QueueFull { .. }), "{error}");
    assert_eq!(node.flush().unwrap().len(), queued);
    log.all.pop(); // the refused record was never stored
    assert_pages_exact(&mut node, seg(0, 0), &log, log.all.last().unwrap().lsn);
}

#[test]
fn bad_reads_get_typed_errors() {
    // R3, W2
    let (disk, mut node, log) = loaded();
    let page = log.all[0].page;
    let read = |node: &mut StorageNode, page: PageId, read_lsn: u64, required: u64| {
        node.get_page(seg(0, 0), log.epoch, page, Lsn(read_lsn), Lsn(required))
            .unwrap_err()
    };
    let error = read(&mut node, PageId::new(0, 40), 10, 10);
    assert!(
        matches!(error, StorageError::WrongPage { pg: PgId(2), .. }),
        "{error}"
    );
    let error = read(&mut node, page, 12, 12);
    assert!(
        matches!(
            error,
            StorageError::NotCaughtUp {
                required: Lsn(12),
                scl: Lsn(10),
                ..
            }
        ),
        "{error}"
    );
    let error = read(&mut node, page, 5, 6);
    assert!(
        matches!(error, StorageError::RequiredAboveReadPoint { .. }),
        "{error}"
    );
    node.set_pgmrpl(seg(0, 0), Lsn(6)).unwrap();
    let error = read(&mut node, page, 5, 5);
    assert!(
        matches!(error, StorageError::BelowPgmrpl { pgmrpl: Lsn(6), .. }),
        "{error}"
    );
    let error = node
        .get_page(seg(3, 0), log.epoch, page, Lsn(10), Lsn(10))
        .unwrap_err();
    assert!(
        matches!(error, StorageError::SegmentNotHosted { .. }),
        "{error}"
    );
    assert_intact(&disk, node, &log);
}

#[test]
fn malformed_gossip_is_refused_whole() {
    // S6, L5: a gossip answer is checked like a write.
    let (disk, mut node, log) = loaded();
    let mut bad = next(
        &log,
        RedoBody::Edits(vec![Edit {
            offset: 4095,
            bytes: vec![1, 2],
        }]),
    );
    let error = node
        .handle_gossip(seg(0, 0), log.epoch, &[], vec![bad.clone()])
        .unwrap_err();
    assert!(matches!(error, StorageError::Malformed { .. }), "{error}");
    bad.pg = PgId(1);
    let error = node
        .handle_gossip(seg(0, 0), log.epoch, &[], vec![bad])
        .unwrap_err();
    assert!(matches!(error, StorageError::PgNotHosted { .. }), "{error}");
    assert_eq!(node.queued_records(), 0);
    assert_intact(&disk, node, &log);
}

#[test]
fn a_configuration_that_cannot_work_is_refused() {
    let disk = FaultyDisk::new(10);
    let bad = [
        sixfold_storage::StorageConfig {
            cache_shards: 0,
            ..common::config()
        },
        sixfold_storage::StorageConfig {
            queue_bytes_max: 100,
            ..common::config()
        },
        sixfold_storage::StorageConfig {
            checkpoint_pages_per_step: 0,
            ..common::config()
        },
    ];
    for config in bad {
        let error =
            StorageNode::open(std::sync::Arc::new(disk.clone()), common::DIR, config).unwrap_err();
        assert!(matches!(error, StorageError::BadConfig { .. }), "{error}");
    }
}
