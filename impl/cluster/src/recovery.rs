//! The recovery driver run at every writer start (X1–X8, E1, E4): the transport around the
//! core's [`RecoverySession`], which decides when to plan and when to open (the simulator
//! drives the same machine). Every node is asked at once, and the driver moves on as soon as
//! the machine has what it needs, so a dead AZ costs nothing but its absence: raise the
//! volume epoch at a write quorum of every PG, gather segment reports until every PG has a
//! read quorum, make the truncation durable at a write quorum of every PG, repair each PG to
//! a write quorum holding its records up to VDL, then open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use sixfold_core::lease::recovery_wait_ms;

use sixfold_core::{
    Epoch, GossipRequest, Lsn, NodeId, NodeStanding, PgId, PlacedAnswer, QuorumConfig,
    RecoveryEvent, RecoveryPlan, RecoverySession, SEGMENTS_PER_PG, SegmentId, SegmentReport,
    TruncationRange, placed_report,
};

use crate::config::ClusterConfig;
use crate::link::{Link, LinkError};
use crate::wire::{ErrorCode, Message};

/// How long one recovery request may wait for its node, in milliseconds.
pub const RECOVERY_CALL_TIMEOUT_MS: u64 = 5_000;
/// One node's reply to a request sent to every node at once.
type NodeReply = (NodeId, Result<Message, LinkError>);

/// How long the epoch poll waits for the last two nodes once the others answered.
const STRAGGLER_MS: u64 = 50;
const QUORUM: QuorumConfig = QuorumConfig::AURORA;
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
    #[error(
        "the volume's genesis needs every node to take its truncation and join; nodes {missing:?} \
         did not (S23); retrying higher"
    )]
    GenesisIncomplete { missing: Vec<u32> },
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
    /// S23: the node's folder, and whether it holds no history and hosts nothing.
    pub incarnation: u64,
    pub blank: bool,
}

impl NodeAnswer {
    /// S23: this answer, as the genesis rule reads it.
    fn standing(&self, node: NodeId) -> NodeStanding {
        NodeStanding {
            node,
            incarnation: self.incarnation,
            blank: self.blank,
            late: self.absent_may_be_lost,
        }
    }
}

/// S23: the answers so far allow a genesis if every node answers, so the attempt waits
/// for all of them (the rule is the machine's, `genesis_possible`).
fn may_be_genesis(answered: &Answers) -> bool {
    let standings: Vec<NodeStanding> = answered
        .iter()
        .map(|(&node, answer)| answer.standing(node))
        .collect();
    sixfold_core::genesis_possible(&standings)
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
            let answer = PlacedAnswer {
                reports: &answer.reports,
                repairing: &answer.repairing,
                absent_may_be_lost: answer.absent_may_be_lost,
                truncations: &answer.truncations,
            };
            placed.extend(placed_report(segment, epoch, answer));
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

    /// Sends one request to each of `nodes` at once; each answer (or failure) arrives on
    /// the receiver as it comes, so the caller moves on without waiting for dead nodes.
    fn ask_all(
        &self,
        nodes: impl IntoIterator<Item = NodeId>,
        build: impl Fn(u64) -> Message + Send + Sync + Clone + 'static,
    ) -> (Receiver<NodeReply>, usize) {
        let (sender, receiver) = channel();
        let mut asked = 0;
        for node in nodes {
            let Some(link) = self.links.get(&node).cloned() else {
                continue;
            };
            let sender = sender.clone();
            let build = build.clone();
            asked += 1;
            std::thread::spawn(move || {
                let reply = link.request(build, timeout());
                let _ = sender.send((node, reply));
            });
        }
        (receiver, asked)
    }

    /// E1: the highest epoch the reachable nodes hold (the new one goes above it), and how
    /// many answered. It waits for every node until all but two answered, then only a
    /// moment more: a higher epoch it misses makes the attempt's `RaiseEpoch` fail, and the
    /// next attempt goes above it (X8).
    pub fn highest_epoch(&self) -> (Epoch, usize) {
        let nodes = self.config.nodes.len();
        let (replies, asked) = self.ask_all(self.links.keys().copied(), |request_id| {
            Message::Status { request_id }
        });
        let mut highest = Epoch(0);
        let mut answered = 0;
        let mut heard = 0;
        let mut deadline = Instant::now() + timeout();
        while heard < asked {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok((_, reply)) = replies.recv_timeout(wait) else {
                break;
            };
            heard += 1;
            if let Ok(Message::StatusReply { epoch, .. }) = reply {
                highest = highest.max(epoch);
                answered += 1;
                if answered + 2 >= nodes {
                    deadline = deadline.min(Instant::now() + Duration::from_millis(STRAGGLER_MS));
                }
            }
        }
        (highest, answered)
    }

    /// One recovery attempt at `proposed` (X1–X5, E1): the session decides; this moves its
    /// messages.
    pub fn run(&self, proposed: Epoch) -> Result<Recovered, RecoveryDriverError> {
        // `raise_and_plan` returns only once the epoch is at a write quorum of every PG.
        let (answered, session, leases_end) = self.raise_and_plan(proposed)?;
        let pgs = session_pgs(&answered);
        let plan = session.plan().cloned().expect("planned");
        tracing::info!(
            epoch = plan.epoch.0,
            vcl = plan.vcl.0,
            vdl = plan.vdl.0,
            pgs = pgs.len(),
            answered = answered.len(),
            "recovery planned (X3, X4)"
        );
        let mut session = session;
        let truncated = self.truncate_all(&mut session, &plan, &answered, &pgs)?;
        self.check_write_quorum(&pgs, &truncated, QUORUM)?;
        self.join_genesis(&mut session)?;
        let recovered = match drain_open(&mut session) {
            Some(recovered) => recovered,
            None => self.repair_lagging(&mut session, &plan, &truncated)?,
        };
        wait_out_leases(leases_end);
        Ok(recovered)
    }

    /// E1, E4, X1, X2: `RaiseEpoch` to every node at once. Once all but two nodes answered
    /// (so every written PG is known: it has four holders), the answers so far make a
    /// session; it plans as soon as every PG has a read quorum of reports and the epoch is
    /// at a write quorum of every PG. Returns the
    /// answers, the planned session and when the old writer's leases have all run out (R10).
    fn raise_and_plan(
        &self,
        proposed: Epoch,
    ) -> Result<(Answers, RecoverySession, Instant), RecoveryDriverError> {
        let nodes = self.config.nodes.len();
        let (replies, asked) = self.ask_all(self.links.keys().copied(), move |request_id| {
            Message::RaiseEpoch {
                request_id,
                epoch: proposed,
            }
        });
        let mut answered = Answers::new();
        let mut leases_end = Instant::now();
        let deadline = Instant::now() + timeout();
        let mut heard = 0;
        let mut last_error = None;
        while heard < asked {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (node, reply) = match replies.recv_timeout(wait) {
                Ok(answer) => answer,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            };
            heard += 1;
            let Some(answer) = take_epoch_answer(node, proposed, reply, &mut leases_end)? else {
                continue;
            };
            answered.insert(node, answer);
            if answered.len() + 2 < nodes || (answered.len() < nodes && may_be_genesis(&answered)) {
                continue;
            }
            let nodes_answered: BTreeSet<NodeId> = answered.keys().copied().collect();
            let epoch_quorum =
                self.check_write_quorum(&session_pgs(&answered), &nodes_answered, QUORUM);
            match self.session_of(&answered, proposed) {
                Ok(session) if session.has_read_quorum() && epoch_quorum.is_ok() => {
                    return Ok((answered, session, leases_end));
                }
                Ok(_) if epoch_quorum.is_err() => last_error = epoch_quorum.err(),
                Ok(session) => last_error = session.missing_quorum().map(Into::into),
                Err(error @ RecoveryDriverError::Misplaced { .. }) => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        if answered.len() + 2 >= nodes && may_be_genesis(&answered) {
            // S23: no genesis without every node; plan as an ordinary recovery.
            let nodes_answered: BTreeSet<NodeId> = answered.keys().copied().collect();
            let epoch_quorum =
                self.check_write_quorum(&session_pgs(&answered), &nodes_answered, QUORUM);
            if let Ok(session) = self.session_of(&answered, proposed)
                && session.has_read_quorum()
                && epoch_quorum.is_ok()
            {
                return Ok((answered, session, leases_end));
            }
        }
        if answered.len() + 2 < nodes {
            return Err(RecoveryDriverError::TooFewNodes {
                reachable: answered.len(),
                nodes,
            });
        }
        Err(last_error.unwrap_or(RecoveryDriverError::TooFewNodes {
            reachable: answered.len(),
            nodes,
        }))
    }

    /// X1, X11, I3, S23: a session fed the standings and placed reports of these answers.
    fn session_of(
        &self,
        answered: &Answers,
        proposed: Epoch,
    ) -> Result<RecoverySession, RecoveryDriverError> {
        let pgs = session_pgs(answered);
        let reports = placed_reports(self.config, answered, &pgs, proposed)?;
        let nodes = self.config.nodes.iter().map(|node| node.id).collect();
        let mut session = RecoverySession::with_genesis(QUORUM, self.lal, proposed, pgs, nodes);
        for (&node, answer) in answered {
            session.handle_standing(answer.standing(node))?;
        }
        for report in reports {
            session.handle_report(report)?;
        }
        session.plan_if_ready()?;
        if let Some(seen) = session.fenced_by() {
            return Err(RecoveryDriverError::EpochTaken { proposed, seen });
        }
        Ok(session)
    }

    /// X4, X5: the plan's history to every node at once (a node whose `RaiseEpoch` answer
    /// came after the plan takes its epoch from it too); each node's SCLs after it (and an
    /// SCL of 0 for a placed segment it does not host: the node keeps the history for it,
    /// V2) are the session's truncation acknowledgements. It waits for every node that
    /// answered `RaiseEpoch`, and for the others only until the session opens. Returns the
    /// nodes that took it.
    fn truncate_all(
        &self,
        session: &mut RecoverySession,
        plan: &RecoveryPlan,
        answered: &Answers,
        pgs: &BTreeSet<PgId>,
    ) -> Result<BTreeSet<NodeId>, RecoveryDriverError> {
        let history = plan.history.clone();
        let (replies, asked) = self.ask_all(self.links.keys().copied(), move |request_id| {
            Message::Truncate {
                request_id,
                history: history.clone(),
            }
        });
        let deadline = Instant::now() + timeout();
        let mut truncated = BTreeSet::new();
        let mut heard = BTreeSet::new();
        for _ in 0..asked {
            let opened = session.stage() == sixfold_core::RecoveryStage::Open;
            if opened && answered.keys().all(|node| heard.contains(node)) {
                break;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok((node, reply)) = replies.recv_timeout(wait) else {
                break;
            };
            heard.insert(node);
            let Ok(Message::StatusReply { segments, .. }) = reply else {
                continue;
            };
            truncated.insert(node);
            session.handle_node_truncated(node);
            for &pg in pgs {
                for (replica, placed) in self.config.placement(pg).into_iter().enumerate() {
                    let segment = SegmentId {
                        pg,
                        replica: replica as u8,
                    };
                    if placed != node {
                        continue;
                    }
                    let scl = segments
                        .iter()
                        .find(|s| s.segment == segment)
                        .map_or(Lsn::ZERO, |s| s.scl);
                    session.handle_truncate_ack(segment, scl);
                }
            }
        }
        Ok(truncated)
    }

    /// S23: a genesis whose truncation every node took asks every node to join it, and
    /// opens once every node confirmed. A node that did not stops the attempt (the next
    /// goes higher).
    fn join_genesis(&self, session: &mut RecoverySession) -> Result<(), RecoveryDriverError> {
        let Some(incarnations) = session.genesis().cloned() else {
            return Ok(());
        };
        let (untruncated, _) = session.genesis_waiting();
        if untruncated.is_empty() {
            let asked: Vec<(NodeId, Receiver<NodeReply>)> = incarnations
                .iter()
                .map(|(&node, &incarnation)| {
                    let build = move |request_id| Message::JoinGenesis {
                        request_id,
                        incarnation,
                    };
                    (node, self.ask_all([node], build).0)
                })
                .collect();
            let deadline = Instant::now() + timeout();
            for (node, replies) in asked {
                let wait = deadline.saturating_duration_since(Instant::now());
                match replies.recv_timeout(wait) {
                    Ok((_, Ok(Message::StatusReply { .. }))) => session.handle_genesis_joined(node),
                    Ok((_, reply)) => {
                        tracing::warn!(node = node.0, ?reply, "S23: node did not join the genesis")
                    }
                    Err(_) => tracing::warn!(node = node.0, "S23: no answer to the genesis join"),
                }
            }
        }
        if session.stage() == sixfold_core::RecoveryStage::Open {
            tracing::info!(
                nodes = incarnations.len(),
                "S23: the volume's genesis: every node joined"
            );
            return Ok(());
        }
        let (untruncated, unjoined) = session.genesis_waiting();
        let missing = untruncated.union(&unjoined).map(|node| node.0).collect();
        Err(RecoveryDriverError::GenesisIncomplete { missing })
    }

    /// X5, Q5: the PGs still short of a write quorum at their target get their records
    /// copied through the writer; each new SCL is a truncation acknowledgement.
    fn repair_lagging(
        &self,
        session: &mut RecoverySession,
        plan: &RecoveryPlan,
        truncated: &BTreeSet<NodeId>,
    ) -> Result<Recovered, RecoveryDriverError> {
        let mut scls = session.scls().clone();
        for (pg, (target, _)) in session.lagging_pgs() {
            self.repair(pg, target, plan, truncated, &mut scls)?;
        }
        for (&segment, &scl) in &scls {
            session.handle_truncate_ack(segment, scl);
        }
        drain_open(session).ok_or_else(|| {
            let (pg, (target, have)) = session
                .lagging_pgs()
                .into_iter()
                .next()
                .unwrap_or((PgId(0), (Lsn::ZERO, 0)));
            RecoveryDriverError::RepairStalled {
                pg: pg.0,
                have,
                target,
            }
        })
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

/// X11: the PGs to recover: every PG an answering node reports or lists as repairing (a
/// PG only repairing segments know of is still one to recover, and to refuse while fewer
/// than a read quorum of its segments can answer).
fn session_pgs(answered: &Answers) -> BTreeSet<PgId> {
    answered
        .values()
        .flat_map(|answer| {
            let reported = answer.reports.iter().map(|r| r.segment.pg);
            reported.chain(answer.repairing.iter().map(|s| s.pg))
        })
        .collect()
}

/// E1, R10, X11: one node's reply to `RaiseEpoch`: its answer, nothing (it did not take the
/// epoch: down, or an unexpected reply), or the end of the attempt (a higher epoch).
fn take_epoch_answer(
    node: NodeId,
    proposed: Epoch,
    reply: Result<Message, LinkError>,
    leases_end: &mut Instant,
) -> Result<Option<NodeAnswer>, RecoveryDriverError> {
    match reply {
        Ok(Message::Reports {
            reports,
            truncations,
            lease_remaining_ms,
            repairing,
            absent_may_be_lost,
            incarnation,
            blank,
            ..
        }) => {
            let wait = recovery_wait_ms(u64::from(lease_remaining_ms));
            *leases_end = (*leases_end).max(Instant::now() + Duration::from_millis(wait));
            if !repairing.is_empty() || absent_may_be_lost {
                tracing::warn!(
                    node = node.0,
                    repairing = repairing.len(),
                    absent_may_be_lost,
                    "X11: segments that may have lost records count as no answer"
                );
            }
            Ok(Some(NodeAnswer {
                reports,
                truncations,
                repairing,
                absent_may_be_lost,
                incarnation,
                blank,
            }))
        }
        Ok(Message::Error {
            code: ErrorCode::StaleEpoch,
            epoch,
            ..
        }) => Err(RecoveryDriverError::EpochTaken {
            proposed,
            seen: epoch,
        }),
        Ok(other) => {
            tracing::warn!(node = node.0, reply = ?other.request_id(), "unexpected reply to RaiseEpoch");
            Ok(None)
        }
        Err(error) => {
            tracing::info!(node = node.0, %error, "node did not take the new epoch");
            Ok(None)
        }
    }
}

/// X5: the session's plan and SCLs once it opened.
fn drain_open(session: &mut RecoverySession) -> Option<Recovered> {
    std::iter::from_fn(|| session.poll_event()).find_map(|event| match event {
        RecoveryEvent::Open { plan, scls } => Some(Recovered { plan, scls }),
        _ => None,
    })
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
