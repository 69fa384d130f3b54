//! A simulated storage node: the real `StorageNode` engine on a `FaultyDisk`, fed by the
//! simulated network. It hosts replica `index` of every PG.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sixfold_core::{
    Epoch, Geometry, Lsn, PageId, PageImage, SegmentId, TruncationRange, history_epoch,
};
use sixfold_storage::{
    CrashMode, FaultKind, FaultyDisk, OpFilter, StorageConfig, StorageError, StorageNode, Ticket,
};

use super::network::Message;
use super::rng::SimRng;
use super::{Mutant, SIM_NODES, SIM_PG_PAGES, SIM_PGS, segment};
use crate::trace::{SimEvent, TraceEvent};

/// Ticks between gossip rounds of a node.
const GOSSIP_EVERY_TICKS: u64 = 7;
/// Ticks between background (materialize, checkpoint, GC) steps.
const BACKGROUND_EVERY_TICKS: u64 = 11;
/// Ticks between scrub steps.
const SCRUB_EVERY_TICKS: u64 = 29;

#[derive(Default)]
pub struct NodeOutput {
    pub messages: Vec<Message>,
    pub events: Vec<TraceEvent>,
}

pub struct SimNode {
    index: usize,
    disk: Arc<FaultyDisk>,
    engine: Option<StorageNode>,
    /// Which writer a queued write batch came from, to route its ack.
    tickets: BTreeMap<Ticket, usize>,
    /// The highest SCL each segment ever acknowledged: what it claimed durable (S1).
    durable_scl: BTreeMap<SegmentId, Lsn>,
    /// The SCL last written to the trace as durable, per segment.
    reported_scl: BTreeMap<SegmentId, Lsn>,
    mutant: Option<Mutant>,
    crash_mode: CrashMode,
}

fn config() -> StorageConfig {
    StorageConfig {
        log_file_bytes_max: 16 << 10,
        page_file_bytes_max: 64 << 10,
        queue_bytes_max: 4 << 20,
        cache_bytes: 64 * 4096,
        cache_shards: 4,
        checkpoint_pages_per_step: 4,
        flush_pages_per_step: 4,
        geometry: Geometry {
            pg_pages: SIM_PG_PAGES,
        },
    }
}

impl SimNode {
    pub fn start(index: usize, seed: u64, mutant: Option<Mutant>) -> SimNode {
        let mut node = SimNode {
            index,
            disk: Arc::new(FaultyDisk::new(seed)),
            engine: None,
            tickets: BTreeMap::new(),
            durable_scl: BTreeMap::new(),
            reported_scl: BTreeMap::new(),
            mutant,
            crash_mode: CrashMode::Random,
        };
        node.restart().expect("a fresh in-memory disk opens");
        for pg in 0..SIM_PGS {
            node.engine
                .as_mut()
                .expect("just opened")
                .host_segment(segment(pg, index))
                .expect("a fresh node hosts its segments");
        }
        node
    }

    fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/node{}", self.index))
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn is_up(&self) -> bool {
        self.engine.is_some()
    }

    pub fn crash(&mut self) {
        self.engine = None;
        self.tickets.clear();
        self.disk.crash_with(self.crash_mode);
    }

    pub fn restart(&mut self) -> Result<(), StorageError> {
        let disk: Arc<dyn sixfold_storage::Disk> = self.disk.clone();
        self.engine = Some(StorageNode::open(disk, self.dir(), config())?);
        Ok(())
    }

    pub fn set_torn_writes(&mut self, torn: bool) {
        self.crash_mode = if torn {
            CrashMode::Random
        } else {
            CrashMode::KeepUnsynced
        };
    }

    pub fn clear_disk_faults(&mut self) {
        self.disk.clear_faults();
    }

    pub fn arm_disk_error(&mut self, rng: &mut SimRng) {
        let kind = match rng.below(3) {
            0 => FaultKind::NoSpace,
            1 => FaultKind::Io,
            _ => FaultKind::TornWrite,
        };
        self.disk
            .inject(OpFilter::Mutations, kind, rng.below(20), 1 + rng.below(3));
    }

    /// This node's log and page files: what media faults hit.
    fn data_files(&self) -> Vec<PathBuf> {
        let prefix = self.dir();
        self.disk
            .files()
            .into_iter()
            .filter(|p| p.starts_with(&prefix))
            .filter(|p| p.extension().is_some_and(|e| e == "sxr" || e == "sxp"))
            .collect()
    }

    /// Flips one bit of a random log or page file, durably. Returns the file.
    pub fn flip_bit(&mut self, rng: &mut SimRng) -> Option<String> {
        let files = self.data_files();
        if files.is_empty() {
            return None;
        }
        let path = files[rng.below(files.len() as u64) as usize].clone();
        let len = self.disk.contents(&path)?.len() as u64;
        if len == 0 {
            return None;
        }
        let offset = rng.below(len);
        self.disk.flip_bit(&path, offset, rng.below(8) as u8).ok()?;
        // The engine finds it by scrub or on the next read; a restart rescans the files.
        Some(path.display().to_string())
    }

    /// A misdirected write: a whole valid frame of one of this node's log or page files is
    /// written, durably, at a frame boundary of another place of the same kind (another
    /// file, or elsewhere in the same one), over what was there. Its CRC is valid: only the
    /// engine's identity checks (a record's PG and LSN, the page index) and the CRCs of the
    /// frames it overwrote partly can tell. Returns "source -> target".
    pub fn misdirect(&mut self, rng: &mut SimRng) -> Option<String> {
        let files = self.data_files();
        let frames_of = |path: &PathBuf| -> Vec<(u64, u64)> {
            let bytes = self.disk.contents(path).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "sxp") {
                page_frames(&bytes)
            } else {
                log_frames(&bytes)
            }
        };
        let source = files
            .get(rng.below(files.len().max(1) as u64) as usize)?
            .clone();
        let source_frames = frames_of(&source);
        let &(source_offset, frame_bytes) =
            source_frames.get(rng.below(source_frames.len().max(1) as u64) as usize)?;
        let contents = self.disk.contents(&source)?;
        let frame =
            contents[source_offset as usize..(source_offset + frame_bytes) as usize].to_vec();
        let targets: Vec<(PathBuf, u64)> = files
            .iter()
            .filter(|p| p.extension() == source.extension())
            .flat_map(|path| {
                let len = self.disk.contents(path).map_or(0, |c| c.len() as u64);
                frames_of(path)
                    .into_iter()
                    .map(|(offset, _)| offset)
                    .filter(move |&offset| offset + frame_bytes <= len)
                    .map(move |offset| (path.clone(), offset))
            })
            .filter(|(path, offset)| !(*path == source && *offset == source_offset))
            .collect();
        let (target, target_offset) = targets
            .get(rng.below(targets.len().max(1) as u64) as usize)?
            .clone();
        self.disk.misdirect(&target, target_offset, &frame).ok()?;
        Some(format!(
            "{}@{source_offset} -> {}@{target_offset}",
            source.display(),
            target.display()
        ))
    }

    /// A one-line state of a segment, for failure reports.
    pub fn describe(&self, segment: SegmentId) -> String {
        match self.engine.as_ref().map(|e| e.segment_status(segment)) {
            None => "node down".into(),
            Some(Err(error)) => error.to_string(),
            Some(Ok(status)) => format!(
                "epoch {}, damaged {}, gc {}, records {}, queued {}, holes {:?}, truncations {:?}",
                status.epoch,
                status.damaged,
                status.forgotten_through,
                status.records,
                status.queued_records,
                self.engine
                    .as_ref()
                    .and_then(|e| e.gossip_request(segment).ok())
                    .map(|r| r.holes)
                    .unwrap_or_default(),
                self.engine
                    .as_ref()
                    .and_then(|e| e.report(segment).ok())
                    .map(|r| r
                        .truncations
                        .iter()
                        .map(|t| (t.lsn_begin.0, t.lsn_end.0, t.epoch.0))
                        .collect::<Vec<_>>())
                    .unwrap_or_default()
            ),
        }
    }

    pub fn scl(&self, segment: SegmentId) -> Option<Lsn> {
        self.engine
            .as_ref()
            .and_then(|e| e.segment_status(segment).ok())
            .map(|s| s.scl)
    }

    /// S15: whether `segment` holds the truncation history `range` (a writer's own) is part
    /// of; a segment that does not serves that writer nothing until gossip brings it.
    pub fn holds_history_of(&self, segment: SegmentId, range: Option<TruncationRange>) -> bool {
        let Some(range) = range else {
            return true;
        };
        self.engine
            .as_ref()
            .and_then(|e| e.report(segment).ok())
            .is_some_and(|report| report.truncations.contains(&range))
    }

    /// S1: whether `segment` has claimed `lsn` durable (an ack it sent covered it).
    pub fn durably_holds(&self, segment: SegmentId, lsn: Lsn) -> bool {
        self.durable_scl
            .get(&segment)
            .is_some_and(|&scl| scl >= lsn)
    }

    pub fn tick(&mut self, now: u64, rng: &mut SimRng) -> NodeOutput {
        let mut output = NodeOutput::default();
        let Some(engine) = self.engine.as_mut() else {
            return output;
        };
        // S1, S2: one group commit per tick for everything queued.
        // Errors leave the batches queued; the next tick retries.
        if let Ok(acks) = engine.flush() {
            if !acks.is_empty() {
                output
                    .events
                    .push(TraceEvent::Sim(SimEvent::Flushed { acks: acks.len() }));
            }
            for ack in acks {
                let durable = self.durable_scl.entry(ack.segment).or_default();
                *durable = (*durable).max(ack.scl);
                if let Some(writer) = self.tickets.remove(&ack.ticket) {
                    output.messages.push(Message::Ack {
                        writer,
                        segment: ack.segment,
                        scl: ack.scl,
                        epoch: ack.epoch,
                    });
                }
            }
        }
        for pg in 0..SIM_PGS {
            let own = segment(pg, self.index);
            if let Ok(status) = engine.segment_status(own) {
                let reported = self.reported_scl.entry(own).or_default();
                if status.scl > *reported {
                    *reported = status.scl;
                    output.events.push(TraceEvent::Sim(SimEvent::Durable {
                        segment: own.to_string(),
                        scl: status.scl.0,
                    }));
                }
            }
        }
        if now % GOSSIP_EVERY_TICKS == self.index as u64 % GOSSIP_EVERY_TICKS {
            for pg in 0..SIM_PGS {
                let own = segment(pg, self.index);
                let Ok(request) = engine.gossip_request(own) else {
                    continue;
                };
                let mut peer = rng.below(SIM_NODES as u64 - 1) as usize;
                if peer >= self.index {
                    peer += 1;
                }
                output.messages.push(Message::GossipRequest {
                    from: self.index,
                    to: peer,
                    segment: own,
                    request,
                });
            }
        }
        if now.is_multiple_of(BACKGROUND_EVERY_TICKS) {
            let _ = engine.background_step();
        }
        if now.is_multiple_of(SCRUB_EVERY_TICKS) {
            let _ = engine.scrub_step();
        }
        output
    }

    pub fn handle(&mut self, _now: u64, message: Message) -> NodeOutput {
        let mut output = NodeOutput::default();
        let index = self.index;
        let Some(engine) = self.engine.as_mut() else {
            return output; // a crashed node hears nothing
        };
        match message {
            Message::Write {
                writer,
                segment,
                epoch,
                vdl_hint,
                truncation,
                records,
            } => {
                let top = records.iter().map(|r| r.lsn).max().unwrap_or(Lsn::ZERO);
                match engine.submit(segment, epoch, vdl_hint, truncation, records) {
                    Ok(ticket) => {
                        if self.mutant == Some(Mutant::AckBeforeFsync) {
                            // The bug: acknowledge on receipt, before the group commit.
                            output.messages.push(Message::Ack {
                                writer,
                                segment,
                                scl: top,
                                epoch,
                            });
                        } else {
                            self.tickets.insert(ticket, writer);
                        }
                    }
                    Err(error) => refuse_if_stale(&error, writer, segment, &mut output),
                }
            }
            Message::RecoveryQuery {
                writer,
                segment,
                epoch,
            } => match engine.raise_epoch(segment, epoch) {
                Ok(()) => {
                    if let Ok(report) = engine.report(segment) {
                        output.events.push(TraceEvent::Sim(SimEvent::Reported {
                            segment: segment.to_string(),
                            epoch: epoch.0,
                            scl: report.scl.0,
                        }));
                        output
                            .messages
                            .push(Message::RecoveryReport { writer, report });
                    }
                }
                Err(error) => refuse_if_stale(&error, writer, segment, &mut output),
            },
            Message::Truncate {
                writer,
                segment,
                epoch,
                history,
            } => {
                let mutant = self.mutant;
                let history =
                    history.map(|history| mutate_history(mutant, engine, segment, history));
                let result = match &history {
                    Some(history) => engine.truncate(segment, history),
                    None => engine.raise_epoch(segment, epoch),
                };
                let range = history.and_then(|history| history.last().copied());
                match result {
                    Ok(()) => {
                        if let Some(range) = range {
                            output
                                .events
                                .push(TraceEvent::Sim(SimEvent::TruncationApplied {
                                    segment: segment.to_string(),
                                    lsn_begin: range.lsn_begin.0,
                                    lsn_end: range.lsn_end.0,
                                    epoch: range.epoch.0,
                                }));
                        }
                        if let Ok(status) = engine.segment_status(segment) {
                            output.events.push(TraceEvent::Sim(SimEvent::Durable {
                                segment: segment.to_string(),
                                scl: status.scl.0,
                            }));
                            output.messages.push(Message::TruncateAck {
                                writer,
                                segment,
                                scl: status.scl,
                            });
                        }
                    }
                    Err(error) => refuse_if_stale(&error, writer, segment, &mut output),
                }
            }
            Message::GossipRequest {
                from,
                segment: asker,
                request,
                ..
            } => {
                let own = SegmentId {
                    pg: asker.pg,
                    replica: index as u8,
                };
                // S15: a peer behind our truncation history is answered even with no
                // records, so that it learns the history.
                if let (Ok(records), Ok(report)) =
                    (engine.answer_gossip(own, &request), engine.report(own))
                    && (!records.is_empty()
                        || report.epoch > request.epoch
                        || history_epoch(&report.truncations) > history_epoch(&request.truncations))
                {
                    output.messages.push(Message::GossipAnswer {
                        from: index,
                        to: from,
                        segment: asker,
                        epoch: report.epoch,
                        truncations: report.truncations,
                        records,
                    });
                }
            }
            Message::GossipAnswer {
                segment,
                epoch,
                truncations,
                records,
                ..
            } => {
                let truncations = mutate_history(self.mutant, engine, segment, truncations);
                let _ = engine.handle_gossip(segment, epoch, &truncations, records);
            }
            Message::ReadPage {
                writer,
                segment,
                epoch,
                truncation,
                page,
                read_lsn,
                required_lsn,
            } => {
                let truncation =
                    truncation.filter(|_| self.mutant != Some(Mutant::ReadWithoutHistory));
                if let Ok(image) = engine
                    .check_reader_history(segment, truncation)
                    .and_then(|()| engine.get_page(segment, epoch, page, read_lsn, required_lsn))
                {
                    output.events.push(TraceEvent::Sim(SimEvent::PageServed {
                        segment: segment.to_string(),
                        page: page.to_string(),
                        epoch: epoch.0,
                        read_lsn: read_lsn.0,
                        lsn: image.lsn.0,
                    }));
                    output.messages.push(Message::PageReply {
                        from: index,
                        writer,
                        page,
                        lsn: image.lsn,
                    });
                }
            }
            Message::Ack { .. }
            | Message::Refused { .. }
            | Message::RecoveryReport { .. }
            | Message::TruncateAck { .. }
            | Message::PageReply { .. } => {}
        }
        output
    }

    /// A direct read (R3), for the final checks and for SQLite on the simulated volume.
    pub fn read_page(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        truncation: Option<TruncationRange>,
        page: PageId,
        read_lsn: Lsn,
        required_lsn: Lsn,
    ) -> Result<PageImage, String> {
        let truncation = truncation.filter(|_| self.mutant != Some(Mutant::ReadWithoutHistory));
        let engine = self.engine.as_mut().ok_or("node is down")?;
        engine
            .check_reader_history(segment, truncation)
            .and_then(|()| engine.get_page(segment, epoch, page, read_lsn, required_lsn))
            .map_err(|e| e.to_string())
    }

    /// The GC point and the LSNs ≤ `vdl` the segment holds above it.
    pub fn held_above_gc(&self, segment: SegmentId, vdl: Lsn) -> (Lsn, Vec<Lsn>) {
        let Some(engine) = self.engine.as_ref() else {
            return (Lsn::ZERO, Vec::new());
        };
        let floor = engine
            .segment_status(segment)
            .map_or(Lsn::ZERO, |s| s.forgotten_through);
        let lsns = engine
            .held_records(segment)
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.lsn)
            .filter(|&l| l <= vdl)
            .collect();
        (floor, lsns)
    }
}

/// (offset, length) of each valid record frame of a log, from its start up to the first
/// frame that does not decode.
fn log_frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match sixfold_core::codec::decode_record(&bytes[at..]) {
            Ok((_, frame_bytes)) => {
                frames.push((at as u64, frame_bytes as u64));
                at += frame_bytes;
            }
            Err(_) => break,
        }
    }
    frames
}

/// (offset, length) of each valid page frame of a page file.
fn page_frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let frame_bytes = sixfold_core::codec::PAGE_FRAME_BYTES;
    bytes
        .chunks_exact(frame_bytes)
        .enumerate()
        .filter(|(_, frame)| sixfold_core::codec::decode_page(frame).is_ok())
        .map(|(index, _)| ((index * frame_bytes) as u64, frame_bytes as u64))
        .collect()
}

/// S7: a request refused for a stale epoch is answered so the writer learns it is fenced
/// (E3); any other refusal (queue full, I/O, void records) is left to the writer's re-send
/// (W7).
fn refuse_if_stale(
    error: &StorageError,
    writer: usize,
    segment: SegmentId,
    output: &mut NodeOutput,
) {
    if let StorageError::StaleEpoch { seen, .. } = error {
        output.messages.push(Message::Refused {
            writer,
            segment,
            seen: *seen,
        });
    }
}

/// Mutant truncation-union: the segment keeps every range it ever held beside a newer
/// history, as if ranges were merged one by one (S15 broken).
fn mutate_history(
    mutant: Option<Mutant>,
    engine: &StorageNode,
    segment: SegmentId,
    history: Vec<TruncationRange>,
) -> Vec<TruncationRange> {
    if mutant != Some(Mutant::TruncationUnion) {
        return history;
    }
    let Ok(held) = engine.report(segment) else {
        return history;
    };
    if history_epoch(&history) <= history_epoch(&held.truncations) {
        return history;
    }
    let mut merged = held.truncations;
    for range in history {
        if !merged.contains(&range) {
            merged.push(range);
        }
    }
    merged
}
