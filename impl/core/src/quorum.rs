//! Quorum sizes and segment placement (Q1–Q4, Q6).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{AzId, NodeId, SEGMENTS_PER_PG};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error(
        "Vr + Vw must exceed V so a read quorum meets every write quorum (Q2): {vr} + {vw} <= {v}"
    )]
    ReadsMissWrites { v: usize, vw: usize, vr: usize },
    #[error("2·Vw must exceed V so two write quorums meet (Q2): 2·{vw} <= {v}")]
    WritesMissWrites { v: usize, vw: usize },
    #[error("quorum sizes must be between 1 and V = {v}: Vw = {vw}, Vr = {vr}")]
    OutOfRange { v: usize, vw: usize, vr: usize },
    #[error("a PG needs exactly {expected} segments, got {found} (Q1)")]
    SegmentCount { expected: usize, found: usize },
    #[error("{count} segments of one PG in AZ {az}; at most two allowed (Q3)")]
    CrowdedAz { az: AzId, count: usize },
    #[error("a PG needs segments in three distinct AZs, got {found} (Q3)")]
    TooFewAzs { found: usize },
    #[error("node {node} holds two segments of one PG (Q6)")]
    SharedNode { node: NodeId },
}

/// Quorum sizes: V copies, write quorum Vw, read quorum Vr (Q1, Q2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumConfig {
    v: usize,
    vw: usize,
    vr: usize,
}

impl QuorumConfig {
    /// Aurora's 6 / 4 / 3 (Q1).
    pub const AURORA: QuorumConfig = QuorumConfig { v: 6, vw: 4, vr: 3 };

    /// Q2: refuses sizes where a read could miss a write or two writes could miss each other.
    pub fn new(v: usize, vw: usize, vr: usize) -> Result<QuorumConfig, QuorumError> {
        if vw == 0 || vr == 0 || vw > v || vr > v {
            return Err(QuorumError::OutOfRange { v, vw, vr });
        }
        if vr + vw <= v {
            return Err(QuorumError::ReadsMissWrites { v, vw, vr });
        }
        if 2 * vw <= v {
            return Err(QuorumError::WritesMissWrites { v, vw });
        }
        Ok(QuorumConfig { v, vw, vr })
    }

    pub fn copies(&self) -> usize {
        self.v
    }

    pub fn write_quorum(&self) -> usize {
        self.vw
    }

    pub fn read_quorum(&self) -> usize {
        self.vr
    }
}

impl Default for QuorumConfig {
    fn default() -> QuorumConfig {
        QuorumConfig::AURORA
    }
}

/// Where the six segments of a PG live: `(node, az)` by replica index (Q3, Q6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    replicas: Vec<(NodeId, AzId)>,
}

/// What a set of failed nodes leaves of a PG (Q4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    pub reads: bool,
    pub writes: bool,
}

impl Placement {
    /// Q3, Q6: six segments on six distinct nodes, two in each of three AZs.
    pub fn new(replicas: Vec<(NodeId, AzId)>) -> Result<Placement, QuorumError> {
        if replicas.len() != SEGMENTS_PER_PG {
            return Err(QuorumError::SegmentCount {
                expected: SEGMENTS_PER_PG,
                found: replicas.len(),
            });
        }
        let mut per_az: BTreeMap<AzId, usize> = BTreeMap::new();
        let mut nodes = BTreeSet::new();
        for &(node, az) in &replicas {
            if !nodes.insert(node) {
                return Err(QuorumError::SharedNode { node });
            }
            *per_az.entry(az).or_default() += 1;
        }
        if let Some((&az, &count)) = per_az.iter().find(|&(_, &count)| count > 2) {
            return Err(QuorumError::CrowdedAz { az, count });
        }
        if per_az.len() < 3 {
            return Err(QuorumError::TooFewAzs {
                found: per_az.len(),
            });
        }
        Ok(Placement { replicas })
    }

    pub fn replicas(&self) -> &[(NodeId, AzId)] {
        &self.replicas
    }

    /// Q4: whether reads and writes of the PG survive `failed`, computed from the quorum
    /// sizes rather than assumed.
    pub fn availability(&self, quorum: &QuorumConfig, failed: &BTreeSet<NodeId>) -> Availability {
        let alive = self
            .replicas
            .iter()
            .filter(|(node, _)| !failed.contains(node))
            .count();
        Availability {
            reads: alive >= quorum.read_quorum(),
            writes: alive >= quorum.write_quorum(),
        }
    }

    /// Q4: the AZ+1 claim for this placement: every single-AZ loss keeps writes, and every
    /// AZ-plus-one-node loss keeps reads.
    pub fn survives_az_plus_one(&self, quorum: &QuorumConfig) -> bool {
        let azs: BTreeSet<AzId> = self.replicas.iter().map(|&(_, az)| az).collect();
        azs.iter().all(|&lost_az| {
            let az_nodes: BTreeSet<NodeId> = self
                .replicas
                .iter()
                .filter(|&&(_, az)| az == lost_az)
                .map(|&(node, _)| node)
                .collect();
            let writes_survive_az = self.availability(quorum, &az_nodes).writes;
            let reads_survive_az_plus_one = self.replicas.iter().all(|&(extra, _)| {
                let mut failed = az_nodes.clone();
                failed.insert(extra);
                self.availability(quorum, &failed).reads
            });
            writes_survive_az && reads_survive_az_plus_one
        })
    }
}
