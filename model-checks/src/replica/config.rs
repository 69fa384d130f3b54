//! Sizes of the replica model and the mutants it can be switched to.

use std::fmt;
use std::str::FromStr;

use super::state::{LSN_CAP_MAX, Lsn, PAGES_MAX, REPLICAS_MAX};
use crate::quorum::UnknownName;

/// The pages of an MTR's records, in LSN order (L2: contiguous LSNs, the last a CPL).
pub type MtrShape = &'static [u8];

/// Bounds that make the state space finite; every interleaving below them is explored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub name: &'static str,
    /// 1 or 2 replicas.
    pub replicas: usize,
    /// Pages of the volume (1..=3).
    pub pages: usize,
    /// Pages a replica may hold or be reading at once.
    pub cache_pages: usize,
    /// No LSN above this is allocated.
    pub lsn_cap: Lsn,
    /// MTR shapes the writer may allocate.
    pub mtr_shapes: &'static [MtrShape],
    /// Whether the stream may lose a message (it always reorders; duplicates change nothing).
    pub lossy: bool,
    /// Whether a replica may resync after a loss (P7).
    pub resync: bool,
    /// Whether a replica may be promoted when the writer is lost (P9).
    pub failover: bool,
}

const SMALL_SHAPES: &[MtrShape] = &[&[0], &[1, 0]];
const LARGE_SHAPES: &[MtrShape] = &[&[0], &[1], &[0, 1], &[1, 0]];

impl Config {
    /// Runs in `cargo test` in seconds: one replica caching one of two pages, three LSNs,
    /// a lossy stream, resync and a failover.
    pub fn small() -> Self {
        Config {
            name: "small",
            replicas: 1,
            pages: 2,
            cache_pages: 1,
            lsn_cap: 3,
            mtr_shapes: SMALL_SHAPES,
            lossy: true,
            resync: true,
            failover: true,
        }
    }

    /// Small with two replicas and two LSNs: PGMRPL is a minimum over replicas, and a
    /// promotion leaves a replica following.
    pub fn two_replicas() -> Self {
        Config {
            name: "two-replicas",
            replicas: 2,
            lsn_cap: 2,
            ..Self::small()
        }
    }

    /// Two replicas each caching both pages, four LSNs, every MTR shape of 1–2 records
    /// over two pages. Run it with a time budget.
    pub fn large() -> Self {
        Config {
            name: "large",
            replicas: 2,
            cache_pages: 2,
            lsn_cap: 4,
            mtr_shapes: LARGE_SHAPES,
            ..Self::small()
        }
    }

    /// The configuration the docs quote: one replica, three pages of which it caches two,
    /// four LSNs, MTRs of one and two records.
    pub fn reference() -> Self {
        Config {
            name: "reference",
            pages: 3,
            cache_pages: 2,
            lsn_cap: 4,
            mtr_shapes: &[&[0], &[1, 2], &[2, 0]],
            ..Self::small()
        }
    }

    pub const NAMES: &'static [&'static str] = &["small", "reference", "two-replicas", "large"];

    pub fn named(name: &str) -> Result<Self, UnknownName> {
        match name {
            "small" => Ok(Self::small()),
            "reference" => Ok(Self::reference()),
            "two-replicas" => Ok(Self::two_replicas()),
            "large" => Ok(Self::large()),
            _ => Err(UnknownName::new("config", name, Self::NAMES)),
        }
    }

    /// Refuses a configuration the model cannot represent.
    pub fn validate(&self) -> Result<(), String> {
        if self.replicas == 0 || self.replicas > REPLICAS_MAX {
            return Err(format!(
                "replicas {} is not 1..={REPLICAS_MAX}",
                self.replicas
            ));
        }
        if self.pages == 0 || self.pages > PAGES_MAX {
            return Err(format!("pages {} is not 1..={PAGES_MAX}", self.pages));
        }
        if self.lsn_cap == 0 || self.lsn_cap > LSN_CAP_MAX {
            return Err(format!("lsn_cap {} is not 1..={LSN_CAP_MAX}", self.lsn_cap));
        }
        let bad_shape = self
            .mtr_shapes
            .iter()
            .any(|shape| shape.is_empty() || shape.iter().any(|page| *page as usize >= self.pages));
        if bad_shape {
            return Err("an MTR shape is empty or names a missing page".into());
        }
        Ok(())
    }
}

/// Mutants: one replica rule broken on purpose; each must be caught by a named property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// P4 broken: a record is applied to a held page as soon as it arrives, above the VDL.
    ApplyAboveVdl,
    /// P3, P4 broken: the read point moves to the highest LSN held without a gap at or
    /// below the VDL heard, which may be inside an MTR.
    ApplyPartialMtr,
    /// P5 broken: a record of a page the replica does not hold materialises the page from
    /// the redo alone, with no base from storage.
    ApplyWithoutBase,
    /// P8, R4 broken: PGMRPL is the writer's VDL; replicas' read points are ignored.
    GcIgnoresReplicaReadPoint,
    /// P8 broken: a replica reports its read point, not the lowest point of its open reads.
    ReportIgnoresOpenReads,
    /// P6 broken: a page read from storage is cached as it arrived, not brought up to the
    /// replica's current read point.
    MissNotCaughtUp,
    /// P9 broken: a promoted replica applies every record it holds, also those above the
    /// recovered VDL.
    PromoteAppliesAboveVdl,
}

impl Bug {
    pub const ALL: &'static [Bug] = &[
        Bug::ApplyAboveVdl,
        Bug::ApplyPartialMtr,
        Bug::ApplyWithoutBase,
        Bug::GcIgnoresReplicaReadPoint,
        Bug::ReportIgnoresOpenReads,
        Bug::MissNotCaughtUp,
        Bug::PromoteAppliesAboveVdl,
    ];

    pub const NAMES: &'static [&'static str] = &[
        "apply-above-vdl",
        "apply-partial-mtr",
        "apply-to-uncached-page-without-base",
        "gc-ignores-replica-read-point",
        "report-ignores-open-reads",
        "miss-not-caught-up",
        "promote-applies-above-vdl",
    ];

    /// The smallest named config in which the mutant is caught.
    pub fn config(self) -> Config {
        Config::small()
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
