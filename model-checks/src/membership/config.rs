//! Sizes of the membership model and the mutants it can be switched to.

use std::fmt;
use std::str::FromStr;

use super::state::{LSN_CAP_MAX, Lsn, PENDING_MAX, SPARES_MAX};
use crate::quorum::UnknownName;

/// Bounds that make the state space finite. Nothing else is bounded: every interleaving
/// below them is explored, with no depth limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub name: &'static str,
    /// No LSN above this is allocated.
    pub lsn_cap: Lsn,
    /// Spare storage nodes a change may bring in (G, H).
    pub spares: usize,
    /// Changes in flight at once (M6).
    pub max_pending: usize,
    /// Membership steps in a run: each begin, finalize and abort is one (M1).
    pub change_steps: u8,
    /// Fail-stop node failures in a run (the fault budget).
    pub failures: u8,
    /// Whether a live member may be replaced (moving a hot or suspect segment), not only a
    /// failed one.
    pub replace_live: bool,
}

impl Config {
    /// Runs in `cargo test` in seconds: one replacement of F by G, begun, finalized or
    /// aborted, with one failure and two LSNs.
    pub fn small() -> Self {
        Config {
            name: "small",
            lsn_cap: 2,
            spares: 1,
            max_pending: 1,
            change_steps: 2,
            failures: 1,
            replace_live: true,
        }
    }

    /// the 2018 paper's §4.1 composition: a failed member is replaced while a second member fails and
    /// is replaced too (two changes, four quorum sets), two failures, one LSN.
    pub fn composed() -> Self {
        Config {
            name: "composed",
            lsn_cap: 1,
            spares: 2,
            max_pending: 2,
            change_steps: 4,
            failures: 2,
            replace_live: false,
        }
    }

    /// Two live members moved at once (a hot or suspect segment, a rebalance), no failure,
    /// one LSN: the smallest config in which a change is finalized between a hydrating
    /// member's copies (mutant `hydration-peers-across-epochs`).
    pub fn two_moves() -> Self {
        Config {
            name: "two-moves",
            failures: 0,
            replace_live: true,
            ..Self::composed()
        }
    }

    /// The configuration the docs quote: `composed` with two LSNs. Run it in release.
    pub fn reference() -> Self {
        Config {
            name: "reference",
            lsn_cap: 2,
            ..Self::composed()
        }
    }

    pub const NAMES: &'static [&'static str] = &["small", "composed", "two-moves", "reference"];

    pub fn named(name: &str) -> Result<Self, UnknownName> {
        match name {
            "small" => Ok(Self::small()),
            "composed" => Ok(Self::composed()),
            "two-moves" => Ok(Self::two_moves()),
            "reference" => Ok(Self::reference()),
            _ => Err(UnknownName::new("config", name, Self::NAMES)),
        }
    }

    /// Refuses a configuration the model cannot represent.
    pub fn validate(&self) -> Result<(), String> {
        if self.lsn_cap == 0 || self.lsn_cap > LSN_CAP_MAX {
            return Err(format!("lsn_cap {} is not 1..={LSN_CAP_MAX}", self.lsn_cap));
        }
        if self.spares == 0 || self.spares > SPARES_MAX {
            return Err(format!("spares {} is not 1..={SPARES_MAX}", self.spares));
        }
        if self.max_pending == 0 || self.max_pending > PENDING_MAX {
            return Err(format!(
                "max_pending {} is not 1..={PENDING_MAX}",
                self.max_pending
            ));
        }
        Ok(())
    }
}

/// Mutants: one membership rule broken on purpose; each must be caught by a named property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// M5 broken: a change is finalized before its new member is whole.
    FinalizeBeforeHydrate,
    /// M2 broken: in the dual-quorum state the writer acknowledges a write at 4/6 of the
    /// new set only.
    WriteQuorumOnlyNewSet,
    /// M1 broken: a segment takes a write or copy of a membership epoch below its own.
    StaleMembershipEpochAccepted,
    /// M1 broken: a segment takes the membership epoch of each request as its own, lower
    /// or not.
    EpochFollowsRequest,
    /// M3 broken: the replaced member drops its records when the change begins, not when
    /// it is finalized.
    DropFBeforeFinalize,
    /// M5 as first written: a hydrating member counts peers' copies across membership
    /// epochs. Config `composed` with live members replaceable found it: LSN 1 is acknowledged on BCDE while A->G
    /// is in flight; F->H begins and H copies from F and A (neither holds LSN 1); A->G is
    /// finalized, and H's third copy comes from G, a settled member now, which never held
    /// LSN 1 either. H is "whole" without it.
    HydrationPeersAcrossEpochs,
}

impl Bug {
    pub const ALL: &'static [Bug] = &[
        Bug::FinalizeBeforeHydrate,
        Bug::WriteQuorumOnlyNewSet,
        Bug::StaleMembershipEpochAccepted,
        Bug::EpochFollowsRequest,
        Bug::DropFBeforeFinalize,
        Bug::HydrationPeersAcrossEpochs,
    ];

    pub const NAMES: &'static [&'static str] = &[
        "finalize-before-hydrate",
        "write-quorum-only-new-set",
        "stale-membership-epoch-accepted",
        "epoch-follows-request",
        "drop-f-before-finalize",
        "hydration-peers-across-epochs",
    ];

    /// The smallest named config that catches the mutant (what `--bug` runs when no
    /// `--config` is given).
    pub fn config(self) -> Config {
        match self {
            Bug::HydrationPeersAcrossEpochs => Config::two_moves(),
            _ => Config::small(),
        }
    }

    pub fn name(self) -> &'static str {
        let index = Bug::ALL.iter().position(|bug| *bug == self).unwrap_or(0);
        Bug::NAMES[index]
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Bug::NAMES
            .iter()
            .position(|candidate| *candidate == name)
            .map(|index| Bug::ALL[index])
            .ok_or_else(|| UnknownName::new("bug", name, Bug::NAMES))
    }
}
