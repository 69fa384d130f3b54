//! The recovery driver run at every writer start (X1–X8, E1, E4): raise the volume epoch at
//! a write quorum of every PG, gather segment reports from a read quorum per PG, plan with
//! the core [`RecoveryPlanner`], make the truncation durable at a write quorum of every
//! PG, repair each PG to a write quorum holding its records up to VDL, then open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sixfold_core::{
    Epoch, GossipRequest, Lsn, NodeId, PgId, QuorumConfig, RecoveryPlan, RecoveryPlanner,
    SEGMENTS_PER_PG, SegmentId, SegmentReport, TruncationRange,
};

use crate::config::ClusterConfig;
use crate::link::Link;
use crate::wire::{ErrorCode, Message, SegmentStatus};

/// How long one recovery request may wait for its node, in milliseconds.
pub const RECOVERY_CALL_TIMEOUT_MS: u64 = 5_000;
/// Repair rounds per PG, at most (each moves up to a batch of records to each segment).
pub const REPAIR_ROUNDS_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryDriverError {
    #[error("epoch {proposed} refused: a node has seen {seen} (E1); retrying higher")]
    EpochTaken { proposed: Epoch, seen: Epoch },
    #[error("only {reachable} of {nodes} nodes answered; recovery needs all but two")]
    TooFewNodes { reachable: usize, nodes: usize },
    #[error("pg{pg}: {have} segments took the new epoch, a write quorum is {need} (E1, X5)")]
    NoWriteQuorum { pg: u32, have: usize, need: usize },
    #[error(transparent)]
    Plan(#[from] sixfold_core::RecoveryError),
    #[error("pg{pg}: repair stalled with {have} segments at {target} (X5, Q5)")]
    RepairStalled { pg: u32, have: usize, target: Lsn },
    #[error("node {node}: {reason}")]
    Node { node: u32, reason: String },
}

/// What recovery hands to the writer: the plan and the SCLs it last saw.
pub struct Recovered {
    pub plan: RecoveryPlan,
    pub scls: BTreeMap<SegmentId, Lsn>,
}

pub struct Driver<'a> {
    pub config: &'a ClusterConfig,
    pub links: &'a BTreeMap<NodeId, Arc<Link>>,
    pub lal: u64,
}

fn timeout() -> Duration {
    Duration::from_millis(RECOVERY_CALL_TIMEOUT_MS)
}

impl Driver<'_> {
    fn node_error(node: NodeId, reason: impl std::fmt::Display) -> RecoveryDriverError {
        RecoveryDriverError::Node {
            node: node.0,
            reason: reason.to_string(),
        }
    }

    /// The highest epoch any reachable node holds (E1: the new one goes above it).
    pub fn highest_epoch(&self) -> (Epoch, usize) {
        let mut highest = Epoch(0);
        let mut answered = 0;
        for link in self.links.values() {
            if let Ok(Message::StatusReply { epoch, .. }) =
                link.request(|request_id| Message::Status { request_id }, timeout())
            {
                highest = highest.max(epoch);
                answered += 1;
            }
        }
        (highest, answered)
    }

    /// One recovery attempt at `proposed`.
    pub fn run(&self, proposed: Epoch) -> Result<Recovered, RecoveryDriverError> {
        let quorum = QuorumConfig::AURORA;
        // E1, E4, X1: raise the epoch; the answer is each hosted segment's report.
        let mut answered: BTreeMap<NodeId, (Vec<SegmentReport>, Vec<TruncationRange>)> =
            BTreeMap::new();
        for (&node, link) in self.links {
            let reply = link.request(
                |request_id| Message::RaiseEpoch {
                    request_id,
                    epoch: proposed,
                },
                timeout(),
            );
            match reply {
                Ok(Message::Reports {
                    reports,
                    truncations,
                    ..
                }) => {
                    answered.insert(node, (reports, truncations));
                }
                Ok(Message::Error {
                    code: ErrorCode::StaleEpoch,
                    epoch,
                    ..
                }) => {
                    return Err(RecoveryDriverError::EpochTaken {
                        proposed,
                        seen: epoch,
                    });
                }
                Ok(other) => {
                    tracing::warn!(node = node.0, reply = ?other.request_id(), "unexpected reply to RaiseEpoch")
                }
                Err(error) => {
                    tracing::info!(node = node.0, %error, "node did not take the new epoch")
                }
            }
        }
        let nodes = self.config.nodes.len();
        if answered.len() + 2 < nodes {
            return Err(RecoveryDriverError::TooFewNodes {
                reachable: answered.len(),
                nodes,
            });
        }
        let pgs: BTreeSet<PgId> = answered
            .values()
            .flat_map(|(reports, _)| reports.iter().map(|r| r.segment.pg))
            .collect();
        self.check_write_quorum(&pgs, &answered.keys().copied().collect(), quorum)?;
        // X1, X2: a report per (PG, answering node); a node that does not host a segment it
        // is placed for holds nothing of that PG, and says so with an empty report.
        let mut planner = RecoveryPlanner::new(quorum, self.lal, proposed, pgs.clone());
        for &pg in &pgs {
            for (replica, node) in self.config.placement(pg).into_iter().enumerate() {
                let Some((reports, truncations)) = answered.get(&node) else {
                    continue;
                };
                let segment = SegmentId {
                    pg,
                    replica: replica as u8,
                };
                let report = reports
                    .iter()
                    .find(|r| r.segment == segment)
                    .cloned()
                    .unwrap_or_else(|| SegmentReport {
                        segment,
                        epoch: proposed,
                        scl: Lsn::ZERO,
                        vdl_hint: Lsn::ZERO,
                        tip_at_hint: Lsn::ZERO,
                        held: Vec::new(),
                        truncations: truncations.clone(),
                    });
                planner.handle_report(report)?;
            }
        }
        let (plan, _events) = planner.plan()?;
        tracing::info!(
            epoch = plan.epoch.0,
            vcl = plan.vcl.0,
            vdl = plan.vdl.0,
            pgs = pgs.len(),
            "recovery planned (X3, X4)"
        );
        // X4, X5: the truncation, durable at a write quorum of every PG.
        let mut scls = BTreeMap::new();
        let mut truncated = BTreeSet::new();
        for &node in answered.keys() {
            let reply = self.links[&node].request(
                |request_id| Message::Truncate {
                    request_id,
                    history: plan.history.clone(),
                },
                timeout(),
            );
            if let Ok(Message::StatusReply { segments, .. }) = reply {
                truncated.insert(node);
                note_scls(&mut scls, &segments);
            }
        }
        self.check_write_quorum(&pgs, &truncated, quorum)?;
        for &pg in &pgs {
            let target = plan.last_lsn_by_pg.get(&pg).copied().unwrap_or(Lsn::ZERO);
            self.repair(pg, target, &plan, &truncated, &mut scls)?;
        }
        Ok(Recovered { plan, scls })
    }

    fn check_write_quorum(
        &self,
        pgs: &BTreeSet<PgId>,
        nodes: &BTreeSet<NodeId>,
        quorum: QuorumConfig,
    ) -> Result<(), RecoveryDriverError> {
        for &pg in pgs {
            let have = self
                .config
                .placement(pg)
                .iter()
                .filter(|n| nodes.contains(n))
                .count();
            if have < quorum.write_quorum() {
                return Err(RecoveryDriverError::NoWriteQuorum {
                    pg: pg.0,
                    have,
                    need: quorum.write_quorum(),
                });
            }
        }
        Ok(())
    }

    /// X5, Q5: until a write quorum of `pg` has SCL ≥ `target`, copy records from the
    /// segments that have them to those that lack them.
    fn repair(
        &self,
        pg: PgId,
        target: Lsn,
        plan: &RecoveryPlan,
        nodes: &BTreeSet<NodeId>,
        scls: &mut BTreeMap<SegmentId, Lsn>,
    ) -> Result<(), RecoveryDriverError> {
        let placement = self.config.placement(pg);
        let segments: Vec<(SegmentId, NodeId)> = (0..SEGMENTS_PER_PG)
            .map(|r| {
                (
                    SegmentId {
                        pg,
                        replica: r as u8,
                    },
                    placement[r],
                )
            })
            .filter(|(_, node)| nodes.contains(node))
            .collect();
        let scl_of = |scls: &BTreeMap<SegmentId, Lsn>, s: SegmentId| {
            scls.get(&s).copied().unwrap_or(Lsn::ZERO)
        };
        for _ in 0..REPAIR_ROUNDS_MAX {
            let done = segments
                .iter()
                .filter(|(s, _)| scl_of(scls, *s) >= target)
                .count();
            if done >= QuorumConfig::AURORA.write_quorum() {
                return Ok(());
            }
            let mut progressed = false;
            for &(lagging, lagging_node) in &segments {
                let lagging_scl = scl_of(scls, lagging);
                if lagging_scl >= target {
                    continue;
                }
                let mut sources: Vec<(SegmentId, NodeId)> = segments
                    .iter()
                    .copied()
                    .filter(|(s, _)| *s != lagging)
                    .collect();
                sources.sort_by_key(|(s, _)| std::cmp::Reverse(scl_of(scls, *s)));
                for (source, source_node) in sources {
                    let records = self.fetch(source, source_node, lagging_scl, plan.epoch)?;
                    let records: Vec<_> = records.into_iter().filter(|r| r.lsn <= target).collect();
                    if records.is_empty() {
                        continue;
                    }
                    let scl = self.store(lagging, lagging_node, plan, records)?;
                    if scl > lagging_scl {
                        scls.insert(lagging, scl);
                        progressed = true;
                        break;
                    }
                }
            }
            if !progressed {
                let have = segments
                    .iter()
                    .filter(|(s, _)| scl_of(scls, *s) >= target)
                    .count();
                return Err(RecoveryDriverError::RepairStalled {
                    pg: pg.0,
                    have,
                    target,
                });
            }
        }
        Err(RecoveryDriverError::RepairStalled {
            pg: pg.0,
            have: 0,
            target,
        })
    }

    /// S6 on the writer's behalf: the source's records above `scl`.
    fn fetch(
        &self,
        source: SegmentId,
        node: NodeId,
        scl: Lsn,
        epoch: Epoch,
    ) -> Result<Vec<sixfold_core::RedoRecord>, RecoveryDriverError> {
        let reply = self.links[&node].request(
            |request_id| Message::Gossip {
                request_id,
                segment: source,
                request: GossipRequest {
                    epoch,
                    scl,
                    holes: Vec::new(),
                    max_held: scl,
                    truncations: Vec::new(),
                },
            },
            timeout(),
        );
        match reply {
            Ok(Message::GossipRecords { records, .. }) => Ok(records),
            Ok(other) => Err(Self::node_error(node, format!("gossip answered {other:?}"))),
            Err(error) => Err(Self::node_error(node, error)),
        }
    }

    fn store(
        &self,
        segment: SegmentId,
        node: NodeId,
        plan: &RecoveryPlan,
        records: Vec<sixfold_core::RedoRecord>,
    ) -> Result<Lsn, RecoveryDriverError> {
        let reply = self.links[&node].request(
            |request_id| Message::WriteBatch {
                request_id,
                segment,
                epoch: plan.epoch,
                vdl_hint: Lsn::ZERO,
                truncation: Some(plan.truncation),
                records,
            },
            timeout(),
        );
        match reply {
            Ok(Message::Ack { scl, .. }) => Ok(scl),
            Ok(other) => Err(Self::node_error(
                node,
                format!("repair write answered {other:?}"),
            )),
            Err(error) => Err(Self::node_error(node, error)),
        }
    }
}

fn note_scls(scls: &mut BTreeMap<SegmentId, Lsn>, segments: &[SegmentStatus]) {
    for status in segments {
        scls.insert(status.segment, status.scl);
    }
}
