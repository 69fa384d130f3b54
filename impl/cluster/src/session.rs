//! Authenticated, encrypted links (spec/wire.md §3, rules A1–A5): the handshake as two
//! sans-IO state machines, the key schedule, and the per-direction frame protection.
//!
//! Nothing here touches a socket, a clock or a random source: the caller feeds in the
//! messages it received and the nonces it drew, and sends what comes out. A [`Session`]
//! (the keys that protect every later frame) only comes out of a handshake whose proof
//! checked, so a connection cannot carry requests without one (style §4).
//!
//! Why a handshake of our own rather than TLS: the cluster already shares one static
//! secret; deriving per-connection keys from it with HKDF and protecting frames with
//! ChaCha20-Poly1305 (both RustCrypto crates) binds every frame to the connection without
//! a CA, certificates or their rotation, and keeps the frame layout in one page of spec.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::ClusterConfig;
use crate::wire::{MAC_BYTES, MAX_FRAME_BYTES, Message, NONCE_BYTES, WIRE_VERSION};

/// Bytes of a derived key (ChaCha20-Poly1305 and HMAC-SHA256 keys alike).
pub const SESSION_KEY_BYTES: usize = 32;
/// Bytes of the Poly1305 tag that ends every sealed frame.
pub const TAG_BYTES: usize = 16;
/// Bytes before a sealed frame's ciphertext: its length.
pub const SEALED_HEADER_BYTES: usize = 4;
/// The longest sealed body (ciphertext and tag), in bytes.
pub const SEALED_BODY_BYTES_MAX: usize = MAX_FRAME_BYTES + TAG_BYTES;
/// A secret shorter than this many bytes draws a warning at node start: a recorded
/// handshake lets an attacker test guesses of the secret offline, so it must be random and
/// long, not a word.
pub const SECRET_BYTES_RECOMMENDED_MIN: usize = 32;
/// Node id a client that is not a storage node (writer, status tool) presents.
pub const CLIENT_NODE_ID: u32 = 0;

/// Labels of the key schedule (HKDF-Expand `info`), one per derived key.
const LABEL_TRANSCRIPT: &[u8] = b"sixfold v2 handshake";
const LABEL_CLIENT_PROOF: &[u8] = b"sixfold v2 client proof";
const LABEL_SERVER_PROOF: &[u8] = b"sixfold v2 server proof";
const LABEL_CLIENT_TO_SERVER: &[u8] = b"sixfold v2 client to server";
const LABEL_SERVER_TO_CLIENT: &[u8] = b"sixfold v2 server to client";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("node {node}: wire version {theirs} refused; we speak {ours}")]
    Version { node: u32, theirs: u16, ours: u16 },
    #[error("cluster id {theirs:?} refused; this node belongs to {ours:?}")]
    ClusterId { theirs: String, ours: String },
    #[error(
        "dialled node {expected} but node {found} answered (a wrong address in the config, or \
         a relay; A3)"
    )]
    UnexpectedNode { expected: u32, found: u32 },
    #[error("client claims node id {0}, which is not in this cluster's config")]
    UnknownClientNode(u32),
    #[error("node {node}: authentication failed: {reason}")]
    AuthenticationFailed { node: u32, reason: &'static str },
    #[error(
        "authentication failed: the client (node id {client}; 0 is a writer or tool) does \
         not hold this cluster's secret"
    )]
    ClientProofFailed { client: u32 },
    #[error("node {node} refused the handshake: {message}")]
    Refused { node: u32, message: String },
    #[error("node {node}: expected {expected} during the handshake, got {found}")]
    UnexpectedMessage {
        node: u32,
        expected: &'static str,
        found: String,
    },
}

/// Why a sealed frame was refused (A4, A5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameAuthError {
    #[error(
        "frame {sequence} failed authentication (tampered, replayed, reordered, or from \
         another connection; A4)"
    )]
    Forged { sequence: u64 },
    #[error("sealed frame of {found} bytes is outside {min}..={max}")]
    Length {
        found: usize,
        min: usize,
        max: usize,
    },
    #[error("sequence numbers of this connection are used up; reconnect")]
    SequenceExhausted,
}

/// What both ends agreed on in the handshake; the key schedule hashes all of it (A2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub cluster_id: String,
    pub server_node: u32,
    pub client_node: u32,
    pub server_nonce: [u8; NONCE_BYTES],
    pub client_nonce: [u8; NONCE_BYTES],
}

impl Transcript {
    /// SHA-256 of every field, each length-prefixed (`P(x) = u32 len ‖ x`), after a label.
    pub fn hash(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            LABEL_TRANSCRIPT,
            self.cluster_id.as_bytes(),
            &self.server_node.to_le_bytes(),
            &self.client_node.to_le_bytes(),
            &self.server_nonce,
            &self.client_nonce,
        ] {
            hash.update((part.len() as u32).to_le_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }
}

/// The keys of one connection (A2): two proofs of the secret and one AEAD key per
/// direction, all from HKDF-SHA256 with the transcript hash as salt and the secret as
/// input keying material.
pub struct SessionKeys {
    transcript_hash: [u8; 32],
    client_proof_key: [u8; SESSION_KEY_BYTES],
    server_proof_key: [u8; SESSION_KEY_BYTES],
    client_to_server: [u8; SESSION_KEY_BYTES],
    server_to_client: [u8; SESSION_KEY_BYTES],
}

impl SessionKeys {
    pub fn derive(secret: &str, transcript: &Transcript) -> SessionKeys {
        let transcript_hash = transcript.hash();
        let hkdf = Hkdf::<Sha256>::new(Some(&transcript_hash), secret.as_bytes());
        let expand = |label: &[u8]| {
            let mut key = [0u8; SESSION_KEY_BYTES];
            hkdf.expand(label, &mut key)
                .expect("32 bytes is within HKDF-SHA256's output limit");
            key
        };
        SessionKeys {
            transcript_hash,
            client_proof_key: expand(LABEL_CLIENT_PROOF),
            server_proof_key: expand(LABEL_SERVER_PROOF),
            client_to_server: expand(LABEL_CLIENT_TO_SERVER),
            server_to_client: expand(LABEL_SERVER_TO_CLIENT),
        }
    }

    /// The client's proof that it knows the secret: HMAC over the transcript hash.
    pub fn client_proof(&self) -> [u8; MAC_BYTES] {
        hmac(&self.client_proof_key, &self.transcript_hash)
    }

    /// The server's proof, so the client knows it reached a node of its own cluster.
    pub fn server_proof(&self) -> [u8; MAC_BYTES] {
        hmac(&self.server_proof_key, &self.transcript_hash)
    }

    fn client_session(&self, peer_node: u32) -> Session {
        Session {
            peer_node,
            sealer: FrameSealer::new(&self.client_to_server),
            opener: FrameOpener::new(&self.server_to_client),
        }
    }

    fn server_session(&self, peer_node: u32) -> Session {
        Session {
            peer_node,
            sealer: FrameSealer::new(&self.server_to_client),
            opener: FrameOpener::new(&self.client_to_server),
        }
    }
}

fn hmac(key: &[u8; SESSION_KEY_BYTES], data: &[u8]) -> [u8; MAC_BYTES] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of two MACs.
pub fn macs_equal(a: &[u8; MAC_BYTES], b: &[u8; MAC_BYTES]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The AEAD nonce of frame `sequence`: four zero bytes, then the sequence (u64 LE). Each
/// direction has its own key, so a (key, nonce) pair is never used twice.
fn frame_nonce(sequence: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&sequence.to_le_bytes());
    nonce.into()
}

/// Seals the frames one side sends (A4): ChaCha20-Poly1305 under this direction's key,
/// nonce = the frame's sequence number, the length header as associated data.
pub struct FrameSealer {
    cipher: ChaCha20Poly1305,
    next_sequence: u64,
}

impl FrameSealer {
    fn new(key: &[u8; SESSION_KEY_BYTES]) -> FrameSealer {
        FrameSealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            next_sequence: 0,
        }
    }

    /// A whole sealed frame for `payload`: `u32 len ‖ ciphertext ‖ tag`, `len` counting
    /// ciphertext and tag. The caller bounds `payload` by `MAX_FRAME_BYTES`.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, FrameAuthError> {
        assert!(
            payload.len() <= MAX_FRAME_BYTES,
            "caller checks the frame limit"
        );
        if self.next_sequence == u64::MAX {
            return Err(FrameAuthError::SequenceExhausted);
        }
        let header = ((payload.len() + TAG_BYTES) as u32).to_le_bytes();
        let mut frame = Vec::with_capacity(SEALED_HEADER_BYTES + payload.len() + TAG_BYTES);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(payload);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &frame_nonce(self.next_sequence),
                &header,
                &mut frame[SEALED_HEADER_BYTES..],
            )
            .expect("a payload within MAX_FRAME_BYTES is within ChaCha20's limit");
        frame.extend_from_slice(&tag);
        self.next_sequence += 1;
        Ok(frame)
    }
}

/// Opens the frames the other side sends (A4): exactly the next sequence number is
/// accepted, so a replayed, reordered, dropped-then-resumed or foreign frame fails.
pub struct FrameOpener {
    cipher: ChaCha20Poly1305,
    next_sequence: u64,
}

impl FrameOpener {
    fn new(key: &[u8; SESSION_KEY_BYTES]) -> FrameOpener {
        FrameOpener {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            next_sequence: 0,
        }
    }

    /// Checks a sealed body's length field before anything of it is read or allocated.
    pub fn check_length(length: usize) -> Result<(), FrameAuthError> {
        if !(TAG_BYTES..=SEALED_BODY_BYTES_MAX).contains(&length) {
            return Err(FrameAuthError::Length {
                found: length,
                min: TAG_BYTES,
                max: SEALED_BODY_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// The payload of a sealed frame: `header` is its 4 length bytes, `body` ciphertext and
    /// tag. Any failure is final for the connection: the sequence does not advance.
    pub fn open(
        &mut self,
        header: [u8; SEALED_HEADER_BYTES],
        mut body: Vec<u8>,
    ) -> Result<Vec<u8>, FrameAuthError> {
        FrameOpener::check_length(body.len())?;
        if u32::from_le_bytes(header) as usize != body.len() {
            return Err(FrameAuthError::Forged {
                sequence: self.next_sequence,
            });
        }
        if self.next_sequence == u64::MAX {
            return Err(FrameAuthError::SequenceExhausted);
        }
        let tag_at = body.len() - TAG_BYTES;
        let tag = Tag::clone_from_slice(&body[tag_at..]);
        body.truncate(tag_at);
        self.cipher
            .decrypt_in_place_detached(&frame_nonce(self.next_sequence), &header, &mut body, &tag)
            .map_err(|_| FrameAuthError::Forged {
                sequence: self.next_sequence,
            })?;
        self.next_sequence += 1;
        Ok(body)
    }
}

/// An authenticated connection's keys: what the peer proved to be, and one sealer and one
/// opener, which the caller may move to separate threads.
pub struct Session {
    /// The peer's node id (`CLIENT_NODE_ID` for a writer or tool).
    pub peer_node: u32,
    pub sealer: FrameSealer,
    pub opener: FrameOpener,
}

/// The client side, before the server's Hello.
pub struct ClientHandshake {
    cluster_id: String,
    secret: String,
    client_node: u32,
    expected_server: u32,
    client_nonce: [u8; NONCE_BYTES],
}

/// The client side, after sending Auth: waits for the server's proof.
pub struct ClientAwaitingProof {
    expected_server: u32,
    keys: SessionKeys,
}

impl ClientHandshake {
    /// `expected_server` is the node the client dialled (A3); `client_nonce` is fresh
    /// randomness the caller drew.
    pub fn new(
        config: &ClusterConfig,
        client_node: u32,
        expected_server: u32,
        client_nonce: [u8; NONCE_BYTES],
    ) -> ClientHandshake {
        ClientHandshake {
            cluster_id: config.cluster_id.clone(),
            secret: config.secret.clone(),
            client_node,
            expected_server,
            client_nonce,
        }
    }

    /// Hello in, Auth out (A1, A3).
    pub fn handle_hello(
        self,
        hello: Message,
    ) -> Result<(ClientAwaitingProof, Message), HandshakeError> {
        let expected = self.expected_server;
        let (version, server_node, server_nonce) = match hello {
            Message::Hello {
                version,
                node_id,
                nonce,
            } => (version, node_id, nonce),
            other => return Err(unexpected(expected, "Hello", &other)),
        };
        if version != WIRE_VERSION {
            return Err(HandshakeError::Version {
                node: expected,
                theirs: version,
                ours: WIRE_VERSION,
            });
        }
        if server_node != expected {
            return Err(HandshakeError::UnexpectedNode {
                expected,
                found: server_node,
            });
        }
        let transcript = Transcript {
            cluster_id: self.cluster_id.clone(),
            server_node,
            client_node: self.client_node,
            server_nonce,
            client_nonce: self.client_nonce,
        };
        let keys = SessionKeys::derive(&self.secret, &transcript);
        let auth = Message::Auth {
            version: WIRE_VERSION,
            cluster_id: self.cluster_id,
            node_id: self.client_node,
            nonce: self.client_nonce,
            mac: keys.client_proof(),
        };
        Ok((
            ClientAwaitingProof {
                expected_server: expected,
                keys,
            },
            auth,
        ))
    }
}

impl ClientAwaitingProof {
    /// AuthOk in, a session out, once the server proved the secret over this transcript.
    pub fn handle_auth_ok(self, reply: Message) -> Result<Session, HandshakeError> {
        let node = self.expected_server;
        match reply {
            Message::AuthOk { node_id, mac } => {
                if node_id != node || !macs_equal(&mac, &self.keys.server_proof()) {
                    return Err(HandshakeError::AuthenticationFailed {
                        node,
                        reason: "the node did not prove the cluster secret",
                    });
                }
                Ok(self.keys.client_session(node))
            }
            Message::Error { message, .. } => Err(HandshakeError::Refused { node, message }),
            other => Err(unexpected(node, "AuthOk", &other)),
        }
    }
}

/// The server side of one connection.
pub struct ServerHandshake {
    cluster_id: String,
    secret: String,
    server_node: u32,
    server_nonce: [u8; NONCE_BYTES],
    /// Node ids a peer may claim (the config's); `CLIENT_NODE_ID` is always allowed.
    known_nodes: Vec<u32>,
}

impl ServerHandshake {
    pub fn new(
        config: &ClusterConfig,
        server_node: u32,
        server_nonce: [u8; NONCE_BYTES],
    ) -> ServerHandshake {
        ServerHandshake {
            cluster_id: config.cluster_id.clone(),
            secret: config.secret.clone(),
            server_node,
            server_nonce,
            known_nodes: config.nodes.iter().map(|n| n.id.0).collect(),
        }
    }

    /// The first message of every connection (A1).
    pub fn hello(&self) -> Message {
        Message::Hello {
            version: WIRE_VERSION,
            node_id: self.server_node,
            nonce: self.server_nonce,
        }
    }

    /// Auth in; a session and the AuthOk to send out, or why the client is refused (the
    /// caller sends that reason in an `Error` with code Auth and closes).
    pub fn handle_auth(self, auth: Message) -> Result<(Session, Message), HandshakeError> {
        let (version, cluster_id, client_node, client_nonce, mac) = match auth {
            Message::Auth {
                version,
                cluster_id,
                node_id,
                nonce,
                mac,
            } => (version, cluster_id, node_id, nonce, mac),
            other => return Err(unexpected(CLIENT_NODE_ID, "Auth", &other)),
        };
        if version != WIRE_VERSION {
            return Err(HandshakeError::Version {
                node: client_node,
                theirs: version,
                ours: WIRE_VERSION,
            });
        }
        if cluster_id != self.cluster_id {
            return Err(HandshakeError::ClusterId {
                theirs: cluster_id,
                ours: self.cluster_id,
            });
        }
        if client_node != CLIENT_NODE_ID && !self.known_nodes.contains(&client_node) {
            return Err(HandshakeError::UnknownClientNode(client_node));
        }
        let transcript = Transcript {
            cluster_id,
            server_node: self.server_node,
            client_node,
            server_nonce: self.server_nonce,
            client_nonce,
        };
        let keys = SessionKeys::derive(&self.secret, &transcript);
        if !macs_equal(&mac, &keys.client_proof()) {
            return Err(HandshakeError::ClientProofFailed {
                client: client_node,
            });
        }
        let auth_ok = Message::AuthOk {
            node_id: self.server_node,
            mac: keys.server_proof(),
        };
        Ok((keys.server_session(client_node), auth_ok))
    }
}

fn unexpected(node: u32, expected: &'static str, found: &Message) -> HandshakeError {
    let name = format!("{found:?}");
    let name = name.split([' ', '{']).next().unwrap_or("").to_string();
    HandshakeError::UnexpectedMessage {
        node,
        expected,
        found: name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::six_node_toml;
    use std::path::Path;

    fn config(secret: &str) -> ClusterConfig {
        let text = six_node_toml("demo", secret, 16, &[7101, 7102, 7103, 7104, 7105, 7106]);
        ClusterConfig::parse(&text, Path::new("/tmp/x")).unwrap()
    }

    /// Runs a whole handshake in memory: client `client_node` of `client_config` dialling
    /// node `dialled`, answered by node `server` of `server_config`.
    fn handshake(
        client_config: &ClusterConfig,
        server_config: &ClusterConfig,
        client_node: u32,
        dialled: u32,
        server: u32,
    ) -> Result<(Session, Session), HandshakeError> {
        let server_side = ServerHandshake::new(server_config, server, [1; NONCE_BYTES]);
        let client_side =
            ClientHandshake::new(client_config, client_node, dialled, [2; NONCE_BYTES]);
        let (awaiting, auth) = client_side.handle_hello(server_side.hello())?;
        let (server_session, auth_ok) = server_side.handle_auth(auth)?;
        let client_session = awaiting.handle_auth_ok(auth_ok)?;
        Ok((client_session, server_session))
    }

    fn pair() -> (Session, Session) {
        handshake(&config("s"), &config("s"), 0, 1, 1).unwrap()
    }

    #[test]
    fn sealed_frames_round_trip_in_both_directions() {
        // A2, A4: each direction has its own key and sequence.
        let (mut client, mut server) = pair();
        for round in 0..3u8 {
            let frame = client.sealer.seal(&[round; 40]).unwrap();
            let (header, body) = split(frame);
            assert_eq!(server.opener.open(header, body).unwrap(), vec![round; 40]);
            let frame = server.sealer.seal(b"reply").unwrap();
            let (header, body) = split(frame);
            assert_eq!(client.opener.open(header, body).unwrap(), b"reply");
        }
    }

    fn split(frame: Vec<u8>) -> ([u8; SEALED_HEADER_BYTES], Vec<u8>) {
        let header = frame[..SEALED_HEADER_BYTES].try_into().unwrap();
        (header, frame[SEALED_HEADER_BYTES..].to_vec())
    }

    #[test]
    fn payload_is_encrypted() {
        // A5: the payload never appears in clear on the wire.
        let (mut client, _) = pair();
        let secret_text = b"SELECT secret FROM vault";
        let frame = client.sealer.seal(secret_text).unwrap();
        assert!(
            !frame
                .windows(secret_text.len())
                .any(|w| w == secret_text.as_slice())
        );
    }

    #[test]
    fn a_tampered_frame_is_refused() {
        // A4: any flipped bit of header, ciphertext or tag fails authentication.
        let (mut client, _) = pair();
        let frame = client.sealer.seal(b"truncate everything").unwrap();
        for at in [0, SEALED_HEADER_BYTES, frame.len() / 2, frame.len() - 1] {
            let (_, mut server) = pair();
            let mut bad = frame.clone();
            bad[at] ^= 0x01;
            let (header, body) = split(bad);
            let error = server.opener.open(header, body).unwrap_err();
            assert!(
                matches!(error, FrameAuthError::Forged { sequence: 0 }),
                "byte {at}: {error:?}"
            );
        }
    }

    #[test]
    fn a_replayed_or_reordered_frame_is_refused() {
        // A4: exactly the next sequence number opens.
        let (mut client, mut server) = pair();
        let first = client.sealer.seal(b"one").unwrap();
        let second = client.sealer.seal(b"two").unwrap();
        let (header, body) = split(first.clone());
        server.opener.open(header, body).unwrap();
        let (header, body) = split(first);
        assert_eq!(
            server.opener.open(header, body).unwrap_err(),
            FrameAuthError::Forged { sequence: 1 },
            "replay"
        );
        let (header, body) = split(second);
        server.opener.open(header, body).unwrap();
        let (mut client, mut server) = pair();
        let _first = client.sealer.seal(b"one").unwrap();
        let second = client.sealer.seal(b"two").unwrap();
        let (header, body) = split(second);
        assert_eq!(
            server.opener.open(header, body).unwrap_err(),
            FrameAuthError::Forged { sequence: 0 },
            "reordered"
        );
    }

    #[test]
    fn a_frame_of_another_session_or_direction_is_refused() {
        // A2, A4: fresh nonces give every connection its own keys; directions differ.
        let (mut client_a, mut server_a) = pair();
        let server_b_config = config("s");
        let other = ServerHandshake::new(&server_b_config, 1, [9; NONCE_BYTES]);
        let (awaiting, auth) = ClientHandshake::new(&config("s"), 0, 1, [2; NONCE_BYTES])
            .handle_hello(other.hello())
            .unwrap();
        let (mut server_b, auth_ok) = other.handle_auth(auth).unwrap();
        awaiting.handle_auth_ok(auth_ok).unwrap();
        let (header, body) = split(client_a.sealer.seal(b"x").unwrap());
        assert!(server_b.opener.open(header, body).is_err(), "cross-session");
        let (header, body) = split(server_a.sealer.seal(b"y").unwrap());
        assert!(server_a.opener.open(header, body).is_err(), "reflected");
    }

    #[test]
    fn a_wrong_secret_fails_authentication_naming_the_node() {
        // A1: the server refuses the client's proof; the client names the server it
        // dialled when it reports the refusal.
        let server_side = ServerHandshake::new(&config("right"), 3, [1; NONCE_BYTES]);
        let (awaiting, auth) = ClientHandshake::new(&config("wrong"), 0, 3, [2; NONCE_BYTES])
            .handle_hello(server_side.hello())
            .unwrap();
        let Err(error) = server_side.handle_auth(auth) else {
            panic!("a wrong secret was accepted");
        };
        assert!(
            error.to_string().contains("authentication failed"),
            "{error}"
        );
        let refusal = Message::Error {
            request_id: 0,
            code: crate::wire::ErrorCode::Auth,
            epoch: sixfold_core::Epoch(0),
            message: error.to_string(),
        };
        let Err(error) = awaiting.handle_auth_ok(refusal) else {
            panic!("a refusal was taken as success");
        };
        let text = error.to_string();
        assert!(
            text.contains("node 3") && text.contains("authentication failed"),
            "{text}"
        );
        // And a server that does not know the secret cannot pass as one.
        assert!(matches!(
            handshake(&config("right"), &config("wrong"), 0, 1, 1),
            Err(HandshakeError::ClientProofFailed { client: 0 })
        ));
    }

    #[test]
    fn a_relayed_hello_from_another_node_is_refused() {
        // A3: a client that dialled node 3 and hears node 2's Hello stops there.
        let error = handshake(&config("s"), &config("s"), 1, 3, 2)
            .err()
            .unwrap();
        assert_eq!(
            error,
            HandshakeError::UnexpectedNode {
                expected: 3,
                found: 2
            }
        );
    }

    #[test]
    fn a_relay_that_forwards_the_handshake_learns_no_key() {
        // A2, A3: a relay that passes Hello and Auth through unchanged lets the two real
        // ends agree on keys, but the keys come from the secret it lacks: a frame it makes
        // with its own guess (the keys of an empty secret) is refused.
        let (_, mut server) = handshake(&config("s"), &config("s"), 2, 1, 1).unwrap();
        let (mut relay, _) = handshake(&config("guess"), &config("guess"), 2, 1, 1).unwrap();
        let (header, body) = split(relay.sealer.seal(b"truncate").unwrap());
        assert!(matches!(
            server.opener.open(header, body),
            Err(FrameAuthError::Forged { .. })
        ));
    }

    #[test]
    fn the_key_schedule_binds_every_transcript_field() {
        // A2: changing any field changes every derived key.
        let base = Transcript {
            cluster_id: "demo".into(),
            server_node: 1,
            client_node: 2,
            server_nonce: [3; NONCE_BYTES],
            client_nonce: [4; NONCE_BYTES],
        };
        let proof = |t: &Transcript| SessionKeys::derive("s", t).client_proof();
        let variants = [
            Transcript {
                cluster_id: "other".into(),
                ..base.clone()
            },
            Transcript {
                server_node: 9,
                ..base.clone()
            },
            Transcript {
                client_node: 9,
                ..base.clone()
            },
            Transcript {
                server_nonce: [9; NONCE_BYTES],
                ..base.clone()
            },
            Transcript {
                client_nonce: [9; NONCE_BYTES],
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert!(!macs_equal(&proof(&base), &proof(variant)), "{variant:?}");
        }
        assert!(!macs_equal(
            &SessionKeys::derive("s", &base).client_proof(),
            &SessionKeys::derive("t", &base).client_proof()
        ));
        let keys = SessionKeys::derive("s", &base);
        assert!(!macs_equal(&keys.client_proof(), &keys.server_proof()));
        assert_ne!(keys.client_to_server, keys.server_to_client);
    }

    #[test]
    fn a_client_claiming_an_unknown_node_id_is_refused() {
        // A1: a peer node id must be one of the config's.
        assert_eq!(
            handshake(&config("s"), &config("s"), 42, 1, 1).err(),
            Some(HandshakeError::UnknownClientNode(42))
        );
    }
}
