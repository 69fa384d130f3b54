//! Storage-node behaviour of one segment: writes, fsync, gossip, truncation, crash, reads.

use super::state::{
    Epoch, FIRST_EPOCH, Lsn, LsnSet, Message, RECORD_SLOTS, Record, SEGMENTS_PER_PG, Segment,
    SegmentIndex, State, WRITE_QUORUM, bit, contains, members, violation,
};

/// S4: extend the SCL along `prev_lsn_pg` while a held record links to it. When two held
/// records link to the same LSN (a stale record and a new-epoch one) the lower LSN wins, as a
/// real segment would take whichever it completed first.
pub fn scl_advance(records: &[Record; RECORD_SLOTS], held: LsnSet, mut scl: Lsn) -> Lsn {
    loop {
        let next =
            members(held).find(|lsn| *lsn > scl && records[*lsn as usize].prev_lsn_pg == scl);
        match next {
            Some(lsn) => scl = lsn,
            None => return scl,
        }
    }
}

/// S12: after a restart or a truncation the SCL is rebuilt from the records on disk.
pub fn scl_rebuild(records: &[Record; RECORD_SLOTS], held: LsnSet) -> Lsn {
    scl_advance(records, held, 0)
}

/// S15: a writer of `epoch` above the first was opened by its recovery, whose range the
/// segment holds only once its history is of that epoch or newer. Until then the segment
/// refuses that writer's writes and reads: it may still hold records that a completed
/// recovery voided, and would chain the writer's records onto them.
pub fn lacks_writer_history(segment: &Segment, epoch: Epoch) -> bool {
    epoch > FIRST_EPOCH && segment.truncation_epoch < epoch
}

/// S15: the LSNs whose writers' histories a segment with a history of `truncation_epoch`
/// holds (gossip never brings a record the segment would refuse as a write).
fn history_admits(records: &[Record; RECORD_SLOTS], truncation_epoch: Epoch) -> LsnSet {
    (1..RECORD_SLOTS)
        .filter(|lsn| records[*lsn].epoch <= truncation_epoch.max(FIRST_EPOCH))
        .fold(0, |set, lsn| set | bit(lsn as Lsn))
}

/// Deliver `Write { lsn }` (epoch = the record's epoch) to a segment. Returns whether the
/// state changed.
pub fn deliver_write(
    state: &mut State,
    index: SegmentIndex,
    lsn: Lsn,
    vdl_hint: Lsn,
    fencing: bool,
) -> bool {
    let epoch = state.record(lsn).epoch;
    let before = state.segments[index as usize];
    let segment = &mut state.segments[index as usize];
    if epoch < segment.epoch && fencing {
        // S7: rejected; E3: the writer learns it is fenced.
        let rejected = Message::Rejected { epoch };
        let changed = !state.in_network(&rejected);
        state.send(rejected);
        return changed;
    }
    if lacks_writer_history(segment, epoch) {
        // S15: refused (not as stale) until gossip brings the writer's history.
        return false;
    }
    if epoch < segment.epoch {
        // Mutant no-fencing: the stale write is taken.
        segment.accepted_stale = true;
    }
    // S7: the higher epoch is persisted before anything is acknowledged.
    segment.epoch = segment.epoch.max(epoch);
    let duplicate = contains(segment.held | segment.pending, lsn);
    if !duplicate && !contains(segment.truncated, lsn) {
        // S8 refuses truncated LSNs; S3 ignores duplicates.
        segment.pending |= bit(lsn);
        segment.pending_hint = segment.pending_hint.max(vdl_hint);
    }
    *segment != before
}

/// S1, S2: one fsync makes every pending record durable, then the segment acks (W6).
/// The epoch and truncation are checked again: a recovery may have fenced the segment
/// between the receipt and the fsync (E4).
pub fn flush(state: &mut State, index: SegmentIndex, fencing: bool) {
    let records = state.records;
    let segment = &mut state.segments[index as usize];
    let mut stored: LsnSet = 0;
    let mut rejected_epochs: Vec<Epoch> = Vec::new();
    for lsn in members(segment.pending) {
        let epoch = records[lsn as usize].epoch;
        if contains(segment.truncated, lsn) {
            continue;
        }
        if epoch < segment.epoch {
            if fencing {
                rejected_epochs.push(epoch);
                continue;
            }
            segment.accepted_stale = true;
        }
        stored |= bit(lsn);
    }
    segment.held |= stored;
    segment.hint = segment.hint.max(segment.pending_hint);
    segment.pending = 0;
    segment.pending_hint = 0;
    segment.scl = scl_advance(&records, segment.held, segment.scl);
    let ack = Message::Ack {
        segment: index,
        scl: segment.scl,
        epoch: segment.epoch,
    };
    if stored != 0 {
        // An older ack of this segment and epoch says less than this one (the writer keeps
        // the highest SCL, W6): it is dropped, which the network may do anyway.
        state.network.retain(|message| {
            !matches!(*message, Message::Ack { segment, epoch, .. }
                if segment == index && epoch == ack_epoch(&ack))
        });
        state.send(ack);
    }
    for epoch in rejected_epochs {
        state.send(Message::Rejected { epoch });
    }
}

/// How segments take truncation histories (S15, X5, X9). Only mutants use anything but
/// `Whole`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryMerge {
    /// S15: a history of a higher epoch replaces the segment's whole, from a recovery write
    /// or a peer's gossip.
    Whole,
    /// Mutant truncation-union: the ranges are merged one by one (a union of sets), so a range
    /// of a recovery that never completed stays in force after a later recovery kept records
    /// it covers.
    Union,
    /// Mutant recovery-sends-own-range: a recovery write adds only the recovery's own range
    /// to what the segment held, and gossip carries no history.
    OwnRangeOnly,
}

/// S8, S15: the segment takes a truncation history of `epoch`: the ranges in force void what
/// they cover (held and queued), and the SCL is rebuilt from what remains (S4, S12).
fn take_history(
    records: &[Record; RECORD_SLOTS],
    segment: &mut Segment,
    epoch: Epoch,
    truncated: LsnSet,
) {
    segment.truncation_epoch = epoch;
    segment.truncated = truncated;
    segment.held &= !truncated;
    segment.pending &= !truncated;
    segment.scl = scl_rebuild(records, segment.held);
}

/// S6, S15: `to` as it is after gossiping with `from`. `to` tells `from` its SCL and holes;
/// `from` answers with its truncation history and the records it holds that `to` lacks. The
/// answer carries `from`'s epoch (E2) and is refused whole when that epoch is below `to`'s
/// (S7). A history of a higher epoch than `to`'s is taken first (S15), so records it voids
/// are neither kept nor offered, and records only an older history voided may be taken
/// again; the records are then merged like a write (S3, S8).
pub fn gossip_answer(
    records: &[Record; RECORD_SLOTS],
    from: &Segment,
    to: &Segment,
    epoch_checked: bool,
    merge: HistoryMerge,
) -> Segment {
    let newer_history =
        merge != HistoryMerge::OwnRangeOnly && from.truncation_epoch > to.truncation_epoch;
    let mut after = *to;
    if newer_history {
        let truncated = match merge {
            HistoryMerge::Union => to.truncated | from.truncated,
            _ => from.truncated,
        };
        take_history(records, &mut after, from.truncation_epoch, truncated);
    }
    let offered = from.held
        & !after.held
        & !after.truncated
        & history_admits(records, after.truncation_epoch);
    if !newer_history && offered == 0 {
        return *to;
    }
    if from.epoch < to.epoch {
        if epoch_checked {
            // S7: gossip of a lower epoch is rejected.
            return *to;
        }
        // Mutant gossip-ignores-epoch.
        after.accepted_stale = true;
    }
    after.epoch = after.epoch.max(from.epoch);
    after.held |= offered;
    after.pending &= !offered;
    after.scl = scl_advance(records, after.held, after.scl);
    after
}

/// How a segment takes a peer's gossip answer and ends a repair: the rules the mutants
/// break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipRules {
    /// S7: an answer of a lower epoch is refused (mutant gossip-ignores-epoch: merged).
    pub epoch_checked: bool,
    pub merge: HistoryMerge,
    /// S21: distinct non-repairing peers whose answers end a repair (3; mutant
    /// repair-clears-early: 2).
    pub repair_peers_needed: u32,
    /// S21: a repair ends only once a writer above the epoch of the loss has opened (mutant
    /// repair-ends-in-loss-epoch: the gossip answers suffice).
    pub repair_waits_for_newer_writer: bool,
}

/// Q1: a write quorum of four, minus the segment itself, leaves at least three of its five
/// peers holding each record it acknowledged; any three distinct peers include one (S21).
pub const REPAIR_PEERS: u32 = 3;

/// S6, S15, S21: `to` as it is after gossiping with `from` (replica `from_replica` of the
/// PG): the answer merged (`gossip_answer`), then, if `to` is repairing, counted toward the
/// end of its repair. The model's answers are always complete (a peer ships every record it
/// holds that `to` lacks, S5, S6). An answer counts when it was merged (not refused for its
/// epoch, S7), its peer is not repairing, and it left `to`'s SCL at or above the peer's.
/// The repair itself ends in `settle_repair`.
pub fn gossip_repairing(
    records: &[Record; RECORD_SLOTS],
    from: &Segment,
    from_replica: usize,
    to: &Segment,
    rules: GossipRules,
) -> Segment {
    let mut after = gossip_answer(records, from, to, rules.epoch_checked, rules.merge);
    let refused = rules.epoch_checked && from.epoch < to.epoch;
    if to.repairing && !from.repairing && !refused && after.scl >= from.scl {
        after.repair_peers |= 1 << from_replica;
    }
    after
}

/// S21: `segment` with its repair ended if it may end, and whether it then lacks a record
/// it held at a write quorum when it lost its disk (not void since; a ghost check). A
/// repair ends once enough distinct peers' answers counted (`gossip_repairing`) and the
/// segment has learned that a writer above the epoch of the loss opened: that writer's
/// recovery completed without the segment (X11), so no writer counts the acks it gave
/// before the loss any more (W6 ignores acks of a lower epoch; a fenced writer cannot
/// reach a quorum without the recovery's read quorum). The end of repair is durable
/// before the node reports the segment.
pub fn settle_repair(
    records: &[Record; RECORD_SLOTS],
    segment: &Segment,
    rules: GossipRules,
) -> (Segment, bool) {
    let mut after = *segment;
    if !after.repairing {
        return (after, false);
    }
    let newer_record =
        members(after.held).any(|lsn| records[lsn as usize].epoch > after.lost_epoch);
    after.newer_writer_seen |= newer_record;
    let peers_answered = after.repair_peers.count_ones() >= rules.repair_peers_needed;
    let writer_moved_on = after.newer_writer_seen || !rules.repair_waits_for_newer_writer;
    if !(peers_answered && writer_moved_on) {
        return (after, false);
    }
    after.repairing = false;
    after.repair_peers = 0;
    after.newer_writer_seen = false;
    after.lost_epoch = 0;
    let missing = after.lost_at_quorum & !after.held & !after.truncated != 0;
    after.lost_at_quorum = 0;
    (after, missing)
}

/// S21: settles every segment's repair after a step (see `settle_repair`).
pub fn settle_repairs(state: &mut State, rules: GossipRules) {
    for index in 0..state.segments.len() {
        let before = state.segments[index];
        let (after, missing) = settle_repair(&state.records, &before, rules);
        state.segments[index] = after;
        if missing {
            state.ghost.violations |= violation::REPAIR_ENDED_INCOMPLETE;
        }
        state.ghost.repair_ended |= before.repairing && !after.repairing;
    }
}

/// S6, S15, S21: `target` gossips with `source` (see `gossip_repairing`).
pub fn gossip(state: &mut State, source: SegmentIndex, target: SegmentIndex, rules: GossipRules) {
    let from = state.segments[source as usize];
    let to = state.segments[target as usize];
    let replica = source as usize % SEGMENTS_PER_PG;
    state.segments[target as usize] = gossip_repairing(&state.records, &from, replica, &to, rules);
}

/// S17, S19: the segment loses its disk: every record, its VDL hint and its queue are gone.
/// It is hosted again empty, with its node's epoch and truncation history (V2), and is
/// repairing: it may have lost records it acknowledged. Its lease promise is the node's
/// and stays (R7). The records it held that were at a write quorum are kept as ghost
/// state, to check the end of its repair (S21).
pub fn lose_disk(state: &mut State, index: SegmentIndex) {
    let lost_at_quorum = members(state.segments[index as usize].held)
        .filter(|lsn| state.holders(*lsn) >= WRITE_QUORUM)
        .fold(0, |set, lsn| set | bit(lsn));
    let segment = &mut state.segments[index as usize];
    *segment = Segment {
        epoch: segment.epoch,
        truncation_epoch: segment.truncation_epoch,
        truncated: segment.truncated,
        promise: segment.promise,
        accepted_stale: segment.accepted_stale,
        repairing: true,
        lost_epoch: segment.epoch,
        lost_at_quorum: segment.lost_at_quorum | lost_at_quorum,
        ..Segment::default()
    };
}

/// A crash loses what is volatile and keeps the durable log (S12).
pub fn crash(state: &mut State, index: SegmentIndex) {
    let records = state.records;
    let segment = &mut state.segments[index as usize];
    segment.pending = 0;
    segment.pending_hint = 0;
    // S21: the count of peers toward the end of a repair is volatile.
    segment.repair_peers = 0;
    segment.scl = scl_rebuild(&records, segment.held);
}

/// S7, S8, S15, X5, E1: recovery's write makes the new epoch, the truncation history the
/// recovery leaves in force (`truncated`, X9) and the repaired records durable at the
/// segment. The history replaces the segment's whole (S15); `own_range` is the recovery's own
/// range, all that the recovery-sends-own-range mutant sends.
pub fn apply_recovery_write(
    records: &[Record; RECORD_SLOTS],
    segment: &mut Segment,
    epoch: Epoch,
    truncated: LsnSet,
    own_range: LsnSet,
    repair: LsnSet,
    merge: HistoryMerge,
) {
    debug_assert!(
        segment.epoch <= epoch,
        "E1: recovery's epoch is the highest"
    );
    let history = match merge {
        HistoryMerge::Whole => truncated,
        HistoryMerge::Union => segment.truncated | truncated,
        HistoryMerge::OwnRangeOnly => segment.truncated | own_range,
    };
    segment.epoch = epoch;
    take_history(records, segment, epoch, history);
    // S8: a repaired record the segment's own history voids is refused (only under a mutant
    // does the segment's history differ from the recovery's).
    segment.held |= repair & !history;
    segment.scl = scl_rebuild(records, segment.held);
}

/// R3: the page of the segment's PG as of `lsn_read_point`: the newest record ≤ the read
/// point on the segment's complete chain (followed back from its SCL along backlinks).
pub fn read_page(state: &State, index: SegmentIndex, lsn_read_point: Lsn) -> Lsn {
    let mut lsn = state.segments[index as usize].scl;
    while lsn > lsn_read_point {
        lsn = state.record(lsn).prev_lsn_pg;
    }
    lsn
}

fn ack_epoch(ack: &Message) -> Epoch {
    match *ack {
        Message::Ack { epoch, .. } => epoch,
        _ => 0,
    }
}
