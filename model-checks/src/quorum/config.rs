//! Sizes of the quorum model and the mutants it can be switched to.

use std::fmt;
use std::str::FromStr;

use super::state::{LSN_CAP_MAX, Lsn, PG_COUNT_MAX};

/// The PG of each record of an MTR, in LSN order (1 or 2 records, L2; may span PGs).
pub type MtrShape = &'static [u8];

/// Bounds that make the state space finite. Nothing else is bounded: the checker explores
/// every interleaving, with no depth limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub name: &'static str,
    /// 1 or 2 PGs of six segments.
    pub pg_count: usize,
    /// No LSN above this is ever allocated, in any epoch.
    pub lsn_cap: Lsn,
    /// LAL (W1, X4): tiny on purpose.
    pub lal: Lsn,
    /// MTR shapes the writer may allocate.
    pub mtr_shapes: &'static [MtrShape],
    /// Writer crashes plus failovers (a failover leaves the old writer running, partitioned).
    pub writer_restarts: u8,
    /// Whether a restart may be a failover (the old writer keeps running: a stale writer).
    pub failover: bool,
    /// Segment crashes (one segment, or a whole AZ of every PG if `az_crashes`).
    pub segment_crashes: u8,
    /// Whether a crash may take a whole AZ. AZs then differ, and symmetry reduction may only
    /// swap the two segments of a PG in one AZ; otherwise it may permute all six.
    pub az_crashes: bool,
    /// Whether segments gossip (S6).
    pub gossip: bool,
    /// Whether writers take read leases and a partitioned old writer serves reads from its
    /// cache (R7–R10).
    pub leases: bool,
    /// Disk losses (S17, S19): a segment loses every record and its own metadata, keeps
    /// its node's epoch and truncation history, and is repairing until S21 ends it.
    pub disk_losses: u8,
}

const ONE_PG_SHAPES: &[MtrShape] = &[&[0], &[0, 0]];
const ONE_RECORD_SHAPES: &[MtrShape] = &[&[0]];
const REFERENCE_LSN_CAP: Lsn = 4;
const TWO_PG_SHAPES: &[MtrShape] = &[&[0], &[1], &[0, 1]];
/// Every MTR of one or two records over two PGs: what an implementation may allocate.
const ALL_TWO_PG_SHAPES: &[MtrShape] = &[&[0], &[1], &[0, 0], &[0, 1], &[1, 0], &[1, 1]];

impl Config {
    /// Runs in `cargo test` in seconds: one PG, a writer crash, gossip.
    pub fn small() -> Self {
        Config {
            name: "small",
            pg_count: 1,
            lsn_cap: 2,
            lal: 2,
            mtr_shapes: ONE_PG_SHAPES,
            writer_restarts: 1,
            failover: false,
            segment_crashes: 0,
            az_crashes: false,
            gossip: true,
            leases: false,
            disk_losses: 0,
        }
    }

    /// The configuration the docs quote, explored exhaustively: one PG, two writer restarts
    /// (so a recovery can be interrupted and run again, X8, and a second recovery must cross
    /// the first one's truncation range, X3), writes in every epoch.
    pub fn reference() -> Self {
        Config {
            name: "reference",
            pg_count: 1,
            lsn_cap: REFERENCE_LSN_CAP,
            lal: 1,
            mtr_shapes: ONE_PG_SHAPES,
            writer_restarts: 2,
            failover: false,
            segment_crashes: 0,
            az_crashes: false,
            gossip: false,
            leases: false,
            disk_losses: 0,
        }
    }

    /// Everything at once: two PGs with MTRs spanning both, a failover (the old writer keeps
    /// running), gossip, a segment or AZ crash. Far beyond 10 minutes; run it with a budget
    /// of time and read the report's state counts.
    pub fn large() -> Self {
        Config {
            name: "large",
            pg_count: 2,
            lsn_cap: 4,
            lal: 2,
            mtr_shapes: TWO_PG_SHAPES,
            writer_restarts: 2,
            failover: true,
            segment_crashes: 1,
            az_crashes: true,
            gossip: true,
            leases: false,
            disk_losses: 0,
        }
    }

    /// Small with a failover: the old writer keeps running, acknowledging commits, until a
    /// rejection fences it. One LSN is enough to lose a commit when recovery reads do not
    /// fence (E4).
    pub fn failover() -> Self {
        Config {
            name: "failover",
            lsn_cap: 1,
            failover: true,
            gossip: false,
            ..Self::small()
        }
    }

    /// Small with a second restart and writes after the first recovery: the second recovery
    /// must cross the first one's truncation range (X3, X4).
    pub fn two_recoveries() -> Self {
        Config {
            name: "two-recoveries",
            lsn_cap: 3,
            lal: 1,
            writer_restarts: 2,
            gossip: false,
            ..Self::small()
        }
    }

    /// Three epochs over two LSNs, with gossip: the smallest config in which truncation
    /// histories matter both ways (S15, X9). An interrupted recovery's range covers a record
    /// a later recovery keeps (mutant truncation-union); a completed recovery's range voids a
    /// record that a segment which missed it still holds (mutant recovery-sends-own-range).
    /// Writers run to the LSN cap, so quiescent states are reached and the liveness
    /// property is decided.
    pub fn history() -> Self {
        Config {
            name: "history",
            lsn_cap: 2,
            lal: 1,
            writer_restarts: 2,
            gossip: true,
            ..Self::small()
        }
    }

    /// `history` without gossip: a twelfth of its states. Segments learn histories only from
    /// recovery writes, so the liveness property is not stated; the others are, and the
    /// recovery-sends-own-range mutant fails serving only the volume.
    pub fn history_no_gossip() -> Self {
        Config {
            name: "history-no-gossip",
            gossip: false,
            ..Self::history()
        }
    }

    /// `history` with one LSN: an interrupted recovery's range still covers a record a later
    /// recovery keeps (truncation-union is caught), in well under a second.
    pub fn history_one_lsn() -> Self {
        Config {
            name: "history-one-lsn",
            lsn_cap: 1,
            ..Self::history()
        }
    }

    /// A failover with read leases (R7–R10): the old writer keeps running partitioned and
    /// serves reads from its cache while it holds a lease; the new writer recovers, opens
    /// and commits. Two LSNs so that the new epoch can allocate above its truncation range;
    /// one-record MTRs (atomicity is checked elsewhere). Only the first writer takes
    /// leases: with one failover, only its lease can be stale. The first writer writes
    /// nothing (its view is the empty volume), so the space stays small.
    pub fn lease() -> Self {
        Config {
            name: "lease",
            lsn_cap: 2,
            lal: 1,
            mtr_shapes: ONE_RECORD_SHAPES,
            failover: true,
            gossip: false,
            leases: true,
            ..Self::small()
        }
    }

    /// One disk loss (S17, S19–S21, X11): a record reaches four segments and is
    /// acknowledged while two lag; one of the four loses its disk and comes back empty and
    /// repairing; the writer crashes and recovery counts the repairing segment as no answer
    /// (X11); gossip and the new writer's heartbeat end the repair (S21). One PG, one LSN,
    /// one writer crash, gossip: with LSNs ≤ 2 the search did not end within 8 CPU-minutes.
    pub fn disk_loss() -> Self {
        Config {
            name: "disk-loss",
            lsn_cap: 1,
            lal: 1,
            mtr_shapes: ONE_RECORD_SHAPES,
            disk_losses: 1,
            ..Self::small()
        }
    }

    /// The model an implementation's trace is replayed through (conformance's refinement
    /// check): two PGs, every MTR shape of 1–2 records, the whole 4-bit LSN space, the
    /// implementation's LAL. Never explored exhaustively: its bounds on faults only limit
    /// which actions the checker would offer, and trace validation takes the actions the
    /// trace shows.
    pub fn trace_validation(lal: Lsn) -> Self {
        Config {
            name: "trace-validation",
            pg_count: 2,
            lsn_cap: LSN_CAP_MAX,
            lal,
            mtr_shapes: ALL_TWO_PG_SHAPES,
            writer_restarts: u8::MAX,
            failover: true,
            segment_crashes: u8::MAX,
            az_crashes: true,
            gossip: true,
            leases: false,
            disk_losses: 0,
        }
    }

    pub const NAMES: &'static [&'static str] = &[
        "small",
        "reference",
        "large",
        "failover",
        "two-recoveries",
        "history",
        "history-no-gossip",
        "history-one-lsn",
        "lease",
        "disk-loss",
    ];

    pub fn named(name: &str) -> Result<Self, UnknownName> {
        match name {
            "small" => Ok(Self::small()),
            "reference" => Ok(Self::reference()),
            "large" => Ok(Self::large()),
            "failover" => Ok(Self::failover()),
            "two-recoveries" => Ok(Self::two_recoveries()),
            "history" => Ok(Self::history()),
            "history-no-gossip" => Ok(Self::history_no_gossip()),
            "history-one-lsn" => Ok(Self::history_one_lsn()),
            "lease" => Ok(Self::lease()),
            "disk-loss" => Ok(Self::disk_loss()),
            _ => Err(UnknownName::new("config", name, Self::NAMES)),
        }
    }

    /// Refuses a configuration the model cannot represent.
    pub fn validate(&self) -> Result<(), String> {
        if self.pg_count == 0 || self.pg_count > PG_COUNT_MAX {
            return Err(format!(
                "pg_count {} is not 1..={PG_COUNT_MAX}",
                self.pg_count
            ));
        }
        if self.lsn_cap == 0 || self.lsn_cap > LSN_CAP_MAX {
            return Err(format!("lsn_cap {} is not 1..={LSN_CAP_MAX}", self.lsn_cap));
        }
        let bad_shape = self.mtr_shapes.iter().any(|shape| {
            shape.is_empty()
                || shape.len() > 2
                || shape.iter().any(|pg| *pg as usize >= self.pg_count)
        });
        if bad_shape {
            return Err("an MTR shape has 0 or more than 2 records or names a missing PG".into());
        }
        Ok(())
    }
}

/// Mutants: one protocol rule broken on purpose; each must be caught by a named property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Q1 broken: the writer counts a record durable at 3 of 6.
    WriteQuorum3,
    /// C4 broken: a commit is acknowledged when VCL (not VDL) reaches its commit LSN.
    CommitAtVcl,
    /// X4, S8 broken: recovery writes no truncation range.
    NoTruncation,
    /// S7, E2 broken: segments take writes of a lower epoch.
    NoFencing,
    /// X2 broken: recovery settles for 2 reports per PG.
    RecoveryReadQuorum2,
    /// E4 broken: recovery reads do not raise the segment's epoch (BookKeeper 4.11's bug).
    UnfencedRecoveryReads,
    /// S7, S6 broken: a segment merges gossip of a lower epoch.
    GossipIgnoresEpoch,
    /// S15 broken: a segment merges truncation ranges one by one (a union) instead of
    /// replacing its history with a newer one, from recovery writes and gossip alike.
    TruncationUnion,
    /// S15, X5 broken: a recovery write gives the segment only the recovery's own range, added
    /// to what it held, and gossip carries no history.
    RecoverySendsOwnRange,
    /// R9 broken: a writer serves reads without checking its read lease.
    StaleReadAfterFencing,
    /// R10 broken: recovery opens without waiting out the leases its quorum promised.
    LeaseNotWaited,
    /// X11, S20 broken: a repairing segment's (empty) report counts toward the read quorum.
    RepairingCountsInRecovery,
    /// S21 broken: a repairing segment ends its repair after complete gossip answers from
    /// two distinct peers instead of three.
    RepairClearsEarly,
    /// S21 as first written: the gossip answers alone end a repair, in the epoch of the
    /// loss, while a writer may still count the acks the segment gave before it.
    RepairEndsInLossEpoch,
}

impl Bug {
    pub const ALL: &'static [Bug] = &[
        Bug::WriteQuorum3,
        Bug::CommitAtVcl,
        Bug::NoTruncation,
        Bug::NoFencing,
        Bug::RecoveryReadQuorum2,
        Bug::UnfencedRecoveryReads,
        Bug::GossipIgnoresEpoch,
        Bug::TruncationUnion,
        Bug::RecoverySendsOwnRange,
        Bug::StaleReadAfterFencing,
        Bug::LeaseNotWaited,
        Bug::RepairingCountsInRecovery,
        Bug::RepairClearsEarly,
        Bug::RepairEndsInLossEpoch,
    ];

    pub const NAMES: &'static [&'static str] = &[
        "write-quorum-3",
        "commit-at-vcl",
        "no-truncation",
        "no-fencing",
        "recovery-read-quorum-2",
        "unfenced-recovery-reads",
        "gossip-ignores-epoch",
        "truncation-union",
        "recovery-sends-own-range",
        "stale-read-after-fencing",
        "lease-not-waited",
        "repairing-counts-in-recovery",
        "repair-clears-early",
        "repair-ends-in-loss-epoch",
    ];

    /// The smallest named config in which the mutant is caught (what `--bug` uses when no
    /// `--config` is given).
    pub fn config(self) -> Config {
        match self {
            Bug::NoTruncation => Config::two_recoveries(),
            Bug::UnfencedRecoveryReads => Config::failover(),
            Bug::TruncationUnion | Bug::RecoverySendsOwnRange => Config::history(),
            Bug::StaleReadAfterFencing | Bug::LeaseNotWaited => Config::lease(),
            Bug::RepairingCountsInRecovery
            | Bug::RepairClearsEarly
            | Bug::RepairEndsInLossEpoch => Config::disk_loss(),
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

/// An unknown model, config or bug name, with the valid ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub valid: &'static [&'static str],
}

impl UnknownName {
    pub fn new(kind: &'static str, name: &str, valid: &'static [&'static str]) -> Self {
        UnknownName {
            kind,
            name: name.to_string(),
            valid,
        }
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; valid: {}",
            self.kind,
            self.name,
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}
