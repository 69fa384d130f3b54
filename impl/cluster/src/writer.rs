//! The writer: page-level transactions over the core [`WriterState`], on the network.
//!
//! `Writer::open` runs recovery (X1–X8), then: each commit is one MTR whose records go only
//! to their PG's six segments (W4) in batches carrying the epoch, the VDL hint and this
//! epoch's truncation range (W5); acks move PGCL/VCL/VDL (C1–C3); a commit returns when
//! VDL ≥ its LSN (C4) and never after a fence (C6, E3). Reads go to one segment whose SCL
//! covers the read point and are re-issued elsewhere when slow or failed (R1, R5).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sixfold_core::lease::{LEASE_HOLD_MS, LEASE_WAIT_MS, promise_covers_hold};
use sixfold_core::redo::{apply_body, diff_pages};
use sixfold_core::{
    DbId, Edit, Epoch, Lsn, Mtr, NodeId, PAGE_BYTES, PageId, PgId, ProtocolEvent, QuorumConfig,
    ReadLease, RedoBody, RedoRecord, SegmentId, WriteError, WriterConfig, WriterState,
};
use sixfold_pagecache::{ENTRY_OVERHEAD_BYTES, EntryMeta, Page, PageCache};

use crate::backup::BackupTarget;
use crate::backup::manifest::{MANIFEST_INTERVAL_MS, ManifestStager, wall_clock_ms};
use crate::config::ClusterConfig;
use crate::link::{Link, LinkEvents};
use crate::recovery::{Driver, RecoveryDriverError};
use crate::wire::{self, BatchHeader, EncodedRecord, ErrorCode, Message};

/// How long recovery waits for the last two links once all others connected.
const LINK_GRACE_MS: u64 = 100;
/// The writer's LSN allocation limit, in LSNs (W1, W8): the paper's 10 million. Recovery
/// truncates up to LAL above the highest earlier truncation end (X4), so a later writer
/// never uses a smaller LAL than the writers before it (W11; it was 10,000 before).
pub const WRITER_LAL: u64 = sixfold_core::writer::LAL_DEFAULT;
/// Records one MTR may hold, at most (W8): every record of it must fit under LAL above
/// VDL at once, since VDL moves only at its CPL. One SQL transaction is one MTR (V5) and
/// one record per page, so a transaction may change up to 10 million pages (40 GiB).
pub const MTR_RECORDS_MAX: u64 = WRITER_LAL;
/// Threads that read a large transaction's base pages side by side (V7, W9).
const BASE_READERS: usize = 16;
/// Pages the writer's buffer cache holds at least, whatever the options say.
const CACHE_PAGES_MIN: usize = 4_096;
/// How often the writer re-sends unacknowledged records and heartbeats, in milliseconds.
pub const TICK_MS: u64 = 100;
/// One read attempt at one segment may take this long before the next is tried (R5), in
/// milliseconds.
pub const READ_ATTEMPT_TIMEOUT_MS: u64 = 1_000;
/// How long a closing writer waits for each node to take its final VDL (R12).
pub const FINAL_HEARTBEAT_TIMEOUT_MS: u64 = 300;
/// Records re-sent to one segment per tick, at most (W7).
pub const RESEND_RECORDS_PER_TICK_MAX: usize = 4 * wire::BATCH_RECORDS_MAX;
/// Recovery attempts before `open` gives up (X8: each retry uses a higher epoch).
pub const RECOVERY_ATTEMPTS_MAX: usize = 20;
/// The page-level catalog of `sixfold load` (V3). The SQL catalog (sixfold-sql) owns
/// database 0 and hands out ids from 1 up, below [`PAGE_DB_ID_BASE`]; `load`'s databases
/// hold raw pages, not SQLite files, so they get ids from [`PAGE_DB_ID_BASE`] up and their
/// names live in page 0 of the last database id. The two id ranges never meet, so a volume
/// can hold SQL databases and `load` databases side by side (docs/sql.md).
pub const CATALOG_PAGE: PageId = PageId {
    db: DbId(u32::MAX),
    page_no: 0,
};
/// First database id `load`'s page-level catalog hands out (ids below are the SQL
/// catalog's).
pub const PAGE_DB_ID_BASE: u32 = 0x8000_0000;
/// Longest database name, in bytes.
pub const DATABASE_NAME_BYTES_MAX: usize = 64;
const CATALOG_MAGIC: u32 = u32::from_le_bytes(*b"SIXC");

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(
        "writer fenced by epoch {by}: a newer writer took over; nothing more is acknowledged (E3, C6)"
    )]
    Fenced { by: Epoch },
    #[error("commit {lsn} not durable within {waited_ms} ms; its outcome is unknown (C4)")]
    CommitTimeout { lsn: Lsn, waited_ms: u64 },
    #[error("LAL back-pressure did not clear within {waited_ms} ms (W1)")]
    Backpressure { waited_ms: u64 },
    #[error("recovery failed after {attempts} attempts: {last}")]
    Recovery { attempts: usize, last: String },
    /// I2, I3: a node is not what this writer's config says (cluster, volume, pg_pages,
    /// node id or the segments it holds); nothing was written and no epoch was raised for
    /// an identity refusal.
    #[error("refused before opening: {0}")]
    Identity(String),
    /// B20: the config's backup target cannot be opened; nothing was written.
    #[error("backup: {0}")]
    Backup(String),
    #[error(
        "no segment of pg{pg} served {page} at read point {read_point} within {waited_ms} ms (R5)"
    )]
    ReadFailed {
        pg: u32,
        page: PageId,
        read_point: Lsn,
        waited_ms: u64,
    },
    #[error("bad transaction: {0}")]
    BadTransaction(String),
    /// W8, W12: an MTR of more records than LAL could never be allocated (VDL moves only
    /// at its CPL); refused before any LSN is allocated.
    #[error(
        "transaction too large: it changes {records} pages, and one transaction may change \
         at most {max} (the writer's LSN allocation limit, LAL, W8)"
    )]
    TransactionTooLarge { records: u64, max: u64 },
    #[error("catalog: {0}")]
    Catalog(String),
    /// R9: no read quorum of every PG renewed the read lease in time; a newer writer may
    /// have taken over, so the read is refused rather than served stale.
    #[error(
        "read lease expired: no read quorum of every PG renewed it within {waited_ms} ms; \
         this writer may have been replaced by a newer one, so the read is refused (R9)"
    )]
    LeaseExpired { waited_ms: u64 },
    #[error("writer is closed")]
    Closed,
}

/// Tunables of a writer.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// How long `commit` waits for VDL to pass the commit LSN.
    pub commit_timeout: Duration,
    /// How long a read tries segments before failing.
    pub read_timeout: Duration,
    /// How long `open` keeps retrying recovery.
    pub recovery_timeout: Duration,
    /// Pages the buffer cache holds (it may exceed this only by pages above VDL, R6).
    pub cache_pages_max: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            commit_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            recovery_timeout: Duration::from_secs(30),
            cache_pages_max: 4_096,
        }
    }
}

/// A page-level transaction: byte-range edits of pages, committed as one MTR (L2).
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    changes: Vec<(PageId, Vec<Edit>)>,
}

impl Transaction {
    /// Writes `bytes` at `offset` of `page`.
    pub fn write(&mut self, page: PageId, offset: u16, bytes: &[u8]) -> &mut Self {
        let edit = Edit {
            offset,
            bytes: bytes.to_vec(),
        };
        match self.changes.iter_mut().find(|(p, _)| *p == page) {
            Some((_, edits)) => edits.push(edit),
            None => self.changes.push((page, vec![edit])),
        }
        self
    }

    pub fn pages(&self) -> impl Iterator<Item = PageId> + '_ {
        self.changes.iter().map(|(p, _)| *p)
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Counters for status lines and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub epoch: Epoch,
    pub vcl: Lsn,
    pub vdl: Lsn,
    /// The highest LSN allocated: above VDL while an MTR is not yet durable (W9).
    pub last_allocated: Lsn,
    pub waiting_commits: usize,
    pub geometry_epoch: u64,
    pub pgs: usize,
    pub connected_nodes: usize,
    /// E3: the epoch of the newer writer that fenced this one, once a node said so.
    pub fenced_by: Option<Epoch>,
}

/// The cache's veto on eviction (R6): only pages whose LSN ≤ VDL may go.
type Evictable = Box<dyn Fn(&EntryMeta) -> bool + Send + Sync>;

/// Shards of the writer's page cache.
const CACHE_SHARDS: usize = 4;

/// R6: the writer's buffer cache (sixfold-pagecache). It holds the latest version of a
/// page with that version's LSN; the eviction predicate refuses pages above VDL.
struct Cache {
    pages: PageCache<PageId, Evictable>,
    vdl: Arc<AtomicU64>,
    capacity_bytes: u64,
}

impl Cache {
    fn new(pages_max: usize) -> Cache {
        let vdl = Arc::new(AtomicU64::new(0));
        let capacity_bytes = pages_max as u64 * (PAGE_BYTES as u64 + ENTRY_OVERHEAD_BYTES);
        Cache {
            pages: Self::make(capacity_bytes, vdl.clone()),
            vdl,
            capacity_bytes,
        }
    }

    fn make(capacity_bytes: u64, vdl: Arc<AtomicU64>) -> PageCache<PageId, Evictable> {
        let evictable: Evictable =
            Box::new(move |meta: &EntryMeta| meta.lsn <= vdl.load(Ordering::Acquire));
        PageCache::new(capacity_bytes, CACHE_SHARDS, evictable)
            .expect("cache sizes are constants checked here: capacity ≥ one page per shard")
    }

    /// The cached version of `page`: its LSN and bytes.
    fn get(&self, page: PageId) -> Option<(Lsn, Vec<u8>)> {
        let guard = self.pages.get(&page)?;
        let read = guard.read();
        Some((Lsn(read.lsn()), read.bytes().to_vec()))
    }

    fn insert(&mut self, page: PageId, lsn: Lsn, bytes: Vec<u8>) {
        drop(
            self.pages
                .insert(&page, Page::clean(lsn.0, bytes.into_boxed_slice())),
        );
    }

    /// R6: VDL moved; pages at or below it become evictable.
    fn set_vdl(&self, vdl: Lsn) {
        if self.vdl.swap(vdl.0, Ordering::AcqRel) != vdl.0 {
            self.pages.trim();
        }
    }

    /// Drops every page with LSN ≤ VDL.
    fn clear(&mut self) {
        let fresh = Self::make(self.capacity_bytes, self.vdl.clone());
        self.pages = fresh;
    }
}

struct Core {
    state: Option<WriterState>,
    cache: Cache,
    /// V2: bumped each time the volume grows by a PG.
    geometry_epoch: u64,
    /// W7: per segment, the first unconfirmed LSN seen at the last tick.
    stalled: HashMap<SegmentId, Lsn>,
    /// R8: the grants of the read lease, in ms of [`Inner::now_ms`].
    lease: ReadLease,
    /// C5, C21: commits waiting for durability, by commit LSN.
    waiters: BTreeMap<Lsn, Vec<Arc<Wake>>>,
}

impl Core {
    /// C5, C21: the waiters due now, in LSN order, taken out of the map so each is woken
    /// once: those VDL passed, or all of them once the writer is fenced or gone (C6).
    fn due_waiters(&mut self) -> Vec<Arc<Wake>> {
        let vdl = match self.state.as_ref() {
            Some(state) if state.fenced_by().is_none() => state.vdl(),
            _ => Lsn(u64::MAX - 1),
        };
        let later = self.waiters.split_off(&Lsn(vdl.0 + 1));
        std::mem::replace(&mut self.waiters, later)
            .into_values()
            .flatten()
            .collect()
    }

    /// A waiter that stopped waiting (its timeout) leaves the map.
    fn withdraw(&mut self, lsn: Lsn, wake: &Arc<Wake>) {
        if let Some(list) = self.waiters.get_mut(&lsn) {
            list.retain(|w| !Arc::ptr_eq(w, wake));
            if list.is_empty() {
                self.waiters.remove(&lsn);
            }
        }
    }
}

/// C21: one commit's wake-up, set once. It says only "look again": the waiter rechecks
/// VDL and the fence under the core lock before it reports anything.
#[derive(Default)]
struct Wake {
    woken: Mutex<bool>,
    signal: Condvar,
}

impl Wake {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.signal.notify_one();
    }

    /// Whether it was woken before `deadline`.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        while !*woken {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            woken = self
                .signal
                .wait_timeout(woken, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// C5: wakes `due` in the order given (LSN order), outside every lock.
fn wake_all(due: Vec<Arc<Wake>>) {
    for wake in due {
        wake.wake();
    }
}

struct Inner {
    config: ClusterConfig,
    options: WriterOptions,
    core: Mutex<Core>,
    changed: Condvar,
    links: BTreeMap<NodeId, Arc<Link>>,
    stop: Arc<AtomicBool>,
    catalog: Mutex<()>,
    /// The writer's monotonic clock starts here (R11).
    started: Instant,
}

/// The networked writer (one per volume at a time; a newer one fences it, E3).
pub struct Writer {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

fn drain(state: &mut WriterState) {
    while let Some(event) = state.poll_event() {
        if let ProtocolEvent::Fenced { by } = event {
            tracing::warn!(by = by.0, "writer fenced (E3)");
        }
    }
}

impl Inner {
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds on the writer's monotonic clock (R8, R11).
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// R8: whether the read lease is held now: a read quorum of the segments of PG 0 and
    /// of every known PG are on nodes with an unexpired grant.
    fn lease_held(&self, core: &Core) -> bool {
        let Some(state) = core.state.as_ref() else {
            return false;
        };
        let pgs = std::iter::once(PgId(0))
            .chain(state.pgs())
            .map(|pg| self.config.placement(pg));
        core.lease.holds(self.now_ms(), pgs)
    }

    /// R8: `node` granted `lease_ms` to heartbeat `request_id` of `epoch`.
    fn on_grant(&self, node: NodeId, request_id: u64, epoch: Epoch, lease_ms: u32) {
        if !promise_covers_hold(u64::from(lease_ms), LEASE_HOLD_MS) {
            tracing::warn!(
                node = node.0,
                lease_ms,
                "lease grant too short to count (R11)"
            );
            return;
        }
        let mut core = self.core();
        let current = core.state.as_ref().map(|s| (s.epoch(), s.fenced_by()));
        if current == Some((epoch, None)) {
            core.lease.granted(node, request_id);
        }
        drop(core);
        self.changed.notify_all();
    }

    fn on_ack(&self, segment: SegmentId, scl: Lsn, epoch: Epoch) {
        let mut core = self.core();
        let mut moved = false;
        if let Some(state) = core.state.as_mut() {
            let before = (state.vdl(), state.fenced_by());
            state.handle_ack(segment, scl, epoch);
            drain(state);
            let vdl = state.vdl();
            moved = (vdl, state.fenced_by()) != before;
            core.cache.set_vdl(vdl);
        }
        if !moved {
            return;
        }
        let due = core.due_waiters();
        drop(core);
        wake_all(due);
        // W1 back-pressure and lease waits (not commits) watch VDL and the fence.
        self.changed.notify_all();
    }

    /// E3: a node refused us for a stale epoch.
    fn on_stale(&self, epoch: Epoch) {
        let mut core = self.core();
        if let Some(state) = core.state.as_mut()
            && epoch > state.epoch()
        {
            state.fence(epoch);
            drain(state);
            // E3, R9: a fenced writer never reads again.
            core.lease.revoke();
        }
        let due = core.due_waiters();
        drop(core);
        wake_all(due); // C6
        self.changed.notify_all();
    }

    /// B9: VDL and each PG's last LSN at or below it; `None` before open or once fenced.
    fn manifest_point(&self) -> Option<(Lsn, BTreeMap<PgId, Lsn>)> {
        let core = self.core();
        let state = core.state.as_ref()?;
        if state.fenced_by().is_some() {
            return None;
        }
        let vdl = state.vdl();
        let pg_last = state
            .pgs()
            .map(|pg| (pg, state.pg_lsn_at(pg, vdl)))
            .filter(|&(_, lsn)| lsn > Lsn::ZERO)
            .collect();
        Some((vdl, pg_last))
    }

    fn link_of(&self, segment: SegmentId) -> Option<&Arc<Link>> {
        self.config
            .node_of(segment)
            .and_then(|n| self.links.get(&n))
    }

    /// W4, W5, C20: each record encoded once, queued to the node of each segment of its
    /// PG; the links' senders coalesce what is queued into one batch per segment.
    fn dispatch<'r>(
        &self,
        records: impl IntoIterator<Item = (&'r RedoRecord, Option<SegmentId>)>,
        header: BatchHeader,
    ) {
        let mut by_node: BTreeMap<NodeId, Vec<(SegmentId, EncodedRecord)>> = BTreeMap::new();
        for (record, only) in records {
            let encoded = EncodedRecord::new(record);
            for segment in WriterState::segments_of(record.pg) {
                if only.is_some_and(|only| only != segment) {
                    continue;
                }
                if let Some(node) = self.config.node_of(segment) {
                    by_node
                        .entry(node)
                        .or_default()
                        .push((segment, encoded.clone()));
                }
            }
        }
        for (node, records) in by_node {
            if let Some(link) = self.links.get(&node) {
                // A refused queue is fine: the record is re-sent until acknowledged (W7).
                let _ = link.queue_records(header, records);
            }
        }
    }

    /// W7 and heartbeats: re-send records a segment has not confirmed for a whole tick;
    /// tell every node the VCL, VDL and PGMRPL (R4).
    fn tick(&self) {
        let mut resend = Vec::new();
        let header;
        let heartbeat;
        {
            let mut core = self.core();
            let Core { state, stalled, .. } = &mut *core;
            let Some(state) = state.as_mut() else {
                return;
            };
            for pg in state.pgs().collect::<Vec<_>>() {
                for segment in WriterState::segments_of(pg) {
                    let records = state.records_to_resend(segment);
                    let Some(first) = records.first().map(|r| r.lsn) else {
                        stalled.remove(&segment);
                        continue;
                    };
                    if stalled.get(&segment) == Some(&first) {
                        resend.extend(
                            records
                                .into_iter()
                                .take(RESEND_RECORDS_PER_TICK_MAX)
                                .map(|r| (r.clone(), Some(segment))),
                        );
                    } else {
                        stalled.insert(segment, first);
                    }
                }
            }
            header = batch_header(state);
            heartbeat = (state.epoch(), state.vcl(), state.vdl(), state.pgmrpl());
        }
        for (&node, link) in &self.links {
            let request_id = link.request_id();
            // R8: the grant counts from before the send, never later.
            let sent_ms = self.now_ms();
            self.core().lease.sent(node, request_id, sent_ms);
            let _ = link.send(&Message::Heartbeat {
                request_id,
                epoch: heartbeat.0,
                vcl: heartbeat.1,
                vdl: heartbeat.2,
                pgmrpl: heartbeat.3,
                truncation: header.truncation,
            });
        }
        self.dispatch(resend.iter().map(|(r, s)| (r, *s)), header);
    }

    /// A reconnected node gets what it missed at the next tick, not two ticks later.
    fn forget_stalls_of(&self, node: NodeId) {
        let mut core = self.core();
        let config = &self.config;
        core.stalled
            .retain(|segment, _| config.node_of(*segment) != Some(node));
        if let Some(state) = core.state.as_ref() {
            let mut marks = Vec::new();
            for pg in state.pgs() {
                for segment in WriterState::segments_of(pg) {
                    if config.node_of(segment) == Some(node)
                        && let Some(first) = state.records_to_resend(segment).first()
                    {
                        marks.push((segment, first.lsn));
                    }
                }
            }
            core.stalled.extend(marks);
        }
    }
}

/// W5: what the write batches sent now carry.
fn batch_header(state: &WriterState) -> BatchHeader {
    BatchHeader {
        epoch: state.epoch(),
        vdl_hint: state.vdl(),
        truncation: state.truncation(),
    }
}

struct Events(std::sync::Weak<Inner>);

impl LinkEvents for Events {
    fn unsolicited(&self, node: NodeId, message: Message) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        match message {
            Message::Ack {
                segment,
                scl,
                epoch,
                ..
            } => inner.on_ack(segment, scl, epoch),
            Message::StatusReply {
                request_id,
                epoch,
                segments,
                lease_ms,
                ..
            } => {
                for status in segments {
                    inner.on_ack(status.segment, status.scl, status.epoch);
                }
                if lease_ms > 0 {
                    inner.on_grant(node, request_id, epoch, lease_ms);
                }
            }
            Message::Error {
                code: ErrorCode::StaleEpoch,
                epoch,
                ..
            } => inner.on_stale(epoch),
            Message::Error {
                code: ErrorCode::NotReady,
                message,
                ..
            } => {
                // R3, S15: a node still learning the recovery's history, or catching up;
                // the request is re-sent (W7) or read elsewhere (R5): not an operator matter.
                tracing::info!(node = node.0, %message, "node not ready yet; re-sending later");
            }
            Message::Error { code, message, .. } => {
                tracing::warn!(node = node.0, ?code, %message, "node refused a request");
            }
            other => tracing::debug!(node = node.0, id = other.request_id(), "late reply dropped"),
        }
    }

    fn connected(&self, node: NodeId) {
        if let Some(inner) = self.0.upgrade() {
            inner.forget_stalls_of(node);
        }
    }
}

impl Writer {
    /// Connects to every node of `config`, runs recovery (X1–X8) and opens the volume.
    pub fn open(config: ClusterConfig, options: WriterOptions) -> Result<Writer, WriterError> {
        // B20: a backup target that cannot be opened stops the open before recovery.
        let manifest = match &config.backup {
            Some(url) => Some(ManifestStager::new(
                BackupTarget::open(url).map_err(|e| WriterError::Backup(e.to_string()))?,
                config.clone(),
            )),
            None => None,
        };
        let links: BTreeMap<NodeId, Arc<Link>> = config
            .nodes
            .iter()
            .map(|n| (n.id, Link::new(n.id, n.addr)))
            .collect();
        let cache = Cache::new(options.cache_pages_max.max(CACHE_PAGES_MIN));
        let inner = Arc::new(Inner {
            config: config.clone(),
            options,
            core: Mutex::new(Core {
                state: None,
                cache,
                geometry_epoch: 0,
                stalled: HashMap::new(),
                lease: ReadLease::new(LEASE_HOLD_MS, QuorumConfig::AURORA.read_quorum()),
                waiters: BTreeMap::new(),
            }),
            changed: Condvar::new(),
            links,
            stop: Arc::new(AtomicBool::new(false)),
            catalog: Mutex::new(()),
            started: Instant::now(),
        });
        let mut threads = Vec::new();
        let events: Arc<dyn LinkEvents> = Arc::new(Events(Arc::downgrade(&inner)));
        for link in inner.links.values() {
            let (link, config, events, stop) = (
                link.clone(),
                config.clone(),
                events.clone(),
                inner.stop.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("writer-link{}", link.node.0))
                    .spawn(move || link.run(config, events, stop))
                    .expect("spawn link thread"),
            );
        }
        let mut writer = Writer { inner, threads };
        writer.recover()?;
        // R8: the first lease is asked for at once, not a tick later.
        writer.inner.tick();
        let ticker = {
            let inner = writer.inner.clone();
            std::thread::Builder::new()
                .name("writer-tick".into())
                .spawn(move || {
                    while !inner.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(TICK_MS));
                        inner.tick();
                    }
                })
                .expect("spawn tick thread")
        };
        writer.threads.push(ticker);
        if let Some(manifest) = manifest {
            let inner = writer.inner.clone();
            let thread = std::thread::Builder::new()
                .name("writer-manifest".into())
                .spawn(move || manifest_loop(inner, manifest))
                .expect("spawn manifest thread");
            writer.threads.push(thread);
        }
        Ok(writer)
    }

    /// X1–X8: retried with a higher epoch until it succeeds or the recovery timeout ends.
    fn recover(&mut self) -> Result<(), WriterError> {
        let inner = &self.inner;
        let started = Instant::now();
        let deadline = started + inner.options.recovery_timeout;
        // Give the links a moment to connect so recovery sees the reachable nodes: all of
        // them, or all but two and then 100 ms more (recovery needs all but two; a dead AZ
        // must not cost the full wait).
        let mut quorum_since: Option<Instant> = None;
        while Instant::now() < deadline && started.elapsed() < Duration::from_millis(2_000) {
            let pending = inner
                .links
                .values()
                .filter(|l| !l.is_connected() && l.refusal().is_none())
                .count();
            if pending == 0 {
                break;
            }
            if pending <= 2 {
                let since = *quorum_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(LINK_GRACE_MS) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // I2: a node whose identity disagrees with this config stops the open before any
        // epoch is raised, so a misconfigured writer neither fences nor writes.
        if let Some(refusal) = inner.links.values().find_map(|l| l.refusal()) {
            return Err(WriterError::Identity(refusal));
        }
        let driver = Driver {
            config: &inner.config,
            links: &inner.links,
            lal: WRITER_LAL,
        };
        let mut last = String::from("no attempt");
        let mut floor = Epoch(0);
        for attempt in 1..=RECOVERY_ATTEMPTS_MAX {
            if Instant::now() >= deadline {
                return Err(WriterError::Recovery {
                    attempts: attempt - 1,
                    last,
                });
            }
            let (highest, _) = driver.highest_epoch();
            let proposed = highest.max(floor).next();
            match driver.run(proposed) {
                Ok(recovered) => {
                    self.open_state(recovered);
                    return Ok(());
                }
                Err(error @ RecoveryDriverError::Misplaced { .. }) => {
                    // I3: retrying cannot help; the config must change back.
                    return Err(WriterError::Identity(error.to_string()));
                }
                Err(error) => {
                    if let RecoveryDriverError::EpochTaken { seen, .. } = &error {
                        floor = floor.max(*seen);
                    }
                    floor = floor.max(proposed);
                    tracing::info!(attempt, %error, "recovery attempt failed; retrying (X8)");
                    last = error.to_string();
                    std::thread::sleep(Duration::from_millis(200 * attempt.min(5) as u64));
                }
            }
        }
        Err(WriterError::Recovery {
            attempts: RECOVERY_ATTEMPTS_MAX,
            last,
        })
    }

    fn open_state(&self, recovered: crate::recovery::Recovered) {
        let plan = recovered.plan;
        let config = WriterConfig {
            geometry: self.inner.config.geometry(),
            quorum: QuorumConfig::AURORA,
            lal: WRITER_LAL,
        };
        let mut state = WriterState::new(config, plan.writer_start());
        // R1: the SCLs recovery saw make segments read candidates from the start.
        for (segment, scl) in recovered.scls {
            state.handle_ack(segment, scl, plan.epoch);
        }
        drain(&mut state);
        tracing::info!(epoch = plan.epoch.0, vdl = plan.vdl.0, "writer open");
        let mut core = self.inner.core();
        core.geometry_epoch = state.pgs().count() as u64;
        core.cache.set_vdl(state.vdl());
        core.state = Some(state);
    }

    pub fn stats(&self) -> WriterStats {
        let core = self.inner.core();
        let connected_nodes = self
            .inner
            .links
            .values()
            .filter(|l| l.is_connected())
            .count();
        match core.state.as_ref() {
            Some(state) => WriterStats {
                epoch: state.epoch(),
                vcl: state.vcl(),
                vdl: state.vdl(),
                last_allocated: state.last_allocated(),
                waiting_commits: state.waiting_commits(),
                geometry_epoch: core.geometry_epoch,
                pgs: state.pgs().count(),
                connected_nodes,
                fenced_by: state.fenced_by(),
            },
            None => WriterStats::default(),
        }
    }

    pub fn vdl(&self) -> Lsn {
        self.stats().vdl
    }

    /// C20: what the links sent, summed over nodes (write batches, records, socket
    /// writes): records per batch above one means MTRs shared batches.
    pub fn link_stats(&self) -> crate::link::LinkStats {
        let mut sum = crate::link::LinkStats::default();
        for link in self.inner.links.values() {
            let stats = link.stats();
            sum.batches += stats.batches;
            sum.records += stats.records;
            sum.socket_writes += stats.socket_writes;
        }
        sum
    }

    pub fn epoch(&self) -> Epoch {
        self.stats().epoch
    }

    /// A new, empty transaction.
    pub fn begin(&self) -> Transaction {
        Transaction::default()
    }

    /// Commits `txn` as one MTR and waits until it is durable (VDL ≥ its LSN, C4).
    pub fn commit(&self, txn: Transaction) -> Result<Lsn, WriterError> {
        let lsn = self.submit(txn)?;
        self.wait_durable(lsn, self.inner.options.commit_timeout)?;
        Ok(lsn)
    }

    /// Allocates and sends `txn`'s records; returns its commit LSN without waiting (C5).
    pub fn submit(&self, txn: Transaction) -> Result<Lsn, WriterError> {
        if txn.changes.is_empty() {
            return Err(WriterError::BadTransaction("empty transaction".into()));
        }
        check_mtr_size(txn.changes.len())?;
        let mut mtr = Mtr::new();
        for (page, edits) in &txn.changes {
            let body = RedoBody::Edits(edits.clone());
            let bytes: usize = 2 + edits.iter().map(|e| 4 + e.bytes.len()).sum::<usize>();
            if !body.is_well_formed() || bytes > sixfold_core::codec::RECORD_BODY_BYTES_MAX {
                return Err(WriterError::BadTransaction(format!(
                    "edits of {page} are empty, leave the page or exceed a record (L4)"
                )));
            }
            mtr.push(*page, body);
        }
        let submitted = self.submit_mtr(|_| Ok(Some(mtr.clone())), |_, _| {})?;
        submitted.ok_or_else(|| WriterError::BadTransaction("empty transaction".into()))
    }

    /// W1–W5: allocate, update the cache (`cache_update` sees each change and the cache
    /// entry), dispatch. `build` makes the MTR under the core lock, so what it checked
    /// (the pages' latest LSNs) still holds when LSNs are allocated; `None` if there is
    /// nothing to write. Waits on LAL back-pressure; learns unknown page LSNs by reading.
    /// C20: no lock is held while waiting or sending; the records are queued to the
    /// links under the core lock, so each segment gets them in LSN order.
    fn submit_mtr(
        &self,
        mut build: impl FnMut(&WriterState) -> Result<Option<Mtr>, WriterError>,
        mut cache_update: impl FnMut(&mut Cache, &RedoRecord),
    ) -> Result<Option<Lsn>, WriterError> {
        let deadline = Instant::now() + self.inner.options.commit_timeout;
        loop {
            let mut core = self.inner.core();
            let state = core.state.as_mut().ok_or(WriterError::Closed)?;
            let Some(mtr) = build(state)? else {
                return Ok(None);
            };
            let known_pgs: Vec<PgId> = state.pgs().collect();
            match state.submit_mtr(mtr) {
                Ok(submitted) => {
                    let header = batch_header(state);
                    drain(state);
                    for record in &submitted.records {
                        if !known_pgs.contains(&record.pg) {
                            core.geometry_epoch += 1;
                            known_pgs_grew(record.pg, core.geometry_epoch);
                        }
                        update_cache_with(&mut core.cache, record);
                        cache_update(&mut core.cache, record);
                    }
                    self.inner
                        .dispatch(submitted.records.iter().map(|r| (r, None)), header);
                    return Ok(Some(submitted.commit_lsn));
                }
                Err(WriteError::Fenced { by }) => return Err(WriterError::Fenced { by }),
                Err(WriteError::MtrLargerThanLal { records, lal }) => {
                    return Err(WriterError::TransactionTooLarge { records, max: lal });
                }
                Err(WriteError::PageLsnUnknown { page }) => {
                    drop(core);
                    self.learn_page(page)?;
                }
                Err(WriteError::Backpressure { .. }) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(WriterError::Backpressure {
                            waited_ms: self.inner.options.commit_timeout.as_millis() as u64,
                        });
                    }
                    let _ = self.inner.changed.wait_timeout(core, deadline - now);
                }
                Err(other) => return Err(WriterError::BadTransaction(other.to_string())),
            }
        }
    }

    /// C4, C5, C6, C21: waits until VDL ≥ `lsn`; fails if the writer is fenced or closed
    /// first. The waiter sleeps on its own wake-up, woken once, in LSN order, when VDL
    /// passes `lsn` (never by acks that do not move VDL).
    pub fn wait_durable(&self, lsn: Lsn, timeout: Duration) -> Result<(), WriterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let wake = {
                let mut core = self.inner.core();
                let state = core.state.as_ref().ok_or(WriterError::Closed)?;
                if let Some(by) = state.fenced_by() {
                    return Err(WriterError::Fenced { by });
                }
                if state.vdl() >= lsn {
                    return Ok(());
                }
                if self.inner.stop.load(Ordering::SeqCst) {
                    return Err(WriterError::Closed);
                }
                if Instant::now() >= deadline {
                    return Err(WriterError::CommitTimeout {
                        lsn,
                        waited_ms: timeout.as_millis() as u64,
                    });
                }
                let wake = Arc::new(Wake::default());
                core.waiters.entry(lsn).or_default().push(wake.clone());
                wake
            };
            if !wake.wait_until(deadline) {
                self.inner.core().withdraw(lsn, &wake);
            }
        }
    }

    /// R2, R4: starts a read at the current VDL and registers its read point.
    pub fn begin_read(&self) -> Lsn {
        let mut core = self.inner.core();
        core.state.as_mut().map_or(Lsn::ZERO, |s| s.begin_read())
    }

    /// R4: the read at `read_point` is over.
    pub fn end_read(&self, read_point: Lsn) {
        let mut core = self.inner.core();
        if let Some(state) = core.state.as_mut() {
            state.end_read(read_point);
        }
    }

    /// The page as of now (its latest durable version); `None` if never written.
    pub fn read(&self, page: PageId) -> Result<Option<Vec<u8>>, WriterError> {
        let read_point = self.begin_read();
        let result = self.read_page(page, read_point);
        self.end_read(read_point);
        result
    }

    /// X7: learns `page`'s LSN (for its backlink) by reading it at the current VDL.
    fn learn_page(&self, page: PageId) -> Result<(), WriterError> {
        self.read(page).map(|_| ())
    }

    /// R9, E3: the core, locked, at a moment this writer holds the read lease; waits for
    /// a renewal up to [`LEASE_WAIT_MS`]. A fenced writer fails at once.
    fn leased_core(&self) -> Result<MutexGuard<'_, Core>, WriterError> {
        let started = Instant::now();
        let wait = Duration::from_millis(LEASE_WAIT_MS);
        let mut core = self.inner.core();
        loop {
            let state = core.state.as_ref().ok_or(WriterError::Closed)?;
            if let Some(by) = state.fenced_by() {
                return Err(WriterError::Fenced { by });
            }
            if self.inner.lease_held(&core) {
                return Ok(core);
            }
            let waited = started.elapsed();
            if waited >= wait {
                return Err(WriterError::LeaseExpired {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            let step = (wait - waited).min(Duration::from_millis(TICK_MS));
            core = self
                .inner
                .changed
                .wait_timeout(core, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// R1, R3, R5, R6, R9: `page` as of `read_point` (from [`Writer::begin_read`]); `None`
    /// if it had never been written by then. Served only under the read lease.
    pub fn read_page(&self, page: PageId, read_point: Lsn) -> Result<Option<Vec<u8>>, WriterError> {
        let (candidates, pg_lsn, epoch, pg) = {
            let core = self.leased_core()?;
            let state = core.state.as_ref().ok_or(WriterError::Closed)?;
            let latest = state.page_lsn(page);
            if let Some((lsn, bytes)) = core.cache.get(page)
                && lsn <= read_point
                && latest == Some(lsn)
            {
                return Ok(Some(bytes));
            }
            if latest == Some(Lsn::ZERO) {
                return Ok(None); // X7: known never written.
            }
            let pg = state.config().geometry.pg_of(page);
            let pg_lsn = state.pg_lsn_at(pg, read_point);
            if pg_lsn == Lsn::ZERO && latest.is_none() {
                // No record of this PG at or below the read point: never written.
                drop(core);
                let mut core = self.inner.core();
                if let Some(state) = core.state.as_mut() {
                    state.note_page_lsn(page, Lsn::ZERO);
                }
                return Ok(None);
            }
            (
                state.read_candidates(pg, read_point),
                pg_lsn,
                state.epoch(),
                pg,
            )
        };
        let started = Instant::now();
        let rotate = (page.page_no as usize + page.db.0 as usize) % candidates.len().max(1);
        let mut candidates = candidates;
        candidates.rotate_left(rotate);
        while started.elapsed() < self.inner.options.read_timeout {
            for &segment in &candidates {
                let Some(link) = self.inner.link_of(segment) else {
                    continue;
                };
                if !link.is_connected() {
                    continue;
                }
                let reply = link.request(
                    |request_id| Message::GetPage {
                        request_id,
                        segment,
                        epoch,
                        read_point,
                        pg_lsn,
                        page,
                    },
                    Duration::from_millis(READ_ATTEMPT_TIMEOUT_MS),
                );
                match reply {
                    Ok(Message::Page {
                        page_lsn, bytes, ..
                    }) if bytes.as_ref().is_none_or(|b| b.len() == PAGE_BYTES) => {
                        // R9: the node served it no later than now; without the lease
                        // now, wait for a renewal and read again.
                        if !self.inner.lease_held(&self.inner.core()) {
                            drop(self.leased_core()?);
                            continue;
                        }
                        self.took_page(page, page_lsn, bytes.as_ref());
                        return Ok(bytes);
                    }
                    Ok(Message::Error {
                        code: ErrorCode::StaleEpoch,
                        epoch,
                        ..
                    }) => {
                        self.inner.on_stale(epoch);
                        let by = self.epoch().max(epoch);
                        return Err(WriterError::Fenced { by });
                    }
                    // R5: slow, failed or not ready: the next segment.
                    Ok(other) => {
                        tracing::debug!(%segment, reply = ?other.request_id(), "read refused")
                    }
                    Err(error) => tracing::debug!(%segment, %error, "read failed"),
                }
            }
            std::thread::sleep(Duration::from_millis(20));
            let core = self.inner.core();
            if let Some(state) = core.state.as_ref() {
                let mut fresh = state.read_candidates(pg, read_point);
                if !fresh.is_empty() {
                    let len = fresh.len();
                    fresh.rotate_left(rotate % len);
                    candidates = fresh;
                }
            }
        }
        Err(WriterError::ReadFailed {
            pg: pg.0,
            page,
            read_point,
            waited_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// X7, R6: a page read from storage gives its LSN; the latest version is cached.
    fn took_page(&self, page: PageId, page_lsn: Lsn, bytes: Option<&Vec<u8>>) {
        let mut core = self.inner.core();
        let Some(state) = core.state.as_mut() else {
            return;
        };
        state.note_page_lsn(page, page_lsn);
        if state.page_lsn(page) == Some(page_lsn)
            && let Some(bytes) = bytes
        {
            core.cache.insert(page, page_lsn, bytes.clone());
        }
    }

    /// V5, V7: writes full page images as one MTR, diffed against their previous images,
    /// and waits until durable. Pages equal to their previous image are skipped; if all
    /// are, nothing is written and the current VDL is returned.
    pub fn commit_pages(&self, pages: Vec<(PageId, Vec<u8>)>) -> Result<Lsn, WriterError> {
        if pages.is_empty() {
            return Err(WriterError::BadTransaction(
                "commit_pages takes at least one page".into(),
            ));
        }
        check_mtr_size(pages.len())?;
        if let Some((page, image)) = pages.iter().find(|(_, i)| i.len() != PAGE_BYTES) {
            return Err(WriterError::BadTransaction(format!(
                "image of {page} is {} bytes, not {PAGE_BYTES}",
                image.len()
            )));
        }
        let bases = self.read_bases(&pages)?;
        let build = |state: &WriterState| {
            let mut mtr = Mtr::new();
            for (page, image) in &pages {
                // The base must be the page's latest version; a concurrent writer of the
                // same page makes this caller retry.
                let (lsn, base) = &bases[page];
                if state.page_lsn(*page) != Some(*lsn) {
                    return Err(WriterError::BadTransaction(format!(
                        "{page} changed while being committed; retry"
                    )));
                }
                if let Some(body) = diff_pages(base, image) {
                    mtr.push(*page, body);
                }
            }
            Ok((!mtr.is_empty()).then_some(mtr))
        };
        let images: HashMap<PageId, &Vec<u8>> = pages.iter().map(|(p, i)| (*p, i)).collect();
        let submitted = self.submit_mtr(build, |cache, record| {
            if let Some(image) = images.get(&record.page) {
                cache.insert(record.page, record.lsn, (*image).clone());
            }
        })?;
        let Some(lsn) = submitted else {
            return Ok(self.vdl());
        };
        self.wait_durable(lsn, self.inner.options.commit_timeout)?;
        Ok(lsn)
    }

    /// V7, W9: the latest image and LSN of every page `pages` changes. A large transaction's
    /// pages are mostly not cached, so they are read [`BASE_READERS`] at a time.
    fn read_bases(
        &self,
        pages: &[(PageId, Vec<u8>)],
    ) -> Result<HashMap<PageId, (Lsn, Vec<u8>)>, WriterError> {
        let read_base = |page: PageId| -> Result<(PageId, (Lsn, Vec<u8>)), WriterError> {
            let read_point = self.begin_read();
            let result = self.read_page(page, read_point);
            self.end_read(read_point);
            let bytes = result?.unwrap_or_else(|| vec![0; PAGE_BYTES]);
            let lsn = self
                .inner
                .core()
                .state
                .as_ref()
                .and_then(|s| s.page_lsn(page));
            Ok((page, (lsn.unwrap_or(Lsn::ZERO), bytes)))
        };
        if pages.len() <= BASE_READERS * 4 {
            return pages.iter().map(|(page, _)| read_base(*page)).collect();
        }
        let chunk = pages.len().div_ceil(BASE_READERS);
        std::thread::scope(|scope| {
            let readers: Vec<_> = pages
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(page, _)| read_base(*page))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut bases = HashMap::with_capacity(pages.len());
            for reader in readers {
                bases.extend(reader.join().expect("a base reader panicked")?);
            }
            Ok(bases)
        })
    }

    /// V3: the id of page-level database `name`, created in [`CATALOG_PAGE`] on first use.
    /// Ids start at [`PAGE_DB_ID_BASE`], so they never clash with SQL databases.
    pub fn database_id(&self, name: &str) -> Result<DbId, WriterError> {
        if name.is_empty() || name.len() > DATABASE_NAME_BYTES_MAX {
            return Err(WriterError::Catalog(format!(
                "a database name is 1 to {DATABASE_NAME_BYTES_MAX} bytes"
            )));
        }
        let _one_at_a_time = self.inner.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let page = self.read(CATALOG_PAGE)?;
        let mut entries = match &page {
            Some(bytes) => decode_catalog(bytes)?,
            None => Vec::new(),
        };
        if let Some((id, _)) = entries.iter().find(|(_, n)| n == name) {
            return Ok(DbId(*id));
        }
        let id = entries
            .iter()
            .map(|(id, _)| *id + 1)
            .max()
            .unwrap_or(PAGE_DB_ID_BASE);
        if id == CATALOG_PAGE.db.0 {
            return Err(WriterError::Catalog(
                "page-level database ids used up".into(),
            ));
        }
        entries.push((id, name.to_string()));
        let image = encode_catalog(&entries)?;
        self.commit_pages(vec![(CATALOG_PAGE, image)])?;
        Ok(DbId(id))
    }

    /// Drops every cached page so the next reads go to storage (tests of the read path).
    /// Call it with no commit outstanding: a page whose latest version is above VDL is
    /// then only in storage, and `commit_pages` of it fails until that version is durable.
    pub fn clear_cache(&self) {
        let mut core = self.inner.core();
        core.cache.clear();
    }

    /// A crash: stops the writer's links at once, sending nothing more (no final
    /// heartbeat, R12); commits in flight fail as closed, their outcome unknown (C4).
    /// Records already sent stay where they landed; the next recovery decides (X4, W10).
    pub fn halt(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let due = std::mem::take(&mut self.inner.core().waiters);
        wake_all(due.into_values().flatten().collect());
        self.inner.changed.notify_all();
    }

    /// Stops the writer's threads. Pending commits keep their outcome unknown.
    pub fn close(mut self) {
        self.shutdown();
    }

    /// R12: a closing writer tells every node its final VDL, so a read-only attach right
    /// after sees every commit this writer acknowledged.
    fn final_heartbeat(&self) {
        if self.inner.stop.load(Ordering::SeqCst) {
            return; // halted: a crash says nothing more
        }
        let header = {
            let core = self.inner.core();
            match core.state.as_ref() {
                Some(state) if state.fenced_by().is_none() && !self.threads.is_empty() => {
                    (batch_header(state), state.vcl(), state.pgmrpl())
                }
                _ => return,
            }
        };
        let (batch, vcl, pgmrpl) = header;
        for link in self.inner.links.values().filter(|l| l.is_connected()) {
            let _ = link.request(
                |request_id| Message::Heartbeat {
                    request_id,
                    epoch: batch.epoch,
                    vcl,
                    vdl: batch.vdl_hint,
                    pgmrpl,
                    truncation: batch.truncation,
                },
                Duration::from_millis(FINAL_HEARTBEAT_TIMEOUT_MS),
            );
        }
    }

    fn shutdown(&mut self) {
        self.final_heartbeat();
        self.inner.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let due = std::mem::take(&mut self.inner.core().waiters);
        wake_all(due.into_values().flatten().collect());
        self.inner.changed.notify_all();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// B9: a manifest point every `MANIFEST_INTERVAL_MS` while VDL moves, and a last one when
/// the writer stops (so a restore to "latest" after a clean stop has every commit).
fn manifest_loop(inner: Arc<Inner>, mut manifest: ManifestStager) {
    loop {
        let stopping = inner.stop.load(Ordering::SeqCst);
        let time_ms = wall_clock_ms();
        if let Some((vdl, pg_last)) = inner.manifest_point()
            && let Err(error) = manifest.record(time_ms, vdl, pg_last)
        {
            tracing::warn!(%error, "B9: manifest point not staged; retried next interval");
        }
        if stopping {
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(MANIFEST_INTERVAL_MS);
        while Instant::now() < deadline && !inner.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// W8: refuses an MTR of more records than [`MTR_RECORDS_MAX`].
fn check_mtr_size(records: usize) -> Result<(), WriterError> {
    let records = records as u64;
    if records > MTR_RECORDS_MAX {
        return Err(WriterError::TransactionTooLarge {
            records,
            max: MTR_RECORDS_MAX,
        });
    }
    Ok(())
}

fn known_pgs_grew(pg: PgId, geometry_epoch: u64) {
    tracing::info!(pg = pg.0, geometry_epoch, "volume grew by a PG (V2)");
}

/// R6: the cached latest version follows the writer's own records; a cached version the
/// record does not follow is dropped (or, if pinned, left stale: reads check that a cached
/// version is the page's latest LSN before using it).
fn update_cache_with(cache: &mut Cache, record: &RedoRecord) {
    let Some(meta) = cache.pages.peek(&record.page) else {
        return;
    };
    let applied = Lsn(meta.lsn) == record.prev_lsn_page
        && cache
            .pages
            .apply(&record.page, record.lsn.0, |bytes| {
                apply_body(bytes, &record.body)
            })
            .is_ok();
    if !applied {
        let _ = cache.pages.remove(&record.page);
    }
}

fn decode_catalog(bytes: &[u8]) -> Result<Vec<(u32, String)>, WriterError> {
    let bad = || WriterError::Catalog("catalog page is malformed".into());
    let u32_at = |at: usize| -> Result<u32, WriterError> {
        bytes
            .get(at..at + 4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4")))
            .ok_or_else(bad)
    };
    if u32_at(0)? != CATALOG_MAGIC {
        return Err(bad());
    }
    let count = u32_at(4)? as usize;
    let mut at = 8;
    let mut entries = Vec::new();
    for _ in 0..count {
        let id = u32_at(at)?;
        let len = *bytes.get(at + 4).ok_or_else(bad)? as usize;
        let name = bytes.get(at + 5..at + 5 + len).ok_or_else(bad)?;
        entries.push((id, String::from_utf8(name.to_vec()).map_err(|_| bad())?));
        at += 5 + len;
    }
    Ok(entries)
}

fn encode_catalog(entries: &[(u32, String)]) -> Result<Vec<u8>, WriterError> {
    let mut out = Vec::with_capacity(PAGE_BYTES);
    out.extend_from_slice(&CATALOG_MAGIC.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (id, name) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    if out.len() > PAGE_BYTES {
        return Err(WriterError::Catalog("catalog page is full".into()));
    }
    out.resize(PAGE_BYTES, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_only_pages_at_or_below_vdl() {
        // R6: pages above VDL stay even over capacity; once VDL passes them they go.
        let mut cache = Cache::new(4);
        for n in 0..16u32 {
            cache.insert(
                PageId::new(1, n),
                Lsn(10 + n as u64),
                vec![n as u8; PAGE_BYTES],
            );
        }
        for n in 0..16u32 {
            assert!(
                cache.get(PageId::new(1, n)).is_some(),
                "page above VDL evicted"
            );
        }
        cache.set_vdl(Lsn(17));
        for n in 8..16u32 {
            let (lsn, bytes) = cache
                .get(PageId::new(1, n))
                .expect("page above VDL evicted");
            assert_eq!((lsn, bytes[0]), (Lsn(10 + n as u64), n as u8));
        }
        cache.set_vdl(Lsn(100));
        let stats = cache.pages.stats();
        assert!(stats.bytes_used <= stats.capacity_bytes, "{stats:?}");
    }

    #[test]
    fn catalog_round_trips_and_refuses_garbage() {
        // V3: the catalog page format.
        let entries = vec![(1, "alpha".to_string()), (2, "beta".to_string())];
        let page = encode_catalog(&entries).unwrap();
        assert_eq!(decode_catalog(&page).unwrap(), entries);
        assert!(decode_catalog(&[0xFF; PAGE_BYTES]).is_err());
    }
}
