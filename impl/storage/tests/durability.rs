//! S1, S2, S7, S8, S12: what is acknowledged is durable, one fsync covers a group, epochs
//! and truncations are durable before their acks, and a restart rebuilds the same state.

mod common;

use common::{Gen, assert_pages_exact, open, seg};
use sixfold_core::{Epoch, Lsn, TruncationRange};
use sixfold_storage::{CrashMode, DiskOp, FaultKind, FaultyDisk, OpFilter, StorageError};

#[test]
fn ack_is_sent_only_after_fsync() {
    // S1: a batch is applied and acknowledged only by the flush that made it durable.
    let disk = FaultyDisk::new(1);
    let segment = seg(0, 0);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    let mut log = Gen::new(0, 1);
    let ticket = node
        .submit(segment, log.epoch, Lsn::ZERO, None, log.batch(5, 4))
        .unwrap();
    assert_eq!(
        node.segment_status(segment).unwrap().scl,
        Lsn::ZERO,
        "queued, not applied"
    );

    disk.inject(OpFilter::Only(DiskOp::Sync), FaultKind::Io, 0, 1);
    assert!(node.flush().unwrap_err().is_io());
    assert_eq!(
        node.segment_status(segment).unwrap().scl,
        Lsn::ZERO,
        "fsync failed: not applied"
    );

    let acks = node.flush().unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(
        (acks[0].ticket, acks[0].segment, acks[0].scl),
        (ticket, segment, Lsn(5))
    );
}

#[test]
fn crash_before_flush_loses_nothing_acknowledged() {
    // S1: the unflushed batch may vanish; the acknowledged one survives crash + restart.
    let disk = FaultyDisk::new(2);
    let segment = seg(0, 0);
    let mut log = Gen::new(0, 2);
    {
        let mut node = open(&disk);
        node.host_segment(segment).unwrap();
        node.submit(segment, log.epoch, Lsn::ZERO, None, log.batch(4, 4))
            .unwrap();
        assert_eq!(node.flush().unwrap()[0].scl, Lsn(4));
        node.submit(segment, log.epoch, Lsn::ZERO, None, log.batch(4, 4))
            .unwrap();
    }
    disk.crash_with(CrashMode::Random);
    let mut node = open(&disk);
    let status = node.segment_status(segment).unwrap();
    assert_eq!(
        status.scl,
        Lsn(4),
        "the acked batch is back, the unflushed one never left memory"
    );
    assert_pages_exact(&mut node, segment, &log, Lsn(4));
}

#[test]
fn acknowledged_records_survive_every_crash_point() {
    // S1, S12: for many seeds, a crash keeps every acknowledged record, whatever happens
    // to the unsynced tail.
    for seed in 0..40 {
        let disk = FaultyDisk::new(seed);
        let segment = seg(1, 3);
        let mut log = Gen::new(1, seed);
        let mut acked = Lsn::ZERO;
        {
            let mut node = open(&disk);
            node.host_segment(segment).unwrap();
            for round in 0..6 {
                node.submit(
                    segment,
                    log.epoch,
                    Lsn::ZERO,
                    None,
                    log.batch(1 + round % 3, 6),
                )
                .unwrap();
                if round % 2 == 0 {
                    acked = node.flush().unwrap().last().unwrap().scl;
                }
            }
            // The last batches are written but their fsync fails: never acknowledged.
            disk.inject(OpFilter::Syncs, FaultKind::Io, 0, 1);
            assert!(node.flush().is_err());
        }
        disk.crash();
        let mut node = open(&disk);
        let scl = node.segment_status(segment).unwrap().scl;
        assert!(
            scl >= acked,
            "seed {seed}: SCL {scl} below acknowledged {acked}"
        );
        assert_pages_exact(&mut node, segment, &log, scl);
    }
}

#[test]
fn new_log_file_needs_a_directory_fsync_before_the_ack() {
    // S1: a created file is durable only with its directory entry.
    let disk = FaultyDisk::new(3);
    let segment = seg(0, 0);
    let mut log = Gen::new(0, 3);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    node.submit(segment, log.epoch, Lsn::ZERO, None, log.batch(3, 4))
        .unwrap();
    disk.inject(OpFilter::Only(DiskOp::SyncDir), FaultKind::Io, 0, 1);
    assert!(
        node.flush().unwrap_err().is_io(),
        "no ack without the directory fsync"
    );
    drop(node);
    disk.crash_with(CrashMode::KeepUnsynced);
    let node = open(&disk);
    assert_eq!(
        node.segment_status(segment).unwrap().scl,
        Lsn::ZERO,
        "file entry was never durable"
    );
    drop(node);

    let mut node = open(&disk);
    node.submit(segment, log.epoch, Lsn::ZERO, None, log.all.clone())
        .unwrap();
    assert_eq!(node.flush().unwrap()[0].scl, Lsn(3));
    drop(node);
    disk.crash_with(CrashMode::DropUnsynced);
    assert_eq!(open(&disk).segment_status(segment).unwrap().scl, Lsn(3));
}

#[test]
fn one_fsync_covers_every_batch_queued_before_it() {
    // S2: group commit.
    let disk = FaultyDisk::new(4);
    let segment = seg(0, 0);
    let mut log = Gen::new(0, 4);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    // The first epoch is durable on its own (S7), so the flushes below only write records.
    node.raise_epoch(segment, log.epoch).unwrap();
    let mut tickets = Vec::new();
    for _ in 0..100 {
        tickets.push(
            node.submit(segment, log.epoch, Lsn::ZERO, None, log.batch(1, 8))
                .unwrap(),
        );
    }
    let before = disk.stats();
    let acks = node.flush().unwrap();
    let after = disk.stats();
    assert_eq!(after.syncs - before.syncs, 1, "one fsync for 100 batches");
    assert_eq!(
        after.dir_syncs - before.dir_syncs,
        1,
        "the new log file's directory entry"
    );
    assert_eq!(acks.iter().map(|a| a.ticket).collect::<Vec<_>>(), tickets);
    assert!(acks.iter().all(|a| a.scl == Lsn(100)));

    for _ in 0..50 {
        node.submit(segment, log.epoch, Lsn::ZERO, None, log.batch(1, 8))
            .unwrap();
    }
    let before = disk.stats();
    let files_before = node.segment_status(segment).unwrap().log_files;
    node.flush().unwrap();
    let after = disk.stats();
    let files_created = node.segment_status(segment).unwrap().log_files - files_before;
    assert_eq!(after.syncs - before.syncs, 1);
    assert_eq!(
        after.dir_syncs - before.dir_syncs,
        files_created as u64,
        "dir fsync only for a roll-over"
    );
    assert_eq!(
        node.flush().unwrap(),
        vec![],
        "nothing queued: no ack, no fsync"
    );
    assert_eq!(disk.stats().syncs, after.syncs);
}

#[test]
fn group_commit_over_segments_takes_one_fsync_per_segment_log() {
    // S2: every segment with queued records gets exactly one fsync.
    let disk = FaultyDisk::new(5);
    let mut node = open(&disk);
    let mut logs: Vec<Gen> = (0..3).map(|pg| Gen::new(pg, u64::from(pg))).collect();
    for log in &logs {
        node.host_segment(seg(log.pg.0, 2)).unwrap();
    }
    node.raise_epoch_all(logs[0].epoch).unwrap();
    for _ in 0..10 {
        for log in logs.iter_mut() {
            let batch = log.batch(2, 4);
            node.submit(seg(log.pg.0, 2), log.epoch, Lsn::ZERO, None, batch)
                .unwrap();
        }
    }
    let before = disk.stats();
    let acks = node.flush().unwrap();
    assert_eq!(acks.len(), 30);
    assert_eq!(disk.stats().syncs - before.syncs, 3);
}

#[test]
fn epoch_raise_is_durable_before_its_ack() {
    // S7, E5: a batch of a higher epoch raises the epoch durably; after a crash the old
    // writer is still refused.
    let disk = FaultyDisk::new(6);
    let segment = seg(0, 0);
    let mut log = Gen::new(0, 6);
    {
        let mut node = open(&disk);
        node.host_segment(segment).unwrap();
        node.submit(segment, Epoch(1), Lsn::ZERO, None, log.batch(2, 4))
            .unwrap();
        node.flush().unwrap();
        log.epoch = Epoch(3);
        node.submit(segment, Epoch(3), Lsn::ZERO, None, log.batch(1, 4))
            .unwrap();
        let acks = node.flush().unwrap();
        assert_eq!(acks[0].epoch, Epoch(3));
    }
    disk.crash_with(CrashMode::DropUnsynced);
    let mut node = open(&disk);
    assert_eq!(node.segment_status(segment).unwrap().epoch, Epoch(3));
    let mut stale = Gen::new(0, 99);
    let error = node
        .submit(segment, Epoch(2), Lsn::ZERO, None, stale.batch(1, 4))
        .unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::StaleEpoch {
                got: Epoch(2),
                seen: Epoch(3),
                ..
            }
        ),
        "{error}"
    );
    // An explicit raise is durable when it returns.
    node.raise_epoch(segment, Epoch(7)).unwrap();
    drop(node);
    disk.crash_with(CrashMode::DropUnsynced);
    assert_eq!(open(&disk).segment_status(segment).unwrap().epoch, Epoch(7));
}

#[test]
fn truncation_is_durable_before_its_ack_and_voids_its_range() {
    // S8: (b, e] voids held records, refuses later ones, survives a crash; SCL drops to
    // the chain point at or below b.
    let disk = FaultyDisk::new(7);
    let segment = seg(0, 0);
    let mut log = Gen::new(0, 7);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    node.submit(segment, Epoch(1), Lsn::ZERO, None, log.batch(10, 4))
        .unwrap();
    node.flush().unwrap();
    // Cache every page at LSN 10, voided records included.
    assert_pages_exact(&mut node, segment, &log, Lsn(10));
    let range = TruncationRange {
        lsn_begin: Lsn(6),
        lsn_end: Lsn(100),
        epoch: Epoch(2),
    };
    // S15: the recovery's Truncate makes the history held; then its batches carry it.
    node.truncate(segment, &[range]).unwrap();
    node.submit(segment, Epoch(2), Lsn::ZERO, Some(range), vec![])
        .unwrap();
    let acks = node.flush().unwrap();
    assert_eq!((acks[0].scl, acks[0].epoch), (Lsn(6), Epoch(2)));
    // The new epoch writes above the range (X7): a page the voided records touched must
    // not be read from a cached copy that includes them.
    let mut model = log.clone();
    model.all.truncate(6);
    model.epoch = Epoch(2);
    let page = log.all[9].page;
    let prev_page = model
        .all
        .iter()
        .rev()
        .find(|r| r.page == page)
        .map_or(Lsn::ZERO, |r| r.lsn);
    let after = sixfold_core::RedoRecord {
        lsn: Lsn(101),
        prev_lsn_pg: Lsn(6),
        prev_lsn_page: prev_page,
        epoch: Epoch(2),
        ..log.all[9].clone()
    };
    model.all.push(after.clone());
    node.submit(segment, Epoch(2), Lsn::ZERO, None, vec![after])
        .unwrap();
    assert_eq!(node.flush().unwrap()[0].scl, Lsn(101));
    assert_pages_exact(&mut node, segment, &model, Lsn(101));
    drop(node);
    disk.crash_with(CrashMode::DropUnsynced);
    let mut node = open(&disk);
    let status = node.segment_status(segment).unwrap();
    assert_eq!(
        (status.scl, status.epoch, status.records),
        (Lsn(101), Epoch(2), 7)
    );
    let voided = log.all[7].clone();
    let error = node
        .submit(segment, Epoch(2), Lsn::ZERO, None, vec![voided])
        .unwrap_err();
    assert!(
        matches!(error, StorageError::Truncated { lsn: Lsn(8), .. }),
        "{error}"
    );
    assert_pages_exact(&mut node, segment, &model, Lsn(6));
    assert_pages_exact(&mut node, segment, &model, Lsn(101));
}

#[test]
fn restart_rebuilds_the_state_it_had() {
    // S12: after flushes, checkpoints and collection, a restart has the same SCL, epoch,
    // records, checkpoint and pages.
    let disk = FaultyDisk::new(8);
    let segment = seg(2, 1);
    let mut log = Gen::new(2, 8);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    for round in 0..20 {
        let batch = log.batch(5, 6);
        let hint = log.last_lsn();
        node.submit(segment, log.epoch, hint, None, batch).unwrap();
        node.flush().unwrap();
        if round % 5 == 4 {
            node.set_pgmrpl(segment, Lsn(log.last_lsn().0 - 3)).unwrap();
            while node.background_step().unwrap() != Default::default() {}
        }
    }
    let before = node.segment_status(segment).unwrap();
    assert!(before.checkpoint > Lsn::ZERO && before.forgotten_through > Lsn::ZERO);
    assert!(before.log_files >= 1);
    let records_before = node.held_records(segment).unwrap();
    drop(node);
    disk.crash_with(CrashMode::Random);
    let mut node = open(&disk);
    let after = node.segment_status(segment).unwrap();
    assert_eq!(
        (
            after.scl,
            after.epoch,
            after.checkpoint,
            after.forgotten_through,
            after.records,
            after.damaged
        ),
        (
            before.scl,
            before.epoch,
            before.checkpoint,
            before.forgotten_through,
            before.records,
            false
        )
    );
    assert_eq!(node.held_records(segment).unwrap(), records_before);
    assert_pages_exact(&mut node, segment, &log, after.scl);
    assert_pages_exact(&mut node, segment, &log, before.pgmrpl.max(after.pgmrpl));
}

#[test]
fn a_flush_failing_at_one_segment_keeps_the_others_acks_for_the_next_flush() {
    // S1, S2: durable batches are acked (later), failed ones stay queued and are retried.
    let disk = FaultyDisk::new(9);
    let mut node = open(&disk);
    let mut logs: Vec<Gen> = (0..2).map(|pg| Gen::new(pg, 40 + u64::from(pg))).collect();
    for log in &logs {
        node.host_segment(seg(log.pg.0, 0)).unwrap();
    }
    node.raise_epoch_all(logs[0].epoch).unwrap();
    for log in logs.iter_mut() {
        let batch = log.batch(3, 4);
        node.submit(seg(log.pg.0, 0), log.epoch, Lsn::ZERO, None, batch)
            .unwrap();
    }
    // Segment pg0 syncs first and succeeds; pg1's fsync fails.
    disk.inject(OpFilter::Only(DiskOp::Sync), FaultKind::Io, 1, 1);
    assert!(node.flush().is_err());
    assert_eq!(
        node.segment_status(seg(0, 0)).unwrap().scl,
        Lsn(3),
        "pg0 is durable and applied"
    );
    assert_eq!(
        node.segment_status(seg(1, 0)).unwrap().scl,
        Lsn::ZERO,
        "pg1 is not"
    );
    let acks = node.flush().unwrap();
    let mut acked: Vec<_> = acks.iter().map(|a| (a.segment, a.scl)).collect();
    acked.sort();
    assert_eq!(acked, vec![(seg(0, 0), Lsn(3)), (seg(1, 0), Lsn(3))]);
    drop(node);
    disk.crash_with(CrashMode::DropUnsynced);
    let mut node = open(&disk);
    for log in &logs {
        assert_pages_exact(&mut node, seg(log.pg.0, 0), log, Lsn(3));
    }
}

#[test]
fn a_range_every_batch_carries_is_held_once_and_does_not_rewrite_the_metadata() {
    // S8, W5: a recovered writer sends its truncation range with every batch. The segment
    // holds it once, and a flush of a batch carrying a range it already holds writes no
    // metadata file (no directory fsync: the log file already exists).
    let disk = FaultyDisk::new(11);
    let segment = seg(0, 0);
    let mut node = open(&disk);
    node.host_segment(segment).unwrap();
    let range = TruncationRange {
        lsn_begin: Lsn::ZERO,
        lsn_end: Lsn(20),
        epoch: Epoch(2),
    };
    let mut log = Gen::new(0, 11);
    log.epoch = Epoch(2);
    // Records start above the range (X7).
    let records: Vec<_> = log
        .batch(30, 4)
        .into_iter()
        .filter(|record| record.lsn > Lsn(20))
        .collect();
    // S15: the recovery's Truncate makes the history held before any batch carries it.
    node.truncate(segment, &[range]).unwrap();
    node.submit(
        segment,
        Epoch(2),
        Lsn::ZERO,
        Some(range),
        vec![records[0].clone()],
    )
    .unwrap();
    node.flush().unwrap();
    let dir_syncs = disk.stats().dir_syncs;
    for record in &records[1..] {
        node.submit(
            segment,
            Epoch(2),
            Lsn::ZERO,
            Some(range),
            vec![record.clone()],
        )
        .unwrap();
        node.flush().unwrap();
    }
    assert_eq!(
        disk.stats().dir_syncs,
        dir_syncs,
        "a flush rewrote the metadata for a range the segment already held"
    );
    assert_eq!(node.report(segment).unwrap().truncations, vec![range]);
    drop(node);
    disk.crash_with(CrashMode::DropUnsynced);
    let node = open(&disk);
    assert_eq!(node.report(segment).unwrap().truncations, vec![range]);
}
