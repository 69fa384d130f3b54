//! Identity and geometry (I1–I4) in one process: a node's store refuses a data folder that
//! disagrees with its config, and a node serves nothing to a session that has not
//! identified or that identified with another geometry.

use std::path::Path;
use std::time::{Duration, Instant};

use sixfold_cluster::config::six_node_toml;
use sixfold_cluster::identity::{IDENTITY_FILE, Identity};
use sixfold_cluster::net::{self, CLIENT_NODE_ID};
use sixfold_cluster::session::{HandshakeError, Session};
use sixfold_cluster::store::{self, StoreError, Unrecorded};
use sixfold_cluster::wire::{self, ErrorCode, Message, WireError};
use sixfold_cluster::{ClusterConfig, EmbeddedCluster};
use sixfold_core::{Epoch, Lsn, NodeId, PgId, SegmentId};

fn free_ports() -> [u16; 6] {
    let listeners: Vec<_> = (0..6)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

fn write_config(dir: &Path, text: &str) -> ClusterConfig {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    // A6: the config holds the secret.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    ClusterConfig::load(&path).unwrap()
}

fn segment(pg: u32, replica: u8) -> SegmentId {
    SegmentId {
        pg: PgId(pg),
        replica,
    }
}

fn open_error(config: &ClusterConfig, node: u32) -> String {
    match store::open(config, NodeId(node)) {
        Ok(_) => panic!("node {node} opened on an edited config"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_data_folder_refuses_a_config_that_changed_its_identity_or_placement() {
    // I1: pg_pages, data folders and placement are checked at open, before serving.
    let dir = tempfile::tempdir().unwrap();
    let text = six_node_toml("c", "s", 4, &free_ports());
    let config = write_config(dir.path(), &text);
    {
        let mut store = store::open(&config, NodeId(3)).unwrap();
        store.host(segment(0, 2)).unwrap();
        store.host(segment(1, 2)).unwrap();
    }
    assert!(dir.path().join("node3").join(IDENTITY_FILE).exists());
    let error = open_error(
        &write_config(dir.path(), &text.replace("pg_pages = 4", "pg_pages = 8")),
        3,
    );
    assert!(
        error.contains("records pg_pages = 4, but the config says 8"),
        "{error}"
    );
    let swapped = text
        .replace("data = \"node3\"", "data = \"nodeX\"")
        .replace("data = \"node4\"", "data = \"node3\"");
    let error = open_error(&write_config(dir.path(), &swapped), 4);
    assert!(error.contains("records node id = 3"), "{error}");
    let renamed = text.replace("\"az1\"", "\"az9\"");
    let error = open_error(&write_config(dir.path(), &renamed), 3);
    assert!(
        error.contains("holds segment pg0.2, but the config places pg0.2 on node 5"),
        "{error}"
    );
    // Restoring the config opens the folder again, with its segments.
    let store = store::open(&write_config(dir.path(), &text), NodeId(3)).unwrap();
    assert_eq!(store.hosted(), vec![segment(0, 2), segment(1, 2)]);
}

#[test]
fn a_folder_without_a_record_is_refused_until_adopted() {
    // I4: data written before identity records is never silently accepted.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &six_node_toml("c", "s", 4, &free_ports()));
    {
        let mut store = store::open(&config, NodeId(1)).unwrap();
        store.host(segment(0, 0)).unwrap();
    }
    let record = dir.path().join("node1").join(IDENTITY_FILE);
    std::fs::remove_file(&record).unwrap();
    match store::open(&config, NodeId(1)) {
        Err(StoreError::Identity(error)) => {
            assert!(error.to_string().contains("--adopt-identity"), "{error}")
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    store::open_with(&config, NodeId(1), Unrecorded::Adopt).unwrap();
    assert!(record.exists());
    store::open(&config, NodeId(1)).unwrap();
}

/// Handshake only (no Identify), as an older or hostile client holding the secret would do.
fn authenticated_stream(config: &ClusterConfig, node: usize) -> (std::net::TcpStream, Session) {
    let spec = &config.nodes[node];
    net::connect(spec.addr, config, CLIENT_NODE_ID, spec.id.0).unwrap()
}

fn receive(stream: &mut std::net::TcpStream, session: &mut Session) -> Result<Message, WireError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    wire::receive_sealed(stream, &mut session.opener, &mut || {
        Instant::now() < deadline
    })
}

#[test]
fn a_session_that_has_not_identified_is_served_nothing() {
    // I2: a write, gossip or read before Identify is refused and the connection closed.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &six_node_toml("c", "s", 4, &free_ports()));
    let cluster = EmbeddedCluster::start(dir.path()).unwrap();
    let requests = [
        Message::WriteBatch {
            request_id: 1,
            segment: segment(0, 0),
            epoch: Epoch(1),
            vdl_hint: Lsn::ZERO,
            truncation: None,
            records: vec![],
        },
        Message::Status { request_id: 1 },
        Message::RaiseEpoch {
            request_id: 1,
            epoch: Epoch(9),
        },
    ];
    for request in requests {
        let (mut stream, mut session) = authenticated_stream(&config, 0);
        wire::send_sealed(&mut stream, &mut session.sealer, &request).unwrap();
        match receive(&mut stream, &mut session).unwrap() {
            Message::Error { code, message, .. } => {
                assert_eq!(code, ErrorCode::NotIdentified, "{message}");
            }
            other => panic!("served before Identify: {other:?}"),
        }
        assert!(
            matches!(
                receive(&mut stream, &mut session),
                Err(WireError::Closed | WireError::Io(_))
            ),
            "the connection closes"
        );
    }
    // E1: the refused RaiseEpoch raised nothing.
    let status = sixfold_cluster::status::collect(&config);
    assert!(status.reachable(NodeId(1)));
    cluster.stop();
}

#[test]
fn a_client_of_another_geometry_is_refused_naming_both_values() {
    // I2: #12 scenario 3 at the wire level; the right identity is served.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &six_node_toml("c", "s", 4, &free_ports()));
    let cluster = EmbeddedCluster::start(dir.path()).unwrap();
    let mut other = config.clone();
    other.pg_pages = 8;
    let addr = config.nodes[2].addr;
    match net::connect_identified(addr, 3, &other, &Identity::client(&other)) {
        Err(WireError::IdentityRefused(message)) => assert!(
            message.starts_with("the writer (or tool) has pg_pages=8, node 3's config says 4"),
            "{message}"
        ),
        other => panic!("expected a refusal, got {:?}", other.map(|(_, _, id)| id)),
    }
    // The node at node 3's address is not node 1: refused at the handshake already (A3).
    match net::connect_identified(addr, 1, &config, &Identity::client(&config)) {
        Err(WireError::Handshake(HandshakeError::UnexpectedNode {
            expected: 1,
            found: 3,
        })) => {}
        other => panic!("expected a refusal, got {:?}", other.map(|(_, _, id)| id)),
    }
    let (_, _, identity) =
        net::connect_identified(addr, 3, &config, &Identity::client(&config)).unwrap();
    assert_eq!(identity.node_id, 3);
    assert_eq!(identity.pg_pages, 4);
    assert_eq!(identity.volume_id, config.volume_id);
    cluster.stop();
}
