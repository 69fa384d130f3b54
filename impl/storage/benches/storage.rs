//! Storage node benchmarks (docs/storage-node.md, "Numbers"):
//! - `fsync/raw` and `fsync/raw_after`: append one record-sized write and fdatasync it, on
//!   the same disk as the engine's files, before and after the engine's appends: the
//!   physical limit of durable appends one at a time.
//! - `durable_append/batch=N`: N records queued, one group commit (S2), all acked: records
//!   per second against batch size, with real fsync.
//! - `get_page/{uncached,cached}/chain=L`: a page read whose base version is on disk and
//!   whose redo chain above it is L records long (uncached: the base is read from disk,
//!   CRC-checked and L records applied; cached: redo was applied to the cached page).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sixfold_core::{Edit, Epoch, Lsn, PageId, PgId, RedoBody, RedoRecord, SegmentId};
use sixfold_storage::{StdDisk, StorageConfig, StorageNode};

const SEGMENT: SegmentId = SegmentId {
    pg: PgId(0),
    replica: 0,
};
/// Bytes edited per record: a small row change.
const EDIT_BYTES: usize = 48;

fn scratch_dir() -> tempfile::TempDir {
    // Under target/: the same filesystem as the repository, not a tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir")
}

/// Records of one PG with dense LSNs and correct backlinks, spread over `pages` pages.
struct Writer {
    next_lsn: u64,
    last_page: Vec<Lsn>,
}

impl Writer {
    fn new(pages: usize) -> Writer {
        Writer {
            next_lsn: 1,
            last_page: vec![Lsn::ZERO; pages],
        }
    }

    fn record(&mut self, page_index: usize) -> RedoRecord {
        let lsn = Lsn(self.next_lsn);
        self.next_lsn += 1;
        let record = RedoRecord {
            lsn,
            pg: PgId(0),
            prev_lsn_pg: Lsn(lsn.0 - 1),
            prev_lsn_page: self.last_page[page_index],
            epoch: Epoch(1),
            page: PageId::new(0, page_index as u32),
            cpl: true,
            body: RedoBody::Edits(vec![Edit {
                offset: ((lsn.0 * 64) % 4000) as u16,
                bytes: vec![lsn.0 as u8; EDIT_BYTES],
            }]),
        };
        self.last_page[page_index] = lsn;
        record
    }
}

fn node(dir: &tempfile::TempDir) -> StorageNode {
    let mut node = StorageNode::open(
        Arc::new(StdDisk),
        dir.path().join("node"),
        StorageConfig::default(),
    )
    .expect("open node");
    node.host_segment(SEGMENT).expect("host");
    node.raise_epoch(SEGMENT, Epoch(1)).expect("epoch");
    node
}

fn fsync_raw_named(c: &mut Criterion, name: &str) {
    let dir = scratch_dir();
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.path().join("raw"))
        .expect("raw file");
    let frame = vec![7u8; 64 + 2 + 4 + EDIT_BYTES];
    let mut group = c.benchmark_group("fsync");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            file.write_all(&frame).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    group.finish();
}

/// The physical limit, measured before the engine's appends...
fn fsync_raw(c: &mut Criterion) {
    fsync_raw_named(c, "raw");
}

/// ...and again after them: the disk is shared, so its speed drifts during a run.
fn fsync_raw_after(c: &mut Criterion) {
    fsync_raw_named(c, "raw_after");
}

fn durable_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_append");
    for batch in [1usize, 8, 64, 512] {
        let dir = scratch_dir();
        let mut node = node(&dir);
        let mut writer = Writer::new(64);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter(|| {
                for i in 0..batch {
                    let record = writer.record(i % 64);
                    node.submit(SEGMENT, Epoch(1), Lsn::ZERO, None, vec![record])
                        .expect("submit");
                }
                let acks = node.flush().expect("flush");
                assert_eq!(acks.len(), batch);
            })
        });
    }
    group.finish();
}

/// A node whose page 0 has a version at LSN 1 on disk (chain collected) and `chain`
/// records above it that no checkpoint or flusher may fold (the VDL hint stays at 1).
fn chain_node(dir: &tempfile::TempDir, chain: usize) -> StorageNode {
    let mut node = node(dir);
    let mut writer = Writer::new(1);
    node.submit(SEGMENT, Epoch(1), Lsn(1), None, vec![writer.record(0)])
        .expect("submit");
    node.flush().expect("flush");
    node.set_pgmrpl(SEGMENT, Lsn(1)).expect("pgmrpl");
    while node.background_step().expect("background") != Default::default() {}
    for _ in 0..chain {
        node.submit(SEGMENT, Epoch(1), Lsn(1), None, vec![writer.record(0)])
            .expect("submit");
    }
    node.flush().expect("flush");
    let page = PageId::new(0, 0);
    assert_eq!(node.redo_chain_len(SEGMENT, page).expect("chain"), chain);
    assert_eq!(
        node.page_versions(SEGMENT, page).expect("versions"),
        vec![Lsn(1)]
    );
    node
}

fn get_page(c: &mut Criterion) {
    let page = PageId::new(0, 0);
    let mut group = c.benchmark_group("get_page");
    for chain in [0usize, 10, 100, 1000] {
        let dir = scratch_dir();
        let mut node = chain_node(&dir, chain);
        let read = Lsn(1 + chain as u64);
        group.bench_with_input(BenchmarkId::new("uncached/chain", chain), &chain, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    node.clear_cache();
                    let start = Instant::now();
                    let image = node
                        .get_page(SEGMENT, Epoch(1), page, read, read)
                        .expect("read");
                    total += start.elapsed();
                    assert_eq!(image.lsn, read);
                }
                total
            })
        });
        node.get_page(SEGMENT, Epoch(1), page, read, read)
            .expect("warm the cache");
        group.bench_with_input(BenchmarkId::new("cached/chain", chain), &chain, |b, _| {
            b.iter(|| {
                node.get_page(SEGMENT, Epoch(1), page, read, read)
                    .expect("read")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = fsync_raw, durable_append, fsync_raw_after, get_page
}
criterion_main!(benches);
