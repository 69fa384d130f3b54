//! The stateright `Model` of membership changes on one PG (the 2018 paper, §4; spec/protocol.md M1–M6):
//! actions, transitions and properties.

use stateright::{Model, Property};

use super::config::{Bug, Config};
use super::state::{
    Change, Ghost, HYDRATION_PEERS, Lsn, MEMBERS, Membership, READ_QUORUM, SLOTS_MAX, Slot,
    SlotSet, State, WRITE_QUORUM, Writer, bit, contains, format_lsns, format_slots, slot_name,
    violation,
};

/// One PG of six members A–F, spare nodes G and H, one writer, and a control plane that
/// begins, finalizes and aborts replacements while nodes fail.
#[derive(Clone, Debug)]
pub struct MembershipModel {
    pub config: Config,
    pub bug: Option<Bug>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The writer allocates the next LSN.
    Allocate,
    /// The writer sends `lsn` to `slot` with its view's membership epoch; the segment
    /// stores and acks it, or refuses a stale epoch (M1).
    Write { slot: u8, lsn: Lsn },
    /// Hydration (M5): the new member `target` merges a complete copy of `source`'s records.
    Copy { source: u8, target: u8 },
    /// The control plane begins replacing `old` by the spare `new` (M2).
    Begin { old: u8, new: u8 },
    /// The control plane finalizes change `index`: `new` replaces `old` (M3, M5).
    Finalize(u8),
    /// The control plane aborts change `index`, back to the membership before it (M3).
    Abort(u8),
    /// A node fails for good (fail-stop; its disk is gone).
    Fail(u8),
}

pub const NO_ACKED_WRITE_LOST: &str =
    "every acknowledged write has a live holder in every quorum set";
pub const READ_QUORUM_SEES_ACKED: &str =
    "every read quorum of the current membership holds every acknowledged write";
pub const EPOCH_MONOTONIC: &str = "membership epochs never decrease";
pub const FINALIZE_ONLY_WHOLE: &str =
    "a change is finalized only when its new member holds every write acknowledged before it";
pub const CHANGE_FINALIZED: &str = "a replacement is finalized";
pub const CHANGE_ABORTED: &str = "a replacement is aborted";
pub const ACKED_DURING_CHANGE: &str = "a write is acknowledged in the dual-quorum state";
pub const CHANGES_COMPOSE: &str = "two replacements are in flight at once";

/// The spec rules each property checks.
pub fn property_rules(name: &str) -> &'static [&'static str] {
    match name {
        NO_ACKED_WRITE_LOST => &["M2", "M3", "M5", "M6", "Q1", "Q5"],
        READ_QUORUM_SEES_ACKED => &["M1", "M2", "M3", "M4", "M5", "M6", "Q1", "Q2"],
        EPOCH_MONOTONIC => &["M1"],
        FINALIZE_ONLY_WHOLE => &["M5"],
        CHANGE_FINALIZED => &["M2", "M5"],
        CHANGE_ABORTED => &["M3"],
        ACKED_DURING_CHANGE => &["M2"],
        CHANGES_COMPOSE => &["M6"],
        _ => &[],
    }
}

impl MembershipModel {
    pub fn new(config: Config, bug: Option<Bug>) -> Self {
        MembershipModel { config, bug }
    }

    fn slot_count(&self) -> usize {
        MEMBERS + self.config.spares
    }

    /// Spares are interchangeable, so a change takes the lowest free one.
    fn free_spare(&self, state: &State) -> Option<u8> {
        (MEMBERS as u8..self.slot_count() as u8).find(|slot| !contains(state.used, *slot))
    }

    fn change_actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.change_steps >= self.config.change_steps {
            return;
        }
        let membership = &state.membership;
        if membership.pending_count() < self.config.max_pending
            && let Some(new) = self.free_spare(state)
        {
            for old in 0..MEMBERS as u8 {
                let replaceable = contains(membership.base, old)
                    && !membership.is_old_of_change(old)
                    && (self.config.replace_live || !state.slots[old as usize].live);
                if replaceable {
                    actions.push(Action::Begin { old, new });
                }
            }
        }
        for (index, change) in membership.changes.iter().enumerate() {
            let Some(change) = change else { continue };
            let new = &state.slots[change.new as usize];
            let whole = !new.hydrating || self.bug == Some(Bug::FinalizeBeforeHydrate);
            if new.live && whole {
                actions.push(Action::Finalize(index as u8));
            }
            actions.push(Action::Abort(index as u8));
        }
    }

    fn writer_actions(&self, state: &State, actions: &mut Vec<Action>) {
        let writer = &state.writer;
        if writer.allocated < self.config.lsn_cap {
            actions.push(Action::Allocate);
        }
        let members = writer.view.all_members();
        for lsn in 1..=writer.allocated {
            for slot in 0..self.slot_count() as u8 {
                if contains(members, slot)
                    && state.slots[slot as usize].live
                    && !contains(writer.acks[lsn as usize], slot)
                {
                    actions.push(Action::Write { slot, lsn });
                }
            }
        }
    }

    fn copy_actions(&self, state: &State, actions: &mut Vec<Action>) {
        for change in state.membership.pending() {
            let target = &state.slots[change.new as usize];
            if !target.live || !target.hydrating {
                continue;
            }
            for source in 0..self.slot_count() as u8 {
                let peer = &state.slots[source as usize];
                if contains(state.membership.base, source)
                    && peer.live
                    && !peer.hydrating
                    && !contains(target.copied_from, source)
                {
                    actions.push(Action::Copy {
                        source,
                        target: change.new,
                    });
                }
            }
        }
    }

    fn fault_actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.failures >= self.config.failures {
            return;
        }
        let members = state.membership.all_members();
        for slot in 0..self.slot_count() as u8 {
            if contains(members, slot) && state.slots[slot as usize].live {
                actions.push(Action::Fail(slot));
            }
        }
    }

    /// M1: a change step bumps the epoch and writes it to every live segment of the old
    /// and the new membership. M5: a hydrating member counts peers within one membership
    /// epoch, so its count starts over.
    fn apply_membership(&self, state: &mut State, membership: Membership) {
        let informed = state.membership.all_members() | membership.all_members();
        state.membership = Membership {
            epoch: state.membership.epoch + 1,
            ..membership
        };
        state.change_steps += 1;
        for slot in 0..self.slot_count() {
            let segment = &mut state.slots[slot];
            if segment.live && contains(informed, slot as u8) {
                segment.epoch = segment.epoch.max(state.membership.epoch);
            }
            if self.bug != Some(Bug::HydrationPeersAcrossEpochs) {
                segment.copied_from = 0;
            }
        }
    }

    fn begin(&self, state: &mut State, old: u8, new: u8) {
        let mut membership = state.membership;
        let free = membership.changes.iter().position(Option::is_none);
        let Some(free) = free else { return };
        membership.changes[free] = Some(Change {
            old,
            new,
            acked_before: state.writer.acked,
        });
        state.used |= bit(new);
        state.slots[new as usize] = Slot {
            live: true,
            hydrating: true,
            ..Slot::default()
        };
        if self.bug == Some(Bug::DropFBeforeFinalize) {
            state.slots[old as usize].held = 0;
        }
        if membership.pending_count() > 1 {
            state.ghost.composed = true;
        }
        self.apply_membership(state, membership);
    }

    fn finalize(&self, state: &mut State, index: usize) {
        let mut membership = state.membership;
        let Some(change) = membership.changes[index].take() else {
            return;
        };
        let new = &mut state.slots[change.new as usize];
        if new.held & change.acked_before != change.acked_before {
            state.ghost.violations |= violation::FINALIZED_UNHYDRATED;
        }
        new.hydrating = false;
        new.copied_from = 0;
        membership.base = (membership.base & !bit(change.old)) | bit(change.new);
        compact(&mut membership);
        // M3: only now, with the new quorum whole, does the old member drop its records
        // (its node deletes the segment).
        state.slots[change.old as usize] = Slot::default();
        state.ghost.finalized = true;
        self.apply_membership(state, membership);
    }

    fn abort(&self, state: &mut State, index: usize) {
        let mut membership = state.membership;
        let Some(change) = membership.changes[index].take() else {
            return;
        };
        compact(&mut membership);
        // The new member's segment is deleted; nothing needs it (M3: every write
        // acknowledged in the dual state is at 4/6 of the old set too).
        state.slots[change.new as usize] = Slot::default();
        state.ghost.aborted = true;
        self.apply_membership(state, membership);
    }

    /// M1: the segment checks the request's membership epoch; on a refusal the writer
    /// fetches the current membership.
    fn write(&self, state: &mut State, slot: u8, lsn: Lsn) {
        let view_epoch = state.writer.view.epoch;
        let segment = &mut state.slots[slot as usize];
        match self.bug {
            Some(Bug::StaleMembershipEpochAccepted) => {}
            Some(Bug::EpochFollowsRequest) => segment.epoch = view_epoch,
            _ if segment.epoch > view_epoch => {
                state.writer.view = state.membership;
                self.count_acks(state);
                return;
            }
            _ => segment.epoch = segment.epoch.max(view_epoch),
        }
        segment.held |= bit(lsn);
        state.writer.acks[lsn as usize] |= bit(slot);
        self.count_acks(state);
    }

    /// M2, M6: an LSN is acknowledged once 4/6 of every quorum set of the writer's view
    /// acked it.
    fn count_acks(&self, state: &mut State) {
        let writer = &mut state.writer;
        for lsn in 1..=writer.allocated {
            if contains(writer.acked, lsn) {
                continue;
            }
            let holders = writer.acks[lsn as usize];
            let durable = if self.bug == Some(Bug::WriteQuorumOnlyNewSet) {
                (writer.view.newest_set() & holders).count_ones() >= WRITE_QUORUM
            } else {
                writer.view.write_quorum_met(holders)
            };
            if durable {
                writer.acked |= bit(lsn);
                if writer.view.pending_count() > 0 {
                    state.ghost.acked_in_dual = true;
                }
            }
        }
    }

    /// M5: the new member merges a complete copy of a settled peer's records; after three
    /// distinct peers it is whole.
    fn copy(&self, state: &mut State, source: u8, target: u8) {
        let from = state.slots[source as usize];
        let to = &mut state.slots[target as usize];
        match self.bug {
            Some(Bug::StaleMembershipEpochAccepted) => {}
            Some(Bug::EpochFollowsRequest) => to.epoch = from.epoch,
            // M1: a copy of a stale membership epoch is refused (it counts for nothing).
            _ if from.epoch < to.epoch => return,
            _ => to.epoch = to.epoch.max(from.epoch),
        }
        to.held |= from.held;
        to.copied_from |= bit(source);
        if to.copied_from.count_ones() >= HYDRATION_PEERS {
            to.hydrating = false;
            to.copied_from = 0;
        }
    }

    fn fail(&self, state: &mut State, slot: u8) {
        state.failures += 1;
        state.slots[slot as usize] = Slot::default();
    }

    /// One line per step of a counterexample.
    pub fn describe(&self, state: &State, action: &Action) -> String {
        let view = state.writer.view.describe();
        match *action {
            Action::Allocate => format!("writer allocates LSN {}", state.writer.allocated + 1),
            Action::Write { slot, lsn } => {
                let segment = state.slots[slot as usize];
                let refused = segment.epoch > state.writer.view.epoch
                    && !matches!(
                        self.bug,
                        Some(Bug::StaleMembershipEpochAccepted | Bug::EpochFollowsRequest)
                    );
                let outcome = if refused {
                    format!(
                        "refused (segment at e{}): writer fetches {}",
                        segment.epoch,
                        state.membership.describe()
                    )
                } else {
                    format!(
                        "stored; acks for {lsn} now {}",
                        format_slots(state.writer.acks[lsn as usize] | bit(slot))
                    )
                };
                format!(
                    "writer (view {view}) writes LSN {lsn} to {}: {outcome}",
                    slot_name(slot)
                )
            }
            Action::Copy { source, target } => format!(
                "{} copies {} from {} (peers so far {})",
                slot_name(target),
                format_lsns(state.slots[source as usize].held),
                slot_name(source),
                format_slots(state.slots[target as usize].copied_from | bit(source))
            ),
            Action::Begin { old, new } => format!(
                "control plane begins replacing {} by {} (was {}; acked {})",
                slot_name(old),
                slot_name(new),
                state.membership.describe(),
                format_lsns(state.writer.acked)
            ),
            Action::Finalize(index) | Action::Abort(index) => {
                let verb = if matches!(action, Action::Finalize(_)) {
                    "finalizes"
                } else {
                    "aborts"
                };
                let change = state.membership.changes[index as usize].unwrap_or_default();
                format!(
                    "control plane {verb} {}->{} (was {}; {} holds {})",
                    slot_name(change.old),
                    slot_name(change.new),
                    state.membership.describe(),
                    slot_name(change.new),
                    format_lsns(state.slots[change.new as usize].held)
                )
            }
            Action::Fail(slot) => format!("node {} fails for good", slot_name(slot)),
        }
    }
}

/// Keeps the changes in flight first, so that one membership has one representation.
fn compact(membership: &mut Membership) {
    if membership.changes[0].is_none() {
        membership.changes.rotate_left(1);
    }
}

/// NO_ACKED_WRITE_LOST: every acknowledged LSN has a live holder in every quorum set.
pub fn acked_writes_held(state: &State) -> bool {
    let live_holders = |lsn: Lsn| -> SlotSet {
        (0..SLOTS_MAX as u8)
            .filter(|slot| {
                let segment = &state.slots[*slot as usize];
                segment.live && contains(segment.held, lsn)
            })
            .fold(0, |set, slot| set | bit(slot))
    };
    let sets = state.membership.quorum_sets();
    acked_lsns(state).all(|lsn| {
        let holders = live_holders(lsn);
        sets.iter().all(|set| set & holders != 0)
    })
}

/// READ_QUORUM_SEES_ACKED (M4): a read quorum is three live, whole members of one quorum
/// set; every such three must include a holder of every acknowledged LSN.
pub fn read_quorums_see_acked(state: &State) -> bool {
    let sets = state.membership.quorum_sets();
    acked_lsns(state).all(|lsn| {
        let blind: SlotSet = (0..SLOTS_MAX as u8)
            .filter(|slot| {
                let segment = &state.slots[*slot as usize];
                segment.live && !segment.hydrating && !contains(segment.held, lsn)
            })
            .fold(0, |set, slot| set | bit(slot));
        sets.iter()
            .all(|set| (set & blind).count_ones() < READ_QUORUM)
    })
}

fn acked_lsns(state: &State) -> impl Iterator<Item = Lsn> + '_ {
    (1..=state.writer.allocated).filter(|lsn| contains(state.writer.acked, *lsn))
}

/// M1: no live segment's epoch and not the writer's view went down in a step (a failed or
/// deleted segment starts over as a new one).
fn check_epochs(before: &State, after: &mut State) {
    let lowered = (0..SLOTS_MAX).any(|slot| {
        let (old, new) = (before.slots[slot], after.slots[slot]);
        old.live && new.live && new.epoch < old.epoch
    });
    if lowered || after.writer.view.epoch < before.writer.view.epoch {
        after.ghost.violations |= violation::EPOCH_DECREASED;
    }
}

impl Model for MembershipModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut slots = [Slot::default(); SLOTS_MAX];
        for slot in slots.iter_mut().take(MEMBERS) {
            *slot = Slot {
                live: true,
                epoch: Membership::first().epoch,
                ..Slot::default()
            };
        }
        vec![State {
            membership: Membership::first(),
            slots,
            used: Membership::first().base,
            writer: Writer {
                view: Membership::first(),
                ..Writer::default()
            },
            change_steps: 0,
            failures: 0,
            ghost: Ghost::default(),
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.writer_actions(state, actions);
        self.copy_actions(state, actions);
        self.change_actions(state, actions);
        self.fault_actions(state, actions);
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        let mut next = state.clone();
        match action {
            Action::Allocate => next.writer.allocated += 1,
            Action::Write { slot, lsn } => self.write(&mut next, slot, lsn),
            Action::Copy { source, target } => self.copy(&mut next, source, target),
            Action::Begin { old, new } => self.begin(&mut next, old, new),
            Action::Finalize(index) => self.finalize(&mut next, index as usize),
            Action::Abort(index) => self.abort(&mut next, index as usize),
            Action::Fail(slot) => self.fail(&mut next, slot),
        }
        check_epochs(state, &mut next);
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(NO_ACKED_WRITE_LOST, |_, state| acked_writes_held(state)),
            Property::always(READ_QUORUM_SEES_ACKED, |_, state| {
                read_quorums_see_acked(state)
            }),
            Property::always(EPOCH_MONOTONIC, |_, state: &State| {
                state.ghost.violations & violation::EPOCH_DECREASED == 0
            }),
            Property::always(FINALIZE_ONLY_WHOLE, |_, state: &State| {
                state.ghost.violations & violation::FINALIZED_UNHYDRATED == 0
            }),
            Property::sometimes(CHANGE_FINALIZED, |_, state: &State| state.ghost.finalized),
            Property::sometimes(CHANGE_ABORTED, |_, state: &State| state.ghost.aborted),
            Property::sometimes(ACKED_DURING_CHANGE, |_, state: &State| {
                state.ghost.acked_in_dual
            }),
        ];
        if self.config.max_pending > 1 {
            properties.push(Property::sometimes(CHANGES_COMPOSE, |_, state: &State| {
                state.ghost.composed
            }));
        }
        properties
    }
}
