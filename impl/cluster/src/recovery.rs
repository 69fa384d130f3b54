//! The recovery driver run at every writer start (X1–X8, E1, E4): raise the volume epoch at
//! a write quorum of every PG, gather segment reports from a read quorum per PG, plan with
//! the core [`RecoveryPlanner`], make the truncation durable at a write quorum of every
//! PG, repair each PG to a write quorum holding its records up to VDL, then open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sixfold_core::lease::recovery_wait_ms;

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
    #[error(
        "segment {segment} is on node {found_on} but the config places it on {placed_on}: \
         restore the old [[node]] entries (ids, AZ names, data folders) or move it with a \
         membership change; recovery stopped without counting it (I3)"
    )]
    Misplaced {
        segment: SegmentId,
        found_on: u32,
        placed_on: String,
    },
}

/// One node's answer to `RaiseEpoch` (X1, X11).
#[derive(Clone, Debug, Default)]
pub struct NodeAnswer {
    pub reports: Vec<SegmentReport>,
    pub truncations: Vec<TruncationRange>,
    /// S20: segments that count as no answer.
    pub repairing: Vec<SegmentId>,
    /// S20: a placed segment the node does not host may be one it lost.
    pub absent_may_be_lost: bool,
}

/// Each answering node's answer (X1).
pub type Answers = BTreeMap<NodeId, NodeAnswer>;

/// I3: every reported segment must be where the config places it. A report the config does
/// not place on its node — an AZ renamed or added, nodes added, reordered or swapped — would
/// otherwise be dropped while its placed node, holding nothing of it, counts as an empty
/// report: a too-low VDL, and recovery truncates acknowledged records on every node.
pub fn check_reports_placed(
    config: &ClusterConfig,
    answered: &Answers,
) -> Result<(), RecoveryDriverError> {
    for (&node, answer) in answered {
        let segments = answer
            .reports
            .iter()
            .map(|report| report.segment)
            .chain(answer.repairing.iter().copied());
        for segment in segments {
            let placed = config.node_of(segment);
            if placed != Some(node) {
                return Err(RecoveryDriverError::Misplaced {
                    segment,
                    found_on: node.0,
                    placed_on: placed.map_or("no node".into(), |n| format!("node {}", n.0)),
                });
            }
        }
    }
    Ok(())
}

/// X1, X2, I3, X11: the report of every placed segment whose node answered, for the PGs
/// in `pgs`. A placed node that hosts no segment of a PG holds nothing of it (V2: created
/// at its first write) and gets an empty report — only after [`check_reports_placed`]
/// showed that no other node holds that segment, and only if the node does not say it may
/// have lost it (S19, a late node). A repairing segment gets no report at all (X11).
pub fn placed_reports(
    config: &ClusterConfig,
    answered: &Answers,
    pgs: &BTreeSet<PgId>,
    epoch: Epoch,
) -> Result<Vec<SegmentReport>, RecoveryDriverError> {
    check_reports_placed(config, answered)?;
    let mut placed = Vec::new();
    for &pg in pgs {
        for (replica, node) in config.placement(pg).into_iter().enumerate() {
            let Some(answer) = answered.get(&node) else {
                continue;
            };
            let segment = SegmentId {
                pg,
                replica: replica as u8,
            };
            if answer.repairing.contains(&segment) {
                continue;
            }
            match answer.reports.iter().find(|r| r.segment == segment) {
                Some(report) => placed.push(report.clone()),
                None if answer.absent_may_be_lost => {}
                None => placed.push(SegmentReport {
                    truncations: answer.truncations.clone(),
                    ..SegmentReport::empty(segment, epoch)
                }),
            }
        }
    }
    Ok(placed)
}

/// What recovery hands to the writer: the plan and the SCLs it last saw.
pub struct Recovered {
    pub plan: RecoveryPlan,
    pub scls: BTreeMap<SegmentId, Lsn>,
}

/// R10: a recovering writer opens only after every lease its epoch quorum's nodes
/// promised to an older writer has run out, so that writer serves no read after this one
/// acknowledges a commit.
fn wait_out_leases(leases_end: Instant) {
    let now = Instant::now();
    if leases_end > now {
        let wait = leases_end - now;
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "waiting out the older writer's read lease (R10)"
        );
        std::thread::sleep(wait);
    }
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
        let mut answered = Answers::new();
        // R10: the moment every lease promised by an answering node has run out.
        let mut leases_end = Instant::now();
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
                    lease_remaining_ms,
                    repairing,
                    absent_may_be_lost,
                    ..
                }) => {
                    let wait = recovery_wait_ms(u64::from(lease_remaining_ms));
                    leases_end = leases_end.max(Instant::now() + Duration::from_millis(wait));
                    if !repairing.is_empty() || absent_may_be_lost {
                        tracing::warn!(
                            node = node.0,
                            repairing = repairing.len(),
                            absent_may_be_lost,
                            "X11: segments that may have lost records count as no answer"
                        );
                    }
                    answered.insert(
                        node,
                        NodeAnswer {
                            reports,
                            truncations,
                            repairing,
                            absent_may_be_lost,
                        },
                    );
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
        // X11: a PG only repairing segments know of is still a PG to recover (and to refuse
        // while fewer than a read quorum of its segments can answer).
        let pgs: BTreeSet<PgId> = answered
            .values()
            .flat_map(|answer| {
                let reported = answer.reports.iter().map(|r| r.segment.pg);
                reported.chain(answer.repairing.iter().map(|s| s.pg))
            })
            .collect();
        // I3: before anything is counted, every report must be where the config places it.
        let reports = placed_reports(self.config, &answered, &pgs, proposed)?;
        self.check_write_quorum(&pgs, &answered.keys().copied().collect(), quorum)?;
        // X1, X2: a report per (PG, answering node).
        let mut planner = RecoveryPlanner::new(quorum, self.lal, proposed, pgs.clone());
        for report in reports {
            planner.handle_report(report)?;
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
        wait_out_leases(leases_end);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::six_node_toml;
    use std::path::Path;

    fn parse(text: &str) -> ClusterConfig {
        ClusterConfig::parse(text, Path::new("/tmp/x")).unwrap()
    }

    fn report(pg: u32, replica: u8, scl: u64) -> SegmentReport {
        SegmentReport {
            segment: SegmentId {
                pg: PgId(pg),
                replica,
            },
            epoch: Epoch(1),
            scl: Lsn(scl),
            vdl_hint: Lsn(scl),
            tip_at_hint: Lsn(scl),
            held: Vec::new(),
            truncations: Vec::new(),
        }
    }

    /// What six nodes of `config` report for PGs 0..pgs when every segment holds `scl`.
    fn answers_of(config: &ClusterConfig, pgs: u32, scl: u64) -> Answers {
        let mut answered = Answers::new();
        for pg in 0..pgs {
            for (replica, node) in config.placement(PgId(pg)).into_iter().enumerate() {
                let entry = answered.entry(node).or_default();
                entry.reports.push(report(pg, replica as u8, scl));
            }
        }
        answered
    }

    fn pgs(count: u32) -> BTreeSet<PgId> {
        (0..count).map(PgId).collect()
    }

    #[test]
    fn reports_where_the_config_places_them_are_all_counted() {
        // I3, X1: the same config finds every report in place.
        let config = parse(&six_node_toml("c", "s", 4, &[1, 2, 3, 4, 5, 6]));
        let answered = answers_of(&config, 4, 9);
        let reports = placed_reports(&config, &answered, &pgs(4), Epoch(2)).unwrap();
        assert_eq!(reports.len(), 24);
        assert!(reports.iter().all(|r| r.scl == Lsn(9)));
    }

    #[test]
    fn an_added_az_stops_recovery_instead_of_counting_empty_reports() {
        // I3: #12 scenario 2: az4 with nodes 7 and 8 rotates pg1's placement; the old code
        // counted node 3 (which holds pg1.2) as an empty pg1.0 and truncated everything.
        let text = six_node_toml("c", "s", 4, &[1, 2, 3, 4, 5, 6]);
        let before = parse(&text);
        let answered = answers_of(&before, 4, 9);
        let grown = parse(&format!(
            "{text}\n[[node]]\nid = 7\naz = \"az4\"\naddr = \"127.0.0.1:7\"\ndata = \"n7\"\n\
             \n[[node]]\nid = 8\naz = \"az4\"\naddr = \"127.0.0.1:8\"\ndata = \"n8\"\n"
        ));
        let error = placed_reports(&grown, &answered, &pgs(4), Epoch(2)).unwrap_err();
        assert_eq!(
            error.to_string().split(':').next().unwrap(),
            "segment pg1.0 is on node 1 but the config places it on node 3"
        );
    }

    #[test]
    fn a_missing_nodes_segment_found_elsewhere_stops_recovery() {
        // I3: node 4 did not answer; its pg0.3 turns up on node 1 (data folders swapped).
        let config = parse(&six_node_toml("c", "s", 4, &[1, 2, 3, 4, 5, 6]));
        let mut answered = answers_of(&config, 1, 9);
        answered.remove(&NodeId(4));
        answered.get_mut(&NodeId(1)).unwrap().reports = vec![report(0, 3, 9)];
        let error = placed_reports(&config, &answered, &pgs(1), Epoch(2)).unwrap_err();
        assert!(matches!(
            error,
            RecoveryDriverError::Misplaced { found_on: 1, .. }
        ));
        assert!(
            error
                .to_string()
                .starts_with("segment pg0.3 is on node 1 but the config places it on node 4")
        );
    }

    #[test]
    fn a_placed_node_holding_nothing_of_a_pg_reports_empty() {
        // X1, V2: a node whose segment was never created (or whose folder was replaced by
        // an empty one) holds nothing: counted as an empty report, as before.
        let config = parse(&six_node_toml("c", "s", 4, &[1, 2, 3, 4, 5, 6]));
        let mut answered = answers_of(&config, 1, 9);
        answered.get_mut(&NodeId(6)).unwrap().reports.clear();
        let reports = placed_reports(&config, &answered, &pgs(1), Epoch(2)).unwrap();
        let empty: Vec<_> = reports.iter().filter(|r| r.scl == Lsn::ZERO).collect();
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].segment.replica, 5);
    }

    #[test]
    fn repairing_segments_and_absent_segments_of_a_late_node_count_as_no_answer() {
        // X11, S20: the safety gap: a segment rebuilt empty (or a late node without the
        // segment) must not count as an empty report.
        let config = parse(&six_node_toml("c", "s", 4, &[1, 2, 3, 4, 5, 6]));
        let mut answered = answers_of(&config, 1, 9);
        let placement = config.placement(PgId(0));
        let rebuilt = answered.get_mut(&placement[3]).unwrap();
        let segment = rebuilt.reports.remove(0).segment;
        rebuilt.repairing.push(segment);
        let late = answered.get_mut(&placement[4]).unwrap();
        late.reports.clear();
        late.absent_may_be_lost = true;
        let reports = placed_reports(&config, &answered, &pgs(1), Epoch(2)).unwrap();
        assert_eq!(reports.len(), 4, "two of six count as no answer");
        assert!(reports.iter().all(|r| r.scl == Lsn(9)), "and none as empty");
        assert!(
            reports
                .iter()
                .all(|r| r.segment.replica != 3 && r.segment.replica != 4)
        );
    }
}
