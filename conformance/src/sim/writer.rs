//! A simulated writer: the real `RecoverySession` and `WriterState` machines, driven by a
//! thin shell like the networked writer's: recovery first (X1–X5, E1, E4), then MTRs, acks,
//! re-sends.

use std::collections::{BTreeMap, BTreeSet};

use sixfold_core::{
    Edit, Epoch, Geometry, Lsn, Mtr, NodeId, PageId, PgId, ProtocolEvent, QuorumConfig,
    RecoveryEvent, RecoveryPlan, RecoveryResend, RecoverySession, RecoveryStage, RedoBody,
    SEGMENTS_PER_PG, SegmentId, SubmittedMtr, TruncationRange, WriteError, WriterConfig,
    WriterState,
};

use super::network::Message;
use super::rng::SimRng;
use super::{Mutant, SIM_NODES, SIM_PG_PAGES, SIM_PGS, SubmitLimits, all_pages, segment};
use crate::trace::{SimEvent, TraceEvent};

/// Ticks between re-sends of unacknowledged work (W7, X5).
const RESEND_EVERY_TICKS: u64 = 25;
/// Chance per tick that the workload submits an MTR.
const SUBMIT_CHANCE: f64 = 0.3;

/// What recovery decided, for the oracle.
pub struct Recovered {
    pub epoch: Epoch,
    pub vdl: Lsn,
    pub truncation: Option<TruncationRange>,
}

#[derive(Default)]
pub struct WriterOutput {
    pub messages: Vec<Message>,
    pub events: Vec<TraceEvent>,
    pub submitted: Vec<SubmittedMtr>,
    pub acknowledged: Vec<Lsn>,
    pub recovered: Vec<Recovered>,
    /// X8: this recovery's epoch was taken at a node (raised for it, but its answer lost
    /// with a node crash); the attempt stops and runs again at a higher epoch.
    pub restart: bool,
}

enum Phase {
    /// X1–X5: the shared recovery machine decides; this shell only carries its messages.
    Recovering {
        session: Box<RecoverySession>,
    },
    Open {
        state: Box<WriterState>,
        /// Pages whose LSN a read is fetching (X7).
        reading: BTreeSet<PageId>,
    },
    Fenced,
    Crashed,
}

pub struct SimWriter {
    id: usize,
    epoch: Epoch,
    phase: Phase,
    lal: u64,
    /// Mutant recovery-without-truncation.
    skip_truncation: bool,
    /// Mutant hint-at-vcl.
    hint_at_vcl: bool,
    /// Mutant commit-at-vcl: the first LSN of each MTR not yet acknowledged, by commit
    /// LSN, and the commits it acknowledged early.
    commit_at_vcl: bool,
    mtr_first: BTreeMap<Lsn, Lsn>,
    acked_early: BTreeSet<Lsn>,
}

fn config(lal: u64) -> WriterConfig {
    WriterConfig {
        geometry: Geometry {
            pg_pages: SIM_PG_PAGES,
        },
        quorum: QuorumConfig::AURORA,
        lal,
    }
}

fn all_segments() -> impl Iterator<Item = SegmentId> {
    (0..SIM_PGS).flat_map(|pg| (0..SEGMENTS_PER_PG).map(move |replica| segment(pg, replica)))
}

impl SimWriter {
    pub fn start(id: usize, epoch: Epoch, lal: u64, mutant: Option<Mutant>) -> SimWriter {
        let pgs = (0..SIM_PGS).map(PgId).collect();
        SimWriter {
            id,
            epoch,
            phase: Phase::Recovering {
                session: Box::new(RecoverySession::with_genesis(
                    QuorumConfig::AURORA,
                    lal,
                    epoch,
                    pgs,
                    (0..SIM_NODES as u32).map(NodeId).collect(),
                )),
            },
            lal,
            skip_truncation: mutant == Some(Mutant::RecoveryWithoutTruncation),
            hint_at_vcl: mutant == Some(Mutant::HintAtVcl),
            commit_at_vcl: mutant == Some(Mutant::CommitAtVcl),
            mtr_first: BTreeMap::new(),
            acked_early: BTreeSet::new(),
        }
    }

    /// X1, E4: ask every segment to raise its epoch and report.
    pub fn recovery_queries(&self) -> Vec<Message> {
        all_segments()
            .map(|segment| Message::RecoveryQuery {
                writer: self.id,
                segment,
                epoch: self.epoch,
            })
            .collect()
    }

    pub fn crash(&mut self) {
        self.phase = Phase::Crashed;
    }

    pub fn is_alive(&self) -> bool {
        !matches!(self.phase, Phase::Crashed)
    }

    pub fn is_fenced(&self) -> bool {
        matches!(self.phase, Phase::Fenced)
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn describe(&self) -> String {
        let phase = match &self.phase {
            Phase::Recovering { session } => {
                format!("recovering (plan: {})", session.plan().is_some())
            }
            Phase::Open { state, .. } => format!("open, VCL {} VDL {}", state.vcl(), state.vdl()),
            Phase::Fenced => "fenced".into(),
            Phase::Crashed => "crashed".into(),
        };
        format!("writer{} epoch {} {phase}", self.id, self.epoch)
    }

    /// S15: the open writer's own truncation range, which its reads carry.
    pub fn truncation(&self) -> Option<TruncationRange> {
        match &self.phase {
            Phase::Open { state, .. } => state.truncation(),
            _ => None,
        }
    }

    pub fn vdl(&self) -> Option<Lsn> {
        match &self.phase {
            Phase::Open { state, .. } => Some(state.vdl()),
            _ => None,
        }
    }

    pub fn vcl_vdl(&self) -> Option<(Lsn, Lsn)> {
        match &self.phase {
            Phase::Open { state, .. } => Some((state.vcl(), state.vdl())),
            _ => None,
        }
    }

    /// X7: a page's LSN learned from a read at the writer's VDL.
    pub fn note_page_lsn(&mut self, page: PageId, lsn: Lsn) {
        if let Phase::Open { state, .. } = &mut self.phase {
            state.note_page_lsn(page, lsn);
        }
    }

    /// One MTR of full page images (SQLite's commit, V5), sent like the workload's; `None`
    /// unless the writer is open.
    pub fn submit_images(
        &mut self,
        pages: &[(PageId, Vec<u8>)],
    ) -> Option<Result<WriterOutput, WriteError>> {
        let Phase::Open { state, .. } = &mut self.phase else {
            return None;
        };
        let mut mtr = Mtr::new();
        for (page, image) in pages {
            mtr.push(*page, RedoBody::FullImage(image.clone()));
        }
        let submitted = match state.submit_mtr(mtr) {
            Ok(submitted) => submitted,
            Err(error) => return Some(Err(error)),
        };
        let mut output = WriterOutput::default();
        send_records(
            self.id,
            state,
            &submitted.records,
            self.hint_at_vcl,
            &mut output,
        );
        output.submitted.push(submitted);
        drain_events(state, &mut output);
        self.acknowledge_at_vcl(&mut output);
        Some(Ok(output))
    }

    pub fn pg_lsn_at(&self, pg: PgId, read_point: Lsn) -> Lsn {
        match &self.phase {
            Phase::Open { state, .. } => state.pg_lsn_at(pg, read_point),
            _ => Lsn::ZERO,
        }
    }

    /// One tick: re-sends, and an MTR if the workload may submit one within `submit`.
    pub fn tick(
        &mut self,
        now: u64,
        rng: &mut SimRng,
        submit: Option<SubmitLimits>,
    ) -> WriterOutput {
        let mut output = WriterOutput::default();
        let resend = now % RESEND_EVERY_TICKS == (self.id as u64) % RESEND_EVERY_TICKS;
        match &mut self.phase {
            Phase::Recovering { session } => {
                if resend {
                    match session.resend() {
                        RecoveryResend::RaiseEpoch { .. } => {
                            output.messages.extend(self.recovery_queries())
                        }
                        RecoveryResend::Truncate { history, waiting } => {
                            self.send_truncations(&history, waiting, &mut output)
                        }
                        RecoveryResend::Nothing => {}
                    }
                    self.resend_genesis(&mut output);
                }
            }
            Phase::Open { state, reading } => {
                if let Some(limits) = submit
                    && rng.chance(SUBMIT_CHANCE)
                {
                    submit_mtr(
                        self.id,
                        state,
                        reading,
                        rng,
                        limits,
                        self.hint_at_vcl,
                        &mut output,
                    );
                }
                if resend {
                    reading.clear();
                    resend_unacked(self.id, state, self.hint_at_vcl, &mut output);
                }
                drain_events(state, &mut output);
                if state.fenced_by().is_some() {
                    self.phase = Phase::Fenced;
                }
            }
            Phase::Fenced | Phase::Crashed => {}
        }
        self.acknowledge_at_vcl(&mut output);
        output
    }

    /// Mutant commit-at-vcl: a commit is acknowledged once VCL reaches its MTR's first
    /// record; its acknowledgement at VDL, later, is dropped.
    fn acknowledge_at_vcl(&mut self, output: &mut WriterOutput) {
        if !self.commit_at_vcl {
            return;
        }
        for mtr in &output.submitted {
            if let Some(first) = mtr.records.first() {
                self.mtr_first.insert(mtr.commit_lsn, first.lsn);
            }
        }
        let early = &self.acked_early;
        output.acknowledged.retain(|lsn| !early.contains(lsn));
        output.events.retain(|event| {
            !matches!(event, TraceEvent::Protocol(ProtocolEvent::CommitAcknowledged { lsn })
                if early.contains(lsn))
        });
        for lsn in &output.acknowledged {
            self.mtr_first.remove(lsn);
        }
        let Phase::Open { state, .. } = &self.phase else {
            return;
        };
        let vcl = state.vcl();
        let due: Vec<Lsn> = self
            .mtr_first
            .iter()
            .filter(|&(_, &first)| first <= vcl)
            .map(|(&commit, _)| commit)
            .collect();
        for commit in due {
            self.mtr_first.remove(&commit);
            self.acked_early.insert(commit);
            output.acknowledged.push(commit);
            output
                .events
                .push(TraceEvent::Protocol(ProtocolEvent::CommitAcknowledged {
                    lsn: commit,
                }));
        }
    }

    /// X5: the plan's history to `segments` (none under mutant recovery-without-truncation).
    fn send_truncations(
        &self,
        history: &[TruncationRange],
        segments: impl IntoIterator<Item = SegmentId>,
        output: &mut WriterOutput,
    ) {
        for segment in segments {
            output.messages.push(Message::Truncate {
                writer: self.id,
                segment,
                epoch: self.epoch,
                history: (!self.skip_truncation).then(|| history.to_vec()),
            });
        }
    }

    /// S23: ask each node in `incarnations` to join the genesis (replica r of PG 0 is on
    /// node r).
    fn send_joins(&self, incarnations: &BTreeMap<NodeId, u64>, output: &mut WriterOutput) {
        for (&node, &incarnation) in incarnations {
            output.messages.push(Message::JoinGenesis {
                writer: self.id,
                segment: segment(0, node.0 as usize),
                incarnation,
            });
        }
    }

    /// S23: on the re-send timer, the truncation to genesis nodes that have not taken it,
    /// then the join to those that have not confirmed.
    fn resend_genesis(&self, output: &mut WriterOutput) {
        let Phase::Recovering { session } = &self.phase else {
            return;
        };
        let (Some(incarnations), Some(plan)) = (session.genesis(), session.plan()) else {
            return;
        };
        let (untruncated, unjoined) = session.genesis_waiting();
        if !untruncated.is_empty() {
            let segments = untruncated.iter().map(|node| segment(0, node.0 as usize));
            self.send_truncations(&plan.history, segments, output);
            return;
        }
        let pending = incarnations
            .iter()
            .filter(|(node, _)| unjoined.contains(node))
            .map(|(&node, &incarnation)| (node, incarnation))
            .collect();
        self.send_joins(&pending, output);
    }

    pub fn handle(&mut self, message: Message) -> WriterOutput {
        let mut output = WriterOutput::default();
        match message {
            Message::Refused { seen, .. } if matches!(self.phase, Phase::Recovering { .. }) => {
                // X8, E1: the recovery machine decides (fenced, or restart above).
                if let Phase::Recovering { session } = &mut self.phase {
                    session.handle_refused(seen);
                }
                self.drain_recovery(&mut output);
            }
            Message::Refused { seen, .. } if seen > self.epoch => self.fence(seen, &mut output),
            Message::RecoveryReport {
                segment,
                report,
                standing,
                ..
            } => {
                if let Phase::Recovering { session } = &mut self.phase
                    && report.as_ref().is_none_or(|r| r.epoch == session.epoch())
                {
                    // S23: only this attempt's answers count toward its genesis; a late
                    // node's absent segment is no answer unless it is one (X11).
                    let _ = session.handle_standing(standing);
                    if report.is_none() && standing.late {
                        let _ = session.handle_absent(segment);
                    }
                }
                match report {
                    Some(report) => self.take_report(report, &mut output),
                    None => self.drain_recovery(&mut output),
                }
            }
            Message::GenesisJoined { segment, .. } => {
                if let Phase::Recovering { session } = &mut self.phase {
                    session.handle_genesis_joined(NodeId(u32::from(segment.replica)));
                }
                self.drain_recovery(&mut output);
            }
            Message::TruncateAck { segment, scl, .. } => {
                self.take_truncate_ack(segment, scl, &mut output)
            }
            Message::Ack {
                segment,
                scl,
                epoch,
                ..
            } => {
                if let Phase::Open { state, .. } = &mut self.phase {
                    state.handle_ack(segment, scl, epoch);
                    drain_events(state, &mut output);
                    if state.fenced_by().is_some() {
                        self.phase = Phase::Fenced;
                    }
                }
                self.acknowledge_at_vcl(&mut output);
            }
            Message::PageReply { page, lsn, .. } => {
                if let Phase::Open { state, reading } = &mut self.phase {
                    state.note_page_lsn(page, lsn);
                    reading.remove(&page);
                }
            }
            _ => {}
        }
        output
    }

    fn fence(&mut self, by: Epoch, output: &mut WriterOutput) {
        if let Phase::Open { state, .. } = &mut self.phase {
            state.fence(by);
            drain_events(state, output);
        }
        if self.is_alive() {
            self.phase = Phase::Fenced;
        }
    }

    fn take_report(&mut self, report: sixfold_core::SegmentReport, output: &mut WriterOutput) {
        let Phase::Recovering { session } = &mut self.phase else {
            return;
        };
        if session.stage() != RecoveryStage::Reporting {
            return;
        }
        let taken = SimEvent::report_taken(&report);
        let fenced_by = (report.epoch > session.epoch()).then_some(report.epoch);
        if session.handle_report(report).is_err() {
            return;
        }
        if fenced_by.is_none() {
            output.events.push(TraceEvent::Sim(taken));
        }
        self.drain_recovery(output);
    }

    /// X5: the truncation acknowledged by `segment`, with its SCL.
    fn take_truncate_ack(&mut self, segment: SegmentId, scl: Lsn, output: &mut WriterOutput) {
        let Phase::Recovering { session } = &mut self.phase else {
            return;
        };
        if session.stage() != RecoveryStage::Truncating {
            return;
        }
        output
            .events
            .push(TraceEvent::Sim(SimEvent::TruncationAcked {
                segment: segment.to_string(),
                scl: scl.0,
            }));
        session.handle_truncate_ack(segment, scl);
        session.handle_node_truncated(NodeId(u32::from(segment.replica)));
        self.drain_recovery(output);
    }

    /// Acts on what the recovery machine asks: trace its events, send the truncation, open
    /// or stop.
    fn drain_recovery(&mut self, output: &mut WriterOutput) {
        let Phase::Recovering { session } = &mut self.phase else {
            return;
        };
        let events: Vec<RecoveryEvent> = std::iter::from_fn(|| session.poll_event()).collect();
        for event in events {
            match event {
                RecoveryEvent::Protocol(event) => output.events.push(TraceEvent::Protocol(event)),
                RecoveryEvent::Truncate { history } => {
                    self.send_truncations(&history, all_segments(), output)
                }
                RecoveryEvent::CountedEmpty { report } => output
                    .events
                    .push(TraceEvent::Sim(SimEvent::report_taken(&report))),
                RecoveryEvent::JoinGenesis { incarnations } => {
                    self.send_joins(&incarnations, output)
                }
                RecoveryEvent::Open { plan, scls } => self.open(plan, scls, output),
                RecoveryEvent::Fenced { seen } => self.fence(seen, output),
                RecoveryEvent::Restart { .. } => {
                    // X8: as production does, this writer stops and another recovers
                    // above.
                    self.phase = Phase::Crashed;
                    output.restart = true;
                }
            }
        }
    }

    /// X5, X7: the writer opens where the plan says, with the SCLs recovery saw.
    fn open(
        &mut self,
        plan: RecoveryPlan,
        scls: BTreeMap<SegmentId, Lsn>,
        output: &mut WriterOutput,
    ) {
        let mut state = WriterState::new(config(self.lal), plan.writer_start());
        // Every seed checks the writer's invariants after every input, in release too.
        state.set_strict_invariants(true);
        if self.skip_truncation {
            state.forget_truncation_for_mutant();
        }
        for (&segment, &scl) in &scls {
            state.handle_ack(segment, scl, self.epoch);
        }
        output.recovered.push(Recovered {
            epoch: self.epoch,
            vdl: plan.vdl,
            truncation: (!self.skip_truncation).then_some(plan.truncation),
        });
        drain_events(&mut state, output);
        self.phase = Phase::Open {
            state: Box::new(state),
            reading: BTreeSet::new(),
        };
    }
}

/// One MTR of 1 to `limits.records_max` random pages; each record writes its own LSN into
/// its page at an offset derived from the LSN, so pages record their history.
fn submit_mtr(
    id: usize,
    state: &mut WriterState,
    reading: &mut BTreeSet<PageId>,
    rng: &mut SimRng,
    limits: SubmitLimits,
    hint_at_vcl: bool,
    output: &mut WriterOutput,
) {
    let pages: Vec<PageId> = if limits.first_page_of_each_pg {
        (0..SIM_PGS)
            .map(|pg| PageId::new(1, pg * SIM_PG_PAGES))
            .collect()
    } else {
        all_pages()
    };
    let count = 1 + rng.below(limits.records_max) as usize;
    let chosen: Vec<PageId> = (0..count)
        .map(|_| pages[rng.below(pages.len() as u64) as usize])
        .collect();
    // X7: after recovery a page's LSN comes from a read before it is written.
    let unknown: Vec<PageId> = chosen
        .iter()
        .copied()
        .filter(|&p| state.page_lsn(p).is_none())
        .collect();
    if !unknown.is_empty() {
        for page in unknown {
            if reading.insert(page) {
                let pg = PgId(page.page_no / SIM_PG_PAGES);
                let read_point = state.vdl();
                let required = state.pg_lsn_at(pg, read_point);
                for segment in state.read_candidates(pg, read_point) {
                    output.messages.push(Message::ReadPage {
                        writer: id,
                        segment,
                        epoch: state.epoch(),
                        page,
                        read_lsn: read_point,
                        required_lsn: required,
                    });
                }
            }
        }
        return;
    }
    let next = state.last_allocated().0 + 1;
    if next + count as u64 - 1 > limits.lsn_max {
        return;
    }
    let mut mtr = Mtr::new();
    for (index, &page) in chosen.iter().enumerate() {
        let lsn = next + index as u64;
        mtr.push(
            page,
            RedoBody::Edits(vec![Edit {
                offset: ((lsn * 8) % 4088) as u16,
                bytes: lsn.to_le_bytes().to_vec(),
            }]),
        );
    }
    match state.submit_mtr(mtr) {
        Ok(submitted) => {
            send_records(id, state, &submitted.records, hint_at_vcl, output);
            output.submitted.push(submitted);
        }
        Err(WriteError::Backpressure { .. }) | Err(WriteError::PageLsnUnknown { .. }) => {}
        Err(_) => {}
    }
}

fn hint(state: &WriterState, hint_at_vcl: bool) -> Lsn {
    if hint_at_vcl {
        state.vcl()
    } else {
        state.vdl()
    }
}

fn send_records(
    id: usize,
    state: &WriterState,
    records: &[sixfold_core::RedoRecord],
    hint_at_vcl: bool,
    output: &mut WriterOutput,
) {
    let mut by_pg: BTreeMap<PgId, Vec<sixfold_core::RedoRecord>> = BTreeMap::new();
    for record in records {
        by_pg.entry(record.pg).or_default().push(record.clone());
    }
    for (pg, records) in by_pg {
        // W4: only the PG's six segments.
        for segment in WriterState::segments_of(pg) {
            output.messages.push(Message::Write {
                writer: id,
                segment,
                epoch: state.epoch(),
                vdl_hint: hint(state, hint_at_vcl),
                truncation: state.truncation(),
                records: records.clone(),
            });
        }
    }
}

/// W7: re-send what each segment has not confirmed; an empty batch still carries the VDL
/// hint (W5).
fn resend_unacked(id: usize, state: &WriterState, hint_at_vcl: bool, output: &mut WriterOutput) {
    for segment in all_segments() {
        let records: Vec<sixfold_core::RedoRecord> = state
            .records_to_resend(segment)
            .into_iter()
            .cloned()
            .collect();
        output.messages.push(Message::Write {
            writer: id,
            segment,
            epoch: state.epoch(),
            vdl_hint: hint(state, hint_at_vcl),
            truncation: state.truncation(),
            records,
        });
    }
}

fn drain_events(state: &mut WriterState, output: &mut WriterOutput) {
    while let Some(event) = state.poll_event() {
        if let ProtocolEvent::CommitAcknowledged { lsn } = event {
            output.acknowledged.push(lsn);
        }
        output.events.push(TraceEvent::Protocol(event));
    }
}
