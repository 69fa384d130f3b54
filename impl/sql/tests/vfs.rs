//! The VFS on a MemVolume: commit points, snapshots, refusals (V4–V7, R2, C4, C5).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use rusqlite::{Connection, ErrorCode};
use sixfold_sql::{
    Catalog, CatalogError, MemVolume, PAGE_SIZE, PageVolume, PageWrite, VolumeError,
    last_vfs_error, open_connection,
};

fn volume_with(names: &[&str]) -> (Arc<MemVolume>, Arc<dyn PageVolume>) {
    let mem = Arc::new(MemVolume::new());
    let volume: Arc<dyn PageVolume> = mem.clone();
    let catalog = Catalog::new(volume.clone());
    for name in names {
        catalog.create_database(name).unwrap();
    }
    (mem, volume)
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

fn error_code(error: &rusqlite::Error) -> Option<ErrorCode> {
    error.sqlite_error_code()
}

/// The size in bytes the metadata page of `db_id` records (docs/sql.md layout).
fn recorded_size(mem: &MemVolume, db_id: u32) -> u64 {
    let read_point = mem.begin_read().unwrap();
    let meta = mem.read_page(db_id, 0, read_point).unwrap().unwrap();
    mem.end_read(read_point);
    u64::from_le_bytes(meta[16..24].try_into().unwrap())
}

#[test]
fn data_written_by_one_connection_is_read_by_another() {
    // V4: a database file name maps to a volume database.
    let (_mem, volume) = volume_with(&["app"]);
    let writer = open_connection(volume.clone(), "app").unwrap();
    writer
        .execute_batch(
            "CREATE TABLE t(a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two');",
        )
        .unwrap();
    drop(writer);
    let reader = open_connection(volume, "app").unwrap();
    let b: String = reader
        .query_row("SELECT b FROM t WHERE a = 2", [], |row| row.get(0))
        .unwrap();
    assert_eq!(b, "two");
}

#[test]
fn each_write_transaction_is_one_commit() {
    // V5: one SQLite write transaction = one MTR (one commit()), reads none.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume, "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)")
        .unwrap();
    let before = mem.stats().commits_ok;
    conn.execute_batch(
        "BEGIN; INSERT INTO t VALUES (1, 'x'); INSERT INTO t VALUES (2, 'y'); \
         CREATE INDEX tb ON t(b); COMMIT;",
    )
    .unwrap();
    assert_eq!(mem.stats().commits_ok, before + 1);
    conn.execute("INSERT INTO t VALUES (3, 'z')", []).unwrap();
    assert_eq!(mem.stats().commits_ok, before + 2);
    assert_eq!(count(&conn, "t"), 3);
    assert_eq!(mem.stats().commits_ok, before + 2, "a read commits nothing");
    conn.execute_batch("BEGIN; INSERT INTO t VALUES (4, 'w'); ROLLBACK;")
        .unwrap();
    assert_eq!(
        mem.stats().commits_ok,
        before + 2,
        "a rollback commits nothing"
    );
    assert_eq!(count(&conn, "t"), 3);
}

#[test]
fn transaction_spilling_out_of_the_cache_is_still_one_atomic_commit() {
    // V5: a transaction larger than the page cache spills pages to the file before
    // COMMIT; they are buffered and reach the volume in the one commit at xSync.
    let (mem, volume) = volume_with(&["big"]);
    let writer = open_connection(volume.clone(), "big").unwrap();
    let reader = open_connection(volume, "big").unwrap();
    writer
        .execute_batch("PRAGMA cache_size = 8; CREATE TABLE t(a INTEGER, pad BLOB)")
        .unwrap();
    let before = mem.stats().commits_ok;
    writer.execute_batch("BEGIN").unwrap();
    for n in 0..400 {
        writer
            .execute("INSERT INTO t VALUES (?1, zeroblob(500))", [n])
            .unwrap();
    }
    // Spilled pages are not visible to anybody else before the commit.
    assert_eq!(count(&reader, "t"), 0);
    assert_eq!(mem.stats().commits_ok, before);
    writer.execute_batch("COMMIT").unwrap();
    assert_eq!(mem.stats().commits_ok, before + 1);
    assert_eq!(count(&reader, "t"), 400);
    let check: String = reader
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn rollback_after_a_spill_leaves_the_volume_unchanged() {
    // V5: spilled pages of a rolled-back transaction never reach the volume.
    let (mem, volume) = volume_with(&["big"]);
    let conn = open_connection(volume, "big").unwrap();
    conn.execute_batch(
        "PRAGMA cache_size = 8; CREATE TABLE t(a INTEGER, pad BLOB); \
         INSERT INTO t VALUES (1, zeroblob(100));",
    )
    .unwrap();
    let before = mem.stats();
    conn.execute_batch("BEGIN").unwrap();
    for n in 0..300 {
        conn.execute("INSERT INTO t VALUES (?1, zeroblob(600))", [n])
            .unwrap();
    }
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(mem.stats().commits_ok, before.commits_ok);
    assert_eq!(mem.stats().vdl, before.vdl);
    assert_eq!(count(&conn, "t"), 1);
}

#[test]
fn failed_commit_fails_the_transaction_and_changes_nothing() {
    // V5/C4: a commit the volume did not make durable is an error; nothing of it shows.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume.clone(), "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
        .unwrap();
    // The batch commit fails, and so does SQLite's retry through its journal.
    mem.fail_next_commits(2);
    let error = conn
        .execute_batch("BEGIN; INSERT INTO t VALUES (2); INSERT INTO t VALUES (3); COMMIT;")
        .unwrap_err();
    assert_eq!(
        error_code(&error),
        Some(ErrorCode::SystemIoFailure),
        "{error}"
    );
    let text = last_vfs_error(&conn).expect("error text kept");
    assert!(text.contains("injected fault in commit"), "{text}");
    assert!(
        conn.is_autocommit(),
        "the failed transaction was rolled back"
    );
    assert_eq!(count(&conn, "t"), 1);
    let other = open_connection(volume, "app").unwrap();
    assert_eq!(count(&other, "t"), 1);
    // The connection keeps working.
    conn.execute("INSERT INTO t VALUES (4)", []).unwrap();
    assert_eq!(count(&other, "t"), 2);
}

#[test]
fn failed_batch_commit_is_retried_by_sqlite_through_its_journal() {
    // V5: after SQLITE_IOERR_COMMIT_ATOMIC SQLite retries with a journal; the retry
    // commits at xSync, still as one MTR, and the data lands exactly once.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume, "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a)").unwrap();
    let before = mem.stats();
    mem.fail_next_commits(1);
    conn.execute("INSERT INTO t VALUES (7)", []).unwrap();
    let after = mem.stats();
    assert_eq!(after.commits_failed, before.commits_failed + 1);
    assert_eq!(after.commits_ok, before.commits_ok + 1);
    assert_eq!(count(&conn, "t"), 1);
}

#[test]
fn failed_spill_path_commit_rolls_back() {
    // V5 on the journal path: a failed commit at xSync rolls the transaction back.
    let (mem, volume) = volume_with(&["big"]);
    let conn = open_connection(volume, "big").unwrap();
    conn.execute_batch("PRAGMA cache_size = 8; CREATE TABLE t(a INTEGER, pad BLOB)")
        .unwrap();
    conn.execute_batch("BEGIN").unwrap();
    for n in 0..300 {
        conn.execute("INSERT INTO t VALUES (?1, zeroblob(600))", [n])
            .unwrap();
    }
    mem.fail_next_commits(1);
    assert!(conn.execute_batch("COMMIT").is_err());
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").unwrap();
    }
    assert_eq!(count(&conn, "t"), 0);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn wal_journal_off_and_synchronous_off_are_refused() {
    // V6: configurations that would let SQLite write a transaction non-atomically.
    let (_mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume, "app").unwrap();
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA main.journal_mode = wal",
        "PRAGMA journal_mode = OFF",
        "PRAGMA synchronous = OFF",
    ] {
        let error = conn
            .query_row(pragma, [], |row| row.get::<_, String>(0))
            .map(|_| ())
            .or_else(|_| conn.execute_batch(pragma))
            .unwrap_err();
        assert!(
            error.to_string().contains("refused (V6)"),
            "{pragma}: {error}"
        );
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    // Other journal modes keep journals local and in memory (V4) and work.
    for mode in ["memory", "persist", "truncate", "delete"] {
        let set: String = conn
            .query_row(&format!("PRAGMA journal_mode = {mode}"), [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(set, mode);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS m(x); INSERT INTO m VALUES ('{mode}')"
        ))
        .unwrap();
    }
    assert_eq!(count(&conn, "m"), 4);
}

#[test]
fn readers_keep_their_snapshot_while_a_writer_commits() {
    // R2: a read point is taken with the SHARED lock; a read transaction sees one
    // snapshot even while another connection commits.
    let (_mem, volume) = volume_with(&["app"]);
    let writer = open_connection(volume.clone(), "app").unwrap();
    let reader_a = open_connection(volume.clone(), "app").unwrap();
    let reader_b = open_connection(volume, "app").unwrap();
    writer
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
        .unwrap();
    reader_a.execute_batch("BEGIN").unwrap();
    assert_eq!(count(&reader_a, "t"), 1);
    writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
    assert_eq!(count(&reader_a, "t"), 1, "A still reads its snapshot");
    assert_eq!(count(&reader_b, "t"), 2, "B starts after the commit");
    // A stale snapshot may not start writing: it would overwrite the commit.
    let error = reader_a
        .execute("INSERT INTO t VALUES (3)", [])
        .unwrap_err();
    assert_eq!(error_code(&error), Some(ErrorCode::DatabaseBusy), "{error}");
    reader_a.execute_batch("ROLLBACK").unwrap();
    reader_a.execute("INSERT INTO t VALUES (3)", []).unwrap();
    assert_eq!(count(&writer, "t"), 3);
}

#[test]
fn only_one_writer_at_a_time() {
    // The in-process lock table: RESERVED is exclusive among connections.
    let (_mem, volume) = volume_with(&["app"]);
    let first = open_connection(volume.clone(), "app").unwrap();
    let second = open_connection(volume, "app").unwrap();
    first.execute_batch("CREATE TABLE t(a)").unwrap();
    first.execute_batch("BEGIN IMMEDIATE").unwrap();
    // rusqlite's default busy timeout would retry for 5 s before reporting BUSY.
    second.busy_timeout(std::time::Duration::ZERO).unwrap();
    let error = second.execute_batch("BEGIN IMMEDIATE").unwrap_err();
    assert_eq!(error_code(&error), Some(ErrorCode::DatabaseBusy));
    // Readers are not blocked by the writer.
    assert_eq!(count(&second, "t"), 0);
    first
        .execute_batch("INSERT INTO t VALUES (1); COMMIT")
        .unwrap();
    second
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT")
        .unwrap();
    assert_eq!(count(&first, "t"), 2);
}

#[test]
fn two_connections_read_consistent_snapshots_while_one_writes() {
    // R2: two reader threads check an invariant (the sum of balances) and that repeated
    // reads inside one read transaction are identical, while a writer moves money.
    const ACCOUNTS: i64 = 20;
    const TRANSFERS: i64 = 300;
    let (_mem, volume) = volume_with(&["bank"]);
    let setup = open_connection(volume.clone(), "bank").unwrap();
    setup
        .execute_batch("CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER)")
        .unwrap();
    for id in 0..ACCOUNTS {
        setup
            .execute("INSERT INTO acct VALUES (?1, 100)", [id])
            .unwrap();
    }
    drop(setup);
    let done = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (volume, done, start) = (volume.clone(), done.clone(), start.clone());
            std::thread::spawn(move || {
                let conn = open_connection(volume, "bank").unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                start.wait();
                let mut snapshots = 0;
                let mut versions_seen = std::collections::BTreeSet::new();
                while done.load(Ordering::Acquire) == 0 || snapshots < 5 {
                    conn.execute_batch("BEGIN").unwrap();
                    let read = || -> Vec<i64> {
                        let mut statement = conn
                            .prepare("SELECT balance FROM acct ORDER BY id")
                            .unwrap();
                        statement
                            .query_map([], |row| row.get(0))
                            .unwrap()
                            .map(Result::unwrap)
                            .collect()
                    };
                    let first = read();
                    std::thread::yield_now();
                    let second = read();
                    conn.execute_batch("COMMIT").unwrap();
                    assert_eq!(first, second, "a read transaction saw two snapshots");
                    assert_eq!(first.iter().sum::<i64>(), ACCOUNTS * 100, "torn transfer");
                    versions_seen.insert(first);
                    snapshots += 1;
                }
                versions_seen.len()
            })
        })
        .collect();
    let writer = open_connection(volume, "bank").unwrap();
    writer
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    start.wait();
    for n in 0..TRANSFERS {
        let (from, to) = (n % ACCOUNTS, (n * 7 + 3) % ACCOUNTS);
        writer
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; UPDATE acct SET balance = balance - 5 WHERE id = {from}; \
                 UPDATE acct SET balance = balance + 5 WHERE id = {to}; COMMIT;"
            ))
            .unwrap();
    }
    done.store(1, Ordering::Release);
    for reader in readers {
        let distinct = reader.join().unwrap();
        assert!(distinct >= 1);
    }
}

#[test]
fn vacuum_shrinks_the_file_recorded_in_the_metadata_page() {
    // Truncate support: VACUUM's shrink reaches the metadata page's size.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume.clone(), "app").unwrap();
    conn.execute_batch(
        "CREATE TABLE t(a INTEGER, b BLOB); \
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) \
         INSERT INTO t SELECT x, randomblob(300) FROM n;",
    )
    .unwrap();
    let db_id = Catalog::new(volume.clone()).lookup("app").unwrap().unwrap();
    let grown = recorded_size(&mem, db_id);
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(grown, pages as u64 * PAGE_SIZE as u64);
    conn.execute_batch("DELETE FROM t WHERE a > 10; VACUUM;")
        .unwrap();
    let shrunk = recorded_size(&mem, db_id);
    let pages_after: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert!(shrunk < grown / 4, "{shrunk} vs {grown}");
    assert_eq!(shrunk, pages_after as u64 * PAGE_SIZE as u64);
    let fresh = open_connection(volume, "app").unwrap();
    assert_eq!(count(&fresh, "t"), 10);
    let check: String = fresh
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // Growing again after the shrink reads zeros, not what the shrink cut off.
    fresh
        .execute_batch(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200) \
             INSERT INTO t SELECT x, zeroblob(300) FROM n;",
        )
        .unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn blobs_larger_than_a_page_round_trip() {
    let (_mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume.clone(), "app").unwrap();
    let blob: Vec<u8> = (0..50_000u32).map(|n| (n * 31 % 251) as u8).collect();
    conn.execute_batch("CREATE TABLE b(x BLOB)").unwrap();
    conn.execute("INSERT INTO b VALUES (?1)", [&blob]).unwrap();
    let other = open_connection(volume, "app").unwrap();
    let back: Vec<u8> = other
        .query_row("SELECT x FROM b", [], |r| r.get(0))
        .unwrap();
    assert_eq!(back, blob);
}

#[test]
fn sqlite_page_sizes_other_than_4096_work() {
    // Writes that cover part of a volume page are merged with its current image.
    for page_size in [1024, 8192, 65536] {
        let (_mem, volume) = volume_with(&["app"]);
        let conn = open_connection(volume.clone(), "app").unwrap();
        conn.execute_batch(&format!(
            "PRAGMA page_size = {page_size}; CREATE TABLE t(a, b); \
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300) \
             INSERT INTO t SELECT x, hex(randomblob(100)) FROM n;"
        ))
        .unwrap();
        drop(conn);
        let fresh = open_connection(volume, "app").unwrap();
        let size: i64 = fresh
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, page_size);
        assert_eq!(count(&fresh, "t"), 300);
        let check: String = fresh
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}

#[test]
fn temp_tables_and_journals_never_reach_the_volume() {
    // V4: temporary files and journals are local and in memory.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume, "app").unwrap();
    let before = mem.stats().commits_ok;
    conn.execute_batch(
        "PRAGMA temp_store = FILE; CREATE TEMP TABLE scratch(a); \
         INSERT INTO scratch VALUES (1), (2); SELECT * FROM scratch ORDER BY a DESC;",
    )
    .unwrap();
    assert_eq!(mem.stats().commits_ok, before);
}

#[test]
fn missing_and_invalid_databases_do_not_open() {
    let (_mem, volume) = volume_with(&["app"]);
    let error = open_connection(volume.clone(), "nope").unwrap_err();
    assert_eq!(error_code(&error), Some(ErrorCode::CannotOpen));
    assert!(error.to_string().contains("no database named"), "{error}");
    let error = open_connection(volume, "../etc/passwd").unwrap_err();
    assert!(
        error.to_string().contains("invalid database name"),
        "{error}"
    );
}

#[test]
fn open_database_cannot_be_dropped() {
    let (_mem, volume) = volume_with(&["app"]);
    let catalog = Catalog::new(volume.clone());
    let conn = open_connection(volume.clone(), "app").unwrap();
    assert!(matches!(
        catalog.drop_database("app"),
        Err(CatalogError::InUse { open_files: 1, .. })
    ));
    drop(conn);
    catalog.drop_database("app").unwrap();
    assert!(open_connection(volume, "app").is_err());
}

#[test]
fn databases_and_volumes_are_independent() {
    // V1: many databases per volume; two volumes in one process get their own VFS.
    let (_mem_a, volume_a) = volume_with(&["one", "two"]);
    let (_mem_b, volume_b) = volume_with(&["one"]);
    for (volume, name, value) in [
        (&volume_a, "one", 1),
        (&volume_a, "two", 2),
        (&volume_b, "one", 3),
    ] {
        let conn = open_connection(volume.clone(), name).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE t(v); INSERT INTO t VALUES ({value})"
        ))
        .unwrap();
    }
    for (volume, name, value) in [
        (&volume_a, "one", 1),
        (&volume_a, "two", 2),
        (&volume_b, "one", 3),
    ] {
        let conn = open_connection(volume.clone(), name).unwrap();
        let got: i64 = conn.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(got, value);
    }
}

#[test]
fn read_fault_is_an_io_error_and_the_connection_recovers() {
    let (mem, volume) = volume_with(&["app"]);
    let writer = open_connection(volume.clone(), "app").unwrap();
    writer
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
        .unwrap();
    // A fresh connection has an empty page cache: its first query reads the volume.
    let conn = open_connection(volume, "app").unwrap();
    mem.fail_next_reads(1);
    let error = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert_eq!(
        error_code(&error),
        Some(ErrorCode::SystemIoFailure),
        "{error}"
    );
    let text = last_vfs_error(&conn).expect("error text kept");
    assert!(text.contains("injected fault in read_page"), "{text}");
    assert_eq!(count(&conn, "t"), 1);
}

/// A PageVolume wrapper that records when commits return (C4/C5).
struct Recording {
    inner: MemVolume,
    commits_returned: AtomicU64,
}

impl PageVolume for Recording {
    fn begin_read(&self) -> Result<u64, VolumeError> {
        self.inner.begin_read()
    }
    fn end_read(&self, read_point: u64) {
        self.inner.end_read(read_point)
    }
    fn read_page(&self, db: u32, page_no: u32, rp: u64) -> Result<Option<Vec<u8>>, VolumeError> {
        self.inner.read_page(db, page_no, rp)
    }
    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let lsn = self.inner.commit(writes)?;
        self.commits_returned.fetch_add(1, Ordering::SeqCst);
        Ok(lsn)
    }
}

#[test]
fn sql_commit_returns_only_after_the_volume_commit_returned() {
    // C4/C5/V5: COMMIT returns to SQLite's caller only once commit() returned.
    let recording = Arc::new(Recording {
        inner: MemVolume::new(),
        commits_returned: AtomicU64::new(0),
    });
    let volume: Arc<dyn PageVolume> = recording.clone();
    Catalog::new(volume.clone()).create_database("app").unwrap();
    let conn = open_connection(volume, "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a)").unwrap();
    for n in 0..5 {
        let before = recording.commits_returned.load(Ordering::SeqCst);
        conn.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
        assert_eq!(
            recording.commits_returned.load(Ordering::SeqCst),
            before + 1
        );
    }
}

#[test]
fn a_volume_is_released_when_its_connections_close() {
    // The VFS holds its volume weakly; open files hold it. No leak per volume.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume.clone(), "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a)").unwrap();
    let weak = Arc::downgrade(&mem);
    drop((mem, volume));
    assert!(
        weak.upgrade().is_some(),
        "an open connection keeps the volume"
    );
    drop(conn);
    assert!(weak.upgrade().is_none(), "closed connections release it");
    // A new volume still works (the sweep unregisters the old VFS).
    let (_mem, volume) = volume_with(&["app"]);
    open_connection(volume, "app").unwrap();
}

#[test]
fn shell_reports_the_volume_error_text_and_stops() {
    // V5: a commit the volume refused fails the statement; the shell prints SQLite's
    // message with the VFS's text and runs nothing after it.
    let (mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume, "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a)").unwrap();
    mem.fail_next_commits(2);
    let script = "INSERT INTO t VALUES (1);\nSELECT 'never';\n";
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = sixfold_sql::shell::run_shell(&conn, script.as_bytes(), &mut out, &mut err);
    assert!(result.is_err());
    assert!(out.is_empty());
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.starts_with(
            "Runtime error near line 1: disk I/O error (sixfold: commit: injected fault in commit)"
        ),
        "{err}"
    );
    assert_eq!(count(&conn, "t"), 0);
}
