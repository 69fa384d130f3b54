//! The storage-node server: accepts authenticated connections, serves every segment the
//! node holds, gossips with the other segments of each PG (S6) and runs the store's
//! background work.
//!
//! One thread accepts, one thread per connection serves requests in order (a client that
//! sends faster than the disk is slowed by TCP: back-pressure), one thread gossips.

use std::collections::{BTreeMap, HashMap};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sixfold_core::lease::{LEASE_PROMISE_MS, LeasePromise};
use sixfold_core::{Epoch, Lsn, NodeId, SEGMENTS_PER_PG, SegmentId};

use crate::admission::{AUTHENTICATED_MAX, Admission, Refusal, RefusalLog, UNAUTHENTICATED_MAX};
use crate::backup::BackupTarget;
use crate::backup::stager::{STAGE_INTERVAL_MS, STAGER_REPLICA, Stager};
use crate::config::ClusterConfig;
use crate::files::{self, DataDirLock, FilesError, PrivatePath};
use crate::identity::{self, Identity};
use crate::net::{HANDSHAKE_TIMEOUT_MS, POLL_MS, SyncClient, WRITE_TIMEOUT_MS};
use crate::session::{
    FrameOpener, FrameSealer, HandshakeError, SECRET_BYTES_RECOMMENDED_MIN, ServerHandshake,
    Session,
};
use crate::store::{self, NodeStore, NodeStoreError as StoreError, Unrecorded};
use crate::wire::{self, ErrorCode, Message, WireError, WriterInfo};
use sixfold_storage::Ticket;

/// Connections a node holds at once, at most: the unauthenticated and the authenticated
/// budgets (A10, A12), which never borrow from each other.
pub const CONNECTIONS_MAX: usize = UNAUTHENTICATED_MAX + AUTHENTICATED_MAX;
/// A connection that sends nothing for this long is closed, in milliseconds.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Pause between gossip rounds, in milliseconds (S6).
pub const GOSSIP_INTERVAL_MS: u64 = 200;
/// How long one gossip call may take, in milliseconds.
pub const GOSSIP_CALL_TIMEOUT_MS: u64 = 2_000;
/// Longest wait before re-dialling an unreachable peer, in milliseconds.
pub const PEER_BACKOFF_MAX_MS: u64 = 2_000;
/// First wait before re-dialling a peer that failed, in milliseconds.
pub const PEER_BACKOFF_MIN_MS: u64 = 100;
/// Requests read ahead of the serving loop per connection, at most.
pub const CONNECTION_QUEUE_REQUESTS_MAX: usize = 256;
/// Requests served as one group (one flush for its write batches), at most.
pub const GROUP_REQUESTS_MAX: usize = 64;
/// Gossip calls a segment makes to one peer per round while the peer has more, at most.
pub const GOSSIP_CALLS_PER_ROUND_MAX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("node {0} is not in the config")]
    UnknownNode(u32),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Open(#[from] store::StoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

struct Shared {
    config: ClusterConfig,
    node: NodeId,
    store: Mutex<NodeStore>,
    /// S25: signalled (with `store`) when a group commit finishes.
    committed: Condvar,
    writer: Mutex<Option<(WriterInfo, Instant)>>,
    /// R7, R10: the node's lease promises, in ms since `started`.
    lease: Mutex<LeasePromise>,
    started: Instant,
    stop: Arc<AtomicBool>,
    connections: AtomicUsize,
    /// A10–A12: which connections hold which budget.
    admission: Mutex<Admission>,
    /// A13: refused connections, logged as counts.
    refusals: Mutex<RefusalLog>,
    /// Streams of live connections, to close them on stop.
    streams: Mutex<HashMap<u64, TcpStream>>,
}

impl Shared {
    fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Milliseconds on this node's monotonic clock (R11).
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn admission(&self) -> MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A13: counts a refused connection; logs a line at most once per interval.
    fn refused(&self, refusal: Refusal, reason: Option<String>) {
        let now = self.now_ms();
        let line = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(refusal, reason, now);
        if let Some(line) = line {
            tracing::warn!(node = self.node.0, "{line}");
        }
    }

    /// A1, A13: a client that failed to prove the secret, on its own line (rate-limited).
    fn auth_failed(&self, reason: &str) {
        let now = self.now_ms();
        let line = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_auth_failure(reason, now);
        if let Some(line) = line {
            tracing::warn!(node = self.node.0, "{line}");
        }
    }

    /// A13: logs the counted refusals once their interval is over.
    fn flush_refusals(&self) {
        let now = self.now_ms();
        let line = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush(now);
        if let Some(line) = line {
            tracing::warn!(node = self.node.0, "{line}");
        }
    }

    fn lease(&self) -> MutexGuard<'_, LeasePromise> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> MutexGuard<'_, NodeStore> {
        self.store
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A running storage node; dropping it stops it.
pub struct NodeHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// A7: held while the node runs; released after its threads stopped.
    _lock: DataDirLock,
}

impl NodeHandle {
    /// Takes the data dir (created 0700, refused if others can read it, A6; locked, A7),
    /// opens the node's store (S12), binds its address and starts serving.
    pub fn start(config: &ClusterConfig, node: NodeId) -> Result<NodeHandle, ServerError> {
        Self::start_with(config, node, Unrecorded::Refuse)
    }

    /// As [`NodeHandle::start`]; `unrecorded` says what to do with a data folder that has
    /// data but no identity record (I4).
    pub fn start_with(
        config: &ClusterConfig,
        node: NodeId,
        unrecorded: Unrecorded,
    ) -> Result<NodeHandle, ServerError> {
        let spec = config.node(node).ok_or(ServerError::UnknownNode(node.0))?;
        files::create_private_dir(&spec.data_dir)?;
        files::check_private(&spec.data_dir, PrivatePath::DataDir)?;
        let lock = DataDirLock::acquire(&spec.data_dir)?;
        // B20: a backup target that cannot be opened stops the start.
        let stager = match &config.backup {
            Some(url) => Some(Stager::new(BackupTarget::open(url)?)),
            None => None,
        };
        let mut store = store::open_with(config, node, unrecorded)?;
        if stager.is_some() {
            store.hold_for_staging(STAGER_REPLICA);
        }
        let listener = TcpListener::bind(spec.addr).map_err(|source| ServerError::Listen {
            addr: spec.addr,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Listen {
                addr: spec.addr,
                source,
            })?;
        tracing::info!(node = node.0, addr = %spec.addr, epoch = store.epoch().0, "storage node listening");
        if config.secret.len() < SECRET_BYTES_RECOMMENDED_MIN {
            tracing::warn!(
                node = node.0,
                secret_bytes = config.secret.len(),
                "the cluster secret is short: anyone who records one handshake can test \
                 guesses offline; use {SECRET_BYTES_RECOMMENDED_MIN}+ random characters \
                 (docs/operations.md, Security)"
            );
        }
        let shared = Arc::new(Shared {
            config: config.clone(),
            node,
            store: Mutex::new(store),
            committed: Condvar::new(),
            writer: Mutex::new(None),
            // R7: a promise given before a restart is not on disk; count one from the start.
            lease: Mutex::new(LeasePromise::at_start(0, LEASE_PROMISE_MS)),
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            connections: AtomicUsize::new(0),
            admission: Mutex::new(Admission::new()),
            refusals: Mutex::new(RefusalLog::new()),
            streams: Mutex::new(HashMap::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("node{}-accept", node.0))
                .spawn(move || accept_loop(shared, listener))
                .expect("spawn accept thread")
        };
        let gossip = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("node{}-gossip", node.0))
                .spawn(move || gossip_loop(shared))
                .expect("spawn gossip thread")
        };
        let mut threads = vec![accept, gossip];
        if let Some(stager) = stager {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("node{}-stager", node.0))
                    .spawn(move || stage_loop(shared, stager))
                    .expect("spawn stager thread"),
            );
        }
        Ok(NodeHandle {
            shared,
            threads,
            _lock: lock,
        })
    }

    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// Stops accepting, closes every connection and waits for the threads.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for stream in self.shared.streams.lock().expect("streams").values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // Connection threads notice the stop flag within POLL_MS.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Blocks the calling thread while the node runs (the `storage-node` command).
    pub fn wait(self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// A10, A11: every connection is taken; if the unauthenticated budget is full, the oldest
/// silent unauthenticated connection is closed to make room.
fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                next_id += 1;
                let id = next_id;
                let accepted = Instant::now();
                if let Some(victim) = shared.admission().admit(id, shared.now_ms()) {
                    if let Some(victim) = shared.streams.lock().expect("streams").get(&victim) {
                        let _ = victim.shutdown(Shutdown::Both);
                    }
                    shared.refused(Refusal::Evicted, None);
                }
                if let Ok(clone) = stream.try_clone() {
                    shared.streams.lock().expect("streams").insert(id, clone);
                }
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared2 = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("node{}-conn{id}", shared.node.0))
                    .spawn(move || {
                        serve_connection(&shared2, stream, peer, id, accepted);
                        shared2.admission().closed(id);
                        shared2.streams.lock().expect("streams").remove(&id);
                        shared2.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    shared.admission().closed(id);
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                    shared.streams.lock().expect("streams").remove(&id);
                    shared.refused(Refusal::NoThread, None);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                shared.flush_refusals();
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(node = shared.node.0, error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_connection(
    shared: &Shared,
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    id: u64,
    accepted: Instant,
) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|_| stream.set_nodelay(true))
        .and_then(|_| stream.set_read_timeout(Some(Duration::from_millis(POLL_MS))))
        .and_then(|_| stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS))));
    if let Err(error) = setup {
        tracing::warn!(node = shared.node.0, %peer, %error, "connection setup failed");
        return;
    }
    // A9: the handshake must end within its deadline from accept.
    let deadline = accepted + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let session = match handshake(shared, &mut stream, id, deadline) {
        Ok(session) => session,
        Err(error) => {
            let _ = stream.shutdown(Shutdown::Both);
            // A11: a connection closed to make room was counted when it was closed.
            if shared.admission().is_pending(id) {
                tracing::debug!(node = shared.node.0, %peer, reason = %error, "handshake failed");
                let refusal = if Instant::now() >= deadline {
                    Refusal::HandshakeTimeout
                } else {
                    Refusal::HandshakeFailed
                };
                let reason =
                    (refusal == Refusal::HandshakeFailed).then(|| format!("{peer}: {error}"));
                if let WireError::Handshake(
                    HandshakeError::ClientProofFailed { .. }
                    | HandshakeError::AuthenticationFailed { .. },
                ) = &error
                {
                    shared.auth_failed(&format!("{peer}: {error}"));
                }
                shared.refused(refusal, reason);
            }
            return;
        }
    };
    // A12: authenticated connections have their own budget, strangers never touch it.
    if shared.admission().authenticated(id).is_err() {
        let _ = stream.shutdown(Shutdown::Both);
        shared.refused(Refusal::AuthenticatedFull, None);
        return;
    }
    let Session {
        peer_node: client,
        mut sealer,
        mut opener,
    } = session;
    tracing::debug!(node = shared.node.0, %peer, client, "connection authenticated");
    if let Err(error) = identify(shared, &mut stream, &mut sealer, &mut opener, client) {
        tracing::warn!(node = shared.node.0, %peer, client, reason = %error, "connection closed: identity refused (I2)");
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let Ok(read_half) = stream.try_clone() else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let (requests, inbox) = sync_channel(CONNECTION_QUEUE_REQUESTS_MAX);
    let reader = std::thread::Builder::new()
        .name(format!("node{}-read", shared.node.0))
        .spawn({
            let stop = shared.stop_flag();
            let node = shared.node.0;
            move || read_requests(read_half, opener, requests, stop, node, peer)
        });
    let Ok(reader) = reader else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    'serve: loop {
        let first = match inbox.recv_timeout(Duration::from_millis(POLL_MS)) {
            Ok(request) => request,
            Err(RecvTimeoutError::Timeout) if !shared.stop.load(Ordering::SeqCst) => continue,
            Err(_) => break,
        };
        // S2: every request already waiting joins this group: one fsync for its writes.
        let mut group = vec![first];
        while group.len() < GROUP_REQUESTS_MAX {
            match inbox.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        for reply in handle_group(shared, client, group) {
            let Some(reply) = reply else {
                tracing::warn!(node = shared.node.0, %peer, "connection closed: unexpected message");
                break 'serve;
            };
            if let Err(error) = wire::send_sealed(&mut stream, &mut sealer, &reply) {
                tracing::debug!(node = shared.node.0, %peer, reason = %error, "connection closed: send failed");
                break 'serve;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    drop(inbox);
    let _ = reader.join();
}

/// The reading half of a connection: frames in, decoded requests to the serving loop
/// through a bounded queue (a client that sends faster than the node serves blocks on
/// TCP: back-pressure).
fn read_requests(
    mut stream: TcpStream,
    mut opener: FrameOpener,
    requests: SyncSender<Message>,
    stop: Arc<AtomicBool>,
    node: u32,
    peer: std::net::SocketAddr,
) {
    let mut last_activity = Instant::now();
    loop {
        let mut idle = || {
            !stop.load(Ordering::SeqCst)
                && last_activity.elapsed() < Duration::from_millis(IDLE_TIMEOUT_MS)
        };
        match wire::receive_sealed(&mut stream, &mut opener, &mut idle) {
            Ok(request) => {
                last_activity = Instant::now();
                if requests.send(request).is_err() {
                    break;
                }
            }
            Err(WireError::Closed) | Err(WireError::Stopped) => break,
            Err(error) if error.is_connection_loss() => {
                tracing::info!(node, %peer, reason = %error, "connection closed by the peer");
                break;
            }
            Err(error) => {
                // Garbage, oversize or forged frames (A4): close this connection only.
                tracing::warn!(node, %peer, reason = %error, "connection closed: bad frame");
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Server side of the handshake (spec/wire.md §3, A1–A3). Returns the session whose keys
/// protect every later frame of this connection.
fn handshake(
    shared: &Shared,
    stream: &mut TcpStream,
    id: u64,
    deadline: Instant,
) -> Result<Session, WireError> {
    let handshake = ServerHandshake::new(&shared.config, shared.node.0, wire::random_nonce());
    wire::send(stream, &handshake.hello())?;
    let stop = &shared.stop;
    let mut idle = || Instant::now() < deadline && !stop.load(Ordering::SeqCst);
    wait_first_byte(stream, &mut idle)?;
    shared.admission().spoke(id);
    let auth = wire::receive(stream, &mut idle)?;
    match handshake.handle_auth(auth) {
        Ok((session, auth_ok)) => {
            wire::send(stream, &auth_ok)?;
            Ok(session)
        }
        Err(error) => {
            let _ = wire::send(
                stream,
                &Message::Error {
                    request_id: 0,
                    code: ErrorCode::Auth,
                    epoch: Epoch(0),
                    message: error.to_string(),
                },
            );
            Err(WireError::Handshake(error))
        }
    }
}

/// A11: waits until the client has sent something (a writer or peer answers `Hello` at
/// once; an idle stranger never does), without consuming it.
fn wait_first_byte(stream: &TcpStream, idle: &mut dyn FnMut() -> bool) -> Result<(), WireError> {
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte) {
            Ok(0) => return Err(WireError::Closed),
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !idle() {
                    return Err(WireError::Stopped);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// I2: the node's side of the identity exchange. The first message after the handshake
/// must be `Identify`, from the node id the client authenticated as, and agree with this
/// node's config (for a peer node: every segment it holds placed on it); anything else is
/// refused with a reason naming both values, and the connection closes before any write,
/// gossip or read is served.
fn identify(
    shared: &Shared,
    stream: &mut TcpStream,
    sealer: &mut FrameSealer,
    opener: &mut FrameOpener,
    client: u32,
) -> Result<(), WireError> {
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let stop = &shared.stop;
    let mut idle = || Instant::now() < deadline && !stop.load(Ordering::SeqCst);
    let refuse = |stream: &mut TcpStream,
                  sealer: &mut FrameSealer,
                  request_id: u64,
                  code: ErrorCode,
                  reason: String| {
        let _ = wire::send_sealed(
            stream,
            sealer,
            &Message::Error {
                request_id,
                code,
                epoch: Epoch(0),
                message: reason.clone(),
            },
        );
        WireError::IdentityRefused(reason)
    };
    match wire::receive_sealed(stream, opener, &mut idle)? {
        Message::Identify {
            request_id,
            identity,
        } => {
            let local = identity::describe(shared.node.0);
            if let Err(error) =
                identity::check_peer(&shared.config, &local, &identity, Some(client))
            {
                return Err(refuse(
                    stream,
                    sealer,
                    request_id,
                    ErrorCode::IdentityMismatch,
                    error.to_string(),
                ));
            }
            let hosted = shared.store().hosted();
            wire::send_sealed(
                stream,
                sealer,
                &Message::Identified {
                    request_id,
                    identity: Identity::node(&shared.config, shared.node, hosted),
                },
            )
        }
        other => Err(refuse(
            stream,
            sealer,
            other.request_id(),
            ErrorCode::NotIdentified,
            format!(
                "{} before Identify: a session that has not identified is served nothing (I2)",
                first_word(&other)
            ),
        )),
    }
}

fn first_word(message: &Message) -> String {
    format!("{message:?}")
        .split([' ', '{'])
        .next()
        .unwrap_or("")
        .to_string()
}

fn error_reply(request_id: u64, error: &StoreError, node_epoch: Epoch) -> Message {
    use sixfold_storage::StorageError as E;
    let (code, epoch) = match error {
        StoreError::StaleEpoch { seen, .. } | StoreError::Engine(E::StaleEpoch { seen, .. }) => {
            (ErrorCode::StaleEpoch, *seen)
        }
        StoreError::WrongSegment { .. }
        | StoreError::Engine(
            E::PgNotHosted { .. }
            | E::SegmentNotHosted { .. }
            | E::PgAlreadyHosted { .. }
            | E::WrongPage { .. },
        ) => (ErrorCode::WrongSegment, node_epoch),
        StoreError::Engine(
            E::Truncated { .. }
            | E::Oversize { .. }
            | E::Malformed { .. }
            | E::DuplicateMismatch { .. }
            | E::BadTruncation { .. },
        ) => (ErrorCode::RefusedRecord, node_epoch),
        StoreError::NotReady { .. }
        | StoreError::Engine(
            E::NotCaughtUp { .. }
            | E::BelowPgmrpl { .. }
            | E::RequiredAboveReadPoint { .. }
            | E::PageUnavailable { .. }
            | E::HistoryBehind { .. },
        ) => (ErrorCode::NotReady, node_epoch),
        StoreError::Limit(_) => (ErrorCode::BadRequest, node_epoch),
        _ => (ErrorCode::Internal, node_epoch),
    };
    Message::Error {
        request_id,
        code,
        epoch,
        message: error.to_string(),
    }
}

/// A queued write batch waiting for the group's flush.
struct PendingWrite {
    slot: usize,
    request_id: u64,
    segment: SegmentId,
    ticket: Ticket,
}

/// One reply per request, in order; `None` for a message no client may send after the
/// handshake. Consecutive write batches are queued and made durable by one group commit
/// (S1, S2, S25), shared with every other connection's batches; any other request first
/// waits for what is queued, so it never overtakes a write.
fn handle_group(shared: &Shared, client: u32, requests: Vec<Message>) -> Vec<Option<Message>> {
    let mut store = shared.store();
    let mut replies: Vec<Option<Message>> = Vec::with_capacity(requests.len());
    let mut pending: Vec<PendingWrite> = Vec::new();
    for request in requests {
        let request_id = request.request_id();
        match request {
            Message::WriteBatch {
                segment,
                epoch,
                vdl_hint,
                truncation,
                records,
                ..
            } => match store.submit(segment, epoch, vdl_hint, truncation, records) {
                Ok(ticket) => {
                    store.await_ticket(ticket);
                    pending.push(PendingWrite {
                        slot: replies.len(),
                        request_id,
                        segment,
                        ticket,
                    });
                    replies.push(None);
                }
                Err(error) => {
                    let epoch = store.epoch();
                    replies.push(Some(error_reply(request_id, &error, epoch)));
                }
            },
            other => {
                store = commit_pending(shared, store, &mut pending, &mut replies);
                replies.push(handle(shared, &mut store, client, other));
            }
        }
    }
    drop(commit_pending(shared, store, &mut pending, &mut replies));
    replies
}

/// S1, S2, S25: waits until a group commit decided every pending write, and fills its
/// reply: an ack only once the batch is durable. The store's lock is held except during
/// a commit's fsync: this connection either waits for the commit in flight (batches
/// queued meanwhile, from any connection, go to the next one) or runs the next one
/// itself, fsyncing without the lock so reads, heartbeats, gossip and other connections'
/// batches go on meanwhile.
fn commit_pending<'a>(
    shared: &'a Shared,
    mut store: MutexGuard<'a, NodeStore>,
    pending: &mut Vec<PendingWrite>,
    replies: &mut [Option<Message>],
) -> MutexGuard<'a, NodeStore> {
    loop {
        take_decided(&mut store, pending, replies);
        if pending.is_empty() {
            return store;
        }
        if store.commit_in_flight() {
            store = shared
                .committed
                .wait(store)
                .unwrap_or_else(|poison| poison.into_inner());
            continue;
        }
        let Some(mut job) = store.begin_commit() else {
            continue;
        };
        if job.is_empty() {
            // Nothing queued, so nothing will decide what is still pending.
            store.finish_commit(job);
            for write in pending.iter() {
                store.give_up_on(write.ticket, "the engine acknowledged no write");
            }
            continue;
        }
        drop(store);
        job.run();
        store = shared.store();
        store.finish_commit(job);
        shared.committed.notify_all();
    }
}

/// S1: replies of the pending writes a commit decided: acks of durable batches, errors of
/// batches whose group commit failed.
fn take_decided(
    store: &mut NodeStore,
    pending: &mut Vec<PendingWrite>,
    replies: &mut [Option<Message>],
) {
    let epoch = store.epoch();
    pending.retain(|write| {
        let Some(outcome) = store.take_outcome(write.ticket) else {
            return true;
        };
        replies[write.slot] = Some(match outcome {
            Ok(ack) => Message::Ack {
                request_id: write.request_id,
                segment: write.segment,
                scl: ack.scl,
                epoch: ack.epoch.max(epoch),
            },
            Err(reason) => Message::Error {
                request_id: write.request_id,
                code: ErrorCode::Internal,
                epoch,
                message: reason,
            },
        });
        false
    });
}

/// One request other than a write batch → one reply; `None` for a message no client may
/// send after the handshake.
fn handle(
    shared: &Shared,
    store: &mut NodeStore,
    client: u32,
    request: Message,
) -> Option<Message> {
    let request_id = request.request_id();
    let result: Result<Message, StoreError> = match request {
        Message::GetPage {
            segment,
            epoch,
            read_point,
            pg_lsn,
            page,
            ..
        } => store
            .get_page(segment, epoch, read_point, pg_lsn, page)
            .map(|found| Message::Page {
                request_id,
                page,
                page_lsn: found.as_ref().map_or(Lsn::ZERO, |(lsn, _)| *lsn),
                bytes: found.map(|(_, bytes)| bytes),
            }),
        Message::Gossip {
            segment, request, ..
        } => {
            let asker = (client != crate::net::CLIENT_NODE_ID).then_some(NodeId(client));
            // S20, S21: the asker judges its own repair by our SCL and standing.
            let (scl, repairing) = store.gossip_standing(segment);
            Ok(Message::GossipRecords {
                request_id,
                segment,
                epoch: store.epoch(),
                truncations: store.truncations().to_vec(),
                records: store.answer_gossip(segment, asker, &request),
                scl,
                repairing,
            })
        }
        Message::Truncate { history, .. } => store
            .truncate(&history)
            .map(|()| status_reply(shared, store, request_id)),
        Message::RaiseEpoch { epoch, .. } => {
            store.raise_epoch(epoch).map(|answer| Message::Reports {
                request_id,
                epoch: store.epoch(),
                truncations: store.truncations().to_vec(),
                reports: answer.reports,
                // R10: the recovering writer waits this out before it opens.
                lease_remaining_ms: lease_remaining(shared),
                repairing: answer.repairing,
                absent_may_be_lost: answer.absent_may_be_lost,
                incarnation: answer.incarnation,
                blank: answer.blank,
            })
        }
        // S23: the volume's genesis counted this folder's answer.
        Message::JoinGenesis { incarnation, .. } => store
            .join_genesis(incarnation)
            .map(|()| status_reply(shared, store, request_id)),
        Message::Heartbeat {
            epoch,
            vcl,
            vdl,
            pgmrpl,
            ..
        } => {
            // E1, S15: an open writer's epoch is adopted from its heartbeat too, so a node
            // that missed the recovery rejoins gossip even while the writer is idle; the
            // recovery's truncation history then comes by gossip, and until it has, the
            // node serves no read of that epoch and takes no write.
            let adopted = if epoch > store.epoch() {
                store.adopt_epoch(epoch)
            } else {
                Ok(())
            };
            // S21: heartbeats come only from a writer whose recovery finished.
            let adopted = adopted.and_then(|()| store.note_open_writer(epoch));
            adopted.and_then(|()| {
                heartbeat_reply(shared, store, request_id, epoch, (vcl, vdl, pgmrpl))
            })
        }
        Message::Status { .. } => Ok(status_reply(shared, store, request_id)),
        _ => return None,
    };
    let node_epoch = store.epoch();
    Some(result.unwrap_or_else(|error| {
        tracing::debug!(node = shared.node.0, %error, "request refused");
        error_reply(request_id, &error, node_epoch)
    }))
}

/// R4, R7, E3: a heartbeat of the node's epoch is noted and granted a lease; one of a
/// lower epoch is refused (StaleEpoch fences its writer) and granted nothing.
fn heartbeat_reply(
    shared: &Shared,
    store: &mut NodeStore,
    request_id: u64,
    epoch: Epoch,
    (vcl, vdl, pgmrpl): (Lsn, Lsn, Lsn),
) -> Result<Message, StoreError> {
    if epoch < store.epoch() {
        return Err(StoreError::StaleEpoch {
            got: epoch,
            seen: store.epoch(),
        });
    }
    store.note_writer_pgmrpl(pgmrpl);
    let info = WriterInfo {
        epoch,
        vcl,
        vdl,
        age_ms: 0,
    };
    *shared.writer.lock().expect("writer info") = Some((info, Instant::now()));
    let granted = shared.lease().grant(shared.now_ms());
    let mut reply = status_reply(shared, store, request_id);
    if let Message::StatusReply { lease_ms, .. } = &mut reply {
        *lease_ms = u32::try_from(granted).unwrap_or(u32::MAX);
    }
    Ok(reply)
}

/// R10: how long this node's latest lease promise still runs.
fn lease_remaining(shared: &Shared) -> u32 {
    let remaining = shared.lease().remaining_ms(shared.now_ms());
    u32::try_from(remaining).unwrap_or(u32::MAX)
}

fn status_reply(shared: &Shared, store: &NodeStore, request_id: u64) -> Message {
    let writer = shared
        .writer
        .lock()
        .expect("writer info")
        .map(|(info, at)| WriterInfo {
            age_ms: at.elapsed().as_millis() as u64,
            ..info
        });
    Message::StatusReply {
        request_id,
        node_id: shared.node.0,
        epoch: store.epoch(),
        writer,
        segments: store::segment_statuses(store),
        lease_ms: 0,
        absent_may_be_lost: store.absent_may_be_lost(),
    }
}

/// A dialled peer, or when to dial it again.
enum Peer {
    Up(SyncClient),
    Down { retry_at: Instant, backoff_ms: u64 },
}

struct Peers {
    peers: BTreeMap<NodeId, Peer>,
}

impl Peers {
    /// A connected client for `node`, dialling it if its backoff allows.
    fn client(&mut self, shared: &Shared, node: NodeId) -> Option<&mut SyncClient> {
        let entry = self.peers.entry(node).or_insert(Peer::Down {
            retry_at: Instant::now(),
            backoff_ms: PEER_BACKOFF_MIN_MS,
        });
        if let Peer::Down {
            retry_at,
            backoff_ms,
        } = entry
        {
            if Instant::now() < *retry_at {
                return None;
            }
            let addr = shared.config.node(node)?.addr;
            let local = Identity::node(&shared.config, shared.node, shared.store().hosted());
            match SyncClient::connect(addr, node.0, &shared.config, &local) {
                Ok(client) => *entry = Peer::Up(client),
                Err(error) => {
                    tracing::debug!(node = shared.node.0, peer = node.0, %error, "peer unreachable");
                    let next = (*backoff_ms * 2).min(PEER_BACKOFF_MAX_MS);
                    *entry = Peer::Down {
                        retry_at: Instant::now() + Duration::from_millis(*backoff_ms),
                        backoff_ms: next,
                    };
                    return None;
                }
            }
        }
        match entry {
            Peer::Up(client) => Some(client),
            Peer::Down { .. } => None,
        }
    }

    fn failed(&mut self, node: NodeId) {
        if let Some(Peer::Up(client)) = self.peers.get(&node) {
            client.shutdown();
        }
        self.peers.insert(
            node,
            Peer::Down {
                retry_at: Instant::now() + Duration::from_millis(PEER_BACKOFF_MIN_MS),
                backoff_ms: PEER_BACKOFF_MIN_MS * 2,
            },
        );
    }
}

fn sleep_unless_stopped(shared: &Shared, ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(POLL_MS.min(ms)));
    }
}

/// B11: the node's staging thread: a round every `STAGE_INTERVAL_MS`, on its own thread,
/// so no request waits on an upload.
fn stage_loop(shared: Arc<Shared>, mut stager: Stager) {
    while !shared.stop.load(Ordering::SeqCst) {
        let writer_vdl = shared
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|(info, _)| (info.epoch, info.vdl));
        let staged = stager.step(&shared.store, writer_vdl);
        if staged == 0 {
            sleep_unless_stopped(&shared, STAGE_INTERVAL_MS);
        }
    }
}

/// S6: each round, every hosted segment asks one peer of its PG (rotating) for what it
/// misses; one peer per round is also asked which segments it hosts, so a segment this
/// node should hold but never received a write for is created and filled.
fn gossip_loop(shared: Arc<Shared>) {
    let mut peers = Peers {
        peers: BTreeMap::new(),
    };
    let mut round: usize = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        round = round.wrapping_add(1);
        discover_segments(&shared, &mut peers, round);
        let hosted = shared.store().hosted();
        for segment in hosted {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let offset = 1 + round % (SEGMENTS_PER_PG - 1);
            let peer_segment = SegmentId {
                pg: segment.pg,
                replica: ((segment.replica as usize + offset) % SEGMENTS_PER_PG) as u8,
            };
            gossip_with(&shared, &mut peers, segment, peer_segment);
        }
        if let Err(error) = shared.store().background_step() {
            tracing::warn!(node = shared.node.0, %error, "background step failed");
        }
        sleep_unless_stopped(&shared, GOSSIP_INTERVAL_MS);
    }
}

fn gossip_with(shared: &Shared, peers: &mut Peers, segment: SegmentId, peer_segment: SegmentId) {
    let Some(peer) = shared.config.node_of(peer_segment) else {
        return;
    };
    for _ in 0..GOSSIP_CALLS_PER_ROUND_MAX {
        let Some(request) = shared.store().gossip_request(segment) else {
            return;
        };
        let Some(client) = peers.client(shared, peer) else {
            return;
        };
        let request_id = client.request_id();
        let message = Message::Gossip {
            request_id,
            segment: peer_segment,
            request,
        };
        let reply = client.call(&message, Duration::from_millis(GOSSIP_CALL_TIMEOUT_MS));
        match reply {
            Ok(Message::GossipRecords {
                epoch,
                truncations,
                records,
                scl,
                repairing,
                ..
            }) => {
                let full = records.len() >= wire::BATCH_RECORDS_MAX;
                let answer = crate::store::GossipAnswer {
                    peer: peer_segment,
                    epoch,
                    truncations,
                    records,
                    peer_scl: scl,
                    peer_repairing: repairing,
                    complete: !full,
                };
                let merged = shared.store().merge_gossip(segment, answer);
                match merged {
                    Ok(0) => return,
                    Ok(count) => {
                        tracing::debug!(node = shared.node.0, %segment, count, "records taken by gossip (S6)");
                        if !full {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(node = shared.node.0, %segment, %error, "gossip answer refused");
                        return;
                    }
                }
            }
            Ok(other) => {
                tracing::debug!(node = shared.node.0, peer = peer.0, reply = ?first_word(&other), "unexpected gossip reply");
                return;
            }
            Err(error) => {
                tracing::debug!(node = shared.node.0, peer = peer.0, %error, "gossip call failed");
                peers.failed(peer);
                return;
            }
        }
    }
}

/// V2: learn from one peer (rotating) the PGs it hosts, and create this node's segments of
/// those PGs, so gossip fills a segment that missed the PG's first writes.
fn discover_segments(shared: &Shared, peers: &mut Peers, round: usize) {
    let others: Vec<NodeId> = shared
        .config
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != shared.node)
        .collect();
    if others.is_empty() {
        return;
    }
    let peer = others[round % others.len()];
    let Some(client) = peers.client(shared, peer) else {
        return;
    };
    let request_id = client.request_id();
    let reply = client.call(
        &Message::Status { request_id },
        Duration::from_millis(GOSSIP_CALL_TIMEOUT_MS),
    );
    let segments = match reply {
        Ok(Message::StatusReply { segments, .. }) => segments,
        Ok(_) => return,
        Err(_) => {
            peers.failed(peer);
            return;
        }
    };
    let mut store = shared.store();
    let hosted: std::collections::BTreeSet<_> = store.hosted().into_iter().map(|s| s.pg).collect();
    for status in segments {
        let pg = status.segment.pg;
        if hosted.contains(&pg) {
            continue;
        }
        if let Err(error) = store.host_placed_segment_of(pg) {
            tracing::debug!(node = shared.node.0, pg = pg.0, %error, "segment not created");
        }
    }
}
