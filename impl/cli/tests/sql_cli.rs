//! `sixfold sql` and `sixfold db` as a user runs them: the binary, on an embedded cluster
//! in a temporary folder (V3, V5, C4).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

/// Runs `sixfold sql --data DIR --db DB` with `input` piped in.
fn sql(dir: &Path, db: &str, input: &str) -> Output {
    let mut child = Command::new(sixfold())
        .args(["sql", "--data"])
        .arg(dir)
        .args(["--db", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sixfold sql");
    // A refusal (a bad name) exits before reading: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn db(dir: &Path, args: &[&str]) -> Output {
    let (action, rest) = args.split_first().unwrap();
    Command::new(sixfold())
        .args(["db", action, "--data"])
        .arg(dir)
        .args(rest)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn piped_sql_prints_rows_like_sqlite3_and_an_acknowledged_commit_survives_sigkill() {
    // C4: once the shell printed the row, the commit was acknowledged; SIGKILL loses nothing.
    let dir = tempfile::tempdir().unwrap();
    let output = sql(
        dir.path(),
        "app",
        "CREATE TABLE t(a); INSERT INTO t VALUES(1),(2); SELECT sum(a) FROM t;\n",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "3\n");

    let mut child = Command::new(sixfold())
        .args(["sql", "--data"])
        .arg(dir.path())
        .args(["--db", "app"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"INSERT INTO t VALUES(10); SELECT sum(a), count(*) FROM t;\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "13|3\n");
    // The process waits for more input with its nodes running: kill it there.
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);

    let output = sql(dir.path(), "app", "SELECT sum(a) FROM t;");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "13\n");
}

#[test]
fn sql_errors_are_reported_with_their_line_the_shell_goes_on_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = sql(
        dir.path(),
        "app",
        "SELECT 1, 'a', NULL, 2.5;\nSELECT * FROM missing;\nSELECT 2;\n",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "1|a||2.5\n2\n");
    assert_eq!(
        text(&output.stderr),
        "Parse error near line 2: no such table: missing\n"
    );
    let output = sql(dir.path(), "bad/name", "SELECT 1;");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("invalid database name"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn db_create_list_drop_and_databases_are_separate() {
    // V3: one catalog per volume; each database its own pages.
    let dir = tempfile::tempdir().unwrap();
    let created = db(dir.path(), &["create", "orders"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(db(dir.path(), &["create", "users"]).status.success());
    let again = db(dir.path(), &["create", "orders"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"));

    let list = db(dir.path(), &["list"]);
    assert_eq!(text(&list.stdout), "orders\t1\nusers\t2\n");

    assert!(
        sql(
            dir.path(),
            "orders",
            "CREATE TABLE o(x); INSERT INTO o VALUES(7);"
        )
        .status
        .success()
    );
    let other = sql(dir.path(), "users", "SELECT * FROM o;");
    assert_eq!(
        other.status.code(),
        Some(1),
        "a table leaked into another database"
    );

    let dropped = db(dir.path(), &["drop", "orders"]);
    assert!(dropped.status.success(), "{}", text(&dropped.stderr));
    assert_eq!(text(&db(dir.path(), &["list"]).stdout), "users\t2\n");
    let missing = db(dir.path(), &["drop", "orders"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no database named \"orders\""));
    // A new database of the old name starts empty (ids are never reused).
    let fresh = sql(dir.path(), "orders", "SELECT count(*) FROM sqlite_schema;");
    assert_eq!(text(&fresh.stdout), "0\n");
    assert_eq!(
        text(&db(dir.path(), &["list"]).stdout),
        "orders\t3\nusers\t2\n"
    );
}

/// Kills the child when dropped (a test that fails does not leave a cluster running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sql_as_the_writer_of_a_running_cluster_beside_load_databases() {
    // V3: `load`'s page-level databases take ids the SQL catalog never hands out.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = KillOnDrop(
        Command::new(sixfold())
            .args(["cluster", "--data"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(cluster.0.stdout.take().unwrap()).lines();
    let started = Instant::now();
    while !lines
        .next()
        .and_then(Result::ok)
        .is_some_and(|line| line.starts_with("running"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cluster did not start"
        );
    }
    let config = dir.path().join("cluster.toml");
    let run_sql = |input: &str| {
        let mut child = Command::new(sixfold())
            .args(["sql", "--cluster"])
            .arg(&config)
            .args(["--db", "app"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let output = run_sql("CREATE TABLE t(a); INSERT INTO t VALUES(1),(2);");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let load = Command::new(sixfold())
        .args(["load", "--cluster"])
        .arg(&config)
        .args(["--txns", "100", "--clients", "2"])
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", text(&load.stderr));
    assert!(
        text(&load.stdout).contains("lost=0"),
        "{}",
        text(&load.stdout)
    );
    let output = run_sql("SELECT sum(a) FROM t; PRAGMA integrity_check;");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "3\nok\n");
    let list = Command::new(sixfold())
        .args(["db", "list", "--cluster"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(text(&list.stdout), "app\t1\n");
}
