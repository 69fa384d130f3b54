//! The writer's connection to one storage node: a bounded outbound queue, a sender thread
//! that (re)connects with backoff, and a reader thread that routes replies.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sixfold_core::NodeId;

use crate::config::ClusterConfig;
use crate::identity::Identity;
use crate::net::{self, POLL_MS};
use crate::session::Session;
use crate::wire::{self, Message, WireError};

/// Frames queued to one node, at most; a full queue drops the frame (the writer re-sends
/// records until acknowledged, W7), so a slow node never grows the writer's memory.
pub const LINK_QUEUE_FRAMES_MAX: usize = 1_024;
/// First wait before re-dialling a node, in milliseconds.
pub const LINK_BACKOFF_MIN_MS: u64 = 50;
/// Longest wait between dials of an unreachable node, in milliseconds.
pub const LINK_BACKOFF_MAX_MS: u64 = 1_000;
/// Requests awaiting a reply on one link, at most.
pub const LINK_PENDING_MAX: usize = 4_096;

/// Where a link delivers what its node says without being asked.
pub trait LinkEvents: Send + Sync + 'static {
    /// A reply no caller is waiting for (acks of write batches, heartbeat replies,
    /// refusals).
    fn unsolicited(&self, node: NodeId, message: Message);
    /// The link (re)connected: records the node missed can be re-sent now (W7).
    fn connected(&self, node: NodeId);
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("node {0} is not connected")]
    NotConnected(u32),
    #[error("node {0}: outbound queue full")]
    QueueFull(u32),
    #[error("node {0}: no reply within {1} ms")]
    Timeout(u32, u64),
    #[error("node {0}: connection lost before the reply")]
    Lost(u32),
}

pub struct Link {
    pub node: NodeId,
    addr: SocketAddr,
    queue: SyncSender<Vec<u8>>,
    receiver: Mutex<Option<Receiver<Vec<u8>>>>,
    connected: AtomicBool,
    pending: Mutex<HashMap<u64, SyncSender<Message>>>,
    next_request_id: AtomicU64,
    /// I2, A1–A3: why the node was refused at the last dial, if it was.
    refused: Mutex<Option<String>>,
}

impl Link {
    pub fn new(node: NodeId, addr: SocketAddr) -> Arc<Link> {
        let (queue, receiver) = sync_channel(LINK_QUEUE_FRAMES_MAX);
        Arc::new(Link {
            node,
            addr,
            queue,
            receiver: Mutex::new(Some(receiver)),
            connected: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            next_request_id: AtomicU64::new(net::IDENTIFY_REQUEST_ID + 1),
            refused: Mutex::new(None),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// I2, A1–A3: why this node refused us at the last dial (its identity disagreed with
    /// the config, or the handshake failed: a wrong secret or address); `None` once a dial
    /// identified.
    pub fn refusal(&self) -> Option<String> {
        self.refused.lock().expect("refused").clone()
    }

    pub fn request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a message without waiting; fails fast when disconnected or full.
    pub fn send(&self, message: &Message) -> Result<(), LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected(self.node.0));
        }
        match self.queue.try_send(wire::encode(message)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(LinkError::QueueFull(self.node.0)),
            Err(TrySendError::Disconnected(_)) => Err(LinkError::NotConnected(self.node.0)),
        }
    }

    /// Sends a request built with a fresh id and waits at most `timeout` for its reply.
    pub fn request(
        &self,
        build: impl FnOnce(u64) -> Message,
        timeout: Duration,
    ) -> Result<Message, LinkError> {
        let id = self.request_id();
        let (tx, rx) = sync_channel(1);
        {
            let mut pending = self.pending.lock().expect("pending");
            if pending.len() >= LINK_PENDING_MAX {
                return Err(LinkError::QueueFull(self.node.0));
            }
            pending.insert(id, tx);
        }
        if let Err(error) = self.send(&build(id)) {
            self.pending.lock().expect("pending").remove(&id);
            return Err(error);
        }
        let result = rx.recv_timeout(timeout);
        self.pending.lock().expect("pending").remove(&id);
        match result {
            Ok(message) => Ok(message),
            Err(RecvTimeoutError::Timeout) => {
                Err(LinkError::Timeout(self.node.0, timeout.as_millis() as u64))
            }
            Err(RecvTimeoutError::Disconnected) => Err(LinkError::Lost(self.node.0)),
        }
    }

    fn deliver(&self, message: Message, events: &dyn LinkEvents) {
        let waiter = self
            .pending
            .lock()
            .expect("pending")
            .remove(&message.request_id());
        match waiter {
            Some(tx) => {
                let _ = tx.try_send(message);
            }
            None => events.unsolicited(self.node, message),
        }
    }

    /// The link's thread: dial with backoff, pump the queue, until `stop`.
    pub fn run(
        self: Arc<Link>,
        config: ClusterConfig,
        events: Arc<dyn LinkEvents>,
        stop: Arc<AtomicBool>,
    ) {
        let Some(receiver) = self.receiver.lock().expect("receiver").take() else {
            return;
        };
        let mut backoff_ms = LINK_BACKOFF_MIN_MS;
        while !stop.load(Ordering::SeqCst) {
            match net::connect_identified(
                self.addr,
                self.node.0,
                &config,
                &Identity::client(&config),
            ) {
                Ok((stream, session, _)) => {
                    *self.refused.lock().expect("refused") = None;
                    backoff_ms = LINK_BACKOFF_MIN_MS;
                    tracing::debug!(node = self.node.0, "link up");
                    self.serve(stream, session, &receiver, events.clone(), &stop);
                    tracing::debug!(node = self.node.0, "link down");
                }
                Err(error @ WireError::Handshake(_)) => {
                    // A wrong secret or address is an operator's problem: say so loudly, and
                    // keep the reason so a writer opening names it at once.
                    tracing::warn!(node = self.node.0, addr = %self.addr, %error, "link refused");
                    *self.refused.lock().expect("refused") =
                        Some(format!("node {} at {}: {error}", self.node.0, self.addr));
                    self.sleep_backoff(&mut backoff_ms, &stop);
                }
                Err(error) => {
                    if matches!(
                        error,
                        WireError::Identity(_) | WireError::IdentityRefused(_)
                    ) {
                        tracing::warn!(node = self.node.0, %error, "node refused: identity (I2)");
                        *self.refused.lock().expect("refused") =
                            Some(format!("node {}: {error}", self.node.0));
                    }
                    tracing::trace!(node = self.node.0, %error, "dial failed");
                    self.sleep_backoff(&mut backoff_ms, &stop);
                }
            }
        }
    }

    fn sleep_backoff(&self, backoff_ms: &mut u64, stop: &AtomicBool) {
        let mut slept = 0;
        while slept < *backoff_ms && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(POLL_MS.min(*backoff_ms)));
            slept += POLL_MS.min(*backoff_ms);
        }
        *backoff_ms = (*backoff_ms * 2).min(LINK_BACKOFF_MAX_MS);
    }

    fn serve(
        self: &Arc<Link>,
        stream: std::net::TcpStream,
        session: Session,
        receiver: &Receiver<Vec<u8>>,
        events: Arc<dyn LinkEvents>,
        stop: &Arc<AtomicBool>,
    ) {
        while receiver.try_recv().is_ok() {} // frames of the previous connection
        let Ok(mut read_half) = stream.try_clone() else {
            return;
        };
        let Session {
            mut sealer,
            mut opener,
            ..
        } = session;
        let dead = Arc::new(AtomicBool::new(false));
        let reader = {
            let (link, dead, stop, events) =
                (self.clone(), dead.clone(), stop.clone(), events.clone());
            std::thread::Builder::new()
                .name(format!("link{}-read", self.node.0))
                .spawn(move || {
                    let mut idle =
                        || !dead.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst);
                    loop {
                        match wire::receive_sealed(&mut read_half, &mut opener, &mut idle) {
                            Ok(message) => link.deliver(message, events.as_ref()),
                            Err(WireError::Stopped | WireError::Closed) => break,
                            Err(error) if error.is_connection_loss() => {
                                tracing::info!(node = link.node.0, %error, "link closed: connection lost");
                                break;
                            }
                            Err(error) => {
                                tracing::warn!(node = link.node.0, %error, "link closed: bad frame from node");
                                break;
                            }
                        }
                    }
                    dead.store(true, Ordering::SeqCst);
                })
        };
        let Ok(reader) = reader else {
            return;
        };
        self.connected.store(true, Ordering::SeqCst);
        events.connected(self.node);
        let mut write_half = stream;
        while !dead.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            match receiver.recv_timeout(Duration::from_millis(POLL_MS)) {
                Ok(payload) => {
                    if let Err(error) =
                        wire::write_sealed_frame(&mut write_half, &mut sealer, &payload)
                    {
                        tracing::debug!(node = self.node.0, %error, "link write failed");
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.connected.store(false, Ordering::SeqCst);
        dead.store(true, Ordering::SeqCst);
        let _ = write_half.shutdown(Shutdown::Both);
        let _ = reader.join();
        // Dropping the senders wakes every waiter with `Lost` (R5: re-issue elsewhere).
        self.pending.lock().expect("pending").clear();
    }
}
