//! Curated scripts through the shell runner: the output on the VFS is snapshotted
//! (insta) and must equal the output of stock SQLite on a local file (V4, V5).

use std::sync::Arc;

use rusqlite::Connection;
use sixfold_sql::shell::run_shell;
use sixfold_sql::{Catalog, MemVolume, PageVolume, open_connection};

/// Runs `script` through the shell; returns stdout, then stderr after a marker.
fn shell_output(conn: &Connection, script: &str) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = run_shell(conn, script.as_bytes(), &mut out, &mut err);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if result.is_err() {
        text.push_str("--- stderr ---\n");
        text.push_str(&String::from_utf8_lossy(&err));
    }
    text
}

fn on_vfs(script: &str) -> String {
    let volume: Arc<dyn PageVolume> = Arc::new(MemVolume::new());
    Catalog::new(volume.clone())
        .create_database("snap")
        .unwrap();
    let conn = open_connection(volume, "snap").unwrap();
    shell_output(&conn, script)
}

fn on_stock_sqlite(script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("stock.db")).unwrap();
    shell_output(&conn, script)
}

fn check(name: &str, script: &str) {
    let output = on_vfs(script);
    assert_eq!(
        output,
        on_stock_sqlite(script),
        "{name}: VFS and stock SQLite differ"
    );
    insta::assert_snapshot!(name, output);
}

#[test]
fn crud() {
    check(
        "crud",
        "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER);
         INSERT INTO kv VALUES ('a', 1), ('b', 2), ('c', NULL);
         UPDATE kv SET v = v * 10 WHERE k <> 'a';
         DELETE FROM kv WHERE k = 'a';
         INSERT OR REPLACE INTO kv VALUES ('b', 7);
         SELECT * FROM kv ORDER BY k;
         SELECT count(*), sum(v), typeof(sum(v)) FROM kv;",
    );
}

#[test]
fn numbers_and_aggregates() {
    check(
        "numbers_and_aggregates",
        "CREATE TABLE m(g TEXT, x REAL, n INTEGER);
         INSERT INTO m VALUES ('p', 0.1, 1), ('p', 0.2, 2), ('q', 1e300, 3), ('q', -2.5, 4),
                              ('r', 1.0/3, 5), ('r', NULL, NULL);
         SELECT g, count(*), count(x), sum(x), avg(n), min(x), max(x), total(n)
           FROM m GROUP BY g ORDER BY g;
         SELECT 1.0, 1e15, 1e16, 123456789.125, -0.0, 2.0/3, 9223372036854775807, 5/2, 5%3;
         SELECT group_concat(n, '+') FROM (SELECT n FROM m WHERE n IS NOT NULL ORDER BY n);",
    );
}

#[test]
fn joins_and_views() {
    check(
        "joins_and_views",
        "CREATE TABLE a(id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE b(a_id INTEGER, tag TEXT);
         CREATE INDEX b_a ON b(a_id);
         INSERT INTO a VALUES (1, 'one'), (2, 'two'), (3, 'three');
         INSERT INTO b VALUES (1, 'x'), (1, 'y'), (3, 'z'), (4, 'orphan');
         CREATE VIEW tagged AS SELECT a.name, b.tag FROM a JOIN b ON b.a_id = a.id;
         SELECT * FROM tagged ORDER BY name, tag;
         SELECT a.name, count(b.tag) FROM a LEFT JOIN b ON b.a_id = a.id
           GROUP BY a.id ORDER BY a.id;
         SELECT tag FROM b WHERE a_id NOT IN (SELECT id FROM a);",
    );
}

#[test]
fn blobs_spanning_pages() {
    check(
        "blobs_spanning_pages",
        "CREATE TABLE f(name TEXT, data BLOB);
         INSERT INTO f VALUES ('small', x'00ff10'),
                              ('big', unhex(replace(hex(zeroblob(20000)), '00', 'a5'))),
                              ('text', printf('%.*c', 9000, 'q'));
         UPDATE f SET data = unhex(hex(data) || 'ABCD') WHERE name = 'small';
         SELECT name, length(data), typeof(data), hex(substr(data, -3)) FROM f ORDER BY name;
         SELECT count(*) FROM f
           WHERE substr(data, 1, 20000) = unhex(replace(hex(zeroblob(20000)), '00', 'a5'));",
    );
}

#[test]
fn transactions_and_rollback() {
    check(
        "transactions_and_rollback",
        "CREATE TABLE t(x);
         BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); COMMIT;
         BEGIN; INSERT INTO t VALUES (3); ROLLBACK;
         SAVEPOINT s1; INSERT INTO t VALUES (4); SAVEPOINT s2; INSERT INTO t VALUES (5);
         ROLLBACK TO s2; RELEASE s1;
         SELECT group_concat(x) FROM t;",
    );
}

#[test]
fn vacuum_and_page_count() {
    check(
        "vacuum_and_page_count",
        "CREATE TABLE v(x);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
           INSERT INTO v SELECT zeroblob(1000) FROM n;
         PRAGMA page_count;
         DELETE FROM v WHERE rowid > 5;
         VACUUM;
         PRAGMA page_count;
         SELECT count(*) FROM v;
         PRAGMA integrity_check;",
    );
}

#[test]
fn stops_at_the_first_error() {
    check(
        "stops_at_the_first_error",
        "SELECT 'before';
         SELECT * FROM no_such_table;
         SELECT 'never';",
    );
}

#[test]
fn wal_is_refused_with_a_clear_error() {
    // V6: the only script whose output differs from stock SQLite (which accepts WAL).
    let output = on_vfs("SELECT 'ok';\nPRAGMA journal_mode = WAL;\nSELECT 'never';");
    insta::assert_snapshot!("wal_is_refused", output);
}
