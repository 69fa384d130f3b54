//! Client side of a connection: connect, handshake, and a blocking request/response client.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::config::ClusterConfig;
use crate::identity::{self, Identity};
use crate::wire::{self, ErrorCode, Message, WIRE_VERSION, WireError};

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
/// Node id a client that is not a storage node (writer, status tool) presents.
pub const CLIENT_NODE_ID: u32 = 0;

/// Connects to `addr` and runs the client side of the handshake (spec/wire.md §2): the
/// server proves its nonce, we prove the secret with HMAC-SHA256 over both nonces, and the
/// server proves it back. Returns the stream and the server's node id.
pub fn connect(
    addr: SocketAddr,
    config: &ClusterConfig,
    client_node: u32,
) -> Result<(TcpStream, u32), WireError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(CONNECT_TIMEOUT_MS))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(POLL_MS)))?;
    stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)))?;
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let mut before_deadline = || Instant::now() < deadline;
    let (server_node, server_nonce) = match wire::receive(&mut stream, &mut before_deadline)? {
        Message::Hello {
            version,
            node_id,
            nonce,
        } => {
            if version != WIRE_VERSION {
                return Err(WireError::Handshake(format!(
                    "server speaks wire version {version}, we speak {WIRE_VERSION}"
                )));
            }
            (node_id, nonce)
        }
        other => {
            return Err(WireError::Handshake(format!(
                "expected Hello, got {other:?}"
            )));
        }
    };
    let client_nonce = wire::random_nonce();
    let mac = wire::client_mac(
        &config.secret,
        &config.cluster_id,
        client_node,
        &server_nonce,
        &client_nonce,
    );
    wire::send(
        &mut stream,
        &Message::Auth {
            version: WIRE_VERSION,
            cluster_id: config.cluster_id.clone(),
            node_id: client_node,
            nonce: client_nonce,
            mac,
        },
    )?;
    match wire::receive(&mut stream, &mut before_deadline)? {
        Message::AuthOk { node_id, mac } => {
            let expected = wire::server_mac(
                &config.secret,
                &config.cluster_id,
                node_id,
                &server_nonce,
                &client_nonce,
            );
            if node_id != server_node || !wire::macs_equal(&mac, &expected) {
                return Err(WireError::Handshake(
                    "server failed to prove the shared secret".into(),
                ));
            }
            Ok((stream, node_id))
        }
        Message::Error { message, .. } => {
            Err(WireError::Handshake(format!("server refused: {message}")))
        }
        other => Err(WireError::Handshake(format!(
            "expected AuthOk, got {other:?}"
        ))),
    }
}

/// Request id of the `Identify` that opens every connection (I2).
pub const IDENTIFY_REQUEST_ID: u64 = 0;

/// I2: the client's side of the identity exchange, right after the handshake: sends
/// `local`, checks the node's answer against `config` (and that it is `server_node`, the
/// node dialled; the Hello's id is only what the server claims), returns the node's
/// identity. A refusal either way is an error naming both
/// values; nothing else was sent on the connection.
pub fn identify(
    stream: &mut TcpStream,
    config: &ClusterConfig,
    local: &Identity,
    server_node: u32,
) -> Result<Identity, WireError> {
    wire::send(
        stream,
        &Message::Identify {
            request_id: IDENTIFY_REQUEST_ID,
            identity: local.clone(),
        },
    )?;
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    match wire::receive(stream, &mut || Instant::now() < deadline)? {
        Message::Identified { identity, .. } => {
            let local_name = identity::describe(local.node_id);
            let local_name = if local.node_id == CLIENT_NODE_ID {
                "this writer".to_string()
            } else {
                local_name
            };
            identity::check_peer(config, &local_name, &identity, Some(server_node))?;
            Ok(identity)
        }
        Message::Error {
            code: ErrorCode::IdentityMismatch | ErrorCode::NotIdentified,
            message,
            ..
        } => Err(WireError::IdentityRefused(message)),
        other => Err(WireError::Handshake(format!(
            "expected Identified, got {other:?}"
        ))),
    }
}

/// Connects to `node` at `addr`, authenticates (spec/wire.md §3) and identifies (I2,
/// §3.1) as `local`; a server that is not `node` is refused.
pub fn connect_identified(
    addr: SocketAddr,
    node: u32,
    config: &ClusterConfig,
    local: &Identity,
) -> Result<(TcpStream, Identity), WireError> {
    let (mut stream, _) = connect(addr, config, local.node_id)?;
    let peer = identify(&mut stream, config, local, node)?;
    Ok((stream, peer))
}

/// A blocking one-request-at-a-time client (gossip between nodes, the status tool,
/// tests).
pub struct SyncClient {
    stream: TcpStream,
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
        let (stream, server) = connect_identified(addr, node, config, local)?;
        Ok(SyncClient {
            stream,
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
        wire::send(&mut self.stream, request)?;
        let deadline = Instant::now() + timeout;
        loop {
            let reply = wire::receive(&mut self.stream, &mut || Instant::now() < deadline)?;
            if reply.request_id() == request.request_id() {
                return Ok(reply);
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
