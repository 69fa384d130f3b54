//! Storage-node behaviour of one segment: writes, fsync, gossip, truncation, crash, reads.

use super::state::{
    Epoch, FIRST_EPOCH, Lsn, LsnSet, Message, RECORD_SLOTS, Record, Segment, SegmentIndex, State,
    bit, contains, members,
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

/// S6, S15: `target` gossips with `source` (see `gossip_answer`). Returns whether `target`
/// changed.
pub fn gossip(
    state: &mut State,
    source: SegmentIndex,
    target: SegmentIndex,
    epoch_checked: bool,
    merge: HistoryMerge,
) -> bool {
    let from = state.segments[source as usize];
    let to = state.segments[target as usize];
    let after = gossip_answer(&state.records, &from, &to, epoch_checked, merge);
    state.segments[target as usize] = after;
    after != to
}

/// A crash loses what is volatile and keeps the durable log (S12).
pub fn crash(state: &mut State, index: SegmentIndex) {
    let records = state.records;
    let segment = &mut state.segments[index as usize];
    segment.pending = 0;
    segment.pending_hint = 0;
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
