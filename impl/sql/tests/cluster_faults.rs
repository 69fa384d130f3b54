//! SQLite on the real embedded cluster ([`ClusterVolume`]) with storage nodes stopped and
//! started and the writer crashed and recovered between statements: after a final cold
//! recovery the database must equal stock SQLite fed the same acknowledged transactions
//! (full dump compared). V5, C4, X4, Q4.

use std::sync::Arc;

use rusqlite::Connection;
use sixfold_cluster::{EmbeddedCluster, WriterOptions};
use sixfold_core::NodeId;
use sixfold_sql::{Catalog, ClusterVolume, PageVolume, open_connection};

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A random statement or transaction on `t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)`.
fn statement(rng: &mut u64) -> String {
    let id = next(rng) % 200;
    let n = next(rng) % 1000;
    let len = next(rng) % 3000;
    match next(rng) % 6 {
        0 | 1 => format!(
            "INSERT OR REPLACE INTO t VALUES({id}, substr(hex(zeroblob({len})), 1, {len}), {n})"
        ),
        2 => format!("UPDATE t SET n = n + {n} WHERE id % 7 = {}", id % 7),
        3 => format!("DELETE FROM t WHERE id BETWEEN {id} AND {}", id + 5),
        4 => format!(
            "BEGIN; INSERT OR REPLACE INTO t VALUES({id}, 'a', {n}); \
             UPDATE t SET v = v || 'b' WHERE id < {id}; COMMIT"
        ),
        _ => format!(
            "INSERT INTO t SELECT id + 1000 + {n}, v, n FROM t WHERE id < {id} AND id + 1000 + {n} NOT IN (SELECT id FROM t)"
        ),
    }
}

fn dump(conn: &Connection) -> Vec<String> {
    let mut statement = conn.prepare("SELECT * FROM t ORDER BY id").unwrap();
    let rows = statement
        .query_map([], |row| {
            Ok(format!(
                "{:?}|{:?}|{:?}",
                row.get_ref(0)?,
                row.get_ref(1)?,
                row.get_ref(2)?
            ))
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

#[test]
fn recovered_database_equals_the_oracle_after_node_and_writer_faults() {
    let seed: u64 = std::env::var("SIXFOLD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    println!("seed {seed} (replay with SIXFOLD_SEED={seed})");
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(dir.path()).unwrap();
    let volume =
        Arc::new(ClusterVolume::open(cluster.config().clone(), WriterOptions::default()).unwrap());
    let page_volume: Arc<dyn PageVolume> = volume.clone();
    Catalog::new(page_volume.clone())
        .create_database("app")
        .unwrap();
    let conn = open_connection(page_volume.clone(), "app").unwrap();
    let oracle = Connection::open(dir.path().join("oracle.sqlite")).unwrap();
    let schema = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)";
    conn.execute_batch(schema).unwrap();
    oracle.execute_batch(schema).unwrap();
    let nodes: Vec<NodeId> = cluster.config().nodes.iter().map(|n| n.id).collect();
    let (mut stops, mut crashes) = (0, 0);
    for index in 0..160 {
        match next(&mut rng) % 10 {
            0 if cluster.running().len() > 4 => {
                let running = cluster.running();
                cluster.stop_node(running[(next(&mut rng) % running.len() as u64) as usize]);
                stops += 1;
            }
            1 => {
                for node in &nodes {
                    cluster.start_node(*node).unwrap();
                }
            }
            2 if index % 3 == 0 => {
                volume.recover().unwrap();
                crashes += 1;
            }
            _ => {}
        }
        let sql = statement(&mut rng);
        // Faults happen only between statements, so every statement is acknowledged.
        conn.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("seed {seed}: statement {index} {sql:?}: {e}"));
        oracle.execute_batch(&sql).unwrap();
    }
    assert!(
        stops > 0 && crashes > 0,
        "seed {seed}: {stops} stops, {crashes} crashes"
    );
    for node in &nodes {
        cluster.start_node(*node).unwrap();
    }
    // A cold look: a fresh connection (empty SQLite cache) on a freshly recovered writer.
    drop(conn);
    volume.recover().unwrap();
    let conn = open_connection(page_volume.clone(), "app").unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "seed {seed}");
    let (actual, expected) = (dump(&conn), dump(&oracle));
    assert_eq!(actual.len(), expected.len(), "seed {seed}: row counts");
    assert!(actual == expected, "seed {seed}: dumps differ");
    println!(
        "{} rows equal after {stops} node stops and {crashes} writer crashes",
        actual.len()
    );
}

/// C20: eight connections, two per database, insert concurrently through one writer;
/// the writer crashes in the middle. After recovery every acknowledged row is there,
/// and no row a connection never tried.
#[test]
fn concurrent_connections_lose_no_acknowledged_commit_when_the_writer_crashes() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    const DATABASES: usize = 4;
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(dir.path()).unwrap();
    let volume =
        Arc::new(ClusterVolume::open(cluster.config().clone(), WriterOptions::default()).unwrap());
    let page_volume: Arc<dyn PageVolume> = volume.clone();
    let catalog = Catalog::new(page_volume.clone());
    for db in 0..DATABASES {
        catalog.create_database(&format!("db{db}")).unwrap();
        open_connection(page_volume.clone(), &format!("db{db}"))
            .unwrap()
            .execute_batch("CREATE TABLE t(thread INTEGER, seq INTEGER, PRIMARY KEY(thread, seq))")
            .unwrap();
    }
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (page_volume, acked, stop) = (page_volume.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let conn =
                    open_connection(page_volume, &format!("db{}", thread % DATABASES)).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                let (mut last_acked, mut seq) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    match conn.execute("INSERT INTO t VALUES(?1, ?2)", (thread as i64, seq as i64))
                    {
                        Ok(_) => {
                            last_acked = seq;
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => break, // the crash: this insert's outcome is unknown
                    }
                }
                (last_acked, seq)
            })
        })
        .collect();
    let started = Instant::now();
    while acked.load(Ordering::SeqCst) < 100 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    volume.crash_writer();
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<(u64, u64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        acked.load(Ordering::SeqCst) >= 100,
        "the load made no progress"
    );
    volume.recover().unwrap();
    for (thread, (last_acked, last_tried)) in outcomes.into_iter().enumerate() {
        let conn =
            open_connection(page_volume.clone(), &format!("db{}", thread % DATABASES)).unwrap();
        let seqs: Vec<u64> = conn
            .prepare("SELECT seq FROM t WHERE thread = ?1 ORDER BY seq")
            .unwrap()
            .query_map([thread as i64], |row| {
                row.get::<_, i64>(0).map(|s| s as u64)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let kept = seqs.len() as u64;
        assert!(
            seqs.iter().copied().eq(1..=kept) && kept >= last_acked && kept <= last_tried,
            "thread {thread}: rows {seqs:?}, acknowledged up to {last_acked}, tried {last_tried}"
        );
    }
}
