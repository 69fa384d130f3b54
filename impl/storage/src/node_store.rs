//! A storage node's protocol state above the engine ([`StorageNode`]): the little the
//! engine does not keep per segment but per node (S7, S8, S13, S19–S21, V2):
//!
//! - the node's volume epoch and truncation history (`node.meta`), so a segment created
//!   later — at a PG's first write, V2 — starts at the node's epoch with every range
//!   applied, and an old writer cannot create a segment behind recovery's back (E4);
//! - which segments the placement puts on this node (S13);
//! - the repair state of segments that may have lost what they acknowledged (S19–S21);
//! - each peer segment's SCL as its gossip requests tell it, to hold PGMRPL (and so the
//!   engine's garbage collection, S10) below what every replica of the PG holds: a peer
//!   that was down catches up from records, which the engine cannot ship once collected.
//!
//! Like the engine it is sans-IO apart from the [`Disk`] it is given: the networked server
//! (`sixfold-cluster`) drives it on the real disk, and the simulator on a [`crate::FaultyDisk`],
//! which reaches `node.meta` too. `node.meta` is rewritten whole (temp file, fsync, rename,
//! directory fsync) with a CRC32C (spec/formats.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sixfold_core::{
    Birth, Epoch, GossipRequest, Lsn, NodeId, NodeRepair, PageId, PeerAnswer, PgId, RedoRecord,
    SEGMENTS_PER_PG, SegmentId, SegmentReport, TruncationRange, history_epoch,
};

use crate::StorageError;
use crate::disk::Disk;
use crate::meta::{read_optional, write_atomic};
use crate::node::{
    Ack, CommitJob, FlushOutcome, SegmentStatus, StorageConfig, StorageNode, Ticket,
};

const META_MAGIC: u32 = u32::from_le_bytes(*b"SIXN");
/// The node metadata file, in the node's data directory.
pub const NODE_META_FILE: &str = "node.meta";
/// Background steps between two scrub steps (S11): scrubbing reads a whole file.
pub const SCRUB_EVERY_STEPS: u64 = 25;
/// Truncation ranges a node keeps, at most: the one limit of the core (S15).
pub use sixfold_core::types::TRUNCATIONS_MAX;
/// Segments a node may list in its metadata, at most (hosted, and again repairing).
const META_SEGMENTS_MAX: usize = 1 << 20;
/// `node.meta` is small: ranges and segment lists, bounded above.
const META_BYTES_MAX: u64 = 64 + 24 * TRUNCATIONS_MAX as u64 + 26 * META_SEGMENTS_MAX as u64;

/// Where each PG's six segments live (Q3, S13): which segments this node may host, and
/// which peer segment a gossip request came from.
pub trait SegmentPlacement: Send + Sync + Debug {
    /// The node of each replica of `pg`, by replica index.
    fn placement(&self, pg: PgId) -> [NodeId; SEGMENTS_PER_PG];

    /// The node holding `segment`.
    fn node_of(&self, segment: SegmentId) -> Option<NodeId> {
        self.placement(segment.pg)
            .get(segment.replica as usize)
            .copied()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeStoreError {
    #[error("node meta {path} is damaged: {reason}")]
    Meta { path: PathBuf, reason: String },
    #[error("stale epoch {got}: this node has seen {seen} (S7)")]
    StaleEpoch { got: Epoch, seen: Epoch },
    #[error("segment {segment} is not placed on node {node} (S13)")]
    WrongSegment { segment: SegmentId, node: NodeId },
    #[error(transparent)]
    Engine(#[from] StorageError),
    #[error("segment {segment} is not hosted here and {needed} is needed (R3)")]
    NotReady { segment: SegmentId, needed: Lsn },
    #[error("the engine acknowledged no write for {segment}")]
    NoAck { segment: SegmentId },
    #[error("too many {0}")]
    Limit(&'static str),
    #[error("the genesis counted folder {counted} of node {node}, not this one (S23)")]
    NotThisFolder { node: NodeId, counted: u64 },
}

/// One node's segments and metadata.
pub struct NodeStore {
    node: NodeId,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    placement: Arc<dyn SegmentPlacement>,
    engine: StorageNode,
    epoch: Epoch,
    truncations: Vec<TruncationRange>,
    /// The writer's PGMRPL (R4), from its heartbeats.
    writer_pgmrpl: Lsn,
    /// SCL of each peer segment, from its gossip requests (S6).
    peer_scl: HashMap<SegmentId, Lsn>,
    background_steps: u64,
    /// S19–S21: segments that may have lost what they acknowledged.
    repair: NodeRepair,
    /// S23: this folder's incarnation, drawn when it was created (or, for a folder from
    /// before S23, at its first open since), and whether `node.meta` holds it yet.
    incarnation: u64,
    incarnation_durable: bool,
    /// A deliberate bug, switched on only by the simulator (docs/simulation.md).
    mutant: Option<NodeStoreMutant>,
    /// B11: the replica index this node stages (continuous backup on), if any.
    staging_replica: Option<u8>,
    /// B11: each staged segment's staged bound; garbage collection stays at or below it.
    staged: HashMap<SegmentId, Lsn>,
    /// S25: write batches whose submitter waits for a commit someone else may run, and
    /// their outcome once a commit decided it.
    awaited: HashMap<Ticket, Option<CommitOutcome>>,
    commit_stats: CommitStats,
}

/// S25: what became of an awaited write batch: its ack once durable, or why its group
/// commit failed (it stays queued for a retry, S18, but this submitter gets no ack).
pub type CommitOutcome = Result<Ack, String>;

/// Counts of the group commits run through [`NodeStore::begin_commit`] (for `sixfold
/// bench` and profiling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Commits that carried at least one batch.
    pub commits: u64,
    /// Log fsyncs they ran.
    pub fsyncs: u64,
    /// Write batches they acknowledged.
    pub acks: u64,
}

/// Deliberate bugs in the node's rules, which the simulator must catch: they live here, in
/// the machine production runs, so that the simulator's verdict is about this code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStoreMutant {
    /// S15 broken: a node serves a reader of an epoch whose truncation history it lacks.
    ReadWithoutHistory,
    /// S15 broken: a newer truncation history is merged with the held one, range by range,
    /// instead of replacing it.
    TruncationUnion,
}

/// A hosted segment as [`NodeStore::status`] shows it.
#[derive(Clone, Debug)]
pub struct HostedSegment {
    pub status: SegmentStatus,
    /// The highest LSN held, hole or not (at least the SCL).
    pub max_held: Lsn,
    /// S17, S18, S19: one line on what is wrong, empty when nothing is.
    pub problem: String,
    /// S19: it may have lost what it acknowledged and counts as no answer (X11).
    pub repairing: bool,
}

/// X1, X11: a node's answer to recovery's `RaiseEpoch`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochAnswer {
    /// Reports of the hosted segments that are not repairing.
    pub reports: Vec<SegmentReport>,
    /// S20: hosted or lost segments that must count as no answer.
    pub repairing: Vec<SegmentId>,
    /// S20: a placed segment this node does not host may be one it lost (a late node).
    pub absent_may_be_lost: bool,
    /// S23: the node's folder (0 until `node.meta` holds it).
    pub incarnation: u64,
    /// S23: the node hosts no segment and its metadata names none it ever hosted.
    pub blank: bool,
}

/// S6, S21: a peer's gossip answer, with what the asker needs to judge its repair.
#[derive(Clone, Debug)]
pub struct GossipAnswer {
    pub peer: SegmentId,
    pub epoch: Epoch,
    pub truncations: Vec<TruncationRange>,
    pub records: Vec<RedoRecord>,
    /// The peer segment's SCL when it answered (0 if it does not host it).
    pub peer_scl: Lsn,
    /// S20: the peer segment is repairing, or is absent from a node that may have lost it.
    pub peer_repairing: bool,
    /// The answer held everything the asker lacked (fewer records than a batch).
    pub complete: bool,
}

impl NodeStore {
    /// Opens (or creates) the node's folder on `disk`: `node.meta`, then the engine, which
    /// rebuilds every segment (S12). Nothing is written yet, so the caller can check the
    /// folder (its identity, where each segment is placed) before
    /// [`NodeStore::recover_segments`] acts on what the engine found.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: impl Into<PathBuf>,
        node: NodeId,
        placement: Arc<dyn SegmentPlacement>,
        config: StorageConfig,
    ) -> Result<NodeStore, NodeStoreError> {
        let dir = dir.into();
        let (epoch, truncations, repair, incarnation) = read_meta(disk.as_ref(), &dir)?;
        let engine = StorageNode::open(disk.clone(), &dir, config)?;
        Ok(NodeStore {
            node,
            dir,
            disk,
            placement,
            engine,
            epoch,
            truncations,
            writer_pgmrpl: Lsn::ZERO,
            peer_scl: HashMap::new(),
            background_steps: 0,
            repair,
            incarnation: if incarnation == 0 {
                fresh_incarnation(node)
            } else {
                incarnation
            },
            incarnation_durable: incarnation != 0,
            mutant: None,
            staging_replica: None,
            staged: HashMap::new(),
            awaited: HashMap::new(),
            commit_stats: CommitStats::default(),
        })
    }

    /// Whether the folder held anything before this open: a segment or node metadata.
    pub fn has_data(&self) -> Result<bool, NodeStoreError> {
        let meta = self.dir.join(NODE_META_FILE);
        let has_meta = read_optional(self.disk.as_ref(), &meta, META_BYTES_MAX)?.is_some();
        Ok(has_meta || !self.engine.segments().is_empty())
    }

    /// S17, S19: acts on what the engine found at open: segments rebuilt empty take the
    /// node's epoch and history; lost or rebuilt segments repair from their peers.
    pub fn recover_segments(&mut self) -> Result<(), NodeStoreError> {
        self.adopt_rebuilt()?;
        self.open_repair()
    }

    /// S19: segments rebuilt empty (S17) and segments whose directory is gone repair; a
    /// gone one is hosted again (empty) so gossip refills it.
    fn open_repair(&mut self) -> Result<(), NodeStoreError> {
        let hosted_now = self.engine.segments();
        let rebuilt = self.engine.rebuilt_segments().to_vec();
        let before = self.snapshot();
        let missing = self.repair.open(self.epoch, &hosted_now, &rebuilt);
        if self.repair != before.repair {
            self.persist_or_undo(before)?;
        }
        for segment in missing {
            tracing::error!(node = self.node.0, %segment, "S19: a segment this node hosted is gone; it is hosted again and repairs from its peers");
            self.host_in_engine(segment)?;
        }
        Ok(())
    }

    /// S17, V2: a segment the engine rebuilt empty (its metadata was lost) takes the
    /// node's truncation history and epoch, as a newly hosted one does.
    fn adopt_rebuilt(&mut self) -> Result<(), NodeStoreError> {
        for segment in self.engine.rebuilt_segments().to_vec() {
            tracing::warn!(node = self.node.0, %segment, epoch = self.epoch.0, "S17: segment metadata was lost; the segment starts empty and is refilled from its peers");
            if !self.truncations.is_empty() {
                self.engine.truncate(segment, &self.truncations)?;
            }
            if self.epoch > Epoch(0) {
                self.engine.raise_epoch(segment, self.epoch)?;
            }
        }
        Ok(())
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Switches on a deliberate bug (simulator only).
    pub fn set_mutant(&mut self, mutant: Option<NodeStoreMutant>) {
        self.mutant = mutant;
    }

    /// The engine, to inspect (status, held records, reports); changes go through the store.
    pub fn engine(&self) -> &StorageNode {
        &self.engine
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn truncations(&self) -> &[TruncationRange] {
        &self.truncations
    }

    /// S7, E2: refuses a lower epoch; persists a higher one (node and every segment)
    /// before anything acknowledges it.
    fn check_epoch(&mut self, epoch: Epoch) -> Result<(), NodeStoreError> {
        if epoch < self.epoch {
            return Err(NodeStoreError::StaleEpoch {
                got: epoch,
                seen: self.epoch,
            });
        }
        if epoch > self.epoch {
            let before = self.snapshot();
            self.epoch = epoch;
            // S19: an epoch learned first from anything but the volume's first recovery
            // makes this folder late (its caller, `raise_epoch`, decided already if it was).
            self.repair.learn_first_epoch(epoch, false);
            self.persist_or_undo(before)?;
            self.engine.raise_epoch_all(epoch)?;
        }
        Ok(())
    }

    /// E1, S7: takes an open writer's higher epoch (from its heartbeat), durably.
    pub fn adopt_epoch(&mut self, epoch: Epoch) -> Result<(), NodeStoreError> {
        self.check_epoch(epoch)
    }

    /// E1, E4, X1: recovery raises the node's epoch (strictly: two recoveries never share
    /// one) and gets the report of every hosted segment that is not repairing (S20, X11).
    pub fn raise_epoch(&mut self, epoch: Epoch) -> Result<EpochAnswer, NodeStoreError> {
        if epoch <= self.epoch {
            return Err(NodeStoreError::StaleEpoch {
                got: epoch,
                seen: self.epoch,
            });
        }
        // S19: only the volume's first recovery proves this folder was there from the start.
        let before = self.snapshot();
        self.repair.learn_first_epoch(epoch, true);
        if let Err(error) = self.check_epoch(epoch) {
            self.restore(before);
            return Err(error);
        }
        self.epoch_answer()
    }

    /// X1, X11: the answer `raise_epoch` gave, again, at the node's current epoch, for a
    /// driver whose transport lost it (the simulator: a query repeated by the same writer).
    /// An error, never a partial answer: a hosted segment missing from the answer would
    /// count as an empty report (X11).
    pub fn epoch_answer(&self) -> Result<EpochAnswer, NodeStoreError> {
        let mut answer = EpochAnswer {
            absent_may_be_lost: self.repair.absent_may_be_lost(),
            incarnation: if self.incarnation_durable {
                self.incarnation
            } else {
                0
            },
            // S23: a history alone is no past (a recovery that never wrote leaves one).
            blank: self.repair.hosted().is_empty() && self.engine.segments().is_empty(),
            ..EpochAnswer::default()
        };
        for segment in self.engine.segments() {
            if self.repair.is_repairing(segment) {
                answer.repairing.push(segment);
            } else {
                answer.reports.push(self.engine.report(segment)?);
            }
        }
        Ok(answer)
    }

    /// S19: whether `segment` is repairing.
    pub fn is_repairing(&self, segment: SegmentId) -> bool {
        self.repair.is_repairing(segment)
    }

    /// S21: an open writer of `epoch` (its heartbeat, at the node's epoch) was heard from;
    /// a repair waiting only for a writer above its loss epoch ends, durably.
    pub fn note_open_writer(&mut self, epoch: Epoch) -> Result<(), NodeStoreError> {
        if epoch != self.epoch {
            return Ok(());
        }
        let before = self.snapshot();
        let ended = self.repair.note_open_writer(epoch);
        if !ended.is_empty() {
            self.persist_or_undo(before)?;
            for segment in ended {
                tracing::info!(node = self.node.0, %segment, "S21: segment repaired: caught up with three peers, and a writer above its loss epoch opened");
            }
        }
        Ok(())
    }

    /// S20: a placed segment this node does not host may be one it lost (a late node).
    pub fn absent_may_be_lost(&self) -> bool {
        self.repair.absent_may_be_lost()
    }

    /// S19: how this node's folder began.
    pub fn birth(&self) -> Birth {
        self.repair.birth()
    }

    /// S8, S15, X5: a recovery's truncation history (its own range newest) replaces an
    /// older one in every segment, is remembered for segments created later, and is
    /// durable before this returns. A history no newer than the node's changes nothing.
    pub fn truncate(&mut self, history: &[TruncationRange]) -> Result<(), NodeStoreError> {
        // S19: the first recovery's truncation, like its `RaiseEpoch`, is sent before any
        // writer opened: a new folder it reaches first was there from the start.
        let before = self.snapshot();
        self.repair.learn_first_epoch(history_epoch(history), true);
        if let Err(error) = self.check_epoch(history_epoch(history)) {
            self.restore(before);
            return Err(error);
        }
        self.adopt_history(history)
    }

    /// S23: a genesis recovery counted this node's answer with `incarnation` and every
    /// node took its truncation: if that answer came from this folder, the folder was
    /// there before any writer could acknowledge a record, so a late node is with the
    /// volume from now on (durably, S22). Another folder's incarnation changes nothing and
    /// is refused.
    pub fn join_genesis(&mut self, incarnation: u64) -> Result<(), NodeStoreError> {
        if incarnation == 0 || incarnation != self.incarnation || !self.incarnation_durable {
            tracing::warn!(
                node = self.node.0,
                "S23: the genesis counted another folder of this node; it stays late"
            );
            return Err(NodeStoreError::NotThisFolder {
                node: self.node,
                counted: incarnation,
            });
        }
        if self.birth() == Birth::Late {
            let before = self.snapshot();
            self.repair.join_genesis();
            self.persist_or_undo(before)?;
            tracing::info!(
                node = self.node.0,
                "S23: joined the volume's genesis; no longer late"
            );
        }
        Ok(())
    }

    /// S23: this folder's incarnation, once `node.meta` holds it (0 before).
    pub fn incarnation(&self) -> u64 {
        if self.incarnation_durable {
            self.incarnation
        } else {
            0
        }
    }

    /// S15: the epoch of the truncation history this node holds.
    pub fn history_epoch(&self) -> Epoch {
        history_epoch(&self.truncations)
    }

    fn adopt_history(&mut self, history: &[TruncationRange]) -> Result<(), NodeStoreError> {
        if history_epoch(history) <= history_epoch(&self.truncations) {
            return Ok(());
        }
        if history.len() > TRUNCATIONS_MAX {
            return Err(NodeStoreError::Limit("truncation ranges"));
        }
        let history = self.mutated_history(history);
        let before = self.snapshot();
        self.truncations = history.clone();
        self.persist_or_undo(before)?;
        for segment in self.engine.segments() {
            self.engine.truncate(segment, &history)?;
        }
        Ok(())
    }

    /// Mutant truncation-union: the held ranges stay beside a newer history.
    fn mutated_history(&self, history: &[TruncationRange]) -> Vec<TruncationRange> {
        let mut merged = history.to_vec();
        if self.mutant == Some(NodeStoreMutant::TruncationUnion) {
            let kept = self.truncations.iter().filter(|t| !history.contains(t));
            merged.splice(0..0, kept.copied());
        }
        merged
    }

    /// S13, V2: hosts `segment` if the placement puts it here: created at the node's epoch
    /// with every known truncation range, oldest first (the engine refuses a range of an
    /// epoch below the segment's).
    pub fn host(&mut self, segment: SegmentId) -> Result<(), NodeStoreError> {
        if self.placement.node_of(segment) != Some(self.node) {
            return Err(NodeStoreError::WrongSegment {
                segment,
                node: self.node,
            });
        }
        if self.engine.segments().contains(&segment) {
            return Ok(());
        }
        self.host_in_engine(segment)
    }

    /// S6, V2: a peer hosts a segment of `pg`, so this node hosts its own placed segment of
    /// `pg` too (empty, if it did not yet), for gossip to fill it and to bring the PG's
    /// truncation history: no write may ever reach it otherwise (it was down while the PG
    /// was written, and writes are refused while its history is behind, S15).
    pub fn host_placed_segment_of(&mut self, pg: PgId) -> Result<(), NodeStoreError> {
        let placed = self.placement.placement(pg);
        let Some(replica) = placed.iter().position(|&node| node == self.node) else {
            return Ok(());
        };
        self.host(SegmentId {
            pg,
            replica: replica as u8,
        })
    }

    /// V2, S19: creates `segment` in the engine at the node's epoch and history; the node's
    /// metadata names it first, so a later loss of its directory is noticed.
    fn host_in_engine(&mut self, segment: SegmentId) -> Result<(), NodeStoreError> {
        let before = self.snapshot();
        if self.repair.host(segment, self.epoch) {
            self.persist_or_undo(before)?;
        }
        self.engine.host_segment(segment)?;
        if !self.truncations.is_empty() {
            self.engine.truncate(segment, &self.truncations)?;
        }
        if self.epoch > Epoch(0) {
            self.engine.raise_epoch(segment, self.epoch)?;
        }
        tracing::info!(node = self.node.0, %segment, epoch = self.epoch.0, "segment created (V2)");
        Ok(())
    }

    /// S1–S3, S7, S8, S13, W5: takes a write batch; returns the segment's SCL once the
    /// batch is durable (the engine's group commit, S2).
    pub fn write(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        vdl_hint: Lsn,
        truncation: Option<TruncationRange>,
        records: Vec<RedoRecord>,
    ) -> Result<Lsn, NodeStoreError> {
        let ticket = self.submit(segment, epoch, vdl_hint, truncation, records)?;
        self.flush()?
            .iter()
            .find(|ack| ack.ticket == ticket)
            .map(|ack| ack.scl)
            .ok_or(NodeStoreError::NoAck { segment })
    }

    /// W5, S3, S7, S8, S13: queues a write batch for the next [`NodeStore::flush`]; nothing
    /// is acknowledged before that flush made it durable (S1).
    pub fn submit(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        vdl_hint: Lsn,
        truncation: Option<TruncationRange>,
        records: Vec<RedoRecord>,
    ) -> Result<Ticket, NodeStoreError> {
        self.check_epoch(epoch)?;
        if let Some(range) = truncation
            && !self.truncations.contains(&range)
            && range.epoch > self.history_epoch()
        {
            // S15: a recovery completed that this node has not heard of; its history
            // comes by gossip from the write quorum that holds it.
            return Err(StorageError::HistoryBehind {
                segment,
                needed: range.epoch,
                held: self.history_epoch(),
            }
            .into());
        }
        self.host(segment)?;
        Ok(self
            .engine
            .submit(segment, epoch, vdl_hint, truncation, records)?)
    }

    /// S1, S2: group commit: one fsync per segment covers every batch queued since the
    /// last flush; returns their acks.
    pub fn flush(&mut self) -> Result<Vec<Ack>, NodeStoreError> {
        let outcome = self.flush_each();
        match outcome.failed.into_iter().next() {
            Some((_, error)) => Err(error.into()),
            None => Ok(outcome.acks),
        }
    }

    /// S1, S2, S18: group commit of each segment on its own: every ack that is ready, and
    /// the error of each segment whose disk refused the commit.
    pub fn flush_each(&mut self) -> FlushOutcome {
        let outcome = self.engine.flush_each();
        self.note_outcome(&outcome);
        outcome
    }

    /// S25: marks `ticket` (from [`NodeStore::submit`]) as awaited: whichever commit
    /// decides its batch — begun by this caller or another — leaves the outcome for
    /// [`NodeStore::take_outcome`].
    pub fn await_ticket(&mut self, ticket: Ticket) {
        self.awaited.insert(ticket, None);
    }

    /// S25: the outcome of an awaited batch, once a commit decided it (then forgotten).
    pub fn take_outcome(&mut self, ticket: Ticket) -> Option<CommitOutcome> {
        let outcome = self.awaited.get_mut(&ticket)?.take()?;
        self.awaited.remove(&ticket);
        Some(outcome)
    }

    /// S25: an awaited batch that no queue and no commit in flight holds any more, and
    /// that no commit decided, gets an error (so its submitter never waits forever).
    pub fn give_up_on(&mut self, ticket: Ticket, reason: &str) {
        if let Some(outcome @ None) = self.awaited.get_mut(&ticket) {
            *outcome = Some(Err(reason.to_string()));
        }
    }

    /// S1, S2, S25: the first step of a group commit that runs its fsyncs without the
    /// store: every batch queued now is written to its segment's log, and the returned job's
    /// [`CommitJob::run`] makes them durable while the caller releases its lock, so that
    /// batches arriving meanwhile — from every connection — queue for the next commit.
    /// `None` while a commit begun here is in flight (wait for its
    /// [`NodeStore::finish_commit`]). Acks come only from `finish_commit`, after the fsync.
    pub fn begin_commit(&mut self) -> Option<CommitJob> {
        self.engine.begin_commit()
    }

    /// S1, S25: applies and acknowledges what the job made durable; a segment whose fsync
    /// failed acknowledges nothing and keeps its batches queued (S18). Awaited tickets get
    /// their outcome.
    pub fn finish_commit(&mut self, job: CommitJob) -> FlushOutcome {
        let outcome = self.engine.finish_commit(job);
        if outcome.fsyncs > 0 || !outcome.acks.is_empty() || !outcome.failed.is_empty() {
            self.commit_stats.commits += 1;
        }
        self.commit_stats.fsyncs += outcome.fsyncs as u64;
        self.commit_stats.acks += outcome.acks.len() as u64;
        self.note_outcome(&outcome);
        outcome
    }

    /// A commit begun by [`NodeStore::begin_commit`] has not finished.
    pub fn commit_in_flight(&self) -> bool {
        self.engine.commit_in_flight()
    }

    pub fn commit_stats(&self) -> CommitStats {
        self.commit_stats
    }

    fn note_outcome(&mut self, outcome: &FlushOutcome) {
        if self.awaited.is_empty() {
            return;
        }
        for ack in &outcome.acks {
            if let Some(slot @ None) = self.awaited.get_mut(&ack.ticket) {
                *slot = Some(Ok(*ack));
            }
        }
        for (ticket, segment) in &outcome.failed_tickets {
            let Some(slot @ None) = self.awaited.get_mut(ticket) else {
                continue;
            };
            let reason = outcome
                .failed
                .iter()
                .find(|(failed, _)| failed == segment)
                .map_or_else(String::new, |(_, error)| error.to_string());
            *slot = Some(Err(format!("{segment}: group commit failed: {reason}")));
        }
    }

    /// S6: records of `segment` a peer that sent `request` is missing. The asker's SCL
    /// is noted to hold garbage collection below it (see the module doc).
    pub fn answer_gossip(
        &mut self,
        segment: SegmentId,
        asker: Option<NodeId>,
        request: &GossipRequest,
    ) -> Vec<RedoRecord> {
        if let Some(asker) = asker
            && let Some(replica) = self
                .placement
                .placement(segment.pg)
                .iter()
                .position(|&n| n == asker)
        {
            let peer = SegmentId {
                pg: segment.pg,
                replica: replica as u8,
            };
            let known = self.peer_scl.entry(peer).or_default();
            *known = (*known).max(request.scl);
        }
        self.engine
            .answer_gossip(segment, request)
            .unwrap_or_default()
    }

    /// S20, S21: what a gossip answer says of this node's `segment` besides its records: its
    /// SCL, and whether it is repairing (or absent from a node that may have lost it).
    pub fn gossip_standing(&self, segment: SegmentId) -> (Lsn, bool) {
        let hosted = self.engine.segments().contains(&segment);
        let scl = self
            .engine
            .segment_status(segment)
            .map_or(Lsn::ZERO, |s| s.scl);
        (scl, self.repair.answers_as_repairing(segment, hosted))
    }

    /// S6, S7: what this node's `segment` asks a peer for; `None` if not hosted.
    pub fn gossip_request(&self, segment: SegmentId) -> Option<GossipRequest> {
        self.engine.gossip_request(segment).ok()
    }

    /// S6, S7, S8, S21: merges a peer's gossip answer, durably; returns how many records
    /// the segment gained. A repairing segment notes the answer toward the end of its repair.
    pub fn merge_gossip(
        &mut self,
        segment: SegmentId,
        answer: GossipAnswer,
    ) -> Result<usize, NodeStoreError> {
        if answer.epoch != self.epoch {
            // E1, S7: epochs spread only from the writer (RaiseEpoch, WriteBatch, Truncate).
            // A peer of a lower epoch is refused; one of a higher epoch is ignored until
            // the writer raises us — were gossip to raise epochs, a recovery's RaiseEpoch
            // would find nodes already at its epoch and be refused.
            return Ok(0);
        }
        // S15: a newer truncation history replaces ours; an older one tells us nothing.
        self.adopt_history(&answer.truncations)?;
        if !self.engine.segments().contains(&segment) {
            return Ok(0);
        }
        let before = self.engine.segment_status(segment)?.records;
        self.engine
            .handle_gossip(segment, answer.epoch, &answer.truncations, answer.records)?;
        // Write batches of other connections may be queued too (S25): their acks are kept.
        if let Some((_, error)) = self.flush_each().failed.into_iter().next() {
            return Err(error.into());
        }
        let status = self.engine.segment_status(segment)?;
        let peer = PeerAnswer {
            peer: answer.peer,
            peer_repairing: answer.peer_repairing,
            complete: answer.complete,
            same_epoch: true,
            peer_scl: answer.peer_scl,
        };
        let meta_before = self.snapshot();
        if self.repair.note_answer(segment, status.scl, &peer) {
            // S21: durable before the segment is reported to any recovery.
            self.persist_or_undo(meta_before)?;
            tracing::info!(node = self.node.0, %segment, scl = status.scl.0, "S21: segment repaired: caught up with three peers, and a writer above its loss epoch opened");
        }
        Ok(status.records.saturating_sub(before))
    }

    /// R3, S9: `page` as of `read_point`, when this segment's SCL covers `pg_lsn` (the PG's
    /// last LSN at or below the read point). `None` if the page has no record by then.
    pub fn get_page(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        read_point: Lsn,
        pg_lsn: Lsn,
        page: PageId,
    ) -> Result<Option<(Lsn, Vec<u8>)>, NodeStoreError> {
        if epoch < self.epoch {
            return Err(NodeStoreError::StaleEpoch {
                got: epoch,
                seen: self.epoch,
            });
        }
        let lacks_history = self.history_epoch() < epoch
            && self.mutant != Some(NodeStoreMutant::ReadWithoutHistory);
        if epoch > self.epoch || lacks_history {
            // E2, S15: this node has not seen the reader's epoch or lacks its recovery's
            // truncation history (every recovery writes one, X4), so it may still hold
            // records that history voids: it must not serve the read.
            return Err(NodeStoreError::NotReady {
                segment,
                needed: pg_lsn,
            });
        }
        if !self.engine.segments().contains(&segment) {
            if pg_lsn == Lsn::ZERO && self.placement.node_of(segment) == Some(self.node) {
                return Ok(None);
            }
            return Err(NodeStoreError::NotReady {
                segment,
                needed: pg_lsn,
            });
        }
        let image = self
            .engine
            .get_page(segment, epoch, page, read_point, pg_lsn)?;
        if image.lsn == Lsn::ZERO {
            return Ok(None);
        }
        Ok(Some((image.lsn, image.bytes)))
    }

    /// R4: the writer's PGMRPL, from its heartbeat.
    pub fn note_writer_pgmrpl(&mut self, pgmrpl: Lsn) {
        self.writer_pgmrpl = self.writer_pgmrpl.max(pgmrpl);
    }

    /// B11: continuous backup is on and this node stages the segments of replica `replica`:
    /// garbage collection (S10) of those keeps every record above the staged bound, which
    /// is 0 until [`NodeStore::note_staged`] moves it.
    pub fn hold_for_staging(&mut self, replica: u8) {
        self.staging_replica = Some(replica);
    }

    /// B11: every record of `segment` at or below `bound` is in the backup store.
    pub fn note_staged(&mut self, segment: SegmentId, bound: Lsn) {
        let staged = self.staged.entry(segment).or_default();
        *staged = (*staged).max(bound);
    }

    /// B11: the floor staging puts under `segment`'s PGMRPL (`Lsn::MAX` if none).
    fn staging_floor(&self, segment: SegmentId) -> Lsn {
        if self.staging_replica != Some(segment.replica) {
            return Lsn(u64::MAX);
        }
        self.staged.get(&segment).copied().unwrap_or(Lsn::ZERO)
    }

    /// Each hosted segment's state, with what an operator needs beside the engine's view.
    pub fn status(&self) -> Vec<HostedSegment> {
        self.engine
            .status()
            .into_iter()
            .map(|status| {
                let max_held = self
                    .engine
                    .report(status.segment)
                    .ok()
                    .and_then(|r| r.held.last().map(|&(lsn, _, _)| lsn))
                    .unwrap_or(status.scl)
                    .max(status.scl);
                let repairing = self.repair.is_repairing(status.segment);
                HostedSegment {
                    max_held,
                    problem: segment_problem(&status, repairing),
                    repairing,
                    status,
                }
            })
            .collect()
    }

    pub fn hosted(&self) -> Vec<SegmentId> {
        self.engine.segments()
    }

    /// The engine's background work (S10, S11): PGMRPL of each segment is the writer's,
    /// held at or below the lowest SCL any replica of the PG told us (and, for a segment
    /// this node stages, at or below its staged bound, B11), then one
    /// checkpoint/flush step, and every `SCRUB_EVERY_STEPS` steps one scrub step.
    pub fn background_step(&mut self) -> Result<(), NodeStoreError> {
        for segment in self.engine.segments() {
            let own = self
                .engine
                .segment_status(segment)
                .map_or(Lsn::ZERO, |s| s.scl);
            let peers_floor = (0..SEGMENTS_PER_PG as u8)
                .filter(|&r| r != segment.replica)
                .map(|replica| {
                    let peer = SegmentId {
                        pg: segment.pg,
                        replica,
                    };
                    self.peer_scl.get(&peer).copied().unwrap_or(Lsn::ZERO)
                })
                .min()
                .unwrap_or(Lsn::ZERO);
            let pgmrpl = self
                .writer_pgmrpl
                .min(peers_floor)
                .min(own)
                .min(self.staging_floor(segment));
            self.engine.set_pgmrpl(segment, pgmrpl)?;
        }
        self.engine.background_step()?;
        self.background_steps += 1;
        if self.background_steps.is_multiple_of(SCRUB_EVERY_STEPS) {
            self.scrub_step()?;
        }
        Ok(())
    }

    /// S11: one scrub step (the background does one every `SCRUB_EVERY_STEPS` steps).
    pub fn scrub_step(&mut self) -> Result<(), NodeStoreError> {
        let scrub = self.engine.scrub_step()?;
        if scrub.damaged {
            tracing::warn!(node = self.node.0, file = ?scrub.file, "S11: scrub found damage");
        }
        Ok(())
    }

    /// What `node.meta` holds now, to undo a change whose write fails.
    fn snapshot(&self) -> MetaSnapshot {
        MetaSnapshot {
            epoch: self.epoch,
            truncations: self.truncations.clone(),
            repair: self.repair.clone(),
        }
    }

    fn restore(&mut self, before: MetaSnapshot) {
        self.epoch = before.epoch;
        self.truncations = before.truncations;
        self.repair = before.repair;
    }

    /// S22: `node.meta` is written ahead: a change is durable before the node acts on it,
    /// and a change whose write fails is undone in memory, so the node never acts on (and
    /// no later request sees) a state that a crash would take back.
    fn persist_or_undo(&mut self, before: MetaSnapshot) -> Result<(), NodeStoreError> {
        self.write_meta().inspect_err(|_| self.restore(before))?;
        self.incarnation_durable = true;
        Ok(())
    }

    fn write_meta(&self) -> Result<(), NodeStoreError> {
        let mut body = Vec::new();
        body.extend_from_slice(&META_MAGIC.to_le_bytes());
        body.extend_from_slice(&self.epoch.0.to_le_bytes());
        body.extend_from_slice(&(self.truncations.len() as u32).to_le_bytes());
        for t in &self.truncations {
            body.extend_from_slice(&t.lsn_begin.0.to_le_bytes());
            body.extend_from_slice(&t.lsn_end.0.to_le_bytes());
            body.extend_from_slice(&t.epoch.0.to_le_bytes());
        }
        // S19: the repair section (node.meta version 2).
        body.push(birth_code(self.repair.birth()));
        let hosted = self.repair.hosted();
        body.extend_from_slice(&(hosted.len() as u32).to_le_bytes());
        for segment in hosted {
            put_segment(&mut body, *segment);
        }
        let repairing: Vec<(SegmentId, Epoch)> = self.repair.repairing().collect();
        body.extend_from_slice(&(repairing.len() as u32).to_le_bytes());
        for (segment, loss_epoch) in repairing {
            put_segment(&mut body, segment);
            body.extend_from_slice(&loss_epoch.0.to_le_bytes());
        }
        // S23: the folder's incarnation.
        body.extend_from_slice(&self.incarnation.to_le_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        // A6: node metadata is the owner's alone (the disk creates private files).
        Ok(write_atomic(
            self.disk.as_ref(),
            &self.dir,
            NODE_META_FILE,
            &body,
        )?)
    }
}

/// The node's state as `node.meta` last held it, before a change.
struct MetaSnapshot {
    epoch: Epoch,
    truncations: Vec<TruncationRange>,
    repair: NodeRepair,
}

/// What `node.meta` holds: the epoch, the truncation history and the repair state.
type NodeMeta = (Epoch, Vec<TruncationRange>, NodeRepair, u64);

/// S23: a new folder's incarnation: random and nonzero, so a replaced folder never takes
/// its predecessor's. The hasher's keys come from the OS's randomness.
fn fresh_incarnation(node: NodeId) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(node.0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish().max(1)
}

fn birth_code(birth: Birth) -> u8 {
    match birth {
        Birth::Unknown => 0,
        Birth::WithVolume => 1,
        Birth::Late => 2,
    }
}

/// Reads `node.meta` (spec/formats.md). A missing file is a new folder (S19: it remembers
/// nothing, so it is not yet known to be part of the volume). Version 1 files (no repair
/// section) come from nodes that predate S19: their segments count as hosted from the start.
fn read_meta(disk: &dyn Disk, dir: &Path) -> Result<NodeMeta, NodeStoreError> {
    let path = dir.join(NODE_META_FILE);
    let Some(bytes) = read_optional(disk, &path, META_BYTES_MAX)? else {
        return Ok((Epoch(0), Vec::new(), NodeRepair::fresh(), 0));
    };
    let damaged = |reason: &str| NodeStoreError::Meta {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if bytes.len() < 20 {
        return Err(damaged("too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Err(damaged("CRC32C mismatch"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8"));
    if u32::from_le_bytes(body[0..4].try_into().expect("4")) != META_MAGIC {
        return Err(damaged("bad magic"));
    }
    let epoch = Epoch(u64_at(4));
    let count = u32::from_le_bytes(body[12..16].try_into().expect("4")) as usize;
    let ranges_end = 16 + 24 * count;
    if count > TRUNCATIONS_MAX || body.len() < ranges_end {
        return Err(damaged("truncation count does not match the file"));
    }
    let truncations = (0..count)
        .map(|i| {
            let at = 16 + 24 * i;
            TruncationRange {
                lsn_begin: Lsn(u64_at(at)),
                lsn_end: Lsn(u64_at(at + 8)),
                epoch: Epoch(u64_at(at + 16)),
            }
        })
        .collect();
    let (repair, incarnation) = if body.len() == ranges_end {
        let repair = NodeRepair::restored(Birth::WithVolume, BTreeSet::new(), BTreeMap::new());
        (repair, 0)
    } else {
        read_repair(&body[ranges_end..]).ok_or_else(|| damaged("bad repair section (S19)"))?
    };
    Ok((epoch, truncations, repair, incarnation))
}

/// The repair section of `node.meta`: birth, hosted segments, repairing segments, and
/// (S23, absent from older files) the folder's incarnation.
fn read_repair(bytes: &[u8]) -> Option<(NodeRepair, u64)> {
    let (&birth, mut rest) = bytes.split_first()?;
    let birth = match birth {
        0 => Birth::Unknown,
        1 => Birth::WithVolume,
        2 => Birth::Late,
        _ => return None,
    };
    let mut hosted = BTreeSet::new();
    for _ in 0..take_count(&mut rest)? {
        hosted.insert(take_segment(&mut rest)?);
    }
    let mut repairing = BTreeMap::new();
    for _ in 0..take_count(&mut rest)? {
        let segment = take_segment(&mut rest)?;
        let loss_epoch = Epoch(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?));
        rest = &rest[8..];
        repairing.insert(segment, loss_epoch);
    }
    let incarnation = match rest.len() {
        0 => 0,
        8 => u64::from_le_bytes(rest.try_into().ok()?),
        _ => return None,
    };
    Some((NodeRepair::restored(birth, hosted, repairing), incarnation))
}

fn put_segment(body: &mut Vec<u8>, segment: SegmentId) {
    body.extend_from_slice(&segment.pg.0.to_le_bytes());
    body.push(segment.replica);
}

fn take_count(rest: &mut &[u8]) -> Option<usize> {
    let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    *rest = &rest[4..];
    (count <= META_SEGMENTS_MAX).then_some(count)
}

fn take_segment(rest: &mut &[u8]) -> Option<SegmentId> {
    let entry = rest.get(..5)?;
    let replica = entry[4];
    if replica as usize >= SEGMENTS_PER_PG {
        return None;
    }
    let pg = PgId(u32::from_le_bytes(entry[..4].try_into().ok()?));
    *rest = &rest[5..];
    Some(SegmentId { pg, replica })
}

/// S17, S18: one line on what is wrong with a segment, empty when nothing is.
fn segment_problem(status: &SegmentStatus, repairing: bool) -> String {
    if let Some(error) = &status.write_error {
        return format!("blocked: the disk refuses writes: {error}");
    }
    match status.damage.first() {
        Some(damage) => format!("damaged ({} unrepaired): {damage}", status.damage.len()),
        None if repairing => {
            "repairing: may have lost records it acknowledged; refilled from its peers (S19)"
                .to_string()
        }
        None => String::new(),
    }
}
