//! Client side of a connection: connect, handshake, and a blocking request/response client.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::config::ClusterConfig;
use crate::identity::{self, Identity};
use crate::session::{ClientHandshake, FrameOpener, FrameSealer, HandshakeError, Session};
use crate::wire::{self, ErrorCode, Message, WireError};

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

/// Request id of the `Identify` that opens every connection (I2).
pub const IDENTIFY_REQUEST_ID: u64 = 0;

/// I2: the client's side of the identity exchange, right after the handshake and sealed
/// with the session's keys like every later frame (A4): sends `local`, checks the node's
/// answer against `config` (and that it is `server_node`, the node dialled), returns the
/// node's identity. A refusal either way is an error naming both values; nothing else
/// was sent on the connection.
pub fn identify(
    stream: &mut TcpStream,
    session: &mut Session,
    config: &ClusterConfig,
    local: &Identity,
    server_node: u32,
) -> Result<Identity, WireError> {
    wire::send_sealed(
        stream,
        &mut session.sealer,
        &Message::Identify {
            request_id: IDENTIFY_REQUEST_ID,
            identity: local.clone(),
        },
    )?;
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    match wire::receive_sealed(stream, &mut session.opener, &mut || {
        Instant::now() < deadline
    })? {
        Message::Identified { identity, .. } => {
            let local_name = if local.node_id == CLIENT_NODE_ID {
                "this writer".to_string()
            } else {
                identity::describe(local.node_id)
            };
            identity::check_peer(config, &local_name, &identity, Some(server_node))?;
            Ok(identity)
        }
        Message::Error {
            code: ErrorCode::IdentityMismatch | ErrorCode::NotIdentified,
            message,
            ..
        } => Err(WireError::IdentityRefused(message)),
        other => Err(WireError::Handshake(HandshakeError::UnexpectedMessage {
            node: server_node,
            expected: "Identified",
            found: format!("{other:?}"),
        })),
    }
}

/// Connects to `node` at `addr`, runs the handshake (spec/wire.md §3, A1–A5) and
/// identifies (I2) as `local` over the sealed session; returns the stream, the session
/// for every later frame, and the node's identity.
pub fn connect_identified(
    addr: SocketAddr,
    node: u32,
    config: &ClusterConfig,
    local: &Identity,
) -> Result<(TcpStream, Session, Identity), WireError> {
    let (mut stream, mut session) = connect(addr, config, local.node_id, node)?;
    let peer = identify(&mut stream, &mut session, config, local, node)?;
    Ok((stream, session, peer))
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
    /// Connects to `node` at `addr`, authenticates and identifies (I2) as `local`.
    pub fn connect(
        addr: SocketAddr,
        node: u32,
        config: &ClusterConfig,
        local: &Identity,
    ) -> Result<SyncClient, WireError> {
        let (stream, session, server) = connect_identified(addr, node, config, local)?;
        Ok(SyncClient {
            stream,
            sealer: session.sealer,
            opener: session.opener,
            next_request_id: IDENTIFY_REQUEST_ID + 1,
            server_node: server.node_id,
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
