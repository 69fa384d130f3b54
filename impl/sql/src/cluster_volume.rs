//! [`ClusterVolume`]: the networked quorum writer (`sixfold_cluster::Writer`) as the
//! [`PageVolume`] the SQL layer runs on.
//!
//! - Commits are not serialised by the volume (C20): commits of different databases
//!   run side by side, share the links' write batches and wait for VDL each on its own.
//!   Writes of one database are serialised by SQLite's RESERVED lock (the registry),
//!   held until its commit is durable (C4), so a commit's base images are always the
//!   pages' latest durable versions and the writer's "changed while being committed"
//!   refusal cannot happen.
//! - A commit that is not durable within the writer's `commit_timeout` (an AZ and one
//!   more node down) keeps waiting: the MTR is already on its way to storage and may
//!   still become durable when nodes return, so reporting a failure would break
//!   [`PageVolume::commit`]'s contract (an error means the MTR never shows). The wait
//!   ends when VDL passes the commit (acknowledged) or when this writer is crashed,
//!   fenced or closed — then the outcome is unknown and the writer is poisoned: every
//!   later call fails until [`ClusterVolume::recover`] opens a new writer, whose
//!   recovery settles the outcome (X4).
//! - [`ClusterVolume::crash_writer`] and [`ClusterVolume::recover`] replace the writer
//!   under open SQLite connections (the demo and `sixfold slt --faults` use them). A read
//!   that began on the old writer fails instead of being served by the new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use sixfold_cluster::{ClusterConfig, Writer, WriterError, WriterOptions, WriterStats};
use sixfold_core::{Lsn, PageId};

use crate::volume::{PageVolume, PageWrite, VolumeError, check_writes};

/// How long one wait for an MTR's durability lasts before the adapter checks whether its
/// writer is still the current one, in milliseconds.
pub const DURABLE_POLL_MS: u64 = 200;

/// The current writer and what is known about it.
struct Current {
    /// Bumped each time the writer is crashed or replaced.
    generation: u64,
    /// `None` while crashed (between [`ClusterVolume::crash_writer`] and `recover`).
    writer: Option<Arc<Writer>>,
    /// Why this generation refuses every call (a commit's outcome became unknown).
    poisoned: Option<String>,
}

/// The networked writer as a [`PageVolume`].
pub struct ClusterVolume {
    config: ClusterConfig,
    options: WriterOptions,
    current: RwLock<Current>,
    /// Open reads: read point → (generation, count), so a read never crosses writers.
    reads: Mutex<BTreeMap<u64, (u64, u32)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClusterVolume {
    /// Connects to the cluster of `config` and opens a writer (recovery, X1–X8).
    pub fn open(config: ClusterConfig, options: WriterOptions) -> Result<Self, WriterError> {
        let writer = Writer::open(config.clone(), options.clone())?;
        Ok(Self {
            config,
            options,
            current: RwLock::new(Current {
                generation: 1,
                writer: Some(Arc::new(writer)),
                poisoned: None,
            }),
            reads: Mutex::new(BTreeMap::new()),
        })
    }

    /// The cluster config this volume's writers use.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The current writer's counters (`None` while crashed).
    pub fn stats(&self) -> Option<WriterStats> {
        self.current_writer().ok().map(|(_, writer)| writer.stats())
    }

    /// Empties the writer's page cache, so the next reads go to storage (R1). Call it
    /// with no commit outstanding (see `Writer::clear_cache`).
    pub fn clear_cache(&self) {
        if let Ok((_, writer)) = self.current_writer() {
            writer.clear_cache();
        }
    }

    /// Stops the current writer as a crash would: nothing is flushed or waited for; a
    /// commit in flight ends with an "outcome unknown" error. Calls fail until
    /// [`ClusterVolume::recover`].
    pub fn crash_writer(&self) {
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            current.generation += 1;
            current.poisoned = None;
            current.writer.take()
        };
        // Its links stop now (nothing more is sent); the object goes when its last user
        // (a waiting commit, which fails as closed) lets go.
        if let Some(old) = &old {
            old.halt();
        }
        drop(old);
    }

    /// Opens a new writer (recovery raises the epoch, recomputes VDL and truncates above
    /// it, X1–X8) and makes it current. A writer still running is fenced by it (E3).
    pub fn recover(&self) -> Result<WriterStats, WriterError> {
        self.crash_writer();
        let writer = Writer::open(self.config.clone(), self.options.clone())?;
        let stats = writer.stats();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        current.generation += 1;
        current.poisoned = None;
        current.writer = Some(Arc::new(writer));
        Ok(stats)
    }

    fn current_writer(&self) -> Result<(u64, Arc<Writer>), VolumeError> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &current.poisoned {
            return Err(VolumeError::Backend(reason.clone()));
        }
        match &current.writer {
            Some(writer) => Ok((current.generation, writer.clone())),
            None => Err(VolumeError::Backend(
                "the writer is down (crashed); no reads or commits until it recovers".into(),
            )),
        }
    }

    /// Makes `generation` refuse every later call: the outcome of a commit it sent is
    /// unknown ([`VolumeError::OutcomeUnknown`]).
    fn poison(&self, generation: u64, reason: String) -> VolumeError {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.generation == generation && current.poisoned.is_none() {
            current.poisoned = Some(reason.clone());
        }
        VolumeError::OutcomeUnknown(reason)
    }

    /// Whether the current writer refuses every call because a commit's outcome became
    /// unknown (fenced, failed while waiting) or because it crashed: `None` when usable.
    pub fn unusable_reason(&self) -> Option<String> {
        self.current_writer().err().map(|error| error.to_string())
    }

    fn generation(&self) -> u64 {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// C4: waits until `lsn` is durable on `writer`, however long, unless the writer
    /// stops being the current one or fails; then the outcome is unknown.
    fn wait_durable(&self, generation: u64, writer: &Writer, lsn: Lsn) -> Result<u64, VolumeError> {
        let started = Instant::now();
        let mut warned_at = Duration::ZERO;
        loop {
            if self.generation() != generation {
                let reason = format!(
                    "the writer crashed while commit {lsn} waited for durability; its \
                     outcome is unknown until recovery"
                );
                return Err(VolumeError::OutcomeUnknown(reason));
            }
            match writer.wait_durable(lsn, Duration::from_millis(DURABLE_POLL_MS)) {
                Ok(()) => return Ok(lsn.0),
                Err(WriterError::CommitTimeout { .. }) => {
                    let waited = started.elapsed();
                    if waited >= warned_at + self.options.commit_timeout {
                        warned_at = waited;
                        tracing::warn!(
                            %lsn,
                            waited_ms = waited.as_millis() as u64,
                            "commit still waiting for a write quorum (C4: 4 of 6 segments)"
                        );
                    }
                }
                Err(error) => {
                    let reason = format!("commit {lsn}: {error}; its outcome is unknown");
                    return Err(self.poison(generation, reason));
                }
            }
        }
    }
}

impl PageVolume for ClusterVolume {
    fn begin_read(&self) -> Result<u64, VolumeError> {
        let (generation, writer) = self.current_writer()?;
        let read_point = writer.begin_read().0;
        let mut reads = lock(&self.reads);
        let entry = reads.entry(read_point).or_insert((generation, 0));
        if entry.0 != generation {
            // A read point the old writer handed out equals this one: R4 tracking is
            // per writer, so the new writer's count starts here.
            *entry = (generation, 0);
        }
        entry.1 += 1;
        Ok(read_point)
    }

    fn end_read(&self, read_point: u64) {
        let generation = {
            let mut reads = lock(&self.reads);
            let Some(entry) = reads.get_mut(&read_point) else {
                return;
            };
            let generation = entry.0;
            entry.1 -= 1;
            if entry.1 == 0 {
                reads.remove(&read_point);
            }
            generation
        };
        if let Ok((current, writer)) = self.current_writer()
            && current == generation
        {
            writer.end_read(Lsn(read_point));
        }
    }

    fn read_page(
        &self,
        db: u32,
        page_no: u32,
        read_point: u64,
    ) -> Result<Option<Vec<u8>>, VolumeError> {
        let (generation, writer) = self.current_writer()?;
        let began = lock(&self.reads).get(&read_point).map(|entry| entry.0);
        if began.is_some_and(|began| began != generation) {
            return Err(VolumeError::Backend(format!(
                "read point {read_point} belongs to a writer that has since crashed; \
                 start a new read"
            )));
        }
        // R9: a lease that lapsed while the nodes worked through a large transaction
        // (W9: its batches queue ahead of the renewals) is waited for again, each attempt
        // for at most lease_wait, up to the read timeout; nothing is served without it.
        let started = std::time::Instant::now();
        let result = loop {
            match writer.read_page(PageId::new(db, page_no), Lsn(read_point)) {
                Err(WriterError::LeaseExpired { .. })
                    if started.elapsed() < self.options.read_timeout => {}
                other => break other,
            }
        };
        result.map_err(|error| {
            VolumeError::Backend(format!(
                "reading db {db} page {page_no} at read point {read_point}: {error}"
            ))
        })
    }

    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
        check_writes(&writes)?;
        let (generation, writer) = self.current_writer()?;
        let count = writes.len();
        let pages = writes
            .into_iter()
            .map(|w| (PageId::new(w.db, w.page_no), w.image))
            .collect();
        match writer.commit_pages(pages) {
            Ok(lsn) => Ok(lsn.0),
            Err(WriterError::CommitTimeout { lsn, .. }) => {
                self.wait_durable(generation, &writer, lsn)
            }
            Err(error @ (WriterError::Fenced { .. } | WriterError::Closed)) => {
                let reason = format!("commit of {count} pages: {error}");
                Err(self.poison(generation, reason))
            }
            Err(error @ WriterError::TransactionTooLarge { .. }) => {
                Err(VolumeError::TooLarge(error.to_string()))
            }
            // Refused before anything was sent (bad MTR, a base page unreadable, LAL):
            // the MTR will never show.
            Err(error) => Err(VolumeError::Backend(format!(
                "commit of {count} pages refused: {error}"
            ))),
        }
    }
}
