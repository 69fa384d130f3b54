//! Symmetry reduction. The two segments of one PG in one AZ are interchangeable: nothing in
//! the protocol tells them apart, so a state and the state with the two swapped are the same
//! state to the checker. When the model has no AZ crash, nothing reads the AZ at all and all
//! six segments of a PG are interchangeable. The representative sorts each group of
//! interchangeable segments by everything that mentions them and renames them everywhere.
//! A repairing segment names the peers that answered it (S21): its view holds how many, and
//! each peer's view holds whether a repairing segment counted it, so the order stays free
//! of names; the names are then renamed like the rest.

use super::state::{Lsn, Message, Phase, SEGMENTS_PER_PG, Segment, SegmentIndex, State, Writer};

/// Everything in a state that mentions one segment, with the segment's name left out.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SegmentView {
    segment: Segment,
    counted_by_repairing: bool,
    scl_known: (Lsn, Lsn),
    recovery_bits: (bool, bool),
    messages: Vec<Message>,
}

fn scl_known(writer: &Option<Writer>, index: usize) -> Lsn {
    writer
        .map(|writer| writer.scl_by_segment[index])
        .unwrap_or(0)
}

fn recovery_bits(writer: &Option<Writer>, index: usize) -> (bool, bool) {
    match writer {
        Some(Writer {
            phase: Phase::Recovering(recovery),
            ..
        }) => (
            recovery.reported & (1 << index) != 0,
            recovery.written & (1 << index) != 0,
        ),
        _ => (false, false),
    }
}

fn anonymous(message: &Message) -> Message {
    match *message {
        Message::Write { lsn, vdl_hint, .. } => Message::Write {
            segment: 0,
            lsn,
            vdl_hint,
        },
        Message::Ack { scl, epoch, .. } => Message::Ack {
            segment: 0,
            scl,
            epoch,
        },
        other => other,
    }
}

fn mentions(message: &Message, index: usize) -> bool {
    match *message {
        Message::Write { segment, .. } | Message::Ack { segment, .. } => segment as usize == index,
        Message::Rejected { .. } => false,
    }
}

/// Whether a repairing segment of `index`'s PG counted `index`'s answer (S21).
fn counted_by_repairing(state: &State, index: usize) -> bool {
    let pg = index / SEGMENTS_PER_PG;
    let replica = index % SEGMENTS_PER_PG;
    state.segments[pg * SEGMENTS_PER_PG..(pg + 1) * SEGMENTS_PER_PG]
        .iter()
        .any(|segment| segment.repair_peers & (1 << replica) != 0)
}

fn view(state: &State, index: usize) -> SegmentView {
    let mut segment = state.segments[index];
    // The count of peers, not their names (they are in the peers' views).
    segment.repair_peers = segment.repair_peers.count_ones() as u8;
    SegmentView {
        segment,
        counted_by_repairing: counted_by_repairing(state, index),
        scl_known: (
            scl_known(&state.writer, index),
            scl_known(&state.writer_stale, index),
        ),
        recovery_bits: recovery_bits(&state.writer, index),
        messages: state
            .network
            .iter()
            .filter(|message| mentions(message, index))
            .map(anonymous)
            .collect(),
    }
}

fn rename(message: &Message, permutation: &[SegmentIndex]) -> Message {
    match *message {
        Message::Write {
            segment,
            lsn,
            vdl_hint,
        } => Message::Write {
            segment: permutation[segment as usize],
            lsn,
            vdl_hint,
        },
        Message::Ack {
            segment,
            scl,
            epoch,
        } => Message::Ack {
            segment: permutation[segment as usize],
            scl,
            epoch,
        },
        other => other,
    }
}

/// Representative when AZs matter (a model with AZ crashes): the two segments of one PG in
/// one AZ are interchangeable.
pub fn representative_az_pairs(state: &State) -> State {
    representative(state, 2)
}

/// Representative when nothing reads the AZ (no AZ crashes): all six segments of a PG are
/// interchangeable.
pub fn representative_pg(state: &State) -> State {
    representative(state, SEGMENTS_PER_PG)
}

/// Sorts the segments of each group of `group_size` consecutive segments by everything that
/// mentions them, and renames them everywhere.
fn representative(state: &State, group_size: usize) -> State {
    let count = state.segments.len();
    let views: Vec<SegmentView> = (0..count).map(|index| view(state, index)).collect();
    // order[new position] = old index
    let mut order: Vec<usize> = (0..count).collect();
    for group in order.chunks_mut(group_size) {
        group.sort_by(|a, b| views[*a].cmp(&views[*b]));
    }
    if order
        .iter()
        .enumerate()
        .all(|(position, index)| position == *index)
    {
        return state.clone();
    }
    // rename[old index] = new position
    let mut rename_to = vec![0 as SegmentIndex; count];
    for (position, index) in order.iter().enumerate() {
        rename_to[*index] = position as SegmentIndex;
    }
    let mut result = state.clone();
    for (position, index) in order.iter().enumerate() {
        result.segments[position] = state.segments[*index];
        let pg = position / SEGMENTS_PER_PG;
        let pg_order: Vec<usize> = order[pg * SEGMENTS_PER_PG..(pg + 1) * SEGMENTS_PER_PG]
            .iter()
            .map(|index| index - pg * SEGMENTS_PER_PG)
            .collect();
        let peers = state.segments[*index].repair_peers;
        result.segments[position].repair_peers = permute_mask(peers.into(), &pg_order) as u8;
    }
    permute_writer(&mut result.writer, &state.writer, &order);
    permute_writer(&mut result.writer_stale, &state.writer_stale, &order);
    result.network = state
        .network
        .iter()
        .map(|message| rename(message, &rename_to))
        .collect();
    result.network.sort_unstable();
    result
}

fn permute_mask(mask: u16, order: &[usize]) -> u16 {
    order
        .iter()
        .enumerate()
        .filter(|(_, index)| mask & (1 << **index) != 0)
        .fold(0, |result, (position, _)| result | (1 << position))
}

fn permute_writer(target: &mut Option<Writer>, source: &Option<Writer>, order: &[usize]) {
    let (Some(target), Some(source)) = (target.as_mut(), source.as_ref()) else {
        return;
    };
    for (position, index) in order.iter().enumerate() {
        target.scl_by_segment[position] = source.scl_by_segment[*index];
    }
    target.leased = permute_mask(source.leased, order);
    if let (Phase::Recovering(target), Phase::Recovering(source)) =
        (&mut target.phase, &source.phase)
    {
        target.reported = permute_mask(source.reported, order);
        target.written = permute_mask(source.written, order);
    }
}
