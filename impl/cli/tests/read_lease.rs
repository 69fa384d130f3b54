//! Multi-process tests of the read lease (R7–R11) and the read-only attach (R12): six
//! `sixfold storage-node` processes on loopback; writers and readers are `sixfold`
//! processes too.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use sixfold_cluster::ClusterConfig;
use sixfold_cluster::config::six_node_toml;
use sixfold_cluster::embedded::EMBEDDED_PG_PAGES;
use sixfold_cluster::status;
use sixfold_core::NodeId;

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");

/// Six storage-node processes of one config; killed on drop.
struct Nodes {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    children: Vec<Child>,
}

impl Nodes {
    fn start() -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<_> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut ports = [0u16; 6];
        for (port, l) in ports.iter_mut().zip(&listeners) {
            *port = l.local_addr().unwrap().port();
        }
        drop(listeners);
        let config_path = dir.path().join("cluster.toml");
        let text = six_node_toml("lease", "a-test-secret", EMBEDDED_PG_PAGES, &ports);
        std::fs::write(&config_path, text).unwrap();
        // A6: storage nodes refuse a config others can read (it holds the secret).
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut nodes = Nodes {
            dir,
            config_path,
            children: Vec::new(),
        };
        for id in 1..=6 {
            let log = std::fs::File::create(nodes.path().join(format!("node{id}.log"))).unwrap();
            let child = Command::new(BIN)
                .args(["storage-node", "--config"])
                .arg(&nodes.config_path)
                .args(["--node-id", &id.to_string()])
                .env("RUST_LOG", "sixfold_cluster=info,sixfold_storage=info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.children.push(child);
        }
        let config = ClusterConfig::load(&nodes.config_path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = status::collect(&config);
            if (1..=6).all(|id| status.reachable(NodeId(id))) {
                break;
            }
            assert!(Instant::now() < deadline, "nodes did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        nodes
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `sixfold ARGS --cluster CONFIG` with `stdin` piped in; waits for it.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--cluster")
            .arg(&self.config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// A `sixfold sql --cluster` session kept open: statements in, rows out.
    fn session(&self, db: &str) -> Session {
        let mut child = Command::new(BIN)
            .args(["sql", "--db", db, "--cluster"])
            .arg(&self.config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        Session {
            child,
            stdin: Some(stdin),
            lines,
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lines_of(stdout: ChildStdout) -> Receiver<String> {
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

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Session {
    fn send(&mut self, sql: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next row printed, if one comes within `timeout`.
    fn row(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Closes stdin, waits for the exit; returns (success, the rest of stdout, stderr).
    fn finish(mut self) -> (bool, Vec<String>, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        let rest: Vec<String> = self.lines.try_iter().collect();
        (status.success(), rest, stderr)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// R9, E3: writer A commits a row and keeps its session open; writer B opens (a new epoch,
// after waiting out A's lease, R10) and commits 5 rows; A's next read fails with the
// fenced or lease error and never answers the stale count.
#[test]
fn a_replaced_writer_serves_no_stale_read() {
    let nodes = Nodes::start();
    let mut a = nodes.session("app");
    a.send("CREATE TABLE t(x INTEGER);");
    a.send("INSERT INTO t VALUES (1);");
    a.send("SELECT count(*) FROM t;");
    let first = a.row(Duration::from_secs(60));
    assert_eq!(first.as_deref(), Some("1"), "writer A did not start");

    let inserts: String = (2..=6)
        .map(|n| format!("INSERT INTO t VALUES ({n});\n"))
        .collect();
    let b = nodes.run(
        &["sql", "--db", "app"],
        &format!("{inserts}SELECT count(*) FROM t;\n"),
    );
    let b_out = String::from_utf8_lossy(&b.stdout);
    assert!(
        b.status.success(),
        "writer B failed: {}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(b_out.trim(), "6", "writer B must see all six rows");

    a.send("SELECT count(*) FROM t;");
    let (success, rows, stderr) = a.finish();
    assert!(
        !rows.iter().any(|row| row == "1"),
        "the replaced writer served the stale count: {rows:?}"
    );
    assert!(
        !success,
        "the replaced writer's read must fail; stderr: {stderr}"
    );
    assert!(
        stderr.contains("fenced") || stderr.contains("lease expired"),
        "the error must say the writer was fenced or lost its lease: {stderr}"
    );
}

// R12: `db list` attaches read-only: while an application writer commits in a loop,
// three `db list` runs print the databases and the application is never fenced.
#[test]
fn db_list_never_fences_the_application() {
    let nodes = Nodes::start();
    let mut app = nodes.session("app");
    app.send("CREATE TABLE t(x INTEGER);");
    let mut committed = 0;
    let commit = |app: &mut Session, committed: &mut u32| {
        *committed += 1;
        app.send(&format!(
            "INSERT INTO t VALUES ({committed}); SELECT count(*) FROM t;"
        ));
        let row = app.row(Duration::from_secs(60));
        assert_eq!(
            row,
            Some(committed.to_string()),
            "the application stopped committing"
        );
    };
    commit(&mut app, &mut committed);
    for run in 0..3 {
        let list = nodes.run(&["db", "list"], "");
        let out = String::from_utf8_lossy(&list.stdout);
        assert!(
            list.status.success(),
            "db list run {run} failed: {}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(
            out.lines().any(|line| line.starts_with("app\t")),
            "db list run {run} did not list the database: {out:?}"
        );
        for _ in 0..3 {
            commit(&mut app, &mut committed);
        }
    }
    let (success, _, stderr) = app.finish();
    assert!(success, "the application failed: {stderr}");
    assert!(!stderr.contains("fenced"), "{stderr}");
}
