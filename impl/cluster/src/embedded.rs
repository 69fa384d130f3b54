//! Six storage nodes in one process on loopback: `sixfold cluster`, the SQL demo and the
//! in-process tests. Stopping and starting nodes injects failures (Q4).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sixfold_core::NodeId;

use crate::config::{ClusterConfig, ConfigError, six_node_toml};
use crate::files::{self, FilesError, PrivatePath};
use crate::server::{NodeHandle, ServerError};

/// Pages per PG of a config the embedded cluster writes.
pub const EMBEDDED_PG_PAGES: u32 = 1024;
/// Random bytes of the secret of a config the embedded cluster writes (hex in the file).
pub const SECRET_RANDOM_BYTES: usize = 32;
/// File name of the config inside the cluster's folder.
pub const CONFIG_FILE: &str = "cluster.toml";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("node {node}: {source}")]
    Node { node: u32, source: ServerError },
    #[error("node {0} is not in the config")]
    UnknownNode(u32),
}

/// A running embedded cluster; dropping it stops every node.
pub struct EmbeddedCluster {
    config_path: PathBuf,
    config: ClusterConfig,
    nodes: Mutex<BTreeMap<NodeId, NodeHandle>>,
}

/// Free loopback ports, chosen by the OS.
pub fn free_ports() -> Result<[u16; 6], std::io::Error> {
    let listeners: Vec<TcpListener> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let mut ports = [0u16; 6];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

impl EmbeddedCluster {
    /// Starts every node of `dir/cluster.toml`, first writing a six-node config on free
    /// loopback ports there if the file is absent.
    pub fn start(dir: &Path) -> Result<EmbeddedCluster, EmbeddedError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbeddedError::Io { path, source }
        };
        files::create_private_dir(dir)?;
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            let ports = free_ports().map_err(io(dir))?;
            // 256 random bits: a handshake seen on the wire must not let anyone guess it.
            let secret: String = (0..SECRET_RANDOM_BYTES)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            let text = six_node_toml("embedded", &secret, EMBEDDED_PG_PAGES, &ports);
            files::write_private_file(&config_path, text.as_bytes())?;
        }
        // A6: the config holds the secret; nodes refuse one that others can read.
        files::check_private(&config_path, PrivatePath::Config)?;
        let config = ClusterConfig::load(&config_path)?;
        let cluster = EmbeddedCluster {
            config_path,
            config,
            nodes: Mutex::new(BTreeMap::new()),
        };
        for node in cluster
            .config
            .nodes
            .iter()
            .map(|n| n.id)
            .collect::<Vec<_>>()
        {
            cluster.start_node(node)?;
        }
        Ok(cluster)
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Stops node `id` (its files stay); false if it was not running.
    pub fn stop_node(&self, id: NodeId) -> bool {
        let handle = self.nodes.lock().expect("nodes").remove(&id);
        match handle {
            Some(handle) => {
                handle.stop();
                true
            }
            None => false,
        }
    }

    /// Starts node `id` again from its files (S12); a running node is left alone.
    pub fn start_node(&self, id: NodeId) -> Result<(), EmbeddedError> {
        let mut nodes = self.nodes.lock().expect("nodes");
        if nodes.contains_key(&id) {
            return Ok(());
        }
        if self.config.node(id).is_none() {
            return Err(EmbeddedError::UnknownNode(id.0));
        }
        // The port of a just-stopped node can take a moment to be free again.
        let mut attempt = 0;
        let handle = loop {
            match NodeHandle::start(&self.config, id) {
                Ok(handle) => break handle,
                Err(ServerError::Listen { .. }) if attempt < 50 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(source) => return Err(EmbeddedError::Node { node: id.0, source }),
            }
        };
        nodes.insert(id, handle);
        Ok(())
    }

    /// Node ids running now.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.lock().expect("nodes").keys().copied().collect()
    }

    /// Stops every node.
    pub fn stop(self) {
        let nodes = std::mem::take(&mut *self.nodes.lock().expect("nodes"));
        for (_, handle) in nodes {
            handle.stop();
        }
    }
}
