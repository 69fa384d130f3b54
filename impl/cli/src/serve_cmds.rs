//! `sixfold serve`: the long-running writer that clients share over HTTP/JSON and the
//! PostgreSQL wire protocol
//! (spec/server.md, docs/server.md).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::sql_cmds::{Session, VolumeLocation};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  sixfold serve --data d                       (HTTP on 127.0.0.1:7070)
  sixfold serve --cluster cluster.toml --http 0.0.0.0:8080
  sixfold serve --data d --pg 127.0.0.1:5432   (and psql -h 127.0.0.1 -d app)
  curl -s localhost:7070/v1/db/app -d '{\"sql\": \"SELECT ?1 + 1\", \"params\": [41]}'")]
pub struct ServeArgs {
    #[command(flatten)]
    pub location: VolumeLocation,
    /// Address of the HTTP/JSON API, /metrics, /status, /healthz and /readyz; port 0
    /// picks a free port. The bound address is printed on standard output.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub http: String,
    /// Also speak the PostgreSQL wire protocol on ADDR (psql, psycopg, ...; H20); port 0
    /// picks a free port. The bound address is printed on standard output.
    #[arg(long, value_name = "ADDR")]
    pub pg: Option<String>,
    /// Seconds a request may take; a request that writes and has not committed durably
    /// by then is answered "outcome unknown" (H10).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub commit_wait: f64,
    /// Largest request body accepted, in bytes (H13).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Requests running SQL at once; more wait for a turn (H8).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_sessions: usize,
}

/// H1: opens the writer once (recovery), serves until Ctrl-C or SIGTERM, then closes the
/// connections, the writer and the embedded nodes.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.commit_wait.is_finite() && args.commit_wait > 0.0,
        "--commit-wait must be a positive number of seconds"
    );
    let listener = std::net::TcpListener::bind(&args.http)
        .with_context(|| format!("binding the HTTP address {}", args.http))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let pg = match &args.pg {
        Some(pg) => Some(
            std::net::TcpListener::bind(pg)
                .with_context(|| format!("binding the PostgreSQL address {pg}"))?,
        ),
        None => None,
    };
    let session = Session::open(&args.location)?;
    let options = sixfold_server::ServerOptions {
        commit_wait: Duration::from_secs_f64(args.commit_wait),
        max_body_bytes: args.max_body,
        max_sessions: args.max_sessions,
    };
    // Tests and scripts read this line to learn the port.
    println!("listening on http://{address}");
    if let Some(pg) = &pg {
        let bound = pg.local_addr().context("reading the bound address")?;
        println!("listening on postgresql://{bound}");
    }
    std::io::stdout()
        .flush()
        .context("writing to standard output")?;
    let served = sixfold_server::serve_blocking(
        session.volume.clone(),
        listener,
        pg,
        options,
        sixfold_server::stop_signal,
    );
    session.close();
    served.context("serving HTTP")?;
    Ok(ExitCode::SUCCESS)
}
