//! In-process tests: six nodes of an [`EmbeddedCluster`] on loopback, real files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sixfold_cluster::session::ClientHandshake;
use sixfold_cluster::wire::{self, Message};
use sixfold_cluster::workload::{LoadOptions, run_load};
use sixfold_cluster::{EmbeddedCluster, Writer, WriterError, WriterOptions};
use sixfold_core::{NodeId, PageId};

fn options() -> WriterOptions {
    WriterOptions {
        commit_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(5),
        recovery_timeout: Duration::from_secs(20),
        cache_pages_max: 64,
    }
}

fn load(txns: u64, clients: usize, seed: u64) -> LoadOptions {
    LoadOptions {
        txns,
        clients,
        seed,
        databases: vec!["alpha".into(), "beta".into()],
        journal: None,
        pg_pages: 16,
    }
}

fn small_cluster(dir: &std::path::Path) -> EmbeddedCluster {
    // pg_pages = 16 so the workload spreads over several PGs (V2).
    std::fs::create_dir_all(dir).unwrap();
    let ports = {
        let l: Vec<_> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut p = [0u16; 6];
        for (i, l) in l.iter().enumerate() {
            p[i] = l.local_addr().unwrap().port();
        }
        p
    };
    let text = sixfold_cluster::config::six_node_toml("t", "secret", 16, &ports);
    let config = dir.join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    // A6: the config holds the secret; a node refuses one others can read.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    EmbeddedCluster::start(dir).unwrap()
}

#[test]
fn acknowledged_commits_survive_a_writer_restart() {
    // C4, X1–X7: every acknowledged commit reads back after a new writer's recovery.
    let dir = tempfile::tempdir().unwrap();
    let cluster = small_cluster(dir.path());
    let writer = Writer::open(cluster.config().clone(), options()).unwrap();
    let report = run_load(&writer, &load(200, 3, 7), &|| {}).unwrap();
    assert_eq!(report.acknowledged, 200, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    let page = PageId::new(1, 0);
    let mut txn = writer.begin();
    txn.write(page, 100, b"hello");
    let lsn = writer.commit(txn).unwrap();
    assert!(
        writer.vdl() >= lsn,
        "C4: acknowledged only at VDL ≥ commit LSN"
    );
    let epoch = writer.epoch();
    writer.close();
    let writer = Writer::open(cluster.config().clone(), options()).unwrap();
    assert!(writer.epoch() > epoch, "E1: recovery raises the epoch");
    let bytes = writer.read(page).unwrap().unwrap();
    assert_eq!(&bytes[100..105], b"hello");
    // X7: the new writer writes the page again (its LSN is learned by a read).
    let mut txn = writer.begin();
    txn.write(page, 105, b" world");
    writer.commit(txn).unwrap();
    let bytes = writer.read(page).unwrap().unwrap();
    assert_eq!(&bytes[100..111], b"hello world");
    assert!(writer.stats().pgs >= 2, "V2: the volume grew past one PG");
    cluster.stop();
}

#[test]
fn a_fenced_writer_gets_no_acknowledgement() {
    // E3, C6: once a second writer recovers, the first one's commits fail.
    let dir = tempfile::tempdir().unwrap();
    let cluster = small_cluster(dir.path());
    let first = Writer::open(cluster.config().clone(), options()).unwrap();
    let page = PageId::new(1, 3);
    let mut txn = first.begin();
    txn.write(page, 0, b"first");
    first.commit(txn).unwrap();
    let second = Writer::open(cluster.config().clone(), options()).unwrap();
    let mut txn = first.begin();
    txn.write(page, 0, b"stale");
    match first.commit(txn) {
        Err(WriterError::Fenced { by }) => assert!(by >= second.epoch()),
        other => panic!("a fenced writer must not be acknowledged: {other:?}"),
    }
    let bytes = second.read(page).unwrap().unwrap();
    assert_eq!(&bytes[0..5], b"first", "the stale write is never visible");
    cluster.stop();
}

fn raw(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// True when the server closes the connection (EOF or reset) within the read timeout.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // Hello or an Error message before the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn bad_peers_are_disconnected_and_nothing_is_lost() {
    // L5, L6, A1, A4 on the wire: garbage, oversize frames, a wrong version or secret, an
    // unsealed frame after the handshake close that connection only; the writer keeps committing and loses nothing.
    let dir = tempfile::tempdir().unwrap();
    let cluster = small_cluster(dir.path());
    let writer = Writer::open(cluster.config().clone(), options()).unwrap();
    let addr = cluster.config().node(NodeId(1)).unwrap().addr;

    let mut garbage = raw(addr);
    garbage.write_all(&[0xAB; 64]).unwrap();
    assert!(closed_by_server(&mut garbage), "garbage frame");

    let mut oversize = raw(addr);
    let length = (wire::MAX_FRAME_BYTES as u32 + 1).to_le_bytes();
    oversize.write_all(&length).unwrap();
    oversize.write_all(&[0; 4]).unwrap();
    assert!(closed_by_server(&mut oversize), "oversize frame");

    let auth = |version: u16, secret: &str| {
        let mut config = cluster.config().clone();
        config.secret = secret.into();
        let mut stream = raw(addr);
        let hello = wire::receive(&mut stream, &mut || true).unwrap();
        let (_, auth) = ClientHandshake::new(&config, 0, 1, [7; 32])
            .handle_hello(hello)
            .unwrap();
        let Message::Auth {
            cluster_id,
            node_id,
            nonce,
            mac,
            ..
        } = auth
        else {
            panic!("no auth")
        };
        wire::send(
            &mut stream,
            &Message::Auth {
                version,
                cluster_id,
                node_id,
                nonce,
                mac,
            },
        )
        .unwrap();
        stream
    };
    let mut wrong_version = auth(wire::WIRE_VERSION + 1, "secret");
    assert!(closed_by_server(&mut wrong_version), "wrong version");
    let mut wrong_secret = auth(wire::WIRE_VERSION, "guess");
    assert!(closed_by_server(&mut wrong_secret), "wrong secret");
    let mut right = auth(wire::WIRE_VERSION, "secret");
    let ok = wire::receive(&mut right, &mut || true).unwrap();
    assert!(
        matches!(ok, Message::AuthOk { .. }),
        "the right secret is let in"
    );
    // A4: after the handshake an unsealed frame (all a relay could send) closes the link.
    wire::send(&mut right, &Message::Status { request_id: 1 }).unwrap();
    assert!(
        closed_by_server(&mut right),
        "unsealed frame after the handshake"
    );

    let report = run_load(&writer, &load(60, 2, 9), &|| {}).unwrap();
    assert_eq!((report.acknowledged, report.lost), (60, 0), "{report}");
    cluster.stop();
}

#[test]
fn a_volume_whose_first_writer_died_at_once_opens_and_recovers_again() {
    // S23 (the simulator's seed 1240, in production): the first writer's `RaiseEpoch(1)`
    // reached node 1 only; every other node learned epoch 2 first, so it is late (S19) and
    // its absent segments count as no answer (X11). Without the genesis rule no recovery
    // plans after the next one hosts segments on late nodes (they all repair, S19).
    let dir = tempfile::tempdir().unwrap();
    let cluster = small_cluster(dir.path());
    let ids: Vec<NodeId> = cluster.running();
    for &id in &ids {
        assert!(cluster.stop_node(id));
    }
    for &id in &ids {
        let mut store = sixfold_cluster::store::open(cluster.config(), id).unwrap();
        let epoch = if id == NodeId(1) { 1 } else { 2 };
        store.raise_epoch(sixfold_core::Epoch(epoch)).unwrap();
        let late = store.birth() == sixfold_core::Birth::Late;
        assert_eq!(late, id != NodeId(1), "S19: node {id:?}");
    }
    for &id in &ids {
        cluster.start_node(id).unwrap();
    }
    let writer = Writer::open(cluster.config().clone(), options()).unwrap();
    let page = PageId::new(1, 2);
    let mut txn = writer.begin();
    txn.write(page, 0, b"genesis");
    writer.commit(txn).unwrap();
    writer.close();
    // A second recovery needs read quorums of segments that are not repairing: every
    // node joined the genesis, so none is late and none of their segments repairs.
    let writer = Writer::open(cluster.config().clone(), options()).unwrap();
    let bytes = writer.read(page).unwrap().unwrap();
    assert_eq!(&bytes[0..7], b"genesis");
    writer.close();
    for &id in &ids {
        assert!(cluster.stop_node(id));
        let store = sixfold_cluster::store::open(cluster.config(), id).unwrap();
        assert_eq!(
            store.birth(),
            sixfold_core::Birth::WithVolume,
            "S23: node {id:?}"
        );
        assert!(store.status().iter().all(|s| !s.repairing), "node {id:?}");
    }
    cluster.stop();
}
