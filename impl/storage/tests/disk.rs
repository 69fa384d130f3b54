//! The disk layer: the fault-injecting disk keeps its promises (so the other tests mean
//! something), and the real disk runs the engine end to end.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Gen, assert_pages_exact, seg};
use sixfold_core::Lsn;
use sixfold_storage::{
    CrashMode, Disk, DiskOp, FaultKind, FaultyDisk, OpFilter, OpenMode, StdDisk, StorageNode,
};

fn setup(disk: &FaultyDisk) {
    disk.create_dir(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
}

#[test]
fn unsynced_bytes_and_undurable_entries_vanish_at_a_crash() {
    let disk = FaultyDisk::new(1);
    setup(&disk);
    let path = Path::new("/d/f");
    let mut file = disk.open(path, OpenMode::CreateNew).unwrap();
    file.append(b"synced").unwrap();
    file.sync().unwrap();
    file.append(b"-lost").unwrap();
    disk.crash_with(CrashMode::DropUnsynced);
    assert_eq!(
        disk.contents(path),
        None,
        "S1: the entry needs a directory fsync"
    );
    assert!(
        file.append(b"x").is_err(),
        "a handle does not survive a crash"
    );

    let mut file = disk.open(path, OpenMode::CreateNew).unwrap();
    file.append(b"synced").unwrap();
    file.sync().unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    file.append(b"-lost").unwrap();
    disk.crash_with(CrashMode::DropUnsynced);
    assert_eq!(disk.contents(path).unwrap(), b"synced");
}

#[test]
fn a_random_crash_keeps_a_prefix_of_unsynced_writes_possibly_torn() {
    let mut seen_torn = false;
    let mut seen_whole = false;
    for seed in 0..64 {
        let disk = FaultyDisk::new(seed);
        setup(&disk);
        let path = Path::new("/d/f");
        let mut file = disk.open(path, OpenMode::CreateNew).unwrap();
        file.append(b"base").unwrap();
        file.sync().unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        file.append(b"0123456789").unwrap();
        file.append(b"abcdefghij").unwrap();
        disk.crash();
        let bytes = disk.contents(path).unwrap();
        let full = b"base0123456789abcdefghij";
        assert!(
            bytes.len() >= 4 && full.starts_with(&bytes),
            "seed {seed}: a prefix: {bytes:?}"
        );
        seen_torn |= bytes.len() != 4 && bytes.len() != 14 && bytes.len() != 24;
        seen_whole |= bytes.len() == 24;
    }
    assert!(seen_torn && seen_whole);
}

#[test]
fn a_failed_fsync_drops_its_writes_from_the_durable_path() {
    // fsyncgate: a later successful fsync does not bring them back.
    let disk = FaultyDisk::new(2);
    setup(&disk);
    let path = Path::new("/d/f");
    let mut file = disk.open(path, OpenMode::CreateNew).unwrap();
    file.sync().unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    file.append(b"lost").unwrap();
    disk.inject(OpFilter::Only(DiskOp::Sync), FaultKind::Io, 0, 1);
    assert!(file.sync().is_err());
    file.append(b"kept").unwrap();
    file.sync().unwrap();
    assert_eq!(
        disk.contents(path).unwrap(),
        b"lostkept",
        "reads still see them"
    );
    disk.crash_with(CrashMode::DropUnsynced);
    assert_eq!(disk.contents(path).unwrap(), b"\0\0\0\0kept");
}

#[test]
fn injected_faults_hit_the_chosen_operations() {
    let disk = FaultyDisk::new(3);
    setup(&disk);
    let mut file = disk.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
    disk.inject(OpFilter::Only(DiskOp::Write), FaultKind::NoSpace, 1, 2);
    file.append(b"one").unwrap();
    let error = file.append(b"two").unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
    assert!(file.append(b"three").is_err());
    file.append(b"four").unwrap();
    disk.inject(OpFilter::Only(DiskOp::Write), FaultKind::TornWrite, 0, 1);
    assert!(file.append(b"0123456789").is_err());
    let bytes = disk.contents(Path::new("/d/f")).unwrap();
    assert!(
        bytes.starts_with(b"onefour") && bytes.len() < 17,
        "a strict prefix landed"
    );
    disk.flip_bit(Path::new("/d/f"), 0, 0).unwrap();
    assert_eq!(disk.contents(Path::new("/d/f")).unwrap()[0], b'o' ^ 1);
}

#[test]
fn the_engine_runs_on_the_real_disk() {
    // S1, S12 on std::fs: acked records come back after reopening.
    let dir = tempfile::tempdir().unwrap();
    let segment = seg(0, 0);
    let mut log = Gen::new(0, 5);
    {
        let mut node =
            StorageNode::open(Arc::new(StdDisk), dir.path().join("n"), common::config()).unwrap();
        node.host_segment(segment).unwrap();
        for _ in 0..20 {
            let batch = log.batch(4, 5);
            node.submit(segment, log.epoch, log.last_lsn(), None, batch)
                .unwrap();
            node.flush().unwrap();
        }
        node.set_pgmrpl(segment, Lsn(60)).unwrap();
        while node.background_step().unwrap() != Default::default() {}
        for _ in 0..node.scrub_files() {
            assert!(!node.scrub_step().unwrap().damaged);
        }
    }
    let mut node =
        StorageNode::open(Arc::new(StdDisk), dir.path().join("n"), common::config()).unwrap();
    let status = node.segment_status(segment).unwrap();
    assert_eq!(
        (status.scl, status.checkpoint, status.damaged),
        (Lsn(80), Lsn(60), false)
    );
    assert_pages_exact(&mut node, segment, &log, Lsn(60));
    assert_pages_exact(&mut node, segment, &log, Lsn(80));
}
