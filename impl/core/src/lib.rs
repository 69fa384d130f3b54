//! sixfold-core: the Aurora storage protocol as plain state machines (no sockets, files,
//! clocks or threads), and the byte formats of spec/formats.md.
//!
//! The deterministic simulator and the real servers drive these machines: input events in,
//! actions and [`event::ProtocolEvent`]s out (docs/architecture.md lists which driver runs
//! which machine; the stateright model is written from spec/ independently).

pub mod codec;
pub mod event;
pub mod lease;
pub mod quorum;
pub mod record;
pub mod recovery;
pub mod recovery_session;
pub mod redo;
pub mod repair;
pub mod replica;
pub mod segment;
pub mod types;
pub mod writer;

pub use codec::{DecodeError, PageImage, VerifiedRecord};
pub use event::ProtocolEvent;
pub use lease::{LeasePromise, ReadLease};
pub use quorum::{Availability, Placement, QuorumConfig, QuorumError};
pub use record::{Edit, Mtr, RedoBody, RedoRecord};
pub use recovery::{PlacedAnswer, RecoveryError, RecoveryPlan, RecoveryPlanner, placed_report};
pub use recovery_session::{
    NodeStanding, RecoveryEvent, RecoveryResend, RecoverySession, RecoveryStage, genesis_possible,
};
pub use repair::{Birth, NodeRepair, PeerAnswer};
pub use replica::{PageApply, ReplicaError, ReplicaState, ReplicaStep, StorageRead};
pub use segment::{GossipRequest, Hole, SegmentError, SegmentReport, SegmentState};
pub use types::{
    AzId, DbId, Epoch, Geometry, Lsn, NodeId, PAGE_BYTES, PageId, PgId, SEGMENTS_PER_PG, SegmentId,
    TruncationRange, history_epoch,
};
pub use writer::{SubmittedMtr, WriteError, WriterConfig, WriterStart, WriterState};
