//! Multi-process failure tests: six `sixfold storage-node` processes on loopback with real
//! files, SIGKILLed and restarted; the writer runs in this process or as `sixfold load`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sixfold_cluster::config::six_node_toml;
use sixfold_cluster::status;
use sixfold_cluster::workload::verify_journal;
use sixfold_cluster::{ClusterConfig, Writer, WriterError, WriterOptions};
use sixfold_core::{Lsn, NodeId, PageId};

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");

/// Six storage-node processes of one config; killed on drop.
struct Processes {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: ClusterConfig,
    children: BTreeMap<u32, Child>,
}

impl Processes {
    fn start(pg_pages: u32) -> Processes {
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
        std::fs::write(
            &config_path,
            six_node_toml("test", "s3cret", pg_pages, &ports),
        )
        .unwrap();
        // A6: storage nodes refuse a config others can read (it holds the secret).
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = ClusterConfig::load(&config_path).unwrap();
        let mut processes = Processes {
            dir,
            config_path,
            config,
            children: BTreeMap::new(),
        };
        for id in 1..=6 {
            processes.spawn(id);
        }
        processes.wait_reachable(&[1, 2, 3, 4, 5, 6]);
        processes
    }

    fn spawn(&mut self, id: u32) {
        let log = std::fs::File::create(self.dir.path().join(format!("node{id}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["storage-node", "--config"])
            .arg(&self.config_path)
            .args(["--node-id", &id.to_string()])
            .env("RUST_LOG", "sixfold_cluster=info,sixfold_storage=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(id, child);
    }

    /// SIGKILL: no chance to flush or say goodbye.
    fn kill(&mut self, id: u32) {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn wait_reachable(&self, ids: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = status::collect(&self.config);
            if ids.iter().all(|&id| status.reachable(NodeId(id))) {
                return;
            }
            assert!(Instant::now() < deadline, "nodes {ids:?} did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status_output(&self) -> String {
        let output = Command::new(BIN)
            .args(["status", "--cluster"])
            .arg(&self.config_path)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn options(commit_timeout: Duration) -> WriterOptions {
    WriterOptions {
        commit_timeout,
        read_timeout: Duration::from_secs(5),
        recovery_timeout: Duration::from_secs(20),
        cache_pages_max: 64,
    }
}

fn write_page(writer: &Writer, page: PageId, tag: u64) -> Result<Lsn, WriterError> {
    let mut txn = writer.begin();
    txn.write(page, 0, &tag.to_le_bytes());
    // A second page in the same MTR, in another PG (L2: one atomic MTR across PGs).
    txn.write(
        PageId::new(page.db.0, page.page_no + 16),
        0,
        &tag.to_le_bytes(),
    );
    writer.commit(txn)
}

fn tag_of(writer: &Writer, page: PageId) -> u64 {
    let bytes = writer.read(page).unwrap().expect("written");
    u64::from_le_bytes(bytes[0..8].try_into().unwrap())
}

#[test]
fn az_loss_keeps_commits_az_plus_one_waits_and_nodes_catch_up() {
    // Q4: one AZ down → commits continue, and a new writer recovers (X2, E1); AZ+1 down →
    // commits wait, never falsely acknowledged (C4), reads of committed pages continue
    // (R1, R5); nodes back → they take the epoch they missed, catch up by gossip (S6) and
    // commits resume (W7).
    let mut cluster = Processes::start(16);
    let writer = Writer::open(cluster.config.clone(), options(Duration::from_secs(4))).unwrap();
    for n in 0..10u32 {
        write_page(&writer, PageId::new(1, n), 100 + n as u64).unwrap();
    }
    cluster.kill(5);
    cluster.kill(6); // all of az3
    for n in 0..10u32 {
        write_page(&writer, PageId::new(1, n), 200 + n as u64)
            .expect("one AZ down: commits continue");
    }
    // The writer publishes its VCL/VDL to the nodes with its heartbeat: give it a moment.
    let mut table = cluster.status_output();
    for _ in 0..50 {
        if table.contains("writer: epoch") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        table = cluster.status_output();
    }
    assert!(table.contains("node 5 (az3) UNREACHABLE"), "{table}");
    assert!(table.contains("node 6 (az3) UNREACHABLE"), "{table}");
    assert!(
        table.contains("writer: epoch"),
        "the running writer's VCL/VDL: {table}"
    );
    // X1, X2, E1: a new writer recovers with one AZ down; nodes 5 and 6 miss its epoch.
    let old_epoch = writer.epoch();
    writer.close();
    let writer = Writer::open(cluster.config.clone(), options(Duration::from_secs(4))).unwrap();
    assert!(writer.epoch() > old_epoch);
    for n in 0..10u32 {
        assert_eq!(
            tag_of(&writer, PageId::new(1, n)),
            200 + n as u64,
            "C4: nothing lost"
        );
    }

    cluster.kill(4); // AZ+1
    let vdl_before = writer.vdl();
    let lsn = match write_page(&writer, PageId::new(1, 0), 300) {
        Err(WriterError::CommitTimeout { lsn, .. }) => lsn,
        other => panic!("AZ+1 down: the commit must wait, got {other:?}"),
    };
    assert_eq!(
        writer.vdl(),
        vdl_before,
        "C4: no VDL progress without a write quorum"
    );
    writer.clear_cache();
    for n in 0..10u32 {
        assert_eq!(
            tag_of(&writer, PageId::new(1, n)),
            200 + n as u64,
            "AZ+1: reads continue"
        );
    }

    for id in [4, 5, 6] {
        cluster.spawn(id);
    }
    cluster.wait_reachable(&[1, 2, 3, 4, 5, 6]);
    writer
        .wait_durable(lsn, Duration::from_secs(20))
        .expect("nodes back: the waiting commit becomes durable");
    write_page(&writer, PageId::new(1, 1), 400).expect("commits resume");
    assert_eq!(tag_of(&writer, PageId::new(1, 0)), 300);

    // S6: every segment converges to its PG's highest SCL, missed records included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let segments = status::collect(&cluster.config).segments();
        let mut best: BTreeMap<u32, Lsn> = BTreeMap::new();
        for (segment, (_, s)) in &segments {
            let entry = best.entry(segment.pg.0).or_default();
            *entry = (*entry).max(s.scl);
        }
        // E1: nodes that missed the recovery took the writer's epoch too.
        let converged = segments.len() == best.len() * 6
            && segments
                .iter()
                .all(|(seg, (_, s))| s.scl == best[&seg.pg.0] && s.epoch == writer.epoch());
        if converged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "segments did not catch up: {segments:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    writer.close();
}

#[test]
fn a_sigkilled_writer_loses_no_acknowledged_commit() {
    // C4, X3, X4, L2: a `sixfold load` writer SIGKILLed mid-stream; the next writer's
    // recovery keeps every acknowledged commit, no partial MTR, and truncates above VDL.
    let cluster = Processes::start(64);
    let journal = cluster.path().join("journal.txt");
    let mut load = Command::new(BIN)
        .args(["load", "--cluster"])
        .arg(&cluster.config_path)
        .args(["--txns", "1000000", "--clients", "4", "--journal"])
        .arg(&journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let acked = std::fs::read_to_string(&journal)
            .map(|text| text.lines().filter(|l| l.starts_with("A ")).count())
            .unwrap_or(0);
        if acked >= 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load made too little progress"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    load.kill().unwrap(); // SIGKILL, mid-stream
    load.wait().unwrap();

    let writer = Writer::open(cluster.config.clone(), options(Duration::from_secs(10))).unwrap();
    let vdl = writer.vdl();
    // X4, S8: every segment (all reachable) holds nothing above the recovered VDL.
    for (segment, (_, s)) in status::collect(&cluster.config).segments() {
        assert!(
            s.max_held <= vdl,
            "{segment} holds {} above VDL {vdl}",
            s.max_held
        );
    }
    let check = verify_journal(&writer, &journal).unwrap();
    assert!(check.acknowledged >= 300, "{check:?}");
    assert_eq!(
        check.verified, check.acknowledged,
        "C4: an acknowledged commit was lost"
    );
    assert_eq!(check.partial_mtrs, 0, "L2, X4: a partial MTR survived");
    writer.close();
}

#[test]
fn load_keeps_committing_with_any_two_nodes_killed() {
    // Q4: two nodes SIGKILLed (of different AZs): `sixfold load` commits and verifies all,
    // and `sixfold status` shows the two as unreachable.
    let mut cluster = Processes::start(1024);
    cluster.kill(1);
    cluster.kill(4);
    let output = Command::new(BIN)
        .args(["load", "--cluster"])
        .arg(&cluster.config_path)
        .args(["--txns", "300", "--clients", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("acknowledged=300 verified=300 lost=0"),
        "{stdout}"
    );
    let table = cluster.status_output();
    assert!(table.contains("node 1 (az1) UNREACHABLE"), "{table}");
    assert!(table.contains("node 4 (az2) UNREACHABLE"), "{table}");
    assert!(table.contains("node 2 (az1) reachable"), "{table}");
}

/// The segment directories of node `id`'s data dir.
fn segment_dirs(cluster: &Processes, id: u32) -> Vec<PathBuf> {
    std::fs::read_dir(cluster.path().join(format!("node{id}")))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pg"))
        })
        .collect()
}

/// Waits until every segment of node `id` has no problem and an SCL equal to the highest
/// of its PG.
fn wait_caught_up(cluster: &Processes, id: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let segments = status::collect(&cluster.config).segments();
        let behind: Vec<String> = segments
            .iter()
            .filter(|(_, (node, _))| node.0 == id)
            .filter(|(segment, (_, s))| {
                let top = segments
                    .iter()
                    .filter(|(other, _)| other.pg == segment.pg)
                    .map(|(_, (_, o))| o.scl)
                    .max()
                    .unwrap_or_default();
                // A repairing segment (S19) holds what it shows; repair ends later (S21).
                !(s.problem.is_empty() || s.problem.starts_with("repairing")) || s.scl < top
            })
            .map(|(segment, (_, s))| format!("{segment} SCL {} {}", s.scl, s.problem))
            .collect();
        if behind.is_empty() && segments.values().any(|(node, _)| node.0 == id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not catch up: {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deleted_segment_meta_files_are_rebuilt_from_peers_and_nothing_acknowledged_is_lost() {
    // S17: node 3 restarts with the `meta` of every segment deleted: it starts, rebuilds
    // them from its peers (S6) while commits go on, and with two other nodes then down a
    // new writer reads every acknowledged page (C4). Q1: `status` with three nodes down
    // exits non-zero and names the PGs without a write quorum.
    let mut cluster = Processes::start(16);
    let writer = Writer::open(cluster.config.clone(), options(Duration::from_secs(4))).unwrap();
    for n in 0..20u32 {
        write_page(&writer, PageId::new(1, n), 100 + n as u64).unwrap();
    }
    // Node 3 may take its first records by gossip (V2) if its link connected late.
    wait_caught_up(&cluster, 3);
    cluster.kill(3);
    let dirs = segment_dirs(&cluster, 3);
    assert!(!dirs.is_empty(), "node 3 hosts segments");
    for dir in &dirs {
        std::fs::remove_file(dir.join("meta")).unwrap();
    }
    cluster.spawn(3);
    cluster.wait_reachable(&[3]);
    for n in 0..20u32 {
        write_page(&writer, PageId::new(1, n), 200 + n as u64)
            .expect("commits go on while node 3 rebuilds");
    }
    wait_caught_up(&cluster, 3);
    let log = std::fs::read_to_string(cluster.path().join("node3.log")).unwrap();
    assert!(log.contains("S17"), "node 3 says what it rebuilt: {log}");
    assert!(
        status::collect(&cluster.config)
            .segments()
            .values()
            .any(|(node, s)| node.0 == 3 && s.repairing),
        "S21: still repairing: the writer of the loss epoch is still open"
    );
    writer.close();
    cluster.kill(1);
    cluster.kill(2);
    let writer = Writer::open(cluster.config.clone(), options(Duration::from_secs(4))).unwrap();
    for n in 0..20u32 {
        assert_eq!(
            tag_of(&writer, PageId::new(1, n)),
            200 + n as u64,
            "C4: nothing acknowledged lost"
        );
    }
    // S21: a writer above the loss epoch is open and three peers (4, 5, 6) are up: node 3's
    // segments end their repair.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let repairing = status::collect(&cluster.config)
            .segments()
            .values()
            .filter(|(node, s)| node.0 == 3 && s.repairing)
            .count();
        if repairing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{repairing} segments still repairing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(cluster.path().join("node3.log")).unwrap();
    assert!(
        log.contains("S21"),
        "node 3 says its segments repaired: {log}"
    );
    writer.close();
    cluster.kill(4);
    let output = Command::new(BIN)
        .args(["status", "--cluster"])
        .arg(&cluster.config_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "Q1: no write quorum is a failure");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("NO WRITE QUORUM") && l.contains("pg0")),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_data_dir_stops_the_node_at_start_naming_the_dir() {
    // A8: the node exits at start with the reason, instead of listening and storing
    // nothing. chmod 0500 blocks writes unless the test runs as root; then a read-only
    // tmpfs is mounted over the data dir, and the test is skipped if that is not allowed.
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("cluster.toml");
    let ports = [1, 2, 3, 4, 5, 6].map(|i| 17_000 + i);
    std::fs::write(&config_path, six_node_toml("test", "s3cret", 16, &ports)).unwrap();
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let data = dir.path().join("node1");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
    let mut mounted = false;
    if std::fs::write(data.join("probe"), b"x").is_ok() {
        std::fs::remove_file(data.join("probe")).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mount = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "none"])
            .arg(&data)
            .output();
        if !mount.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: running as root and cannot mount a read-only tmpfs");
            return;
        }
        mounted = true;
    }
    let output = Command::new(BIN)
        .args(["storage-node", "--config"])
        .arg(&config_path)
        .args(["--node-id", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if mounted {
        let _ = Command::new("umount").arg(&data).status();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "A8: must not run: {stderr}");
    assert!(
        stderr.contains(&data.display().to_string()),
        "the error names the data dir: {stderr}"
    );
}
