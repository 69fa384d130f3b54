//! Client side of a connection: connect, handshake, and a blocking request/response client.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::config::ClusterConfig;
use crate::session::{ClientHandshake, FrameOpener, FrameSealer, Session};
use crate::wire::{self, Message, WireError};

/// How long a TCP connect may take, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// How long the handshake may take, in milliseconds.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 3_000;
/// Read timeout of every socket: how often a blocked reader looks at its stop flag and
/// deadlines, in milliseconds.
pub const POLL_MS: u64 = 50;
/// How long one frame write may block, in milliseconds (a peer that reads nothing for this
/// long loses its connection).
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
pub use crate::session::CLIENT_NODE_ID;

/// Connects to node `server_node` at `addr` and runs the client side of the handshake
/// (spec/wire.md §3): the node must be the one dialled (A3) and prove the secret over this
/// connection's transcript, and we prove it back. Returns the stream and the session
/// whose keys protect every later frame (A2, A4).
pub fn connect(
    addr: SocketAddr,
    config: &ClusterConfig,
    client_node: u32,
    server_node: u32,
) -> Result<(TcpStream, Session), WireError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(CONNECT_TIMEOUT_MS))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(POLL_MS)))?;
    stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)))?;
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let mut before_deadline = || Instant::now() < deadline;
    let handshake = ClientHandshake::new(config, client_node, server_node, wire::random_nonce());
    let hello = wire::receive(&mut stream, &mut before_deadline)?;
    let (awaiting, auth) = handshake.handle_hello(hello)?;
    wire::send(&mut stream, &auth)?;
    let reply = wire::receive(&mut stream, &mut before_deadline)?;
    let session = awaiting.handle_auth_ok(reply)?;
    Ok((stream, session))
}

/// A blocking one-request-at-a-time client (gossip between nodes, the status tool,
/// tests).
pub struct SyncClient {
    stream: TcpStream,
    sealer: FrameSealer,
    opener: FrameOpener,
    next_request_id: u64,
    pub server_node: u32,
}

impl SyncClient {
    pub fn connect(
        addr: SocketAddr,
        config: &ClusterConfig,
        client_node: u32,
        server_node: u32,
    ) -> Result<SyncClient, WireError> {
        let (stream, session) = connect(addr, config, client_node, server_node)?;
        Ok(SyncClient {
            stream,
            sealer: session.sealer,
            opener: session.opener,
            next_request_id: 1,
            server_node: session.peer_node,
        })
    }

    /// A fresh request id for the next call.
    pub fn request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Sends `request` and waits at most `timeout` for the answer with its request id.
    pub fn call(&mut self, request: &Message, timeout: Duration) -> Result<Message, WireError> {
        wire::send_sealed(&mut self.stream, &mut self.sealer, request)?;
        let deadline = Instant::now() + timeout;
        loop {
            let reply = wire::receive_sealed(&mut self.stream, &mut self.opener, &mut || {
                Instant::now() < deadline
            })?;
            if reply.request_id() == request.request_id() {
                return Ok(reply);
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
