//! The read lease (R7–R11) as plain bookkeeping: no clocks here, the caller passes the
//! time in milliseconds of its own monotonic clock.
//!
//! [`LeasePromise`] is a storage node's side: the end of the latest promise it gave.
//! [`ReadLease`] is the writer's side: when each node's grant runs out, counted from the
//! moment the heartbeat it answers was sent, and whether a read quorum of every PG still
//! holds one.

use std::collections::{BTreeMap, VecDeque};

use crate::types::NodeId;

/// R7: what a node promises per heartbeat answer, on its clock, in milliseconds.
pub const LEASE_PROMISE_MS: u64 = 1_021;
/// R8: how long the writer counts a grant, on its clock, from the heartbeat's send time.
pub const LEASE_HOLD_MS: u64 = 1_000;
/// R9: how long a read waits for a renewal before it fails.
pub const LEASE_WAIT_MS: u64 = 2_000;
/// R11: clock rates are within this many percent of real time.
pub const CLOCK_RATE_ERROR_PERCENT: u64 = 1;
/// Heartbeats remembered per node while their answers are outstanding, at most.
pub const PENDING_HEARTBEATS_MAX: usize = 64;

/// R11: `hold` ms on one clock last no longer in real time than `promise` ms on another.
pub const fn promise_covers_hold(promise_ms: u64, hold_ms: u64) -> bool {
    // promise / (1 + ρ) ≥ hold / (1 − ρ), with ρ = CLOCK_RATE_ERROR_PERCENT / 100.
    promise_ms * (100 - CLOCK_RATE_ERROR_PERCENT) >= hold_ms * (100 + CLOCK_RATE_ERROR_PERCENT)
}

const _: () = assert!(promise_covers_hold(LEASE_PROMISE_MS, LEASE_HOLD_MS));

/// R10: how long a recovering writer waits, on its clock, for a node that reported
/// `remaining_ms` of promise on its own: `ceil(remaining × (1+ρ)/(1−ρ))`.
pub fn recovery_wait_ms(remaining_ms: u64) -> u64 {
    let num = remaining_ms.saturating_mul(100 + CLOCK_RATE_ERROR_PERCENT);
    num.div_ceil(100 - CLOCK_RATE_ERROR_PERCENT)
}

/// R7, R10: a storage node's lease promises. Epochs do not matter here: the node grants
/// only to a heartbeat of the epoch it holds (S7), and reports its latest promise to any
/// recovery, whatever epoch it was given to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasePromise {
    promise_ms: u64,
    end_ms: u64,
}

impl LeasePromise {
    /// R7: a node starting at `now_ms` may have promised just before it stopped, so it
    /// counts a full promise from its start.
    pub fn at_start(now_ms: u64, promise_ms: u64) -> LeasePromise {
        LeasePromise {
            promise_ms,
            end_ms: now_ms.saturating_add(promise_ms),
        }
    }

    /// R7: answers a heartbeat of the node's epoch at `now_ms`; returns the grant in ms.
    pub fn grant(&mut self, now_ms: u64) -> u64 {
        self.end_ms = self.end_ms.max(now_ms.saturating_add(self.promise_ms));
        self.promise_ms
    }

    /// R10: how long the latest promise still runs at `now_ms`.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.end_ms.saturating_sub(now_ms)
    }
}

/// R8, R9: the writer's read lease.
#[derive(Clone, Debug)]
pub struct ReadLease {
    hold_ms: u64,
    read_quorum: usize,
    /// Per node, heartbeats sent and not yet answered: (request id, sent at).
    pending: BTreeMap<NodeId, VecDeque<(u64, u64)>>,
    /// Per node, when its latest grant runs out on the writer's clock.
    expires: BTreeMap<NodeId, u64>,
}

impl ReadLease {
    pub fn new(hold_ms: u64, read_quorum: usize) -> ReadLease {
        ReadLease {
            hold_ms,
            read_quorum,
            pending: BTreeMap::new(),
            expires: BTreeMap::new(),
        }
    }

    /// R8: a heartbeat `request_id` went to `node` at `sent_ms`.
    pub fn sent(&mut self, node: NodeId, request_id: u64, sent_ms: u64) {
        let queue = self.pending.entry(node).or_default();
        if queue.len() == PENDING_HEARTBEATS_MAX {
            queue.pop_front();
        }
        queue.push_back((request_id, sent_ms));
    }

    /// R8: `node` granted a lease to heartbeat `request_id`; it counts from that
    /// heartbeat's send time. A grant for a heartbeat not (or no longer) remembered
    /// counts nothing. Returns whether it was counted.
    pub fn granted(&mut self, node: NodeId, request_id: u64) -> bool {
        let Some(queue) = self.pending.get_mut(&node) else {
            return false;
        };
        let Some(at) = queue.iter().position(|(id, _)| *id == request_id) else {
            return false;
        };
        let (_, sent_ms) = queue[at];
        // Older heartbeats of this node are answered in order (one connection): drop them.
        queue.drain(..=at);
        let end = sent_ms.saturating_add(self.hold_ms);
        let slot = self.expires.entry(node).or_insert(0);
        *slot = (*slot).max(end);
        true
    }

    /// E3, R9: a fenced writer holds no lease, ever again.
    pub fn revoke(&mut self) {
        self.expires.clear();
        self.pending.clear();
        self.hold_ms = 0;
    }

    /// R8: when the lease runs out: per PG (the nodes of its six segments), the time the
    /// Vr-th latest grant ends; the earliest over all PGs. 0 when not held at all.
    pub fn valid_until<P, N>(&self, pgs: P) -> u64
    where
        P: IntoIterator<Item = N>,
        N: IntoIterator<Item = NodeId>,
    {
        let mut until = u64::MAX;
        for nodes in pgs {
            let mut ends: Vec<u64> = nodes
                .into_iter()
                .map(|n| self.expires.get(&n).copied().unwrap_or(0))
                .collect();
            ends.sort_unstable_by(|a, b| b.cmp(a));
            let end = ends.get(self.read_quorum.wrapping_sub(1)).copied();
            until = until.min(end.unwrap_or(0));
        }
        if until == u64::MAX { 0 } else { until }
    }

    /// R8, R9: whether the lease is held at `now_ms`.
    pub fn holds<P, N>(&self, now_ms: u64, pgs: P) -> bool
    where
        P: IntoIterator<Item = N>,
        N: IntoIterator<Item = NodeId>,
    {
        now_ms < self.valid_until(pgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[u32]) -> Vec<NodeId> {
        ids.iter().map(|&n| NodeId(n)).collect()
    }

    #[test]
    fn numbers_satisfy_the_clock_assumption() {
        // R11: 1,021 ms promised covers 1,000 ms held at 1% clock rate error; 1,020 does not.
        assert!(promise_covers_hold(LEASE_PROMISE_MS, LEASE_HOLD_MS));
        assert!(!promise_covers_hold(1_020, LEASE_HOLD_MS));
        // R10: the recovery wait stretches the reported remainder by (1+ρ)/(1−ρ), rounded up.
        assert_eq!(recovery_wait_ms(0), 0);
        assert_eq!(recovery_wait_ms(99), 101);
        assert_eq!(recovery_wait_ms(1_021), 1_042);
        assert!(recovery_wait_ms(1_000) * 99 >= 1_000 * 101);
    }

    #[test]
    fn node_promise_runs_from_its_latest_grant_and_from_a_restart() {
        // R7, R10
        let mut promise = LeasePromise::at_start(500, LEASE_PROMISE_MS);
        assert_eq!(promise.remaining_ms(500), 1_021);
        assert_eq!(promise.remaining_ms(2_000), 0);
        assert_eq!(promise.grant(3_000), 1_021);
        assert_eq!(promise.remaining_ms(3_500), 521);
        // An earlier time never shortens the promise.
        promise.grant(2_900);
        assert_eq!(promise.remaining_ms(3_500), 521);
    }

    #[test]
    fn lease_counts_from_send_time_and_needs_a_read_quorum_of_every_pg() {
        // R8
        let pg0 = nodes(&[1, 2, 3, 4, 5, 6]);
        let pg1 = nodes(&[4, 5, 6, 7, 8, 9]);
        let mut lease = ReadLease::new(LEASE_HOLD_MS, 3);
        assert!(!lease.holds(0, [pg0.clone()]));
        for (n, id) in [(1, 10), (2, 11), (3, 12)] {
            lease.sent(NodeId(n), id, 100);
        }
        // Answers arrive late; the lease still counts from 100.
        assert!(lease.granted(NodeId(1), 10));
        assert!(lease.granted(NodeId(2), 11));
        assert!(
            !lease.holds(150, [pg0.clone()]),
            "two grants are not a read quorum"
        );
        assert!(lease.granted(NodeId(3), 12));
        assert!(lease.holds(900, [pg0.clone()]));
        assert!(lease.holds(1_099, [pg0.clone()]));
        assert!(!lease.holds(1_100, [pg0.clone()]), "held past send + hold");
        // pg1 has none of nodes 1-3: the lease over both PGs is not held.
        assert!(!lease.holds(900, [pg0.clone(), pg1.clone()]));
        for (n, id) in [(4, 20), (5, 21), (6, 22)] {
            lease.sent(NodeId(n), id, 400);
            lease.granted(NodeId(n), id);
        }
        assert_eq!(lease.valid_until([pg0.clone(), pg1.clone()]), 1_400);
        // A grant for a heartbeat never sent counts nothing.
        assert!(!lease.granted(NodeId(7), 99));
    }

    #[test]
    fn a_revoked_lease_is_never_held_again() {
        // E3, R9
        let pg0 = nodes(&[1, 2, 3, 4, 5, 6]);
        let mut lease = ReadLease::new(LEASE_HOLD_MS, 3);
        for n in 1..=6 {
            lease.sent(NodeId(n), 1, 0);
            lease.granted(NodeId(n), 1);
        }
        assert!(lease.holds(10, [pg0.clone()]));
        lease.revoke();
        assert!(!lease.holds(10, [pg0.clone()]));
        for n in 1..=6 {
            lease.sent(NodeId(n), 2, 20);
            lease.granted(NodeId(n), 2);
        }
        assert!(!lease.holds(21, [pg0]));
    }

    #[test]
    fn pending_heartbeats_are_bounded() {
        let mut lease = ReadLease::new(LEASE_HOLD_MS, 1);
        for id in 0..(PENDING_HEARTBEATS_MAX as u64 + 10) {
            lease.sent(NodeId(1), id, id);
        }
        assert!(!lease.granted(NodeId(1), 0), "oldest forgotten");
        assert!(lease.granted(NodeId(1), PENDING_HEARTBEATS_MAX as u64 + 9));
    }
}
