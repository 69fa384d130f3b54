//! `sixfold restore` as a user runs it (spec/backup.md B9, B13–B16): a running cluster with
//! `backup = "file://…"` in its config, SQL commits from separate `sixfold sql`
//! processes, then restores to an earlier time and to the latest point, each compared with
//! stock SQLite fed exactly the same statements up to that point.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sixfold_cluster::backup::manifest::wall_clock_ms;
use sixfold_cluster::backup::{BackupTarget, latest_restorable_point};

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

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

/// `data/cluster.toml` for six nodes on free ports, backing up to `backup` (B20).
fn write_config(data: &Path, backup: &Path) -> String {
    std::fs::create_dir_all(data).unwrap();
    std::fs::create_dir_all(backup).unwrap();
    let url = format!("file://{}", backup.display());
    let ports = sixfold_cluster::embedded::free_ports().unwrap();
    let toml = sixfold_cluster::config::six_node_toml("t", "a-test-secret", 64, &ports).replacen(
        "\n[[node]]",
        &format!("backup = {url:?}\n\n[[node]]"),
        1,
    );
    let config = data.join("cluster.toml");
    std::fs::write(&config, toml).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    url
}

/// `sixfold cluster --data DIR`, once it says it is running.
fn start_cluster(data: &Path) -> KillOnDrop {
    let mut child = Command::new(BIN)
        .args(["cluster", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = lines.any(|line| line.is_ok_and(|l| l.starts_with("running")));
    assert!(started, "cluster did not start");
    KillOnDrop(child)
}

/// Batch `k` of the workload: inserts, an update and a delete, one transaction each.
fn batch(k: u32) -> String {
    let mut sql = String::new();
    if k == 0 {
        sql.push_str("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);\n");
    }
    for i in 0..8 {
        let id = k * 8 + i;
        sql.push_str(&format!(
            "INSERT INTO t VALUES ({id}, 'row {id} of batch {k}', {});\n",
            id * id
        ));
    }
    sql.push_str(&format!(
        "UPDATE t SET n = n + 1 WHERE id % 3 = {};\n",
        k % 3
    ));
    sql.push_str(&format!("DELETE FROM t WHERE id = {};\n", k * 5));
    sql
}

/// Rows as `sixfold sql` prints them (`id|v|n`), from stock SQLite.
fn oracle_rows(oracle: &rusqlite::Connection) -> String {
    let mut statement = oracle
        .prepare("SELECT id, v, n FROM t ORDER BY id")
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            Ok(format!(
                "{}|{}|{}\n",
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn restored_rows(dir: &Path) -> String {
    let dir = dir.to_str().unwrap();
    ok(run(
        &[
            "sql",
            "--data",
            dir,
            "--db",
            "shop",
            "SELECT id, v, n FROM t ORDER BY id",
        ],
        "",
    ))
}

fn restore(url: &str, into: &Path, point: &[&str]) -> Output {
    let mut args = vec!["restore", "--from", url, "--into", into.to_str().unwrap()];
    args.extend_from_slice(point);
    run(&args, "")
}

#[test]
fn restore_to_a_time_and_to_the_latest_point_equals_stock_sqlite() {
    // B9, B13, B14, B15: each restored volume holds exactly the transactions committed at
    // or before its point, as stock SQLite fed the same statements shows.
    let dir = tempfile::tempdir().unwrap();
    let (data, backup) = (dir.path().join("data"), dir.path().join("backup"));
    let url = write_config(&data, &backup);
    let _cluster = start_cluster(&data);
    let config = data.join("cluster.toml");
    let config = config.to_str().unwrap();
    let oracle = rusqlite::Connection::open_in_memory().unwrap();
    let mut at_time: Option<(u64, String)> = None;
    for k in 0..4 {
        let sql = batch(k);
        ok(run(&["sql", "--cluster", config, "--db", "shop"], &sql));
        oracle.execute_batch(&sql).unwrap();
        if k == 1 {
            // The writer recorded its last point as it closed; the next opens after T.
            std::thread::sleep(Duration::from_millis(200));
            at_time = Some((wall_clock_ms(), oracle_rows(&oracle)));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // B14: every writer closed, so the newest manifest point is the last; wait until it
    // is the latest restorable one.
    let target = BackupTarget::open(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let newest = target.list("manifest").unwrap().pop();
        let latest = latest_restorable_point(&target).unwrap().map(|p| p.name());
        if newest.is_some() && latest == newest {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last commits were never staged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (time, rows_then) = at_time.unwrap();
    let earlier = dir.path().join("earlier");
    let printed = ok(restore(&url, &earlier, &["--to-time", &time.to_string()]));
    assert!(printed.starts_with("restored VDL"), "{printed}");
    assert_eq!(restored_rows(&earlier), rows_then);

    let latest = dir.path().join("latest");
    ok(restore(&url, &latest, &["--latest"]));
    let final_rows = oracle_rows(&oracle);
    assert_ne!(final_rows, rows_then);
    assert_eq!(restored_rows(&latest), final_rows);

    // B16: a damaged object: exit 1, the object named, nothing restored.
    let object = any_redo_object(&backup);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let damaged = dir.path().join("damaged");
    let output = restore(&url, &damaged, &["--latest"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let name = object.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        stderr.contains(&name) && stderr.contains("CRC32C"),
        "{stderr}"
    );
    assert!(!damaged.exists());
}

fn any_redo_object(backup: &Path) -> PathBuf {
    let mut objects: Vec<PathBuf> = std::fs::read_dir(backup.join("redo"))
        .unwrap()
        .flat_map(|pg| std::fs::read_dir(pg.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    objects.sort();
    objects.pop().unwrap()
}
