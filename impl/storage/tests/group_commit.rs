//! S25: the node's group commit runs its fsync without the node: batches that arrive
//! meanwhile (from any connection) queue for the next commit, and nothing is acknowledged,
//! or counted in an SCL the node reports, before the fsync that covers it succeeded.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use sixfold_core::{
    Epoch, Geometry, Lsn, NodeId, PageId, PgId, RedoBody, RedoRecord, SEGMENTS_PER_PG, SegmentId,
};
use sixfold_storage::{
    CrashMode, Disk, DiskFile, DiskOp, FaultKind, FaultyDisk, FileSync, NodeStore, OpFilter,
    OpenMode, SegmentPlacement, StorageConfig,
};

/// Replica `r` of every PG on node `r`.
#[derive(Debug)]
struct NodePerReplica;

impl SegmentPlacement for NodePerReplica {
    fn placement(&self, _pg: PgId) -> [NodeId; SEGMENTS_PER_PG] {
        std::array::from_fn(|replica| NodeId(replica as u32))
    }
}

const NODE: NodeId = NodeId(1);
const SEGMENT: SegmentId = SegmentId {
    pg: PgId(0),
    replica: 1,
};
const OTHER_SEGMENT: SegmentId = SegmentId {
    pg: PgId(1),
    replica: 1,
};
const DIR: &str = "/node1";

fn open(disk: Arc<dyn Disk>) -> NodeStore {
    let config = StorageConfig {
        geometry: Geometry { pg_pages: 16 },
        ..StorageConfig::default()
    };
    let mut store =
        NodeStore::open(disk, DIR, NODE, Arc::new(NodePerReplica), config).expect("opens");
    store.recover_segments().expect("nothing to recover");
    store
}

/// Record `lsn` of `pg`, the PG's records dense from 1 (each links the previous one).
fn record(pg: u32, lsn: u64) -> RedoRecord {
    RedoRecord {
        lsn: Lsn(lsn),
        epoch: Epoch(1),
        pg: PgId(pg),
        page: PageId::new(0, 16 * pg),
        cpl: true,
        prev_lsn_pg: Lsn(lsn - 1),
        prev_lsn_page: Lsn(lsn - 1),
        body: RedoBody::Edits(vec![sixfold_core::Edit {
            offset: 100,
            bytes: lsn.to_le_bytes().to_vec(),
        }]),
    }
}

fn scl(store: &NodeStore, segment: SegmentId) -> Lsn {
    store
        .status()
        .into_iter()
        .find(|hosted| hosted.status.segment == segment)
        .map_or(Lsn::ZERO, |hosted| hosted.status.scl)
}

fn submit(
    store: &mut NodeStore,
    segment: SegmentId,
    lsns: std::ops::RangeInclusive<u64>,
) -> sixfold_storage::Ticket {
    let records = lsns.map(|lsn| record(segment.pg.0, lsn)).collect();
    let ticket = store
        .submit(segment, Epoch(1), Lsn::ZERO, None, records)
        .expect("queued");
    store.await_ticket(ticket);
    ticket
}

/// A disk whose fsyncs through a sync handle wait until the test opens the gate: the test
/// can look at the node while a commit's fsync is running.
#[derive(Debug, Clone)]
struct GatedDisk {
    inner: FaultyDisk,
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    /// fsyncs waiting at the gate.
    waiting: Mutex<usize>,
    arrived: Condvar,
}

impl Gate {
    fn pass(&self) {
        *self.waiting.lock().unwrap() += 1;
        self.arrived.notify_all();
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }

    fn wait_for_fsyncs(&self, count: usize) {
        let mut waiting = self.waiting.lock().unwrap();
        while *waiting < count {
            waiting = self.arrived.wait(waiting).unwrap();
        }
    }

    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.changed.notify_all();
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: Box<dyn DiskFile>,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GatedSync {
    inner: Box<dyn FileSync>,
    gate: Arc<Gate>,
}

impl FileSync for GatedSync {
    fn sync(&self) -> std::io::Result<()> {
        self.gate.pass();
        self.inner.sync()
    }
}

impl DiskFile for GatedFile {
    fn size_bytes(&self) -> std::io::Result<u64> {
        self.inner.size_bytes()
    }
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<u64> {
        self.inner.append(bytes)
    }
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, bytes)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn sync_handle(&self) -> std::io::Result<Box<dyn FileSync>> {
        Ok(Box::new(GatedSync {
            inner: self.inner.sync_handle()?,
            gate: Arc::clone(&self.gate),
        }))
    }
}

impl Disk for GatedDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(GatedFile {
            inner: self.inner.open(path, mode)?,
            gate: Arc::clone(&self.gate),
        }))
    }
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

/// S25, S1, S2: while one thread's commit is inside its fsync (held at the gate), the
/// store is free: another connection's batch is queued, a status is answered, and neither
/// the running commit's batch nor the new one is acknowledged or counted in the SCL. Once
/// the fsync returns, only the batch it covered is acknowledged; the other joins the next
/// commit.
#[test]
fn batches_queue_during_an_fsync_and_nothing_is_acked_before_it() {
    let disk = GatedDisk {
        inner: FaultyDisk::new(11),
        gate: Arc::new(Gate::default()),
    };
    let gate = Arc::clone(&disk.gate);
    let store = Arc::new(Mutex::new(open(Arc::new(disk.clone()))));
    let first = submit(&mut store.lock().unwrap(), SEGMENT, 1..=3);
    let job = store
        .lock()
        .unwrap()
        .begin_commit()
        .expect("none in flight");
    assert_eq!(job.fsyncs(), 1);
    let leader = std::thread::spawn({
        let store = Arc::clone(&store);
        move || {
            let mut job = job;
            job.run(); // no lock held: waits at the gate
            store.lock().unwrap().finish_commit(job)
        }
    });
    gate.wait_for_fsyncs(1);
    // The fsync is running; the store takes another connection's batch meanwhile.
    let second = {
        let mut store = store.lock().unwrap();
        let second = submit(&mut store, SEGMENT, 4..=5);
        assert!(store.commit_in_flight());
        assert!(store.begin_commit().is_none(), "one commit at a time");
        assert_eq!(store.take_outcome(first), None, "S1: not durable yet");
        assert_eq!(store.take_outcome(second), None);
        assert_eq!(
            scl(&store, SEGMENT),
            Lsn::ZERO,
            "S25: no SCL before the fsync"
        );
        second
    };
    gate.set(true);
    let outcome = leader.join().expect("the leader finishes");
    assert_eq!(outcome.fsyncs, 1);
    let mut store = store.lock().unwrap();
    let ack = store
        .take_outcome(first)
        .expect("decided")
        .expect("durable");
    assert_eq!(
        ack.scl,
        Lsn(3),
        "the ack covers what the fsync covered, no more"
    );
    assert_eq!(
        store.take_outcome(second),
        None,
        "queued for the next commit"
    );
    assert_eq!(scl(&store, SEGMENT), Lsn(3));
    let mut next = store.begin_commit().expect("the next commit");
    next.run();
    store.finish_commit(next);
    let ack = store
        .take_outcome(second)
        .expect("decided")
        .expect("durable");
    assert_eq!(ack.scl, Lsn(5));
    let stats = store.commit_stats();
    assert_eq!((stats.commits, stats.fsyncs, stats.acks), (2, 2, 2));
    drop(store);
    disk.inner.crash_with(CrashMode::DropUnsynced);
    let reopened = open(Arc::new(disk.inner.clone()));
    assert_eq!(scl(&reopened, SEGMENT), Lsn(5), "S1: every ack survived");
}

/// S25, S1, S18: an fsync that fails acknowledges none of the batches it covered (their
/// submitters get an error), counts none in the SCL, and a crash then loses nothing that
/// was acknowledged. The batches stay queued; the retry writes them to a new log file
/// (the failed fsync may have dropped the old one's pages) and is durable.
#[test]
fn a_failed_fsync_acknowledges_nothing_it_covered() {
    let disk = FaultyDisk::new(5);
    let mut store = open(Arc::new(disk.clone()));
    let first = submit(&mut store, SEGMENT, 1..=4);
    let other = submit(&mut store, OTHER_SEGMENT, 1..=2);
    let mut job = store.begin_commit().expect("none in flight");
    assert_eq!(
        job.fsyncs(),
        2,
        "one fsync per segment log, run side by side"
    );
    // The first log fsync fails (BTreeMap order: PG 0 first; they run side by side, so
    // the fault goes to whichever fsyncs first: the test accepts either).
    disk.inject(OpFilter::Only(DiskOp::Sync), FaultKind::Io, 0, 1);
    job.run();
    let outcome = store.finish_commit(job);
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    let failed = outcome.failed[0].0;
    let (failed_ticket, good_ticket, good_scl) = if failed == SEGMENT {
        (first, other, Lsn(2))
    } else {
        (other, first, Lsn(4))
    };
    let error = store
        .take_outcome(failed_ticket)
        .expect("decided")
        .expect_err("S1: a failed fsync acknowledges nothing");
    assert!(error.contains("group commit failed"), "{error}");
    assert_eq!(scl(&store, failed), Lsn::ZERO, "S25: not in the SCL either");
    let ack = store
        .take_outcome(good_ticket)
        .expect("decided")
        .expect("durable");
    assert_eq!(
        ack.scl, good_scl,
        "S18: the other segment's ack does not wait"
    );
    // The retry (the next commit) writes the batch again, to a new log file.
    let logs_before = log_files(&disk, failed);
    let mut retry = store.begin_commit().expect("none in flight");
    retry.run();
    let outcome = store.finish_commit(retry);
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert_eq!(
        scl(&store, failed),
        if failed == SEGMENT { Lsn(4) } else { Lsn(2) }
    );
    assert_eq!(
        log_files(&disk, failed),
        logs_before + 1,
        "the failed file is sealed"
    );
    drop(store);
    disk.crash_with(CrashMode::DropUnsynced);
    let reopened = open(Arc::new(disk.clone()));
    assert_eq!(scl(&reopened, SEGMENT), Lsn(4));
    assert_eq!(scl(&reopened, OTHER_SEGMENT), Lsn(2));
}

fn log_files(disk: &FaultyDisk, segment: SegmentId) -> usize {
    let dir = Path::new(DIR).join(segment.to_string());
    disk.files()
        .iter()
        .filter(|path| path.parent() == Some(dir.as_path()))
        .filter(|path| path.to_string_lossy().ends_with(".sxr"))
        .count()
}

/// S25, S1: a crash while a commit's fsync has not run loses the batches it held, and
/// none of them was acknowledged: what a restart finds is at least everything acked.
#[test]
fn a_crash_during_the_fsync_loses_only_unacknowledged_batches() {
    let disk = FaultyDisk::new(3);
    let mut store = open(Arc::new(disk.clone()));
    let durable = submit(&mut store, SEGMENT, 1..=2);
    let mut job = store.begin_commit().expect("none in flight");
    job.run();
    store.finish_commit(job);
    assert!(store.take_outcome(durable).expect("decided").is_ok());
    let lost = submit(&mut store, SEGMENT, 3..=6);
    let _job = store.begin_commit().expect("none in flight"); // frames written, no fsync
    assert_eq!(store.take_outcome(lost), None);
    assert_eq!(scl(&store, SEGMENT), Lsn(2));
    drop(store);
    disk.crash_with(CrashMode::DropUnsynced);
    let reopened = open(Arc::new(disk.clone()));
    assert_eq!(scl(&reopened, SEGMENT), Lsn(2));
}

/// S25, S1: after a failed fsync, a crash loses the batch it covered (Linux may have
/// dropped its pages): that is safe only because nothing of it was acknowledged. The
/// batch acknowledged before is still there.
#[test]
fn a_crash_after_a_failed_fsync_loses_nothing_acknowledged() {
    let disk = FaultyDisk::new(9);
    let mut store = open(Arc::new(disk.clone()));
    let durable = submit(&mut store, SEGMENT, 1..=2);
    let mut job = store.begin_commit().expect("none in flight");
    job.run();
    store.finish_commit(job);
    assert!(store.take_outcome(durable).expect("decided").is_ok());
    let refused = submit(&mut store, SEGMENT, 3..=5);
    let mut job = store.begin_commit().expect("none in flight");
    disk.inject(OpFilter::Only(DiskOp::Sync), FaultKind::Io, 0, 1);
    job.run();
    store.finish_commit(job);
    let outcome = store.take_outcome(refused).expect("decided");
    assert!(
        outcome.is_err(),
        "S1: acked without a durable fsync: {outcome:?}"
    );
    drop(store);
    disk.crash_with(CrashMode::DropUnsynced);
    let reopened = open(Arc::new(disk.clone()));
    assert_eq!(
        scl(&reopened, SEGMENT),
        Lsn(2),
        "the acked batch survived, the other did not"
    );
}

/// S25, S1: a commit finished without its fsync having run (a shell that calls the steps
/// out of order) acknowledges nothing; its batches stay queued and the next commit makes
/// them durable.
#[test]
fn a_commit_finished_before_its_fsync_acknowledges_nothing() {
    let disk = FaultyDisk::new(4);
    let mut store = open(Arc::new(disk.clone()));
    let early = submit(&mut store, SEGMENT, 1..=3);
    let job = store.begin_commit().expect("none in flight");
    store.finish_commit(job);
    let outcome = store.take_outcome(early).expect("decided");
    assert!(outcome.is_err(), "acked before its fsync ran: {outcome:?}");
    assert_eq!(scl(&store, SEGMENT), Lsn::ZERO);
    let mut retry = store.begin_commit().expect("none in flight");
    retry.run();
    assert!(store.finish_commit(retry).failed.is_empty());
    assert_eq!(scl(&store, SEGMENT), Lsn(3));
}
