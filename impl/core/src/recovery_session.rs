//! One recovery attempt as a machine (X1–X5, X8, E1): segment reports in, the plan out,
//! truncation acknowledgements in, "open" out. No I/O and no clock: the production driver
//! (`impl/cluster`, real sockets, every node asked at once) and the simulator
//! (`conformance/src/sim`) feed it the same inputs and act on the same events, so the rule
//! that decides when recovery may plan and when it may open is written once, here.
//!
//! The driver asks every segment to raise its epoch and report (X1) and feeds each report
//! to [`RecoverySession::handle_report`]; as soon as every PG has a read quorum (X2) the
//! session plans (X3, X4) and asks, through [`RecoveryEvent::Truncate`], for the plan's
//! truncation history at every segment (X5). Each segment's SCL after the truncation comes
//! back through [`RecoverySession::handle_truncate_ack`]; once a write quorum of every PG
//! holds the truncation and its records up to the PG's last LSN ≤ VDL (X5, Q5) the session
//! emits [`RecoveryEvent::Open`]. A report of a higher epoch fences the attempt (E1, X8:
//! the driver starts again higher). [`RecoverySession::resend`] tells the driver what to
//! send again on its re-send timer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::event::ProtocolEvent;
use crate::quorum::QuorumConfig;
use crate::recovery::{RecoveryError, RecoveryPlan, RecoveryPlanner};
use crate::segment::SegmentReport;
use crate::types::{Epoch, Lsn, NodeId, PgId, SegmentId, TruncationRange};

/// What the session asks its driver to do, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryEvent {
    /// A protocol event of the plan (for traces, spec/trace.md).
    Protocol(ProtocolEvent),
    /// X4, X5: make this truncation history durable at every segment and report each
    /// segment's SCL afterwards.
    Truncate { history: Vec<TruncationRange> },
    /// X5: a write quorum of every PG holds the truncation and its records up to VDL; the
    /// writer may open with this plan and these SCLs.
    Open {
        plan: RecoveryPlan,
        scls: BTreeMap<SegmentId, Lsn>,
    },
    /// E1, X8: a segment holds a higher epoch; this attempt is over.
    Fenced { seen: Epoch },
    /// X8: a node holds this attempt's own epoch but refused to answer it again (it raised
    /// it for this attempt and lost the answer, say by crashing): this attempt is over and
    /// the writer recovers again above `above`.
    Restart { above: Epoch },
    /// S23: the genesis counted this late node's absent segment as an empty report (for
    /// the driver's trace: the report it took).
    CountedEmpty { report: SegmentReport },
    /// S23: this recovery is the volume's genesis and every node took its truncation:
    /// tell each node the incarnation of the answer counted for it, and report each
    /// confirmation through [`RecoverySession::handle_genesis_joined`].
    JoinGenesis { incarnations: BTreeMap<NodeId, u64> },
}

/// S23: what one node's answer to `RaiseEpoch` says of the node as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStanding {
    pub node: NodeId,
    /// The node's folder, drawn when it was created (0: a folder from before S23, which
    /// can never join a genesis).
    pub incarnation: u64,
    /// The node hosts no segment and its metadata names none it ever hosted (a
    /// truncation history does not count: a recovery that never wrote leaves one).
    pub blank: bool,
    /// The node is late (S19): a placed segment it does not host may be one it lost.
    pub late: bool,
}

/// S23: whether these standings allow a genesis once every node of the volume has given
/// one: all blank, each from a folder with an incarnation, and at least one late node
/// (without one there is nothing to fix). A driver waiting for answers asks it too.
pub fn genesis_possible<'a>(standings: impl IntoIterator<Item = &'a NodeStanding>) -> bool {
    let mut some_late = false;
    for standing in standings {
        if !standing.blank || standing.incarnation == 0 {
            return false;
        }
        some_late |= standing.late;
    }
    some_late
}

/// S23: a genesis in progress: the incarnations counted, the nodes that took the
/// truncation, and the nodes that confirmed they joined.
#[derive(Clone, Debug, Default)]
struct Genesis {
    incarnations: BTreeMap<NodeId, u64>,
    truncated: BTreeSet<NodeId>,
    joined: BTreeSet<NodeId>,
    asked_to_join: bool,
}

/// What to send again on the driver's re-send timer (lost messages, X1, X5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryResend {
    /// X1: ask every segment not yet reported to raise its epoch and report.
    RaiseEpoch { epoch: Epoch },
    /// X5: send the history to every segment whose SCL does not yet meet its PG's target.
    Truncate {
        history: Vec<TruncationRange>,
        waiting: Vec<SegmentId>,
    },
    /// Open, fenced: nothing.
    Nothing,
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryStage {
    /// X1, X2: gathering reports.
    Reporting,
    /// X5: planned; waiting for truncation acknowledgements.
    Truncating,
    Open,
    Fenced,
}

/// One recovery attempt at one proposed epoch.
#[derive(Clone, Debug)]
pub struct RecoverySession {
    quorum: QuorumConfig,
    planner: RecoveryPlanner,
    pgs: BTreeSet<PgId>,
    plan: Option<RecoveryPlan>,
    /// SCL of each segment after it acknowledged the truncation (X5).
    scls: BTreeMap<SegmentId, Lsn>,
    stage: RecoveryStage,
    fenced_by: Option<Epoch>,
    events: VecDeque<RecoveryEvent>,
    /// S23: every node of the volume (empty: this session never decides a genesis).
    volume_nodes: BTreeSet<NodeId>,
    /// S23: the first standing each node gave.
    standings: BTreeMap<NodeId, NodeStanding>,
    /// S23: placed segments a late node answered for without a report (X11: no answer,
    /// unless this attempt is the genesis).
    absent: BTreeSet<SegmentId>,
    genesis: Option<Genesis>,
}

impl RecoverySession {
    /// E1, E4: an attempt at `epoch` for the PGs in `pgs`; `lal` bounds what an earlier
    /// writer may have allocated (X4).
    /// A volume with no PG written yet (`pgs` empty) has nothing to report: the session
    /// plans at once (VDL 0).
    pub fn new(quorum: QuorumConfig, lal: u64, epoch: Epoch, pgs: BTreeSet<PgId>) -> Self {
        let mut session = Self::with_genesis(quorum, lal, epoch, pgs, BTreeSet::new());
        if session.pgs.is_empty() {
            session
                .decide()
                .expect("X2: no PG needs a read quorum, so the plan cannot be refused");
        }
        session
    }

    /// S23: an attempt that may be the volume's genesis, so it waits for node standings
    /// ([`RecoverySession::handle_standing`]) before it plans even when `pgs` is empty;
    /// the driver calls [`RecoverySession::plan_if_ready`] once it fed what it has.
    pub fn with_genesis(
        quorum: QuorumConfig,
        lal: u64,
        epoch: Epoch,
        pgs: BTreeSet<PgId>,
        volume_nodes: BTreeSet<NodeId>,
    ) -> Self {
        RecoverySession {
            quorum,
            planner: RecoveryPlanner::new(quorum, lal, epoch, pgs.clone()),
            pgs,
            plan: None,
            scls: BTreeMap::new(),
            stage: RecoveryStage::Reporting,
            fenced_by: None,
            events: VecDeque::new(),
            volume_nodes,
            standings: BTreeMap::new(),
            absent: BTreeSet::new(),
            genesis: None,
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.planner.epoch()
    }

    /// S23: the incarnations counted, if this attempt is the volume's genesis.
    pub fn genesis(&self) -> Option<&BTreeMap<NodeId, u64>> {
        self.genesis.as_ref().map(|g| &g.incarnations)
    }

    /// S23: genesis nodes that have not yet taken the truncation, and those that have not
    /// yet confirmed they joined, for the driver's re-send timer.
    pub fn genesis_waiting(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let Some(genesis) = &self.genesis else {
            return (BTreeSet::new(), BTreeSet::new());
        };
        let nodes = genesis.incarnations.keys().copied();
        let untruncated = nodes
            .clone()
            .filter(|n| !genesis.truncated.contains(n))
            .collect();
        let unjoined = nodes.filter(|n| !genesis.joined.contains(n)).collect();
        (untruncated, unjoined)
    }

    /// S23: one node's standing from its `RaiseEpoch` answer at this attempt's epoch. When
    /// every node of the volume answered blank and one of them is late, this attempt is the
    /// genesis: every absent segment a late node answered for counts as an empty report.
    pub fn handle_standing(&mut self, standing: NodeStanding) -> Result<(), RecoveryError> {
        if self.stage == RecoveryStage::Fenced
            || self.genesis.is_some()
            || !self.volume_nodes.contains(&standing.node)
        {
            return Ok(());
        }
        self.standings.entry(standing.node).or_insert(standing);
        let everyone = self.standings.len() == self.volume_nodes.len();
        if !everyone
            || !genesis_possible(self.standings.values())
            || self.stage != RecoveryStage::Reporting
        {
            return Ok(());
        }
        self.genesis = Some(Genesis {
            incarnations: self
                .standings
                .values()
                .map(|s| (s.node, s.incarnation))
                .collect(),
            ..Genesis::default()
        });
        for segment in std::mem::take(&mut self.absent) {
            self.count_empty(segment)?;
        }
        self.plan_if_ready()
    }

    /// X11, S23: a node answered this attempt's `RaiseEpoch` without a report of `segment`,
    /// placed on it, because it may have lost it (a late node). No answer, unless this
    /// attempt is the genesis.
    pub fn handle_absent(&mut self, segment: SegmentId) -> Result<(), RecoveryError> {
        if self.stage != RecoveryStage::Reporting || self.planner.has_report(segment) {
            return Ok(());
        }
        if self.genesis.is_none() {
            self.absent.insert(segment);
            return Ok(());
        }
        self.count_empty(segment)?;
        self.plan_if_ready()
    }

    /// S23: the genesis counts an absent segment as an empty report.
    fn count_empty(&mut self, segment: SegmentId) -> Result<(), RecoveryError> {
        if self.planner.has_report(segment) || !self.pgs.contains(&segment.pg) {
            return Ok(());
        }
        let report = SegmentReport::empty(segment, self.epoch());
        self.planner.handle_report(report.clone())?;
        self.events
            .push_back(RecoveryEvent::CountedEmpty { report });
        Ok(())
    }

    /// X2: plans if every PG has a read quorum of reports (at once when there is no PG).
    pub fn plan_if_ready(&mut self) -> Result<(), RecoveryError> {
        if self.stage == RecoveryStage::Reporting && self.planner.has_read_quorum() {
            self.decide()?;
        }
        self.assert_invariants();
        Ok(())
    }

    /// S23: `node` took this attempt's truncation (any of its segments acknowledged it).
    pub fn handle_node_truncated(&mut self, node: NodeId) {
        if self.stage != RecoveryStage::Truncating {
            return;
        }
        let Some(genesis) = &mut self.genesis else {
            return;
        };
        genesis.truncated.insert(node);
        if !genesis.asked_to_join && genesis.truncated.len() == genesis.incarnations.len() {
            genesis.asked_to_join = true;
            self.events.push_back(RecoveryEvent::JoinGenesis {
                incarnations: genesis.incarnations.clone(),
            });
        }
        self.open_if_ready();
    }

    /// S23: `node` confirmed it joined the genesis (durably).
    pub fn handle_genesis_joined(&mut self, node: NodeId) {
        if self.stage != RecoveryStage::Truncating {
            return;
        }
        let Some(genesis) = &mut self.genesis else {
            return;
        };
        if genesis.asked_to_join {
            genesis.joined.insert(node);
        }
        self.open_if_ready();
    }

    pub fn stage(&self) -> RecoveryStage {
        self.stage
    }

    pub fn plan(&self) -> Option<&RecoveryPlan> {
        self.plan.as_ref()
    }

    /// E1: the higher epoch a segment reported, if one fenced this attempt.
    pub fn fenced_by(&self) -> Option<Epoch> {
        self.fenced_by
    }

    /// X5: the SCL each segment reported after taking the truncation.
    pub fn scls(&self) -> &BTreeMap<SegmentId, Lsn> {
        &self.scls
    }

    /// X1, X2: one segment's report. The session plans as soon as every PG has a read
    /// quorum; reports after that change nothing (the plan is decided). A report of a
    /// higher epoch fences the attempt (E1).
    pub fn handle_report(&mut self, report: SegmentReport) -> Result<(), RecoveryError> {
        if self.stage != RecoveryStage::Reporting {
            return Ok(());
        }
        match self.planner.handle_report(report) {
            Ok(()) => {}
            Err(RecoveryError::EpochTooLow { seen, .. }) => {
                self.stage = RecoveryStage::Fenced;
                self.fenced_by = Some(seen);
                self.events.push_back(RecoveryEvent::Fenced { seen });
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        if self.planner.has_read_quorum() {
            self.decide()?;
        }
        self.assert_invariants();
        Ok(())
    }

    /// E1, X8: a node refused a request of this attempt because it holds `seen`. A higher
    /// epoch fences the attempt; this attempt's own epoch, while gathering reports, means
    /// the node raised it for us and will not answer again, so the attempt restarts above.
    pub fn handle_refused(&mut self, seen: Epoch) {
        if matches!(self.stage, RecoveryStage::Fenced | RecoveryStage::Open) {
            return;
        }
        if seen > self.epoch() {
            self.stage = RecoveryStage::Fenced;
            self.fenced_by = Some(seen);
            self.events.push_back(RecoveryEvent::Fenced { seen });
        } else if seen == self.epoch() && self.stage == RecoveryStage::Reporting {
            self.stage = RecoveryStage::Fenced;
            self.fenced_by = Some(seen);
            self.events
                .push_back(RecoveryEvent::Restart { above: seen });
        }
    }

    /// X2: whether every PG has a read quorum of reports (so the session has planned).
    pub fn has_read_quorum(&self) -> bool {
        self.planner.has_read_quorum()
    }

    /// X2: why the session cannot plan yet, for the driver's error when it gives up.
    pub fn missing_quorum(&self) -> Option<RecoveryError> {
        self.planner.missing_quorum()
    }

    fn decide(&mut self) -> Result<(), RecoveryError> {
        let (plan, events) = self.planner.plan()?;
        self.events
            .extend(events.into_iter().map(RecoveryEvent::Protocol));
        self.events.push_back(RecoveryEvent::Truncate {
            history: plan.history.clone(),
        });
        self.plan = Some(plan);
        self.stage = RecoveryStage::Truncating;
        self.open_if_ready();
        Ok(())
    }

    /// X5: `segment` holds the plan's truncation and has SCL `scl`. Opens once a write
    /// quorum of every PG has SCL at or past the PG's last LSN ≤ VDL. An ack before the
    /// plan, or from an earlier one, is ignored (the driver sends it again).
    pub fn handle_truncate_ack(&mut self, segment: SegmentId, scl: Lsn) {
        if self.stage != RecoveryStage::Truncating {
            return;
        }
        let entry = self.scls.entry(segment).or_default();
        *entry = (*entry).max(scl);
        self.open_if_ready();
        self.assert_invariants();
    }

    /// X5: open once no PG lacks a write quorum at its target (at once when there is no PG).
    fn open_if_ready(&mut self) {
        if self.stage != RecoveryStage::Truncating || !self.lagging_pgs().is_empty() {
            return;
        }
        // S23: a genesis opens only once every node joined it, so no segment is hosted by
        // a node that is still late.
        if let Some(genesis) = &self.genesis
            && genesis.joined.len() < genesis.incarnations.len()
        {
            return;
        }
        let plan = self.plan.clone().expect("truncating has a plan");
        self.events.push_back(RecoveryEvent::Open {
            plan,
            scls: self.scls.clone(),
        });
        self.stage = RecoveryStage::Open;
    }

    /// X5: each PG still without a write quorum at or past its target: the target and the
    /// segments that acknowledged the truncation but lag behind it (the driver may copy
    /// records to them, or wait for gossip).
    pub fn lagging_pgs(&self) -> BTreeMap<PgId, (Lsn, usize)> {
        let Some(plan) = &self.plan else {
            return BTreeMap::new();
        };
        self.pgs
            .iter()
            .filter_map(|&pg| {
                let target = plan.last_lsn_by_pg.get(&pg).copied().unwrap_or(Lsn::ZERO);
                let have = self
                    .scls
                    .iter()
                    .filter(|&(s, &scl)| s.pg == pg && scl >= target)
                    .count();
                (have < self.quorum.write_quorum()).then_some((pg, (target, have)))
            })
            .collect()
    }

    /// What the driver sends again on its re-send timer.
    pub fn resend(&self) -> RecoveryResend {
        match (self.stage, &self.plan) {
            (RecoveryStage::Reporting, _) => RecoveryResend::RaiseEpoch {
                epoch: self.epoch(),
            },
            (RecoveryStage::Truncating, Some(plan)) => {
                let waiting = self
                    .pgs
                    .iter()
                    .flat_map(|&pg| {
                        let target = plan.last_lsn_by_pg.get(&pg).copied().unwrap_or(Lsn::ZERO);
                        (0..crate::types::SEGMENTS_PER_PG as u8)
                            .map(move |replica| (SegmentId { pg, replica }, target))
                    })
                    .filter(|(segment, target)| {
                        self.scls.get(segment).is_none_or(|scl| scl < target)
                    })
                    .map(|(segment, _)| segment)
                    .collect();
                RecoveryResend::Truncate {
                    history: plan.history.clone(),
                    waiting,
                }
            }
            _ => RecoveryResend::Nothing,
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<RecoveryEvent> {
        self.events.pop_front()
    }

    /// The session's invariants (#13 item 7): a plan exactly when past reporting; the plan's
    /// VDL ≤ VCL and its truncation starts at VDL, of this epoch (X4); open only with a
    /// write quorum of every PG at its target (X5).
    pub fn assert_invariants(&self) {
        assert_eq!(
            self.plan.is_some(),
            matches!(self.stage, RecoveryStage::Truncating | RecoveryStage::Open),
            "a plan exactly when past reporting"
        );
        if let Some(plan) = &self.plan {
            assert!(
                plan.vdl <= plan.vcl,
                "X4: VDL {} above VCL {}",
                plan.vdl,
                plan.vcl
            );
            assert_eq!(
                plan.truncation.lsn_begin, plan.vdl,
                "X4: truncation starts at VDL"
            );
            assert_eq!(
                plan.truncation.epoch,
                self.epoch(),
                "X4: the range is this epoch's"
            );
        }
        if self.stage == RecoveryStage::Open {
            assert!(
                self.lagging_pgs().is_empty(),
                "X5: open without a write quorum"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(replica: u8, held: &[(u64, bool)], hint: u64) -> SegmentReport {
        SegmentReport {
            segment: SegmentId {
                pg: PgId(0),
                replica,
            },
            epoch: Epoch(1),
            scl: held.last().map_or(Lsn(hint), |&(lsn, _)| Lsn(lsn)),
            vdl_hint: Lsn(hint),
            tip_at_hint: Lsn(hint),
            held: held
                .iter()
                .map(|&(lsn, cpl)| (Lsn(lsn), cpl, Epoch(1)))
                .collect(),
            truncations: Vec::new(),
        }
    }

    fn session() -> RecoverySession {
        RecoverySession::new(
            QuorumConfig::AURORA,
            10,
            Epoch(2),
            BTreeSet::from([PgId(0)]),
        )
    }

    fn segment(replica: u8) -> SegmentId {
        SegmentId {
            pg: PgId(0),
            replica,
        }
    }

    #[test]
    fn plans_at_a_read_quorum_and_opens_at_a_write_quorum() {
        // X1, X2, X5
        let mut session = session();
        session
            .handle_report(report(0, &[(1, false), (2, true)], 0))
            .unwrap();
        session.handle_report(report(1, &[(1, false)], 0)).unwrap();
        assert_eq!(session.stage(), RecoveryStage::Reporting);
        assert_eq!(
            session.resend(),
            RecoveryResend::RaiseEpoch { epoch: Epoch(2) }
        );
        session.handle_report(report(2, &[], 0)).unwrap();
        assert_eq!(session.stage(), RecoveryStage::Truncating);
        let mut truncate = None;
        while let Some(event) = session.poll_event() {
            if let RecoveryEvent::Truncate { history } = event {
                truncate = Some(history);
            }
        }
        let history = truncate.expect("X5: truncation asked");
        assert_eq!(history.last().unwrap().lsn_begin, Lsn(2), "VDL 2");
        // A fourth report changes nothing: the plan is decided.
        session
            .handle_report(report(3, &[(1, false), (2, true), (3, true)], 0))
            .unwrap();
        assert_eq!(session.plan().unwrap().vdl, Lsn(2));
        for replica in 0..3 {
            session.handle_truncate_ack(segment(replica), Lsn(2));
        }
        session.handle_truncate_ack(segment(4), Lsn(1));
        assert_eq!(session.lagging_pgs()[&PgId(0)], (Lsn(2), 3));
        match session.resend() {
            RecoveryResend::Truncate { waiting, .. } => {
                assert_eq!(waiting, vec![segment(3), segment(4), segment(5)])
            }
            other => panic!("{other:?}"),
        }
        session.handle_truncate_ack(segment(3), Lsn(2));
        assert_eq!(session.stage(), RecoveryStage::Open);
        assert!(matches!(
            session.poll_event(),
            Some(RecoveryEvent::Open { plan, scls }) if plan.vdl == Lsn(2) && scls.len() == 5
        ));
        assert_eq!(session.resend(), RecoveryResend::Nothing);
    }

    #[test]
    fn a_volume_with_no_pg_plans_and_opens_at_once() {
        // X2, X5: nothing to report and nothing to repair.
        let mut session = RecoverySession::new(QuorumConfig::AURORA, 10, Epoch(1), BTreeSet::new());
        assert_eq!(session.stage(), RecoveryStage::Open);
        let events: Vec<_> = std::iter::from_fn(|| session.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RecoveryEvent::Truncate { .. }))
        );
        assert!(
            matches!(events.last(), Some(RecoveryEvent::Open { plan, .. }) if plan.vdl == Lsn(0))
        );
    }

    #[test]
    fn a_higher_epoch_fences_the_attempt() {
        // E1, X8
        let mut session = session();
        let mut newer = report(0, &[], 0);
        newer.epoch = Epoch(3);
        session.handle_report(newer).unwrap();
        assert_eq!(session.stage(), RecoveryStage::Fenced);
        assert_eq!(
            session.poll_event(),
            Some(RecoveryEvent::Fenced { seen: Epoch(3) })
        );
        session.handle_truncate_ack(segment(0), Lsn(9));
        assert_eq!(session.poll_event(), None);
    }

    fn genesis_session(pgs: &[u32]) -> RecoverySession {
        RecoverySession::with_genesis(
            QuorumConfig::AURORA,
            10,
            Epoch(3),
            pgs.iter().map(|&pg| PgId(pg)).collect(),
            (1..=6).map(NodeId).collect(),
        )
    }

    /// Node `n` holds replica `n - 1`; node 1 is with the volume, the others are late.
    fn standing(node: u32, blank: bool) -> NodeStanding {
        NodeStanding {
            node: NodeId(node),
            incarnation: 100 + u64::from(node),
            blank,
            late: node != 1,
        }
    }

    fn events(session: &mut RecoverySession) -> Vec<RecoveryEvent> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    /// Node `node`'s answer: its standing, and for each PG an empty report (node 1, with
    /// the volume) or an absent segment (a late node, X11).
    fn answer(session: &mut RecoverySession, node: u32, blank: bool, pgs: &[u32]) {
        session.handle_standing(standing(node, blank)).unwrap();
        for &pg in pgs {
            let segment = SegmentId {
                pg: PgId(pg),
                replica: (node - 1) as u8,
            };
            if node == 1 {
                session
                    .handle_report(SegmentReport::empty(segment, Epoch(3)))
                    .unwrap();
            } else {
                session.handle_absent(segment).unwrap();
            }
        }
    }

    #[test]
    fn six_blank_nodes_make_a_genesis_that_opens_only_once_every_node_joined() {
        // S23: five late nodes say "may be lost" (X11: no answer), one never wrote; six
        // blank standings count the absent segments as empty, plan at VDL 0, and the open
        // waits for every node's truncation and join.
        let mut session = genesis_session(&[0, 1]);
        for node in 1..=5 {
            answer(&mut session, node, true, &[0, 1]);
            assert_eq!(
                session.stage(),
                RecoveryStage::Reporting,
                "five are not all"
            );
        }
        answer(&mut session, 6, true, &[0, 1]);
        assert_eq!(session.stage(), RecoveryStage::Truncating);
        assert_eq!(session.plan().unwrap().vdl, Lsn::ZERO);
        assert_eq!(session.genesis().unwrap().get(&NodeId(4)), Some(&104));
        let counted = events(&mut session)
            .into_iter()
            .filter(|e| matches!(e, RecoveryEvent::CountedEmpty { .. }))
            .count();
        // Nodes 2 to 5's absent segments: node 6's standing made the genesis, whose read
        // quorums were then whole, so the plan came before node 6's segments.
        assert_eq!(
            counted, 8,
            "the late nodes' absent segments, and only those"
        );
        // A write quorum of every PG takes the truncation: not yet open (S23).
        for replica in 0..6 {
            session.handle_truncate_ack(segment(replica), Lsn::ZERO);
            let other = SegmentId {
                pg: PgId(1),
                replica,
            };
            session.handle_truncate_ack(other, Lsn::ZERO);
        }
        for node in 1..=5 {
            session.handle_node_truncated(NodeId(node));
        }
        let asked = |e: &RecoveryEvent| matches!(e, RecoveryEvent::JoinGenesis { incarnations } if incarnations.len() == 6);
        assert!(!events(&mut session).iter().any(asked));
        session.handle_genesis_joined(NodeId(1));
        session.handle_node_truncated(NodeId(6));
        assert!(events(&mut session).iter().any(asked));
        for node in 1..=5 {
            session.handle_genesis_joined(NodeId(node));
        }
        assert_eq!(
            session.stage(),
            RecoveryStage::Truncating,
            "node 6 has not joined"
        );
        session.handle_genesis_joined(NodeId(6));
        assert_eq!(session.stage(), RecoveryStage::Open);
    }

    #[test]
    fn a_node_with_a_past_an_unknown_folder_or_no_late_node_is_no_genesis() {
        // S23: a node hosting a segment proves the volume may have had a life, a folder
        // from before incarnations cannot join, and without a late node there is nothing
        // to fix; the absent segments stay no answer (X11).
        let unknown = NodeStanding {
            incarnation: 0,
            ..standing(3, true)
        };
        let not_late = NodeStanding {
            late: false,
            ..standing(3, true)
        };
        for (odd_one, all_others_late) in [
            (standing(3, false), true),
            (unknown, true),
            (not_late, false),
        ] {
            let mut session = genesis_session(&[0]);
            for node in [1, 2, 4, 5, 6] {
                let mut standing = standing(node, true);
                standing.late &= all_others_late;
                session.handle_standing(standing).unwrap();
                let replica = (node - 1) as u8;
                session.handle_absent(segment(replica)).unwrap();
            }
            session.handle_standing(odd_one).unwrap();
            assert!(session.genesis().is_none(), "{odd_one:?}");
            assert_eq!(session.stage(), RecoveryStage::Reporting);
        }
    }

    #[test]
    fn a_genesis_session_with_no_pg_waits_for_its_standings() {
        // S23: with no PG known (production, when no node hosts anything), `with_genesis`
        // does not plan at construction; the driver feeds the standings first, then
        // `plan_if_ready` plans, a genesis only with every node's standing.
        let mut partial = genesis_session(&[]);
        assert_eq!(partial.stage(), RecoveryStage::Reporting);
        for node in 1..=5 {
            partial.handle_standing(standing(node, true)).unwrap();
        }
        partial.plan_if_ready().unwrap();
        assert_eq!(
            partial.stage(),
            RecoveryStage::Open,
            "no genesis: opens as before"
        );
        assert!(partial.genesis().is_none());

        let mut whole = genesis_session(&[]);
        for node in 1..=6 {
            whole.handle_standing(standing(node, true)).unwrap();
        }
        whole.plan_if_ready().unwrap();
        assert!(whole.genesis().is_some());
        assert_eq!(
            whole.stage(),
            RecoveryStage::Truncating,
            "waits for the joins"
        );
    }

    #[test]
    fn a_refusal_at_our_own_epoch_restarts_and_a_higher_one_fences() {
        // X8, E1
        let mut own = session();
        own.handle_refused(Epoch(2));
        assert_eq!(
            own.poll_event(),
            Some(RecoveryEvent::Restart { above: Epoch(2) })
        );
        assert_eq!(own.stage(), RecoveryStage::Fenced);
        let mut higher = session();
        higher.handle_refused(Epoch(5));
        assert_eq!(
            higher.poll_event(),
            Some(RecoveryEvent::Fenced { seen: Epoch(5) })
        );
        let mut lower = session();
        lower.handle_refused(Epoch(1));
        assert_eq!(
            lower.poll_event(),
            None,
            "a lower epoch is no refusal of ours"
        );
        assert_eq!(lower.stage(), RecoveryStage::Reporting);
    }
}
