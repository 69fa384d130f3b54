//! The state of the membership model: one PG's slots, its membership, the writer's view of
//! it, and the ghost record of what was acknowledged.
//!
//! Slots 0–5 are the PG's first six members (A–F); slots 6 and up are spare storage nodes
//! (G, H) a membership change may bring in. Sets of slots and of LSNs are `u8` bit masks.

/// A model LSN (L1); 0 means "nothing".
pub type Lsn = u8;
/// A set of LSNs (bit `l` is LSN `l`).
pub type LsnSet = u8;
/// A set of slots (bit `s` is slot `s`).
pub type SlotSet = u8;
/// A membership epoch (M1). The first membership has epoch 1; 0 means "none known".
pub type MembershipEpoch = u8;

/// Q1: six segments per PG.
pub const MEMBERS: usize = 6;
/// Q1: a write is durable at four of six.
pub const WRITE_QUORUM: u32 = 4;
/// Q1: a read quorum is three of six.
pub const READ_QUORUM: u32 = 3;
/// At most two spare nodes.
pub const SPARES_MAX: usize = 2;
pub const SLOTS_MAX: usize = MEMBERS + SPARES_MAX;
/// At most two changes in flight (the 2018 paper, §4.1, has two in its example).
pub const PENDING_MAX: usize = 2;
/// The highest LSN an `LsnSet` holds.
pub const LSN_CAP_MAX: Lsn = 7;
/// M5: a new member is whole after complete copies from this many distinct peers.
pub const HYDRATION_PEERS: u32 = 3;
/// The first membership's epoch.
pub const FIRST_MEMBERSHIP_EPOCH: MembershipEpoch = 1;

pub const fn bit(index: u8) -> u8 {
    1 << index
}

pub fn contains(set: u8, index: u8) -> bool {
    set & bit(index) != 0
}

pub fn slot_name(slot: u8) -> char {
    (b'A' + slot) as char
}

pub fn format_slots(set: SlotSet) -> String {
    (0..SLOTS_MAX as u8)
        .filter(|slot| contains(set, *slot))
        .map(slot_name)
        .collect()
}

pub fn format_lsns(set: LsnSet) -> String {
    let lsns: Vec<String> = (1..=LSN_CAP_MAX)
        .filter(|lsn| contains(set, *lsn))
        .map(|lsn| lsn.to_string())
        .collect();
    format!("{{{}}}", lsns.join(","))
}

/// One replacement in flight (M2): `old` is being replaced by `new`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Change {
    pub old: u8,
    pub new: u8,
    /// Ghost: the LSNs acknowledged when the change began: what `new` must hold to be whole.
    pub acked_before: LsnSet,
}

/// A PG's membership (M1, M2): the settled six, plus the replacements in flight. Its
/// quorum sets are every way of choosing, for each change, its old or its new member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Membership {
    pub epoch: MembershipEpoch,
    /// The six settled members.
    pub base: SlotSet,
    pub changes: [Option<Change>; PENDING_MAX],
}

impl Membership {
    pub fn first() -> Self {
        Membership {
            epoch: FIRST_MEMBERSHIP_EPOCH,
            base: (1 << MEMBERS) - 1,
            changes: [None; PENDING_MAX],
        }
    }

    pub fn pending(&self) -> impl Iterator<Item = Change> + '_ {
        self.changes.iter().flatten().copied()
    }

    pub fn pending_count(&self) -> usize {
        self.pending().count()
    }

    /// M2: every quorum set: for each change, the old member or the new one.
    pub fn quorum_sets(&self) -> Vec<SlotSet> {
        let mut sets = vec![self.base];
        for change in self.pending() {
            let with_new: Vec<SlotSet> = sets
                .iter()
                .map(|set| (set & !bit(change.old)) | bit(change.new))
                .collect();
            sets.extend(with_new);
        }
        sets
    }

    /// The quorum set with every change's new member (what mutant
    /// `write-quorum-only-new-set` counts alone).
    pub fn newest_set(&self) -> SlotSet {
        self.pending().fold(self.base, |set, change| {
            (set & !bit(change.old)) | bit(change.new)
        })
    }

    /// Every slot of any quorum set: where writes go.
    pub fn all_members(&self) -> SlotSet {
        self.quorum_sets().into_iter().fold(0, |all, set| all | set)
    }

    /// M2: a write is durable when `holders` hold four of six of every quorum set.
    pub fn write_quorum_met(&self, holders: SlotSet) -> bool {
        self.quorum_sets()
            .into_iter()
            .all(|set| (set & holders).count_ones() >= WRITE_QUORUM)
    }

    pub fn change_of_new(&self, slot: u8) -> Option<usize> {
        self.changes
            .iter()
            .position(|change| change.is_some_and(|change| change.new == slot))
    }

    pub fn is_old_of_change(&self, slot: u8) -> bool {
        self.pending().any(|change| change.old == slot)
    }

    pub fn describe(&self) -> String {
        let mut text = format!("e{} {}", self.epoch, format_slots(self.base));
        for change in self.pending() {
            text.push_str(&format!(
                " {}->{}",
                slot_name(change.old),
                slot_name(change.new)
            ));
        }
        text
    }
}

/// One storage node's segment of the PG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Fail-stop: a failed node never answers again and its disk is gone.
    pub live: bool,
    /// Durable: the records it holds.
    pub held: LsnSet,
    /// Durable: the highest membership epoch it has seen (M1).
    pub epoch: MembershipEpoch,
    /// A new member stays hydrating until whole (M5); it counts toward write quorums but
    /// never toward a read quorum (M4).
    pub hydrating: bool,
    /// A hydrating member's peers whose complete copy it has merged (M5).
    pub copied_from: SlotSet,
}

/// The one writer: its view of the membership and the acks it counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Writer {
    /// The membership it counts quorums by; refreshed when a segment refuses it (M1).
    pub view: Membership,
    /// LSNs allocated so far: 1..=allocated.
    pub allocated: Lsn,
    /// Per LSN (index `l`), the slots that acknowledged it.
    pub acks: [SlotSet; LSN_CAP_MAX as usize + 1],
    /// LSNs acknowledged to the client (ghost too: never undone).
    pub acked: LsnSet,
}

/// Bits of `Ghost::violations`: a step broke a rule only visible in the step.
pub mod violation {
    /// A membership epoch decreased at a segment or the writer (M1).
    pub const EPOCH_DECREASED: u8 = 1;
    /// A change was finalized while its new member lacked an LSN acknowledged before the
    /// change began (M5).
    pub const FINALIZED_UNHYDRATED: u8 = 2;
}

/// What the system cannot see, kept to state properties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ghost {
    pub violations: u8,
    pub finalized: bool,
    pub aborted: bool,
    /// Two changes were in flight at once.
    pub composed: bool,
    /// A write was acknowledged while a change was in flight in the writer's view.
    pub acked_in_dual: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The membership as the control plane last wrote it (M1).
    pub membership: Membership,
    pub slots: [Slot; SLOTS_MAX],
    /// Slots that were ever a member (spares not yet used are free).
    pub used: SlotSet,
    pub writer: Writer,
    pub change_steps: u8,
    pub failures: u8,
    pub ghost: Ghost,
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u8 = 0;
    const E: u8 = 4;
    const F: u8 = 5;
    const G: u8 = 6;
    const H: u8 = 7;

    fn replacing(changes: &[(u8, u8)]) -> Membership {
        let mut membership = Membership::first();
        for (index, (old, new)) in changes.iter().enumerate() {
            membership.changes[index] = Some(Change {
                old: *old,
                new: *new,
                acked_before: 0,
            });
        }
        membership
    }

    // M2: F by G: the sets are ABCDEF and ABCDEG; a write needs 4/6 of both.
    #[test]
    fn dual_quorum_needs_four_of_each_set() {
        let membership = replacing(&[(F, G)]);
        let sets = membership.quorum_sets();
        assert_eq!(sets.len(), 2);
        assert!(sets.contains(&0b0011_1111) && sets.contains(&0b0101_1111));
        let abcg = bit(A) | bit(1) | bit(2) | bit(G);
        assert!(!membership.write_quorum_met(abcg), "3/6 of ABCDEF");
        assert_eq!((membership.newest_set() & abcg).count_ones(), WRITE_QUORUM);
        let abcd = 0b0000_1111;
        assert!(membership.write_quorum_met(abcd));
        assert_eq!(membership.all_members(), 0b0111_1111);
    }

    // M6: F by G while E by H: four sets, every one needs 4/6.
    #[test]
    fn composed_changes_make_four_quorum_sets() {
        let membership = replacing(&[(F, G), (E, H)]);
        let sets = membership.quorum_sets();
        assert_eq!(sets.len(), 4);
        for set in [0b0011_1111, 0b0101_1111, 0b1010_1111, 0b1100_1111] {
            assert!(sets.contains(&set), "{}", format_slots(set));
        }
        let abc_e_g = 0b0101_0111;
        assert!(!membership.write_quorum_met(abc_e_g), "3/6 of ABCDHF");
        assert!(membership.write_quorum_met(0b0000_1111 | bit(G) | bit(H)));
        assert_eq!(membership.describe(), "e1 ABCDEF F->G E->H");
    }
}
