//! What `/metrics` exposes (H15), and the volume wrapper that counts commits.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sixfold_cluster::WriterStats;
use sixfold_sql::{PAGE_SIZE, PageVolume, PageWrite, VolumeError};

/// The server's counters; the writer's own numbers are read when `/metrics` is scraped.
pub struct Metrics {
    registry: Registry,
    pub commits: Counter,
    pub commit_failures: Counter,
    pub outcome_unknown: Counter,
    pub commit_pages: Counter,
    pub commit_seconds: Histogram,
    pub requests: Counter,
    pub request_errors: Counter,
    pub transactions: Counter,
    pub in_flight: Gauge,
    /// H30: PostgreSQL-protocol queries (Query and Execute messages) and open sessions.
    pub pg_queries: Counter,
    pub pg_connections: Gauge,
    vdl: Gauge,
    vcl: Gauge,
    epoch: Gauge,
    connected_nodes: Gauge,
    waiting_commits: Gauge,
    writer_usable: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sixfold");
        let commits = Counter::default();
        let commit_failures = Counter::default();
        let outcome_unknown = Counter::default();
        let commit_pages = Counter::default();
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let requests = Counter::default();
        let request_errors = Counter::default();
        let transactions = Counter::default();
        let in_flight = Gauge::default();
        let (pg_queries, pg_connections) = (Counter::default(), Gauge::default());
        let (vdl, vcl, epoch) = (Gauge::default(), Gauge::default(), Gauge::default());
        let (connected_nodes, waiting_commits) = (Gauge::default(), Gauge::default());
        let writer_usable = Gauge::default();
        let counters = [
            (
                "commits",
                "MTRs acknowledged durable (VDL passed them)",
                &commits,
            ),
            (
                "commit_failures",
                "MTRs refused or failed",
                &commit_failures,
            ),
            (
                "commit_outcome_unknown",
                "commits whose outcome became unknown (writer fenced or crashed while waiting, or the wait deadline passed)",
                &outcome_unknown,
            ),
            (
                "commit_pages",
                "pages written by acknowledged MTRs",
                &commit_pages,
            ),
            ("http_requests", "API requests answered", &requests),
            (
                "http_request_errors",
                "API requests answered with an error",
                &request_errors,
            ),
            ("transactions", "API transactions committed", &transactions),
            (
                "pg_queries",
                "PostgreSQL-protocol Query and Execute messages",
                &pg_queries,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "commit_latency_seconds",
            "time from an MTR's submission to its durability (C4)",
            commit_seconds.clone(),
        );
        let gauges = [
            (
                "http_requests_in_flight",
                "API requests being served",
                &in_flight,
            ),
            (
                "pg_connections",
                "open PostgreSQL-protocol sessions",
                &pg_connections,
            ),
            ("vdl", "volume durable LSN", &vdl),
            ("vcl", "volume complete LSN", &vcl),
            ("epoch", "the writer's volume epoch", &epoch),
            (
                "connected_nodes",
                "storage nodes the writer is connected to",
                &connected_nodes,
            ),
            (
                "waiting_commits",
                "MTRs waiting for durability",
                &waiting_commits,
            ),
            (
                "writer_usable",
                "1 while the writer accepts reads and commits",
                &writer_usable,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        Metrics {
            registry,
            commits,
            commit_failures,
            outcome_unknown,
            commit_pages,
            commit_seconds,
            requests,
            request_errors,
            transactions,
            in_flight,
            pg_queries,
            pg_connections,
            vdl,
            vcl,
            epoch,
            connected_nodes,
            waiting_commits,
            writer_usable,
        }
    }

    /// H15: the Prometheus text exposition, the writer's numbers read now.
    pub fn render(&self, stats: Option<&WriterStats>, usable: bool) -> String {
        self.writer_usable.set(i64::from(usable));
        if let Some(stats) = stats {
            let lsn = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            self.vdl.set(lsn(stats.vdl.0));
            self.vcl.set(lsn(stats.vcl.0));
            self.epoch.set(lsn(stats.epoch.0));
            self.connected_nodes.set(stats.connected_nodes as i64);
            self.waiting_commits.set(stats.waiting_commits as i64);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What the last commit on this thread did, so a request can tell "committed at LSN",
/// "failed, nothing written" and "outcome unknown" apart (H9, H10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitNote {
    Nothing,
    Durable(u64),
    Failed,
    OutcomeUnknown,
}

thread_local! {
    static LAST_COMMIT: Cell<CommitNote> = const { Cell::new(CommitNote::Nothing) };
}

/// Forgets this thread's last commit (at the start of a request).
pub fn reset_commit_note() {
    LAST_COMMIT.with(|note| note.set(CommitNote::Nothing));
}

/// This thread's last commit since [`reset_commit_note`].
pub fn commit_note() -> CommitNote {
    LAST_COMMIT.with(Cell::get)
}

/// The cluster volume as the server's SQLite connections see it: every commit is
/// counted and timed, and noted for the thread that made it. SQLite commits on the
/// thread that runs the statement, so the note reaches the request that caused it.
pub struct TrackedVolume {
    pub inner: Arc<dyn PageVolume>,
    pub metrics: Arc<Metrics>,
}

impl PageVolume for TrackedVolume {
    fn begin_read(&self) -> Result<u64, VolumeError> {
        self.inner.begin_read()
    }

    fn end_read(&self, read_point: u64) {
        self.inner.end_read(read_point)
    }

    fn read_page(
        &self,
        db: u32,
        page_no: u32,
        read_point: u64,
    ) -> Result<Option<Vec<u8>>, VolumeError> {
        self.inner.read_page(db, page_no, read_point)
    }

    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
        let pages = writes.len() as u64;
        let started = Instant::now();
        let result = self.inner.commit(writes);
        let note = match &result {
            Ok(lsn) => {
                self.metrics.commits.inc();
                self.metrics.commit_pages.inc_by(pages);
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                CommitNote::Durable(*lsn)
            }
            Err(VolumeError::OutcomeUnknown(_)) => {
                self.metrics.outcome_unknown.inc();
                CommitNote::OutcomeUnknown
            }
            Err(_) => {
                self.metrics.commit_failures.inc();
                CommitNote::Failed
            }
        };
        // SQLite retries a failed batch commit through its journal (a second commit
        // here); an outcome already unknown stays unknown for the request (H10).
        LAST_COMMIT.with(|last| {
            if last.get() != CommitNote::OutcomeUnknown {
                last.set(note);
            }
        });
        result
    }
}

/// Bytes a page write carries, for the bytes-per-commit figure in `/status`.
pub const PAGE_BYTES: u64 = PAGE_SIZE as u64;
