//! sixfold-server: `sixfold serve`, the long-running writer that many clients share
//! (spec/server.md, docs/server.md).
//!
//! One process owns the volume's writer ([`ClusterVolume`]); clients send SQL over an
//! HTTP/JSON API and never run recovery or raise the epoch themselves (H1). Each request
//! is one SQLite transaction on a pooled connection to the database it names (H5), and a
//! request that commits is answered only once VDL has passed its commit LSN (H9).
//!
//! - [`values`]: SQLite values as JSON (H4).
//! - [`exec`]: the connection pool and the transaction runner (H5–H10).
//! - [`http`]: routes, status codes, limits (H2, H3, H11–H17).
//! - [`metrics`]: Prometheus metrics and the commit-counting volume wrapper (H15).
//! - [`pg`]: the PostgreSQL wire protocol, for `psql` and PostgreSQL drivers (H20–H30).

pub mod client;
pub mod exec;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod values;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sixfold_sql::{ClusterVolume, PageVolume};

/// Limits and deadlines of a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// H10: how long a request may take before a writing one is answered "outcome
    /// unknown" (and a reading one "timeout").
    pub commit_wait: Duration,
    /// H13: the largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// H8: requests running SQL at once; more wait for a turn.
    pub max_sessions: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            commit_wait: Duration::from_secs(30),
            max_body_bytes: 1 << 20,
            max_sessions: 64,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("listening: {0}")]
    Listen(std::io::Error),
}

/// H1, H20: serves the API on `listener` (and the PostgreSQL protocol on `pg`, if given)
/// until `shutdown` resolves; every SQLite connection is closed when this returns, so the
/// caller may close the volume.
pub fn serve_blocking(
    volume: Arc<ClusterVolume>,
    listener: std::net::TcpListener,
    pg: Option<std::net::TcpListener>,
    options: ServerOptions,
    shutdown: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sixfold-serve")
        .build()
        .map_err(ServeError::Runtime)?;
    let address = listener.local_addr().map_err(ServeError::Listen)?;
    listener.set_nonblocking(true).map_err(ServeError::Listen)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let tracked: Arc<dyn PageVolume> = Arc::new(metrics::TrackedVolume {
        inner: volume.clone() as Arc<dyn PageVolume>,
        metrics: metrics.clone(),
    });
    let app = Arc::new(http::App {
        volume,
        databases: Arc::new(exec::Databases::new(tracked)),
        metrics,
        sessions: Arc::new(tokio::sync::Semaphore::new(options.max_sessions.max(1))),
        options,
        started: Instant::now(),
        address,
    });
    if let Some(pg) = &pg {
        pg.set_nonblocking(true).map_err(ServeError::Listen)?;
    }
    let signal = shutdown();
    let served = runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let pg_served = match pg {
            Some(pg) => {
                let pg = tokio::net::TcpListener::from_std(pg)?;
                Some(tokio::spawn(pg::serve(pg, app.clone(), stopped.clone())))
            }
            None => None,
        };
        let mut http_stopped = stopped;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let http = axum::serve(listener, http::router(app)).with_graceful_shutdown(async move {
            let _ = http_stopped.changed().await;
        });
        tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        let served = http.await;
        // The accept loop has stopped on the signal, or HTTP failed: either way it ends
        // here (open sessions end with the runtime).
        if let Some(pg_served) = pg_served {
            pg_served.abort();
            let _ = pg_served.await;
        }
        served
    });
    // Workers still committing finish (or time out) before the volume is closed.
    runtime.shutdown_timeout(http::SHUTDOWN_GRACE);
    served.map_err(ServeError::Listen)
}

/// The end of the server: Ctrl-C or SIGTERM.
pub fn stop_signal() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(error) => {
                        tracing::warn!(%error, "no SIGTERM handler; stop with Ctrl-C");
                        let _ = interrupt.await;
                        return;
                    }
                };
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
    })
}
