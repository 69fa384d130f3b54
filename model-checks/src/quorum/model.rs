//! The stateright `Model`: actions, transitions and properties.

use stateright::{Model, Property};

use super::config::{Bug, Config};
use super::segment::{self, GossipRules, HistoryMerge, REPAIR_PEERS};
use super::state::{
    AZ_COUNT, FIRST_EPOCH, Ghost, LsnSet, Message, Phase, RECORD_SLOTS, Record, SEGMENTS_PER_PG,
    Segment, SegmentIndex, State, Writer, contains, format_set, members, segment_name, violation,
};
use super::writer;

/// One writer (plus, after a failover, the old one still running), 1–2 PGs of six segments
/// in three AZs, an unordered network that loses and duplicates.
#[derive(Clone, Debug)]
pub struct QuorumModel {
    pub config: Config,
    pub bug: Option<Bug>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The writer allocates an MTR of this shape (index into `Config::mtr_shapes`).
    AllocateMtr(u8),
    /// The network delivers a message (again, perhaps).
    Deliver(Message),
    /// A segment fsyncs its queued writes and acks.
    Flush(SegmentIndex),
    /// `target` gossips with `source` and takes the records it lacks.
    Gossip {
        source: SegmentIndex,
        target: SegmentIndex,
    },
    /// R12, S21: the open writer's heartbeat reaches a repairing segment's node, which
    /// learns that a writer above the epoch of its loss opened.
    Heartbeat(SegmentIndex),
    /// A segment crashes and restarts.
    CrashSegment(SegmentIndex),
    /// Every segment in one AZ crashes and restarts.
    CrashAz(u8),
    /// The writer crashes; a new one starts and recovers.
    CrashWriter,
    /// A new writer starts and recovers while the old one keeps running, partitioned.
    Failover,
    /// Recovery reads one segment (and fences it, E4).
    RecoveryRead(SegmentIndex),
    /// Recovery decides VCL, VDL and the truncation range.
    RecoveryDecide,
    /// Recovery repairs a segment and writes it the epoch and truncation set.
    RecoveryWrite(SegmentIndex),
    /// The writer reads its PG's page at VDL from one segment.
    Read(SegmentIndex),
    /// R7, R8: a segment's node grants a read lease to the writer of its epoch (`stale`:
    /// the partitioned old writer).
    Renew { stale: bool, segment: SegmentIndex },
    /// R7, R11: a segment's lease promise runs out (and the writer's count of it).
    ExpireLease(SegmentIndex),
    /// R10: recovery, written to a write quorum, opens once no older lease is promised.
    RecoveryOpen,
    /// R9: the partitioned old writer serves a read of one PG from its cache.
    StaleRead(u8),
    /// S17, S19: a segment loses its disk and is hosted again empty, repairing.
    LoseDisk(SegmentIndex),
}

pub const DURABILITY: &str = "durability";
pub const MTR_ATOMICITY: &str = "mtr atomicity";
pub const VDL_RULES: &str = "vdl <= vcl, vdl is a cpl, vdl monotonic";
pub const FENCING: &str = "fencing";
pub const READ_AT_POINT: &str = "read returns the committed value";
pub const COMMIT_ACKED: &str = "a commit is acknowledged";
pub const RECOVERY_COMPLETES: &str = "a recovery completes";
pub const READ_AFTER_RECOVERY: &str = "a read after recovery is served";
pub const SERVES_ONLY_VOLUME: &str = "a segment with the newest history serves only the volume";
pub const QUIESCENT_SEGMENTS_REACH_VCL: &str =
    "when only faults are left, every segment reaches vcl";
pub const QUIESCENCE_REACHED: &str = "a run ends with only faults left";
pub const NO_STALE_READ: &str =
    "a read served by a writer never misses a value acknowledged by a newer epoch";
pub const STALE_WRITER_READS: &str = "a partitioned old writer serves a read under its lease";
pub const REPAIR_RESTORES: &str = "a segment ends its repair holding every record it held at a write quorum when it lost its disk";
pub const QUIESCENT_REPAIR_ENDS: &str = "when only faults are left, no segment is repairing";
pub const REPAIR_ENDS: &str = "a repairing segment ends its repair";
pub const RECOVERY_AFTER_DISK_LOSS: &str =
    "a recovery completes after a segment lost an acknowledged record with its disk";

/// The spec rules each property checks.
pub fn property_rules(name: &str) -> &'static [&'static str] {
    match name {
        DURABILITY => &["C4", "C5", "Q1", "Q2", "Q5", "X2", "X3", "X4", "X5", "E4"],
        MTR_ATOMICITY => &["L2", "C3", "C4", "X4", "S8", "R2"],
        VDL_RULES => &["C1", "C2", "C3", "X3", "X8"],
        FENCING => &["S7", "E2", "E3", "E4", "C6", "S6"],
        READ_AT_POINT => &["R1", "R2", "R3", "S4", "S8", "X7"],
        COMMIT_ACKED => &["C4"],
        RECOVERY_COMPLETES => &["X1", "X5", "E1"],
        READ_AFTER_RECOVERY => &["R1", "X7"],
        SERVES_ONLY_VOLUME => &["S15", "S4", "S8", "R1", "R3", "X9"],
        QUIESCENT_SEGMENTS_REACH_VCL => &["S15", "S6", "S4", "S8", "X5", "X9", "C2"],
        QUIESCENCE_REACHED => &["W1", "S15"],
        NO_STALE_READ => &["R7", "R8", "R9", "R10", "R11", "E3", "Q2"],
        STALE_WRITER_READS => &["R8", "R9"],
        REPAIR_RESTORES => &["S19", "S21", "S6", "Q1"],
        QUIESCENT_REPAIR_ENDS => &["S21", "S6"],
        REPAIR_ENDS => &["S21"],
        RECOVERY_AFTER_DISK_LOSS => &["S17", "S19", "S20", "X11", "X1", "X5"],
        _ => &[],
    }
}

impl QuorumModel {
    pub fn new(config: Config, bug: Option<Bug>) -> Self {
        QuorumModel { config, bug }
    }

    fn segment_count(&self) -> usize {
        self.config.pg_count * SEGMENTS_PER_PG
    }

    fn fencing(&self) -> bool {
        self.bug != Some(Bug::NoFencing)
    }

    /// How segments take truncation histories (S15); two mutants break it.
    fn history_merge(&self) -> HistoryMerge {
        match self.bug {
            Some(Bug::TruncationUnion) => HistoryMerge::Union,
            Some(Bug::RecoverySendsOwnRange) => HistoryMerge::OwnRangeOnly,
            _ => HistoryMerge::Whole,
        }
    }

    fn write_is_news(&self, state: &State, index: SegmentIndex, lsn: u8) -> bool {
        let segment = &state.segments[index as usize];
        let epoch = state.record(lsn).epoch;
        let fresh = !contains(segment.held | segment.pending | segment.truncated, lsn);
        if epoch < segment.epoch && self.fencing() {
            return !state.in_network(&Message::Rejected { epoch });
        }
        if segment::lacks_writer_history(segment, epoch) {
            // S15: refused until gossip brings the history (then it is news again).
            return false;
        }
        if epoch < segment.epoch {
            return fresh || !segment.accepted_stale;
        }
        epoch > segment.epoch || fresh
    }

    fn message_is_news(&self, state: &State, message: &Message) -> bool {
        match *message {
            Message::Write { segment, lsn, .. } => self.write_is_news(state, segment, lsn),
            Message::Ack {
                segment,
                scl,
                epoch,
            } => {
                writer::ack_is_news(&state.writer, epoch, segment, scl)
                    || writer::ack_is_news(&state.writer_stale, epoch, segment, scl)
            }
            Message::Rejected { epoch } => {
                state.writer_stale.is_some_and(|stale| stale.epoch == epoch)
            }
        }
    }

    /// How segments take gossip and end repairs (S6, S7, S15, S21); five mutants break it.
    fn gossip_rules(&self) -> GossipRules {
        GossipRules {
            epoch_checked: self.bug != Some(Bug::GossipIgnoresEpoch),
            merge: self.history_merge(),
            repair_peers_needed: if self.bug == Some(Bug::RepairClearsEarly) {
                REPAIR_PEERS - 1
            } else {
                REPAIR_PEERS
            },
            repair_waits_for_newer_writer: self.bug != Some(Bug::RepairEndsInLossEpoch),
        }
    }

    /// A gossip answer changes the target: records, a history, or (S21) its repair.
    fn gossip_is_news(&self, state: &State, source: usize, target: usize) -> bool {
        let from = &state.segments[source];
        let to = &state.segments[target];
        let merge = self.history_merge();
        let newer_history =
            merge != HistoryMerge::OwnRangeOnly && from.truncation_epoch > to.truncation_epoch;
        let offered: LsnSet = from.held & !to.held & !to.truncated;
        if offered == 0 && !newer_history && !to.repairing {
            return false;
        }
        let replica = source % SEGMENTS_PER_PG;
        segment::gossip_repairing(&state.records, from, replica, to, self.gossip_rules()) != *to
    }

    /// Nothing is left to do but reads and faults: the writer is open and has allocated all
    /// it may, no message is news, no segment has a queue, and no gossip is news.
    fn quiescent(&self, state: &State) -> bool {
        let Some(current) = state.writer else {
            return false;
        };
        if current.phase != Phase::Active
            || state.segments.iter().any(|segment| segment.pending != 0)
        {
            return false;
        }
        let can_allocate = self
            .config
            .mtr_shapes
            .iter()
            .any(|shape| writer::can_allocate(&self.config, &current, shape));
        if can_allocate
            || state
                .network
                .iter()
                .any(|message| self.message_is_news(state, message))
            || (0..self.segment_count()).any(|index| self.heartbeat_is_news(state, index))
        {
            return false;
        }
        let segment_count = self.segment_count();
        let gossip_left = self.config.gossip
            && (0..segment_count).any(|target| {
                let pg = target / SEGMENTS_PER_PG;
                (pg * SEGMENTS_PER_PG..(pg + 1) * SEGMENTS_PER_PG)
                    .any(|source| source != target && self.gossip_is_news(state, source, target))
            });
        !gossip_left
    }

    /// R12, S21: a heartbeat of the open writer tells a repairing segment's node something
    /// new: that a writer above the epoch of its loss opened.
    fn heartbeat_is_news(&self, state: &State, index: usize) -> bool {
        let segment = &state.segments[index];
        segment.repairing
            && !segment.newer_writer_seen
            && state.writer.is_some_and(|writer| {
                writer.phase == Phase::Active && writer.epoch > segment.lost_epoch
            })
    }

    /// S21 in the bounded form of `segments_reach_vcl_when_quiescent`: once only reads and
    /// faults are left (heartbeats included), gossip and heartbeats have ended every repair
    /// that a writer above its loss epoch can end; a segment that lost its disk in the
    /// current writer's epoch stays repairing until a recovery. Stated only with gossip.
    fn repair_ended_when_quiescent(&self, state: &State) -> bool {
        let waits_for_newer_writer = self.gossip_rules().repair_waits_for_newer_writer;
        let stuck = state.segments.iter().any(|segment| {
            segment.repairing
                && !(waits_for_newer_writer
                    && state
                        .writer
                        .is_some_and(|writer| writer.epoch <= segment.lost_epoch))
        });
        !self.config.gossip || !stuck || !self.quiescent(state)
    }

    /// Liveness in the bounded form the checker can decide (S6, S15, X5, C2): stateright's
    /// `eventually` only reports a path that ends in a terminal state, and with faults and
    /// reads always enabled no state of this model is terminal. So the property is stated at
    /// the states where only reads and faults are left (`quiescent`): with no fault to come,
    /// such a state is the end of the run. There every segment's complete chain reaches the
    /// newest LSN of its PG at or below the writer's VCL that is in the volume: no hole is
    /// left that nothing will ever fill. (VCL itself may lag what the segments hold: the
    /// writer learns SCLs only from acks to writes, and a record taken by gossip is acked to
    /// no one.) Without gossip a segment that missed a write has nothing to fill the hole
    /// (S6 is how segments heal), so the property is only stated in configs with gossip.
    fn segments_reach_vcl_when_quiescent(&self, state: &State) -> bool {
        if !self.config.gossip || !self.quiescent(state) {
            return true;
        }
        let Some(current) = state.writer else {
            return true;
        };
        (0..self.segment_count()).all(|index| {
            let pg = index / SEGMENTS_PER_PG;
            let newest = writer::committed_value(state, &current, pg, current.vcl);
            segment::read_page(state, index as SegmentIndex, current.vcl) == newest
        })
    }

    fn writer_actions(&self, state: &State, actions: &mut Vec<Action>) {
        let Some(current) = state.writer else {
            return;
        };
        if let Some(recovery) = writer::recovery(&state.writer) {
            for index in 0..self.segment_count() {
                if writer::recovery_read_is_news(state, index as SegmentIndex, self.bug) {
                    actions.push(Action::RecoveryRead(index as SegmentIndex));
                }
            }
            if writer::recovery_can_decide(&recovery, self.config.pg_count, self.bug) {
                actions.push(Action::RecoveryDecide);
            }
            for index in 0..self.segment_count() {
                if writer::recovery_write_is_news(
                    state,
                    index as SegmentIndex,
                    self.history_merge(),
                ) {
                    actions.push(Action::RecoveryWrite(index as SegmentIndex));
                }
            }
        }
        if writer::recovery_can_open(state, &self.config, self.bug) {
            actions.push(Action::RecoveryOpen);
        }
        for index in 0..self.segment_count() {
            if writer::can_read(state, index as SegmentIndex) {
                actions.push(Action::Read(index as SegmentIndex));
            }
        }
        self.lease_actions(state, actions);
        for index in 0..self.segment_count() {
            if self.heartbeat_is_news(state, index) {
                actions.push(Action::Heartbeat(index as SegmentIndex));
            }
        }
        // Lease configs: the first writer only reads (its cached view is the empty volume),
        // which keeps the space small; what it misses is the newer writer's commit.
        let reads_only = self.config.leases && current.epoch == FIRST_EPOCH;
        for (index, shape) in self.config.mtr_shapes.iter().enumerate() {
            if !reads_only && writer::can_allocate(&self.config, &current, shape) {
                actions.push(Action::AllocateMtr(index as u8));
            }
        }
    }

    /// R7–R10: grants, expiries and the old writer's cached reads (lease configs only).
    fn lease_actions(&self, state: &State, actions: &mut Vec<Action>) {
        if !self.config.leases {
            return;
        }
        for index in 0..self.segment_count() {
            let segment = index as SegmentIndex;
            // Before a newer writer exists an expiry and a renewal give back the same state;
            // only expiries a recovery can be waiting for are explored.
            let promise = state.segments[index].promise;
            if promise != 0 && state.writer.is_some_and(|w| w.epoch > promise) {
                actions.push(Action::ExpireLease(segment));
            }
            for stale in [false, true] {
                if writer::can_renew(state, stale, segment) {
                    actions.push(Action::Renew { stale, segment });
                }
            }
        }
        if writer::can_stale_read(state, &self.config, self.bug) {
            for pg in 0..self.config.pg_count {
                actions.push(Action::StaleRead(pg as u8));
            }
        }
    }

    /// Writer crash and failover, disk losses, segment and AZ crashes.
    fn fault_actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.disk_losses < self.config.disk_losses {
            for index in 0..self.segment_count() {
                if !state.segments[index].repairing {
                    actions.push(Action::LoseDisk(index as SegmentIndex));
                }
            }
        }
        if let Some(current) = state.writer
            && state.writer_restarts < self.config.writer_restarts
        {
            actions.push(Action::CrashWriter);
            if self.config.failover && current.phase == Phase::Active {
                actions.push(Action::Failover);
            }
        }
        if state.segment_crashes >= self.config.segment_crashes {
            return;
        }
        for index in 0..self.segment_count() {
            if state.segments[index].pending != 0 {
                actions.push(Action::CrashSegment(index as SegmentIndex));
            }
        }
        if self.config.az_crashes {
            for az in 0..AZ_COUNT {
                let pending = (0..self.segment_count())
                    .filter(|index| super::state::az_of_segment(*index as SegmentIndex) == az)
                    .filter(|index| state.segments[*index].pending != 0)
                    .count();
                if pending >= 2 {
                    actions.push(Action::CrashAz(az as u8));
                }
            }
        }
    }

    fn segment_actions(&self, state: &State, actions: &mut Vec<Action>) {
        for index in 0..self.segment_count() {
            if state.segments[index].pending != 0 {
                actions.push(Action::Flush(index as SegmentIndex));
            }
        }
        if self.config.gossip {
            for target in 0..self.segment_count() {
                let pg = target / SEGMENTS_PER_PG;
                for source in pg * SEGMENTS_PER_PG..(pg + 1) * SEGMENTS_PER_PG {
                    if source != target && self.gossip_is_news(state, source, target) {
                        actions.push(Action::Gossip {
                            source: source as SegmentIndex,
                            target: target as SegmentIndex,
                        });
                    }
                }
            }
        }
    }

    /// A message whose delivery can never change anything again is dropped, so that states
    /// differing only in dead messages are one state (a bisimulation, not a restriction).
    fn forget_dead_messages(&self, state: &mut State) {
        let live_epoch = |epoch| {
            [state.writer, state.writer_stale]
                .into_iter()
                .flatten()
                .find(|writer| writer.epoch == epoch)
        };
        let fencing = self.fencing();
        let keep: Vec<bool> = state
            .network
            .iter()
            .map(|message| match *message {
                Message::Write { segment, lsn, .. } => {
                    let segment = &state.segments[segment as usize];
                    let epoch = state.record(lsn).epoch;
                    // Held records stay held; a stale write is only ever rejected again.
                    let held = contains(segment.held, lsn);
                    let rejected_forever =
                        fencing && epoch < segment.epoch && live_epoch(epoch).is_none();
                    !(held || rejected_forever)
                }
                Message::Ack {
                    segment,
                    scl,
                    epoch,
                } => live_epoch(epoch)
                    .is_some_and(|writer| writer.scl_by_segment[segment as usize] < scl),
                Message::Rejected { epoch } => live_epoch(epoch).is_some(),
            })
            .collect();
        let mut flags = keep.into_iter();
        state.network.retain(|_| flags.next().unwrap_or(true));
    }

    fn restart_writer(&self, state: &mut State) {
        state.writer_restarts += 1;
        state.ghost.epoch_max += 1;
        state.writer = Some(writer::restarted_writer(state.ghost.epoch_max));
    }

    fn deliver(&self, state: &mut State, message: Message) {
        match message {
            Message::Write {
                segment,
                lsn,
                vdl_hint,
            } => {
                segment::deliver_write(state, segment, lsn, vdl_hint, self.fencing());
            }
            Message::Ack {
                segment,
                scl,
                epoch,
            } => {
                let stale = !writer::ack_is_news(&state.writer, epoch, segment, scl);
                writer::handle_ack(state, stale, segment, scl, self.bug);
            }
            Message::Rejected { .. } => {
                // E3, C6: the stale writer is fenced: it stops and fails its waiters.
                state.writer_stale = None;
            }
        }
    }

    /// One line per step of a counterexample: who did what, with the LSNs.
    pub fn describe(&self, state: &State, action: &Action) -> String {
        let epoch = state.writer.map(|writer| writer.epoch).unwrap_or(0);
        match *action {
            Action::AllocateMtr(shape) => {
                let writer = state.writer.expect("allocating writer");
                let lsns: Vec<String> = self.config.mtr_shapes[shape as usize]
                    .iter()
                    .enumerate()
                    .map(|(position, pg)| format!("{}@pg{}", writer.lsn_next + position as u8, pg))
                    .collect();
                format!(
                    "writer e{epoch} allocates MTR [{}] (commit LSN {}) and sends it with VDL hint {}",
                    lsns.join(", "),
                    writer.lsn_next,
                    writer.vdl
                )
            }
            Action::Deliver(Message::Write {
                segment,
                lsn,
                vdl_hint,
            }) => format!(
                "network delivers write LSN {lsn} (epoch {}, VDL hint {vdl_hint}) to {}",
                state.record(lsn).epoch,
                segment_name(segment)
            ),
            Action::Deliver(Message::Ack {
                segment,
                scl,
                epoch,
            }) => format!(
                "network delivers ack from {} (SCL {scl}, epoch {epoch}) to writer e{epoch}",
                segment_name(segment)
            ),
            Action::Deliver(Message::Rejected { epoch }) => {
                format!("network delivers a stale-epoch rejection to writer e{epoch}: it is fenced")
            }
            Action::Flush(segment) => format!(
                "{} fsyncs pending {} and acks",
                segment_name(segment),
                format_set(state.segments[segment as usize].pending)
            ),
            Action::Gossip { source, target } => {
                let to = state.segments[target as usize];
                let merged = segment::gossip_repairing(
                    &state.records,
                    &state.segments[source as usize],
                    source as usize % SEGMENTS_PER_PG,
                    &to,
                    self.gossip_rules(),
                );
                let (after, _) =
                    segment::settle_repair(&state.records, &merged, self.gossip_rules());
                let history = if after.truncation_epoch != to.truncation_epoch {
                    format!(
                        " and truncation history e{} {}",
                        after.truncation_epoch,
                        format_set(after.truncated)
                    )
                } else {
                    String::new()
                };
                let repair = if to.repairing && !after.repairing {
                    " and ends its repair (S21)".to_string()
                } else if merged.repair_peers != to.repair_peers {
                    format!(
                        " and counts the answer toward its repair ({} peers counted, {} needed, S21)",
                        merged.repair_peers.count_ones(),
                        self.gossip_rules().repair_peers_needed
                    )
                } else {
                    String::new()
                };
                format!(
                    "{} gossips with {} and takes {}{history}{repair}",
                    segment_name(target),
                    segment_name(source),
                    format_set(after.held & !to.held),
                )
            }
            Action::Heartbeat(index) => {
                let ends = {
                    let mut heard = state.segments[index as usize];
                    heard.newer_writer_seen = true;
                    !segment::settle_repair(&state.records, &heard, self.gossip_rules())
                        .0
                        .repairing
                };
                format!(
                    "a heartbeat of writer e{epoch} reaches {}: a writer above its loss epoch {} opened{}",
                    segment_name(index),
                    state.segments[index as usize].lost_epoch,
                    if ends {
                        "; it ends its repair (S21)"
                    } else {
                        ""
                    }
                )
            }
            Action::LoseDisk(index) => {
                let segment = &state.segments[index as usize];
                format!(
                    "{} loses its disk (holding {}, SCL {}); hosted again empty at epoch {} with truncation history e{} {}, repairing (S17, S19)",
                    segment_name(index),
                    format_set(segment.held | segment.pending),
                    segment.scl,
                    segment.epoch,
                    segment.truncation_epoch,
                    format_set(segment.truncated)
                )
            }
            Action::CrashSegment(segment) => format!(
                "{} crashes, losing pending {}",
                segment_name(segment),
                format_set(state.segments[segment as usize].pending)
            ),
            Action::CrashAz(az) => format!("every segment in az{az} crashes"),
            Action::CrashWriter => format!(
                "writer e{epoch} crashes; writer e{} starts recovery",
                state.ghost.epoch_max + 1
            ),
            Action::Failover => format!(
                "failover: writer e{epoch} keeps running partitioned; writer e{} starts recovery",
                state.ghost.epoch_max + 1
            ),
            Action::RecoveryRead(index)
                if !writer::report_counts(&state.segments[index as usize], self.bug) =>
            {
                format!(
                    "recovery e{epoch} raises {}'s epoch; its node answers that it is repairing, which counts as no answer (X11)",
                    segment_name(index)
                )
            }
            Action::RecoveryRead(index) => {
                let segment = &state.segments[index as usize];
                let repairing = if segment.repairing {
                    " (repairing, counted as empty)"
                } else {
                    ""
                };
                format!(
                    "recovery e{epoch} reads {}{repairing}: SCL {}, VDL hint {}, holds {}, truncation history e{} {}",
                    segment_name(index),
                    segment.scl,
                    segment.hint,
                    format_set(segment.held),
                    segment.truncation_epoch,
                    format_set(segment.truncated)
                )
            }
            Action::RecoveryDecide => {
                let mut next = state.clone();
                writer::recovery_decide(&mut next, &self.config, self.bug);
                match writer::recovery(&next.writer).and_then(|recovery| recovery.outcome) {
                    Some(outcome) => format!(
                        "recovery e{epoch} decides VCL {}, VDL {}, truncated {}",
                        outcome.vcl,
                        outcome.vdl,
                        format_set(outcome.truncated)
                    ),
                    None => format!("recovery e{epoch} decides"),
                }
            }
            Action::RecoveryWrite(index) => format!(
                "recovery e{epoch} repairs {} and writes it epoch {epoch} and the truncation set",
                segment_name(index)
            ),
            Action::Renew { stale, segment } => {
                let writer = if stale {
                    state.writer_stale
                } else {
                    state.writer
                };
                format!(
                    "{} grants a read lease to writer e{} (R7)",
                    segment_name(segment),
                    writer.map_or(0, |w| w.epoch)
                )
            }
            Action::ExpireLease(segment) => format!(
                "the read lease {} promised to writer e{} runs out",
                segment_name(segment),
                state.segments[segment as usize].promise
            ),
            Action::RecoveryOpen => {
                format!("recovery e{epoch} has waited out every older lease and opens (R10)")
            }
            Action::StaleRead(pg) => {
                let stale = state.writer_stale.expect("stale writer");
                format!(
                    "old writer e{} serves a read of pg{pg} from its cache at its VDL {}",
                    stale.epoch, stale.vdl
                )
            }
            Action::Read(index) => {
                let vdl = state.writer.map(|writer| writer.vdl).unwrap_or(0);
                format!(
                    "writer e{epoch} reads at read point {vdl} from {}: gets value {}",
                    segment_name(index),
                    segment::read_page(state, index, vdl)
                )
            }
        }
    }
}

fn recovered_outcome(writer: &Writer) -> Option<(u8, LsnSet)> {
    match writer.phase {
        Phase::Recovering(recovery) => recovery
            .outcome
            .map(|outcome| (outcome.vdl, outcome.truncated)),
        Phase::Active => Some((writer.vdl_recovered, writer.truncated)),
    }
}

/// C4, X3–X5: every acknowledged commit is in the volume the latest recovery decided, and
/// reads never miss one.
fn durability_holds(state: &State) -> bool {
    if state.ghost.violations & violation::READ_LOST_ACKED != 0 {
        return false;
    }
    let Some(current) = state.writer else {
        return true;
    };
    let in_recovered = |lsn: u8| match current.phase {
        Phase::Active => writer::in_volume(state, &current, lsn),
        Phase::Recovering(recovery) => match recovery.outcome {
            Some(outcome) => lsn <= outcome.vdl && !contains(outcome.truncated, lsn),
            None => true,
        },
    };
    members(state.ghost.acked)
        .flat_map(|commit| members(state.mtr_of(commit)))
        .all(in_recovered)
}

/// L2, X4: a recovered volume holds each MTR whole or not at all; so does every read.
fn atomicity_holds(state: &State) -> bool {
    if state.ghost.violations & violation::READ_PARTIAL_MTR != 0 {
        return false;
    }
    let Some(current) = state.writer else {
        return true;
    };
    let Some((vdl, truncated)) = recovered_outcome(&current) else {
        return true;
    };
    (1..RECORD_SLOTS as u8)
        .filter(|lsn| state.is_allocated(*lsn) && state.record(*lsn).cpl)
        .all(|cpl| {
            let mtr = state.mtr_of(cpl);
            let kept = members(mtr).filter(|lsn| *lsn <= vdl && !contains(truncated, *lsn));
            let kept = kept.count();
            kept == 0 || kept == mtr.count_ones() as usize
        })
}

/// C3: VDL ≤ VCL, VDL is a CPL in the volume, and the newest writer's VDL is the highest any
/// writer ever reached (never backwards, across epochs too).
fn vdl_holds(state: &State) -> bool {
    let each = [state.writer, state.writer_stale]
        .into_iter()
        .flatten()
        .filter(|writer| writer.phase == Phase::Active)
        .all(|writer| {
            writer.vdl <= writer.vcl
                && (writer.vdl == 0
                    || (state.record(writer.vdl).cpl
                        && writer::in_volume(state, &writer, writer.vdl)))
        });
    let newest_highest = match state.writer {
        Some(current) if current.phase == Phase::Active => current.vdl >= state.ghost.vdl_high,
        _ => true,
    };
    each && newest_highest
}

/// S15, R1, R3, X9: a segment that holds the newest truncation history (the one the current
/// writer's recovery decided) serves only the volume: every LSN on its complete chain, walked
/// from its SCL back along `prev_lsn_pg` (S4), is in the volume that recovery left. A segment
/// with an older history may still hold records a completed recovery voided; S15 has it
/// refuse that writer's reads until gossip brings the history, and R1 keeps the writer from
/// reading it (its acked SCL never covers the read point through a void record).
fn serves_only_volume(state: &State) -> bool {
    let Some(current) = state.writer else {
        return true;
    };
    let in_volume = |lsn| match current.phase {
        Phase::Active => writer::in_volume(state, &current, lsn),
        Phase::Recovering(recovery) => recovery.outcome.is_some_and(|outcome| {
            state.is_allocated(lsn) && lsn <= outcome.vdl && !contains(outcome.truncated, lsn)
        }),
    };
    state
        .segments
        .iter()
        .filter(|segment| segment.truncation_epoch == current.epoch)
        .all(|segment| {
            let mut lsn = segment.scl;
            while lsn != 0 {
                if !in_volume(lsn) {
                    return false;
                }
                lsn = state.record(lsn).prev_lsn_pg;
            }
            true
        })
}

/// S7, E2–E4, C6: no segment took a write or gossip of an epoch below its own, and a fenced
/// writer acknowledged nothing that was not durable.
fn fencing_holds(state: &State) -> bool {
    state.ghost.violations & violation::FENCED_ACK_NOT_DURABLE == 0
        && state.segments.iter().all(|segment| !segment.accepted_stale)
}

impl Model for QuorumModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let segment = Segment {
            epoch: FIRST_EPOCH,
            ..Segment::default()
        };
        vec![State {
            records: [Record::default(); RECORD_SLOTS],
            segments: vec![segment; self.segment_count()],
            writer: Some(writer::initial_writer()),
            writer_stale: None,
            network: Vec::new(),
            writer_restarts: 0,
            segment_crashes: 0,
            disk_losses: 0,
            ghost: Ghost {
                epoch_max: 1,
                ..Ghost::default()
            },
        }]
    }

    /// The depth-first search takes the last action first: faults come first in the list so
    /// that progress (allocation, delivery) is explored before crashes. The order changes
    /// which counterexample is found first, not which states are reachable.
    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.fault_actions(state, actions);
        self.segment_actions(state, actions);
        for message in &state.network {
            if self.message_is_news(state, message) {
                actions.push(Action::Deliver(*message));
            }
        }
        self.writer_actions(state, actions);
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::AllocateMtr(shape) => {
                writer::allocate_mtr(&mut state, self.config.mtr_shapes[shape as usize])
            }
            Action::Deliver(message) => self.deliver(&mut state, message),
            Action::Flush(index) => segment::flush(&mut state, index, self.fencing()),
            Action::Gossip { source, target } => {
                segment::gossip(&mut state, source, target, self.gossip_rules());
            }
            Action::Heartbeat(index) => {
                state.segments[index as usize].newer_writer_seen = true;
            }
            Action::LoseDisk(index) => {
                state.disk_losses += 1;
                let acked =
                    members(state.ghost.acked).fold(0, |set, commit| set | state.mtr_of(commit));
                state.ghost.disk_lost_acked |= state.segments[index as usize].held & acked != 0;
                segment::lose_disk(&mut state, index);
            }
            Action::CrashSegment(index) => {
                state.segment_crashes += 1;
                segment::crash(&mut state, index);
            }
            Action::CrashAz(az) => {
                state.segment_crashes += 1;
                for index in 0..self.segment_count() {
                    if super::state::az_of_segment(index as SegmentIndex) == az as usize {
                        segment::crash(&mut state, index as SegmentIndex);
                    }
                }
            }
            Action::CrashWriter => self.restart_writer(&mut state),
            Action::Failover => {
                state.writer_stale = state.writer;
                self.restart_writer(&mut state);
            }
            Action::RecoveryRead(index) => writer::recovery_read(&mut state, index, self.bug),
            Action::RecoveryDecide => writer::recovery_decide(&mut state, &self.config, self.bug),
            Action::RecoveryWrite(index) => writer::recovery_write(
                &mut state,
                &self.config,
                index,
                self.history_merge(),
                self.bug,
            ),
            Action::Read(index) => writer::read(&mut state, index),
            Action::Renew { stale, segment } => writer::renew(&mut state, stale, segment),
            Action::ExpireLease(segment) => writer::expire_lease(&mut state, segment),
            Action::RecoveryOpen => writer::recovery_open(&mut state, &self.config, self.bug),
            Action::StaleRead(pg) => {
                state.ghost.stale_writer_read = true;
                writer::stale_read(&mut state, pg as usize);
            }
        }
        if state.segment_crashes >= self.config.segment_crashes {
            // No crash left to lose a queue: a queued write is as good as one still in the
            // network, so receipt and fsync are one step (fewer interleavings, same outcomes).
            for index in 0..self.segment_count() {
                if state.segments[index].pending != 0 {
                    segment::flush(&mut state, index as SegmentIndex, self.fencing());
                }
            }
        }
        segment::settle_repairs(&mut state, self.gossip_rules());
        let opened = matches!(
            last.writer,
            Some(Writer {
                phase: Phase::Recovering(_),
                ..
            })
        ) && state
            .writer
            .is_some_and(|writer| writer.phase == Phase::Active);
        if opened && state.ghost.disk_lost_acked {
            state.ghost.recovered_after_disk_loss = true;
        }
        self.forget_dead_messages(&mut state);
        Some(state)
    }

    fn format_step(&self, last_state: &State, action: Action) -> Option<String> {
        Some(self.describe(last_state, &action))
    }

    fn format_action(&self, action: &Action) -> String {
        format!("{action:?}")
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(DURABILITY, |_, state| durability_holds(state)),
            Property::always(MTR_ATOMICITY, |_, state| atomicity_holds(state)),
            Property::always(VDL_RULES, |_, state| vdl_holds(state)),
            Property::always(FENCING, |_, state| fencing_holds(state)),
            Property::always(READ_AT_POINT, |_, state: &State| {
                state.ghost.violations & violation::READ_WRONG_VALUE == 0
            }),
            Property::always(SERVES_ONLY_VOLUME, |_, state| serves_only_volume(state)),
            Property::always(
                QUIESCENT_SEGMENTS_REACH_VCL,
                |model: &QuorumModel, state| model.segments_reach_vcl_when_quiescent(state),
            ),
            Property::sometimes(COMMIT_ACKED, |_, state: &State| state.ghost.acked != 0),
            Property::sometimes(RECOVERY_COMPLETES, |_, state: &State| {
                state.ghost.recovery_completed
            }),
            Property::sometimes(READ_AFTER_RECOVERY, |_, state: &State| {
                state.ghost.read_after_recovery
            }),
            // Guards the liveness property against vacuity: a quiescent state is reached.
            Property::sometimes(QUIESCENCE_REACHED, |model: &QuorumModel, state| {
                model.quiescent(state)
            }),
            Property::always(NO_STALE_READ, |_, state: &State| {
                state.ghost.violations & violation::STALE_READ == 0
            }),
            Property::always(REPAIR_RESTORES, |_, state: &State| {
                state.ghost.violations & violation::REPAIR_ENDED_INCOMPLETE == 0
            }),
            Property::always(QUIESCENT_REPAIR_ENDS, |model: &QuorumModel, state| {
                model.repair_ended_when_quiescent(state)
            }),
        ];
        if self.config.disk_losses > 0 {
            // Guard the repair properties against vacuity: a repair ends, and the scenario
            // of S19's reason (an acknowledged record lost with a disk, then a recovery) is
            // reached.
            properties.push(Property::sometimes(REPAIR_ENDS, |_, state: &State| {
                state.ghost.repair_ended
            }));
            properties.push(Property::sometimes(
                RECOVERY_AFTER_DISK_LOSS,
                |_, state: &State| state.ghost.recovered_after_disk_loss,
            ));
        }
        if self.config.leases {
            // Guards the stale-read property against vacuity.
            properties.push(Property::sometimes(
                STALE_WRITER_READS,
                |_, state: &State| state.ghost.stale_writer_read,
            ));
        }
        properties
    }
}
