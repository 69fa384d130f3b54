//! Storage-node behaviour of one segment: writes, fsync, gossip, truncation, crash, reads.

use super::state::{
    Epoch, Lsn, LsnSet, Message, RECORD_SLOTS, Record, Segment, SegmentIndex, State, bit, contains,
    members,
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
    if epoch < segment.epoch {
        if fencing {
            // S7: rejected; E3: the writer learns it is fenced.
            let rejected = Message::Rejected { epoch };
            let changed = !state.in_network(&rejected);
            state.send(rejected);
            return changed;
        }
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

/// S6: `target` tells `source` its SCL and holes; `source` answers with the records it holds
/// that `target` lacks. The answer carries `source`'s epoch (E2) and is merged like a write
/// (S3, S8). Returns whether `target` changed.
pub fn gossip(
    state: &mut State,
    source: SegmentIndex,
    target: SegmentIndex,
    epoch_checked: bool,
) -> bool {
    let records = state.records;
    let from = state.segments[source as usize];
    let to = &mut state.segments[target as usize];
    let before = *to;
    let offered = from.held & !to.held & !to.truncated;
    if from.epoch < to.epoch {
        if epoch_checked || offered == 0 {
            // S7: gossip of a lower epoch is rejected.
            return false;
        }
        // Mutant gossip-ignores-epoch.
        to.accepted_stale = true;
    }
    to.epoch = to.epoch.max(from.epoch);
    to.held |= offered;
    to.pending &= !offered;
    to.scl = scl_advance(&records, to.held, to.scl);
    *to != before
}

/// A crash loses what is volatile and keeps the durable log (S12).
pub fn crash(state: &mut State, index: SegmentIndex) {
    let records = state.records;
    let segment = &mut state.segments[index as usize];
    segment.pending = 0;
    segment.pending_hint = 0;
    segment.scl = scl_rebuild(&records, segment.held);
}

/// S7, S8, X5, E1: recovery's write makes the new epoch, the truncation set and the repaired
/// records durable at the segment.
pub fn apply_recovery_write(
    records: &[Record; RECORD_SLOTS],
    segment: &mut Segment,
    epoch: Epoch,
    truncated: LsnSet,
    repair: LsnSet,
) {
    debug_assert!(
        segment.epoch <= epoch,
        "E1: recovery's epoch is the highest"
    );
    segment.epoch = epoch;
    segment.truncation_epoch = epoch;
    segment.truncated = truncated;
    segment.held = (segment.held & !truncated) | repair;
    segment.pending &= !truncated;
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
