//! S17, S18: a segment whose metadata is lost, and a disk that refuses writes, on the
//! fault-injecting disk.

mod common;

use std::path::{Path, PathBuf};

use common::{DIR, Gen, assert_pages_exact, open, repair_from, seg, try_open};
use sixfold_core::Lsn;
use sixfold_storage::meta::META_FILE;
use sixfold_storage::{Damage, Disk, FaultKind, FaultyDisk, OpFilter, StorageError};

fn meta_path(segment: sixfold_core::SegmentId) -> PathBuf {
    Path::new(DIR).join(segment.to_string()).join(META_FILE)
}

/// Two replicas of PG 0 on two disks, both holding `count` acknowledged records.
fn two_replicas(count: usize) -> (FaultyDisk, FaultyDisk, Gen) {
    let (disk, peer_disk) = (FaultyDisk::new(1), FaultyDisk::new(2));
    let mut log = Gen::new(0, 7);
    let records = log.batch(count, 6);
    for (disk, replica) in [(&disk, 0), (&peer_disk, 1)] {
        let mut node = open(disk);
        node.host_segment(seg(0, replica)).unwrap();
        node.submit(seg(0, replica), log.epoch, Lsn::ZERO, None, records.clone())
            .unwrap();
        assert_eq!(node.flush().unwrap().len(), 1);
    }
    (disk, peer_disk, log)
}

/// Reopens `disk` with its segment's metadata lost (by `lose`), then repairs the segment
/// from the peer: every acknowledged record comes back and reads are exact.
fn lose_meta_and_repair(lose: impl Fn(&FaultyDisk, &Path)) {
    let (disk, peer_disk, log) = two_replicas(40);
    let segment = seg(0, 0);
    lose(&disk, &meta_path(segment));
    let mut node = try_open(&disk).expect("a lost meta does not stop the node (S17)");
    assert_eq!(node.rebuilt_segments(), &[segment]);
    let status = node.segment_status(segment).unwrap();
    assert!(status.damaged, "S17: marked damaged until repaired");
    assert!(matches!(status.damage[0], Damage::MetaLost { .. }));
    assert_eq!(status.records, 0, "its untrusted files are not read back");
    // It takes writes again at once: the log files it had are gone, not in the way.
    let peer = open(&peer_disk);
    repair_from(&mut node, segment, &peer, seg(0, 1), log.last_lsn(), 10);
    let status = node.segment_status(segment).unwrap();
    assert_eq!(status.scl, log.last_lsn(), "S6: filled from the peer");
    assert!(!status.damaged, "repaired once gossip left no hole");
    assert_pages_exact(&mut node, segment, &log, log.last_lsn());
    // And it stays repaired across a restart.
    drop(node);
    let node = open(&disk);
    assert!(node.rebuilt_segments().is_empty());
    assert_eq!(node.segment_status(segment).unwrap().scl, log.last_lsn());
}

#[test]
fn a_deleted_meta_file_rebuilds_the_segment_from_its_peer() {
    // S17: the case: `meta` deleted while the segment holds records.
    lose_meta_and_repair(|disk, path| Disk::remove(disk, path).unwrap());
}

#[test]
fn a_corrupt_meta_file_rebuilds_the_segment_from_its_peer() {
    // S17: a meta that fails its CRC does not stop the node either.
    lose_meta_and_repair(|disk, path| disk.flip_bit(path, 12, 3).unwrap());
}

#[test]
fn an_empty_segment_dir_without_meta_is_still_not_a_segment() {
    // A hosting that never wrote its metadata leaves an empty directory: not rebuilt.
    let disk = FaultyDisk::new(3);
    let node = open(&disk);
    drop(node);
    Disk::create_dir(&disk, &Path::new(DIR).join("pg4.2")).unwrap();
    let node = open(&disk);
    assert!(node.segments().is_empty());
    assert!(node.rebuilt_segments().is_empty());
}

#[test]
fn a_disk_that_refuses_writes_blocks_only_its_segment_and_queues_nothing_more() {
    // S18: the group commit fails; later batches are refused with a typed error naming the
    // segment (each refusal retries the commit), the queue does not grow, and once the
    // disk takes writes again the queued batch is acknowledged and nothing is lost.
    let disk = FaultyDisk::new(4);
    let mut node = open(&disk);
    let segment = seg(0, 0);
    node.host_segment(segment).unwrap();
    let mut log = Gen::new(0, 9);
    let first = node
        .submit(segment, log.epoch, Lsn::ZERO, None, log.batch(5, 4))
        .unwrap();
    disk.inject(OpFilter::Mutations, FaultKind::NoSpace, 0, u64::MAX);
    let outcome = node.flush_each();
    assert!(outcome.acks.is_empty());
    assert_eq!(outcome.failed.len(), 1);
    let queued = node.queued_records();
    for _ in 0..20 {
        let refused = node.submit(segment, log.epoch, Lsn::ZERO, None, log.batch(5, 4));
        assert!(
            matches!(refused, Err(StorageError::SegmentBlocked { segment: s, .. }) if s == segment),
            "{refused:?}"
        );
    }
    assert_eq!(
        node.queued_records(),
        queued,
        "no queue grows while blocked"
    );
    let status = node.segment_status(segment).unwrap();
    assert!(
        status.write_error.is_some(),
        "status says the segment is blocked"
    );
    disk.clear_faults();
    // The next batch retries the commit first; it needs the records refused above again
    // (a writer resends them), so resend everything after the first batch.
    let mut resent = log.all[5..].to_vec();
    resent.truncate(100);
    let second = node
        .submit(segment, log.epoch, Lsn::ZERO, None, resent)
        .unwrap();
    let acks = node.flush_each();
    assert!(acks.failed.is_empty());
    let tickets: Vec<_> = acks.acks.iter().map(|a| a.ticket).collect();
    assert!(
        tickets.contains(&first) && tickets.contains(&second),
        "{tickets:?}"
    );
    assert_eq!(node.segment_status(segment).unwrap().scl, log.last_lsn());
    assert!(node.segment_status(segment).unwrap().write_error.is_none());
}
