//! Repairing segments (S19–S21, X11): what a storage node remembers so that a segment that
//! may have lost records it acknowledged never answers a recovery as an empty one.
//!
//! A segment that lost its disk looks exactly like one that never received anything. An
//! empty answer counted toward a read quorum lets recovery truncate a record that three
//! other segments hold while the remaining two lag. So the node keeps, durably:
//!
//! - every segment it has hosted, so a directory that disappears is noticed;
//! - whether the node is *late*: its folder started empty after the volume began (the
//!   first epoch it learned did not come from the volume's first recovery);
//! - the segments that are repairing, and for each the peers it has caught up with.
//!
//! Plain state, no IO: the node's store persists [`NodeRepair`] in its metadata and asks it
//! what to report.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Epoch, Lsn, SegmentId};

/// S21: distinct peer segments a repairing segment must catch up with: any three of its
/// five peers include one that holds each record a write quorum acknowledged before the
/// loss (four holders, minus the segment itself, leave three of five).
pub const REPAIR_PEERS: usize = 3;

/// How a node's folder began (S19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Birth {
    /// The folder is new and has learned no epoch yet.
    Unknown,
    /// The first epoch came from the volume's first recovery: the node was there from the
    /// start, so a segment it never hosted never acknowledged anything.
    WithVolume,
    /// The folder started empty after the volume began (a new or replaced disk): a segment
    /// it does not host may be one whose records it lost.
    Late,
}

/// One gossip answer, as the asking segment saw it (S21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAnswer {
    /// The peer segment that answered.
    pub peer: SegmentId,
    /// The peer segment is repairing itself (or may be lost: S20), so it proves nothing.
    pub peer_repairing: bool,
    /// The answer held every record the asker lacked (fewer than a batch).
    pub complete: bool,
    /// The peer's epoch equals the asker's, so the answer was merged (S7).
    pub same_epoch: bool,
    /// The peer segment's SCL when it answered.
    pub peer_scl: Lsn,
}

/// One repairing segment (S19, S21).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Repairing {
    /// The node's epoch when the loss was found: a writer of this epoch may still count an
    /// ack the segment gave before the loss, so the repair waits for a writer above it.
    loss_epoch: Epoch,
    /// Peer replicas it has caught up with (volatile: a restart starts again).
    peers: BTreeSet<u8>,
}

/// S19–S21: the node's repair bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRepair {
    birth: Birth,
    hosted: BTreeSet<SegmentId>,
    repairing: BTreeMap<SegmentId, Repairing>,
    /// S21: the highest epoch of an open writer (its heartbeat) this node has heard of
    /// since it started (volatile).
    open_writer: Epoch,
}

impl NodeRepair {
    /// A node folder that is new: it remembers nothing.
    pub fn fresh() -> NodeRepair {
        NodeRepair {
            birth: Birth::Unknown,
            hosted: BTreeSet::new(),
            repairing: BTreeMap::new(),
            open_writer: Epoch(0),
        }
    }

    /// State read back from the node's metadata. Progress toward S21 is not persisted
    /// (it restarts from no peer, which only delays the end of repair).
    pub fn restored(
        birth: Birth,
        hosted: BTreeSet<SegmentId>,
        repairing: BTreeMap<SegmentId, Epoch>,
    ) -> NodeRepair {
        let repairing = repairing
            .into_iter()
            .map(|(segment, loss_epoch)| {
                let peers = BTreeSet::new();
                (segment, Repairing { loss_epoch, peers })
            })
            .collect();
        NodeRepair {
            birth,
            hosted,
            repairing,
            open_writer: Epoch(0),
        }
    }

    pub fn birth(&self) -> Birth {
        self.birth
    }

    pub fn hosted(&self) -> &BTreeSet<SegmentId> {
        &self.hosted
    }

    /// Each repairing segment with its loss epoch.
    pub fn repairing(&self) -> impl Iterator<Item = (SegmentId, Epoch)> + '_ {
        self.repairing.iter().map(|(s, r)| (*s, r.loss_epoch))
    }

    pub fn is_repairing(&self, segment: SegmentId) -> bool {
        self.repairing.contains_key(&segment)
    }

    /// S20, X11: a placed segment this node does not host may be one it lost, so it must
    /// not count as an empty report.
    pub fn absent_may_be_lost(&self) -> bool {
        self.birth != Birth::WithVolume
    }

    /// S20: what a gossip answer for `segment` says of it: repairing, or not hosted by a
    /// node that cannot vouch for never having held it.
    pub fn answers_as_repairing(&self, segment: SegmentId, hosted: bool) -> bool {
        if hosted {
            self.is_repairing(segment)
        } else {
            self.absent_may_be_lost()
        }
    }

    /// S19: the node's first epoch. Only the volume's first recovery (a `RaiseEpoch` to
    /// epoch one) proves the folder was there from the start. Returns whether anything
    /// changed (the caller persists it).
    pub fn learn_first_epoch(&mut self, epoch: Epoch, from_first_recovery: bool) -> bool {
        if self.birth != Birth::Unknown || epoch == Epoch(0) {
            return false;
        }
        self.birth = if from_first_recovery && epoch == Epoch(1) {
            Birth::WithVolume
        } else {
            Birth::Late
        };
        true
    }

    /// S23: the node's folder answered the volume's genesis, so it was there before any
    /// writer could acknowledge a record: a late node is with the volume from now on.
    /// Segments already marked repairing stay so (S21 ends them).
    pub fn join_genesis(&mut self) {
        if self.birth == Birth::Late {
            self.birth = Birth::WithVolume;
        }
    }

    /// S19: the node opened at `epoch` and found `hosted_now` on disk, `rebuilt` of them
    /// emptied because their metadata was lost (S17). Returns the segments it hosted whose
    /// directory is gone: the caller hosts them again (empty) and they repair.
    pub fn open(
        &mut self,
        epoch: Epoch,
        hosted_now: &[SegmentId],
        rebuilt: &[SegmentId],
    ) -> Vec<SegmentId> {
        let missing: Vec<SegmentId> = self
            .hosted
            .iter()
            .filter(|segment| !hosted_now.contains(segment))
            .copied()
            .collect();
        for &segment in rebuilt.iter().chain(&missing) {
            self.mark(segment, epoch);
        }
        self.hosted.extend(hosted_now.iter().copied());
        missing
    }

    fn mark(&mut self, segment: SegmentId, loss_epoch: Epoch) {
        self.repairing.entry(segment).or_insert(Repairing {
            loss_epoch,
            peers: BTreeSet::new(),
        });
    }

    /// S19: `segment` is about to be hosted, at the node's `epoch`. Returns whether the
    /// node's metadata must be written first (it is new to the node), so that a later loss
    /// of its directory is seen.
    pub fn host(&mut self, segment: SegmentId, epoch: Epoch) -> bool {
        if !self.hosted.insert(segment) {
            return false;
        }
        if self.birth != Birth::WithVolume {
            self.mark(segment, epoch);
        }
        true
    }

    /// S21: an open writer of `epoch` was heard from (its heartbeat). Returns the segments
    /// whose repair just ended: the caller makes that durable before it reports them.
    pub fn note_open_writer(&mut self, epoch: Epoch) -> Vec<SegmentId> {
        self.open_writer = self.open_writer.max(epoch);
        self.end_repairs()
    }

    /// S21: every repair with three peers and a writer above its loss epoch ends.
    fn end_repairs(&mut self) -> Vec<SegmentId> {
        let open_writer = self.open_writer;
        let ended: Vec<SegmentId> = self
            .repairing
            .iter()
            .filter(|(_, r)| r.peers.len() >= REPAIR_PEERS && open_writer > r.loss_epoch)
            .map(|(s, _)| *s)
            .collect();
        for segment in &ended {
            self.repairing.remove(segment);
        }
        ended
    }

    /// S21: a gossip answer to `segment`, merged (or not); `scl_after` is the segment's SCL
    /// after the merge. Returns true when the segment's repair just ended (three peers, and
    /// an open writer above its loss epoch): the caller makes that durable before it
    /// reports the segment.
    pub fn note_answer(&mut self, segment: SegmentId, scl_after: Lsn, answer: &PeerAnswer) -> bool {
        debug_assert_eq!(segment.pg, answer.peer.pg, "gossip stays within a PG");
        let Some(repairing) = self.repairing.get_mut(&segment) else {
            return false;
        };
        let counts = !answer.peer_repairing
            && answer.complete
            && answer.same_epoch
            && answer.peer != segment
            && scl_after >= answer.peer_scl;
        if counts {
            repairing.peers.insert(answer.peer.replica);
        }
        self.end_repairs().contains(&segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PgId;

    fn segment(replica: u8) -> SegmentId {
        SegmentId {
            pg: PgId(0),
            replica,
        }
    }

    fn answer(replica: u8, peer_scl: u64) -> PeerAnswer {
        PeerAnswer {
            peer: segment(replica),
            peer_repairing: false,
            complete: true,
            same_epoch: true,
            peer_scl: Lsn(peer_scl),
        }
    }

    #[test]
    fn only_the_first_recovery_makes_a_node_part_of_the_volume() {
        // S19
        let mut with_volume = NodeRepair::fresh();
        assert!(with_volume.absent_may_be_lost());
        assert!(with_volume.learn_first_epoch(Epoch(1), true));
        assert_eq!(with_volume.birth(), Birth::WithVolume);
        assert!(!with_volume.absent_may_be_lost());
        assert!(
            !with_volume.learn_first_epoch(Epoch(5), false),
            "decided once"
        );

        let mut heartbeat_first = NodeRepair::fresh();
        heartbeat_first.learn_first_epoch(Epoch(1), false);
        assert_eq!(heartbeat_first.birth(), Birth::Late);

        let mut later_recovery = NodeRepair::fresh();
        later_recovery.learn_first_epoch(Epoch(2), true);
        assert_eq!(later_recovery.birth(), Birth::Late);
        assert!(later_recovery.host(segment(0), Epoch(2)));
        assert!(
            later_recovery.is_repairing(segment(0)),
            "S19: a late node's segments repair"
        );
    }

    #[test]
    fn lost_directories_and_rebuilt_segments_repair() {
        // S19, S17
        let mut repair = NodeRepair::restored(
            Birth::WithVolume,
            [segment(0), segment(1), segment(2)].into(),
            BTreeMap::new(),
        );
        let missing = repair.open(Epoch(4), &[segment(0), segment(1)], &[segment(1)]);
        assert_eq!(missing, vec![segment(2)]);
        assert!(!repair.is_repairing(segment(0)));
        assert!(repair.is_repairing(segment(1)));
        assert!(repair.is_repairing(segment(2)));
        assert!(repair.repairing().all(|(_, loss)| loss == Epoch(4)));
    }

    #[test]
    fn repair_ends_after_three_distinct_complete_peers_at_or_below_its_scl() {
        // S21
        let mut repair = NodeRepair::restored(
            Birth::WithVolume,
            [segment(0)].into(),
            [(segment(0), Epoch(3))].into(),
        );
        let me = segment(0);
        assert!(repair.note_open_writer(Epoch(4)).is_empty(), "no peer yet");
        assert!(!repair.note_answer(me, Lsn(10), &answer(1, 10)));
        assert!(
            !repair.note_answer(me, Lsn(10), &answer(1, 10)),
            "same peer twice"
        );
        assert!(
            !repair.note_answer(me, Lsn(10), &answer(2, 11)),
            "SCL below the peer's"
        );
        let mut partial = answer(2, 10);
        partial.complete = false;
        assert!(
            !repair.note_answer(me, Lsn(10), &partial),
            "incomplete answer"
        );
        let mut repairing_peer = answer(3, 10);
        repairing_peer.peer_repairing = true;
        assert!(
            !repair.note_answer(me, Lsn(10), &repairing_peer),
            "repairing peer"
        );
        let mut other_epoch = answer(4, 10);
        other_epoch.same_epoch = false;
        assert!(!repair.note_answer(me, Lsn(10), &other_epoch), "not merged");
        assert!(!repair.note_answer(me, Lsn(12), &answer(2, 11)));
        assert!(repair.is_repairing(me));
        assert!(
            repair.note_answer(me, Lsn(12), &answer(5, 0)),
            "third peer ends it"
        );
        assert!(!repair.is_repairing(me));
    }

    #[test]
    fn repair_waits_for_a_writer_above_the_loss_epoch() {
        // S21: a writer of the loss epoch may still count an ack given before the loss.
        let mut repair = NodeRepair::restored(
            Birth::WithVolume,
            [segment(0)].into(),
            [(segment(0), Epoch(3))].into(),
        );
        let me = segment(0);
        for peer in 1..=3 {
            assert!(!repair.note_answer(me, Lsn(5), &answer(peer, 5)));
        }
        assert!(repair.note_open_writer(Epoch(3)).is_empty(), "same epoch");
        assert_eq!(repair.note_open_writer(Epoch(4)), vec![me]);
        assert!(!repair.is_repairing(me));
    }

    #[test]
    fn absent_segments_of_an_unknown_or_late_node_answer_as_repairing() {
        // S20
        let fresh = NodeRepair::fresh();
        assert!(fresh.answers_as_repairing(segment(0), false));
        let mut born = NodeRepair::fresh();
        born.learn_first_epoch(Epoch(1), true);
        assert!(!born.answers_as_repairing(segment(0), false));
        assert!(born.host(segment(0), Epoch(1)));
        assert!(!born.answers_as_repairing(segment(0), true));
    }
}
