//! Cost of link protection (spec/wire.md A4, A5; docs/performance.md, "Link encryption"):
//! one frame sent and received, per payload size, as
//! - `plain`: the handshake's framing (length, CRC32C; what every frame was before A4);
//! - `sealed`: ChaCha20-Poly1305 under the connection's key with its sequence number.
//!
//! Both write into and read back from memory, so the numbers are the CPU cost of framing
//! alone; the end-to-end effect on commits is measured with `sixfold load`.

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sixfold_cluster::config::{ClusterConfig, six_node_toml};
use sixfold_cluster::session::{ClientHandshake, ServerHandshake, Session};
use sixfold_cluster::wire;

/// Payload sizes: a small ack, a one-record write batch, a page, a full write batch.
const PAYLOAD_BYTES: [usize; 4] = [64, 512, 4_096, 65_536];

fn sessions() -> (Session, Session) {
    let text = six_node_toml("bench", "secret", 16, &[1, 2, 3, 4, 5, 6]);
    let config = ClusterConfig::parse(&text, Path::new("/tmp")).expect("valid config");
    let server = ServerHandshake::new(&config, 1, [1; wire::NONCE_BYTES]);
    let (awaiting, auth) = ClientHandshake::new(&config, 0, 1, [2; wire::NONCE_BYTES])
        .handle_hello(server.hello())
        .expect("hello");
    let (server_session, auth_ok) = server.handle_auth(auth).expect("auth");
    let client_session = awaiting.handle_auth_ok(auth_ok).expect("auth ok");
    (client_session, server_session)
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_round_trip");
    for size in PAYLOAD_BYTES {
        let payload = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("plain", size), &payload, |b, payload| {
            let mut buffer = Vec::with_capacity(size + 64);
            b.iter(|| {
                buffer.clear();
                wire::write_frame(&mut buffer, payload).expect("write");
                wire::read_frame(&mut buffer.as_slice(), &mut || true).expect("read")
            })
        });
        group.bench_with_input(BenchmarkId::new("sealed", size), &payload, |b, payload| {
            let (mut client, mut server) = sessions();
            let mut buffer = Vec::with_capacity(size + 64);
            b.iter(|| {
                buffer.clear();
                wire::write_sealed_frame(&mut buffer, &mut client.sealer, payload).expect("seal");
                wire::read_sealed_frame(&mut buffer.as_slice(), &mut server.opener, &mut || true)
                    .expect("open")
            })
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    c.bench_function("handshake_in_memory", |b| b.iter(sessions));
}

criterion_group!(benches, frames, handshake);
criterion_main!(benches);
