//! Trace validation: replays a trace (spec/trace.md) through an executable statement of the
//! spec's rules and reports the first event that is not a step the rules allow from the
//! state the earlier events built. It reads only the trace, never the implementation, so a
//! bug in the code under test cannot hide itself.

use std::collections::{BTreeMap, BTreeSet};

use sixfold_core::{ProtocolEvent, SEGMENTS_PER_PG, TruncationRange};

use crate::trace::{SimEvent, Trace, TraceEvent, TraceLine};

/// Segments per PG whose acks make a write durable (Q1).
const WRITE_QUORUM: usize = 4;

/// What the trace said of one writer.
#[derive(Debug, Default)]
struct WriterView {
    epoch: u64,
    /// The recovery's truncation range; records start above its end (X7).
    truncation: Option<TruncationRange>,
    recovered_vdl: Option<u64>,
    last_sent: u64,
    cpls: BTreeSet<u64>,
    /// LSNs sent, with their PG.
    sent: BTreeMap<u64, u32>,
    vcl: u64,
    vdl: u64,
    fenced: bool,
}

#[derive(Debug, Default)]
struct Validator {
    writers: BTreeMap<String, WriterView>,
    /// Highest SCL each segment was durable through (from `durable` events).
    durable: BTreeMap<String, u64>,
    /// Truncation ranges each segment made durable.
    applied: BTreeMap<String, BTreeSet<(u64, u64, u64)>>,
    /// Acknowledged commit LSN -> the epoch of the writer that acknowledged it.
    acknowledged: BTreeMap<u64, u64>,
    /// CPLs any writer sent, and VDLs recoveries chose: what a recovered VDL may be.
    cpls_anywhere: BTreeSet<u64>,
}

/// The first event the rules do not allow, with its line number (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub line: usize,
    pub event: String,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trace line {}: {} — {}",
            self.line, self.event, self.reason
        )
    }
}

/// Validates a whole trace.
pub fn validate(trace: &Trace) -> Result<usize, Violation> {
    let mut validator = Validator::default();
    validator.cpls_anywhere.insert(0);
    for (index, line) in trace.lines.iter().enumerate() {
        validator.step(line).map_err(|reason| Violation {
            line: index + 1,
            event: serde_json::to_string(line).unwrap_or_default(),
            reason,
        })?;
    }
    Ok(trace.lines.len())
}

fn segment_name(pg: u32, replica: usize) -> String {
    format!("pg{pg}.{replica}")
}

impl Validator {
    fn step(&mut self, line: &TraceLine) -> Result<(), String> {
        match &line.event {
            TraceEvent::Sim(event) => self.sim_step(&line.actor, event),
            TraceEvent::Protocol(event) => self.protocol_step(&line.actor, event),
        }
    }

    fn sim_step(&mut self, actor: &str, event: &SimEvent) -> Result<(), String> {
        match event {
            SimEvent::WriterStarted { epoch } => {
                if self.writers.values().any(|w| w.epoch >= *epoch) {
                    return Err(format!(
                        "E1, E5: a new writer's epoch {epoch} is not above every earlier one"
                    ));
                }
                self.writers.insert(
                    actor.to_string(),
                    WriterView {
                        epoch: *epoch,
                        ..WriterView::default()
                    },
                );
            }
            SimEvent::Durable { segment, scl } => {
                let durable = self.durable.entry(segment.clone()).or_default();
                *durable = (*durable).max(*scl);
            }
            SimEvent::TruncationApplied {
                segment,
                lsn_begin,
                lsn_end,
                epoch,
            } => {
                self.applied
                    .entry(segment.clone())
                    .or_default()
                    .insert((*lsn_begin, *lsn_end, *epoch));
            }
            _ => {}
        }
        Ok(())
    }

    fn writer(&mut self, actor: &str) -> Result<&mut WriterView, String> {
        self.writers
            .get_mut(actor)
            .ok_or_else(|| format!("{actor} emitted an event before it started"))
    }

    fn protocol_step(&mut self, actor: &str, event: &ProtocolEvent) -> Result<(), String> {
        if !actor.starts_with("writer") {
            return Ok(());
        }
        match event {
            ProtocolEvent::Truncated { range } => {
                let writer = self.writer(actor)?;
                if range.epoch.0 != writer.epoch {
                    return Err(format!(
                        "X4: the recovery of epoch {} planned a range of epoch {}",
                        writer.epoch, range.epoch
                    ));
                }
                writer.truncation = Some(*range);
            }
            ProtocolEvent::RecoveryCompleted { vcl, vdl, .. } => {
                if vdl > vcl {
                    return Err(format!("C3: recovered VDL {vdl} above VCL {vcl}"));
                }
                // X12: a recovery keeps the commits of lower epochs; a newer writer's are
                // not its to keep (it can neither commit nor read once that writer exists).
                let epoch = self.writer(actor)?.epoch;
                let lost = self
                    .acknowledged
                    .iter()
                    .find(|&(&lsn, &acked_at)| acked_at < epoch && lsn > vdl.0);
                if let Some((lost, _)) = lost {
                    return Err(format!(
                        "C4, X3, X12: recovered VDL {vdl} below acknowledged commit {lost}"
                    ));
                }
                if !self.cpls_anywhere.contains(&vdl.0) {
                    return Err(format!(
                        "X4: recovered VDL {vdl} is not a CPL any writer sent"
                    ));
                }
                let writer = self.writer(actor)?;
                writer.recovered_vdl = Some(vdl.0);
                writer.vcl = writer.truncation.map_or(vdl.0, |t| t.lsn_end.0);
                writer.vdl = vdl.0;
                writer.last_sent = writer.vcl;
            }
            ProtocolEvent::RecordSent {
                lsn,
                pg,
                cpl,
                epoch,
            } => {
                let truncation_durable = self.truncation_durable(actor)?;
                let writer = self.writer(actor)?;
                if writer.recovered_vdl.is_none() {
                    return Err("X1: a record sent before recovery completed".into());
                }
                if !truncation_durable {
                    return Err("X5: a record sent before the truncation range was durable at a write quorum of every PG".into());
                }
                if epoch.0 != writer.epoch {
                    return Err(format!(
                        "W5: record of epoch {epoch} from the writer of epoch {}",
                        writer.epoch
                    ));
                }
                if lsn.0 != writer.last_sent + 1 {
                    return Err(format!(
                        "L1, X7: LSN {lsn} after {} (LSNs are dense, and start above the truncation range)",
                        writer.last_sent
                    ));
                }
                writer.last_sent = lsn.0;
                writer.sent.insert(lsn.0, pg.0);
                if *cpl {
                    writer.cpls.insert(lsn.0);
                    self.cpls_anywhere.insert(lsn.0);
                }
            }
            ProtocolEvent::AckTaken { segment, scl, .. } => {
                let durable = self.durable.get(&segment.to_string()).copied().unwrap_or(0);
                if scl.0 > durable {
                    return Err(format!(
                        "S1: {segment} acknowledged SCL {scl} but is durable only through {durable}"
                    ));
                }
            }
            ProtocolEvent::VclAdvanced { vcl } => {
                let writer = self.writer(actor)?;
                if vcl.0 < writer.vcl {
                    return Err(format!("C2: VCL moved back from {} to {vcl}", writer.vcl));
                }
                writer.vcl = vcl.0;
            }
            ProtocolEvent::VdlAdvanced { vdl } => {
                let writer = self.writer(actor)?;
                if vdl.0 < writer.vdl || vdl.0 > writer.vcl {
                    return Err(format!(
                        "C3: VDL {vdl} with VDL {} and VCL {}",
                        writer.vdl, writer.vcl
                    ));
                }
                if !writer.cpls.contains(&vdl.0) {
                    return Err(format!("C3: VDL {vdl} is not a CPL this writer sent"));
                }
                writer.vdl = vdl.0;
            }
            ProtocolEvent::CommitAcknowledged { lsn } => {
                let writer = self.writer(actor)?;
                if writer.fenced {
                    return Err(format!("C6: fenced writer acknowledged {lsn}"));
                }
                if lsn.0 > writer.vdl || !writer.cpls.contains(&lsn.0) {
                    return Err(format!(
                        "C4: commit {lsn} acknowledged with VDL {}",
                        writer.vdl
                    ));
                }
                let epoch = writer.epoch;
                if self.acknowledged.insert(lsn.0, epoch).is_some() {
                    return Err(format!("C5: commit {lsn} acknowledged twice"));
                }
            }
            ProtocolEvent::Fenced { .. } => self.writer(actor)?.fenced = true,
            ProtocolEvent::EpochChanged { .. } => self.check_open(actor)?,
            _ => {}
        }
        Ok(())
    }

    /// X5, X7: a writer opens only once its recovery's truncation range is durable at a
    /// write quorum of every PG.
    fn check_open(&self, actor: &str) -> Result<(), String> {
        let recovered = self
            .writers
            .get(actor)
            .is_some_and(|writer| writer.recovered_vdl.is_some());
        if recovered && !self.truncation_durable(actor)? {
            return Err("X5: the writer opened before its truncation range was durable at a write quorum of every PG".into());
        }
        Ok(())
    }

    /// X5: the writer's truncation range is durable at a write quorum of every PG it has
    /// seen (both PGs of the simulation).
    fn truncation_durable(&self, actor: &str) -> Result<bool, String> {
        let writer = self
            .writers
            .get(actor)
            .ok_or_else(|| format!("{actor} unknown"))?;
        let Some(range) = writer.truncation else {
            return Ok(false);
        };
        let key = (range.lsn_begin.0, range.lsn_end.0, range.epoch.0);
        let durable_at = |pg: u32| {
            (0..SEGMENTS_PER_PG)
                .filter(|&replica| {
                    self.applied
                        .get(&segment_name(pg, replica))
                        .is_some_and(|set| set.contains(&key))
                })
                .count()
        };
        Ok((0..crate::sim::SIM_PGS).all(|pg| durable_at(pg) >= WRITE_QUORUM))
    }
}
