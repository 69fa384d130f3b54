//! S11, S12, S9: torn tails are cut, damage in the middle of a log marks the segment
//! damaged and is repaired from a peer through gossip, scrub and reads verify CRCs, and a
//! page is never built from a record that failed its CRC.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{
    DIR, Gen, assert_nothing_corrupt_served, assert_pages_exact, open, repair_from, seg, try_open,
};
use sixfold_core::codec::record_frame_bytes;
use sixfold_core::{Lsn, PageId};
use sixfold_storage::{
    CrashMode, Damage, Disk, DiskOp, FaultKind, FaultyDisk, OpFilter, OpenMode, StorageError,
};

fn log_path(segment: &str, seq: u64) -> PathBuf {
    PathBuf::from(format!("{DIR}/{segment}/log-{seq:020}.sxr"))
}

/// A node and a healthy peer holding the same ten records of PG 0, in one log file each.
fn pair(
    seed: u64,
) -> (
    FaultyDisk,
    sixfold_storage::StorageNode,
    sixfold_storage::StorageNode,
    Gen,
) {
    let disk = FaultyDisk::new(seed);
    let peer_disk = FaultyDisk::new(seed + 1);
    let mut node = open(&disk);
    let mut peer = open(&peer_disk);
    node.host_segment(seg(0, 0)).unwrap();
    peer.host_segment(seg(0, 1)).unwrap();
    let mut log = Gen::new(0, seed);
    let batch = log.batch(10, 3);
    for (target, segment) in [(&mut node, seg(0, 0)), (&mut peer, seg(0, 1))] {
        target
            .submit(segment, log.epoch, Lsn::ZERO, None, batch.clone())
            .unwrap();
        target.flush().unwrap();
    }
    (disk, node, peer, log)
}

fn frame_offset(log: &Gen, lsn: u64) -> u64 {
    log.all
        .iter()
        .take_while(|r| r.lsn.0 < lsn)
        .map(|r| record_frame_bytes(r) as u64)
        .sum()
}

fn reopen(disk: &FaultyDisk, node: sixfold_storage::StorageNode) -> sixfold_storage::StorageNode {
    drop(node);
    disk.crash_with(CrashMode::DropUnsynced);
    open(disk)
}

#[test]
fn torn_tail_is_cut_on_restart_and_acked_records_stay() {
    // S12: a write torn mid-frame (and not cut, because the cut failed too) is found at
    // restart, cut, and is not damage.
    let (disk, mut node, _peer, mut log) = pair(1);
    node.submit(seg(0, 0), log.epoch, Lsn::ZERO, None, log.batch(3, 3))
        .unwrap();
    disk.inject(OpFilter::Only(DiskOp::Write), FaultKind::TornWrite, 0, 1);
    disk.inject(OpFilter::Only(DiskOp::SetLen), FaultKind::Io, 0, 1);
    assert!(node.flush().unwrap_err().is_io());
    let path = log_path("pg0.0", 1);
    let torn_len = disk.contents(&path).unwrap().len() as u64;
    // The torn write may hold whole frames of the batch before the torn one.
    let valid_len = (10..=13)
        .map(|lsn| frame_offset(&log, lsn + 1))
        .filter(|&end| end <= torn_len)
        .max()
        .unwrap();
    assert!(torn_len > valid_len, "a torn frame sits at the tail");
    drop(node);
    disk.crash_with(CrashMode::KeepUnsynced);
    let mut node = open(&disk);
    assert_eq!(
        disk.contents(&path).unwrap().len() as u64,
        valid_len,
        "the tail was cut"
    );
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert!(status.scl >= Lsn(10) && !status.damaged, "{status:?}");
    assert_eq!(status.tail_cuts, 1, "the cut is reported");
    assert_pages_exact(&mut node, seg(0, 0), &log, status.scl);
}

#[test]
fn mid_log_bit_flip_marks_damage_serves_what_verified_and_gossip_repairs_it() {
    // S11, S9, L5, S6: record 4's body fails its CRC; the segment restarts damaged with
    // SCL stopped at 3, serves pages as of 3, refuses reads past the damage, and a gossip
    // round with a healthy peer brings record 4 back.
    let (disk, node, peer, log) = pair(2);
    let path = log_path("pg0.0", 1);
    disk.flip_bit(&path, frame_offset(&log, 4) + 64 + 3, 5)
        .unwrap();
    let mut node = reopen(&disk, node);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert!(status.damaged);
    assert!(
        matches!(
            status.damage.as_slice(),
            [Damage::Record {
                lsn: Some(Lsn(4)),
                ..
            }]
        ),
        "{:?}",
        status.damage
    );
    assert_eq!(status.scl, Lsn(3), "SCL stops below the damage");
    assert_eq!(status.records, 9, "every record that verified is kept");
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(3));
    let page = log.all[3].page;
    let error = node
        .get_page(seg(0, 0), log.epoch, page, Lsn(10), Lsn(10))
        .unwrap_err();
    assert!(
        matches!(error, StorageError::NotCaughtUp { scl: Lsn(3), .. }),
        "{error}"
    );

    let request = node.gossip_request(seg(0, 0)).unwrap();
    assert_eq!(request.holes.len(), 1, "S5: one hole where record 4 was");
    repair_from(&mut node, seg(0, 0), &peer, seg(0, 1), Lsn(10), 3);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!((status.scl, status.damaged), (Lsn(10), false));
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(10));

    // The damaged file was rewritten: the next restart is clean.
    let mut node = reopen(&disk, node);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!((status.scl, status.damaged), (Lsn(10), false));
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(10));
}

#[test]
fn a_flip_in_a_frame_header_is_damage_of_unknown_lsn_until_gossip_fills_the_holes() {
    // S11: the header itself fails, so the LSN is unknown; SCL still stops at the hole.
    let (disk, node, peer, log) = pair(3);
    disk.flip_bit(&log_path("pg0.0", 1), frame_offset(&log, 6) + 17, 0)
        .unwrap();
    let mut node = reopen(&disk, node);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert!(matches!(
        status.damage.as_slice(),
        [Damage::Record { lsn: None, .. }]
    ));
    assert_eq!(status.scl, Lsn(5));
    assert_nothing_corrupt_served(&mut node, seg(0, 0), &log, Lsn(5));
    repair_from(&mut node, seg(0, 0), &peer, seg(0, 1), Lsn(10), 3);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!((status.scl, status.damaged), (Lsn(10), false));
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(10));
}

#[test]
fn a_damaged_last_frame_is_cut_and_repaired_from_the_peer() {
    // S12, S11: a flip in the last frame looks like a torn tail and is cut; as the frame
    // was whole it is also recorded as damage, and gossip brings the record back.
    let (disk, node, peer, log) = pair(4);
    disk.flip_bit(&log_path("pg0.0", 1), frame_offset(&log, 10) + 70, 1)
        .unwrap();
    let mut node = reopen(&disk, node);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!(status.scl, Lsn(9));
    assert!(matches!(
        status.damage.as_slice(),
        [Damage::Record {
            lsn: Some(Lsn(10)),
            ..
        }]
    ));
    repair_from(&mut node, seg(0, 0), &peer, seg(0, 1), Lsn(10), 3);
    assert_eq!(node.segment_status(seg(0, 0)).unwrap().scl, Lsn(10));
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(10));
}

#[test]
fn scrub_finds_a_flipped_log_bit_and_rewrites_the_file_from_verified_memory() {
    // S11: on a schedule, every record frame is verified; a damaged file is rewritten.
    let (disk, mut node, _peer, log) = pair(5);
    let path = log_path("pg0.0", 1);
    disk.flip_bit(&path, frame_offset(&log, 2) + 66, 2).unwrap();
    let mut found = false;
    for _ in 0..node.scrub_files() {
        let work = node.scrub_step().unwrap();
        found |= work.damaged && work.file.as_deref() == Some(path.as_path());
    }
    assert!(found, "scrub reported the damaged file");
    assert!(
        disk.contents(&path).is_none(),
        "the damaged file was replaced"
    );
    for _ in 0..node.scrub_files() {
        assert!(
            !node.scrub_step().unwrap().damaged,
            "a second pass is clean"
        );
    }
    let mut node = reopen(&disk, node);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!(
        (status.scl, status.damaged, status.records),
        (Lsn(10), false, 10)
    );
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(10));
}

/// A node whose PG-0 pages have checkpointed versions (covers) at PGMRPL 8 and held
/// records above.
fn checkpointed(seed: u64) -> (FaultyDisk, sixfold_storage::StorageNode, Gen) {
    let disk = FaultyDisk::new(seed);
    let mut node = open(&disk);
    node.host_segment(seg(0, 0)).unwrap();
    let mut log = Gen::new(0, seed);
    let batch = log.batch(12, 3);
    node.submit(seg(0, 0), log.epoch, Lsn(12), None, batch)
        .unwrap();
    node.flush().unwrap();
    node.set_pgmrpl(seg(0, 0), Lsn(8)).unwrap();
    while node.background_step().unwrap() != Default::default() {}
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!(status.checkpoint, Lsn(8));
    (disk, node, log)
}

fn page_file(disk: &FaultyDisk) -> PathBuf {
    disk.files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "sxp"))
        .expect("a page file")
}

/// The offset of the frame holding `page`@`lsn` in `path`.
fn page_frame(disk: &FaultyDisk, path: &Path, page: PageId, lsn: Lsn) -> u64 {
    let bytes = disk.contents(path).unwrap();
    let frame = sixfold_core::codec::PAGE_FRAME_BYTES;
    (0..bytes.len() / frame)
        .map(|i| i * frame)
        .find(|&at| {
            sixfold_core::codec::decode_page(&bytes[at..at + frame])
                .is_ok_and(|image| image.page == page && image.lsn == lsn)
        })
        .expect("frame present") as u64
}

#[test]
fn every_page_read_verifies_the_version_crc_and_never_serves_a_bad_one() {
    // S11 "on every read", S9: a flipped bit in a checkpointed version whose records are
    // collected makes the page unavailable (typed error), never wrong.
    let (disk, mut node, log) = checkpointed(6);
    let page = log.all.iter().rev().find(|r| r.lsn <= Lsn(8)).unwrap().page;
    let cover = log.page_at(page, Lsn(8)).1;
    let path = page_file(&disk);
    disk.flip_bit(&path, page_frame(&disk, &path, page, cover) + 200, 3)
        .unwrap();
    node.clear_cache();
    let error = node
        .get_page(seg(0, 0), log.epoch, page, Lsn(12), Lsn(12))
        .unwrap_err();
    assert!(
        matches!(error, StorageError::PageUnavailable { .. }),
        "{error}"
    );
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert!(matches!(status.damage.as_slice(), [Damage::Page { lsn, .. }] if *lsn == cover));
    // Every other page still reads exactly.
    for other in log.pages().into_iter().filter(|p| *p != page) {
        let image = node
            .get_page(seg(0, 0), log.epoch, other, Lsn(12), Lsn(12))
            .unwrap();
        assert_eq!(image.bytes, log.page_at(other, Lsn(12)).0);
    }
    // After a restart the page directory still knows the version is missing.
    let mut node = reopen(&disk, node);
    assert!(node.segment_status(seg(0, 0)).unwrap().damaged);
    assert!(
        node.get_page(seg(0, 0), log.epoch, page, Lsn(12), Lsn(12))
            .is_err()
    );
    assert_nothing_corrupt_served(&mut node, seg(0, 0), &log, Lsn(12));
}

#[test]
fn a_damaged_version_with_its_records_still_held_is_rebuilt() {
    // S11: scrub finds a flipped bit in a flushed version above the checkpoint and
    // rebuilds it from the older version and the records.
    let (disk, mut node, mut log) = checkpointed(7);
    let page = log.all[11].page;
    node.submit(
        seg(0, 0),
        log.epoch,
        Lsn(13),
        None,
        vec![log.random_edit(1)],
    )
    .unwrap();
    node.flush().unwrap();
    node.get_page(seg(0, 0), log.epoch, page, Lsn(13), Lsn(13))
        .unwrap();
    while node.background_step().unwrap() != Default::default() {}
    let versions = node.page_versions(seg(0, 0), page).unwrap();
    let newest = *versions.last().unwrap();
    assert!(
        newest > Lsn(8),
        "the flusher wrote a version above the checkpoint"
    );
    let path = disk
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sxp"))
        .find(|p| {
            let bytes = disk.contents(p).unwrap();
            bytes
                .chunks(sixfold_core::codec::PAGE_FRAME_BYTES)
                .any(|f| {
                    sixfold_core::codec::decode_page(f)
                        .is_ok_and(|i| i.page == page && i.lsn == newest)
                })
        })
        .unwrap();
    disk.flip_bit(&path, page_frame(&disk, &path, page, newest) + 4000, 7)
        .unwrap();
    let mut damaged = false;
    for _ in 0..node.scrub_files() {
        damaged |= node.scrub_step().unwrap().damaged;
    }
    assert!(damaged);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert!(
        !status.damaged,
        "rebuilt, so not damaged: {:?}",
        status.damage
    );
    node.clear_cache();
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(13));
}

#[test]
fn corrupt_metadata_rebuilds_the_segment_at_open() {
    // S13 for the disk: no panic on anything read from disk; S17: a segment whose meta
    // fails its check starts again empty and damaged instead of stopping the node.
    let (disk, node, _peer, _log) = pair(8);
    drop(node);
    disk.flip_bit(&PathBuf::from(format!("{DIR}/pg0.0/meta")), 20, 0)
        .unwrap();
    let node = try_open(&disk).expect("S17: the node opens");
    assert_eq!(node.rebuilt_segments(), &[seg(0, 0)]);
    assert!(node.segment_status(seg(0, 0)).unwrap().damaged);
}

#[test]
fn garbage_files_in_a_segment_directory_never_panic_and_never_serve_corrupt_pages() {
    // L6, S12: random bytes as log, page, directory and metadata files.
    for seed in 0..40u64 {
        let (disk, node, _peer, log) = pair(100 + seed);
        drop(node);
        let mut noise = Gen::new(0, seed);
        let bytes: Vec<u8> = (0..(noise.random() % 5000))
            .map(|_| noise.random() as u8)
            .collect();
        let name = [
            "log-00000000000000000009.sxr",
            "pages-00000000000000000009.sxp",
            "pagedir",
            "meta",
        ][(seed % 4) as usize];
        let path = PathBuf::from(format!("{DIR}/pg0.0/{name}"));
        let _ = disk.remove(&path);
        let mut file = disk.open(&path, OpenMode::CreateNew).unwrap();
        file.write_at(0, &bytes).unwrap();
        file.sync().unwrap();
        disk.sync_dir(&PathBuf::from(format!("{DIR}/pg0.0")))
            .unwrap();
        match sixfold_storage::StorageNode::open(Arc::new(disk.clone()), DIR, common::config()) {
            Ok(mut node) => assert_nothing_corrupt_served(&mut node, seg(0, 0), &log, Lsn(10)),
            Err(error) => assert!(
                matches!(error, StorageError::Corrupt { .. }),
                "{name}: {error}"
            ),
        }
    }
}

#[test]
fn a_misdirected_valid_frame_of_another_pg_is_never_held_and_gossip_repairs_what_it_overwrote() {
    // S13, S11, S6: a whole valid record frame of PG 1's log lands over record 4 of PG 0's
    // log on the same disk. Its CRC passes, so only the record's PG tells it is foreign: it
    // is dropped, the records it overwrote are holes (damage where a frame after it fails),
    // and gossip brings them back. Nothing of PG 1 is ever served as PG 0.
    let (disk, mut node, peer, log) = pair(8);
    node.host_segment(seg(1, 0)).unwrap();
    let mut other = Gen::new(1, 80);
    node.submit(seg(1, 0), other.epoch, Lsn::ZERO, None, other.batch(6, 3))
        .unwrap();
    node.flush().unwrap();
    let foreign_log = disk.contents(&log_path("pg1.0", 1)).unwrap();
    let foreign =
        foreign_log[frame_offset(&other, 2) as usize..frame_offset(&other, 3) as usize].to_vec();
    disk.misdirect(&log_path("pg0.0", 1), frame_offset(&log, 4), &foreign)
        .unwrap();

    let mut node = reopen(&disk, node);
    let held = node.held_records(seg(0, 0)).unwrap();
    assert!(
        held.iter().all(|record| record.pg == log.pg),
        "a record of another PG is held: {held:?}"
    );
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!(status.scl, Lsn(3), "SCL stops at the overwritten record");
    assert_nothing_corrupt_served(&mut node, seg(0, 0), &log, Lsn(3));
    repair_from(&mut node, seg(0, 0), &peer, seg(0, 1), Lsn(10), 3);
    let status = node.segment_status(seg(0, 0)).unwrap();
    assert_eq!((status.scl, status.damaged), (Lsn(10), false), "{status:?}");
    assert_pages_exact(&mut node, seg(0, 0), &log, Lsn(10));
    // PG 1 lost nothing: the write went to PG 0's file.
    assert_eq!(node.segment_status(seg(1, 0)).unwrap().scl, Lsn(6));
}

#[test]
fn a_misdirected_page_frame_is_never_served_as_another_page() {
    // S11, R3: a valid page frame of one page lands over the frame of another page, whose
    // records below the checkpoint are collected. Reads check the frame's page and LSN
    // against the index: the page is refused (typed error), never served with the other
    // page's bytes, before a restart or after it.
    let (disk, mut node, log) = checkpointed(10);
    let path = page_file(&disk);
    let covers: Vec<(PageId, Lsn)> = log
        .pages()
        .into_iter()
        .map(|page| (page, log.page_at(page, Lsn(8)).1))
        .filter(|&(_, lsn)| lsn > Lsn::ZERO)
        .collect();
    let [(source, source_lsn), (target, target_lsn), ..] = covers[..] else {
        panic!("two checkpointed pages: {covers:?}");
    };
    let frame = sixfold_core::codec::PAGE_FRAME_BYTES;
    let from = page_frame(&disk, &path, source, source_lsn) as usize;
    let bytes = disk.contents(&path).unwrap()[from..from + frame].to_vec();
    disk.misdirect(&path, page_frame(&disk, &path, target, target_lsn), &bytes)
        .unwrap();
    node.clear_cache();
    assert_nothing_corrupt_served(&mut node, seg(0, 0), &log, Lsn(12));
    let mut node = reopen(&disk, node);
    assert_nothing_corrupt_served(&mut node, seg(0, 0), &log, Lsn(12));
    // The page the frame came from still reads exactly.
    let image = node
        .get_page(seg(0, 0), log.epoch, source, Lsn(12), Lsn(12))
        .unwrap();
    assert_eq!(image.bytes, log.page_at(source, Lsn(12)).0);
}
