//! `sixfold db export` and `sixfold db import` as a user runs them (spec/backup.md B1–B5):
//! the export opens in the stock `sqlite3` shell with the same `.dump`, a round trip is
//! identical, a corrupt file is refused with the volume unchanged, and an export beside a
//! running application never fences it (R12).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `sixfold ARGS` with `stdin` piped in.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sixfold");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The stock sqlite3 shell, if installed (CI installs Debian's `sqlite3`).
fn stock_sqlite3() -> Option<&'static str> {
    let found = Command::new("sqlite3")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        eprintln!("SKIPPED: the stock `sqlite3` shell is not installed (apt-get install sqlite3)");
    }
    found.then_some("sqlite3")
}

fn sqlite3(file: &Path, command: &str) -> String {
    let output = Command::new("sqlite3")
        .arg(file)
        .arg(command)
        .output()
        .unwrap();
    ok(output)
}

const SCHEMA_AND_DATA: &str = "
CREATE TABLE items(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, price REAL, photo BLOB);
CREATE INDEX items_name ON items(name);
CREATE TABLE 'odd name'(\"a b\" TEXT, c);
CREATE VIEW cheap AS SELECT name FROM items WHERE price < 1;
CREATE TRIGGER keep AFTER DELETE ON items BEGIN INSERT INTO 'odd name' VALUES (old.name, 'gone'); END;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
INSERT INTO items(name, price, photo) SELECT 'item ' || i || ' ünï', i * 0.1,
  CASE WHEN i % 3 = 0 THEN NULL ELSE zeroblob(i * 7) END FROM n;
INSERT INTO 'odd name' VALUES ('it''s', X'00FF'), (NULL, 1.5e300), ('line
break', -0.0);
DELETE FROM items WHERE id % 50 = 0;
";

#[test]
fn export_opens_in_stock_sqlite3_with_the_same_dump_and_round_trips() {
    // B1, B4: `.dump` of the export (stock sqlite3) equals sixfold's `.dump` of the
    // database; export → import → export gives the same `.dump` again.
    let Some(_) = stock_sqlite3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    ok(run(
        &["sql", "--data", data, "--db", "shop"],
        SCHEMA_AND_DATA,
    ));
    let source_dump = ok(run(&["sql", "--data", data, "--db", "shop", ".dump"], ""));
    assert!(source_dump.lines().count() > 300, "{source_dump}");

    let first = dir.path().join("first.db");
    let printed = ok(run(
        &[
            "db",
            "export",
            "--data",
            data,
            "shop",
            first.to_str().unwrap(),
        ],
        "",
    ));
    assert!(printed.starts_with("exported shop to"), "{printed}");
    assert_eq!(sqlite3(&first, "PRAGMA integrity_check"), "ok\n");
    assert_eq!(sqlite3(&first, "PRAGMA journal_mode"), "delete\n");
    assert_eq!(sqlite3(&first, ".dump"), source_dump);

    let printed = ok(run(
        &[
            "db",
            "import",
            "--data",
            data,
            "copy",
            first.to_str().unwrap(),
        ],
        "",
    ));
    assert!(printed.starts_with("imported"), "{printed}");
    let copy_dump = ok(run(&["sql", "--data", data, "--db", "copy", ".dump"], ""));
    assert_eq!(copy_dump, source_dump);
    let second = dir.path().join("second.db");
    ok(run(
        &[
            "db",
            "export",
            "--data",
            data,
            "copy",
            second.to_str().unwrap(),
        ],
        "",
    ));
    assert_eq!(sqlite3(&second, ".dump"), source_dump);
    // The copy is a database of its own: a write to it leaves the source as it was.
    ok(run(
        &["sql", "--data", data, "--db", "copy"],
        "DELETE FROM items WHERE id < 10;",
    ));
    let list = ok(run(&["db", "list", "--data", data], ""));
    assert_eq!(list, "copy\t2\nshop\t1\n");
    assert_eq!(
        ok(run(&["sql", "--data", data, "--db", "shop", ".dump"], "")),
        source_dump
    );
}

#[test]
fn a_corrupt_or_foreign_file_is_refused_and_the_volume_is_unchanged() {
    // B3: exit 1 with a message naming the file; no database appears, none changes.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    ok(run(
        &["sql", "--data", data, "--db", "shop"],
        SCHEMA_AND_DATA,
    ));
    let good = dir.path().join("good.db");
    ok(run(
        &[
            "db",
            "export",
            "--data",
            data,
            "shop",
            good.to_str().unwrap(),
        ],
        "",
    ));
    let before_dump = ok(run(&["sql", "--data", data, "--db", "shop", ".dump"], ""));
    let before_list = ok(run(&["db", "list", "--data", data], ""));

    // The root page of the index gets a b-tree header of garbage.
    let root: usize = Command::new("sqlite3")
        .arg(&good)
        .arg("SELECT rootpage FROM sqlite_schema WHERE name = 'items_name'")
        .output()
        .ok()
        .and_then(|output| text(&output.stdout).trim().parse().ok())
        .unwrap_or(3);
    let mut bytes = std::fs::read(&good).unwrap();
    let at = (root - 1) * 4096;
    bytes[at..at + 64].fill(0xFF);
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).unwrap();
    let foreign = dir.path().join("foreign.db");
    std::fs::write(&foreign, "PK\u{3}\u{4} not a database at all").unwrap();
    for (file, says) in [
        (&damaged, "corrupt SQLite database"),
        (&foreign, "not an SQLite database"),
    ] {
        let output = run(
            &[
                "db",
                "import",
                "--data",
                data,
                "new",
                file.to_str().unwrap(),
            ],
            "",
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    }
    // A name that exists is refused too (B5).
    let output = run(
        &[
            "db",
            "import",
            "--data",
            data,
            "shop",
            good.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("already exists"));
    assert_eq!(ok(run(&["db", "list", "--data", data], "")), before_list);
    assert_eq!(
        ok(run(&["sql", "--data", data, "--db", "shop", ".dump"], "")),
        before_dump
    );
}

/// Kills the child when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// An application: `sixfold sql --cluster` kept open, statements in, rows out.
struct App {
    child: KillOnDrop,
    stdin: ChildStdin,
    rows: Receiver<String>,
}

impl App {
    fn commit(&mut self, n: u32) {
        writeln!(
            self.stdin,
            "INSERT INTO t VALUES ({n}, randomblob(2000)); SELECT count(*) FROM t;"
        )
        .unwrap();
        self.stdin.flush().unwrap();
        let row = self.rows.recv_timeout(Duration::from_secs(60)).ok();
        assert_eq!(
            row,
            Some(n.to_string()),
            "the application stopped committing"
        );
    }
}

#[test]
fn export_beside_a_running_application_never_fences_it() {
    // B2 (R12): exports attach read-only; the application's writer keeps committing, and
    // each export is a consistent database holding a prefix of the commits.
    let Some(_) = stock_sqlite3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = KillOnDrop(
        Command::new(BIN)
            .args(["cluster", "--data"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = lines_of(cluster.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started
        .recv_timeout(Duration::from_secs(30))
        .is_ok_and(|line| line.starts_with("running"))
    {
        assert!(Instant::now() < deadline, "cluster did not start");
    }
    let config = dir.path().join("data/cluster.toml");
    let config = config.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["sql", "--cluster", config, "--db", "app"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let rows = lines_of(child.stdout.take().unwrap());
    let mut app = App {
        child: KillOnDrop(child),
        stdin,
        rows,
    };
    writeln!(
        app.stdin,
        "CREATE TABLE t(n INTEGER PRIMARY KEY, pad BLOB);"
    )
    .unwrap();
    let mut committed = 0;
    for round in 0..3 {
        for _ in 0..5 {
            committed += 1;
            app.commit(committed);
        }
        let file = dir.path().join(format!("export{round}.db"));
        ok(run(
            &[
                "db",
                "export",
                "--cluster",
                config,
                "app",
                file.to_str().unwrap(),
            ],
            "",
        ));
        assert_eq!(sqlite3(&file, "PRAGMA integrity_check"), "ok\n");
        let exported: u32 = sqlite3(&file, "SELECT count(*) FROM t")
            .trim()
            .parse()
            .unwrap();
        let max: u32 = sqlite3(&file, "SELECT coalesce(max(n), 0) FROM t")
            .trim()
            .parse()
            .unwrap();
        // R12 may miss the last ~100 ms of a running writer, never a middle commit.
        assert_eq!(exported, max, "export {round} is not a prefix");
        assert!(
            exported <= committed,
            "export {round} holds {exported} of {committed}"
        );
        assert!(exported > 0 || round == 0, "export {round} saw no commit");
    }
    committed += 1;
    app.commit(committed);
    drop(app.stdin);
    let status = app.child.0.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut app.child.0.stderr.take().unwrap(), &mut stderr);
    assert!(status.success(), "the application failed: {stderr}");
    assert!(!stderr.contains("fenced"), "{stderr}");
}
