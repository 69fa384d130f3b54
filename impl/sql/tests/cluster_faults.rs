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
