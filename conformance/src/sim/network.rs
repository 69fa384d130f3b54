//! The simulated network: unordered, lossy, duplicating, delaying, partitionable.

use std::collections::BTreeMap;

use sixfold_core::{
    Epoch, GossipRequest, Lsn, NodeStanding, PageId, RedoRecord, SegmentId, SegmentReport,
    TruncationRange,
};

use super::SIM_NODES;
use super::faults::FaultSet;
use super::rng::SimRng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Node(usize),
    Writer(usize),
}

/// Every message of the simulated protocol (the same content as spec/wire.md's frames).
#[derive(Clone, Debug)]
pub enum Message {
    Write {
        writer: usize,
        segment: SegmentId,
        epoch: Epoch,
        vdl_hint: Lsn,
        truncation: Option<TruncationRange>,
        records: Vec<RedoRecord>,
    },
    Ack {
        writer: usize,
        segment: SegmentId,
        scl: Lsn,
        epoch: Epoch,
    },
    /// A request was refused for a stale epoch (S7): the segment holds `seen`.
    Refused {
        writer: usize,
        segment: SegmentId,
        seen: Epoch,
    },
    /// X1, E4: raise to `epoch` durably, then report.
    RecoveryQuery {
        writer: usize,
        segment: SegmentId,
        epoch: Epoch,
    },
    /// X1, X11: the segment's report, or none (repairing, or a late node's absent
    /// segment), with the node's standing (S23).
    RecoveryReport {
        writer: usize,
        segment: SegmentId,
        report: Option<SegmentReport>,
        standing: NodeStanding,
    },
    /// S23: the genesis counted this node's answer with `incarnation`; join it.
    JoinGenesis {
        writer: usize,
        segment: SegmentId,
        incarnation: u64,
    },
    /// S23: the node joined (durably), or knows it is with the volume already.
    GenesisJoined { writer: usize, segment: SegmentId },
    /// X5, S15: make `history` durable (or, with `None`, only confirm the epoch) and say
    /// the SCL. The history's newest range is the recovery's own.
    Truncate {
        writer: usize,
        segment: SegmentId,
        epoch: Epoch,
        history: Option<Vec<TruncationRange>>,
    },
    TruncateAck {
        writer: usize,
        segment: SegmentId,
        scl: Lsn,
    },
    GossipRequest {
        from: usize,
        to: usize,
        segment: SegmentId,
        request: GossipRequest,
    },
    GossipAnswer {
        from: usize,
        to: usize,
        segment: SegmentId,
        epoch: Epoch,
        truncations: Vec<TruncationRange>,
        records: Vec<RedoRecord>,
        /// S21: the answering segment's SCL, and whether it is repairing.
        peer_scl: Lsn,
        peer_repairing: bool,
        /// The answer held everything the asker lacked (fewer records than a batch).
        complete: bool,
    },
    ReadPage {
        writer: usize,
        segment: SegmentId,
        epoch: Epoch,
        page: PageId,
        read_lsn: Lsn,
        required_lsn: Lsn,
    },
    PageReply {
        from: usize,
        writer: usize,
        page: PageId,
        lsn: Lsn,
    },
}

fn node_of(segment: SegmentId) -> usize {
    segment.replica as usize
}

impl Message {
    pub fn destination(&self) -> Destination {
        use Message::*;
        match self {
            Write { segment, .. }
            | RecoveryQuery { segment, .. }
            | Truncate { segment, .. }
            | JoinGenesis { segment, .. }
            | ReadPage { segment, .. } => Destination::Node(node_of(*segment)),
            GossipRequest { to, .. } | GossipAnswer { to, .. } => Destination::Node(*to),
            Ack { writer, .. }
            | Refused { writer, .. }
            | RecoveryReport { writer, .. }
            | TruncateAck { writer, .. }
            | GenesisJoined { writer, .. }
            | PageReply { writer, .. } => Destination::Writer(*writer),
        }
    }

    fn source(&self) -> Destination {
        use Message::*;
        match self {
            Write { writer, .. }
            | RecoveryQuery { writer, .. }
            | Truncate { writer, .. }
            | JoinGenesis { writer, .. }
            | ReadPage { writer, .. } => Destination::Writer(*writer),
            GossipRequest { from, .. } | GossipAnswer { from, .. } | PageReply { from, .. } => {
                Destination::Node(*from)
            }
            Ack { segment, .. }
            | Refused { segment, .. }
            | TruncateAck { segment, .. }
            | RecoveryReport { segment, .. }
            | GenesisJoined { segment, .. } => Destination::Node(node_of(*segment)),
        }
    }
}

/// Which traffic a partition blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partition {
    None,
    /// One node cut off from everyone.
    Node(usize),
    /// Both nodes of one AZ cut off.
    Az(usize),
    /// Messages from this node are lost; messages to it still arrive.
    OneWay(usize),
}

pub struct Network {
    loss: f64,
    duplication: f64,
    delay_max: u64,
    partition: Partition,
    in_flight: BTreeMap<(u64, u64), Message>,
    sequence: u64,
}

impl Network {
    /// The rates of this run, drawn from the seed (TigerBeetle's VOPR style).
    pub fn new(rng: &mut SimRng, faults: &FaultSet) -> Network {
        Network {
            loss: if faults.loss {
                rng.uniform(0.0, 0.3)
            } else {
                0.0
            },
            duplication: if faults.duplication {
                rng.uniform(0.0, 0.1)
            } else {
                0.0
            },
            delay_max: if faults.reordering {
                1 + rng.below(12)
            } else {
                1
            },
            partition: Partition::None,
            in_flight: BTreeMap::new(),
            sequence: 0,
        }
    }

    fn blocked(&self, message: &Message) -> bool {
        let az_of = |node: usize| node / 2;
        let cut = |end: Destination| match (self.partition, end) {
            (Partition::Node(n), Destination::Node(m)) => n == m,
            (Partition::Az(az), Destination::Node(m)) => az_of(m) == az,
            _ => false,
        };
        let one_way = matches!(
            (self.partition, message.source()),
            (Partition::OneWay(n), Destination::Node(m)) if n == m
        );
        cut(message.source()) || cut(message.destination()) || one_way
    }

    pub fn send(&mut self, now: u64, message: Message, rng: &mut SimRng) {
        if self.blocked(&message) || rng.chance(self.loss) {
            return;
        }
        let copies = if rng.chance(self.duplication) { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + 1 + rng.below(self.delay_max);
            self.sequence += 1;
            self.in_flight.insert((at, self.sequence), message.clone());
        }
    }

    /// Messages due at `now`, in a seeded shuffle of their arrival order.
    pub fn due(&mut self, now: u64, rng: &mut SimRng) -> Vec<Message> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        let mut messages: Vec<Message> = due.into_values().filter(|m| !self.blocked(m)).collect();
        for index in (1..messages.len()).rev() {
            let other = rng.below(index as u64 + 1) as usize;
            messages.swap(index, other);
        }
        messages
    }

    /// Starts a partition; returns what kind, for the trace.
    pub fn partition(&mut self, rng: &mut SimRng) -> String {
        self.partition = match rng.below(3) {
            0 => Partition::Node(rng.below(SIM_NODES as u64) as usize),
            1 => Partition::Az(rng.below(3) as usize),
            _ => Partition::OneWay(rng.below(SIM_NODES as u64) as usize),
        };
        format!("{:?}", self.partition)
    }

    pub fn heal(&mut self) {
        self.partition = Partition::None;
    }

    /// The liveness phase: no partition, no loss, no duplication.
    pub fn heal_all(&mut self) {
        self.partition = Partition::None;
        self.loss = 0.0;
        self.duplication = 0.0;
    }
}
