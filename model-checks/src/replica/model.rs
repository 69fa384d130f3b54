//! The stateright `Model` of read replicas (spec/replica.md, P1–P9): actions, transitions
//! and properties.

use stateright::{Model, Property};

use super::config::{Bug, Config};
use super::state::{Lsn, LsnSet, REPLICAS_MAX, Replica, State, Volume, bit, format_set, members};
use super::state::{contains, range};

/// One writer allocating MTRs and advancing VDL, storage holding every record up to the
/// durable point and collecting below PGMRPL, 1–2 replicas with a small cache, and an
/// asynchronous stream between them that reorders and loses.
#[derive(Clone, Debug)]
pub struct ReplicaModel {
    pub config: Config,
    pub bug: Option<Bug>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The writer allocates an MTR of this shape (index into `Config::mtr_shapes`) and
    /// streams its records to every replica (P2).
    Allocate(u8),
    /// One more LSN becomes durable at a write quorum (VCL advances).
    Persist,
    /// The writer's VDL advances to the highest durable CPL and is streamed (C3, P2).
    AdvanceVdl,
    DeliverRedo {
        replica: u8,
        lsn: Lsn,
    },
    LoseRedo {
        replica: u8,
        lsn: Lsn,
    },
    DeliverVdl {
        replica: u8,
        vdl: Lsn,
    },
    LoseVdl {
        replica: u8,
        vdl: Lsn,
    },
    /// A replica's oldest read point reaches the writer (P8).
    DeliverReport {
        replica: u8,
        point: Lsn,
    },
    LoseReport {
        replica: u8,
        point: Lsn,
    },
    /// A replica moves its read point to the VDL it heard and applies the records (P3, P4).
    Advance(u8),
    /// A replica misses a page and reads it from storage at its read point (P6).
    StartRead {
        replica: u8,
        page: u8,
    },
    /// Storage answers that read (or refuses it below its collection horizon, R3).
    FinishRead {
        replica: u8,
        page: u8,
    },
    Evict {
        replica: u8,
        page: u8,
    },
    /// A replica with a gap evicts everything and jumps to the VDL it heard (P7).
    Resync(u8),
    /// The writer sends PGMRPL to storage, which collects below it (R4, S10, P8).
    Collect,
    /// The writer is lost and this replica is promoted: recovery, a new epoch (P9).
    Promote(u8),
}

pub const CACHE_AT_READ_POINT: &str = "every page a replica holds is the volume at its read point";
pub const READ_POINT_IS_VDL: &str = "a replica's read point is a vdl the writer reached";
pub const WHOLE_MTRS: &str = "a replica's read point is never inside an mtr";
pub const READ_POINT_MONOTONIC: &str = "a replica's read point never goes backwards";
pub const NO_READ_REFUSED: &str = "storage never refuses a replica's read as collected";
pub const FAILOVER_EXPOSES_RECOVERED: &str = "a promoted replica holds exactly the volume at the recovered vdl, at or above the old writer's";
pub const REDO_APPLIED: &str = "a replica applies redo to a page it holds";
pub const LATE_READ_CAUGHT_UP: &str =
    "a page read at an older read point is brought up to the current one";
pub const STORAGE_COLLECTED: &str = "storage collects while replicas read";
pub const WARM_PROMOTION: &str = "a replica is promoted with a warm cache";
pub const WRITER_NEVER_WAITS: &str =
    "the writer reaches its last vdl while no replica has received anything";

/// The spec rules each property checks.
pub fn property_rules(name: &str) -> &'static [&'static str] {
    match name {
        CACHE_AT_READ_POINT => &["P4", "P5", "P6", "P7", "R3", "S9"],
        READ_POINT_IS_VDL => &["P2", "P3", "P4", "L2", "C3"],
        WHOLE_MTRS => &["P4", "L2"],
        READ_POINT_MONOTONIC => &["P3", "P7"],
        NO_READ_REFUSED => &["P8", "R3", "R4", "S10"],
        FAILOVER_EXPOSES_RECOVERED => &["P9", "X4", "C3"],
        REDO_APPLIED => &["P4"],
        LATE_READ_CAUGHT_UP => &["P6"],
        STORAGE_COLLECTED => &["P8", "S10"],
        WARM_PROMOTION => &["P9"],
        WRITER_NEVER_WAITS => &["P1", "P2"],
        _ => &[],
    }
}

impl ReplicaModel {
    pub fn new(config: Config, bug: Option<Bug>) -> Self {
        ReplicaModel { config, bug }
    }

    fn replica_indexes(&self) -> std::ops::Range<usize> {
        0..self.config.replicas
    }

    /// Where `Advance` moves a replica's read point (itself when it cannot move).
    fn advance_target(&self, replica: &Replica) -> Lsn {
        let from = replica.read_point;
        if self.bug == Some(Bug::ApplyPartialMtr) {
            let mut to = from;
            while to < replica.heard_vdl && contains(replica.held, to + 1) {
                to += 1;
            }
            return to;
        }
        let to = replica.heard_vdl;
        let gap = range(from, to) & !replica.held;
        if to > from && gap == 0 { to } else { from }
    }

    /// PGMRPL as the writer computes it (R4, P8): its own read point is its VDL.
    fn horizon(&self, volume: &Volume) -> Lsn {
        if self.bug == Some(Bug::GcIgnoresReplicaReadPoint) {
            return volume.vdl;
        }
        self.replica_indexes()
            .map(|index| volume.reported[index])
            .fold(volume.vdl, Lsn::min)
    }

    fn may_promote(&self, state: &State) -> bool {
        self.config.failover && state.volume.writer_alive
    }

    /// The replica's records in `(read point, to]`, applied to the pages it holds (P4);
    /// records of other pages are discarded (P5) unless the mutant materialises them.
    fn apply_up_to(&self, state: &mut State, index: usize, to: Lsn) {
        let State {
            volume,
            replicas,
            ghost,
            ..
        } = state;
        let replica = &mut replicas[index];
        for lsn in members(range(replica.read_point, to) & replica.held) {
            let page = volume.page_of[lsn as usize] as usize;
            match replica.cache[page].as_mut() {
                Some(content) => {
                    *content |= bit(lsn);
                    ghost.redo_applied_to_cache = true;
                }
                None if self.bug == Some(Bug::ApplyWithoutBase)
                    && replica.reading[page].is_none() =>
                {
                    replica.cache[page] = Some(bit(lsn));
                }
                None => {}
            }
        }
        set_read_point(ghost, replica, to);
        prune_held(volume, replica);
    }

    /// P8: a replica whose oldest read point rose tells the writer.
    fn report(&self, state: &mut State, index: usize) {
        let replica = &mut state.replicas[index];
        let oldest = if self.bug == Some(Bug::ReportIgnoresOpenReads) {
            replica.read_point
        } else {
            replica.oldest_read_point()
        };
        if oldest > replica.reported {
            replica.reported = oldest;
            state.stream.reports[index] |= bit(oldest);
        }
    }

    fn allocate(&self, state: &mut State, shape: usize) {
        let pages = self.config.mtr_shapes[shape];
        for page in pages {
            let lsn = state.volume.allocated + 1;
            state.volume.page_of[lsn as usize] = *page;
            state.volume.allocated = lsn;
            for index in self.replica_indexes() {
                state.stream.redo[index] |= bit(lsn);
            }
        }
        state.volume.cpls |= bit(state.volume.allocated);
    }

    fn advance_vdl(&self, state: &mut State) {
        let vdl = state.volume.cpl_at_or_below(state.volume.durable);
        state.volume.vdl = vdl;
        state.ghost.vdls |= bit(vdl);
        for index in self.replica_indexes() {
            state.stream.vdl[index] |= bit(vdl);
        }
    }

    fn deliver_redo(&self, state: &mut State, index: usize, lsn: Lsn) {
        let replica = &mut state.replicas[index];
        replica.held |= bit(lsn);
        if self.bug == Some(Bug::ApplyAboveVdl) {
            let page = state.volume.page_of[lsn as usize] as usize;
            if let Some(content) = replica.cache[page].as_mut() {
                *content |= bit(lsn);
            }
        }
    }

    fn finish_read(&self, state: &mut State, index: usize, page: usize) {
        let State {
            volume,
            replicas,
            ghost,
            ..
        } = state;
        let replica = &mut replicas[index];
        let Some(point) = replica.reading[page].take() else {
            return;
        };
        if point < volume.collected {
            ghost.read_refused = true;
        } else {
            let base = volume.page_at(page as u8, point);
            let newer = range(point, replica.read_point) & replica.held;
            let catch_up = if self.bug == Some(Bug::MissNotCaughtUp) {
                0
            } else {
                volume.records_of(page as u8, newer)
            };
            ghost.late_read_caught_up |= catch_up != 0;
            replica.cache[page] = Some(base | catch_up);
        }
        prune_held(volume, replica);
        self.report(state, index);
    }

    fn resync(&self, state: &mut State, index: usize) {
        let replica = &mut state.replicas[index];
        replica.cache = [None; super::state::PAGES_MAX];
        replica.reading = [None; super::state::PAGES_MAX];
        let to = replica.heard_vdl;
        set_read_point(&mut state.ghost, replica, to);
        prune_held(&state.volume, replica);
        self.report(state, index);
    }

    /// P9: recovery finds the highest durable CPL; the replica keeps its cache only as the
    /// volume at that point; the new writer streams its VDL to the other replicas.
    fn promote(&self, state: &mut State, index: usize) {
        let recovered = state.volume.cpl_at_or_below(state.volume.durable);
        state.ghost.old_writer_vdl = state.volume.vdl;
        state.ghost.recovered_vdl = Some(recovered);
        state.ghost.vdls |= bit(recovered);
        state.volume.writer_alive = false;
        state.volume.vdl = recovered;
        let replica = &mut state.replicas[index];
        replica.reading = [None; super::state::PAGES_MAX];
        if self.bug == Some(Bug::PromoteAppliesAboveVdl) {
            for lsn in members(replica.held) {
                let page = state.volume.page_of[lsn as usize] as usize;
                if let Some(content) = replica.cache[page].as_mut() {
                    *content |= bit(lsn);
                }
            }
        }
        let gap = range(replica.read_point, recovered) & !replica.held;
        if gap != 0 {
            replica.cache = [None; super::state::PAGES_MAX];
        }
        replica.held &= range(0, recovered);
        self.apply_up_to(state, index, recovered);
        let replica = &mut state.replicas[index];
        replica.held = 0;
        replica.promoted = true;
        state.ghost.warm_promotion |= replica.cache.iter().any(Option::is_some);
        for other in self.replica_indexes().filter(|other| *other != index) {
            state.stream.vdl[other] |= bit(recovered);
        }
    }

    /// Drops messages whose delivery can change nothing any more (a duplicate of them
    /// would change nothing either): a merge of equivalent states, not a restriction.
    fn drop_dead_messages(&self, state: &mut State) {
        for index in 0..REPLICAS_MAX {
            let replica = &state.replicas[index];
            let stream = &mut state.stream;
            if replica.promoted {
                stream.redo[index] = 0;
                stream.vdl[index] = 0;
            }
            stream.redo[index] &= !(range(0, replica.read_point) | replica.held);
            stream.vdl[index] &= !range(0, replica.heard_vdl);
            if state.volume.writer_alive {
                stream.reports[index] &= !range(0, state.volume.reported[index]);
            } else {
                stream.reports[index] = 0;
            }
        }
    }

    fn writer_actions(&self, state: &State, actions: &mut Vec<Action>) {
        let volume = &state.volume;
        if !volume.writer_alive {
            return;
        }
        for (shape, pages) in self.config.mtr_shapes.iter().enumerate() {
            if volume.allocated as usize + pages.len() <= self.config.lsn_cap as usize {
                actions.push(Action::Allocate(shape as u8));
            }
        }
        if volume.durable < volume.allocated {
            actions.push(Action::Persist);
        }
        if volume.cpl_at_or_below(volume.durable) > volume.vdl {
            actions.push(Action::AdvanceVdl);
        }
        if self.horizon(volume) > volume.collected {
            actions.push(Action::Collect);
        }
        for index in self.replica_indexes() {
            let replica = index as u8;
            for point in members(state.stream.reports[index]) {
                actions.push(Action::DeliverReport { replica, point });
                if self.config.lossy {
                    actions.push(Action::LoseReport { replica, point });
                }
            }
            if self.may_promote(state) {
                actions.push(Action::Promote(replica));
            }
        }
    }

    fn stream_actions(&self, state: &State, index: usize, actions: &mut Vec<Action>) {
        let replica = index as u8;
        for lsn in members(state.stream.redo[index]) {
            actions.push(Action::DeliverRedo { replica, lsn });
            if self.config.lossy {
                actions.push(Action::LoseRedo { replica, lsn });
            }
        }
        for vdl in members(state.stream.vdl[index]) {
            actions.push(Action::DeliverVdl { replica, vdl });
            if self.config.lossy {
                actions.push(Action::LoseVdl { replica, vdl });
            }
        }
    }

    fn replica_actions(&self, state: &State, index: usize, actions: &mut Vec<Action>) {
        let replica_state = &state.replicas[index];
        if replica_state.promoted {
            return;
        }
        self.stream_actions(state, index, actions);
        let replica = index as u8;
        if self.advance_target(replica_state) > replica_state.read_point {
            actions.push(Action::Advance(replica));
        }
        let has_room = replica_state.pages_in_use() < self.config.cache_pages;
        for page in 0..self.config.pages {
            let page_index = page as u8;
            let page = page_index;
            if replica_state.cache[page as usize].is_some() {
                actions.push(Action::Evict { replica, page });
            } else if replica_state.reading[page as usize].is_some() {
                actions.push(Action::FinishRead { replica, page });
            } else if has_room {
                actions.push(Action::StartRead { replica, page });
            }
        }
        let from = replica_state.read_point;
        let gap = range(from, replica_state.heard_vdl) & !replica_state.held;
        if self.config.resync && gap != 0 {
            actions.push(Action::Resync(replica));
        }
    }

    /// A step in words, for counterexamples (`state` is the state before it).
    pub fn describe(&self, state: &State, action: &Action) -> String {
        let volume = &state.volume;
        match *action {
            Action::Allocate(shape) => {
                let pages = self.config.mtr_shapes[shape as usize];
                let first = volume.allocated + 1;
                let last = volume.allocated + pages.len() as Lsn;
                format!("writer allocates an MTR: LSNs {first}..={last} on pages {pages:?}")
            }
            Action::Persist => format!("LSN {} becomes durable", volume.durable + 1),
            Action::AdvanceVdl => format!(
                "writer VDL {} -> {}",
                volume.vdl,
                volume.cpl_at_or_below(volume.durable)
            ),
            Action::DeliverRedo { replica, lsn } => format!(
                "replica {replica} receives record {lsn} (page {})",
                volume.page_of[lsn as usize]
            ),
            Action::LoseRedo { replica, lsn } => {
                format!("the stream loses record {lsn} to replica {replica}")
            }
            Action::DeliverVdl { replica, vdl } => format!("replica {replica} hears VDL {vdl}"),
            Action::LoseVdl { replica, vdl } => {
                format!("the stream loses VDL {vdl} to replica {replica}")
            }
            Action::DeliverReport { replica, point } => {
                format!("writer hears replica {replica}'s oldest read point {point}")
            }
            Action::LoseReport { replica, point } => {
                format!("the stream loses replica {replica}'s report {point}")
            }
            Action::Advance(replica) => {
                let current = &state.replicas[replica as usize];
                format!(
                    "replica {replica} moves its read point {} -> {} (holds {})",
                    current.read_point,
                    self.advance_target(current),
                    format_set(current.held)
                )
            }
            Action::StartRead { replica, page } => format!(
                "replica {replica} reads page {page} from storage at {}",
                state.replicas[replica as usize].read_point
            ),
            Action::FinishRead { replica, page } => format!(
                "storage answers replica {replica}'s read of page {page} at {} (collected below {})",
                state.replicas[replica as usize].reading[page as usize].unwrap_or(0),
                volume.collected
            ),
            Action::Evict { replica, page } => format!("replica {replica} evicts page {page}"),
            Action::Resync(replica) => format!("replica {replica} resyncs"),
            Action::Collect => format!("storage collects below {}", self.horizon(volume)),
            Action::Promote(replica) => format!(
                "writer lost; replica {replica} promoted, recovered VDL {}",
                volume.cpl_at_or_below(volume.durable)
            ),
        }
    }
}

fn set_read_point(ghost: &mut super::state::Ghost, replica: &mut Replica, to: Lsn) {
    ghost.read_point_regressed |= to < replica.read_point;
    replica.read_point = to;
}

/// P6: a record at or below the read point is kept only while an open read of its page
/// was issued below it.
fn prune_held(volume: &Volume, replica: &mut Replica) {
    let mut kept: LsnSet = replica.held & !range(0, replica.read_point);
    for lsn in members(replica.held & range(0, replica.read_point)) {
        let page = volume.page_of[lsn as usize] as usize;
        if replica.reading[page].is_some_and(|point| point < lsn) {
            kept |= bit(lsn);
        }
    }
    replica.held = kept;
}

fn cache_at_read_point(model: &ReplicaModel, state: &State) -> bool {
    model.replica_indexes().all(|index| {
        let replica = &state.replicas[index];
        replica.cache.iter().enumerate().all(|(page, content)| {
            content.is_none_or(|content| {
                content == state.volume.page_at(page as u8, replica.read_point)
            })
        })
    })
}

fn read_point_is_vdl(model: &ReplicaModel, state: &State) -> bool {
    model
        .replica_indexes()
        .all(|index| state.ghost.vdls & bit(state.replicas[index].read_point) != 0)
}

/// P1, P2: the writer allocates to its cap and makes it all durable with every replica
/// still empty-handed (nothing the writer does waits for one).
fn writer_never_waits(model: &ReplicaModel, state: &State) -> bool {
    let volume = &state.volume;
    let untouched = model.replica_indexes().all(|index| {
        let replica = &state.replicas[index];
        replica.held == 0 && replica.heard_vdl == 0
    });
    volume.writer_alive
        && volume.allocated == model.config.lsn_cap
        && volume.vdl == volume.allocated
        && untouched
}

fn failover_exposes_recovered(state: &State) -> bool {
    let Some(recovered) = state.ghost.recovered_vdl else {
        return true;
    };
    let Some(promoted) = state.replicas.iter().find(|replica| replica.promoted) else {
        return false;
    };
    recovered >= state.ghost.old_writer_vdl
        && promoted.read_point == recovered
        && promoted.cache.iter().enumerate().all(|(page, content)| {
            content.is_none_or(|content| content == state.volume.page_at(page as u8, recovered))
        })
}

impl Model for ReplicaModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State::initial()]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.writer_actions(state, actions);
        for index in self.replica_indexes() {
            self.replica_actions(state, index, actions);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Allocate(shape) => self.allocate(&mut state, shape as usize),
            Action::Persist => state.volume.durable += 1,
            Action::AdvanceVdl => self.advance_vdl(&mut state),
            Action::DeliverRedo { replica, lsn } => {
                self.deliver_redo(&mut state, replica as usize, lsn)
            }
            Action::LoseRedo { replica, lsn } => state.stream.redo[replica as usize] &= !bit(lsn),
            Action::DeliverVdl { replica, vdl } => {
                let replica = &mut state.replicas[replica as usize];
                replica.heard_vdl = replica.heard_vdl.max(vdl);
            }
            Action::LoseVdl { replica, vdl } => state.stream.vdl[replica as usize] &= !bit(vdl),
            Action::DeliverReport { replica, point } => {
                let reported = &mut state.volume.reported[replica as usize];
                *reported = (*reported).max(point);
            }
            Action::LoseReport { replica, point } => {
                state.stream.reports[replica as usize] &= !bit(point)
            }
            Action::Advance(replica) => {
                let index = replica as usize;
                let to = self.advance_target(&state.replicas[index]);
                self.apply_up_to(&mut state, index, to);
                self.report(&mut state, index);
            }
            Action::StartRead { replica, page } => {
                let replica = &mut state.replicas[replica as usize];
                replica.reading[page as usize] = Some(replica.read_point);
            }
            Action::FinishRead { replica, page } => {
                self.finish_read(&mut state, replica as usize, page as usize)
            }
            Action::Evict { replica, page } => {
                state.replicas[replica as usize].cache[page as usize] = None
            }
            Action::Resync(replica) => self.resync(&mut state, replica as usize),
            Action::Collect => state.volume.collected = self.horizon(&state.volume),
            Action::Promote(replica) => self.promote(&mut state, replica as usize),
        }
        self.drop_dead_messages(&mut state);
        Some(state)
    }

    fn format_action(&self, action: &Action) -> String {
        format!("{action:?}")
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(CACHE_AT_READ_POINT, cache_at_read_point),
            Property::always(READ_POINT_IS_VDL, read_point_is_vdl),
            Property::always(WHOLE_MTRS, |model, state: &State| {
                model.replica_indexes().all(|index| {
                    let point = state.replicas[index].read_point;
                    point == 0 || contains(state.volume.cpls, point)
                })
            }),
            Property::always(READ_POINT_MONOTONIC, |_, state: &State| {
                !state.ghost.read_point_regressed
            }),
            Property::always(NO_READ_REFUSED, |_, state: &State| {
                !state.ghost.read_refused
            }),
            Property::sometimes(REDO_APPLIED, |_, state: &State| {
                state.ghost.redo_applied_to_cache
            }),
            Property::sometimes(LATE_READ_CAUGHT_UP, |_, state: &State| {
                state.ghost.late_read_caught_up
            }),
            Property::sometimes(STORAGE_COLLECTED, |_, state: &State| {
                state.volume.collected > 0
            }),
            Property::sometimes(WRITER_NEVER_WAITS, writer_never_waits),
        ];
        if self.config.failover {
            properties.push(Property::always(FAILOVER_EXPOSES_RECOVERED, |_, state| {
                failover_exposes_recovered(state)
            }));
            properties.push(Property::sometimes(WARM_PROMOTION, |_, state: &State| {
                state.ghost.warm_promotion
            }));
        }
        properties
    }
}
