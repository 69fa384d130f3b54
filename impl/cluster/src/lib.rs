//! sixfold-cluster: the networked shell around sixfold-core's state machines.
//!
//! - [`wire`]: the versioned wire protocol of spec/wire.md (frames, messages);
//! - [`session`]: the authenticated handshake and sealed frames of every link (A1–A5);
//! - [`backup`]: continuous backup to object storage and point-in-time restore (B6–B20);
//! - [`config`]: the cluster config (TOML) and segment placement (Q3, Q6);
//! - [`identity`]: what a node records and both ends check after the handshake (I1–I4);
//! - [`store`]: a node's durable segments; [`server`]: the storage-node server and gossip;
//!   [`admission`]: which connections a node keeps under hostile load (A9–A13);
//! - [`writer`]: the quorum writer ([`link`] per node) with [`recovery`] (W, C, R, X, E);
//! - [`embedded`]: six nodes in one process on loopback;
//! - [`files`]: private config and data dirs, one process per data dir (A6, A7);
//! - [`status`]: what `sixfold status` prints; [`workload`]: what `sixfold load` runs.
//!
//! Threads and blocking `std::net` sockets, not async: every connection has a thread or
//! two, every queue is a bounded `sync_channel`, every socket has timeouts. The number of
//! connections is small (a writer, a few peers, a status tool per node), so threads cost
//! little and keep the shell readable in one sitting (style §1).

pub mod admission;
pub mod backup;
pub mod config;
pub mod embedded;
pub mod files;
pub mod identity;
pub mod link;
pub mod net;
pub mod reader;
pub mod recovery;
pub mod server;
pub mod session;
pub mod status;
pub mod store;
pub mod wire;
pub mod workload;
pub mod writer;

pub use config::{ClusterConfig, ConfigError};
pub use embedded::EmbeddedCluster;
pub use reader::{Reader, ReaderError};
pub use server::NodeHandle;
pub use writer::{Transaction, Writer, WriterError, WriterOptions, WriterStats};
