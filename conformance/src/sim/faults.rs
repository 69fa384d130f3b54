//! The fault model (docs/conformance.md): which faults a run may inject, with rates drawn
//! from the seed.

use super::rng::SimRng;

/// One fault the simulator injects at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    CrashNode,
    RestartNode,
    CrashWriter,
    SecondWriter,
    Partition,
    HealPartition,
    BitFlip,
    Misdirected,
    DiskError,
}

/// The faults a run may inject. Network faults (loss, duplication, reordering and delay)
/// are rates of the network; the rest are events drawn per tick.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSet {
    pub loss: bool,
    pub duplication: bool,
    pub reordering: bool,
    pub partitions: bool,
    pub node_crashes: bool,
    pub writer_crashes: bool,
    pub second_writers: bool,
    /// Crashes tear unsynced writes and drop some of them (else unsynced writes all survive).
    pub torn_writes: bool,
    pub bit_flips: bool,
    pub misdirected_writes: bool,
    pub disk_errors: bool,
}

/// Names accepted by `--faults`.
pub const FAULT_NAMES: [&str; 11] = [
    "loss",
    "duplication",
    "reordering",
    "partitions",
    "node-crashes",
    "writer-crashes",
    "second-writers",
    "torn-writes",
    "bit-flips",
    "misdirected-writes",
    "disk-errors",
];

/// Chance per tick that some fault event happens.
const FAULT_EVENT_CHANCE: f64 = 0.04;

impl FaultSet {
    pub fn all() -> FaultSet {
        FaultSet {
            loss: true,
            duplication: true,
            reordering: true,
            partitions: true,
            node_crashes: true,
            writer_crashes: true,
            second_writers: true,
            torn_writes: true,
            bit_flips: true,
            misdirected_writes: true,
            disk_errors: true,
        }
    }

    pub fn none() -> FaultSet {
        FaultSet {
            loss: false,
            duplication: false,
            reordering: false,
            partitions: false,
            node_crashes: false,
            writer_crashes: false,
            second_writers: false,
            torn_writes: false,
            bit_flips: false,
            misdirected_writes: false,
            disk_errors: false,
        }
    }

    /// Parses a comma-separated list of [`FAULT_NAMES`], or `all`, or `none`.
    pub fn parse(list: &str) -> Result<FaultSet, String> {
        let mut set = FaultSet::none();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => set = FaultSet::all(),
                "none" => set = FaultSet::none(),
                "loss" => set.loss = true,
                "duplication" => set.duplication = true,
                "reordering" => set.reordering = true,
                "partitions" => set.partitions = true,
                "node-crashes" => set.node_crashes = true,
                "writer-crashes" => set.writer_crashes = true,
                "second-writers" => set.second_writers = true,
                "torn-writes" => set.torn_writes = true,
                "bit-flips" => set.bit_flips = true,
                "misdirected-writes" => set.misdirected_writes = true,
                "disk-errors" => set.disk_errors = true,
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; known: all, none, {}",
                        FAULT_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(set)
    }

    fn events(&self) -> Vec<(Fault, u32)> {
        let mut events = Vec::new();
        let mut add = |on: bool, fault: Fault, weight: u32| {
            if on {
                events.push((fault, weight));
            }
        };
        add(self.node_crashes, Fault::CrashNode, 6);
        add(self.node_crashes, Fault::RestartNode, 10);
        add(self.writer_crashes, Fault::CrashWriter, 2);
        add(self.second_writers, Fault::SecondWriter, 1);
        add(self.partitions, Fault::Partition, 3);
        add(self.partitions, Fault::HealPartition, 5);
        add(self.bit_flips, Fault::BitFlip, 2);
        add(self.misdirected_writes, Fault::Misdirected, 1);
        add(self.disk_errors, Fault::DiskError, 2);
        events
    }

    /// The fault event of this tick, if any.
    pub fn draw(&self, rng: &mut SimRng) -> Option<Fault> {
        if !rng.chance(FAULT_EVENT_CHANCE) {
            return None;
        }
        let events = self.events();
        let total: u32 = events.iter().map(|&(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut pick = rng.below(u64::from(total)) as u32;
        for (fault, weight) in events {
            if pick < weight {
                return Some(fault);
            }
            pick -= weight;
        }
        None
    }
}
