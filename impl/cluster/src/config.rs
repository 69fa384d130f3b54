//! The cluster config file (TOML) and the placement of every PG's six segments (Q3, Q4, Q6).
//!
//! ```toml
//! cluster_id = "demo"
//! volume_id = "5f0c2a9e7d41b3860c1e2f3a4b5c6d7e"   # 128 random bits, written once (I1)
//! secret = "change-me"
//! pg_pages = 1024            # pages per protection group
//! backup = "file:///srv/sixfold-backup"   # optional: continuous backup (B20)
//! [[node]]
//! id = 1
//! az = "az1"
//! addr = "127.0.0.1:7101"
//! data = "node1"             # relative to the config file's folder
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::VolumeId;
use sixfold_core::{
    AzId, Geometry, NodeId, PgId, Placement, QuorumConfig, SEGMENTS_PER_PG, SegmentId,
};

/// Longest cluster id accepted (it travels in the handshake).
pub const CLUSTER_ID_BYTES_MAX: usize = 128;
/// Most nodes one config may name.
pub const NODES_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u32,
    az: String,
    addr: String,
    data: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster_id: String,
    /// Optional in the file only so its absence gets the explanation below, not serde's.
    volume_id: Option<String>,
    secret: String,
    pg_pages: u32,
    /// B20: the continuous backup's target URL, if any.
    backup: Option<String>,
    node: Vec<RawNode>,
}

/// One storage node of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: NodeId,
    /// The AZ's name as written in the config.
    pub az: String,
    /// The AZ's index among the config's AZs sorted by name.
    pub az_id: AzId,
    pub addr: SocketAddr,
    /// Absolute data folder.
    pub data_dir: PathBuf,
}

/// A validated cluster config.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub cluster_id: String,
    /// I1: the volume this config describes; every node records it at its first start.
    pub volume_id: VolumeId,
    pub secret: String,
    pub pg_pages: u32,
    /// B20: continuous backup to this URL (`file:///path`), if set: storage nodes stage
    /// redo there (B10) and the writer its manifest points (B9).
    pub backup: Option<String>,
    pub nodes: Vec<NodeSpec>,
    /// Node ids of each AZ that can hold segments, by AZ name order; each has ≥ 2 nodes.
    az_nodes: Vec<Vec<NodeId>>,
}

impl ClusterConfig {
    /// Reads and validates a config file; relative `data` folders are taken relative to the
    /// file's folder.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        Self::parse(&text, &base).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text; `base` anchors relative data folders.
    pub fn parse(text: &str, base: &Path) -> Result<ClusterConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: error.to_string(),
        })?;
        Self::validate(raw, base)
    }

    fn validate(raw: RawConfig, base: &Path) -> Result<ClusterConfig, ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if raw.cluster_id.is_empty() || raw.cluster_id.len() > CLUSTER_ID_BYTES_MAX {
            return invalid(format!(
                "cluster_id must be 1 to {CLUSTER_ID_BYTES_MAX} bytes"
            ));
        }
        let volume_id = match &raw.volume_id {
            Some(text) => VolumeId::parse(text)
                .map_err(|reason| ConfigError::Invalid(format!("volume_id {text:?}: {reason}")))?,
            None => {
                return invalid(format!(
                    "no volume_id (the config predates identity checks, I1). Add the line \
                     `volume_id = \"{}\"` (a fresh random id) next to cluster_id, then start \
                     each existing node once with `sixfold storage-node --adopt-identity` \
                     (docs/operations.md, \"Identity and geometry\")",
                    VolumeId::random()
                ));
            }
        };
        if raw.secret.is_empty() {
            return invalid("secret must not be empty".into());
        }
        if raw.pg_pages == 0 {
            return invalid("pg_pages must be at least 1".into());
        }
        if let Some(url) = &raw.backup
            && url::Url::parse(url).is_err()
        {
            return invalid(format!("backup {url:?} is not a URL (B20)"));
        }
        if raw.node.len() > NODES_MAX {
            return invalid(format!("at most {NODES_MAX} nodes"));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut datas = BTreeSet::new();
        let az_names: BTreeSet<String> = raw.node.iter().map(|n| n.az.clone()).collect();
        let az_index: BTreeMap<&String, u32> = az_names
            .iter()
            .enumerate()
            .map(|(i, az)| (az, i as u32))
            .collect();
        let mut nodes = Vec::new();
        for node in &raw.node {
            if node.id == 0 {
                return invalid("node id 0 is reserved for clients".into());
            }
            if !ids.insert(node.id) {
                return invalid(format!("duplicate node id {}", node.id));
            }
            let addr: SocketAddr = node.addr.parse().map_err(|_| {
                ConfigError::Invalid(format!("node {}: bad addr {:?}", node.id, node.addr))
            })?;
            if !addrs.insert(addr) {
                return invalid(format!("duplicate address {addr} (node {})", node.id));
            }
            let data_dir = base.join(&node.data);
            if !datas.insert(data_dir.clone()) {
                return invalid(format!(
                    "duplicate data folder {:?} (node {})",
                    node.data, node.id
                ));
            }
            if node.az.is_empty() {
                return invalid(format!("node {}: empty az", node.id));
            }
            nodes.push(NodeSpec {
                id: NodeId(node.id),
                az: node.az.clone(),
                az_id: AzId(az_index[&node.az]),
                addr,
                data_dir,
            });
        }
        if az_names.len() < 3 {
            return invalid(format!(
                "{} AZ(s) named; each PG needs two segments in each of three AZs (Q3)",
                az_names.len()
            ));
        }
        let mut az_nodes = Vec::new();
        for az in &az_names {
            let mut members: Vec<NodeId> =
                nodes.iter().filter(|n| &n.az == az).map(|n| n.id).collect();
            members.sort();
            if members.len() < 2 {
                return invalid(format!(
                    "AZ {az:?} has {} node(s); every AZ needs two or more so each PG can place \
                     two segments in each of three AZs and hold 4/6 with AZ+1 (Q3, Q4)",
                    members.len()
                ));
            }
            az_nodes.push(members);
        }
        let config = ClusterConfig {
            cluster_id: raw.cluster_id,
            volume_id,
            secret: raw.secret,
            pg_pages: raw.pg_pages,
            backup: raw.backup,
            nodes,
            az_nodes,
        };
        config.check_placements()?;
        Ok(config)
    }

    /// Q3, Q4, Q6: the placements this config produces hold 4/6 with AZ+1. Placement is
    /// periodic in the PG number, so one period is checked.
    fn check_placements(&self) -> Result<(), ConfigError> {
        let period = (self.az_nodes.len() * self.nodes.len()).max(1) as u32;
        for pg in 0..period {
            let placement = self.core_placement(PgId(pg));
            let placement = placement.map_err(|error| {
                ConfigError::Invalid(format!("placement of pg{pg} is refused: {error}"))
            })?;
            if !placement.survives_az_plus_one(&QuorumConfig::AURORA) {
                return Err(ConfigError::Invalid(format!(
                    "placement of pg{pg} cannot hold 4/6 with AZ+1 (Q4)"
                )));
            }
        }
        Ok(())
    }

    fn core_placement(&self, pg: PgId) -> Result<Placement, sixfold_core::QuorumError> {
        let replicas = self
            .placement(pg)
            .iter()
            .map(|&id| (id, self.node(id).expect("placed nodes exist").az_id))
            .collect();
        Placement::new(replicas)
    }

    /// Q3, Q6: the node of each replica of `pg`: replicas `2a` and `2a+1` in the `a`-th
    /// chosen AZ. With exactly three AZs of two nodes, every node holds the same replica
    /// index of every PG; with more, AZs and nodes rotate deterministically with the PG.
    pub fn placement(&self, pg: PgId) -> [NodeId; SEGMENTS_PER_PG] {
        let az_count = self.az_nodes.len();
        let k = pg.0 as usize;
        let (start, round) = if az_count > 3 {
            (k, k / az_count)
        } else {
            (0, k)
        };
        std::array::from_fn(|replica| {
            let az = &self.az_nodes[(start + replica / 2) % az_count];
            az[(2 * round + replica % 2) % az.len()]
        })
    }

    /// The node holding `segment`.
    pub fn node_of(&self, segment: SegmentId) -> Option<NodeId> {
        self.placement(segment.pg)
            .get(segment.replica as usize)
            .copied()
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn geometry(&self) -> Geometry {
        Geometry {
            pg_pages: self.pg_pages,
        }
    }

    /// A config file's text for these values (used by the embedded cluster).
    pub fn to_toml(&self, data_names: &[String]) -> String {
        let mut out = format!(
            "cluster_id = {:?}\nvolume_id = \"{}\"\nsecret = {:?}\npg_pages = {}\n",
            self.cluster_id, self.volume_id, self.secret, self.pg_pages
        );
        if let Some(url) = &self.backup {
            out.push_str(&format!("backup = {url:?}\n"));
        }
        for (node, data) in self.nodes.iter().zip(data_names) {
            out.push_str(&format!(
                "\n[[node]]\nid = {}\naz = {:?}\naddr = \"{}\"\ndata = {:?}\n",
                node.id, node.az, node.addr, data
            ));
        }
        out
    }
}

/// Config text for six nodes on loopback: two per AZ in three AZs, with a fresh random
/// volume id (I1: a new config is a new volume).
pub fn six_node_toml(cluster_id: &str, secret: &str, pg_pages: u32, ports: &[u16; 6]) -> String {
    let volume_id = VolumeId::random();
    let mut out = format!(
        "cluster_id = {cluster_id:?}\nvolume_id = \"{volume_id}\"\nsecret = {secret:?}\npg_pages = {pg_pages}\n"
    );
    for (index, port) in ports.iter().enumerate() {
        let id = index + 1;
        let az = index / 2 + 1;
        out.push_str(&format!(
            "\n[[node]]\nid = {id}\naz = \"az{az}\"\naddr = \"127.0.0.1:{port}\"\ndata = \"node{id}\"\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(text, Path::new("/tmp/x"))
    }

    #[test]
    fn six_nodes_hold_replica_i_of_every_pg() {
        // Q3, Q6: two per AZ, six distinct nodes; node i+1 holds replica i.
        let config = parse(&six_node_toml("demo", "s", 16, &[1, 2, 3, 4, 5, 6])).unwrap();
        for pg in 0..10 {
            let placed = config.placement(PgId(pg));
            assert_eq!(placed.map(|n| n.0), [1, 2, 3, 4, 5, 6]);
        }
        assert_eq!(config.nodes[0].data_dir, Path::new("/tmp/x/node1"));
    }

    #[test]
    fn nine_nodes_rotate_and_survive_az_plus_one() {
        // Q4: every placement of a nine-node config holds with AZ+1.
        let mut text = "cluster_id = \"c\"\nvolume_id = \"000102030405060708090a0b0c0d0e0f\"\n\
                        secret = \"s\"\npg_pages = 4\n"
            .to_string();
        for id in 1..=9 {
            text.push_str(&format!(
                "[[node]]\nid = {id}\naz = \"az{}\"\naddr = \"127.0.0.1:{}\"\ndata = \"n{id}\"\n",
                (id - 1) % 3,
                7000 + id
            ));
        }
        let config = parse(&text).unwrap();
        let used: BTreeSet<NodeId> = (0..9).flat_map(|pg| config.placement(PgId(pg))).collect();
        assert_eq!(used.len(), 9, "all nodes get segments");
    }

    #[test]
    fn bad_configs_are_refused_with_the_problem_named() {
        let good = six_node_toml("demo", "s", 16, &[1, 2, 3, 4, 5, 6]);
        let unknown = good.replace("pg_pages", "colour = 1\npg_pages");
        assert!(parse(&unknown).unwrap_err().to_string().contains("colour"));
        let dup_id = good.replace("id = 2", "id = 1");
        assert!(
            parse(&dup_id)
                .unwrap_err()
                .to_string()
                .contains("duplicate node id 1")
        );
        let dup_addr = good.replace("127.0.0.1:2", "127.0.0.1:1");
        assert!(
            parse(&dup_addr)
                .unwrap_err()
                .to_string()
                .contains("duplicate address")
        );
        // I1: a config without a volume id is refused with the way out named.
        let no_volume = good
            .lines()
            .filter(|l| !l.starts_with("volume_id"))
            .collect::<Vec<_>>()
            .join("\n");
        let error = parse(&no_volume).unwrap_err().to_string();
        assert!(error.contains("no volume_id") && error.contains("--adopt-identity"));
        let bad_volume = good.replace("volume_id = \"", "volume_id = \"zz");
        assert!(
            parse(&bad_volume)
                .unwrap_err()
                .to_string()
                .contains("volume_id")
        );
        let two_azs = good.replace("az3", "az2");
        assert!(parse(&two_azs).unwrap_err().to_string().contains("2 AZ(s)"));
        // Q3: an AZ with one node cannot hold two segments of a PG.
        let lonely = good.replace(
            "az = \"az3\"\naddr = \"127.0.0.1:6\"",
            "az = \"az4\"\naddr = \"127.0.0.1:6\"",
        );
        assert!(
            parse(&lonely)
                .unwrap_err()
                .to_string()
                .contains("has 1 node")
        );
    }
}
