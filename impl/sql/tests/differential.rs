//! Differential tests: SQLite on the VFS (MemVolume) against stock SQLite on a local
//! file. Same statements, same results, same final contents (V4, V5); with faults, the
//! volume equals the oracle fed only the acknowledged transactions (V5, C4).

use std::sync::Arc;

use proptest::prelude::*;
use rusqlite::Connection;
use rusqlite::types::Value;
use sixfold_sql::{Catalog, MemVolume, PageVolume, open_connection};

const SCHEMA: &str = "
    CREATE TABLE t1(id INTEGER PRIMARY KEY, i INTEGER, t TEXT, b BLOB, r REAL);
    CREATE INDEX t1_i ON t1(i);
    CREATE INDEX t1_t ON t1(t, i);
    CREATE TABLE t2(k INTEGER, v TEXT, w REAL);
    CREATE INDEX t2_k ON t2(k);
";

const TEXTS: [&str; 6] = ["", "a", "alpha", "beta", "Gamma", "δέλτα"];

/// One step of a workload.
#[derive(Debug, Clone)]
enum Op {
    InsertT1 {
        i: Option<i64>,
        t: usize,
        blob_len: usize,
        blob_seed: u8,
        r: f64,
    },
    InsertT2 {
        k: i64,
        v: usize,
        w: f64,
    },
    Update {
        delta: i64,
        t: usize,
    },
    UpdateBlob {
        below: i64,
        blob_len: usize,
    },
    Delete {
        below: i64,
    },
    Query(usize, i64),
    Begin,
    Commit,
    Rollback,
    Vacuum,
    CreateIndex,
    DropIndex,
    Reopen,
}

fn real() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1000i64..1000).prop_map(|n| n as f64 / 8.0),
        (-1.0e6..1.0e6f64),
        Just(0.1),
        Just(1.0e20),
    ]
}

fn blob_len() -> impl Strategy<Value = usize> {
    // Mostly small, sometimes larger than a page (overflow pages).
    prop_oneof![4 => 0usize..64, 1 => 3000usize..12_000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::option::of(-20i64..20), 0..TEXTS.len(), blob_len(), any::<u8>(), real())
            .prop_map(|(i, t, blob_len, blob_seed, r)| Op::InsertT1 { i, t, blob_len, blob_seed, r }),
        3 => (-20i64..20, 0..TEXTS.len(), real()).prop_map(|(k, v, w)| Op::InsertT2 { k, v, w }),
        2 => (-3i64..4, 0..TEXTS.len()).prop_map(|(delta, t)| Op::Update { delta, t }),
        1 => (-20i64..20, blob_len()).prop_map(|(below, blob_len)| Op::UpdateBlob { below, blob_len }),
        1 => (-20i64..20).prop_map(|below| Op::Delete { below }),
        5 => (0..QUERIES.len(), -20i64..20).prop_map(|(q, p)| Op::Query(q, p)),
        2 => Just(Op::Begin),
        2 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Vacuum),
        1 => Just(Op::CreateIndex),
        1 => Just(Op::DropIndex),
        1 => Just(Op::Reopen),
    ]
}

/// SELECTs with WHERE, ORDER BY, GROUP BY, aggregates and joins; `?1` is a parameter.
const QUERIES: [&str; 8] = [
    "SELECT id, i, t, length(b), r FROM t1 WHERE i > ?1 ORDER BY id",
    "SELECT t, count(*), sum(i), avg(r), max(length(b)), min(i) FROM t1 GROUP BY t ORDER BY t",
    "SELECT t1.id, t2.v, t2.w FROM t1 JOIN t2 ON t1.i = t2.k WHERE t2.k <> ?1 \
     ORDER BY t1.id, t2.rowid",
    "SELECT hex(substr(b, 1, 40)), length(b) FROM t1 WHERE id % 3 = abs(?1) % 3 ORDER BY id",
    "SELECT k, count(*), total(w), group_concat(v, ',') FROM t2 GROUP BY k HAVING count(*) >= 1 \
     ORDER BY k",
    "SELECT t2.k, t1.t FROM t2 LEFT JOIN t1 ON t1.i = t2.k ORDER BY t2.rowid, t1.id",
    "SELECT count(*), sum(length(b)), max(r) FROM t1 WHERE t IN ('a', 'beta') OR i IS NULL",
    "SELECT i, t FROM t1 WHERE i BETWEEN ?1 AND ?1 + 5 ORDER BY i DESC, t, id LIMIT 7",
];

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|n| (n as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

type Outcome = Result<Vec<Vec<Value>>, String>;

/// Runs one statement, returning its rows or its error message.
fn run(conn: &Connection, sql: &str, params: &[Value]) -> Outcome {
    let mut statement = conn.prepare(sql).map_err(|e| e.to_string())?;
    let columns = statement.column_count();
    let params = rusqlite::params_from_iter(params.iter());
    let mut rows = statement.query(params).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        out.push(
            (0..columns)
                .map(|i| row.get::<_, Value>(i))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

fn statement(op: &Op) -> Option<(String, Vec<Value>)> {
    let text = |t: &usize| Value::Text(TEXTS[*t].to_owned());
    Some(match op {
        Op::InsertT1 {
            i,
            t,
            blob_len,
            blob_seed,
            r,
        } => (
            "INSERT INTO t1(i, t, b, r) VALUES (?1, ?2, ?3, ?4)".into(),
            vec![
                i.map_or(Value::Null, Value::Integer),
                text(t),
                Value::Blob(blob(*blob_len, *blob_seed)),
                Value::Real(*r),
            ],
        ),
        Op::InsertT2 { k, v, w } => (
            "INSERT INTO t2 VALUES (?1, ?2, ?3)".into(),
            vec![Value::Integer(*k), text(v), Value::Real(*w)],
        ),
        Op::Update { delta, t } => (
            "UPDATE t1 SET i = i + ?1, r = r * 2 WHERE t = ?2".into(),
            vec![Value::Integer(*delta), text(t)],
        ),
        Op::UpdateBlob { below, blob_len } => (
            "UPDATE t1 SET b = ?2 WHERE i < ?1".into(),
            vec![Value::Integer(*below), Value::Blob(blob(*blob_len, 7))],
        ),
        Op::Delete { below } => (
            "DELETE FROM t1 WHERE i < ?1".into(),
            vec![Value::Integer(*below)],
        ),
        Op::Query(index, param) => (QUERIES[*index].into(), vec![Value::Integer(*param)]),
        Op::Begin => ("BEGIN".into(), vec![]),
        Op::Commit => ("COMMIT".into(), vec![]),
        Op::Rollback => ("ROLLBACK".into(), vec![]),
        Op::Vacuum => ("VACUUM".into(), vec![]),
        Op::CreateIndex => ("CREATE INDEX IF NOT EXISTS t2_w ON t2(w, v)".into(), vec![]),
        Op::DropIndex => ("DROP INDEX IF EXISTS t2_w".into(), vec![]),
        Op::Reopen => return None,
    })
}

/// Every table's rows in rowid order, and the schema: the full contents.
fn dump(conn: &Connection) -> Vec<(String, Outcome)> {
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables.sort();
    let mut out = vec![(
        "schema".to_owned(),
        run(
            conn,
            "SELECT type, name, sql FROM sqlite_schema ORDER BY name",
            &[],
        ),
    )];
    for table in tables {
        let rows = run(
            conn,
            &format!("SELECT rowid, * FROM {table} ORDER BY rowid"),
            &[],
        );
        out.push((table, rows));
    }
    out
}

struct Pair {
    volume: Arc<dyn PageVolume>,
    mem: Arc<MemVolume>,
    vfs: Connection,
    oracle: Connection,
    oracle_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn new() -> Self {
        let mem = Arc::new(MemVolume::new());
        let volume: Arc<dyn PageVolume> = mem.clone();
        Catalog::new(volume.clone())
            .create_database("diff")
            .unwrap();
        let vfs = open_connection(volume.clone(), "diff").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let oracle_path = dir.path().join("oracle.db");
        let oracle = Connection::open(&oracle_path).unwrap();
        for conn in [&vfs, &oracle] {
            conn.execute_batch(SCHEMA).unwrap();
        }
        Self {
            volume,
            mem,
            vfs,
            oracle,
            oracle_path,
            _dir: dir,
        }
    }

    fn reopen(&mut self) {
        self.vfs = open_connection(self.volume.clone(), "diff").unwrap();
        self.oracle = Connection::open(&self.oracle_path).unwrap();
    }

    fn assert_same_contents(&self) {
        let fresh = open_connection(self.volume.clone(), "diff").unwrap();
        assert_eq!(dump(&fresh), dump(&self.oracle), "contents differ");
        let check: String = fresh
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}

fn check_workload(ops: &[Op]) {
    let mut pair = Pair::new();
    for (index, op) in ops.iter().enumerate() {
        let Some((sql, params)) = statement(op) else {
            pair.reopen();
            continue;
        };
        let on_vfs = run(&pair.vfs, &sql, &params);
        let on_oracle = run(&pair.oracle, &sql, &params);
        assert_eq!(on_vfs, on_oracle, "op {index}: {sql}");
    }
    // Commit what is open, then compare everything from a fresh connection.
    for conn in [&pair.vfs, &pair.oracle] {
        if !conn.is_autocommit() {
            conn.execute_batch("COMMIT").unwrap();
        }
    }
    pair.assert_same_contents();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn workloads_give_identical_results_on_the_vfs_and_stock_sqlite(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        check_workload(&ops);
    }
}

/// A write transaction and the fault armed before it.
#[derive(Debug, Clone)]
enum Fault {
    None,
    FailCommits(u32),
    FailReads(u32),
}

fn write_op() -> impl Strategy<Value = Op> {
    op().prop_filter("writes only", |op| {
        matches!(
            op,
            Op::InsertT1 { .. }
                | Op::InsertT2 { .. }
                | Op::Update { .. }
                | Op::UpdateBlob { .. }
                | Op::Delete { .. }
        )
    })
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => Just(Fault::None),
        2 => (1u32..3).prop_map(Fault::FailCommits),
        1 => (1u32..3).prop_map(Fault::FailReads),
    ]
}

fn run_transaction(conn: &Connection, ops: &[Op]) -> Result<(), String> {
    run(conn, "BEGIN", &[])?;
    for op in ops {
        let (sql, params) = statement(op).expect("write ops are statements");
        if let Err(error) = run(conn, &sql, &params) {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK").map_err(|e| e.to_string())?;
            }
            return Err(error);
        }
    }
    let result = run(conn, "COMMIT", &[]).map(|_| ());
    if result.is_err() && !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").map_err(|e| e.to_string())?;
    }
    result
}

fn check_faulty_transactions(transactions: &[(Fault, Vec<Op>)]) {
    let mut pair = Pair::new();
    for (index, (fault, ops)) in transactions.iter().enumerate() {
        match fault {
            Fault::None => {}
            Fault::FailCommits(count) => pair.mem.fail_next_commits(*count),
            Fault::FailReads(count) => pair.mem.fail_next_reads(*count),
        }
        let on_vfs = run_transaction(&pair.vfs, ops);
        pair.mem.fail_next_commits(0);
        pair.mem.fail_next_reads(0);
        match on_vfs {
            // Acknowledged: the oracle gets it too.
            Ok(()) => run_transaction(&pair.oracle, ops)
                .unwrap_or_else(|e| panic!("transaction {index} failed on the oracle: {e}")),
            Err(error) => {
                assert!(
                    matches!(fault, Fault::FailCommits(_) | Fault::FailReads(_)),
                    "transaction {index} failed without a fault: {error}"
                );
                // Go on with the same connection after some failures and with a fresh
                // one after others: both must see the acknowledged state only.
                if index % 2 == 0 {
                    pair.reopen();
                }
            }
        }
        pair.assert_same_contents();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn after_faults_the_volume_equals_the_oracle_fed_only_acknowledged_transactions(
        transactions in proptest::collection::vec(
            (fault(), proptest::collection::vec(write_op(), 1..6)),
            1..12,
        )
    ) {
        check_faulty_transactions(&transactions);
    }
}

#[test]
fn a_commit_failing_twice_is_never_acknowledged() {
    // V5/C4: deterministic companion of the property above — both commit attempts (the
    // batch and SQLite's journal retry) fail, so the transaction must error.
    let mut pair = Pair::new();
    let ops = vec![Op::InsertT2 { k: 1, v: 2, w: 0.5 }];
    pair.mem.fail_next_commits(2);
    assert!(run_transaction(&pair.vfs, &ops).is_err());
    pair.mem.fail_next_commits(0);
    pair.assert_same_contents();
    run_transaction(&pair.vfs, &ops).unwrap();
    run_transaction(&pair.oracle, &ops).unwrap();
    pair.assert_same_contents();
    pair.reopen();
    pair.assert_same_contents();
}
