//! Which connections a storage node keeps under hostile load (A9–A13), without I/O: the
//! server asks [`Admission`] at accept, when a connection first speaks, when it
//! authenticates and when it closes, and logs what [`RefusalLog`] returns.
//!
//! Before the handshake a node cannot tell a writer from a stranger, so strangers must
//! not be able to hold the slots writers and peers need: connections that have not
//! authenticated share a small budget of their own, a newcomer over that budget closes
//! the oldest one that has sent nothing (a writer or peer answers `Hello` at once, an
//! idle stranger never does), and authenticated connections have a budget strangers
//! never touch.

use std::collections::{BTreeMap, BTreeSet};

/// A10: connections that have not finished the handshake, at most, per node.
pub const UNAUTHENTICATED_MAX: usize = 16;
/// A12: authenticated connections (writers, peers, tools), at most, per node.
pub const AUTHENTICATED_MAX: usize = 64;
/// A13: at most one line about refused connections per this many milliseconds.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

/// A connection not yet authenticated.
#[derive(Clone, Copy, Debug)]
struct Pending {
    accepted_ms: u64,
    spoke: bool,
}

/// The node's connection budgets (A10–A12).
#[derive(Debug, Default)]
pub struct Admission {
    unauthenticated: BTreeMap<u64, Pending>,
    authenticated: BTreeSet<u64>,
}

/// A12: the authenticated budget is full; the connection is closed.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthenticatedFull;

impl Admission {
    pub fn new() -> Admission {
        Admission::default()
    }

    /// A10, A11: takes connection `id`, accepted at `now_ms`. Returns the connection to
    /// close to make room, if the unauthenticated budget was full: the oldest that has
    /// sent nothing, else the oldest. The newcomer is always taken.
    pub fn admit(&mut self, id: u64, now_ms: u64) -> Option<u64> {
        let victim = (self.unauthenticated.len() >= UNAUTHENTICATED_MAX)
            .then(|| self.victim())
            .flatten();
        if let Some(victim) = victim {
            self.unauthenticated.remove(&victim);
        }
        self.unauthenticated.insert(
            id,
            Pending {
                accepted_ms: now_ms,
                spoke: false,
            },
        );
        victim
    }

    fn victim(&self) -> Option<u64> {
        let oldest = |silent: bool| {
            self.unauthenticated
                .iter()
                .filter(|(_, p)| !silent || !p.spoke)
                .min_by_key(|(id, p)| (p.accepted_ms, **id))
                .map(|(id, _)| *id)
        };
        oldest(true).or_else(|| oldest(false))
    }

    /// A11: connection `id` sent its first byte.
    pub fn spoke(&mut self, id: u64) {
        if let Some(pending) = self.unauthenticated.get_mut(&id) {
            pending.spoke = true;
        }
    }

    /// Whether `id` still holds an unauthenticated slot (it was not closed to make room).
    pub fn is_pending(&self, id: u64) -> bool {
        self.unauthenticated.contains_key(&id)
    }

    /// A12: connection `id` authenticated: it leaves the unauthenticated budget and takes
    /// an authenticated slot, or is refused if they are all taken.
    pub fn authenticated(&mut self, id: u64) -> Result<(), AuthenticatedFull> {
        self.unauthenticated.remove(&id);
        if self.authenticated.len() >= AUTHENTICATED_MAX {
            return Err(AuthenticatedFull);
        }
        self.authenticated.insert(id);
        Ok(())
    }

    /// Connection `id` closed, whatever its state.
    pub fn closed(&mut self, id: u64) {
        self.unauthenticated.remove(&id);
        self.authenticated.remove(&id);
    }

    /// (unauthenticated, authenticated) connections held now.
    pub fn counts(&self) -> (usize, usize) {
        (self.unauthenticated.len(), self.authenticated.len())
    }
}

/// Why a connection was refused or closed before it authenticated (A13's counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// A11: closed to make room for a newer connection.
    Evicted,
    /// A9: no handshake within the deadline.
    HandshakeTimeout,
    /// A1: the handshake failed (wrong secret, version, cluster or node id, bad frame).
    HandshakeFailed,
    /// A12: authenticated, but every authenticated slot is taken.
    AuthenticatedFull,
    /// The node could not start a thread for it.
    NoThread,
}

impl Refusal {
    fn describe(self) -> &'static str {
        match self {
            Refusal::Evicted => "closed unauthenticated to make room",
            Refusal::HandshakeTimeout => "no handshake in time",
            Refusal::HandshakeFailed => "handshake failed",
            Refusal::AuthenticatedFull => "authenticated slots full",
            Refusal::NoThread => "no thread",
        }
    }
}

/// A13: counts refusals and says when to log: the first refusal after a quiet interval
/// at once, the rest as one summary line per [`REFUSAL_LOG_INTERVAL_MS`], with counts
/// by reason and the last failed handshake's reason (a wrong secret stays visible).
#[derive(Debug, Default)]
pub struct RefusalLog {
    last_line_ms: Option<u64>,
    since_ms: u64,
    counts: BTreeMap<Refusal, u64>,
    last_reason: Option<String>,
    /// A13: when a failed authentication was last logged on its own line.
    last_auth_line_ms: Option<u64>,
}

impl RefusalLog {
    pub fn new() -> RefusalLog {
        RefusalLog::default()
    }

    /// Counts one refusal at `now_ms` (with the handshake's error, if any); returns a
    /// line to log if none was logged in the last interval.
    pub fn note(
        &mut self,
        refusal: Refusal,
        reason: Option<String>,
        now_ms: u64,
    ) -> Option<String> {
        if self.counts.is_empty() {
            self.since_ms = now_ms;
        }
        *self.counts.entry(refusal).or_default() += 1;
        if reason.is_some() {
            self.last_reason = reason;
        }
        self.flush(now_ms)
    }

    /// A1, A13: a client that failed to prove the secret (a wrong secret, or a relay) is
    /// a security event, logged on its own line at once, at most once per interval, so
    /// junk connections counted in the summary never hide it.
    pub fn note_auth_failure(&mut self, reason: &str, now_ms: u64) -> Option<String> {
        let due = self
            .last_auth_line_ms
            .is_none_or(|last| now_ms >= last + REFUSAL_LOG_INTERVAL_MS);
        if !due {
            return None;
        }
        self.last_auth_line_ms = Some(now_ms);
        Some(format!("handshake refused: {reason}"))
    }

    /// The summary of what was counted, once an interval has passed since the last line.
    pub fn flush(&mut self, now_ms: u64) -> Option<String> {
        let due = self
            .last_line_ms
            .is_none_or(|last| now_ms >= last + REFUSAL_LOG_INTERVAL_MS);
        if self.counts.is_empty() || !due {
            return None;
        }
        let total: u64 = self.counts.values().sum();
        let reasons: Vec<String> = self
            .counts
            .iter()
            .map(|(refusal, count)| format!("{} {}", thousands(*count), refusal.describe()))
            .collect();
        let mut line = format!(
            "refused {} connection{} in the last {:.1} s ({})",
            thousands(total),
            if total == 1 { "" } else { "s" },
            now_ms.saturating_sub(self.since_ms) as f64 / 1000.0,
            reasons.join(", ")
        );
        if let Some(reason) = self.last_reason.take() {
            line.push_str(&format!("; last handshake error: {reason}"));
        }
        self.counts.clear();
        self.last_line_ms = Some(now_ms);
        Some(line)
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_over_budget_closes_the_oldest_silent_connection() {
        // A10, A11
        let mut admission = Admission::new();
        for id in 0..UNAUTHENTICATED_MAX as u64 {
            assert_eq!(admission.admit(id, id), None);
        }
        admission.spoke(0); // the oldest answered Hello: a writer or peer, probably
        assert_eq!(admission.admit(100, 100), Some(1));
        assert!(admission.is_pending(0) && !admission.is_pending(1));
        for id in 2..UNAUTHENTICATED_MAX as u64 {
            admission.spoke(id);
        }
        admission.spoke(100);
        // Everyone spoke: the oldest goes.
        assert_eq!(admission.admit(101, 101), Some(0));
        assert_eq!(admission.counts(), (UNAUTHENTICATED_MAX, 0));
    }

    #[test]
    fn strangers_never_take_an_authenticated_slot() {
        // A10, A12: a thousand strangers later, the authenticated ones are all still
        // there, and authenticating moves a connection out of the strangers' budget.
        let mut admission = Admission::new();
        for id in 0..10 {
            admission.admit(id, 0);
            admission.spoke(id);
            admission.authenticated(id).unwrap();
        }
        for id in 1_000..2_000 {
            admission.admit(id, id);
        }
        assert_eq!(admission.counts(), (UNAUTHENTICATED_MAX, 10));
        admission.admit(5_000, 5_000);
        admission.spoke(5_000);
        admission.authenticated(5_000).unwrap();
        assert_eq!(admission.counts(), (UNAUTHENTICATED_MAX - 1, 11));
    }

    #[test]
    fn the_authenticated_budget_is_bounded() {
        // A12
        let mut admission = Admission::new();
        for id in 0..AUTHENTICATED_MAX as u64 {
            admission.admit(id, 0);
            admission.authenticated(id).unwrap();
        }
        admission.admit(999, 0);
        assert_eq!(admission.authenticated(999), Err(AuthenticatedFull));
        admission.closed(0);
        admission.admit(1_000, 0);
        assert_eq!(admission.authenticated(1_000), Ok(()));
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_counts() {
        // A13: the first at once; 1,233 more within the interval make no line; the
        // flush after it says how many, why, and the last handshake error.
        let mut log = RefusalLog::new();
        let first = log.note(Refusal::Evicted, None, 0).expect("first line");
        assert!(first.contains("refused 1 connection "), "{first}");
        for i in 0..1_233u64 {
            let refusal = if i % 2 == 0 {
                Refusal::Evicted
            } else {
                Refusal::HandshakeFailed
            };
            let reason = (i == 7).then(|| "authentication failed".to_string());
            assert_eq!(log.note(refusal, reason, 1 + i), None);
        }
        assert_eq!(log.flush(REFUSAL_LOG_INTERVAL_MS - 1), None);
        let line = log.flush(REFUSAL_LOG_INTERVAL_MS).expect("summary");
        assert!(line.starts_with("refused 1,233 connections"), "{line}");
        assert!(
            line.contains("617 closed unauthenticated") && line.contains("616 handshake failed"),
            "{line}"
        );
        assert!(
            line.contains("last handshake error: authentication failed"),
            "{line}"
        );
        assert_eq!(log.flush(2 * REFUSAL_LOG_INTERVAL_MS), None, "nothing new");
    }

    #[test]
    fn a_failed_authentication_is_logged_at_once_and_at_most_once_per_interval() {
        // A1, A13: counted refusals before it do not hide it.
        let mut log = RefusalLog::new();
        assert!(
            log.note(Refusal::HandshakeFailed, Some("closed".into()), 0)
                .is_some()
        );
        let line = log.note_auth_failure("peer: authentication failed", 5);
        assert!(line.is_some_and(|l| l.contains("authentication failed")));
        assert!(
            log.note_auth_failure("peer: authentication failed", 6)
                .is_none()
        );
        assert!(
            log.note_auth_failure("again", REFUSAL_LOG_INTERVAL_MS + 5)
                .is_some()
        );
    }
}
