//! What `sixfold status` gathers and prints: per PG and segment, the node, its AZ, whether
//! it answered, its SCL and epoch, and its lag behind the writer's VCL.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use sixfold_core::{Epoch, NodeId, PgId, QuorumConfig, SegmentId};

use crate::config::ClusterConfig;
use crate::identity::Identity;
use crate::net::SyncClient;
use crate::wire::{Message, SegmentStatus, WriterInfo};

/// How long the status tool waits for one node, in milliseconds.
pub const STATUS_TIMEOUT_MS: u64 = 2_000;
/// A writer heartbeat older than this means no writer is running, in milliseconds.
pub const WRITER_FRESH_MS: u64 = 3_000;

/// One node's answer, or why there is none.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub node: NodeId,
    pub az: String,
    pub reply: Result<(Epoch, Option<WriterInfo>, Vec<SegmentStatus>), String>,
}

#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
}

/// Asks every node of `config` for its status (in parallel, each bounded by a timeout).
pub fn collect(config: &ClusterConfig) -> ClusterStatus {
    let handles: Vec<_> = config
        .nodes
        .iter()
        .map(|spec| {
            let (config, spec) = (config.clone(), spec.clone());
            std::thread::spawn(move || {
                let reply = ask(&config, spec.id, spec.addr);
                NodeStatus {
                    node: spec.id,
                    az: spec.az,
                    reply,
                }
            })
        })
        .collect();
    let nodes = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    ClusterStatus { nodes }
}

type Reply = (Epoch, Option<WriterInfo>, Vec<SegmentStatus>);

fn ask(config: &ClusterConfig, node: NodeId, addr: std::net::SocketAddr) -> Result<Reply, String> {
    let mut client = SyncClient::connect(addr, node.0, config, &Identity::client(config))
        .map_err(|e| e.to_string())?;
    let request_id = client.request_id();
    let reply = client
        .call(
            &Message::Status { request_id },
            Duration::from_millis(STATUS_TIMEOUT_MS),
        )
        .map_err(|e| e.to_string())?;
    client.shutdown();
    match reply {
        Message::StatusReply {
            epoch,
            writer,
            segments,
            ..
        } => Ok((epoch, writer, segments)),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

impl ClusterStatus {
    pub fn reachable(&self, node: NodeId) -> bool {
        self.nodes.iter().any(|n| n.node == node && n.reply.is_ok())
    }

    /// The freshest running writer's (epoch, VCL, VDL), if any node heard one recently.
    pub fn writer(&self) -> Option<WriterInfo> {
        self.nodes
            .iter()
            .filter_map(|n| n.reply.as_ref().ok().and_then(|(_, w, _)| *w))
            .filter(|w| w.age_ms <= WRITER_FRESH_MS)
            .max_by_key(|w| (w.epoch, w.vcl))
    }

    /// Every reported segment with its node and state.
    pub fn segments(&self) -> BTreeMap<SegmentId, (NodeId, SegmentStatus)> {
        let mut out = BTreeMap::new();
        for node in &self.nodes {
            if let Ok((_, _, segments)) = &node.reply {
                for s in segments {
                    out.insert(s.segment, (node.node, s.clone()));
                }
            }
        }
        out
    }

    /// Q1: the PGs (every PG a node reported, and PG 0) with fewer than a write quorum of
    /// segments that can take writes: on a reachable node and not blocked (S18). Each with
    /// how many can.
    pub fn pgs_without_write_quorum(&self, config: &ClusterConfig) -> Vec<(PgId, usize)> {
        let segments = self.segments();
        let mut pgs: Vec<PgId> = segments.keys().map(|s| s.pg).collect();
        pgs.push(PgId(0));
        pgs.sort();
        pgs.dedup();
        let writable = |pg: PgId| {
            let placement = config.placement(pg);
            (0..placement.len())
                .filter(|&replica| {
                    let segment = SegmentId {
                        pg,
                        replica: replica as u8,
                    };
                    let problem = segments.get(&segment).map(|(_, s)| s.problem.as_str());
                    self.reachable(placement[replica])
                        && !problem.is_some_and(|p| p.starts_with("blocked"))
                })
                .count()
        };
        pgs.into_iter()
            .map(|pg| (pg, writable(pg)))
            .filter(|&(_, n)| n < QuorumConfig::AURORA.write_quorum())
            .collect()
    }

    /// One line naming every PG without a write quorum, if any (`sixfold status` then
    /// exits non-zero).
    pub fn quorum_problem(&self, config: &ClusterConfig) -> Option<String> {
        let missing = self.pgs_without_write_quorum(config);
        if missing.is_empty() {
            return None;
        }
        let need = QuorumConfig::AURORA.write_quorum();
        let list: Vec<String> = missing
            .iter()
            .map(|(pg, n)| format!("pg{pg} ({n} of 6 writable)"))
            .collect();
        Some(format!(
            "NO WRITE QUORUM (needs {need} of 6 segments reachable and writable): {}",
            list.join(", ")
        ))
    }

    /// The table `sixfold status` prints.
    pub fn render(&self, config: &ClusterConfig) -> String {
        let mut out = String::new();
        let writer = self.writer();
        match writer {
            Some(w) => {
                let _ = writeln!(out, "writer: epoch {} VCL {} VDL {}", w.epoch, w.vcl, w.vdl);
            }
            None => {
                let _ = writeln!(out, "writer: none running");
            }
        }
        let _ = writeln!(out, "\nnodes:");
        for node in &self.nodes {
            match &node.reply {
                Ok((epoch, _, segments)) => {
                    let _ = writeln!(
                        out,
                        "  node {} ({}) reachable epoch {} segments {}",
                        node.node,
                        node.az,
                        epoch,
                        segments.len()
                    );
                }
                Err(reason) => {
                    let _ = writeln!(
                        out,
                        "  node {} ({}) UNREACHABLE: {reason}",
                        node.node, node.az
                    );
                }
            }
        }
        let segments = self.segments();
        let mut pgs: Vec<PgId> = segments.keys().map(|s| s.pg).collect();
        pgs.dedup();
        let vcl = writer.map(|w| w.vcl);
        for pg in pgs {
            let _ = writeln!(out, "\npg{pg}:");
            let _ = writeln!(
                out,
                "  {:<8} {:>4} {:<6} {:<11} {:>10} {:>6} {:>10}",
                "segment", "node", "az", "reachable", "SCL", "epoch", "lag"
            );
            let placement = config.placement(pg);
            for (replica, &node) in placement.iter().enumerate() {
                let segment = SegmentId {
                    pg,
                    replica: replica as u8,
                };
                let az = config.node(node).map_or("?", |n| n.az.as_str());
                let reachable = self.reachable(node);
                let (scl, epoch) = match segments.get(&segment) {
                    Some((_, s)) => (s.scl.to_string(), s.epoch.to_string()),
                    None if reachable => ("0".into(), "-".into()),
                    None => ("?".into(), "?".into()),
                };
                let lag = match (vcl, segments.get(&segment)) {
                    (Some(vcl), Some((_, s))) => vcl.0.saturating_sub(s.scl.0).to_string(),
                    (Some(vcl), None) if reachable => vcl.0.to_string(),
                    _ => "-".into(),
                };
                let problem = segments
                    .get(&segment)
                    .map(|(_, s)| s.problem.to_uppercase())
                    .filter(|p| !p.is_empty())
                    .map(|p| format!("  {p}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {:<8} {:>4} {:<6} {:<11} {:>10} {:>6} {:>10}{problem}",
                    segment.to_string(),
                    node.0,
                    az,
                    if reachable { "yes" } else { "UNREACHABLE" },
                    scl,
                    epoch,
                    lag
                );
            }
        }
        if let Some(problem) = self.quorum_problem(config) {
            let _ = writeln!(out, "\n{problem}");
        }
        out
    }
}
