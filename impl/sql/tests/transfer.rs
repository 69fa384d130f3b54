//! Export and import of one database as a plain SQLite file (spec/backup.md B1–B5), on a
//! MemVolume; the CLI's tests (impl/cli/tests/db_transfer.rs) add the stock sqlite3 shell.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rusqlite::Connection;
use rusqlite::types::Value;
use sixfold_sql::{
    Catalog, CatalogError, IMPORT_MTR_PAGES, MemVolume, PageVolume, PageWrite, TransferError,
    VolumeError, export_database, import_database, open_connection,
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

/// The schema, then every row of every table in rowid order: what `.dump` would show.
fn dump(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables = Vec::new();
    let mut schema = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    let rows = schema
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })
        .unwrap();
    for row in rows {
        let (kind, name, sql) = row.unwrap();
        out.push(format!("{kind} {name}: {sql:?}"));
        if kind == "table" {
            tables.push(name);
        }
    }
    for table in tables {
        let mut select = conn
            .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY rowid"))
            .unwrap();
        let columns = select.column_count();
        let rows = select
            .query_map([], |row| {
                (0..columns)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        for row in rows {
            out.push(format!("{table}: {:?}", row.unwrap()));
        }
    }
    out
}

fn dump_file(path: &Path) -> Vec<String> {
    dump(&Connection::open(path).unwrap())
}

fn dump_volume(volume: &Arc<dyn PageVolume>, name: &str) -> Vec<String> {
    dump(&open_connection(volume.clone(), name).unwrap())
}

/// A database of more than [`IMPORT_MTR_PAGES`] pages: tables, an index, a view, a
/// trigger, blobs over a page, NULLs and reals.
fn fill(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, photo BLOB);
         CREATE INDEX items_name ON items(name);
         CREATE TABLE log(at INTEGER, what TEXT);
         CREATE VIEW cheap AS SELECT * FROM items WHERE price < 10;
         CREATE TRIGGER logged AFTER INSERT ON items BEGIN
           INSERT INTO log VALUES (new.id, 'insert');
         END;",
    )
    .unwrap();
    for batch in 0..6 {
        conn.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO items(name, price, photo)
             SELECT 'item ' || ({batch} * 100 + i), i * 0.25, CASE WHEN i % 7 = 0 THEN NULL
               ELSE randomblob(3000 + i) END FROM n;"
        ))
        .unwrap();
    }
}

#[test]
fn export_then_import_then_export_round_trips() {
    // B1, B4: the exported file holds the database; imported again and exported again,
    // the content is the same, and the import took several MTRs.
    let (mem, volume) = volume_with(&["shop"]);
    fill(&open_connection(volume.clone(), "shop").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.db");
    let summary = export_database(volume.clone(), "shop", &first).unwrap();
    assert!(
        summary.pages > IMPORT_MTR_PAGES as u64,
        "the test database must span several import MTRs: {summary:?}"
    );
    let source = dump_volume(&volume, "shop");
    assert!(source.len() > 600);
    assert_eq!(dump_file(&first), source);
    let ok: String = Connection::open(&first)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    let commits_before = mem.stats().commits_ok;
    let imported = import_database(volume.clone(), "copy", &first).unwrap();
    assert_eq!(imported.bytes, summary.bytes);
    let import_commits = mem.stats().commits_ok - commits_before;
    assert!(
        import_commits >= 3,
        "reserve, content in MTRs of {IMPORT_MTR_PAGES} pages, name: {import_commits}"
    );
    assert_eq!(dump_volume(&volume, "copy"), source);
    let second = dir.path().join("second.db");
    export_database(volume.clone(), "copy", &second).unwrap();
    assert_eq!(dump_file(&second), source);
    // The imported database is a normal database of the volume: it takes writes.
    let conn = open_connection(volume.clone(), "copy").unwrap();
    conn.execute("INSERT INTO log VALUES (0, 'after')", [])
        .unwrap();
    drop(conn);
    assert_ne!(dump_volume(&volume, "copy"), source);
    assert_eq!(dump_volume(&volume, "shop"), source);
    // Only the export files are left in the folder: no partial copies.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["first.db", "second.db"]);
}

#[test]
fn export_is_one_snapshot_while_a_writer_commits() {
    // B1: one read transaction: every exported file satisfies the invariant every commit
    // keeps (two tables whose sums are equal), however many commits ran during the copy.
    let (_mem, volume) = volume_with(&["bank"]);
    let setup = open_connection(volume.clone(), "bank").unwrap();
    setup
        .execute_batch(
            "CREATE TABLE a(v INTEGER); CREATE TABLE b(v INTEGER);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO a SELECT i FROM n;
             INSERT INTO b SELECT v FROM a;",
        )
        .unwrap();
    drop(setup);
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU32::new(0));
    let writer = {
        let (volume, stop, commits) = (volume.clone(), stop.clone(), commits.clone());
        std::thread::spawn(move || {
            let conn = open_connection(volume, "bank").unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                conn.execute_batch(&format!(
                    "BEGIN; INSERT INTO a VALUES ({n}); INSERT INTO b VALUES ({n}); COMMIT;"
                ))
                .unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let file = dir.path().join(format!("bank{round}.db"));
        export_database(volume.clone(), "bank", &file).unwrap();
        let conn = Connection::open(&file).unwrap();
        let (a, b): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT sum(v) FROM a), (SELECT sum(v) FROM b)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(a, b, "export {round} is not one snapshot");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(commits.load(Ordering::Relaxed) > 0, "the writer never ran");
}

#[test]
fn export_of_a_missing_database_fails_and_writes_no_file() {
    let (_mem, volume) = volume_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.db");
    let error = export_database(volume, "none", &file).unwrap_err();
    assert!(error.to_string().contains("no database named"), "{error}");
    assert!(error.is_refusal(), "{error:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_export_that_cannot_be_renamed_into_place_leaves_no_partial_file() {
    // B1: the target is a folder, so the rename fails after the copy; nothing is left.
    let (_mem, volume) = volume_with(&["app"]);
    let conn = open_connection(volume.clone(), "app").unwrap();
    conn.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"x").unwrap();
    let error = export_database(volume, "app", &target).unwrap_err();
    assert!(matches!(error, TransferError::Io { .. }), "{error:?}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["taken"]);
}

/// A small valid SQLite file with an index over many rows.
fn good_file(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
         CREATE INDEX t_b ON t(b);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT i, printf('row %05d', i) FROM n;",
    )
    .unwrap();
}

/// Asserts the import was refused as `expected` says and nothing reached the volume.
fn assert_refused_without_a_write(file: &Path, expected: &str) {
    let (mem, volume) = volume_with(&["keep"]);
    let before = mem.stats();
    let catalog_before = Catalog::new(volume.clone()).list_databases().unwrap();
    let error = import_database(volume.clone(), "new", file).unwrap_err();
    assert!(error.is_refusal(), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(expected), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert_eq!(mem.stats().commits_ok, before.commits_ok, "{text}");
    assert_eq!(mem.stats().vdl, before.vdl);
    assert_eq!(
        Catalog::new(volume).list_databases().unwrap(),
        catalog_before
    );
}

#[test]
fn import_refuses_files_that_are_not_sqlite_and_writes_nothing() {
    // B3: checked before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "CREATE TABLE t(a);\n".repeat(500)).unwrap();
    assert_refused_without_a_write(&text, "not an SQLite database");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert_refused_without_a_write(&empty, "the file is empty");
    let missing = dir.path().join("missing.db");
    let (_mem, volume) = volume_with(&[]);
    let error = import_database(volume, "x", &missing).unwrap_err();
    assert!(matches!(error, TransferError::Io { .. }), "{error:?}");
}

#[test]
fn import_refuses_a_corrupt_sqlite_file_and_writes_nothing() {
    // B3: a file with SQLite's header whose pages are damaged fails integrity_check (or
    // the copy itself); the volume is unchanged.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("damaged.db");
    good_file(&file);
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 8 * 4096);
    // Garbage over the middle of page 4 (a b-tree page of the table or the index).
    for (i, byte) in bytes[3 * 4096 + 100..3 * 4096 + 2000]
        .iter_mut()
        .enumerate()
    {
        *byte = (i * 37 % 251) as u8;
    }
    std::fs::write(&file, &bytes).unwrap();
    assert_refused_without_a_write(&file, "corrupt SQLite database");

    // A file cut short after its header: page 1 claims pages that are not there.
    let truncated = dir.path().join("truncated.db");
    good_file(&truncated);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..2 * 4096 + 10]).unwrap();
    assert_refused_without_a_write(&truncated, "truncated.db");
}

#[test]
fn import_refuses_a_name_that_exists_and_writes_nothing() {
    // B5.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("good.db");
    good_file(&file);
    let (mem, volume) = volume_with(&["taken"]);
    let before = mem.stats().commits_ok;
    let error = import_database(volume.clone(), "taken", &file).unwrap_err();
    assert!(
        matches!(
            error,
            TransferError::Catalog(CatalogError::AlreadyExists(_))
        ),
        "{error:?}"
    );
    assert!(error.is_refusal());
    assert_eq!(mem.stats().commits_ok, before);
    let error = import_database(volume, "bad/name", &file).unwrap_err();
    assert!(
        error.to_string().contains("invalid database name"),
        "{error}"
    );
}

#[test]
fn import_reads_a_wal_file_with_its_uncheckpointed_frames() {
    // B3: the copy goes through SQLite, so commits still in a -wal file are imported,
    // and the database on the volume is not in WAL mode (V6).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wal.db");
    let writer = Connection::open(&file).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(a); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
    assert!(dir.path().join("wal.db-wal").exists());
    let (_mem, volume) = volume_with(&[]);
    import_database(volume.clone(), "fromwal", &file).unwrap();
    drop(writer);
    let conn = open_connection(volume, "fromwal").unwrap();
    let sum: i64 = conn
        .query_row("SELECT sum(a) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(sum, 6);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    conn.execute("INSERT INTO t VALUES (4)", []).unwrap();
}

/// A volume whose commit number `fail_at` (1-based, counted from creation) fails.
struct FailingCommit {
    inner: MemVolume,
    commits: AtomicU32,
    fail_at: u32,
}

impl PageVolume for FailingCommit {
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
        if self.commits.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(VolumeError::Injected {
                operation: "commit",
            });
        }
        self.inner.commit(writes)
    }
}

#[test]
fn an_import_that_fails_at_any_commit_leaves_no_database_of_that_name() {
    // B4: the name appears only with the last MTR: a failure at any earlier commit (or at
    // that one) leaves the catalog without it; a later import of the name succeeds.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.db");
    {
        let (_mem, volume) = volume_with(&["src"]);
        fill(&open_connection(volume.clone(), "src").unwrap());
        export_database(volume, "src", &file).unwrap();
    }
    let expected = dump_file(&file);
    // Commit 1 creates "keep"; the import's commits follow.
    let mut fail_at = 2;
    loop {
        let volume = Arc::new(FailingCommit {
            inner: MemVolume::new(),
            commits: AtomicU32::new(0),
            fail_at,
        });
        let dyn_volume: Arc<dyn PageVolume> = volume.clone();
        let catalog = Catalog::new(dyn_volume.clone());
        catalog.create_database("keep").unwrap();
        match import_database(dyn_volume.clone(), "big", &file) {
            Ok(_) => {
                assert!(fail_at > 4, "the import took only {} commits", fail_at - 2);
                assert_eq!(dump_volume(&dyn_volume, "big"), expected);
                break;
            }
            Err(error) => {
                assert!(!error.is_refusal(), "a volume failure is no refusal");
                let names: Vec<_> = catalog
                    .list_databases()
                    .unwrap()
                    .into_iter()
                    .map(|info| info.name)
                    .collect();
                assert_eq!(names, ["keep"], "failed at commit {fail_at}");
                import_database(dyn_volume.clone(), "big", &file).unwrap();
                assert_eq!(dump_volume(&dyn_volume, "big"), expected);
            }
        }
        fail_at += 1;
    }
}
