//! The node store's `node.meta` on a faulty disk (S22): a change whose write fails is
//! undone, so the node never acts on a state a crash would take back, and a crash keeps
//! exactly what was written.

use std::sync::Arc;

use sixfold_core::{
    Epoch, Geometry, Lsn, NodeId, PgId, SEGMENTS_PER_PG, SegmentId, TruncationRange,
};
use sixfold_storage::{
    CrashMode, DiskOp, FaultKind, FaultyDisk, NodeStore, NodeStoreError, NodeStoreMutant, OpFilter,
    SegmentPlacement, StorageConfig,
};

/// Replica `r` of every PG on node `r`, as in the simulator.
#[derive(Debug)]
struct NodePerReplica;

impl SegmentPlacement for NodePerReplica {
    fn placement(&self, _pg: PgId) -> [NodeId; SEGMENTS_PER_PG] {
        std::array::from_fn(|replica| NodeId(replica as u32))
    }
}

const NODE: NodeId = NodeId(2);
const SEGMENT: SegmentId = SegmentId {
    pg: PgId(0),
    replica: 2,
};

fn open(disk: &Arc<FaultyDisk>) -> NodeStore {
    let config = StorageConfig {
        geometry: Geometry { pg_pages: 16 },
        ..StorageConfig::default()
    };
    let mut store = NodeStore::open(
        disk.clone(),
        "/node2",
        NODE,
        Arc::new(NodePerReplica),
        config,
    )
    .expect("opens");
    store.recover_segments().expect("nothing to recover");
    store
}

fn range(begin: u64, end: u64, epoch: u64) -> TruncationRange {
    TruncationRange {
        lsn_begin: Lsn(begin),
        lsn_end: Lsn(end),
        epoch: Epoch(epoch),
    }
}

/// S22: a `RaiseEpoch` whose `node.meta` write fails leaves the node at its old epoch, so
/// the same recovery's retry is answered (not refused as stale) once the disk works.
#[test]
fn a_failed_epoch_write_is_undone() {
    let disk = Arc::new(FaultyDisk::new(7));
    let mut store = open(&disk);
    disk.inject(OpFilter::Only(DiskOp::Rename), FaultKind::Io, 0, 1);
    assert!(
        store.raise_epoch(Epoch(1)).is_err(),
        "the meta write failed"
    );
    assert_eq!(store.epoch(), Epoch(0), "S22: memory did not run ahead");
    assert_eq!(store.birth(), sixfold_core::Birth::Unknown, "S22, S19");
    store.raise_epoch(Epoch(1)).expect("the retry is answered");
    assert_eq!(store.epoch(), Epoch(1));
    // The first recovery's epoch made the folder part of the volume (S19): a segment
    // created now is no repair.
    assert_eq!(store.birth(), sixfold_core::Birth::WithVolume);
    store.host(SEGMENT).expect("placed here");
    let answer = store.raise_epoch(Epoch(2)).expect("raised");
    assert_eq!(answer.reports.len(), 1, "{answer:?}");
}

/// S22: a truncation history whose write tears is not adopted; a crash then finds the old
/// history on disk, and the retry adopts the new one durably.
#[test]
fn a_torn_history_write_is_undone_and_a_crash_keeps_what_was_written() {
    let disk = Arc::new(FaultyDisk::new(11));
    let mut store = open(&disk);
    store.truncate(&[range(0, 10, 1)]).expect("first history");
    store.host(SEGMENT).expect("placed here");
    disk.inject(OpFilter::Only(DiskOp::Write), FaultKind::TornWrite, 0, 1);
    let newer = [range(0, 10, 1), range(5, 20, 2)];
    assert!(store.truncate(&newer).is_err(), "the meta write tore");
    assert_eq!(store.truncations(), &[range(0, 10, 1)], "S22: not adopted");
    assert_eq!(store.epoch(), Epoch(1), "S22: nor its epoch");
    // A stale writer of epoch 1 is still accepted: the node never claimed epoch 2.
    assert_eq!(store.history_epoch(), Epoch(1));
    drop(store);
    disk.crash_with(CrashMode::Random);
    let mut store = open(&disk);
    assert_eq!(store.truncations(), &[range(0, 10, 1)]);
    store.truncate(&newer).expect("the retry");
    drop(store);
    disk.crash_with(CrashMode::Random);
    let store = open(&disk);
    assert_eq!(store.truncations(), &newer);
    assert_eq!(store.epoch(), Epoch(2));
}

/// S7, S22: after a failed write the node still refuses epochs below the one it holds.
#[test]
fn a_failed_write_never_lowers_the_epoch() {
    let disk = Arc::new(FaultyDisk::new(3));
    let mut store = open(&disk);
    store.raise_epoch(Epoch(3)).expect("raised");
    disk.inject(OpFilter::Mutations, FaultKind::NoSpace, 0, 4);
    assert!(store.raise_epoch(Epoch(4)).is_err());
    assert_eq!(store.epoch(), Epoch(3));
    assert!(matches!(
        store.raise_epoch(Epoch(2)),
        Err(NodeStoreError::StaleEpoch { .. })
    ));
}

fn record(lsn: u64, epoch: u64) -> sixfold_core::RedoRecord {
    sixfold_core::RedoRecord {
        lsn: Lsn(lsn),
        pg: PgId(0),
        prev_lsn_pg: Lsn::ZERO,
        prev_lsn_page: Lsn::ZERO,
        epoch: Epoch(epoch),
        page: sixfold_core::PageId {
            db: sixfold_core::DbId(1),
            page_no: 0,
        },
        cpl: true,
        body: sixfold_core::RedoBody::Edits(Vec::new()),
    }
}

/// S15: a newer recovery's history replaces the held one. Recovery 2 planned to void
/// (10, 60] but never completed; recovery 3 kept epoch-1 records up to 30 and voided
/// (30, 100]. A node that learned both must take record 20 of epoch 1 from a peer. The
/// machine's mutant `truncation-union` keeps recovery 2's range and refuses it forever.
fn takes_a_record_the_newer_recovery_kept(mutant: Option<NodeStoreMutant>) -> bool {
    let disk = Arc::new(FaultyDisk::new(5));
    let mut store = open(&disk);
    store.set_mutant(mutant);
    store.truncate(&[range(0, 5, 1)]).expect("recovery 1");
    store.host(SEGMENT).expect("placed here");
    store
        .truncate(&[range(0, 5, 1), range(10, 60, 2)])
        .expect("recovery 2's range reached this node");
    let newer = vec![range(0, 5, 1), range(30, 100, 3)];
    store.truncate(&newer).expect("recovery 3");
    let answer = sixfold_storage::GossipAnswer {
        peer: SegmentId {
            pg: PgId(0),
            replica: 0,
        },
        epoch: Epoch(3),
        truncations: newer,
        records: vec![record(20, 1)],
        peer_scl: Lsn(30),
        peer_repairing: false,
        complete: true,
    };
    let _ = store.merge_gossip(SEGMENT, answer);
    store
        .engine()
        .held_records(SEGMENT)
        .expect("hosted")
        .iter()
        .any(|r| r.lsn == Lsn(20))
}

#[test]
fn a_newer_history_replaces_the_held_one() {
    assert!(takes_a_record_the_newer_recovery_kept(None));
}

#[test]
fn the_truncation_union_mutant_is_caught() {
    assert!(!takes_a_record_the_newer_recovery_kept(Some(
        NodeStoreMutant::TruncationUnion
    )));
}

/// S23: a late folder joins the volume's genesis only with its own incarnation, durably;
/// a folder that replaced it (another incarnation) stays late, and so do its answers.
#[test]
fn a_late_folder_joins_the_genesis_only_with_its_own_incarnation() {
    let disk = Arc::new(FaultyDisk::new(11));
    let mut store = open(&disk);
    // The first epoch this folder learns is not the volume's first recovery's: late.
    let answer = store.raise_epoch(Epoch(3)).expect("raised");
    assert_eq!(store.birth(), sixfold_core::Birth::Late);
    assert!(
        answer.absent_may_be_lost,
        "S20: a late node may have lost what it lacks"
    );
    assert!(answer.blank, "S23: it hosts nothing");
    assert_ne!(
        answer.incarnation, 0,
        "S23: the incarnation is durable before it is reported"
    );
    assert_eq!(answer.incarnation, store.incarnation());

    // Another folder's incarnation is refused and changes nothing.
    let other = answer.incarnation.wrapping_add(1).max(1);
    assert!(matches!(
        store.join_genesis(other),
        Err(NodeStoreError::NotThisFolder { .. })
    ));
    assert_eq!(store.birth(), sixfold_core::Birth::Late);

    // A failed write is undone (S22), then the retry joins durably.
    disk.inject(OpFilter::Only(DiskOp::Rename), FaultKind::Io, 0, 1);
    assert!(store.join_genesis(answer.incarnation).is_err());
    assert_eq!(store.birth(), sixfold_core::Birth::Late, "S22");
    store.join_genesis(answer.incarnation).expect("joins");
    assert_eq!(store.birth(), sixfold_core::Birth::WithVolume);
    drop(store);
    let mut reopened = open(&disk);
    assert_eq!(reopened.birth(), sixfold_core::Birth::WithVolume, "durable");
    assert_eq!(
        reopened.incarnation(),
        answer.incarnation,
        "the folder keeps its incarnation"
    );
    let after = reopened.raise_epoch(Epoch(4)).expect("raised");
    assert!(
        !after.absent_may_be_lost,
        "X11: its absent segments now count as empty"
    );

    // A hosted segment makes the node non-blank (S23), a history alone does not.
    reopened.host(SEGMENT).expect("placed here");
    assert!(!reopened.raise_epoch(Epoch(5)).expect("raised").blank);
}

/// S23: a brand-new folder replacing one that joined draws another incarnation, so the old
/// genesis answer cannot vouch for it.
#[test]
fn a_new_folder_draws_a_new_incarnation() {
    let first = Arc::new(FaultyDisk::new(12));
    let second = Arc::new(FaultyDisk::new(12));
    let mut a = open(&first);
    let mut b = open(&second);
    let ia = a.raise_epoch(Epoch(2)).expect("raised").incarnation;
    let ib = b.raise_epoch(Epoch(2)).expect("raised").incarnation;
    assert_ne!(ia, ib);
    assert!(b.join_genesis(ia).is_err());
    assert_eq!(b.birth(), sixfold_core::Birth::Late);
}

/// B11: how far garbage collection of a segment holding records 1..=40 (all at or below
/// every floor: the writer's PGMRPL and every peer's SCL) collects, with continuous backup
/// off (`None`) or on with the segment staged through `staged`.
fn collected_through(staged: Option<u64>) -> Lsn {
    let disk = Arc::new(FaultyDisk::new(9));
    let mut store = open(&disk);
    store.raise_epoch(Epoch(1)).expect("recovery");
    let records: Vec<_> = (1..=40u64)
        .map(|lsn| sixfold_core::RedoRecord {
            prev_lsn_pg: Lsn(lsn - 1),
            prev_lsn_page: Lsn(lsn - 1),
            body: sixfold_core::RedoBody::Edits(vec![sixfold_core::Edit {
                offset: 0,
                bytes: lsn.to_le_bytes().to_vec(),
            }]),
            ..record(lsn, 1)
        })
        .collect();
    store
        .write(SEGMENT, Epoch(1), Lsn(40), None, records)
        .expect("written");
    if let Some(staged) = staged {
        store.hold_for_staging(SEGMENT.replica);
        store.note_staged(SEGMENT, Lsn(staged));
    }
    store.note_writer_pgmrpl(Lsn(40));
    for peer in (0..SEGMENTS_PER_PG as u32).filter(|&r| r != NODE.0) {
        let request = sixfold_core::GossipRequest {
            epoch: Epoch(1),
            scl: Lsn(40),
            holes: Vec::new(),
            max_held: Lsn(40),
            truncations: Vec::new(),
        };
        store.answer_gossip(SEGMENT, Some(NodeId(peer)), &request);
    }
    for _ in 0..50 {
        store.background_step().expect("background step");
    }
    let status = store.engine().segment_status(SEGMENT).expect("hosted");
    status.forgotten_through
}

#[test]
fn collection_keeps_every_record_above_the_staged_bound() {
    // B11: without backup the records are collected (so the check below can fail); with
    // backup on, never above the staged bound, however far PGMRPL moved.
    assert!(
        collected_through(None) > Lsn(8),
        "GC collects without backup"
    );
    let held = collected_through(Some(8));
    assert!(
        held <= Lsn(8),
        "collected through {held}, above the staged bound 8"
    );
    assert!(collected_through(Some(30)) <= Lsn(30));
}
