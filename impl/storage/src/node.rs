//! The storage node: many segments under one data directory, one page cache, and the
//! synchronous, shell-agnostic API the networked server and the simulator drive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sixfold_core::codec::{PAGE_FRAME_BYTES, RECORD_FRAME_BYTES_MAX, record_frame_bytes};
use sixfold_core::{
    Epoch, Geometry, GossipRequest, Lsn, PAGE_BYTES, PageId, PageImage, PgId, RedoRecord,
    SegmentId, SegmentReport, TruncationRange,
};
use sixfold_pagecache::{CacheStats, EntryMeta, PageCache};

use crate::disk::Disk;
use crate::error::StorageError;
use crate::log::parse_log_name;
use crate::meta::{META_FILE, PAGEDIR_FILE, read_meta};
use crate::pages::parse_page_file_name;
use crate::segment::{Damage, Segment, SegmentCommit};

/// The page cache of a node: one entry per (segment, page).
pub type Cache = PageCache<CacheKey, fn(&EntryMeta) -> bool>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub segment: SegmentId,
    pub page: PageId,
}

/// Every cached page may be evicted, dirty ones too: the records a dirty page was built
/// from stay in the log until a checkpoint wrote a version that covers them, so an
/// evicted page is rebuilt, never lost. Keeping dirty pages resident instead would let
/// the cache grow without bound while the VDL hint stalls (the flusher may only write
/// pages at or below it).
fn evict_any(_: &EntryMeta) -> bool {
    true
}

pub(crate) fn new_cache(capacity_bytes: u64, shards: usize) -> Cache {
    PageCache::new(capacity_bytes, shards, evict_any as fn(&EntryMeta) -> bool)
        .expect("cache configuration checked by StorageConfig::validate")
}

/// Tunables, each a limit with its unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// A log file rolls over once it would pass this size.
    pub log_file_bytes_max: u64,
    /// A page file rolls over once it would pass this size.
    pub page_file_bytes_max: u64,
    /// Bytes of record frames queued for the next group commit, over all segments;
    /// beyond it `submit` refuses (back-pressure).
    pub queue_bytes_max: u64,
    pub cache_bytes: u64,
    pub cache_shards: usize,
    /// Pages a checkpoint materializes per `background_step`, over all segments.
    pub checkpoint_pages_per_step: usize,
    /// Dirty cached pages the flusher writes per `background_step`.
    pub flush_pages_per_step: usize,
    /// How pages map to PGs (W2), to refuse reads of another PG's page.
    pub geometry: Geometry,
}

/// Pages per PG when the caller does not say: 10 GiB of 4 KiB pages, Aurora's slice.
pub const PG_PAGES_DEFAULT: u32 = (10 * (1u64 << 30) / PAGE_BYTES as u64) as u32;

/// Shards of the default cache: a few per core of a small machine.
const CACHE_SHARDS_DEFAULT: usize = 16;

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            log_file_bytes_max: 64 << 20,
            page_file_bytes_max: 64 << 20,
            queue_bytes_max: 16 << 20,
            cache_bytes: 256 << 20,
            cache_shards: CACHE_SHARDS_DEFAULT,
            checkpoint_pages_per_step: 256,
            flush_pages_per_step: 256,
            geometry: Geometry {
                pg_pages: PG_PAGES_DEFAULT,
            },
        }
    }
}

impl StorageConfig {
    /// The most a log file can hold: a roll-over happens before a batch, so a file can
    /// pass its maximum by one group commit, or by one scrub or restart repair copy.
    pub fn log_read_bytes_max(&self) -> u64 {
        2 * self.log_file_bytes_max + self.queue_bytes_max
    }

    /// S16: a page file rolls over at a quarter of the PG's page bytes, at least 16 frames
    /// and at most `page_file_bytes_max`, so a small PG never keeps a large file.
    pub fn page_file_bytes_for_pg(&self) -> u64 {
        let quarter = self.pg_bytes() / 4;
        quarter
            .max(16 * PAGE_FRAME_BYTES as u64)
            .min(self.page_file_bytes_max)
    }

    /// S16: a log file rolls over at a quarter of the PG's page bytes, at least 64 KiB and
    /// at most `log_file_bytes_max`: log GC (S10) frees whole files, so a file the size of
    /// the PG's data would keep that much redo after every record in it is collected.
    pub fn log_file_bytes_for_pg(&self) -> u64 {
        let quarter = self.pg_bytes() / 4;
        quarter.max(64 << 10).min(self.log_file_bytes_max)
    }

    fn pg_bytes(&self) -> u64 {
        u64::from(self.geometry.pg_pages) * PAGE_BYTES as u64
    }

    fn validate(&self) -> Result<(), StorageError> {
        let bad = |field: &'static str, value: u64| StorageError::BadConfig { field, value };
        if self.cache_shards == 0 || self.cache_shards > sixfold_pagecache::SHARDS_MAX {
            return Err(bad("cache_shards", self.cache_shards as u64));
        }
        if self.cache_bytes < self.cache_shards as u64 * PAGE_BYTES as u64 {
            return Err(bad(
                "cache_bytes below one page per shard",
                self.cache_bytes,
            ));
        }
        if self.geometry.pg_pages == 0 {
            return Err(bad("geometry.pg_pages", 0));
        }
        if self.queue_bytes_max < RECORD_FRAME_BYTES_MAX as u64 {
            return Err(bad(
                "queue_bytes_max below one record frame",
                self.queue_bytes_max,
            ));
        }
        if self.log_file_bytes_max == 0 || self.page_file_bytes_max == 0 {
            return Err(bad("file size limit", 0));
        }
        if self.checkpoint_pages_per_step == 0 || self.flush_pages_per_step == 0 {
            return Err(bad("pages per background step", 0));
        }
        Ok(())
    }
}

/// Names a submitted batch; its ack carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// W6: a batch is durable at `segment`, which now holds `scl` in `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub ticket: Ticket,
    pub segment: SegmentId,
    pub scl: Lsn,
    pub epoch: Epoch,
}

/// What `status` tells of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStatus {
    pub segment: SegmentId,
    pub epoch: Epoch,
    pub scl: Lsn,
    pub vdl_hint: Lsn,
    pub pgmrpl: Lsn,
    pub checkpoint: Lsn,
    pub forgotten_through: Lsn,
    /// S11: damage found and not yet repaired.
    pub damaged: bool,
    pub damage: Vec<Damage>,
    pub records: usize,
    pub queued_records: usize,
    pub page_versions: usize,
    pub log_files: usize,
    pub page_files: usize,
    /// Bytes of page frames on disk, and of live versions among them (S16).
    pub page_bytes: u64,
    pub page_live_bytes: u64,
    /// Sealed page files with no live version left: zero after a restart (S16).
    pub page_files_dead: usize,
    /// Bytes of log files on disk.
    pub log_bytes: u64,
    /// Bytes compaction wrote since the node opened (S16).
    pub compaction_bytes: u64,
    pub checkpoint_error: Option<String>,
    /// Torn log tails cut at the last restart (S12).
    pub tail_cuts: usize,
    /// S18: why the last group commit failed, while the disk refuses writes.
    pub write_error: Option<String>,
}

/// What [`StorageNode::flush_each`] (or [`StorageNode::finish_commit`]) did.
#[derive(Debug, Default)]
pub struct FlushOutcome {
    pub acks: Vec<Ack>,
    /// Segments whose group commit failed; their batches stay queued (S18).
    pub failed: Vec<(SegmentId, StorageError)>,
    /// The write batches of those segments: not durable, so not acknowledged (S1, S25).
    pub failed_tickets: Vec<(Ticket, SegmentId)>,
    /// Log fsyncs the commit ran (one per segment that had records queued).
    pub fsyncs: usize,
}

/// S25: a group commit taken from the node by [`StorageNode::begin_commit`]: each
/// segment's queued frames are written; [`CommitJob::run`] makes them durable without the
/// node (so its owner may release its lock meanwhile), and [`StorageNode::finish_commit`]
/// applies and acknowledges what became durable.
#[derive(Debug)]
pub struct CommitJob {
    disk: Arc<dyn Disk>,
    parts: Vec<CommitPart>,
    /// Segments whose frames could not even be written: their tickets and the error.
    refused: Vec<(SegmentId, Vec<Ticket>, StorageError)>,
}

#[derive(Debug)]
struct CommitPart {
    commit: SegmentCommit,
    synced: Option<Result<(), StorageError>>,
}

impl CommitJob {
    /// S1, S25: runs every segment's fsync, those of several segments side by side (each
    /// log is its own file). Touches nothing of the node.
    pub fn run(&mut self) {
        let disk = self.disk.as_ref();
        let (syncing, nothing_to_sync): (Vec<&mut CommitPart>, Vec<&mut CommitPart>) = self
            .parts
            .iter_mut()
            .partition(|part| part.commit.fsyncs() > 0);
        for part in nothing_to_sync {
            part.synced = Some(Ok(()));
        }
        if syncing.len() <= 1 {
            for part in syncing {
                part.synced = Some(part.commit.run(disk));
            }
            return;
        }
        std::thread::scope(|scope| {
            for part in syncing {
                scope.spawn(move || part.synced = Some(part.commit.run(disk)));
            }
        });
    }

    /// Log fsyncs this commit runs.
    pub fn fsyncs(&self) -> usize {
        self.parts.iter().map(|part| part.commit.fsyncs()).sum()
    }

    /// Nothing was queued when it was taken.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.refused.is_empty()
    }
}

/// What one `background_step` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackgroundWork {
    /// Dirty cached pages written as versions.
    pub pages_flushed: usize,
    /// Pages materialized by checkpoints.
    pub pages_materialized: usize,
    /// Page files compaction removed (S16).
    pub files_compacted: usize,
}

/// What one `scrub_step` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubWork {
    pub file: Option<PathBuf>,
    /// The file failed its check and was repaired (or its damage recorded).
    pub damaged: bool,
}

pub struct StorageNode {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: StorageConfig,
    segments: BTreeMap<SegmentId, Segment>,
    cache: Cache,
    next_ticket: u64,
    /// Acks of segments made durable by a flush that failed elsewhere; the next flush
    /// returns them.
    ready_acks: Vec<Ack>,
    scrub_cursor: usize,
    /// S17: segments rebuilt empty at open because their metadata was lost.
    rebuilt: Vec<SegmentId>,
    /// S25: a [`CommitJob`] was begun and not finished.
    commit_in_flight: bool,
}

impl std::fmt::Debug for StorageNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageNode")
            .field("dir", &self.dir)
            .field("segments", &self.segments.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether a segment directory holds records or pages: one without (a hosting that never
/// wrote its metadata) is not a segment; one with them and no metadata lost its `meta`.
fn holds_segment_data(disk: &dyn Disk, dir: &Path) -> Result<bool, StorageError> {
    let names = disk.list(dir).map_err(StorageError::io("list", dir))?;
    Ok(names.iter().any(|name| {
        parse_log_name(name).is_some()
            || parse_page_file_name(name).is_some()
            || name == PAGEDIR_FILE
    }))
}

/// The segment directory name of `pg<N>.<replica>`, parsed.
fn parse_segment_dir(name: &str) -> Option<SegmentId> {
    let (pg, replica) = name.strip_prefix("pg")?.split_once('.')?;
    Some(SegmentId {
        pg: PgId(pg.parse().ok()?),
        replica: replica.parse().ok()?,
    })
}

impl StorageNode {
    /// Opens (or creates) the data directory and rebuilds every segment in it (S12).
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: impl Into<PathBuf>,
        config: StorageConfig,
    ) -> Result<StorageNode, StorageError> {
        config.validate()?;
        let dir = dir.into();
        disk.create_dir(&dir)
            .map_err(StorageError::io("mkdir", &dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            disk.sync_dir(parent)
                .map_err(StorageError::io("fsync dir", parent))?;
        }
        let mut segments = BTreeMap::new();
        let mut rebuilt = Vec::new();
        for name in disk.list(&dir).map_err(StorageError::io("list", &dir))? {
            let Some(id) = parse_segment_dir(&name) else {
                continue;
            };
            let path = dir.join(&name);
            let lost = match read_meta(disk.as_ref(), &path) {
                Ok(Some(_)) => None,
                Ok(None) if !holds_segment_data(disk.as_ref(), &path)? => continue,
                Ok(None) => Some(format!("{} is missing", path.join(META_FILE).display())),
                Err(error @ StorageError::Corrupt { .. }) => Some(error.to_string()),
                // An I/O error may pass (or need the operator): never a reason to drop data.
                Err(error) => return Err(error),
            };
            if let Some(reason) = lost {
                let segment = Segment::rebuild(disk.as_ref(), &dir, id, &config, reason)?;
                rebuilt.push(id);
                segments.insert(id, segment);
                continue;
            }
            if let Some(segment) = Segment::open(disk.as_ref(), &path, &config)? {
                if segment.id != id {
                    return Err(StorageError::Corrupt {
                        path,
                        offset: 0,
                        reason: format!("metadata names segment {}", segment.id),
                    });
                }
                segments.insert(id, segment);
            }
        }
        let cache = new_cache(config.cache_bytes, config.cache_shards);
        Ok(StorageNode {
            disk,
            dir,
            config,
            segments,
            cache,
            next_ticket: 1,
            ready_acks: Vec::new(),
            scrub_cursor: 0,
            rebuilt,
            commit_in_flight: false,
        })
    }

    /// S17: segments whose metadata was lost at [`StorageNode::open`] and that start again
    /// empty: the caller gives them its epoch and truncation history, as to a new segment.
    pub fn rebuilt_segments(&self) -> &[SegmentId] {
        &self.rebuilt
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Hosts a new, empty segment durably; hosting it again is a no-op. Q6: one replica
    /// of a PG per node.
    pub fn host_segment(&mut self, id: SegmentId) -> Result<(), StorageError> {
        if self.segments.contains_key(&id) {
            return Ok(());
        }
        if let Some(&existing) = self.segments.keys().find(|s| s.pg == id.pg) {
            return Err(StorageError::PgAlreadyHosted { existing });
        }
        let segment = Segment::create(self.disk.as_ref(), &self.dir, id, &self.config)?;
        self.segments.insert(id, segment);
        Ok(())
    }

    pub fn segments(&self) -> Vec<SegmentId> {
        self.segments.keys().copied().collect()
    }

    /// The hosted segment of `pg`, if any.
    pub fn segment_of(&self, pg: PgId) -> Option<SegmentId> {
        self.segments.keys().find(|s| s.pg == pg).copied()
    }

    fn segment(&self, id: SegmentId) -> Result<&Segment, StorageError> {
        self.segments
            .get(&id)
            .ok_or(StorageError::SegmentNotHosted { segment: id })
    }

    fn segment_mut(&mut self, id: SegmentId) -> Result<&mut Segment, StorageError> {
        self.segments
            .get_mut(&id)
            .ok_or(StorageError::SegmentNotHosted { segment: id })
    }

    fn queued_bytes(&self) -> u64 {
        self.segments.values().map(Segment::queued_bytes).sum()
    }

    fn check_queue_room(&self, records: &[RedoRecord]) -> Result<(), StorageError> {
        let batch: u64 = records.iter().map(|r| record_frame_bytes(r) as u64).sum();
        let queued = self.queued_bytes();
        if queued.saturating_add(batch) > self.config.queue_bytes_max {
            return Err(StorageError::QueueFull {
                queued_bytes: queued,
                max_bytes: self.config.queue_bytes_max,
            });
        }
        Ok(())
    }

    /// Steps 1–2 (W5, S1–S3, S7, S8, S13): queues a write batch for `segment`. Nothing
    /// is acknowledged here: [`StorageNode::flush`] makes it durable and returns its ack.
    /// On error nothing of the batch is queued and nothing accepted before changes.
    pub fn submit(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        vdl_hint: Lsn,
        truncation: Option<TruncationRange>,
        records: Vec<RedoRecord>,
    ) -> Result<Ticket, StorageError> {
        self.segment(segment)?;
        if let Some(record) = records.iter().find(|r| r.pg != segment.pg) {
            return Err(StorageError::PgNotHosted { pg: record.pg });
        }
        self.check_writable(segment)?;
        self.check_queue_room(&records)?;
        let ticket = Ticket(self.next_ticket);
        self.segment_mut(segment)?
            .submit(ticket, epoch, vdl_hint, truncation, &records)?;
        self.next_ticket += 1;
        Ok(ticket)
    }

    /// S1, S2: group commit. One fsync per segment log with queued records covers every
    /// batch queued since the last flush; only then are the batches applied and acked.
    /// On error, segments that did become durable keep their acks for the next flush, and
    /// the others keep their queues (a retry writes them again; duplicates are no-ops).
    pub fn flush(&mut self) -> Result<Vec<Ack>, StorageError> {
        let mut outcome = self.flush_each();
        match outcome.failed.drain(..).next() {
            Some((_, error)) => {
                self.ready_acks.append(&mut outcome.acks);
                Err(error)
            }
            None => Ok(outcome.acks),
        }
    }

    /// S18: a segment whose last group commit failed takes nothing more until a retry of
    /// that commit succeeds, so no queue grows while its disk refuses writes. Acks the
    /// retry produced wait for the next flush.
    fn check_writable(&mut self, id: SegmentId) -> Result<(), StorageError> {
        let disk = Arc::clone(&self.disk);
        let segment = self
            .segments
            .get_mut(&id)
            .ok_or(StorageError::SegmentNotHosted { segment: id })?;
        let acks = segment.check_writable(disk.as_ref(), &self.cache)?;
        self.ready_acks.extend(acks);
        Ok(())
    }

    /// S1, S2, S18: group commit of every segment, each on its own: the acks of every
    /// segment that became durable (with those a failed flush held back), and the error of
    /// each that did not. Unlike [`StorageNode::flush`], no ack waits for another
    /// segment's disk. A segment whose commit is in flight (S25) is skipped: its queue
    /// waits for the next commit.
    pub fn flush_each(&mut self) -> FlushOutcome {
        let mut job = self.take_commit();
        job.run();
        self.complete(job)
    }

    /// S25: the first step of a group commit (see [`CommitJob`]), unless one begun here is
    /// still in flight: then `None`, and what is queued waits for the next one.
    pub fn begin_commit(&mut self) -> Option<CommitJob> {
        if self.commit_in_flight {
            return None;
        }
        self.commit_in_flight = true;
        Some(self.take_commit())
    }

    /// S1, S25: the last step: what [`CommitJob::run`] made durable is applied and
    /// acknowledged (with acks a failed flush held back); the rest is put back in front of
    /// its segment's queue (S18), its tickets listed as failed.
    pub fn finish_commit(&mut self, job: CommitJob) -> FlushOutcome {
        self.commit_in_flight = false;
        self.complete(job)
    }

    /// A [`CommitJob`] is in flight: begun and not finished.
    pub fn commit_in_flight(&self) -> bool {
        self.commit_in_flight
    }

    fn take_commit(&mut self) -> CommitJob {
        let mut parts = Vec::new();
        let mut refused = Vec::new();
        for segment in self.segments.values_mut() {
            let tickets = segment.queued_tickets();
            match segment.take_commit(self.disk.as_ref()) {
                Ok(Some(commit)) => parts.push(CommitPart {
                    commit,
                    synced: None,
                }),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(segment = %segment.id, %error, "group commit failed; batches stay queued");
                    refused.push((segment.id, tickets, error));
                }
            }
        }
        CommitJob {
            disk: Arc::clone(&self.disk),
            parts,
            refused,
        }
    }

    fn complete(&mut self, job: CommitJob) -> FlushOutcome {
        let mut outcome = FlushOutcome {
            fsyncs: job.fsyncs(),
            ..FlushOutcome::default()
        };
        for (segment, tickets, error) in job.refused {
            let failed = tickets.into_iter().map(|ticket| (ticket, segment));
            outcome.failed_tickets.extend(failed);
            outcome.failed.push((segment, error));
        }
        for part in job.parts {
            let id = part.commit.segment;
            let Some(segment) = self.segments.get_mut(&id) else {
                continue;
            };
            let tickets = segment.in_flight_tickets();
            let synced = part.synced.unwrap_or_else(|| {
                Err(StorageError::io("fsync", &segment.dir)(
                    std::io::Error::other("the commit's fsync never ran"),
                ))
            });
            match segment.finish_commit(&self.cache, part.commit, synced) {
                Ok(acks) => self.ready_acks.extend(acks),
                Err(error) => {
                    tracing::warn!(segment = %id, %error, "group commit failed; batches stay queued");
                    let failed = tickets.into_iter().map(|ticket| (ticket, id));
                    outcome.failed_tickets.extend(failed);
                    outcome.failed.push((id, error));
                }
            }
        }
        outcome.acks = std::mem::take(&mut self.ready_acks);
        outcome
    }

    /// Records queued and not yet durable, over all segments.
    pub fn queued_records(&self) -> usize {
        self.segments.values().map(Segment::queued_records).sum()
    }

    /// E1, E4, S7: raises a segment's epoch, durably, before returning.
    pub fn raise_epoch(&mut self, segment: SegmentId, epoch: Epoch) -> Result<(), StorageError> {
        let disk = Arc::clone(&self.disk);
        self.segment_mut(segment)?.raise_epoch(disk.as_ref(), epoch)
    }

    /// Raises the epoch of every hosted segment; stops at the first error.
    pub fn raise_epoch_all(&mut self, epoch: Epoch) -> Result<(), StorageError> {
        for segment in self.segments() {
            self.raise_epoch(segment, epoch)?;
        }
        Ok(())
    }

    /// S8, S15, X5: makes a recovery's truncation history (its own range last) durable
    /// at `segment`, then voids what it covers.
    pub fn truncate(
        &mut self,
        segment: SegmentId,
        history: &[TruncationRange],
    ) -> Result<(), StorageError> {
        let disk = Arc::clone(&self.disk);
        let segment = self
            .segments
            .get_mut(&segment)
            .ok_or(StorageError::SegmentNotHosted { segment })?;
        segment.truncate(disk.as_ref(), &self.cache, history)
    }

    /// X1: what the segment tells a recovering writer.
    pub fn report(&self, segment: SegmentId) -> Result<SegmentReport, StorageError> {
        Ok(self.segment(segment)?.report())
    }

    /// S5, S6: what the segment asks its peers for.
    pub fn gossip_request(&self, segment: SegmentId) -> Result<GossipRequest, StorageError> {
        Ok(self.segment(segment)?.gossip_request())
    }

    /// S6: the records a peer that sent `request` is missing.
    pub fn answer_gossip(
        &self,
        segment: SegmentId,
        request: &GossipRequest,
    ) -> Result<Vec<RedoRecord>, StorageError> {
        Ok(self.segment(segment)?.answer_gossip(request))
    }

    /// S6, S7, L5: queues a peer's answer; the records are checked now and merged (and
    /// count toward SCL) once the next flush made them durable.
    pub fn handle_gossip(
        &mut self,
        segment: SegmentId,
        peer_epoch: Epoch,
        truncations: &[TruncationRange],
        records: Vec<RedoRecord>,
    ) -> Result<(), StorageError> {
        self.check_writable(segment)?;
        self.check_queue_room(&records)?;
        let disk = Arc::clone(&self.disk);
        let segment = self
            .segments
            .get_mut(&segment)
            .ok_or(StorageError::SegmentNotHosted { segment })?;
        segment
            .submit_gossip(
                disk.as_ref(),
                &self.cache,
                peer_epoch,
                truncations,
                &records,
            )
            .map(|_| ())
    }

    /// R3: `page` exactly as of `read_lsn`, if PGMRPL ≤ `read_lsn` and `required_lsn`
    /// (the PG's last LSN ≤ the read point) ≤ SCL. E2: a read of a lower epoch is refused.
    pub fn get_page(
        &mut self,
        segment: SegmentId,
        epoch: Epoch,
        page: PageId,
        read_lsn: Lsn,
        required_lsn: Lsn,
    ) -> Result<PageImage, StorageError> {
        let disk = Arc::clone(&self.disk);
        let held = self
            .segments
            .get_mut(&segment)
            .ok_or(StorageError::SegmentNotHosted { segment })?;
        if epoch < held.state.epoch() {
            return Err(StorageError::StaleEpoch {
                segment,
                got: epoch,
                seen: held.state.epoch(),
            });
        }
        let pg = self.config.geometry.pg_of(page);
        if pg != segment.pg {
            return Err(StorageError::WrongPage { segment, page, pg });
        }
        held.get_page(disk.as_ref(), &self.cache, page, read_lsn, required_lsn)
    }

    /// S15, R3: a segment serves a writer's reads only once it holds that writer's
    /// truncation history: before, it may still hold records a recovery it has not heard
    /// of voided, and build pages on them. `range` is the reading writer's own range (X4).
    pub fn check_reader_history(
        &self,
        segment: SegmentId,
        range: Option<TruncationRange>,
    ) -> Result<(), StorageError> {
        let held = self.segment(segment)?;
        match range {
            Some(range) if !held.state.truncations().contains(&range) => {
                Err(StorageError::HistoryBehind {
                    segment,
                    needed: range.epoch,
                    held: held.history_epoch(),
                })
            }
            _ => Ok(()),
        }
    }

    /// R4: the PG's lowest read point in use; only rises.
    pub fn set_pgmrpl(&mut self, segment: SegmentId, lsn: Lsn) -> Result<(), StorageError> {
        self.segment_mut(segment)?.set_pgmrpl(lsn);
        Ok(())
    }

    /// Steps 5 and 7 (S10), bounded: the flusher writes dirty cached pages within the
    /// durable bound as page versions, then checkpoints materialize versions up to
    /// min(SCL, VDL hint, PGMRPL) and collect records and versions below them.
    pub fn background_step(&mut self) -> Result<BackgroundWork, StorageError> {
        let mut work = BackgroundWork::default();
        let mut first_error = None;
        match self.flush_dirty_pages() {
            Ok(flushed) => work.pages_flushed = flushed,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
        let mut budget = self.config.checkpoint_pages_per_step;
        for segment in self.segments.values_mut() {
            if budget == 0 {
                break;
            }
            match segment.checkpoint_step(self.disk.as_ref(), &self.cache, budget) {
                Ok(pages) => {
                    work.pages_materialized += pages;
                    budget = budget.saturating_sub(pages);
                }
                Err(error) => {
                    tracing::warn!(segment = %segment.id, %error, "checkpoint step failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        for segment in self.segments.values_mut() {
            match segment.pages.compact(self.disk.as_ref()) {
                Ok(done) => work.files_compacted += done.files_removed,
                Err(error) => {
                    tracing::warn!(segment = %segment.id, %error, "S16: compaction failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(work),
        }
    }

    fn flush_dirty_pages(&mut self) -> Result<usize, StorageError> {
        let limit = self.config.flush_pages_per_step;
        // Pages above their segment's durable bound stay dirty and are listed again; ask
        // for more than we write so they do not crowd out the writable ones.
        let dirty = self.cache.dirty_pages(limit.saturating_mul(4));
        let mut written: BTreeMap<SegmentId, Vec<(PageId, u64)>> = BTreeMap::new();
        let mut count = 0;
        for page in dirty {
            if count == limit {
                break;
            }
            let Some(segment) = self.segments.get_mut(&page.key.segment) else {
                // Its segment is gone: nothing to write it to.
                let _ = self.cache.remove(&page.key);
                continue;
            };
            if segment.flush_cached(
                self.disk.as_ref(),
                &self.cache,
                page.key.page,
                Lsn(page.lsn),
            )? {
                written
                    .entry(page.key.segment)
                    .or_default()
                    .push((page.key.page, page.lsn));
                count += 1;
            } else if segment.pages.has_version(page.key.page, Lsn(page.lsn)) {
                self.cache.mark_clean(&page.key, page.lsn);
            }
        }
        for (id, pages) in written {
            let segment = self.segments.get_mut(&id).expect("written above");
            segment.pages.sync(self.disk.as_ref())?;
            for (page, lsn) in pages {
                self.cache.mark_clean(&CacheKey { segment: id, page }, lsn);
            }
        }
        Ok(count)
    }

    /// Step 8 (S11): verifies the CRC of every frame of one file (the next in turn) and
    /// repairs what it can: a damaged log file is rewritten from the verified records in
    /// memory, a damaged page version is rebuilt from older versions and records.
    pub fn scrub_step(&mut self) -> Result<ScrubWork, StorageError> {
        let files: Vec<(SegmentId, bool, u64)> = self
            .segments
            .iter()
            .flat_map(|(&id, segment)| {
                let logs = segment.logs.files.keys().map(move |&seq| (id, true, seq));
                let pages = segment.pages.files.keys().map(move |&seq| (id, false, seq));
                logs.chain(pages).collect::<Vec<_>>()
            })
            .collect();
        if files.is_empty() {
            return Ok(ScrubWork::default());
        }
        let (id, is_log, seq) = files[self.scrub_cursor % files.len()];
        self.scrub_cursor = self.scrub_cursor.wrapping_add(1);
        let read_max = self.config.log_read_bytes_max();
        let segment = self.segments.get_mut(&id).expect("listed above");
        let (file, damaged) = if is_log {
            (
                segment.logs.path(seq),
                segment.scrub_log(self.disk.as_ref(), seq, read_max)?,
            )
        } else {
            (
                segment.pages.path(seq),
                segment.scrub_pages(self.disk.as_ref(), &self.cache, seq)?,
            )
        };
        Ok(ScrubWork {
            file: Some(file),
            damaged,
        })
    }

    /// Files scrub visits in one full pass.
    pub fn scrub_files(&self) -> usize {
        self.segments
            .values()
            .map(|s| s.logs.files.len() + s.pages.files.len())
            .sum()
    }

    pub fn status(&self) -> Vec<SegmentStatus> {
        self.segments
            .values()
            .map(|segment| SegmentStatus {
                segment: segment.id,
                epoch: segment.state.epoch(),
                scl: segment.state.scl(),
                vdl_hint: segment.vdl_hint,
                pgmrpl: segment.pgmrpl,
                checkpoint: segment.meta.checkpoint,
                forgotten_through: segment.state.forgotten_through(),
                damaged: segment.is_damaged(),
                damage: segment.damage.clone(),
                records: segment.record_count(),
                queued_records: segment.queued_records(),
                page_versions: segment.pages.version_count(),
                log_files: segment.logs.files.len(),
                page_files: segment.pages.files.len(),
                page_bytes: segment.pages.bytes().0,
                page_live_bytes: segment.pages.bytes().1,
                page_files_dead: segment.pages.dead_files(),
                log_bytes: segment.logs.bytes(),
                compaction_bytes: segment.pages.compaction_bytes,
                checkpoint_error: segment.checkpoint_error.clone(),
                tail_cuts: segment.tail_cuts,
                write_error: segment.write_error.clone(),
            })
            .collect()
    }

    pub fn segment_status(&self, segment: SegmentId) -> Result<SegmentStatus, StorageError> {
        self.status()
            .into_iter()
            .find(|s| s.segment == segment)
            .ok_or(StorageError::SegmentNotHosted { segment })
    }

    /// Held records of `page` not yet collected: the length of its redo chain.
    pub fn redo_chain_len(&self, segment: SegmentId, page: PageId) -> Result<usize, StorageError> {
        Ok(self.segment(segment)?.page_record_count(page))
    }

    /// The LSNs of the stored versions of `page`.
    pub fn page_versions(
        &self,
        segment: SegmentId,
        page: PageId,
    ) -> Result<Vec<Lsn>, StorageError> {
        let held = self.segment(segment)?;
        Ok(held
            .pages
            .index
            .get(&page)
            .map(|versions| versions.keys().copied().collect())
            .unwrap_or_default())
    }

    /// The records the segment holds (not collected), in LSN order.
    pub fn held_records(&self, segment: SegmentId) -> Result<Vec<RedoRecord>, StorageError> {
        Ok(self.segment(segment)?.state.records().cloned().collect())
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Drops every cached page (for benchmarks and tests of the uncached path).
    pub fn clear_cache(&mut self) {
        self.cache = new_cache(self.config.cache_bytes, self.config.cache_shards);
    }
}
