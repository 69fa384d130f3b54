//! Symmetry reduction. Nothing in the protocol tells the six first members apart, nor the
//! spares: a state and the state with two of them renamed are the same state to the
//! checker. The representative sorts each group (A–F, G–H) by everything that mentions a
//! slot, with the slot's own name left out, and renames the slots everywhere. Ties that
//! differ only in how slots name each other (a hydrating member's peers) leave a state that
//! is still in the orbit: less reduction, never a wrong one.

use super::state::{
    Change, LSN_CAP_MAX, MEMBERS, Membership, PENDING_MAX, SLOTS_MAX, Slot, SlotSet, State, bit,
    contains,
};

/// Everything in a state that mentions one slot, its name left out.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SlotView {
    slot: Slot,
    used: bool,
    roles: [u8; 2],
    acks: [bool; LSN_CAP_MAX as usize + 1],
    peer_of: bool,
}

/// How a membership mentions `slot`: settled, or old or new of change 0 or 1.
fn role(membership: &Membership, slot: u8) -> u8 {
    let mut role = u8::from(contains(membership.base, slot));
    for (index, change) in membership.changes.iter().enumerate() {
        if let Some(change) = change {
            if change.old == slot {
                role |= 2 << (2 * index);
            }
            if change.new == slot {
                role |= 4 << (2 * index);
            }
        }
    }
    role
}

fn view(state: &State, slot: u8) -> SlotView {
    let mut own = state.slots[slot as usize];
    own.copied_from = own.copied_from.count_ones() as u8;
    let mut acks = [false; LSN_CAP_MAX as usize + 1];
    for (lsn, acked) in acks.iter_mut().enumerate() {
        *acked = contains(state.writer.acks[lsn], slot);
    }
    SlotView {
        slot: own,
        used: contains(state.used, slot),
        roles: [
            role(&state.membership, slot),
            role(&state.writer.view, slot),
        ],
        acks,
        peer_of: state
            .slots
            .iter()
            .any(|other| contains(other.copied_from, slot)),
    }
}

fn rename_set(set: SlotSet, to: &[u8; SLOTS_MAX]) -> SlotSet {
    (0..SLOTS_MAX as u8)
        .filter(|slot| contains(set, *slot))
        .fold(0, |renamed, slot| renamed | bit(to[slot as usize]))
}

fn rename_membership(membership: &Membership, to: &[u8; SLOTS_MAX]) -> Membership {
    let mut changes = [None; PENDING_MAX];
    for (index, change) in membership.changes.iter().enumerate() {
        changes[index] = change.map(|change| Change {
            old: to[change.old as usize],
            new: to[change.new as usize],
            acked_before: change.acked_before,
        });
    }
    Membership {
        base: rename_set(membership.base, to),
        changes,
        ..*membership
    }
}

/// The representative of `state`'s orbit under renaming A–F among themselves and G–H
/// among themselves.
pub fn representative(state: &State) -> State {
    let mut to = [0u8; SLOTS_MAX];
    for group in [0..MEMBERS, MEMBERS..SLOTS_MAX] {
        let mut order: Vec<(SlotView, u8)> = group
            .clone()
            .map(|slot| (view(state, slot as u8), slot as u8))
            .collect();
        order.sort();
        for (position, (_, slot)) in order.into_iter().enumerate() {
            to[slot as usize] = (group.start + position) as u8;
        }
    }
    let mut renamed = state.clone();
    for slot in 0..SLOTS_MAX {
        let mut moved = state.slots[slot];
        moved.copied_from = rename_set(moved.copied_from, &to);
        renamed.slots[to[slot] as usize] = moved;
    }
    renamed.used = rename_set(state.used, &to);
    renamed.membership = rename_membership(&state.membership, &to);
    renamed.writer.view = rename_membership(&state.writer.view, &to);
    for lsn in 0..=LSN_CAP_MAX as usize {
        renamed.writer.acks[lsn] = rename_set(state.writer.acks[lsn], &to);
    }
    renamed
}
