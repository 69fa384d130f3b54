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
use crate::types::{Epoch, Lsn, PgId, SegmentId, TruncationRange};

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
}

impl RecoverySession {
    /// E1, E4: an attempt at `epoch` for the PGs in `pgs`; `lal` bounds what an earlier
    /// writer may have allocated (X4).
    /// A volume with no PG written yet (`pgs` empty) has nothing to report: the session
    /// plans at once (VDL 0).
    pub fn new(quorum: QuorumConfig, lal: u64, epoch: Epoch, pgs: BTreeSet<PgId>) -> Self {
        let mut session = RecoverySession {
            quorum,
            planner: RecoveryPlanner::new(quorum, lal, epoch, pgs.clone()),
            pgs,
            plan: None,
            scls: BTreeMap::new(),
            stage: RecoveryStage::Reporting,
            fenced_by: None,
            events: VecDeque::new(),
        };
        if session.pgs.is_empty() {
            session
                .decide()
                .expect("X2: no PG needs a read quorum, so the plan cannot be refused");
        }
        session
    }

    pub fn epoch(&self) -> Epoch {
        self.planner.epoch()
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
}
