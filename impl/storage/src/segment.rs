//! One hosted segment: the protocol state (`sixfold_core::SegmentState`, holding only
//! durable records), its files, its write queue, its page versions and its damage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sixfold_core::codec::{
    RECORD_FRAME_BYTES_MAX, decode_record, encode_record, record_frame_bytes,
};
use sixfold_core::redo::{apply_body, materialize};
use sixfold_core::{
    Epoch, GossipRequest, Lsn, PAGE_BYTES, PageId, PageImage, RedoRecord, SegmentId, SegmentReport,
    SegmentState, TruncationRange, VerifiedRecord, history_epoch,
};
use sixfold_pagecache::Page;

use crate::disk::Disk;
use crate::error::StorageError;
use crate::log::{LoadedLog, LogSet, LogSync};
use crate::meta::{
    META_FILE, PAGEDIR_FILE, SegmentMeta, TRUNCATIONS_MAX, encode_pagedir, read_meta, read_pagedir,
    write_atomic, write_meta,
};
use crate::node::{Ack, Cache, CacheKey, StorageConfig, Ticket};
use crate::pages::PageStore;

/// Damage found on disk that is not repaired yet (S11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// A record frame failed its CRC; its LSN is known when the header still verified.
    Record {
        path: PathBuf,
        offset: u64,
        lsn: Option<Lsn>,
    },
    /// A page version a read needs (a cover) is lost and cannot be rebuilt from the
    /// records held; repairing it needs a page copy from a peer (not built yet).
    Page { page: PageId, lsn: Lsn },
    /// S17: the segment's metadata was lost and it started again empty; repaired when a
    /// gossip round left it no hole.
    MetaLost { reason: String },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Record { path, offset, lsn } => match lsn {
                Some(lsn) => write!(f, "record {lsn} at {}:{offset}", path.display()),
                None => write!(f, "a record at {}:{offset}", path.display()),
            },
            Damage::Page { page, lsn } => write!(f, "page {page}@{lsn} lost"),
            Damage::MetaLost { reason } => {
                write!(f, "metadata lost ({reason}); rebuilding from peers")
            }
        }
    }
}

/// A batch waiting for the next group commit (S2).
#[derive(Debug)]
enum Queued {
    /// A writer's batch, acknowledged with `ticket` once durable.
    Write {
        ticket: Ticket,
        epoch: Epoch,
        vdl_hint: Lsn,
        records: Vec<VerifiedRecord>,
    },
    Gossip {
        epoch: Epoch,
        records: Vec<VerifiedRecord>,
    },
}

/// S25: batches whose log frames are written and whose fsync runs outside the node's lock;
/// applied (and acknowledged) only once it succeeded, or put back in front of the queue.
#[derive(Debug)]
struct InFlight {
    queue: Vec<Queued>,
    frames: Vec<u8>,
    lsns: Vec<Lsn>,
}

/// S25: one segment's part of a group commit, taken by [`Segment::take_commit`]: the fsync
/// to run without the segment, then [`Segment::finish_commit`].
#[derive(Debug)]
pub struct SegmentCommit {
    pub segment: SegmentId,
    log: Option<LogSync>,
}

impl SegmentCommit {
    /// The fsyncs of this part (0 when its batches carried no record).
    pub fn fsyncs(&self) -> usize {
        usize::from(self.log.is_some())
    }

    /// S1: makes the frames written at take durable; touches nothing of the segment.
    pub fn run(&self, disk: &dyn Disk) -> Result<(), StorageError> {
        match &self.log {
            Some(log) => log.run(disk),
            None => Ok(()),
        }
    }
}

/// A checkpoint in progress: page versions at `target` for `pages`, a bounded number per
/// background step (S10).
#[derive(Debug)]
struct Round {
    target: Lsn,
    pages: Vec<PageId>,
    /// `PageStore::losses` when the round began: a failed sync since then may have
    /// dropped versions this round wrote, so the round starts over.
    losses: u64,
}

/// S13, L4, L5: checks a record from outside and proves it through the codec: encoded,
/// then decoded with its CRCs, so what is stored and applied is a [`VerifiedRecord`].
pub fn verify_record(
    record: &RedoRecord,
    frames: &mut Vec<u8>,
) -> Result<VerifiedRecord, StorageError> {
    let bytes = record_frame_bytes(record);
    if bytes > RECORD_FRAME_BYTES_MAX {
        return Err(StorageError::Oversize {
            lsn: record.lsn,
            bytes,
            max: RECORD_FRAME_BYTES_MAX,
        });
    }
    if !record.body.is_well_formed() {
        return Err(StorageError::Malformed {
            lsn: record.lsn,
            reason: "body out of the page (L4)".into(),
        });
    }
    if record.lsn == Lsn::ZERO
        || record.prev_lsn_pg >= record.lsn
        || record.prev_lsn_page >= record.lsn
    {
        return Err(StorageError::Malformed {
            lsn: record.lsn,
            reason: "LSN zero or a backlink not below the LSN (L3)".into(),
        });
    }
    let start = frames.len();
    encode_record(record, frames);
    let (verified, _) = decode_record(&frames[start..]).expect("a frame we just encoded decodes");
    Ok(verified)
}

pub struct Segment {
    pub id: SegmentId,
    pub dir: PathBuf,
    pub state: SegmentState,
    /// The metadata as it is on disk.
    pub meta: SegmentMeta,
    pub vdl_hint: Lsn,
    pub pgmrpl: Lsn,
    pub logs: LogSet,
    pub pages: PageStore,
    /// Held records by page, for redo chains.
    page_records: BTreeMap<PageId, BTreeSet<Lsn>>,
    queue: Vec<Queued>,
    queued_frames: Vec<u8>,
    queued_lsns: Vec<Lsn>,
    /// S25: the batches of the group commit whose fsync is running.
    in_flight: Option<InFlight>,
    pub damage: Vec<Damage>,
    round: Option<Round>,
    /// Per page, the version a read must start at or above: older records are collected
    /// (the `pagedir` file).
    covers: BTreeMap<PageId, Lsn>,
    /// The last checkpoint that could not complete, for `status`.
    pub checkpoint_error: Option<String>,
    /// Torn tails cut at the last restart (S12).
    pub tail_cuts: usize,
    /// S18: why the last group commit failed, until one succeeds.
    pub write_error: Option<String>,
}

impl Segment {
    fn empty(id: SegmentId, dir: &Path, config: &StorageConfig, meta: SegmentMeta) -> Segment {
        Segment {
            id,
            dir: dir.to_path_buf(),
            state: SegmentState::new(id),
            vdl_hint: meta.vdl_hint,
            pgmrpl: meta.pgmrpl,
            meta,
            logs: LogSet::new(dir, config.log_file_bytes_for_pg()),
            pages: PageStore::new(dir, config.page_file_bytes_for_pg()),
            page_records: BTreeMap::new(),
            queue: Vec::new(),
            queued_frames: Vec::new(),
            queued_lsns: Vec::new(),
            in_flight: None,
            damage: Vec::new(),
            round: None,
            covers: BTreeMap::new(),
            checkpoint_error: None,
            tail_cuts: 0,
            write_error: None,
        }
    }

    /// A new segment: its directory and first metadata, durable.
    pub fn create(
        disk: &dyn Disk,
        node_dir: &Path,
        id: SegmentId,
        config: &StorageConfig,
    ) -> Result<Segment, StorageError> {
        let dir = node_dir.join(id.to_string());
        disk.create_dir(&dir)
            .map_err(StorageError::io("mkdir", &dir))?;
        disk.sync_dir(node_dir)
            .map_err(StorageError::io("fsync dir", node_dir))?;
        let meta = SegmentMeta::new(id);
        write_meta(disk, &dir, &meta)?;
        Ok(Segment::empty(id, &dir, config, meta))
    }

    /// S17: a segment whose metadata is missing or unreadable cannot trust its files (its
    /// epoch, truncation history and GC point are gone: a record it holds may be void, a
    /// hole may be a collected range). Its files are removed and it starts again empty,
    /// like a segment whose directory was deleted, marked damaged until a gossip round
    /// leaves it no hole; its peers fill it (S6).
    pub fn rebuild(
        disk: &dyn Disk,
        node_dir: &Path,
        id: SegmentId,
        config: &StorageConfig,
        reason: String,
    ) -> Result<Segment, StorageError> {
        let dir = node_dir.join(id.to_string());
        tracing::error!(segment = %id, %reason, "S17: segment metadata lost; rebuilding the segment from its peers");
        // The metadata goes first and durably: a crash part way leaves files without
        // metadata, which the next start rebuilds again, never metadata without its files.
        let mut names = disk.list(&dir).map_err(StorageError::io("list", &dir))?;
        names.sort_by_key(|name| name != META_FILE);
        for (index, name) in names.iter().enumerate() {
            let path = dir.join(name);
            disk.remove(&path)
                .map_err(StorageError::io("remove", &path))?;
            if index == 0 {
                disk.sync_dir(&dir)
                    .map_err(StorageError::io("fsync dir", &dir))?;
            }
        }
        disk.sync_dir(&dir)
            .map_err(StorageError::io("fsync dir", &dir))?;
        let mut segment = Segment::create(disk, node_dir, id, config)?;
        segment.damage.push(Damage::MetaLost { reason });
        Ok(segment)
    }

    /// S12: rebuilds a segment from its files; `Ok(None)` if the directory has no
    /// metadata (a hosting that never completed).
    pub fn open(
        disk: &dyn Disk,
        dir: &Path,
        config: &StorageConfig,
    ) -> Result<Option<Segment>, StorageError> {
        let Some(meta) = read_meta(disk, dir)? else {
            return Ok(None);
        };
        let mut segment = Segment::empty(meta.segment, dir, config, meta);
        let names = disk.list(dir).map_err(StorageError::io("list", dir))?;
        let loaded = segment
            .logs
            .load(disk, &names, config.log_read_bytes_max())?;
        let damaged_frames = segment.pages.load(disk, &names)?;
        segment.tail_cuts = loaded.iter().filter(|log| log.cut_bytes > 0).count();
        segment.restore_records(&loaded);
        segment.note_log_damage(&loaded);
        segment.relog_damaged(disk, &loaded)?;
        for frame in damaged_frames {
            tracing::error!(path = %frame.path.display(), offset = frame.offset, hint = ?frame.hint, "S11: damaged page frame");
        }
        segment.covers = read_pagedir(disk, dir)?;
        // Covers are chosen at or below the PGMRPL of their checkpoint, whose metadata
        // write may not have happened: PGMRPL was at least that high (R4: it only rises).
        let cover_max = segment.covers.values().copied().max().unwrap_or(Lsn::ZERO);
        segment.set_pgmrpl(cover_max);
        // S11: a cover that did not verify (or is gone) is rebuilt if the records allow;
        // else the page is marked damaged and never served below its next version.
        let scratch = crate::node::new_cache(PAGE_BYTES as u64 * 4, 1);
        let missing: Vec<(PageId, Lsn)> = segment
            .covers
            .iter()
            .filter(|(page, lsn)| !segment.pages.has_version(**page, **lsn))
            .map(|(&page, &lsn)| (page, lsn))
            .collect();
        for (page, lsn) in missing {
            segment.rebuild_or_mark(disk, &scratch, page, lsn)?;
        }
        // S16: versions collected before the crash come back from files not yet removed,
        // and a compaction's old files come back beside their copy: collecting again
        // against the durable PGMRPL (as the checkpoint did) removes every file left dead;
        // likewise log files whose records are all at or below the durable GC point.
        segment.pages.collect(disk, segment.meta.pgmrpl)?;
        segment
            .logs
            .collect(disk, segment.state.forgotten_through())?;
        Ok(Some(segment))
    }

    fn restore_records(&mut self, loaded: &[LoadedLog]) {
        let meta = &self.meta;
        let records = loaded
            .iter()
            .flat_map(|log| log.scan.records.iter().map(|r| r.record().clone()));
        self.state = SegmentState::restore(
            self.id,
            meta.epoch,
            meta.truncations.clone(),
            meta.forgotten_through,
            meta.vdl_hint,
            records,
        );
        for record in self.state.records() {
            self.page_records
                .entry(record.page)
                .or_default()
                .insert(record.lsn);
        }
    }

    /// S11: frames that failed in the middle of a log, and cut tails that were whole
    /// frames (media damage rather than a torn write), mark the segment damaged until the
    /// records are back.
    fn note_log_damage(&mut self, loaded: &[LoadedLog]) {
        for log in loaded {
            for &(offset, lsn) in &log.damaged_lsns {
                tracing::error!(path = %log.path.display(), offset, ?lsn, "S11: damaged record frame");
                self.damage.push(Damage::Record {
                    path: log.path.clone(),
                    offset,
                    lsn,
                });
            }
            if let Some(lsn) = log.cut_lsn {
                self.damage.push(Damage::Record {
                    path: log.path.clone(),
                    offset: log.scan.valid_bytes as u64,
                    lsn: Some(lsn),
                });
            }
        }
        self.resolve_damage(false);
    }

    /// Copies the verified records of damaged log files into a new file and removes the
    /// damaged ones, so the damage is not met again at the next restart.
    fn relog_damaged(&mut self, disk: &dyn Disk, loaded: &[LoadedLog]) -> Result<(), StorageError> {
        let damaged: Vec<&LoadedLog> = loaded
            .iter()
            .filter(|log| !log.damaged_lsns.is_empty())
            .collect();
        if damaged.is_empty() {
            return Ok(());
        }
        let mut frames = Vec::new();
        let mut lsns = Vec::new();
        for log in &damaged {
            for record in &log.scan.records {
                encode_record(record.record(), &mut frames);
                lsns.push(record.record().lsn);
            }
        }
        self.logs.append(disk, &frames, &lsns)?;
        self.logs.sync(disk)?;
        for log in damaged {
            self.logs.remove(disk, log.seq)?;
        }
        Ok(())
    }

    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty()
    }

    /// Drops damage entries that are repaired: the record is held again (or collected or
    /// voided). A record of unknown LSN is repaired when a gossip merge left no hole.
    fn resolve_damage(&mut self, after_gossip: bool) {
        let state = &self.state;
        let no_holes = state.holes().is_empty();
        self.damage.retain(|damage| match damage {
            Damage::Record { lsn: Some(lsn), .. } => {
                state.record(*lsn).is_none()
                    && *lsn > state.forgotten_through()
                    && !state.truncations().iter().any(|t| t.contains(*lsn))
            }
            Damage::Record { lsn: None, .. } | Damage::MetaLost { .. } => {
                !(after_gossip && no_holes)
            }
            Damage::Page { .. } => true,
        });
    }

    // ---- intake (S3, S7, S8, S13) ----

    /// The epoch the segment will hold once the queue (and the commit in flight) is durable.
    fn pending_epoch(&self) -> Epoch {
        self.in_flight
            .iter()
            .flat_map(|in_flight| &in_flight.queue)
            .chain(&self.queue)
            .map(|queued| match queued {
                Queued::Write { epoch, .. } | Queued::Gossip { epoch, .. } => *epoch,
            })
            .fold(self.state.epoch(), Epoch::max)
    }

    /// S15: the epoch of the truncation history the segment holds.
    pub fn history_epoch(&self) -> Epoch {
        self.state.history_epoch()
    }

    /// S15: a write batch's range must be one of the history the segment holds. A range of
    /// a newer epoch means a recovery completed that this segment has not heard of: its
    /// history (which ranges it left in force) comes from peers by gossip (S6), and until
    /// then the batch is refused, not guessed at. An older range is already part of, or
    /// overridden by, the history held.
    fn check_batch_range(&self, range: &TruncationRange) -> Result<(), StorageError> {
        if self.state.truncations().contains(range) {
            return Ok(());
        }
        let held = self.state.history_epoch();
        if range.epoch > held {
            return Err(StorageError::HistoryBehind {
                segment: self.id,
                needed: range.epoch,
                held,
            });
        }
        if range.epoch == held {
            // One recovery writes one range: another range of the same epoch is not ours.
            return Err(StorageError::BadTruncation {
                segment: self.id,
                begin: range.lsn_begin,
                end: range.lsn_end,
            });
        }
        Ok(())
    }

    fn check_epoch(&self, epoch: Epoch) -> Result<(), StorageError> {
        let seen = self.pending_epoch();
        if epoch < seen {
            return Err(StorageError::StaleEpoch {
                segment: self.id,
                got: epoch,
                seen,
            });
        }
        Ok(())
    }

    fn check_truncation(&self, range: &TruncationRange, known: usize) -> Result<(), StorageError> {
        if range.lsn_begin > range.lsn_end {
            return Err(StorageError::BadTruncation {
                segment: self.id,
                begin: range.lsn_begin,
                end: range.lsn_end,
            });
        }
        if known >= TRUNCATIONS_MAX {
            return Err(StorageError::LimitReached {
                segment: self.id,
                limit: "TRUNCATIONS_MAX",
                value: known as u64,
            });
        }
        Ok(())
    }

    /// Checks and encodes records for the queue; on any error nothing is queued.
    fn verify_batch(
        &self,
        records: &[RedoRecord],
        truncations: &[TruncationRange],
    ) -> Result<(Vec<VerifiedRecord>, Vec<u8>), StorageError> {
        let mut frames = Vec::new();
        let mut verified = Vec::with_capacity(records.len());
        for record in records {
            if record.pg != self.id.pg {
                return Err(StorageError::PgNotHosted { pg: record.pg });
            }
            if let Some(range) = truncations
                .iter()
                .find(|range| range.voids(record.lsn, record.epoch))
            {
                return Err(StorageError::Truncated {
                    segment: self.id,
                    lsn: record.lsn,
                    begin: range.lsn_begin,
                    end: range.lsn_end,
                });
            }
            let record_verified = verify_record(record, &mut frames)?;
            if self
                .state
                .record(record.lsn)
                .is_some_and(|held| held != record)
            {
                return Err(StorageError::DuplicateMismatch {
                    segment: self.id,
                    lsn: record.lsn,
                });
            }
            verified.push(record_verified);
        }
        Ok((verified, frames))
    }

    fn enqueue(&mut self, queued: Queued, frames: Vec<u8>) {
        let records = match &queued {
            Queued::Write { records, .. } | Queued::Gossip { records, .. } => records,
        };
        self.queued_lsns
            .extend(records.iter().map(|r| r.record().lsn));
        self.queued_frames.extend_from_slice(&frames);
        self.queue.push(queued);
    }

    /// Bytes queued or in flight, not yet durable.
    pub fn queued_bytes(&self) -> u64 {
        let in_flight = self.in_flight.as_ref().map_or(0, |f| f.frames.len());
        (self.queued_frames.len() + in_flight) as u64
    }

    /// Records queued or in flight, not yet durable.
    pub fn queued_records(&self) -> usize {
        let in_flight = self.in_flight.as_ref().map_or(0, |f| f.lsns.len());
        self.queued_lsns.len() + in_flight
    }

    /// The tickets of the write batches queued and not yet taken by a commit.
    pub fn queued_tickets(&self) -> Vec<Ticket> {
        tickets(&self.queue)
    }

    /// The tickets of the write batches of the commit in flight.
    pub fn in_flight_tickets(&self) -> Vec<Ticket> {
        self.in_flight
            .as_ref()
            .map_or_else(Vec::new, |in_flight| tickets(&in_flight.queue))
    }

    /// W5, S3, S7, S8, S13: queues a write batch. Nothing is applied or acknowledged until
    /// [`Segment::flush`] made it durable.
    pub fn submit(
        &mut self,
        ticket: Ticket,
        epoch: Epoch,
        vdl_hint: Lsn,
        truncation: Option<TruncationRange>,
        records: &[RedoRecord],
    ) -> Result<u64, StorageError> {
        self.check_epoch(epoch)?;
        if let Some(range) = truncation {
            if range.epoch != epoch {
                // The range is written by the batch's writer (X4).
                self.check_epoch(range.epoch)?;
            }
            self.check_batch_range(&range)?;
        }
        let (records, frames) = self.verify_batch(records, self.state.truncations())?;
        let bytes = frames.len() as u64;
        self.enqueue(
            Queued::Write {
                ticket,
                epoch,
                vdl_hint,
                records,
            },
            frames,
        );
        Ok(bytes)
    }

    /// S6, S7, S15: a peer's gossip answer. A newer truncation history than ours is
    /// adopted first, durably (as a recovery's would be); the records are queued and merged
    /// once durable.
    pub fn submit_gossip(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        peer_epoch: Epoch,
        history: &[TruncationRange],
        records: &[RedoRecord],
    ) -> Result<u64, StorageError> {
        self.check_epoch(peer_epoch)?;
        if history_epoch(history) > self.state.history_epoch() {
            self.adopt_history(disk, cache, history)?;
        }
        let (records, frames) = self.verify_batch_lenient(records, self.state.truncations())?;
        let bytes = frames.len() as u64;
        self.enqueue(
            Queued::Gossip {
                epoch: peer_epoch,
                records,
            },
            frames,
        );
        Ok(bytes)
    }

    /// Gossip answers may carry records we already hold or that are void here: those are
    /// skipped rather than failing the merge; anything malformed still fails it (L5).
    fn verify_batch_lenient(
        &self,
        records: &[RedoRecord],
        truncations: &[TruncationRange],
    ) -> Result<(Vec<VerifiedRecord>, Vec<u8>), StorageError> {
        let wanted: Vec<RedoRecord> = records
            .iter()
            .filter(|r| self.state.record(r.lsn).is_none())
            .filter(|r| r.lsn > self.state.forgotten_through())
            .filter(|r| !truncations.iter().any(|t| t.voids(r.lsn, r.epoch)))
            .cloned()
            .collect();
        self.verify_batch(&wanted, truncations)
    }

    // ---- group commit (S1, S2, S7, S8) ----

    /// Makes the queue durable and applies it; returns one ack per write batch. On error
    /// the queue stays, nothing is applied and nothing is acknowledged. A segment whose
    /// commit is in flight (S25) is left alone: its queue waits for the next commit.
    pub fn flush(&mut self, disk: &dyn Disk, cache: &Cache) -> Result<Vec<Ack>, StorageError> {
        let Some(commit) = self.take_commit(disk)? else {
            return Ok(Vec::new());
        };
        let synced = commit.run(disk);
        self.finish_commit(cache, commit, synced)
    }

    /// S18: refuses to queue more while the last group commit failed, after one retry.
    pub fn check_writable(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
    ) -> Result<Vec<Ack>, StorageError> {
        if self.write_error.is_none() {
            return Ok(Vec::new());
        }
        self.flush(disk, cache)
            .map_err(|error| StorageError::SegmentBlocked {
                segment: self.id,
                reason: error.to_string(),
            })
    }

    /// S1, S2, S25: the first step of a group commit: every batch queued now is written to
    /// the log (not yet durable) and held in flight; its fsync runs through the returned
    /// part, without the segment, while new batches queue for the next commit. `None` when
    /// nothing is queued or a commit is already in flight. On error the queue stays.
    pub fn take_commit(&mut self, disk: &dyn Disk) -> Result<Option<SegmentCommit>, StorageError> {
        if self.queue.is_empty() || self.in_flight.is_some() {
            return Ok(None);
        }
        let taken = self.write_queue(disk);
        if let Err(error) = &taken {
            self.write_error = Some(error.to_string());
        }
        let log = taken?;
        self.in_flight = Some(InFlight {
            queue: std::mem::take(&mut self.queue),
            frames: std::mem::take(&mut self.queued_frames),
            lsns: std::mem::take(&mut self.queued_lsns),
        });
        Ok(Some(SegmentCommit {
            segment: self.id,
            log,
        }))
    }

    /// S7 then the frames: the metadata a queued epoch needs, durably, and the queue's
    /// frames appended to the active log; returns the log's fsync job.
    fn write_queue(&mut self, disk: &dyn Disk) -> Result<Option<LogSync>, StorageError> {
        self.persist_meta_for_queue(disk)?;
        if self.queued_frames.is_empty() {
            return Ok(None);
        }
        self.logs
            .append(disk, &self.queued_frames, &self.queued_lsns)?;
        self.logs.sync_job()
    }

    /// S1, S25: the last step of a group commit, given its fsync's outcome. Durable: the
    /// batches in flight are applied in queue order and acknowledged. Not durable: nothing
    /// is applied or acknowledged, the log file is sealed (the fsync may have dropped its
    /// pages) and the batches go back in front of the queue for a retry (S18).
    pub fn finish_commit(
        &mut self,
        cache: &Cache,
        commit: SegmentCommit,
        synced: Result<(), StorageError>,
    ) -> Result<Vec<Ack>, StorageError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(Vec::new());
        };
        if let Some(log) = &commit.log {
            self.logs.sync_done(log, synced.is_ok());
        }
        if let Err(error) = synced {
            self.write_error = Some(error.to_string());
            self.put_back(in_flight);
            return Err(error);
        }
        self.write_error = None;
        Ok(self.apply_durable(cache, in_flight.queue))
    }

    /// S18: a failed commit's batches, in front of what queued since, for the retry.
    fn put_back(&mut self, mut in_flight: InFlight) {
        in_flight.queue.append(&mut self.queue);
        in_flight.frames.extend_from_slice(&self.queued_frames);
        in_flight.lsns.extend_from_slice(&self.queued_lsns);
        self.queue = in_flight.queue;
        self.queued_frames = in_flight.frames;
        self.queued_lsns = in_flight.lsns;
    }

    /// Durable batches applied in queue order; one ack per write batch.
    fn apply_durable(&mut self, cache: &Cache, queue: Vec<Queued>) -> Vec<Ack> {
        let mut tickets = Vec::new();
        let mut gossiped = false;
        for queued in queue {
            match queued {
                Queued::Write {
                    ticket,
                    epoch,
                    vdl_hint,
                    records,
                } => {
                    tickets.push(ticket);
                    self.apply_write(cache, epoch, vdl_hint, records);
                }
                Queued::Gossip { epoch, records } => {
                    gossiped = true;
                    self.apply_gossip(epoch, cache, records);
                }
            }
        }
        self.resolve_damage(gossiped);
        let (scl, epoch) = (self.state.scl(), self.state.epoch());
        tickets
            .into_iter()
            .map(|ticket| Ack {
                ticket,
                segment: self.id,
                scl,
                epoch,
            })
            .collect()
    }

    /// S7: a higher epoch is durable before the records of the batch that carries it, and
    /// so before any ack. (Truncation histories are made durable when adopted, S15.)
    fn persist_meta_for_queue(&mut self, disk: &dyn Disk) -> Result<(), StorageError> {
        let mut meta = self.meta.clone();
        meta.epoch = self.pending_epoch();
        let hint = self
            .queue
            .iter()
            .fold(self.vdl_hint, |hint, queued| match queued {
                Queued::Write { vdl_hint, .. } => hint.max(*vdl_hint),
                Queued::Gossip { .. } => hint,
            });
        if meta.epoch == self.meta.epoch && meta.truncations == self.meta.truncations {
            return Ok(()); // the VDL hint alone is persisted lazily, with checkpoints
        }
        meta.vdl_hint = hint;
        meta.pgmrpl = self.meta.pgmrpl;
        write_meta(disk, &self.dir, &meta)?;
        self.meta = meta;
        Ok(())
    }

    fn apply_write(
        &mut self,
        cache: &Cache,
        epoch: Epoch,
        vdl_hint: Lsn,
        records: Vec<VerifiedRecord>,
    ) {
        self.vdl_hint = self.vdl_hint.max(vdl_hint);
        if records.is_empty()
            && let Err(error) = self.state.raise_epoch(epoch)
        {
            tracing::warn!(segment = %self.id, %error, "epoch raise refused at apply");
        }
        for record in records {
            let record = record.into_record();
            match self.state.handle_write(epoch, vdl_hint, record.clone()) {
                Ok(accepted) if accepted.inserted => self.on_inserted(cache, &record),
                Ok(_) => {}
                Err(error) => tracing::warn!(segment = %self.id, %error, "record refused at apply"),
            }
        }
    }

    fn apply_gossip(&mut self, epoch: Epoch, cache: &Cache, records: Vec<VerifiedRecord>) {
        if let Err(error) = self.state.raise_epoch(epoch) {
            tracing::warn!(segment = %self.id, %error, "gossip epoch refused at apply");
            return;
        }
        for record in records {
            let record = record.into_record();
            // Gossip carries no VDL hint: 0 leaves ours as it is.
            match self.state.handle_write(epoch, Lsn::ZERO, record.clone()) {
                Ok(accepted) if accepted.inserted => self.on_inserted(cache, &record),
                Ok(_) => {}
                Err(error) => tracing::warn!(segment = %self.id, %error, "gossiped record refused"),
            }
        }
    }

    /// S8, S15: adopts a newer truncation history in the state, the page chains and the
    /// cache. The caller made it durable first.
    fn apply_history(&mut self, cache: &Cache, history: &[TruncationRange]) {
        let pages: Vec<PageId> = self
            .state
            .records()
            .filter(|r| history.iter().any(|range| range.voids(r.lsn, r.epoch)))
            .map(|r| r.page)
            .collect();
        let voided = self.state.adopt_history(history);
        for page in &pages {
            if let Some(lsns) = self.page_records.get_mut(page) {
                lsns.retain(|lsn| !voided.contains(lsn));
            }
            // A cached page may include a voided record.
            self.uncache(cache, *page);
        }
        self.round = None;
    }

    fn uncache(&self, cache: &Cache, page: PageId) {
        let key = CacheKey {
            segment: self.id,
            page,
        };
        cache
            .remove(&key)
            .expect("the engine holds no pin between calls, and loads run inside calls");
    }

    /// "Redo is applied to cached pages first": a cached page at the record's predecessor
    /// takes it, and then any held successors that chain on.
    fn on_inserted(&mut self, cache: &Cache, record: &RedoRecord) {
        self.page_records
            .entry(record.page)
            .or_default()
            .insert(record.lsn);
        let key = CacheKey {
            segment: self.id,
            page: record.page,
        };
        let Some(meta) = cache.peek(&key) else {
            return;
        };
        let mut at = Lsn(meta.lsn);
        let chain = self.page_records.get(&record.page).expect("inserted above");
        for &lsn in chain.range(at.next()..) {
            let Some(next) = self.state.record(lsn) else {
                break;
            };
            if next.prev_lsn_page != at {
                break; // a hole in the page's chain: the cache waits at `at`
            }
            if cache
                .apply(&key, lsn.0, |bytes| apply_body(bytes, &next.body))
                .is_err()
            {
                break;
            }
            at = lsn;
        }
    }

    // ---- epochs, truncation, gossip, report (S5–S8, X1) ----

    /// E1, S7: raises the epoch durably.
    pub fn raise_epoch(&mut self, disk: &dyn Disk, epoch: Epoch) -> Result<(), StorageError> {
        self.check_epoch(epoch)?;
        if epoch == self.state.epoch() {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        meta.epoch = epoch;
        meta.vdl_hint = self.vdl_hint;
        write_meta(disk, &self.dir, &meta)?;
        self.meta = meta;
        self.state.raise_epoch(epoch).map_err(StorageError::from)?;
        Ok(())
    }

    /// S8, S15, X5: makes a recovery's truncation history durable, then adopts it. A
    /// history no newer than the one held changes nothing.
    pub fn truncate(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        history: &[TruncationRange],
    ) -> Result<(), StorageError> {
        self.check_epoch(history_epoch(history))?;
        if history_epoch(history) <= self.state.history_epoch() {
            return Ok(());
        }
        self.adopt_history(disk, cache, history)
    }

    /// S15: the history, checked and durable, then applied.
    fn adopt_history(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        history: &[TruncationRange],
    ) -> Result<(), StorageError> {
        for (count, range) in history.iter().enumerate() {
            self.check_truncation(range, count)?;
        }
        let mut meta = self.meta.clone();
        meta.epoch = meta.epoch.max(history_epoch(history));
        meta.truncations = Vec::with_capacity(history.len());
        for range in history {
            if !meta.truncations.contains(range) {
                meta.truncations.push(*range);
            }
        }
        meta.vdl_hint = self.vdl_hint;
        write_meta(disk, &self.dir, &meta)?;
        self.meta = meta;
        if let Err(error) = self.state.raise_epoch(history_epoch(history)) {
            tracing::warn!(segment = %self.id, %error, "history epoch refused at apply");
        }
        self.apply_history(cache, history);
        Ok(())
    }

    pub fn gossip_request(&self) -> GossipRequest {
        self.state.gossip_request()
    }

    pub fn answer_gossip(&self, request: &GossipRequest) -> Vec<RedoRecord> {
        self.state.answer_gossip(request)
    }

    pub fn report(&self) -> SegmentReport {
        let mut report = self.state.report();
        report.vdl_hint = report.vdl_hint.max(self.vdl_hint);
        report
    }

    // ---- reads (R3, S9, S11) ----

    /// R3: the page exactly as of `read_lsn`.
    pub fn get_page(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        page: PageId,
        read_lsn: Lsn,
        required_lsn: Lsn,
    ) -> Result<PageImage, StorageError> {
        if read_lsn < self.pgmrpl {
            return Err(StorageError::BelowPgmrpl {
                segment: self.id,
                read_lsn,
                pgmrpl: self.pgmrpl,
            });
        }
        if required_lsn > read_lsn {
            return Err(StorageError::RequiredAboveReadPoint {
                segment: self.id,
                required: required_lsn,
                read_lsn,
            });
        }
        if required_lsn > self.state.scl() {
            return Err(StorageError::NotCaughtUp {
                segment: self.id,
                required: required_lsn,
                scl: self.state.scl(),
            });
        }
        match self.build_page(disk, cache, page, read_lsn) {
            // S11: a version that failed its check on this read is dropped (and rebuilt
            // if the records allow); one retry then uses what is left.
            Err(StorageError::Corrupt {
                path,
                offset,
                reason,
            }) => {
                tracing::error!(path = %path.display(), offset, reason, "S11: page version failed its check on read");
                self.on_damaged_version(disk, cache, page, path, offset)?;
                self.build_page(disk, cache, page, read_lsn)
            }
            Err(StorageError::PageUnavailable { .. })
                if self.drop_void_base(cache, page, read_lsn) =>
            {
                self.build_page(disk, cache, page, read_lsn)
            }
            other => other,
        }
    }

    /// S14: a cached page or stored version whose LSN is a record this segment has since
    /// learned was void (a recovery it missed truncated it) is a bad base: drop it so the
    /// page is rebuilt from an older base. Returns whether one was dropped.
    fn drop_void_base(&mut self, cache: &Cache, page: PageId, read_lsn: Lsn) -> bool {
        if !self.damage.is_empty() {
            // A record missing through damage is not void: keep every base until repaired.
            return false;
        }
        let void = |lsn: Lsn, state: &SegmentState| {
            lsn > state.forgotten_through() && state.record(lsn).is_none()
        };
        let mut dropped = false;
        let key = CacheKey {
            segment: self.id,
            page,
        };
        if let Some(meta) = cache.peek(&key)
            && Lsn(meta.lsn) <= read_lsn
            && void(Lsn(meta.lsn), &self.state)
        {
            self.uncache(cache, page);
            dropped = true;
        }
        while let Some((version_lsn, _)) = self.pages.newest_at_or_below(page, read_lsn) {
            if !void(version_lsn, &self.state) {
                break;
            }
            tracing::warn!(segment = %self.id, %page, %version_lsn, "S14: page version built on a void record dropped");
            self.pages.drop_version(page, version_lsn);
            dropped = true;
        }
        dropped
    }

    /// The page as of `lsn` from the best base (cached or stored version ≤ `lsn`) plus
    /// the page's held records up to `lsn` (S9).
    fn build_page(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        page: PageId,
        lsn: Lsn,
    ) -> Result<PageImage, StorageError> {
        let key = CacheKey {
            segment: self.id,
            page,
        };
        let stored = self.pages.newest_at_or_below(page, lsn);
        let cached = cache.get(&key).and_then(|guard| {
            let read = guard.read();
            (Lsn(read.lsn()) <= lsn).then(|| (Lsn(read.lsn()), read.bytes().to_vec()))
        });
        let stored_lsn = stored.map(|(l, _)| l);
        let (base_lsn, base, from_cache) = match (cached, stored) {
            (Some((cached_lsn, bytes)), _) if Some(cached_lsn) >= stored_lsn => {
                (cached_lsn, bytes, true)
            }
            (_, Some((version_lsn, loc))) => (
                version_lsn,
                self.pages.read(disk, page, version_lsn, loc)?.bytes,
                false,
            ),
            (_, None) => (Lsn::ZERO, vec![0; PAGE_BYTES], false),
        };
        if let Some(&cover) = self.covers.get(&page)
            && base_lsn < cover
        {
            return Err(self.unavailable(
                page,
                lsn,
                format!("version {cover} is missing and the records below it are collected"),
            ));
        }
        let chain = self.page_records.get(&page);
        let records = chain
            .into_iter()
            .filter(|_| base_lsn < lsn)
            .flat_map(|lsns| lsns.range(base_lsn.next()..=lsn))
            .filter_map(|l| self.state.record(*l));
        let (bytes, page_lsn) = materialize(&base, base_lsn, records, lsn)
            .map_err(|error| self.unavailable(page, lsn, error.to_string()))?;
        let image = PageImage {
            page,
            lsn: page_lsn,
            bytes,
        };
        if !(from_cache && page_lsn == base_lsn) {
            self.cache_if_latest(cache, &image);
        }
        Ok(image)
    }

    fn unavailable(&self, page: PageId, read_lsn: Lsn, reason: String) -> StorageError {
        StorageError::PageUnavailable {
            segment: self.id,
            page,
            read_lsn,
            reason,
        }
    }

    /// Caches a page built at the newest of its held records, so later redo lands on it.
    fn cache_if_latest(&self, cache: &Cache, image: &PageImage) {
        let latest = self
            .page_records
            .get(&image.page)
            .and_then(|lsns| lsns.last())
            .is_none_or(|&last| last <= image.lsn);
        if !latest {
            return;
        }
        let key = CacheKey {
            segment: self.id,
            page: image.page,
        };
        let bytes = image.bytes.clone().into_boxed_slice();
        let page = if self.pages.has_version(image.page, image.lsn) || image.lsn == Lsn::ZERO {
            Page::clean(image.lsn.0, bytes)
        } else {
            Page::dirty(image.lsn.0, bytes)
        };
        drop(cache.insert(&key, page));
    }

    // ---- background: flusher, checkpoint, GC (S10) ----

    /// The highest LSN a page version may include: complete (SCL) and never to be
    /// truncated (≤ the VDL hint, X4 truncates only above VDL).
    pub fn durable_bound(&self) -> Lsn {
        self.state.scl().min(self.vdl_hint)
    }

    /// Writes one dirty cached page as a version, if it is within the durable bound.
    /// Returns whether a version was appended.
    pub fn flush_cached(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        page: PageId,
        lsn: Lsn,
    ) -> Result<bool, StorageError> {
        if lsn > self.durable_bound() {
            return Ok(false);
        }
        if self.pages.has_version(page, lsn) {
            return Ok(false);
        }
        let key = CacheKey {
            segment: self.id,
            page,
        };
        let Some(snapshot) = cache.snapshot_for_flush(&key) else {
            return Ok(false);
        };
        if Lsn(snapshot.lsn) > self.durable_bound() {
            return Ok(false);
        }
        let image = PageImage {
            page,
            lsn: Lsn(snapshot.lsn),
            bytes: snapshot.bytes.into_vec(),
        };
        self.pages.append(disk, &image)?;
        Ok(true)
    }

    /// One bounded piece of a checkpoint (S10): versions for up to `pages_max` pages at
    /// the round's target; when the round is done, the checkpoint is made durable and
    /// records and versions below it are collected. Returns the pages materialized.
    pub fn checkpoint_step(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        pages_max: usize,
    ) -> Result<usize, StorageError> {
        let target = self.durable_bound().min(self.pgmrpl);
        if self.round.is_none() {
            if target <= self.meta.checkpoint {
                return Ok(0);
            }
            let from = self.meta.checkpoint;
            let pages: Vec<PageId> = self
                .page_records
                .iter()
                .filter(|(_, lsns)| lsns.range(from.next()..=target).next().is_some())
                .map(|(&page, _)| page)
                .collect();
            self.round = Some(Round {
                target,
                pages,
                losses: self.pages.losses,
            });
        }
        let round = self.round.as_mut().expect("set above");
        let target = round.target;
        let take = round.pages.len().min(pages_max);
        let batch: Vec<PageId> = round.pages.drain(..take).collect();
        for &page in &batch {
            if let Err(error) = self.materialize_version(disk, cache, page, target) {
                // The round cannot finish without this page: start over later.
                self.round = None;
                self.checkpoint_error = Some(error.to_string());
                return Err(error);
            }
        }
        let round = self.round.as_ref().expect("still set");
        if round.losses != self.pages.losses {
            self.round = None; // versions it wrote may be gone: build them again
        } else if round.pages.is_empty() {
            let losses = round.losses;
            self.round = None;
            self.finish_checkpoint(disk, target, losses)?;
        }
        Ok(batch.len())
    }

    fn materialize_version(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        page: PageId,
        target: Lsn,
    ) -> Result<(), StorageError> {
        let image = match self.build_page(disk, cache, page, target) {
            Err(StorageError::Corrupt { path, offset, .. }) => {
                self.on_damaged_version(disk, cache, page, path, offset)?;
                self.build_page(disk, cache, page, target)?
            }
            other => other?,
        };
        if !self.pages.has_version(page, image.lsn) {
            self.pages.append(disk, &image)?;
        }
        Ok(())
    }

    fn finish_checkpoint(
        &mut self,
        disk: &dyn Disk,
        target: Lsn,
        losses: u64,
    ) -> Result<(), StorageError> {
        self.pages.sync(disk)?;
        assert_eq!(self.pages.losses, losses, "a failed sync returns an error");
        let through = target.min(self.state.scl());
        let forgotten = self
            .state
            .records()
            .take_while(|r| r.lsn <= through)
            .last()
            .map_or(self.state.forgotten_through(), |r| r.lsn);
        // Covers first: they name versions already durable, and a read needs them from the
        // moment records are collected.
        let covers = self.covers_after(forgotten);
        write_atomic(disk, &self.dir, PAGEDIR_FILE, &encode_pagedir(&covers))?;
        self.covers = covers;
        let mut meta = self.meta.clone();
        meta.checkpoint = target;
        meta.forgotten_through = forgotten;
        meta.pgmrpl = self.pgmrpl;
        meta.vdl_hint = self.vdl_hint;
        write_meta(disk, &self.dir, &meta)?;
        self.meta = meta;
        self.checkpoint_error = None;
        self.state.forget_through(target);
        assert_eq!(
            self.state.forgotten_through(),
            forgotten,
            "S10: GC point as persisted"
        );
        for lsns in self.page_records.values_mut() {
            *lsns = lsns.split_off(&forgotten.next());
        }
        self.page_records.retain(|_, lsns| !lsns.is_empty());
        self.logs.collect(disk, forgotten)?;
        // Versions are collected against the PGMRPL that is durable in the metadata, so a
        // restart never serves a read point whose base version is gone.
        self.pages.collect(disk, self.meta.pgmrpl)?;
        Ok(())
    }

    /// The covers once records ≤ `forgotten` are collected and versions below PGMRPL too:
    /// for each page with history at or below `forgotten`, its newest version ≤ PGMRPL
    /// (the one version collection keeps, S10).
    fn covers_after(&self, forgotten: Lsn) -> BTreeMap<PageId, Lsn> {
        let mut covers = self.covers.clone();
        for (&page, versions) in &self.pages.index {
            if versions.range(..=forgotten).next().is_none() {
                continue;
            }
            if let Some((&lsn, _)) = versions.range(..=self.pgmrpl).next_back() {
                let cover = covers.entry(page).or_insert(lsn);
                *cover = (*cover).max(lsn);
            }
        }
        covers
    }

    // ---- scrub (S11) ----

    /// Verifies one log file against what it should hold; on damage, writes the records
    /// it held (still in memory, verified on intake) to the active log and removes it.
    pub fn scrub_log(
        &mut self,
        disk: &dyn Disk,
        seq: u64,
        read_bytes_max: u64,
    ) -> Result<bool, StorageError> {
        let Some(info) = self.logs.files.get(&seq).cloned() else {
            return Ok(false);
        };
        if self.in_flight.is_some() && self.logs.active_seq() == Some(seq) {
            // S25: its in-flight frames are in no record set yet; scrub it next time.
            return Ok(false);
        }
        let path = self.logs.path(seq);
        let file = disk
            .open(&path, crate::disk::OpenMode::Existing)
            .map_err(StorageError::io("open", &path))?;
        let bytes = crate::disk::read_all(file.as_ref(), read_bytes_max)
            .map_err(StorageError::io("read", &path))?;
        let scan = sixfold_core::codec::scan_log(&bytes);
        let whole = (scan.valid_bytes as u64) >= info.bytes && scan.damaged_at.is_empty();
        if whole {
            return Ok(false);
        }
        tracing::error!(path = %path.display(), damaged_at = ?scan.damaged_at, "S11: scrub found a damaged log file");
        let mut frames = Vec::new();
        let mut lsns = Vec::new();
        for lsn in &info.lsns {
            if let Some(record) = self.state.record(*lsn) {
                encode_record(record, &mut frames);
                lsns.push(*lsn);
            }
        }
        if self.logs.active_seq() == Some(seq) {
            self.logs.seal();
        }
        if !frames.is_empty() {
            self.logs.append(disk, &frames, &lsns)?;
            self.logs.sync(disk)?;
        }
        self.logs.remove(disk, seq)?;
        Ok(true)
    }

    /// Verifies every version of one page file; damaged ones are dropped and rebuilt.
    pub fn scrub_pages(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        seq: u64,
    ) -> Result<bool, StorageError> {
        let mut found = false;
        for (page, lsn, loc) in self.pages.versions_in(seq) {
            if let Err(StorageError::Corrupt { path, offset, .. }) =
                self.pages.read(disk, page, lsn, loc)
            {
                found = true;
                self.on_damaged_version(disk, cache, page, path, offset)?;
            }
        }
        Ok(found)
    }

    /// A frame failed its check: forget the version(s) it held, rebuild them from older
    /// versions and records if possible, else record the page as damaged.
    fn on_damaged_version(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        page: PageId,
        path: PathBuf,
        offset: u64,
    ) -> Result<(), StorageError> {
        let lost: Vec<Lsn> = self
            .pages
            .index
            .get(&page)
            .map(|versions| {
                versions
                    .iter()
                    .filter(|(_, loc)| self.pages.path(loc.seq) == path && loc.offset == offset)
                    .map(|(&lsn, _)| lsn)
                    .collect()
            })
            .unwrap_or_default();
        for lsn in lost {
            self.pages.drop_version(page, lsn);
            self.rebuild_or_mark(disk, cache, page, lsn)?;
        }
        Ok(())
    }

    fn rebuild_or_mark(
        &mut self,
        disk: &dyn Disk,
        cache: &Cache,
        page: PageId,
        lsn: Lsn,
    ) -> Result<(), StorageError> {
        match self.build_page(disk, cache, page, lsn) {
            Ok(image) if image.lsn == lsn => {
                self.pages.append(disk, &image)?;
                self.pages.sync(disk)?;
                tracing::warn!(segment = %self.id, %page, %lsn, "S11: damaged page version rebuilt");
            }
            _ if self.covers.get(&page) == Some(&lsn) => {
                tracing::error!(segment = %self.id, %page, %lsn, "S11: damaged page version cannot be rebuilt");
                self.damage.push(Damage::Page { page, lsn });
            }
            // Not a cover: reads start from an older version and the records above it.
            _ => {
                tracing::warn!(segment = %self.id, %page, %lsn, "S11: damaged page version dropped")
            }
        }
        Ok(())
    }

    pub fn record_count(&self) -> usize {
        self.state.records().count()
    }

    pub fn set_pgmrpl(&mut self, lsn: Lsn) {
        // R4: PGMRPL only rises; an older value arriving late is ignored.
        self.pgmrpl = self.pgmrpl.max(lsn);
    }

    pub fn page_record_count(&self, page: PageId) -> usize {
        self.page_records.get(&page).map_or(0, BTreeSet::len)
    }
}

fn tickets(queue: &[Queued]) -> Vec<Ticket> {
    queue
        .iter()
        .filter_map(|queued| match queued {
            Queued::Write { ticket, .. } => Some(*ticket),
            Queued::Gossip { .. } => None,
        })
        .collect()
}
