//! A9–A13 across processes: six `sixfold storage-node` processes, each held under 200
//! idle TCP connections that never say a word (re-opened as soon as a node closes one).
//! A new writer still opens, commits and reads back every commit after a reopen (lost=0),
//! and the nodes' logs stay small: refusals are counted, not logged one by one.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sixfold_cluster::config::six_node_toml;
use sixfold_cluster::status;
use sixfold_cluster::{ClusterConfig, Writer, WriterOptions};
use sixfold_core::{NodeId, PageId};

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");
/// Idle connections the attacker keeps open to every node.
const IDLE_PER_NODE: usize = 200;
/// Log bytes a node may write during the whole attack (before A13: 0.4–1.3 MB per second).
const LOG_BYTES_MAX: u64 = 16 * 1024;

struct Nodes {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: ClusterConfig,
    children: Vec<Child>,
}

impl Nodes {
    fn start() -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<_> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut ports = [0u16; 6];
        for (port, listener) in ports.iter_mut().zip(&listeners) {
            *port = listener.local_addr().unwrap().port();
        }
        drop(listeners);
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, six_node_toml("test", "s3cret", 16, &ports)).unwrap();
        // A6: nodes refuse a config others can read (it holds the secret).
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = ClusterConfig::load(&config_path).unwrap();
        let children = (1..=6)
            .map(|id| {
                let log = std::fs::File::create(log_path(dir.path(), id)).unwrap();
                Command::new(BIN)
                    .args(["storage-node", "--config"])
                    .arg(&config_path)
                    .args(["--node-id", &id.to_string()])
                    .env("RUST_LOG", "sixfold_cluster=info,sixfold_storage=info")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        let nodes = Nodes {
            dir,
            config_path,
            config,
            children,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(1..=6).all(|id| status::collect(&nodes.config).reachable(NodeId(id))) {
            assert!(Instant::now() < deadline, "nodes did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        nodes
    }

    fn log_bytes(&self) -> Vec<u64> {
        (1..=6)
            .map(|id| {
                std::fs::metadata(log_path(self.dir.path(), id))
                    .unwrap()
                    .len()
            })
            .collect()
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

fn log_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("node{id}.log"))
}

/// Keeps `IDLE_PER_NODE` silent connections open to `addr` until `stop`: each one the
/// node closes is opened again at once. Counts the connections opened.
fn hold_idle(addr: SocketAddr, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) {
    let mut streams: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::SeqCst) {
        // Drop the ones the node closed (read 0 or an error); ignore what it sent (Hello).
        streams.retain_mut(|stream| {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            }
        });
        while streams.len() < IDLE_PER_NODE && !stop.load(Ordering::SeqCst) {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(stream) => {
                    stream.set_nonblocking(true).unwrap();
                    streams.push(stream);
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn options() -> WriterOptions {
    WriterOptions {
        commit_timeout: Duration::from_secs(20),
        read_timeout: Duration::from_secs(10),
        recovery_timeout: Duration::from_secs(30),
        cache_pages_max: 64,
    }
}

#[test]
fn idle_strangers_do_not_stop_a_writer_and_do_not_flood_the_log() {
    // A9, A10, A11, A12, A13
    let nodes = Nodes::start();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = nodes
        .config
        .nodes
        .iter()
        .map(|node| {
            let (addr, stop, opened) = (node.addr, stop.clone(), opened.clone());
            std::thread::spawn(move || hold_idle(addr, stop, opened))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let logs_before = nodes.log_bytes();
    let attack_started = Instant::now();

    let started = Instant::now();
    let writer = Writer::open(nodes.config.clone(), options())
        .unwrap_or_else(|e| panic!("a writer could not open under the attack: {e}"));
    let open_took = started.elapsed();
    let pages: Vec<PageId> = (0..50).map(|i| PageId::new(1, i)).collect();
    for (tag, page) in pages.iter().enumerate() {
        let mut txn = writer.begin();
        txn.write(*page, 0, &(tag as u64 + 1).to_le_bytes());
        writer
            .commit(txn)
            .unwrap_or_else(|e| panic!("commit {tag} under the attack: {e}"));
    }
    writer.close();
    // lost=0: a second writer, also opened under the attack, reads every commit back.
    let writer = Writer::open(nodes.config.clone(), options()).unwrap();
    let lost = pages
        .iter()
        .enumerate()
        .filter(|(tag, page)| {
            let bytes = writer.read(**page).unwrap().unwrap_or_default();
            bytes.get(..8) != Some(&(*tag as u64 + 1).to_le_bytes()[..])
        })
        .count();
    writer.close();
    assert_eq!(lost, 0, "commits lost under the attack");
    // Keep the attack up for ten seconds at least, to measure the logs over a whole
    // refusal-log interval.
    while attack_started.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs_after = nodes.log_bytes();
    let attack = attack_started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    let opened = opened.load(Ordering::Relaxed);
    let grown: Vec<u64> = logs_after
        .iter()
        .zip(&logs_before)
        .map(|(after, before)| after - before)
        .collect();
    println!(
        "writer opened in {open_took:?} under {IDLE_PER_NODE} idle connections per node; \
         {opened} idle connections opened in all; log bytes per node over {attack:?}: {grown:?}"
    );
    assert!(
        opened as usize > 6 * IDLE_PER_NODE,
        "the nodes closed no idle connection ({opened} opened)"
    );
    for (index, bytes) in grown.iter().enumerate() {
        assert!(
            *bytes <= LOG_BYTES_MAX,
            "node {} logged {bytes} bytes in {attack:?} under the attack",
            index + 1
        );
    }
    let log = std::fs::read_to_string(log_path(nodes.dir.path(), 1)).unwrap();
    assert!(
        log.contains("refused") && log.contains("closed unauthenticated to make room"),
        "node 1 never summarised its refusals:\n{log}"
    );
    let _ = &nodes.config_path;
}
