//! C20, C21: pipelined commits on six embedded nodes: many threads commit to several
//! databases through one writer at once; every acknowledged commit is durable when it
//! returns (C4) and survives a takeover by a new writer in the middle of the load.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sixfold_cluster::{EmbeddedCluster, Writer, WriterError, WriterOptions};
use sixfold_core::{PAGE_BYTES, PageId};

const THREADS: u32 = 8;
const DATABASES: u32 = 4;

fn options() -> WriterOptions {
    WriterOptions {
        commit_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        recovery_timeout: Duration::from_secs(20),
        cache_pages_max: 64,
    }
}

fn cluster(dir: &std::path::Path) -> EmbeddedCluster {
    let listeners: Vec<_> = (0..6)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut ports = [0u16; 6];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().unwrap().port();
    }
    drop(listeners);
    let text = sixfold_cluster::config::six_node_toml("t", "secret", 16, &ports);
    let config = dir.join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    EmbeddedCluster::start(dir).unwrap()
}

/// Thread `t`'s page: its own page of database `1 + t % DATABASES`.
fn page_of(thread: u32) -> PageId {
    PageId::new(1 + thread % DATABASES, 3 + thread)
}

fn image(thread: u32, counter: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; PAGE_BYTES];
    bytes[..8].copy_from_slice(&counter.to_le_bytes());
    bytes[8..12].copy_from_slice(&thread.to_le_bytes());
    bytes[100 + thread as usize] = counter as u8; // a second edit per page
    bytes
}

fn counter_in(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// Each thread commits counters 1, 2, … to its page until `stop` or an error; returns
/// (last acknowledged, last attempted). C4: VDL has passed every commit that returned.
fn commit_loop(writer: &Writer, thread: u32, stop: &AtomicBool, acked: &AtomicU64) -> (u64, u64) {
    let mut last_acked = 0;
    let mut counter = 0;
    while !stop.load(Ordering::SeqCst) {
        counter += 1;
        match writer.commit_pages(vec![(page_of(thread), image(thread, counter))]) {
            Ok(lsn) => {
                assert!(writer.vdl() >= lsn, "C4: commit {lsn} returned below VDL");
                last_acked = counter;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Err(WriterError::Fenced { .. } | WriterError::CommitTimeout { .. }) => break,
            Err(error) => panic!("thread {thread}: {error}"),
        }
    }
    (last_acked, counter)
}

#[test]
fn concurrent_commits_to_several_databases_are_all_durable_and_share_batches() {
    // C20, C21, C4: eight threads, four databases, one writer; all commits return
    // durable, and a new writer reads every page at its last acknowledged value.
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let writer = Arc::new(Writer::open(cluster.config().clone(), options()).unwrap());
    let acked = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (writer, acked, barrier) = (writer.clone(), acked.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for counter in 1..=30u64 {
                    let lsn = writer
                        .commit_pages(vec![(page_of(thread), image(thread, counter))])
                        .unwrap();
                    assert!(writer.vdl() >= lsn, "C4: commit {lsn} returned below VDL");
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(acked.load(Ordering::SeqCst), 30 * u64::from(THREADS));
    let sent = writer.link_stats();
    println!(
        "C20: {} records in {} batches ({:.2} per batch), {} socket writes",
        sent.records,
        sent.batches,
        sent.records as f64 / sent.batches.max(1) as f64,
        sent.socket_writes
    );
    assert!(sent.batches > 0 && sent.records >= sent.batches);
    assert_eq!(writer.stats().waiting_commits, 0);
    Arc::try_unwrap(writer).ok().unwrap().close();
    let reopened = Writer::open(cluster.config().clone(), options()).unwrap();
    for thread in 0..THREADS {
        let bytes = reopened.read(page_of(thread)).unwrap().unwrap();
        assert_eq!(bytes, image(thread, 30), "thread {thread}'s last commit");
    }
    cluster.stop();
}

#[test]
fn a_takeover_in_the_middle_of_concurrent_commits_keeps_every_acknowledged_one() {
    // C20, C6, X4: a second writer opens while eight threads commit; the first is
    // fenced. Each page holds at least its last acknowledged counter and no counter
    // its thread never tried.
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let writer = Arc::new(Writer::open(cluster.config().clone(), options()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (writer, stop, acked) = (writer.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || commit_loop(&writer, thread, &stop, &acked))
        })
        .collect();
    let started = Instant::now();
    while acked.load(Ordering::SeqCst) < 80 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = Writer::open(cluster.config().clone(), options()).unwrap();
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<(u64, u64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        acked.load(Ordering::SeqCst) >= 80,
        "the load made no progress"
    );
    for (thread, (last_acked, last_tried)) in (0..THREADS).zip(outcomes) {
        let found = second
            .read(page_of(thread))
            .unwrap()
            .map_or(0, |b| counter_in(&b));
        assert!(
            found >= last_acked && found <= last_tried,
            "thread {thread}: page holds {found}, acknowledged {last_acked}, tried {last_tried}"
        );
    }
    cluster.stop();
}
