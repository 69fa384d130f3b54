//! The writer's connection to one storage node: a bounded outbound queue, a sender thread
//! that (re)connects with backoff, and a reader thread that routes replies.

use std::collections::{BTreeMap, HashMap};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sixfold_core::{NodeId, SegmentId};

use crate::config::ClusterConfig;
use crate::identity::Identity;
use crate::net::{self, POLL_MS};
use crate::session::{FrameSealer, Session};
use crate::wire::{self, BatchHeader, EncodedRecord, Message, WireError};

/// Frames queued to one node, at most; a full queue drops the frame (the writer re-sends
/// records until acknowledged, W7), so a slow node never grows the writer's memory.
pub const LINK_QUEUE_FRAMES_MAX: usize = 1_024;
/// First wait before re-dialling a node, in milliseconds.
pub const LINK_BACKOFF_MIN_MS: u64 = 50;
/// Longest wait between dials of an unreachable node, in milliseconds.
pub const LINK_BACKOFF_MAX_MS: u64 = 1_000;
/// Requests awaiting a reply on one link, at most.
pub const LINK_PENDING_MAX: usize = 4_096;
/// Record bytes waiting in one link's outbox, at most; beyond it records are dropped (the
/// writer re-sends them until acknowledged, W7), so a slow node never grows memory.
pub const LINK_OUTBOX_BYTES_MAX: usize = 64 << 20;
/// Record bytes in one write batch, at most: well inside a frame (MAX_FRAME_BYTES).
pub const BATCH_RECORD_BYTES_MAX: usize = wire::MAX_FRAME_BYTES / 2;
/// Queued frames sealed into one write to the socket, at most.
pub const FRAMES_PER_WRITE_MAX: usize = 64;

/// C20: records of any number of MTRs waiting for the link's next send, per segment;
/// the sender takes them all at once, one write batch per segment.
#[derive(Default)]
struct Outbox {
    segments: BTreeMap<SegmentId, Vec<EncodedRecord>>,
    /// The newest header queued with the records (W5: epoch, VDL hint, truncation).
    header: Option<BatchHeader>,
    bytes: usize,
    /// A doorbell frame is in the queue: the sender will look here soon.
    rung: bool,
}

/// Counters of what a link sent (C20: MTRs coalesce into batches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub batches: u64,
    pub records: u64,
    pub socket_writes: u64,
}

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
    outbox: Mutex<Outbox>,
    batches: AtomicU64,
    records: AtomicU64,
    socket_writes: AtomicU64,
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
            outbox: Mutex::new(Outbox::default()),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            socket_writes: AtomicU64::new(0),
        })
    }

    /// What this link has sent so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            batches: self.batches.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            socket_writes: self.socket_writes.load(Ordering::Relaxed),
        }
    }

    /// C20: queues records (each encoded once, shared by all its segments) for the next
    /// send, where they join every other MTR's records of the same segment in one write
    /// batch. Dropped when disconnected or the outbox is full: re-sent until acknowledged
    /// (W7).
    pub fn queue_records(
        &self,
        header: BatchHeader,
        records: Vec<(SegmentId, EncodedRecord)>,
    ) -> Result<(), LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected(self.node.0));
        }
        let mut outbox = self.outbox.lock().expect("outbox");
        let bytes: usize = records.iter().map(|(_, r)| r.len()).sum();
        if outbox.bytes + bytes > LINK_OUTBOX_BYTES_MAX {
            return Err(LinkError::QueueFull(self.node.0));
        }
        outbox.bytes += bytes;
        outbox.header = Some(header);
        for (segment, record) in records {
            outbox.segments.entry(segment).or_default().push(record);
        }
        if !outbox.rung {
            // An empty frame is the doorbell (every message has a type byte). A full
            // queue means the sender is busy and looks at the outbox after each write.
            outbox.rung = self.queue.try_send(Vec::new()).is_ok();
        }
        Ok(())
    }

    /// C20: seals every queued record as one write batch per segment (split only at
    /// [`wire::BATCH_RECORDS_MAX`] records or [`BATCH_RECORD_BYTES_MAX`] bytes).
    fn seal_outbox(&self, sealer: &mut FrameSealer, out: &mut Vec<u8>) -> Result<(), WireError> {
        let taken = std::mem::take(&mut *self.outbox.lock().expect("outbox"));
        let Some(header) = taken.header else {
            return Ok(());
        };
        for (segment, records) in taken.segments {
            let mut rest = &records[..];
            while !rest.is_empty() {
                let mut count = 0;
                let mut bytes = 0;
                while count < rest.len()
                    && count < wire::BATCH_RECORDS_MAX
                    && (count == 0 || bytes + rest[count].len() <= BATCH_RECORD_BYTES_MAX)
                {
                    bytes += rest[count].len();
                    count += 1;
                }
                let (chunk, later) = rest.split_at(count);
                rest = later;
                let payload = wire::encode_write_batch(self.request_id(), segment, &header, chunk);
                out.extend_from_slice(&wire::seal_frame(sealer, &payload)?);
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.records
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
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

    /// C20: `first` and the frames queued behind it, then the outbox's write batches,
    /// sealed in order and written to the socket at once.
    fn send_queued(
        &self,
        first: Vec<u8>,
        receiver: &Receiver<Vec<u8>>,
        sealer: &mut FrameSealer,
        stream: &mut std::net::TcpStream,
    ) -> Result<(), WireError> {
        use std::io::Write;
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut frames = 0;
        while let Some(payload) = next.take() {
            if payload.is_empty() {
                // The doorbell: the outbox is sealed below.
                self.outbox.lock().expect("outbox").rung = false;
            } else {
                out.extend_from_slice(&wire::seal_frame(sealer, &payload)?);
            }
            frames += 1;
            if frames < FRAMES_PER_WRITE_MAX {
                next = receiver.try_recv().ok();
            }
        }
        self.seal_outbox(sealer, &mut out)?;
        if !out.is_empty() {
            stream.write_all(&out)?;
            self.socket_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
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
        *self.outbox.lock().expect("outbox") = Outbox::default(); // re-sent by W7
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
            let first = match receiver.recv_timeout(Duration::from_millis(POLL_MS)) {
                Ok(payload) => payload,
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Err(error) = self.send_queued(first, receiver, &mut sealer, &mut write_half) {
                tracing::debug!(node = self.node.0, %error, "link write failed");
                break;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::six_node_toml;
    use crate::session::{ClientHandshake, ServerHandshake};
    use crate::wire::NONCE_BYTES;
    use sixfold_core::{Epoch, Lsn, PageId, PgId, RedoBody, RedoRecord};

    fn sessions() -> (Session, Session) {
        let text = six_node_toml("t", "s", 16, &[7101, 7102, 7103, 7104, 7105, 7106]);
        let config = ClusterConfig::parse(&text, std::path::Path::new("/tmp/x")).unwrap();
        let server = ServerHandshake::new(&config, 1, [1; NONCE_BYTES]);
        let client =
            ClientHandshake::new(&config, crate::session::CLIENT_NODE_ID, 1, [2; NONCE_BYTES]);
        let (awaiting, auth) = client.handle_hello(server.hello()).unwrap();
        let (server_session, auth_ok) = server.handle_auth(auth).unwrap();
        (awaiting.handle_auth_ok(auth_ok).unwrap(), server_session)
    }

    fn record(lsn: u64) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            pg: PgId(0),
            prev_lsn_pg: Lsn(lsn - 1),
            prev_lsn_page: Lsn::ZERO,
            epoch: Epoch(1),
            page: PageId::new(1, lsn as u32),
            cpl: true,
            body: RedoBody::Edits(vec![sixfold_core::Edit {
                offset: 0,
                bytes: vec![lsn as u8; 3],
            }]),
        }
    }

    #[test]
    fn queued_mtrs_coalesce_into_one_batch_per_segment() {
        // C20: three MTRs queued before a send leave as one write batch per segment,
        // records in queue order, each record's bytes encoded once for both segments.
        let (mut client, mut server) = sessions();
        let link = Link::new(NodeId(1), "127.0.0.1:1".parse().unwrap());
        let header = |vdl| BatchHeader {
            epoch: Epoch(1),
            vdl_hint: Lsn(vdl),
            truncation: None,
        };
        let segments = [
            SegmentId {
                pg: PgId(0),
                replica: 0,
            },
            SegmentId {
                pg: PgId(0),
                replica: 3,
            },
        ];
        assert!(
            link.queue_records(header(0), Vec::new()).is_err(),
            "W7: not connected"
        );
        link.connected.store(true, Ordering::SeqCst);
        for (mtr, vdl) in [(1u64, 0u64), (2, 1), (3, 2)] {
            let encoded = EncodedRecord::new(&record(mtr));
            let queued = segments.iter().map(|s| (*s, encoded.clone())).collect();
            link.queue_records(header(vdl), queued).unwrap();
        }
        let mut out = Vec::new();
        link.seal_outbox(&mut client.sealer, &mut out).unwrap();
        let mut reader = std::io::Cursor::new(out);
        let mut batches = Vec::new();
        while (reader.position() as usize) < reader.get_ref().len() {
            batches
                .push(wire::receive_sealed(&mut reader, &mut server.opener, &mut || true).unwrap());
        }
        assert_eq!(batches.len(), 2, "{batches:?}");
        for (message, segment) in batches.into_iter().zip(segments) {
            let Message::WriteBatch {
                segment: to,
                vdl_hint,
                records,
                ..
            } = message
            else {
                panic!("not a write batch: {message:?}");
            };
            assert_eq!(to, segment);
            assert_eq!(vdl_hint, Lsn(2), "W5: the newest VDL hint");
            assert_eq!(records, vec![record(1), record(2), record(3)]);
        }
        assert_eq!(link.stats().batches, 2);
        assert_eq!(link.stats().records, 6);
        let mut again = Vec::new();
        link.seal_outbox(&mut client.sealer, &mut again).unwrap();
        assert!(again.is_empty(), "the outbox is emptied by a send");
    }

    #[test]
    fn a_full_outbox_drops_records_for_a_later_resend() {
        // C20, W7: the outbox is bounded; what does not fit is refused, not grown.
        let link = Link::new(NodeId(1), "127.0.0.1:1".parse().unwrap());
        link.connected.store(true, Ordering::SeqCst);
        let header = BatchHeader {
            epoch: Epoch(1),
            vdl_hint: Lsn::ZERO,
            truncation: None,
        };
        let segment = SegmentId {
            pg: PgId(0),
            replica: 0,
        };
        let big = EncodedRecord::new(&RedoRecord {
            body: RedoBody::Edits(vec![sixfold_core::Edit {
                offset: 0,
                bytes: vec![7; 4_000],
            }]),
            ..record(1)
        });
        let mut refused = 0;
        for _ in 0..(LINK_OUTBOX_BYTES_MAX / big.len() + 10) {
            if link
                .queue_records(header, vec![(segment, big.clone())])
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused >= 10, "only {refused} refused");
        let outbox = link.outbox.lock().unwrap();
        assert!(outbox.bytes <= LINK_OUTBOX_BYTES_MAX);
    }
}
