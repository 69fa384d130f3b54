//! A simulated storage node: the node machine production runs ([`NodeStore`]: node epoch,
//! truncation history, placement, repair, on the `StorageNode` engine) on a `FaultyDisk`,
//! which reaches `node.meta` too, fed by the simulated network. Replica `index` of every
//! PG is placed on it; it hosts a segment from its PG's first write there (V2), as a
//! production node does. This file is transport only: messages in, machine calls, messages
//! and trace events out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sixfold_core::{
    Epoch, Geometry, Lsn, NodeId, NodeStanding, PageId, PageImage, PgId, PlacedAnswer,
    SEGMENTS_PER_PG, SegmentId, TruncationRange, history_epoch, placed_report,
};
use sixfold_storage::{
    CrashMode, EpochAnswer, FaultKind, FaultyDisk, GossipAnswer, NodeStore, NodeStoreError,
    NodeStoreMutant, OpFilter, SegmentPlacement, StorageConfig, StorageError, Ticket,
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

/// Replica `r` of every PG on node `r`.
#[derive(Debug)]
struct SimPlacement;

impl SegmentPlacement for SimPlacement {
    fn placement(&self, _pg: PgId) -> [NodeId; SEGMENTS_PER_PG] {
        std::array::from_fn(|replica| NodeId(replica as u32))
    }
}

pub struct SimNode {
    index: usize,
    disk: Arc<FaultyDisk>,
    store: Option<NodeStore>,
    /// E1, X1: the epoch this node raised for a recovering writer, and that writer: its
    /// queries for the node's other segments, or again after a lost answer, are answered at
    /// that epoch. Like a production connection, this is lost when the node crashes.
    raised_by: Option<(Epoch, usize)>,
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
            store: None,
            raised_by: None,
            tickets: BTreeMap::new(),
            durable_scl: BTreeMap::new(),
            reported_scl: BTreeMap::new(),
            mutant,
            crash_mode: CrashMode::Random,
        };
        node.restart().expect("a fresh in-memory disk opens");
        node
    }

    fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/node{}", self.index))
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn is_up(&self) -> bool {
        self.store.is_some()
    }

    pub fn crash(&mut self) {
        self.store = None;
        self.raised_by = None;
        self.tickets.clear();
        self.disk.crash_with(self.crash_mode);
    }

    pub fn restart(&mut self) -> Result<(), NodeStoreError> {
        let disk: Arc<dyn sixfold_storage::Disk> = self.disk.clone();
        let node = NodeId(self.index as u32);
        let mut store = NodeStore::open(disk, self.dir(), node, Arc::new(SimPlacement), config())?;
        store.recover_segments()?;
        store.set_mutant(match self.mutant {
            Some(Mutant::ReadWithoutHistory) => Some(NodeStoreMutant::ReadWithoutHistory),
            Some(Mutant::TruncationUnion) => Some(NodeStoreMutant::TruncationUnion),
            _ => None,
        });
        self.store = Some(store);
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
        let Some(store) = self.store.as_ref() else {
            return "node down".into();
        };
        let engine = store.engine();
        match engine.segment_status(segment) {
            Err(error) => format!("{error} (node epoch {})", store.epoch()),
            Ok(status) => format!(
                "epoch {}, damaged {}, gc {}, records {}, queued {}, holes {:?}, truncations {:?}, repairing {}",
                status.epoch,
                status.damaged,
                status.forgotten_through,
                status.records,
                status.queued_records,
                engine
                    .gossip_request(segment)
                    .map(|r| r.holes)
                    .unwrap_or_default(),
                engine
                    .report(segment)
                    .map(|r| r
                        .truncations
                        .iter()
                        .map(|t| (t.lsn_begin.0, t.lsn_end.0, t.epoch.0))
                        .collect::<Vec<_>>())
                    .unwrap_or_default(),
                store.is_repairing(segment),
            ),
        }
    }

    /// The segment's SCL; 0 for a placed segment not yet created (V2).
    pub fn scl(&self, segment: SegmentId) -> Option<Lsn> {
        let store = self.store.as_ref()?;
        Some(
            store
                .engine()
                .segment_status(segment)
                .map_or(Lsn::ZERO, |s| s.scl),
        )
    }

    /// S15: whether this node holds the truncation history `range` (a writer's own) is part
    /// of; a node that does not serves that writer nothing until gossip brings it. The
    /// history is the node's, for all its segments.
    pub fn holds_history_of(&self, range: Option<TruncationRange>) -> bool {
        let Some(range) = range else {
            return true;
        };
        self.store
            .as_ref()
            .is_some_and(|store| store.truncations().contains(&range))
    }

    /// S1: whether `segment` has claimed `lsn` durable (an ack it sent covered it).
    pub fn durably_holds(&self, segment: SegmentId, lsn: Lsn) -> bool {
        self.durable_scl
            .get(&segment)
            .is_some_and(|&scl| scl >= lsn)
    }

    pub fn tick(&mut self, now: u64, rng: &mut SimRng) -> NodeOutput {
        let mut output = NodeOutput::default();
        let Some(store) = self.store.as_mut() else {
            return output;
        };
        // S1, S2: one group commit per tick for everything queued.
        // Errors leave the batches queued; the next tick retries.
        if let Ok(acks) = store.flush() {
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
        for own in store.hosted() {
            if let Ok(status) = store.engine().segment_status(own) {
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
                let Some(request) = store.gossip_request(own) else {
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
            let _ = store.background_step();
        }
        if now.is_multiple_of(SCRUB_EVERY_TICKS) {
            let _ = store.scrub_step();
        }
        output
    }

    pub fn handle(&mut self, _now: u64, message: Message) -> NodeOutput {
        let mut output = NodeOutput::default();
        let index = self.index;
        let Some(store) = self.store.as_mut() else {
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
                match store.submit(segment, epoch, vdl_hint, truncation, records) {
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
            } => {
                let answer = if epoch > store.epoch() {
                    let answer = store.raise_epoch(epoch);
                    if store.epoch() == epoch {
                        // Raised for this writer, even if its answer then failed.
                        self.raised_by = Some((epoch, writer));
                    }
                    answer
                } else if self.raised_by == Some((epoch, writer)) {
                    store.epoch_answer()
                } else {
                    Err(NodeStoreError::StaleEpoch {
                        got: epoch,
                        seen: store.epoch(),
                    })
                };
                match answer {
                    Ok(answer) => {
                        answer_recovery(store, &answer, writer, segment, epoch, &mut output);
                    }
                    Err(error) => refuse_if_stale(&error, writer, segment, &mut output),
                }
            }
            Message::Truncate {
                writer,
                segment,
                epoch,
                history,
            } => {
                let range = history.as_ref().and_then(|history| history.last().copied());
                let result = match &history {
                    Some(history) => store.truncate(history),
                    None => store.adopt_epoch(epoch),
                };
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
                        // X5: the node's history is durable; a segment not yet created
                        // takes it at its first write (V2).
                        let scl = store
                            .engine()
                            .segment_status(segment)
                            .map_or(Lsn::ZERO, |s| s.scl);
                        output.events.push(TraceEvent::Sim(SimEvent::Durable {
                            segment: segment.to_string(),
                            scl: scl.0,
                        }));
                        output.messages.push(Message::TruncateAck {
                            writer,
                            segment,
                            scl,
                        });
                    }
                    Err(error) => refuse_if_stale(&error, writer, segment, &mut output),
                }
            }
            Message::JoinGenesis {
                writer,
                segment,
                incarnation,
            } => {
                // S23: joined (or with the volume already): the writer may open.
                if store.join_genesis(incarnation).is_ok() {
                    output
                        .messages
                        .push(Message::GenesisJoined { writer, segment });
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
                // S6, V2: the asker hosts a segment of this PG; so does this node, from now.
                let _ = store.host_placed_segment_of(asker.pg);
                let records = store.answer_gossip(own, Some(NodeId(from as u32)), &request);
                let (peer_scl, peer_repairing) = store.gossip_standing(own);
                // S15: a peer behind our truncation history is answered even with no
                // records, so that it learns the history.
                if !records.is_empty()
                    || store.epoch() > request.epoch
                    || store.history_epoch() > history_epoch(&request.truncations)
                {
                    output.messages.push(Message::GossipAnswer {
                        from: index,
                        to: from,
                        segment: asker,
                        epoch: store.epoch(),
                        truncations: store.truncations().to_vec(),
                        complete: records.len() < sixfold_core::segment::GOSSIP_BATCH_RECORDS_MAX,
                        records,
                        peer_scl,
                        peer_repairing,
                    });
                }
            }
            Message::GossipAnswer {
                from,
                segment,
                epoch,
                truncations,
                records,
                peer_scl,
                peer_repairing,
                complete,
                ..
            } => {
                let answer = GossipAnswer {
                    peer: SegmentId {
                        pg: segment.pg,
                        replica: from as u8,
                    },
                    epoch,
                    truncations,
                    records,
                    peer_scl,
                    peer_repairing,
                    complete,
                };
                let _ = store.merge_gossip(segment, answer);
            }
            Message::ReadPage {
                writer,
                segment,
                epoch,
                page,
                read_lsn,
                required_lsn,
                ..
            } => {
                if let Ok(lsn) = serve_page(store, segment, epoch, page, read_lsn, required_lsn)
                    .map(|image| image.lsn)
                {
                    output.events.push(TraceEvent::Sim(SimEvent::PageServed {
                        segment: segment.to_string(),
                        page: page.to_string(),
                        epoch: epoch.0,
                        read_lsn: read_lsn.0,
                        lsn: lsn.0,
                    }));
                    output.messages.push(Message::PageReply {
                        from: index,
                        writer,
                        page,
                        lsn,
                    });
                }
            }
            Message::Ack { .. }
            | Message::Refused { .. }
            | Message::RecoveryReport { .. }
            | Message::TruncateAck { .. }
            | Message::GenesisJoined { .. }
            | Message::PageReply { .. } => {}
        }
        output
    }

    /// A direct read (R3), for the final checks and for SQLite on the simulated volume.
    pub fn read_page(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        page: PageId,
        read_lsn: Lsn,
        required_lsn: Lsn,
    ) -> Result<PageImage, String> {
        let store = self.store.as_mut().ok_or("node is down")?;
        serve_page(store, segment, epoch, page, read_lsn, required_lsn).map_err(|e| e.to_string())
    }

    /// The GC point and the LSNs ≤ `vdl` the segment holds above it.
    pub fn held_above_gc(&self, segment: SegmentId, vdl: Lsn) -> (Lsn, Vec<Lsn>) {
        let Some(store) = self.store.as_ref() else {
            return (Lsn::ZERO, Vec::new());
        };
        let engine = store.engine();
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

/// R3, S9, S15 through the node machine: `page` at `read_lsn`; an empty page (LSN 0) when
/// it has no record by then.
fn serve_page(
    store: &mut NodeStore,
    segment: SegmentId,
    epoch: Epoch,
    page: PageId,
    read_lsn: Lsn,
    required_lsn: Lsn,
) -> Result<PageImage, NodeStoreError> {
    let image = store.get_page(segment, epoch, read_lsn, required_lsn, page)?;
    Ok(match image {
        Some((lsn, bytes)) => PageImage { page, lsn, bytes },
        None => PageImage {
            page,
            lsn: Lsn::ZERO,
            bytes: vec![0; sixfold_core::PAGE_BYTES],
        },
    })
}

/// X1, X11, S23: the report of `segment` this node's answer gives, if it gives one (a
/// repairing segment, or one a late node may have lost, counts as no answer), with the
/// node's standing, which the genesis rule reads even when there is no report.
fn answer_recovery(
    store: &NodeStore,
    answer: &EpochAnswer,
    writer: usize,
    segment: SegmentId,
    epoch: Epoch,
    output: &mut NodeOutput,
) {
    let placed = PlacedAnswer {
        reports: &answer.reports,
        repairing: &answer.repairing,
        absent_may_be_lost: answer.absent_may_be_lost,
        truncations: store.truncations(),
    };
    let report = placed_report(segment, epoch, placed);
    if let Some(report) = &report {
        output.events.push(TraceEvent::Sim(SimEvent::Reported {
            segment: segment.to_string(),
            epoch: epoch.0,
            scl: report.scl.0,
        }));
    }
    let standing = NodeStanding {
        node: store.node(),
        incarnation: answer.incarnation,
        blank: answer.blank,
        late: answer.absent_may_be_lost,
    };
    output.messages.push(Message::RecoveryReport {
        writer,
        segment,
        report,
        standing,
    });
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
    error: &NodeStoreError,
    writer: usize,
    segment: SegmentId,
    output: &mut NodeOutput,
) {
    if let NodeStoreError::StaleEpoch { seen, .. }
    | NodeStoreError::Engine(StorageError::StaleEpoch { seen, .. }) = error
    {
        output.messages.push(Message::Refused {
            writer,
            segment,
            seen: *seen,
        });
    }
}
