//! Refinement: replays the trace of a run in the model's scope (`sim::Scope::Model`) through
//! the stateright quorum model's own transitions (`sixfold-model-checks`), and reports the
//! first event that is not a step the model allows from the matching state.
//!
//! The writers are checked step by step: each allocation, ack, recovery read and recovery
//! decision of the implementation becomes the model's `Action` (`AllocateMtr`,
//! `Deliver(Ack)`, `RecoveryRead`, `RecoveryDecide`) or the model's writer function
//! (`recovery_written`), which must be enabled; what the model's writer then does (VCL,
//! VDL, the commits it acknowledges, the recovered VCL, VDL and truncation range, when it
//! opens) must be exactly what the implementation's writer did next. Each page a segment
//! serves must be the reading writer's committed value at its read point, as the model's
//! `Action::Read` checks it. The model's properties (durability, MTR atomicity, the VDL
//! rules) are checked after every event.
//!
//! The segments are the environment: their state comes from what the trace says they
//! did — the SCL a flush made durable, the reports recovery took, the truncations they made
//! durable — and every ack or report a writer takes must be one the model's segments could
//! have sent from that state (S1: an ack says no more than a flush made durable; W5: a VDL
//! hint is a VDL some writer reached; a held record is one a writer sent). The model's own
//! segment abstraction is coarser than the storage engine (S14 and gossip of truncation
//! ranges are not in it), which is why segment steps are checked this way and by
//! `crate::validate`, not by the model's segment transitions. docs/conformance.md has the
//! mapping.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sixfold_core::{Lsn as CoreLsn, ProtocolEvent, SEGMENTS_PER_PG};
use sixfold_model_checks::quorum::state::{
    LSN_CAP_MAX, Lsn, LsnSet, Message, Phase, Segment, SegmentIndex, State, Writer, bit, members,
    range, violation,
};
use sixfold_model_checks::quorum::{
    Action, Config, DURABILITY, MTR_ATOMICITY, QuorumModel, VDL_RULES, writer as model_writer,
};
use stateright::{Expectation, Model};

use crate::trace::{SimEvent, Trace, TraceEvent, TraceLine};
use crate::validate::Violation;

/// The model properties checked after every event (the rest need the model's segments,
/// which are the environment here; reads are checked as they are served).
const PROPERTIES: [&str; 3] = [DURABILITY, MTR_ATOMICITY, VDL_RULES];

/// What a replay through the model covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refined {
    /// Trace lines replayed.
    pub events: usize,
    /// Model actions taken (allocations, ack deliveries, recovery reads and decisions).
    pub actions: usize,
    /// Recovery decisions compared with the model's.
    pub recoveries: usize,
    /// Commit acknowledgements compared with the model's.
    pub commits: usize,
    /// Page reads whose version was compared with the model's committed value.
    pub reads: usize,
}

/// Replays a whole trace through the model.
pub fn refine(trace: &Trace, lal: u64) -> Result<Refined, Violation> {
    let mut refinement = Refinement::new(lal).map_err(|reason| Violation {
        line: 0,
        event: String::new(),
        reason,
    })?;
    for (index, line) in trace.lines.iter().enumerate() {
        refinement.step(line).map_err(|reason| Violation {
            line: index + 1,
            event: serde_json::to_string(line).unwrap_or_default(),
            reason,
        })?;
    }
    match refinement.expected.front() {
        Some(event) => Err(Violation {
            line: trace.lines.len(),
            event: String::new(),
            reason: format!(
                "the trace ends where the model's {} would still {}",
                refinement.expected_actor,
                describe(event)
            ),
        }),
        None => Ok(Refined {
            events: trace.lines.len(),
            ..refinement.refined
        }),
    }
}

struct Refinement {
    model: QuorumModel,
    state: State,
    /// The model's writer of each implementation writer still running (actor → writer).
    writers: BTreeMap<String, Writer>,
    /// The newest writer: the model's `state.writer` when properties are checked.
    newest: Option<String>,
    /// The latest report each recovering writer took from each segment.
    reports: BTreeMap<String, BTreeMap<SegmentIndex, Segment>>,
    /// The truncation range each writer's recovery planned.
    planned: BTreeMap<String, (u64, u64)>,
    /// MTR records a writer sent and whose CPL has not come yet.
    mtr_open: BTreeMap<String, Vec<(Lsn, u8)>>,
    /// Per segment, the highest SCL a flush or truncation made durable (S1).
    durable: Vec<u64>,
    /// (segment, epoch) pairs whose truncation range the segment made durable (S8, X5).
    truncation_durable: BTreeSet<(SegmentIndex, u8)>,
    epoch_max: u8,
    /// The writer that just opened, while its next lines take its recovery's acks again.
    opening: Option<String>,
    /// The truncation set each recovery of the model decided, by its epoch (X4).
    truncation_by_epoch: BTreeMap<u8, LsnSet>,
    /// What the model's writer did on the last ack and the implementation has yet to show.
    expected: VecDeque<ProtocolEvent>,
    expected_actor: String,
    refined: Refined,
}

fn lsn(value: u64) -> Result<Lsn, String> {
    if value > u64::from(LSN_CAP_MAX) {
        return Err(format!(
            "LSN {value} is outside the model's scope (LSNs 0..={LSN_CAP_MAX}); run in Scope::Model"
        ));
    }
    Ok(value as Lsn)
}

fn epoch(value: u64) -> Result<u8, String> {
    u8::try_from(value).map_err(|_| format!("epoch {value} is outside the model's scope"))
}

/// `pgP.R` → the model's segment index.
fn segment_index(name: &str) -> Result<SegmentIndex, String> {
    let parsed = name.strip_prefix("pg").and_then(|rest| {
        let (pg, replica) = rest.split_once('.')?;
        Some((pg.parse::<usize>().ok()?, replica.parse::<usize>().ok()?))
    });
    match parsed {
        Some((pg, replica)) if pg < 2 && replica < SEGMENTS_PER_PG => {
            Ok((pg * SEGMENTS_PER_PG + replica) as SegmentIndex)
        }
        _ => Err(format!("segment {name:?} is not a segment of the model")),
    }
}

fn describe(event: &ProtocolEvent) -> String {
    match event {
        ProtocolEvent::VclAdvanced { vcl } => format!("advance VCL to {vcl} (C2)"),
        ProtocolEvent::VdlAdvanced { vdl } => format!("advance VDL to {vdl} (C3)"),
        ProtocolEvent::CommitAcknowledged { lsn } => format!("acknowledge commit {lsn} (C4, C5)"),
        other => format!("{other:?}"),
    }
}

impl Refinement {
    fn new(lal: u64) -> Result<Refinement, String> {
        let config = Config::trace_validation(lsn(lal)?);
        config.validate()?;
        let model = QuorumModel::new(config, None);
        let mut state = model
            .init_states()
            .pop()
            .ok_or("the model has no initial state")?;
        // Every implementation writer, the first one too, starts with a recovery.
        state.writer = None;
        state.ghost.epoch_max = 0;
        let segments = state.segments.len();
        Ok(Refinement {
            model,
            state,
            writers: BTreeMap::new(),
            newest: None,
            reports: BTreeMap::new(),
            planned: BTreeMap::new(),
            mtr_open: BTreeMap::new(),
            durable: vec![0; segments],
            truncation_durable: BTreeSet::new(),
            epoch_max: 0,
            opening: None,
            truncation_by_epoch: BTreeMap::new(),
            expected: VecDeque::new(),
            expected_actor: String::new(),
            refined: Refined::default(),
        })
    }

    fn step(&mut self, line: &TraceLine) -> Result<(), String> {
        self.expect_nothing_else(line)?;
        // The opening writer's first acks are the SCLs its recovery writes answered, taken
        // again right after it opens (X5, X7).
        let retaking = matches!(
            line.event,
            TraceEvent::Protocol(ProtocolEvent::AckTaken { .. })
        ) && self.opening.as_deref() == Some(line.actor.as_str());
        if !retaking {
            self.opening = None;
        }
        match &line.event {
            TraceEvent::Sim(event) => self.sim_step(&line.actor, event)?,
            TraceEvent::Protocol(event) => {
                if line.actor.starts_with("writer") {
                    self.writer_step(&line.actor, event)?;
                }
            }
        }
        self.check_properties()
    }

    /// After an ack the implementation's writer must show what the model's writer did before
    /// anything else happens.
    fn expect_nothing_else(&self, line: &TraceLine) -> Result<(), String> {
        let Some(expected) = self.expected.front() else {
            return Ok(());
        };
        let follows = line.actor == self.expected_actor
            && matches!(
                line.event,
                TraceEvent::Protocol(
                    ProtocolEvent::PgclAdvanced { .. }
                        | ProtocolEvent::VclAdvanced { .. }
                        | ProtocolEvent::VdlAdvanced { .. }
                        | ProtocolEvent::CommitAcknowledged { .. }
                )
            );
        if follows {
            return Ok(());
        }
        Err(format!(
            "the model's {} would {} here; the implementation did not",
            self.expected_actor,
            describe(expected)
        ))
    }

    fn sim_step(&mut self, actor: &str, event: &SimEvent) -> Result<(), String> {
        match event {
            SimEvent::WriterStarted { epoch: started } => {
                let started = epoch(*started)?;
                if started <= self.epoch_max {
                    return Err(format!(
                        "E1: a writer starts at epoch {started}, not above epoch {}",
                        self.epoch_max
                    ));
                }
                self.epoch_max = started;
                self.state.ghost.epoch_max = started;
                self.state.writer_restarts = self.state.writer_restarts.saturating_add(1);
                self.writers
                    .insert(actor.to_string(), model_writer::restarted_writer(started));
                self.reports.remove(actor);
                self.newest = Some(actor.to_string());
            }
            // The simulator stops every running writer before it starts the next one.
            SimEvent::WriterCrashed => self.writers.clear(),
            SimEvent::Durable { segment, scl } => {
                let index = segment_index(segment)? as usize;
                self.durable[index] = self.durable[index].max(*scl);
            }
            SimEvent::TruncationApplied {
                segment,
                epoch: range_epoch,
                ..
            } => {
                let index = segment_index(segment)?;
                self.truncation_durable
                    .insert((index, epoch(*range_epoch)?));
            }
            SimEvent::ReportTaken {
                segment,
                epoch: seen,
                scl,
                vdl_hint,
                held,
                truncations,
                ..
            } => {
                let index = segment_index(segment)?;
                let report = self.segment_from_report(
                    segment,
                    epoch(*seen)?,
                    *scl,
                    *vdl_hint,
                    held,
                    truncations,
                )?;
                self.reports
                    .entry(actor.to_string())
                    .or_default()
                    .insert(index, report);
            }
            SimEvent::TruncationAcked { segment, scl } => {
                let index = segment_index(segment)?;
                if *scl > self.durable[index as usize] {
                    return Err(format!(
                        "S1, S8: {segment} answered its truncation with SCL {scl}, but is durable only through {}",
                        self.durable[index as usize]
                    ));
                }
                let scl = lsn(*scl)?;
                self.with_writer(actor, |refinement, writer_epoch| {
                    // X5: only a segment that made this recovery's truncation durable counts
                    // toward the write quorum; the model's recovery write carries both.
                    if refinement
                        .truncation_durable
                        .contains(&(index, writer_epoch))
                    {
                        let config = refinement.model.config.clone();
                        model_writer::recovery_written(
                            &mut refinement.state,
                            &config,
                            index,
                            scl,
                            None,
                        );
                    }
                    Ok(())
                })?;
            }
            SimEvent::PageServed {
                segment,
                page,
                epoch: reader_epoch,
                read_lsn,
                lsn: served,
            } => self.page_served(segment, page, *reader_epoch, *read_lsn, *served)?,
            _ => {}
        }
        Ok(())
    }

    /// R1–R3: a segment served the page of its PG as of the read point: it must be the
    /// value the model's reading writer holds committed there (`writer::committed_value`,
    /// what the model's `Action::Read` checks), the newest record of the PG at or below the
    /// read point that is in that writer's volume. Reads of a writer no longer running are
    /// not checked: the model has forgotten its view.
    fn page_served(
        &mut self,
        segment: &str,
        page: &str,
        reader_epoch: u64,
        read_lsn: u64,
        served: u64,
    ) -> Result<(), String> {
        let pg = segment_index(segment)? as usize / SEGMENTS_PER_PG;
        let reader_epoch = epoch(reader_epoch)?;
        let Some(reader) = self
            .writers
            .values()
            .find(|writer| writer.epoch == reader_epoch)
            .copied()
        else {
            return Ok(());
        };
        let (read_lsn, served) = (lsn(read_lsn)?, lsn(served)?);
        let committed = model_writer::committed_value(&self.state, &reader, pg, read_lsn);
        if served != committed {
            return Err(format!(
                "R3: {segment} served {page} at read point {read_lsn} as of LSN {served}; the model's writer of epoch {reader_epoch} holds LSN {committed} committed there"
            ));
        }
        self.refined.reads += 1;
        Ok(())
    }

    /// The model's segment as a report shows it (X1), after checking the report could come
    /// from the model's segments: its hint is a VDL a writer reached (W5, C3), and it holds
    /// only records writers sent, with their epochs and CPL flags.
    fn segment_from_report(
        &self,
        segment: &str,
        seen: u8,
        scl: u64,
        vdl_hint: u64,
        held: &[(u64, bool, u64)],
        truncations: &[(u64, u64, u64)],
    ) -> Result<Segment, String> {
        let hint = lsn(vdl_hint)?;
        if hint > self.state.ghost.vdl_high {
            return Err(format!(
                "W5: {segment} reports VDL hint {hint}, above every VDL a writer of the model reached ({}); a hint is a writer's VDL",
                self.state.ghost.vdl_high
            ));
        }
        let pg = segment_index(segment)? as usize / SEGMENTS_PER_PG;
        let mut held_set: LsnSet = 0;
        for &(held_lsn, cpl, held_epoch) in held {
            let held_lsn = lsn(held_lsn)?;
            let record = self.state.record(held_lsn);
            if !self.state.is_allocated(held_lsn)
                || u64::from(record.epoch) != held_epoch
                || record.cpl != cpl
                || usize::from(record.pg) != pg
            {
                return Err(format!(
                    "{segment} reports LSN {held_lsn} (epoch {held_epoch}, CPL {cpl}), which no writer of the model sent"
                ));
            }
            held_set |= bit(held_lsn);
        }
        // A segment holding the range of recovery E is, in the model, a segment that took
        // recovery E's write: it holds the whole set E decided, older ranges included (X4),
        // even when the implementation's segment learned only some of them.
        let mut truncation_epoch = 0;
        for &(lsn_begin, lsn_end, range_epoch) in truncations {
            let range_epoch = epoch(range_epoch)?;
            let decided = self.truncation_by_epoch.get(&range_epoch).copied();
            let voided = range(lsn(lsn_begin)?, lsn(lsn_end)?);
            if decided.is_none_or(|decided| voided & !decided != 0) {
                return Err(format!(
                    "X4: {segment} holds truncation range ({lsn_begin}, {lsn_end}] of epoch {range_epoch}, which the model's recovery of that epoch did not decide"
                ));
            }
            truncation_epoch = truncation_epoch.max(range_epoch);
        }
        let truncated = self
            .truncation_by_epoch
            .get(&truncation_epoch)
            .copied()
            .unwrap_or(0);
        Ok(Segment {
            epoch: seen,
            held: held_set,
            hint,
            truncation_epoch,
            truncated,
            scl: lsn(scl)?,
            ..Segment::default()
        })
    }

    fn writer_step(&mut self, actor: &str, event: &ProtocolEvent) -> Result<(), String> {
        match event {
            ProtocolEvent::Truncated { range } => {
                self.planned
                    .insert(actor.to_string(), (range.lsn_begin.0, range.lsn_end.0));
            }
            ProtocolEvent::RecoveryCompleted { vcl, vdl, .. } => {
                self.recovery_decided(actor, *vcl, *vdl)?
            }
            ProtocolEvent::EpochChanged { .. } => {
                let writer = self.writer(actor)?;
                if writer.phase != Phase::Active {
                    return Err(
                        "X5: the writer opened, but the model's recovery has no write quorum of every PG that holds the truncation range and is complete to VDL"
                            .into(),
                    );
                }
                self.opening = Some(actor.to_string());
            }
            ProtocolEvent::RecordSent {
                lsn: sent,
                pg,
                cpl,
                epoch: sent_epoch,
            } => {
                let writer_epoch = self.writer(actor)?.epoch;
                if epoch(sent_epoch.0)? != writer_epoch {
                    return Err(format!(
                        "W5: a record of epoch {sent_epoch} from the writer of epoch {writer_epoch}"
                    ));
                }
                let pg = u8::try_from(pg.0).map_err(|_| format!("pg{pg} is not in the model"))?;
                let open = self.mtr_open.entry(actor.to_string()).or_default();
                open.push((lsn(sent.0)?, pg));
                if *cpl {
                    let records = std::mem::take(open);
                    self.allocate(actor, &records)?;
                }
            }
            ProtocolEvent::AckTaken {
                segment,
                scl,
                epoch: ack_epoch,
            } => {
                let index = segment_index(&segment.to_string())?;
                if scl.0 > self.durable[index as usize] {
                    return Err(format!(
                        "S1: {segment} acknowledged SCL {scl}, but a flush made it durable only through {}; the model's segments ack only what a flush made durable",
                        self.durable[index as usize]
                    ));
                }
                let message = Message::Ack {
                    segment: index,
                    scl: lsn(scl.0)?,
                    epoch: epoch(ack_epoch.0)?,
                };
                self.ack(actor, message)?;
            }
            ProtocolEvent::VclAdvanced { .. }
            | ProtocolEvent::VdlAdvanced { .. }
            | ProtocolEvent::CommitAcknowledged { .. } => {
                let expected = self.expected.pop_front();
                if expected.as_ref() != Some(event) || self.expected_actor != actor {
                    return Err(format!(
                        "C2–C5: the writer did {event:?}; the model's writer would {}",
                        expected.as_ref().map_or("do nothing".into(), describe)
                    ));
                }
                if matches!(event, ProtocolEvent::CommitAcknowledged { .. }) {
                    self.refined.commits += 1;
                }
            }
            ProtocolEvent::Fenced { by } => {
                let writer_epoch = self.writer(actor)?.epoch;
                if by.0 <= u64::from(writer_epoch) || by.0 > u64::from(self.epoch_max) {
                    return Err(format!(
                        "E3: the writer of epoch {writer_epoch} was fenced by epoch {by}, which no later writer holds"
                    ));
                }
                // E3, C6: it stops; the model's stale writer is gone once fenced.
                self.writers.remove(actor);
            }
            _ => {}
        }
        Ok(())
    }

    fn writer(&self, actor: &str) -> Result<&Writer, String> {
        self.writers.get(actor).ok_or_else(|| {
            format!("{actor} is not running in the model (crashed, fenced, or never started)")
        })
    }

    /// Runs `step` with `actor`'s model writer as the model's current writer.
    fn with_writer<T>(
        &mut self,
        actor: &str,
        step: impl FnOnce(&mut Refinement, u8) -> Result<T, String>,
    ) -> Result<T, String> {
        let writer = *self.writer(actor)?;
        let (kept, kept_stale) = (self.state.writer, self.state.writer_stale);
        self.state.writer = Some(writer);
        self.state.writer_stale = None;
        let result = step(self, writer.epoch);
        if let Some(after) = self.state.writer {
            self.writers.insert(actor.to_string(), after);
        }
        self.state.writer = kept;
        self.state.writer_stale = kept_stale;
        result
    }

    /// Takes `action` if the model offers it from the current state.
    fn take(&mut self, action: Action, why: &str) -> Result<(), String> {
        let mut enabled = Vec::new();
        self.model.actions(&self.state, &mut enabled);
        if !enabled.contains(&action) {
            return Err(format!(
                "{why}: the model does not allow {} here",
                self.model.describe(&self.state, &action)
            ));
        }
        self.state = self
            .model
            .next_state(&self.state, action)
            .ok_or_else(|| format!("the model has no next state for {action:?}"))?;
        self.refined.actions += 1;
        Ok(())
    }

    /// L1, L2, W1, W3, X7: the model's writer allocates the same MTR at the same LSNs.
    fn allocate(&mut self, actor: &str, records: &[(Lsn, u8)]) -> Result<(), String> {
        let pgs: Vec<u8> = records.iter().map(|&(_, pg)| pg).collect();
        let shape = self
            .model
            .config
            .mtr_shapes
            .iter()
            .position(|shape| *shape == pgs.as_slice())
            .ok_or_else(|| format!("an MTR over PGs {pgs:?} is not a shape of the model"))?;
        self.with_writer(actor, |refinement, _| {
            let writer = refinement.state.writer.expect("installed");
            let lsn_first = records[0].0;
            if lsn_first != writer.lsn_next {
                return Err(format!(
                    "L1, X7: the writer allocated LSN {lsn_first}; the model's writer allocates {} next",
                    writer.lsn_next
                ));
            }
            if let Some((position, &(lsn, _))) = records
                .iter()
                .enumerate()
                .find(|&(position, &(lsn, _))| usize::from(lsn) != usize::from(lsn_first) + position)
            {
                return Err(format!(
                    "L1, L2: record {position} of an MTR starting at LSN {lsn_first} has LSN {lsn}: an MTR's LSNs are contiguous"
                ));
            }
            if let Some(&(taken, _)) = records
                .iter()
                .find(|&&(lsn, _)| refinement.state.is_allocated(lsn))
            {
                return Err(format!("L1: LSN {taken} allocated a second time"));
            }
            refinement.take(Action::AllocateMtr(shape as u8), "W1, X1")
        })
    }

    /// W6, C1–C5: the model's writer takes the ack; what it then does is expected next.
    fn ack(&mut self, actor: &str, message: Message) -> Result<(), String> {
        self.with_writer(actor, |refinement, _| {
            let before = refinement.state.writer.expect("installed");
            if let Message::Ack {
                segment,
                scl,
                epoch: ack_epoch,
            } = message
                && refinement.opening.as_deref() == Some(actor)
                && before.phase == Phase::Active
                && before.epoch == ack_epoch
                && before.scl_by_segment[segment as usize] == scl
            {
                // The opening writer takes again the SCLs its recovery writes answered
                // (X5): the model's writer took them with the answers; nothing changes.
                refinement.expected.clear();
                return Ok(());
            }
            refinement.state.send(message);
            refinement.take(Action::Deliver(message), "W6")?;
            // The model also checks, from its own segments, that a fenced writer's
            // acknowledgements are durable; here the segments are the environment, and the
            // simulator checks acknowledged ⇒ durable on the real segments instead.
            refinement.state.ghost.violations &= !violation::FENCED_ACK_NOT_DURABLE;
            let after = refinement.state.writer.expect("installed");
            let mut expected = VecDeque::new();
            if after.vcl > before.vcl.max(before.lsn_base) {
                expected.push_back(ProtocolEvent::VclAdvanced {
                    vcl: CoreLsn(after.vcl.into()),
                });
            }
            if after.vdl > before.vdl {
                expected.push_back(ProtocolEvent::VdlAdvanced {
                    vdl: CoreLsn(after.vdl.into()),
                });
            }
            let released = before.commits_waiting & !after.commits_waiting;
            for commit in members(released) {
                // The model's commit LSN is its MTR's first record; the implementation's is
                // the MTR's CPL, its last. C4 is the same for both: VDL is never inside an MTR.
                let cpl = members(refinement.state.mtr_of(commit))
                    .last()
                    .unwrap_or(commit);
                expected.push_back(ProtocolEvent::CommitAcknowledged {
                    lsn: CoreLsn(cpl.into()),
                });
            }
            refinement.expected = expected;
            refinement.expected_actor = actor.to_string();
            Ok(())
        })
    }

    /// X1–X4: the model's recovery reads the segments the implementation's took reports
    /// from, decides, and must reach the same VCL, VDL and truncation range.
    fn recovery_decided(&mut self, actor: &str, vcl: CoreLsn, vdl: CoreLsn) -> Result<(), String> {
        let reports = self.reports.get(actor).cloned().unwrap_or_default();
        let planned = self.planned.get(actor).copied();
        self.with_writer(actor, |refinement, _| {
            for (&index, segment) in &reports {
                // E1: the model takes a recovery read only below the new epoch; a trace
                // (bytes from a file) may claim otherwise, which is a violation, not a
                // state to hand the model.
                let writer = refinement.state.writer.expect("installed");
                if segment.epoch > writer.epoch {
                    return Err(format!(
                        "E1: segment {index} reported epoch {:?}, above the recovering \
                         writer's {:?}",
                        segment.epoch, writer.epoch
                    ));
                }
                refinement.state.segments[index as usize] = *segment;
                refinement.take(Action::RecoveryRead(index), "X1")?;
            }
            refinement.take(Action::RecoveryDecide, "X2")?;
            let writer = refinement.state.writer.expect("installed");
            let Some(outcome) = model_writer::recovery(&Some(writer)).and_then(|r| r.outcome)
            else {
                return Err("X3: the model's recovery decided nothing".into());
            };
            let model = (
                u64::from(outcome.vcl),
                u64::from(outcome.vdl),
                Some((u64::from(outcome.vdl), u64::from(outcome.lsn_end))),
            );
            let implementation = (vcl.0, vdl.0, planned);
            if model != implementation {
                return Err(format!(
                    "X3, X4: recovery decided VCL {}, VDL {}, truncation {:?}; the model's recovery from the same reports decides VCL {}, VDL {}, truncation ({}, {}]",
                    vcl, vdl, planned, outcome.vcl, outcome.vdl, outcome.vdl, outcome.lsn_end
                ));
            }
            refinement
                .truncation_by_epoch
                .insert(writer.epoch, outcome.truncated);
            refinement.refined.recoveries += 1;
            Ok(())
        })
    }

    /// The model's always-properties, with the newest writer as the current one.
    fn check_properties(&mut self) -> Result<(), String> {
        let newest = self
            .newest
            .as_ref()
            .and_then(|actor| self.writers.get(actor))
            .copied();
        self.state.writer = newest;
        self.state.writer_stale = None;
        for property in self.model.properties() {
            if property.expectation == Expectation::Always
                && PROPERTIES.contains(&property.name)
                && !(property.condition)(&self.model, &self.state)
            {
                return Err(format!(
                    "the model's property \"{}\" fails after this event (rules {})",
                    property.name,
                    sixfold_model_checks::quorum::property_rules(property.name).join(", ")
                ));
            }
        }
        Ok(())
    }
}
