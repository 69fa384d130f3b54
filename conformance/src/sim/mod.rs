//! The deterministic simulator: the real protocol code — `WriterState`, `RecoveryPlanner`,
//! and the storage engine (`StorageNode`) on the fault-injecting disk — driven on simulated
//! time, network and disk, every choice drawn from one seed.
//!
//! A run has a safety phase (faults on, invariants checked after every step) and a liveness
//! phase (faults healed: every PG must converge and commits must resume within a bounded
//! simulated time). The same seed gives the same run, and the same trace hash.

mod faults;
mod network;
mod node;
mod oracle;
mod rng;
mod sql;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sixfold_core::{Epoch, Lsn, PageId, PgId, SEGMENTS_PER_PG, SegmentId};

pub use faults::{FAULT_NAMES, Fault, FaultSet};
use network::{Message, Network};
use node::SimNode;
use oracle::Oracle;
pub use rng::SimRng;
pub use sql::SqlRun;
use writer::{SimWriter, WriterOutput};

use crate::trace::{SimEvent, Trace, TraceEvent};

/// Pages per PG in the simulation (two PGs of four pages).
pub const SIM_PG_PAGES: u32 = 4;
pub const SIM_PGS: u32 = 2;
pub const SIM_NODES: usize = SEGMENTS_PER_PG;
/// LSN allocation limit in the simulation: small, so back-pressure and truncation ranges
/// are exercised.
pub const SIM_LAL: u64 = 48;
/// Simulated time units (ticks) the safety phase lasts at most.
pub const SAFETY_TICKS_MAX: u64 = 20_000;
/// LAL of a run in the model's scope: the model's LSNs are 4 bits, and every recovery voids
/// LAL of them.
pub const MODEL_SCOPE_LAL: u64 = 2;
/// In the model's scope the safety phase allocates no LSN above this, which leaves room for
/// three more recoveries (LAL each) and the liveness phase's commit below the model's
/// highest LSN, 15.
const MODEL_SCOPE_SAFETY_LSN_MAX: u64 = 8;
/// The model's highest LSN (`model-checks` `LSN_CAP_MAX`).
const MODEL_SCOPE_LSN_MAX: u64 = 15;
/// Writers a run in the model's scope starts during its safety phase.
const MODEL_SCOPE_WRITERS_MAX: usize = 3;
/// Simulated ticks the healed cluster gets to converge and commit again (liveness bound).
pub const LIVENESS_TICKS_MAX: u64 = 40_000;
/// How often the liveness phase asks whether every segment caught up.
const CONVERGENCE_CHECK_EVERY_TICKS: u64 = 32;

/// What to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub faults: FaultSet,
    /// MTRs the workload submits in the safety phase.
    pub mtrs: usize,
    /// An implementation mutant to switch on (tests show the checks catch it).
    pub mutant: Option<Mutant>,
    pub scope: Scope,
    pub workload: Workload,
}

/// Who writes to the volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workload {
    /// MTRs of random pages, each record writing its own LSN (`mtrs` of them).
    #[default]
    Pages,
    /// Stock SQLite through the VFS (`mtrs` statements), checked at the end against stock
    /// SQLite fed the statements that took effect.
    Sql,
}

impl Workload {
    pub fn parse(name: &str) -> Option<Workload> {
        match name {
            "pages" => Some(Workload::Pages),
            "sql" => Some(Workload::Sql),
            _ => None,
        }
    }
}

/// How large a world a run may reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// LAL 48, MTRs of 1–3 records, as many LSNs as the run allocates.
    #[default]
    Full,
    /// Inside the stateright model's bounds, so that the trace can also be replayed through
    /// the model's own transitions (`crate::refine`): LAL 2, every LSN ≤ 15, MTRs of 1–2
    /// records on the first page of each PG (the model has one page per PG), at most three
    /// writers in the safety phase and one commit to reach after healing. Faults are the
    /// same.
    Model,
}

/// What the workload may submit at a tick.
#[derive(Clone, Copy, Debug)]
pub struct SubmitLimits {
    /// Records of one MTR: 1 to this.
    pub records_max: u64,
    /// No MTR whose last LSN is above this.
    pub lsn_max: u64,
    /// Write only the first page of each PG: the model has one page per PG, so that a
    /// page's LSN is its PG's, and reads can be checked against the model (R3).
    pub first_page_of_each_pg: bool,
}

impl Scope {
    pub fn parse(name: &str) -> Option<Scope> {
        match name {
            "full" => Some(Scope::Full),
            "model" => Some(Scope::Model),
            _ => None,
        }
    }

    pub fn lal(self) -> u64 {
        match self {
            Scope::Full => SIM_LAL,
            Scope::Model => MODEL_SCOPE_LAL,
        }
    }

    fn safety_ticks(self) -> u64 {
        match self {
            Scope::Full => SAFETY_TICKS_MAX,
            Scope::Model => SAFETY_TICKS_MAX / 8,
        }
    }

    /// Commits the healed cluster must acknowledge (liveness).
    fn liveness_commits(self) -> usize {
        match self {
            Scope::Full => 3,
            Scope::Model => 1,
        }
    }

    fn submit_limits(self, liveness: bool) -> SubmitLimits {
        match (self, liveness) {
            (Scope::Full, _) => SubmitLimits {
                records_max: 3,
                lsn_max: u64::MAX,
                first_page_of_each_pg: false,
            },
            (Scope::Model, false) => SubmitLimits {
                records_max: 2,
                lsn_max: MODEL_SCOPE_SAFETY_LSN_MAX,
                first_page_of_each_pg: true,
            },
            (Scope::Model, true) => SubmitLimits {
                records_max: 1,
                lsn_max: MODEL_SCOPE_LSN_MAX,
                first_page_of_each_pg: true,
            },
        }
    }

    /// Whether one more writer may start in the safety phase.
    fn may_start_writer(self, started: usize) -> bool {
        self == Scope::Full || started < MODEL_SCOPE_WRITERS_MAX
    }
}

/// Bugs planted in the implementation, to show the checks and trace validation catch them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// Storage acknowledges a write before it is durable (S1 broken).
    AckBeforeFsync,
    /// The writer acknowledges a commit once VCL reaches its MTR's first record, as the SIGMOD
    /// 2018 paper words it, instead of once VDL reaches its CPL (C4 broken).
    CommitAtVcl,
    /// The writer sends VCL as its VDL hint (W5 broken): recovery may land inside an MTR.
    HintAtVcl,
    /// Recovery writes no truncation range (X4 broken).
    RecoveryWithoutTruncation,
    /// Segments merge truncation ranges one by one instead of adopting the newest history
    /// whole (S15 broken): a never-completed recovery's range outlives the recovery that
    /// overrode it, and the segment refuses records that recovery kept.
    TruncationUnion,
    /// Segments serve reads without holding the reader's truncation history (S15 broken).
    ReadWithoutHistory,
}

impl Mutant {
    pub const ALL: [(&'static str, Mutant); 6] = [
        ("ack-before-fsync", Mutant::AckBeforeFsync),
        ("commit-at-vcl", Mutant::CommitAtVcl),
        ("hint-at-vcl", Mutant::HintAtVcl),
        (
            "recovery-without-truncation",
            Mutant::RecoveryWithoutTruncation,
        ),
        ("truncation-union", Mutant::TruncationUnion),
        ("read-without-history", Mutant::ReadWithoutHistory),
    ];

    pub fn parse(name: &str) -> Option<Mutant> {
        Mutant::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, m)| m)
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub trace_hash: u64,
    pub acknowledged: usize,
    pub recoveries: usize,
    pub final_vdl: Lsn,
    pub ticks: u64,
    /// The first violated check, if any.
    pub failure: Option<String>,
    /// In the model's scope: what the replay through the model covered.
    pub refined: Option<crate::refine::Refined>,
    /// With SQLite on the volume: what it ran.
    pub sql: Option<SqlRun>,
    pub trace: Trace,
}

impl SimOutcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The whole simulated world.
struct World {
    rng: SimRng,
    options: SimOptions,
    now: u64,
    network: Network,
    nodes: Vec<SimNode>,
    writers: Vec<SimWriter>,
    oracle: Oracle,
    trace: Trace,
    next_epoch: u64,
    mtrs_submitted: usize,
    recoveries: usize,
    /// Nodes whose disk took a bit flip not yet repaired: at most one per PG (AZ+1).
    corrupted: BTreeMap<usize, u64>,
    /// In the liveness phase: commits to reach, after which the workload stops so the
    /// segments can converge.
    liveness_target: Option<usize>,
    /// (epoch, VDL) of each recovery whose writer opened, in order.
    opened: Vec<(Epoch, Lsn)>,
    /// The first failed check of a run driven from outside (SQLite on the volume).
    failure: Option<String>,
    sql_summary: Option<SqlRun>,
    /// SQL commits whose writer stopped before acknowledging them, and of those, the ones
    /// the next recovery truncated.
    commits_settled_by_recovery: usize,
    commits_void: usize,
    /// Void commits during the SQL statement running now.
    commits_void_in_statement: usize,
}

pub fn segment(pg: u32, replica: usize) -> SegmentId {
    SegmentId {
        pg: PgId(pg),
        replica: replica as u8,
    }
}

pub fn all_pages() -> Vec<PageId> {
    (0..SIM_PGS * SIM_PG_PAGES)
        .map(|page_no| PageId::new(1, page_no))
        .collect()
}

/// Runs one seed. A panic anywhere in the code under test is a failure of the seed, not of
/// the simulator.
pub fn run(options: SimOptions) -> SimOutcome {
    let seed = options.seed;
    let workload = options.workload;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match workload {
        Workload::Pages => run_unguarded(options),
        Workload::Sql => sql::run_unguarded(options),
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        SimOutcome {
            seed,
            trace_hash: 0,
            acknowledged: 0,
            recoveries: 0,
            final_vdl: Lsn::ZERO,
            ticks: 0,
            failure: Some(format!("panicked: {message}")),
            refined: None,
            sql: None,
            trace: Trace::default(),
        }
    })
}

fn run_unguarded(options: SimOptions) -> SimOutcome {
    let mut world = World::new(options);
    // Trace validation: every run's trace must be a sequence of steps the rules allow, and
    // in the model's scope a sequence of the model's own steps.
    let mut refined = None;
    let failure = world
        .run()
        .err()
        .or_else(|| {
            crate::validate::validate(&world.trace)
                .err()
                .map(|violation| format!("trace validation: {violation}"))
        })
        .or_else(|| {
            if world.options.scope != Scope::Model {
                return None;
            }
            match crate::refine::refine(&world.trace, world.options.scope.lal()) {
                Ok(report) => {
                    refined = Some(report);
                    None
                }
                Err(violation) => Some(format!("model refinement: {violation}")),
            }
        });
    world.outcome(failure, refined)
}

impl World {
    /// How the run ended, for the report.
    fn outcome(
        &mut self,
        failure: Option<String>,
        refined: Option<crate::refine::Refined>,
    ) -> SimOutcome {
        let final_vdl = self
            .writers
            .last()
            .and_then(|w| w.vdl())
            .unwrap_or(Lsn::ZERO);
        SimOutcome {
            seed: self.options.seed,
            trace_hash: self.trace.hash(),
            acknowledged: self.oracle.acknowledged_count(),
            recoveries: self.recoveries,
            final_vdl,
            ticks: self.now,
            failure,
            refined,
            sql: self.sql_summary.take(),
            trace: std::mem::take(&mut self.trace),
        }
    }

    fn new(options: SimOptions) -> World {
        let mut rng = SimRng::new(options.seed);
        let network = Network::new(&mut rng, &options.faults);
        let nodes = (0..SIM_NODES)
            .map(|index| {
                let mut node = SimNode::start(index, rng.next_u64(), options.mutant);
                node.set_torn_writes(options.faults.torn_writes);
                node
            })
            .collect();
        World {
            rng,
            now: 0,
            network,
            nodes,
            writers: Vec::new(),
            oracle: Oracle::default(),
            trace: Trace::default(),
            next_epoch: 1,
            mtrs_submitted: 0,
            recoveries: 0,
            corrupted: BTreeMap::new(),
            liveness_target: None,
            opened: Vec::new(),
            failure: None,
            sql_summary: None,
            commits_settled_by_recovery: 0,
            commits_void: 0,
            commits_void_in_statement: 0,
            options,
        }
    }

    fn run(&mut self) -> Result<(), String> {
        self.start_writer(None);
        // Safety phase: faults on.
        let safety_ticks = self.options.scope.safety_ticks();
        while self.now < safety_ticks && self.mtrs_submitted < self.options.mtrs {
            self.step(true)?;
        }
        // Liveness phase: heal, then everything must converge and commit.
        self.heal();
        let deadline = self.now + LIVENESS_TICKS_MAX;
        let target = self.oracle.acknowledged_count() + self.options.scope.liveness_commits();
        self.liveness_target = Some(target);
        while self.now < deadline {
            self.step(false)?;
            // Convergence is checked every few ticks: asking every segment costs.
            if self.now.is_multiple_of(CONVERGENCE_CHECK_EVERY_TICKS)
                && self.oracle.acknowledged_count() >= target
                && self.converged()
            {
                return self.final_checks();
            }
        }
        Err(format!(
            "liveness: not converged with commits resumed within {LIVENESS_TICKS_MAX} ticks after healing \
             (acknowledged {} of {target}, writer {}; lagging: {})",
            self.oracle.acknowledged_count(),
            self.writers.last().map_or("none".into(), |w| w.describe()),
            self.lagging().join(", ")
        ))
    }

    fn record(&mut self, actor: &str, event: TraceEvent) {
        self.trace.push(self.now, actor, event);
    }

    /// One simulated tick: faults, node work, writer work, message deliveries, checks.
    fn step(&mut self, faults_on: bool) -> Result<(), String> {
        self.now += 1;
        if faults_on {
            self.inject_faults();
        }
        for index in 0..self.nodes.len() {
            let output = self.nodes[index].tick(self.now, &mut self.rng);
            self.dispatch_node_output(index, output);
        }
        self.tick_writers(faults_on)?;
        for message in self.network.due(self.now, &mut self.rng) {
            self.deliver(message)?;
        }
        self.check_invariants()
    }

    fn start_writer(&mut self, keep_old_running: Option<bool>) {
        let epoch = Epoch(self.next_epoch);
        self.next_epoch += 1;
        if keep_old_running != Some(true) {
            for writer in &mut self.writers {
                writer.crash();
            }
        }
        let id = self.writers.len();
        let writer = SimWriter::start(id, epoch, self.options.scope.lal(), self.options.mutant);
        self.record(
            &format!("writer{id}"),
            TraceEvent::Sim(SimEvent::WriterStarted { epoch: epoch.0 }),
        );
        for message in writer.recovery_queries() {
            self.network.send(self.now, message, &mut self.rng);
        }
        self.writers.push(writer);
    }

    fn tick_writers(&mut self, faults_on: bool) -> Result<(), String> {
        for id in 0..self.writers.len() {
            let may_submit = match self.liveness_target {
                None => self.mtrs_submitted < self.options.mtrs,
                Some(target) => self.oracle.acknowledged_count() < target,
            };
            let _ = faults_on;
            let limits = self
                .options
                .scope
                .submit_limits(self.liveness_target.is_some());
            let output =
                self.writers[id].tick(self.now, &mut self.rng, may_submit.then_some(limits));
            self.handle_writer_output(id, output)?;
        }
        Ok(())
    }

    fn handle_writer_output(&mut self, id: usize, output: WriterOutput) -> Result<(), String> {
        let actor = format!("writer{id}");
        for event in output.events {
            self.record(&actor, event);
        }
        for mtr in output.submitted {
            self.mtrs_submitted += 1;
            self.oracle
                .submitted(&mtr)
                .map_err(|e| format!("{actor}: {e}"))?;
        }
        for plan in output.recovered {
            self.recoveries += 1;
            self.opened.push((plan.epoch, plan.vdl));
            self.oracle
                .recovered(plan.epoch, plan.vdl, plan.truncation)
                .map_err(|e| format!("{actor}: {e}"))?;
        }
        for lsn in output.acknowledged {
            self.check_durable_at_ack(lsn)?;
            self.oracle.acknowledged(lsn);
        }
        for message in output.messages {
            self.network.send(self.now, message, &mut self.rng);
        }
        if output.restart && self.options.scope.may_start_writer(self.writers.len()) {
            // X8: the attempt is abandoned; the next one, at a higher epoch, is a new
            // writer in the trace, as after a crash.
            self.record("sim", TraceEvent::Sim(SimEvent::WriterCrashed));
            self.start_writer(Some(false));
        }
        Ok(())
    }

    fn dispatch_node_output(&mut self, index: usize, output: node::NodeOutput) {
        let actor = format!("node{index}");
        for event in output.events {
            self.record(&actor, event);
        }
        for message in output.messages {
            self.network.send(self.now, message, &mut self.rng);
        }
    }

    fn deliver(&mut self, message: Message) -> Result<(), String> {
        match message.destination() {
            network::Destination::Node(index) => {
                let output = self.nodes[index].handle(self.now, message);
                self.dispatch_node_output(index, output);
            }
            network::Destination::Writer(id) => {
                let output = self.writers[id].handle(message);
                self.handle_writer_output(id, output)?;
            }
        }
        Ok(())
    }

    fn inject_faults(&mut self) {
        let faults = self.options.faults.clone();
        let Some(fault) = faults.draw(&mut self.rng) else {
            return;
        };
        match fault {
            Fault::CrashNode => {
                let index = self.rng.below(SIM_NODES as u64) as usize;
                if self.nodes[index].is_up() {
                    self.nodes[index].crash();
                    self.record(
                        &format!("node{index}"),
                        TraceEvent::Sim(SimEvent::NodeCrashed),
                    );
                }
            }
            Fault::RestartNode => {
                for index in 0..SIM_NODES {
                    if !self.nodes[index].is_up() {
                        let result = self.nodes[index].restart();
                        self.record(
                            &format!("node{index}"),
                            TraceEvent::Sim(SimEvent::NodeRestarted { ok: result.is_ok() }),
                        );
                        break;
                    }
                }
            }
            Fault::CrashWriter | Fault::SecondWriter
                if !self.options.scope.may_start_writer(self.writers.len()) => {}
            Fault::CrashWriter => {
                self.record("sim", TraceEvent::Sim(SimEvent::WriterCrashed));
                self.start_writer(Some(false));
            }
            Fault::SecondWriter => {
                self.record("sim", TraceEvent::Sim(SimEvent::SecondWriterStarted));
                self.start_writer(Some(true));
            }
            Fault::Partition => {
                let kind = self.network.partition(&mut self.rng);
                self.record("sim", TraceEvent::Sim(SimEvent::Partitioned { kind }));
            }
            Fault::HealPartition => {
                self.network.heal();
                self.record("sim", TraceEvent::Sim(SimEvent::PartitionHealed));
            }
            Fault::BitFlip | Fault::Misdirected => {
                let index = self.rng.below(SIM_NODES as u64) as usize;
                // AZ+1: corrupt at most one node's disk at a time.
                if self.corrupted.is_empty() && self.nodes[index].is_up() {
                    let event = if fault == Fault::Misdirected {
                        self.nodes[index]
                            .misdirect(&mut self.rng)
                            .map(|write| SimEvent::MisdirectedWrite { write })
                    } else {
                        self.nodes[index]
                            .flip_bit(&mut self.rng)
                            .map(|path| SimEvent::DiskCorrupted { path, bytes: 1 })
                    };
                    if let Some(event) = event {
                        self.corrupted.insert(index, self.now);
                        self.record(&format!("node{index}"), TraceEvent::Sim(event));
                    }
                }
            }
            Fault::DiskError => {
                let index = self.rng.below(SIM_NODES as u64) as usize;
                self.nodes[index].arm_disk_error(&mut self.rng);
            }
        }
        // A corrupted node is repaired by a crash-restart cycle (scrub on open) later.
        let repaired: Vec<usize> = self
            .corrupted
            .iter()
            .filter(|&(_, &at)| self.now > at + 2_000)
            .map(|(&index, _)| index)
            .collect();
        for index in repaired {
            self.corrupted.remove(&index);
        }
    }

    fn heal(&mut self) {
        self.record("sim", TraceEvent::Sim(SimEvent::Healed));
        self.network.heal_all();
        for index in 0..SIM_NODES {
            self.nodes[index].clear_disk_faults();
            if !self.nodes[index].is_up() {
                let result = self.nodes[index].restart();
                self.record(
                    &format!("node{index}"),
                    TraceEvent::Sim(SimEvent::NodeRestarted { ok: result.is_ok() }),
                );
            }
        }
        // Old writers stop; the newest one stays, or a new one recovers if it was fenced.
        let newest = self.writers.len() - 1;
        for writer in &mut self.writers[..newest] {
            writer.crash();
        }
        if self.writers[newest].is_fenced() || !self.writers[newest].is_alive() {
            self.start_writer(Some(false));
        }
    }

    /// Segments behind the PG's last LSN at VDL, for the liveness report.
    fn lagging(&self) -> Vec<String> {
        let Some(writer) = self.writers.last() else {
            return Vec::new();
        };
        let vdl = writer.vdl().unwrap_or(Lsn::ZERO);
        let mut lagging = Vec::new();
        for pg in 0..SIM_PGS {
            let needed = writer.pg_lsn_at(PgId(pg), vdl);
            for node in &self.nodes {
                let segment = segment(pg, node.index());
                let scl = node.scl(segment);
                if !node.holds_history_of(writer.truncation()) {
                    lagging.push(format!(
                        "{segment} lacks the writer's truncation history (S15; {})",
                        node.describe(segment)
                    ));
                } else if scl < Some(needed) {
                    lagging.push(format!(
                        "{segment} SCL {scl:?} < {needed} ({})",
                        node.describe(segment)
                    ));
                }
            }
        }
        lagging
    }

    fn converged(&self) -> bool {
        let Some(writer) = self.writers.last() else {
            return false;
        };
        let Some(vdl) = writer.vdl() else {
            return false;
        };
        (0..SIM_PGS).all(|pg| {
            let needed = writer.pg_lsn_at(PgId(pg), vdl);
            // S15: caught up means the writer's truncation history too.
            self.nodes.iter().all(|node| {
                node.scl(segment(pg, node.index())) >= Some(needed)
                    && node.holds_history_of(writer.truncation())
            })
        })
    }

    /// Acknowledged ⇒ durable: every record of the MTR is durable at a write quorum of its PG.
    fn check_durable_at_ack(&self, commit_lsn: Lsn) -> Result<(), String> {
        for record in self.oracle.mtr_records(commit_lsn) {
            let holders = self
                .nodes
                .iter()
                .filter(|node| node.durably_holds(segment(record.pg.0, node.index()), record.lsn))
                .count();
            if holders < 4 {
                return Err(format!(
                    "acknowledged => durable: commit {commit_lsn} acknowledged while record {} is durable at {holders} of 6 segments of pg{} (S1, C4)",
                    record.lsn, record.pg
                ));
            }
        }
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), String> {
        for writer in &self.writers {
            if let Some((vcl, vdl)) = writer.vcl_vdl()
                && vdl > vcl
            {
                return Err(format!("{}: VDL {vdl} > VCL {vcl} (C3)", writer.describe()));
            }
        }
        Ok(())
    }

    /// End of run: every acknowledged commit present, pages exact at VDL on every segment,
    /// segment logs of one PG agree above the GC point.
    fn final_checks(&mut self) -> Result<(), String> {
        let writer = self.writers.last().expect("a writer");
        let vdl = writer.vdl().expect("open writer");
        self.oracle.check_acknowledged_survive(vdl)?;
        for page in all_pages() {
            let expected = self.oracle.page_at(page, vdl);
            let pg = PgId(page.page_no / SIM_PG_PAGES);
            let required = writer.pg_lsn_at(pg, vdl);
            for node in &mut self.nodes {
                let segment = segment(pg.0, node.index());
                let image = node
                    .read_page(segment, writer.epoch(), page, vdl, required)
                    .map_err(|e| format!("final read of {page} at {vdl} from {segment}: {e}"))?
                    .bytes;
                if image != expected {
                    let first = image.iter().zip(&expected).position(|(a, b)| a != b);
                    return Err(format!(
                        "final read of {page} at {vdl} from {segment} differs from the oracle at byte {first:?} (R3, S9)"
                    ));
                }
            }
        }
        for pg in 0..SIM_PGS {
            let mut sets = Vec::new();
            for node in &self.nodes {
                sets.push(node.held_above_gc(segment(pg, node.index()), vdl));
            }
            let floor = sets
                .iter()
                .map(|(floor, _)| *floor)
                .max()
                .unwrap_or(Lsn::ZERO);
            let trimmed: Vec<Vec<Lsn>> = sets
                .into_iter()
                .map(|(_, lsns)| lsns.into_iter().filter(|&l| l > floor).collect())
                .collect();
            if trimmed.windows(2).any(|pair| pair[0] != pair[1]) {
                let mut text = String::new();
                for (index, lsns) in trimmed.iter().enumerate() {
                    let _ = write!(text, " node{index}:{lsns:?}");
                }
                return Err(format!(
                    "segment logs of pg{pg} disagree above the GC point {floor}:{text}"
                ));
            }
        }
        Ok(())
    }
}
