//! Config edits against a running volume (#12 scenarios 2 and 3; I1–I4): six
//! `sixfold storage-node` processes commit 2 000 rows through `sixfold sql --cluster`, are
//! stopped, restarted on an edited `cluster.toml`, and must either refuse with a message
//! naming what changed or keep every acknowledged row. Restoring the original config must
//! then bring back every row and accept new commits.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sixfold_cluster::config::six_node_toml;

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");
/// Small PGs, so 2 000 rows span many PGs and placement rotation touches data.
const PG_PAGES: u32 = 4;
const ROWS: u32 = 2_000;
/// How long a node process may take to listen or to exit, in milliseconds.
const NODE_START_TIMEOUT_MS: u64 = 20_000;
/// How long one `sixfold sql` run may take before it counts as hung, in milliseconds.
const SQL_TIMEOUT_MS: u64 = 120_000;
/// Clusters started on fresh ports when a port picked by `free_ports` was taken before a
/// node bound it, at most.
const PORT_ATTEMPTS_MAX: u32 = 3;

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Writes a config file with mode 0600: it holds the secret, and a node refuses a config
/// others can read (A6).
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// What became of a started node process.
#[derive(Debug)]
enum Started {
    Listening,
    /// Exited; its stderr.
    Refused(String),
}

/// Storage-node processes of one cluster folder; killed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    original: String,
    children: BTreeMap<u32, Child>,
    starts: u32,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let original = six_node_toml("edits", "s3cret", PG_PAGES, &free_ports::<6>());
        let config_path = dir.path().join("cluster.toml");
        write_private(&config_path, &original);
        Cluster {
            dir,
            config_path,
            original,
            children: BTreeMap::new(),
            starts: 0,
        }
    }

    fn write_config(&self, text: &str) {
        write_private(&self.config_path, text);
    }

    /// Starts node `id` of the current config and waits until it listens or exits.
    fn start(&mut self, id: u32) -> Started {
        self.starts += 1;
        let out = self
            .dir
            .path()
            .join(format!("node{id}.{}.out", self.starts));
        let err = self
            .dir
            .path()
            .join(format!("node{id}.{}.err", self.starts));
        let mut child = Command::new(BIN)
            .args(["storage-node", "--config"])
            .arg(&self.config_path)
            .args(["--node-id", &id.to_string()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(NODE_START_TIMEOUT_MS);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(!status.success(), "node {id} exited with success");
                return Started::Refused(std::fs::read_to_string(&err).unwrap());
            }
            if std::fs::read_to_string(&out).unwrap().contains("listening") {
                self.children.insert(id, child);
                return Started::Listening;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} neither listens nor exits"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts every node id in `ids`; what became of each.
    fn start_all(&mut self, ids: &[u32]) -> BTreeMap<u32, Started> {
        ids.iter().map(|&id| (id, self.start(id))).collect()
    }

    fn stop_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// `sixfold sql --cluster CONFIG --db app` with `input` piped in.
    fn sql_with(&self, config: &Path, input: &str) -> Output {
        let mut child = Command::new(BIN)
            .args(["sql", "--cluster"])
            .arg(config)
            .args(["--db", "app"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        // A writer misled by a bad config may retry reads forever: bound it.
        let deadline = Instant::now() + Duration::from_millis(SQL_TIMEOUT_MS);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                child.kill().unwrap();
                let mut output = child.wait_with_output().unwrap();
                output
                    .stderr
                    .extend_from_slice(b"\n(killed: no answer in time)");
                return output;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    fn sql(&self, input: &str) -> Output {
        self.sql_with(&self.config_path, input)
    }

    fn count(&self) -> Result<u32, String> {
        let output = self.sql("SELECT count(*) FROM t;");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(stdout.trim().parse().unwrap())
    }

    /// Six nodes of the original config, `ROWS` rows committed (acknowledged by the exit).
    fn with_rows() -> Cluster {
        let mut attempt = 1;
        let cluster = loop {
            let mut cluster = Cluster::new();
            let started = cluster.start_all(&[1, 2, 3, 4, 5, 6]);
            if started.values().all(|s| matches!(s, Started::Listening)) {
                break cluster;
            }
            // free_ports released its ports before the nodes bound them: another process
            // may have taken one meanwhile. Only that is retried, on fresh ports.
            let port_taken = started.values().any(
                |s| matches!(s, Started::Refused(err) if err.contains("Address already in use")),
            );
            assert!(port_taken && attempt < PORT_ATTEMPTS_MAX, "{started:?}");
            cluster.stop_all();
            attempt += 1;
        };
        let insert = format!(
            "CREATE TABLE t(a, b);\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 \
             FROM c WHERE x < {ROWS}) INSERT INTO t SELECT x, randomblob(60) FROM c;\n"
        );
        let output = cluster.sql(&insert);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(cluster.count(), Ok(ROWS));
        cluster
    }

    /// I1–I4: stop, restart on `edited`, then on the original config again. Returns what
    /// each node of `edited_ids` did; whatever started must keep every row (or the writer
    /// must refuse); the original config must bring back every row and take new commits.
    fn edit_and_restore(&mut self, edited: &str, edited_ids: &[u32]) -> BTreeMap<u32, Started> {
        self.stop_all();
        self.write_config(edited);
        let started = self.start_all(edited_ids);
        let listening = started
            .values()
            .filter(|s| matches!(s, Started::Listening))
            .count();
        if listening >= 5 {
            // Enough nodes for a writer: it keeps every row or refuses with a reason.
            match self.count() {
                Ok(count) => assert_eq!(count, ROWS, "an acknowledged row was lost"),
                Err(reason) => assert!(
                    reason.contains("refused before opening"),
                    "the writer failed without an identity reason: {reason}"
                ),
            }
        }
        self.stop_all();
        self.write_config(&self.original.clone());
        let restored = self.start_all(&[1, 2, 3, 4, 5, 6]);
        assert!(
            restored.values().all(|s| matches!(s, Started::Listening)),
            "the original config must start again: {restored:?}"
        );
        assert_eq!(self.count(), Ok(ROWS), "rows after restoring the config");
        let output = self.sql("INSERT INTO t VALUES(0, 0); SELECT count(*) FROM t;");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            (ROWS + 1).to_string(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        started
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The refusal text of node `id`, which must have refused.
fn refusal(started: &BTreeMap<u32, Started>, id: u32) -> &str {
    match &started[&id] {
        Started::Refused(stderr) => stderr,
        Started::Listening => panic!("node {id} started on the edited config: {started:?}"),
    }
}

fn node_entry(id: u32, az: &str, port: u16) -> String {
    format!(
        "\n[[node]]\nid = {id}\naz = \"{az}\"\naddr = \"127.0.0.1:{port}\"\ndata = \"node{id}\"\n"
    )
}

#[test]
fn renaming_an_az_is_refused_and_undone_by_restoring_it() {
    // I1, I3: renaming az1 to az9 changes the AZ order, so every replica moves.
    let mut cluster = Cluster::with_rows();
    let edited = cluster.original.replace("\"az1\"", "\"az9\"");
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6]);
    let text = refusal(&started, 1);
    assert!(
        text.contains("holds segment pg0.0, but the config places pg0.0 on node 3"),
        "{text}"
    );
    assert!(text.contains("restore them"), "{text}");
}

#[test]
fn adding_an_az_with_nodes_7_and_8_is_refused() {
    // I1, I3: #12 scenario 2: four AZs rotate the placement of every PG but pg0 mod 4.
    let mut cluster = Cluster::with_rows();
    let [p7, p8] = free_ports::<2>();
    let edited = format!(
        "{}{}{}",
        cluster.original,
        node_entry(7, "az4", p7),
        node_entry(8, "az4", p8)
    );
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6, 7, 8]);
    for id in 1..=6 {
        assert!(
            refusal(&started, id).contains("holds segment pg1."),
            "{started:?}"
        );
    }
    assert!(
        matches!(started[&7], Started::Listening),
        "a new node has nothing to refuse"
    );
}

#[test]
fn adding_nodes_to_existing_azs_is_refused() {
    // I1, I3: a third node in az1 and az2 rotates those AZs' replicas.
    let mut cluster = Cluster::with_rows();
    let [p7, p8] = free_ports::<2>();
    let edited = format!(
        "{}{}{}",
        cluster.original,
        node_entry(7, "az1", p7),
        node_entry(8, "az2", p8)
    );
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let text = refusal(&started, 1);
    assert!(
        text.contains("holds segment pg1.0, but the config places pg1.0 on node 7"),
        "{text}"
    );
}

#[test]
fn reordering_node_entries_keeps_every_row() {
    // Q3, Q6: placement sorts AZs by name and nodes by id, so the file's order is free.
    let mut cluster = Cluster::with_rows();
    let (head, nodes) = cluster.original.split_once("\n[[node]]").unwrap();
    let mut entries: Vec<&str> = nodes.split("\n[[node]]").collect();
    entries.reverse();
    let edited = format!("{head}\n[[node]]{}", entries.join("\n[[node]]"));
    assert_ne!(edited, cluster.original);
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6]);
    assert!(
        started.values().all(|s| matches!(s, Started::Listening)),
        "{started:?}"
    );
}

#[test]
fn changing_pg_pages_is_refused_naming_both_values() {
    // I1: the recorded pg_pages wins; the error names both values and the fix.
    let mut cluster = Cluster::with_rows();
    let edited = cluster
        .original
        .replace(&format!("pg_pages = {PG_PAGES}"), "pg_pages = 8");
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6]);
    for id in 1..=6 {
        let text = refusal(&started, id);
        assert!(
            text.contains(&format!(
                "records pg_pages = {PG_PAGES}, but the config says 8"
            )),
            "{text}"
        );
    }
}

#[test]
fn changing_an_address_keeps_every_row() {
    // I2: addresses are not identity: a node moved to a new port serves the same data.
    let mut cluster = Cluster::with_rows();
    let config = sixfold_cluster::ClusterConfig::load(&cluster.config_path).unwrap();
    let old = config.nodes[0].addr.to_string();
    let [port] = free_ports::<1>();
    let edited = cluster.original.replace(&old, &format!("127.0.0.1:{port}"));
    assert_ne!(edited, cluster.original);
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6]);
    assert!(
        started.values().all(|s| matches!(s, Started::Listening)),
        "{started:?}"
    );
}

#[test]
fn swapping_two_data_folders_is_refused() {
    // I1: each folder records its node id.
    let mut cluster = Cluster::with_rows();
    let edited = cluster
        .original
        .replace("data = \"node1\"", "data = \"nodeX\"")
        .replace("data = \"node2\"", "data = \"node1\"")
        .replace("data = \"nodeX\"", "data = \"node2\"");
    let started = cluster.edit_and_restore(&edited, &[1, 2, 3, 4, 5, 6]);
    for id in [1, 2] {
        let text = refusal(&started, id);
        assert!(text.contains("data folders were swapped"), "{text}");
    }
    assert!(refusal(&started, 1).contains("records node id = 2"));
}

#[test]
fn a_writer_whose_pg_pages_differs_is_refused_before_acknowledging_anything() {
    // I2: #12 scenario 3: the nodes run the original config; a writer is given pg_pages 8.
    let cluster = Cluster::with_rows();
    let writer_config = cluster.dir.path().join("writer.toml");
    write_private(
        &writer_config,
        &cluster
            .original
            .replace(&format!("pg_pages = {PG_PAGES}"), "pg_pages = 8"),
    );
    let output = cluster.sql_with(
        &writer_config,
        "INSERT INTO t VALUES(-1, 0); SELECT count(*) FROM t;",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing was acknowledged");
    // The node checks first and names both values from its side.
    assert!(
        stderr.contains(&format!(
            "the writer (or tool) has pg_pages=8, node 1's config says {PG_PAGES}"
        )),
        "{stderr}"
    );
    assert_eq!(
        cluster.count(),
        Ok(ROWS),
        "the refused writer wrote nothing"
    );
}

#[test]
fn a_writer_with_an_edited_placement_is_refused_while_nodes_run_the_old_one() {
    // I2, I3: the nodes hold the original placement; a writer whose config renamed an AZ
    // is refused at identification, before it raises an epoch or counts a report.
    let cluster = Cluster::with_rows();
    let writer_config = cluster.dir.path().join("writer.toml");
    write_private(
        &writer_config,
        &cluster.original.replace("\"az1\"", "\"az9\""),
    );
    let output = cluster.sql_with(&writer_config, "SELECT count(*) FROM t;");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("holds segment"), "{stderr}");
    assert!(stderr.contains("this writer's config places"), "{stderr}");
    assert_eq!(cluster.count(), Ok(ROWS));
}
