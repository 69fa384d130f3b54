//! The PostgreSQL wire protocol (v3) carrying SQLite's SQL (spec/server.md H20–H30):
//! `psql`, `psycopg` and other PostgreSQL drivers connect to `sixfold serve --pg ADDR`.
//!
//! - [`codec`]: message framing, both ways, no IO (H21, H22).
//! - [`types`]: SQLite values as PostgreSQL types, SQLSTATEs (H23, H24).
//! - [`session`]: one session's state machine: simple and extended query, transaction
//!   blocks (H25–H29).
//!
//! This module is the network shell: it accepts connections, answers the startup
//! packets, and hands each batch of complete messages to the session on the blocking
//! pool, under the same `--max-sessions` and `--commit-wait` limits as HTTP (H8, H29).

pub mod codec;
pub mod session;
pub mod types;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::Mutex;
use rusqlite::InterruptHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::exec::{ExecError, STAGE_WRITING};
use crate::http::App;
use codec::{Backend, Frontend, Notice, Startup};
use session::{PARAMETERS, PgSession};

/// Where a session keeps its running statement's interrupt handle.
type InterruptSlot = Arc<Mutex<Option<InterruptHandle>>>;

/// The sessions a CancelRequest may interrupt, by (process id, secret key).
#[derive(Default)]
struct Cancels {
    next_id: AtomicI32,
    running: Mutex<HashMap<(i32, i32), InterruptSlot>>,
}

impl Cancels {
    fn register(&self, interrupt: InterruptSlot) -> (i32, i32) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i32(id);
        let key = (id, hasher.finish() as i32);
        self.running.lock().insert(key, interrupt);
        key
    }

    fn cancel(&self, key: (i32, i32)) {
        if let Some(interrupt) = self.running.lock().get(&key)
            && let Some(handle) = interrupt.lock().as_ref()
        {
            handle.interrupt();
        }
    }
}

/// H20: accepts PostgreSQL clients on `listener` until `stop` changes.
pub async fn serve(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let cancels = Arc::new(Cancels::default());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (app, cancels) = (app.clone(), cancels.clone());
                    tokio::spawn(async move {
                        if let Err(error) = connection(stream, &app, &cancels).await {
                            tracing::debug!(%error, "pg connection ended");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, say: wait, and keep serving the others.
                    tracing::warn!(%error, "accepting a pg connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

fn fatal(code: &'static str, message: impl Into<String>) -> Backend {
    Backend::Error(Notice {
        severity: "FATAL",
        code,
        message: message.into(),
        detail: None,
        hint: None,
    })
}

async fn send(stream: &mut TcpStream, messages: &[Backend]) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    for message in messages {
        message.encode(&mut bytes);
    }
    stream.write_all(&bytes).await
}

/// Reads more bytes into `buffer`; `false` when the client closed the connection.
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    buffer.reserve(8192);
    Ok(stream.read_buf(buffer).await? > 0)
}

/// H21: SSLRequest and GSSENCRequest are answered `N` (no encryption), a CancelRequest
/// interrupts its session, a StartupMessage starts one. `None`: the connection ends.
async fn startup(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    cancels: &Cancels,
) -> std::io::Result<Option<(Vec<(String, String)>, i32)>> {
    loop {
        match codec::decode_startup(buffer) {
            Ok(Some((startup, used))) => {
                buffer.drain(..used);
                match startup {
                    Startup::SslRequest | Startup::GssEncRequest => stream.write_all(b"N").await?,
                    Startup::Cancel { process_id, secret } => {
                        cancels.cancel((process_id, secret));
                        return Ok(None);
                    }
                    Startup::Start { params, minor } => return Ok(Some((params, minor))),
                }
            }
            Ok(None) => {
                if !read_more(stream, buffer).await? {
                    return Ok(None);
                }
            }
            Err(error) => {
                send(stream, &[fatal("08P01", error.to_string())]).await?;
                return Ok(None);
            }
        }
    }
}

/// Counts an open session for `/metrics`.
struct Open(Arc<crate::metrics::Metrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.pg_connections.dec();
    }
}

async fn connection(
    mut stream: TcpStream,
    app: &Arc<App>,
    cancels: &Cancels,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = Vec::new();
    let Some((params, minor)) = startup(&mut stream, &mut buffer, cancels).await? else {
        return Ok(());
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let user = param("user").unwrap_or_default();
    let database = param("database").unwrap_or_else(|| user.clone());
    let mut hello = Vec::new();
    let unknown: Vec<String> = params
        .iter()
        .filter(|(key, _)| key.starts_with("_pq_."))
        .map(|(key, _)| key.clone())
        .collect();
    if minor > 0 || !unknown.is_empty() {
        hello.push(Backend::NegotiateProtocolVersion { minor: 0, unknown });
    }
    let session = match open_session(app, &database).await {
        Ok(session) => session,
        Err(refusal) => {
            hello.push(refusal);
            return send(&mut stream, &hello).await;
        }
    };
    app.metrics.pg_connections.inc();
    let _open = Open(app.metrics.clone());
    let key = cancels.register(session.interrupt.clone());
    hello.push(Backend::AuthenticationOk);
    for (name, value) in PARAMETERS {
        hello.push(Backend::ParameterStatus(name, value.to_string()));
    }
    hello.push(Backend::ParameterStatus(
        "application_name",
        param("application_name").unwrap_or_default(),
    ));
    hello.push(Backend::ParameterStatus("session_authorization", user));
    hello.push(Backend::BackendKeyData {
        process_id: key.0,
        secret: key.1,
    });
    hello.push(Backend::ReadyForQuery(b'I'));
    let served = async {
        send(&mut stream, &hello).await?;
        serve_session(&mut stream, buffer, session, app).await
    }
    .await;
    cancels.running.lock().remove(&key);
    served
}

/// H21: the session on database `name`, or the FATAL error that refuses it.
async fn open_session(app: &Arc<App>, name: &str) -> Result<PgSession, Backend> {
    if let Err(invalid) = sixfold_sql::validate_name(name) {
        return Err(fatal("3D000", invalid.to_string()));
    }
    let (databases, metrics, name) = (app.databases.clone(), app.metrics.clone(), name.to_string());
    let opened = tokio::task::spawn_blocking(move || PgSession::open(databases, metrics, &name))
        .await
        .map_err(|join| fatal("XX000", join.to_string()))?;
    opened.map_err(|failure| match failure {
        ExecError::NoSuchDatabase(name) => Backend::Error(Notice {
            severity: "FATAL",
            code: "3D000",
            message: format!("database \"{name}\" does not exist"),
            detail: None,
            hint: Some("create it with `sixfold db create` or POST /v1/db {\"name\": ...}".into()),
        }),
        other => fatal("58000", other.to_string()),
    })
}

/// H22, H29: reads messages, runs each batch of complete ones on the blocking pool, and
/// writes the answers; a malformed frame ends the connection with a FATAL error.
async fn serve_session(
    stream: &mut TcpStream,
    mut buffer: Vec<u8>,
    session: PgSession,
    app: &Arc<App>,
) -> std::io::Result<()> {
    let mut session = Some(session);
    let limit = app.options.max_body_bytes.max(1024);
    loop {
        let mut messages: Vec<Frontend> = Vec::new();
        let mut used = 0;
        loop {
            match codec::decode(&buffer[used..], limit) {
                Ok(Some((message, length))) => {
                    used += length;
                    messages.push(message);
                }
                Ok(None) => break,
                Err(error) => {
                    let code = match error {
                        codec::FrameError::Length(..) => "54000",
                        _ => "08P01",
                    };
                    return send(stream, &[fatal(code, error.to_string())]).await;
                }
            }
        }
        buffer.drain(..used);
        if messages.is_empty() {
            if !read_more(stream, &mut buffer).await? {
                return Ok(());
            }
            continue;
        }
        let Some(current) = session.take() else {
            return Ok(());
        };
        let (answers, next) = run_batch(app, current, messages).await;
        send(stream, &answers).await?;
        match next {
            Some(next) => session = Some(next),
            None => return Ok(()),
        }
    }
}

/// Runs `messages` on the blocking pool: the answers, and the session unless it ended
/// (Terminate, or a commit whose outcome became unknown at `--commit-wait`).
async fn run_batch(
    app: &Arc<App>,
    mut session: PgSession,
    messages: Vec<Frontend>,
) -> (Vec<Backend>, Option<PgSession>) {
    let Ok(permit) = app.sessions.clone().acquire_owned().await else {
        return (vec![fatal("57P01", "the server is shutting down")], None);
    };
    let (stage, interrupt) = (session.stage.clone(), session.interrupt.clone());
    let mut task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = Vec::new();
        let open = messages
            .into_iter()
            .all(|message| session.handle(message, &mut out));
        (out, open.then_some(session))
    });
    let finished = match tokio::time::timeout(app.options.commit_wait, &mut task).await {
        Ok(finished) => finished,
        Err(_elapsed) if stage.load(Ordering::SeqCst) == STAGE_WRITING => {
            // H29: the commit may still happen after this answer; the session ends, and
            // its worker rolls back whatever did not commit when it finishes.
            app.metrics.outcome_unknown.inc();
            let message = format!(
                "the transaction did not finish within {:?} (no write quorum, or waiting \
                 for locks); it may or may not commit",
                app.options.commit_wait
            );
            return (vec![fatal("08007", message)], None);
        }
        Err(_elapsed) => {
            // A read past its deadline is interrupted and answered as canceled.
            if let Some(handle) = interrupt.lock().as_ref() {
                handle.interrupt();
            }
            task.await
        }
    };
    match finished {
        Ok((out, session)) => (out, session),
        Err(join) => (
            vec![fatal(
                "XX000",
                format!("the session's worker failed: {join}"),
            )],
            None,
        ),
    }
}
