//! The writer: LSN allocation, quorum tracking, commits, and crash recovery.

use super::config::{Bug, Config, MtrShape};
use super::segment::{self, HistoryMerge};
use super::state::{
    Epoch, FIRST_EPOCH, Lsn, LsnSet, Message, Phase, Record, Recovery, RecoveryOutcome,
    SEGMENTS_PER_PG, Segment, SegmentIndex, State, WRITE_QUORUM, Writer, bit, contains, members,
    range, violation,
};

/// The first writer of a fresh volume: epoch 1, nothing to recover.
pub fn initial_writer() -> Writer {
    Writer {
        epoch: FIRST_EPOCH,
        phase: Phase::Active,
        lsn_next: 1,
        vcl: 0,
        vdl: 0,
        lsn_base: 0,
        vdl_recovered: 0,
        truncated: 0,
        lsn_last_by_pg: [0; 2],
        scl_by_segment: [0; 12],
        commits_waiting: 0,
        leased: 0,
    }
}

/// A restarted writer: E1, it takes an epoch above every epoch ever used (the model's
/// stand-in for the volume's epoch counter), then recovers (X1).
pub fn restarted_writer(epoch: Epoch) -> Writer {
    Writer {
        epoch,
        phase: Phase::Recovering(Recovery::default()),
        ..initial_writer()
    }
}

/// W1: the MTR fits below `VDL + LAL` and the model's LSN cap. After a recovery the
/// allocation window starts at the end of the truncation range, not at VDL: X7 starts the
/// new epoch at `VDL + LAL + 1`, which W1 read literally would never allow.
pub fn can_allocate(config: &Config, writer: &Writer, shape: MtrShape) -> bool {
    let lsn_last = writer.lsn_next as usize + shape.len() - 1;
    writer.phase == Phase::Active
        && lsn_last <= (writer.vdl.max(writer.lsn_base) as usize + config.lal as usize)
        && lsn_last <= config.lsn_cap as usize
}

/// L1, L2, W3, W4, W5: allocate an MTR and send each record to the six segments of its PG.
/// The commit LSN is the MTR's first record (the transaction's commit record); C4 then
/// waits for VDL, which is never inside an MTR.
pub fn allocate_mtr(state: &mut State, shape: MtrShape) {
    let Some(mut writer) = state.writer else {
        return;
    };
    let lsn_first = writer.lsn_next;
    for (position, pg) in shape.iter().enumerate() {
        let lsn = lsn_first + position as Lsn;
        let pg_index = *pg as usize;
        state.records[lsn as usize] = Record {
            epoch: writer.epoch,
            pg: *pg,
            prev_lsn_pg: writer.lsn_last_by_pg[pg_index],
            mtr_first: lsn_first,
            cpl: position + 1 == shape.len(),
        };
        writer.lsn_last_by_pg[pg_index] = lsn;
        for replica in 0..SEGMENTS_PER_PG {
            state.send(Message::Write {
                segment: (pg_index * SEGMENTS_PER_PG + replica) as SegmentIndex,
                lsn,
                vdl_hint: writer.vdl,
            });
        }
    }
    writer.lsn_next = lsn_first + shape.len() as Lsn;
    writer.commits_waiting |= bit(lsn_first);
    state.writer = Some(writer);
}

/// C1: PGCL is the highest SCL that `quorum` segments of the PG reached.
fn pgcl(writer: &Writer, pg: usize, quorum: usize) -> Lsn {
    let mut scls: Vec<Lsn> =
        writer.scl_by_segment[pg * SEGMENTS_PER_PG..(pg + 1) * SEGMENTS_PER_PG].to_vec();
    scls.sort_unstable_by(|a, b| b.cmp(a));
    scls[quorum - 1]
}

/// W6, C1–C5: an ack of this writer's epoch moves SCL, PGCL, VCL, VDL; commits at or below
/// VDL are acknowledged in LSN order.
pub fn handle_ack(
    state: &mut State,
    stale: bool,
    segment: SegmentIndex,
    scl: Lsn,
    bug: Option<Bug>,
) {
    let slot = if stale {
        state.writer_stale
    } else {
        state.writer
    };
    let Some(mut writer) = slot else {
        return;
    };
    let entry = &mut writer.scl_by_segment[segment as usize];
    *entry = (*entry).max(scl);
    let quorum = if bug == Some(Bug::WriteQuorum3) {
        3
    } else {
        WRITE_QUORUM
    };
    // C2: VCL walks the allocated LSNs of this epoch; it never goes back within the epoch.
    let mut vcl = writer.vcl.max(writer.lsn_base);
    while vcl + 1 < writer.lsn_next {
        let pg = state.record(vcl + 1).pg as usize;
        if vcl + 1 > pgcl(&writer, pg, quorum) {
            break;
        }
        vcl += 1;
    }
    writer.vcl = vcl;
    // C3: VDL is the highest CPL ≤ VCL.
    let cpl = members(range(writer.vdl.max(writer.lsn_base), vcl))
        .filter(|lsn| state.record(*lsn).cpl)
        .last();
    writer.vdl = writer.vdl.max(cpl.unwrap_or(0));
    // C4 (mutant commit-at-vcl: VCL instead of VDL), C5.
    let durable_point = if bug == Some(Bug::CommitAtVcl) {
        writer.vcl
    } else {
        writer.vdl
    };
    let released = writer.commits_waiting & range(0, durable_point);
    writer.commits_waiting &= !released;
    if released != 0 && writer.epoch < state.ghost.epoch_max {
        // A fenced writer's acknowledgement must still be durable (E3, C6).
        let not_durable = members(released)
            .flat_map(|commit| members(state.mtr_of(commit)))
            .any(|lsn| state.holders(lsn) < WRITE_QUORUM);
        if not_durable {
            state.ghost.violations |= violation::FENCED_ACK_NOT_DURABLE;
        }
    }
    state.ghost.acked |= released;
    state.ghost.vdl_high = state.ghost.vdl_high.max(writer.vdl);
    if stale {
        state.writer_stale = Some(writer);
    } else {
        state.writer = Some(writer);
    }
}

/// Whether an ack from `segment` with `scl` tells the writer anything new.
pub fn ack_is_news(writer: &Option<Writer>, epoch: Epoch, segment: SegmentIndex, scl: Lsn) -> bool {
    match writer {
        Some(writer) => {
            writer.epoch == epoch
                && writer.phase == Phase::Active
                && writer.scl_by_segment[segment as usize] < scl
        }
        None => false,
    }
}

pub fn recovery(writer: &Option<Writer>) -> Option<Recovery> {
    match writer {
        Some(Writer {
            phase: Phase::Recovering(recovery),
            ..
        }) => Some(*recovery),
        _ => None,
    }
}

fn set_recovery(state: &mut State, recovery: Recovery) {
    if let Some(writer) = state.writer.as_mut() {
        writer.phase = Phase::Recovering(recovery);
    }
}

fn reports_in_pg(mask: u16, pg: usize) -> usize {
    ((mask >> (pg * SEGMENTS_PER_PG)) & 0b11_1111).count_ones() as usize
}

/// X11, S20: a repairing segment's node reports it as repairing, which counts as no answer
/// (mutant repairing-counts-in-recovery: as the empty answer it looks like).
pub fn report_counts(segment: &Segment, bug: Option<Bug>) -> bool {
    !segment.repairing || bug == Some(Bug::RepairingCountsInRecovery)
}

/// Whether recovery has something to read at `index`: a report it lacks, or (X11) a
/// repairing segment still below the recovery's epoch, whose node takes the epoch and
/// answers that the segment is repairing.
pub fn recovery_read_is_news(state: &State, index: SegmentIndex, bug: Option<Bug>) -> bool {
    let (Some(writer), Some(recovery)) = (state.writer, recovery(&state.writer)) else {
        return false;
    };
    let segment = &state.segments[index as usize];
    recovery.outcome.is_none()
        && recovery.reported & (1 << index) == 0
        && (report_counts(segment, bug) || segment.epoch < writer.epoch)
}

/// X1, E4: the recovery read carries the new epoch, so the segment stops taking the old
/// writer's writes; it reports its SCL, VDL hint, LSNs above the hint and truncation set.
/// X11, S20: a repairing segment's node takes the epoch too, but its report counts as no
/// answer; recovery may ask again once its repair has ended (S21).
pub fn recovery_read(state: &mut State, index: SegmentIndex, bug: Option<Bug>) {
    let (Some(writer), Some(mut recovery)) = (state.writer, recovery(&state.writer)) else {
        return;
    };
    let segment = &mut state.segments[index as usize];
    // E1: the new epoch is above every epoch a segment has seen (a segment may already hold
    // it, from gossip with a segment this recovery fenced).
    debug_assert!(
        segment.epoch <= writer.epoch,
        "E1: the new epoch is above every epoch"
    );
    if bug != Some(Bug::UnfencedRecoveryReads) {
        segment.epoch = writer.epoch;
    }
    if !report_counts(segment, bug) {
        return;
    }
    recovery.reported |= 1 << index;
    recovery.hint_max = recovery.hint_max.max(segment.hint);
    recovery.held_above_hint |= segment.held & !range(0, segment.hint);
    // X9: the ranges in force are the history of highest epoch among the reports, never the
    // union of every reported range (a range that history lacks is of a recovery that never
    // completed, and a later one may have kept records it covers).
    if segment.truncation_epoch > recovery.truncation_epoch {
        recovery.truncation_epoch = segment.truncation_epoch;
        recovery.truncated = segment.truncated;
    }
    set_recovery(state, recovery);
}

/// X2: a read quorum of every PG answered (2 under the mutant).
pub fn recovery_can_decide(recovery: &Recovery, pg_count: usize, bug: Option<Bug>) -> bool {
    let quorum = if bug == Some(Bug::RecoveryReadQuorum2) {
        2
    } else {
        super::state::READ_QUORUM
    };
    recovery.outcome.is_none()
        && (0..pg_count).all(|pg| reports_in_pg(recovery.reported, pg) >= quorum)
}

/// X3, X4, X9: recovered VCL, VDL, and the truncation history the recovery leaves in force:
/// the newest reported history plus its own range.
pub fn recovery_decide(state: &mut State, config: &Config, bug: Option<Bug>) {
    let Some(mut recovery) = recovery(&state.writer) else {
        return;
    };
    // X3: from the highest hint F, every LSN held by a reporter or in a reported truncation
    // range (dense LSNs, L1, make this exact).
    let known = recovery.held_above_hint | recovery.truncated;
    let mut vcl = recovery.hint_max;
    while vcl < config.lsn_cap && contains(known, vcl + 1) {
        vcl += 1;
    }
    // X4: VDL is the highest CPL ≤ VCL that is not void; truncate (VDL, VDL + LAL].
    let cpl =
        members(recovery.held_above_hint & !recovery.truncated & range(recovery.hint_max, vcl))
            .filter(|lsn| state.record(*lsn).cpl)
            .last();
    let vdl = cpl.unwrap_or(0).max(recovery.hint_max);
    let lsn_end = truncation_end(vdl, recovery.truncated, config);
    let truncated = if bug == Some(Bug::NoTruncation) {
        recovery.truncated
    } else {
        recovery.truncated | range(vdl, lsn_end)
    };
    let repair = recovery.held_above_hint & range(recovery.hint_max, vdl) & !truncated;
    recovery.outcome = Some(RecoveryOutcome {
        vcl,
        vdl,
        lsn_end,
        truncated,
        repair,
    });
    set_recovery(state, recovery);
}

/// X4: the truncation range ends at `VDL + LAL`, measured from the end of the newest
/// reported truncation range when that is above VDL: a writer opened by that recovery
/// allocated up to `max(VDL, its range end) + LAL` (W1 as modelled), and all of it must be
/// void.
pub fn truncation_end(vdl: Lsn, truncated: LsnSet, config: &Config) -> Lsn {
    let reported_end = members(truncated).last().unwrap_or(0);
    vdl.max(reported_end).saturating_add(config.lal)
}

/// X5: the segment holds its PG's records up to VDL (after the repair).
fn segment_complete_to(
    state: &State,
    index: SegmentIndex,
    scl: Lsn,
    outcome: &RecoveryOutcome,
) -> bool {
    let pg = index as usize / SEGMENTS_PER_PG;
    scl >= state.last_in_pg(pg, outcome.vdl, outcome.truncated)
}

/// The segment as a recovery write would leave it.
fn after_recovery_write(
    state: &State,
    writer: &Writer,
    index: SegmentIndex,
    outcome: &RecoveryOutcome,
    merge: HistoryMerge,
) -> Segment {
    let pg_repair = outcome.repair & state.allocated_in_pg(index as usize / SEGMENTS_PER_PG);
    let own_range = range(outcome.vdl, outcome.lsn_end) & outcome.truncated;
    let mut segment = state.segments[index as usize];
    segment::apply_recovery_write(
        &state.records,
        &mut segment,
        writer.epoch,
        outcome.truncated,
        own_range,
        pg_repair,
        merge,
    );
    segment
}

/// Whether a recovery write to `index` changes anything.
pub fn recovery_write_is_news(state: &State, index: SegmentIndex, merge: HistoryMerge) -> bool {
    let (Some(writer), Some(recovery)) = (state.writer, recovery(&state.writer)) else {
        return false;
    };
    let Some(outcome) = recovery.outcome else {
        return false;
    };
    if recovery.written & (1 << index) != 0 {
        return false;
    }
    let after = after_recovery_write(state, &writer, index, &outcome, merge);
    after != state.segments[index as usize]
        || segment_complete_to(state, index, after.scl, &outcome)
}

/// X5, E1: repair, truncation set and new epoch to one segment; when a write quorum of every
/// PG holds them the writer opens (X7).
pub fn recovery_write(
    state: &mut State,
    config: &Config,
    index: SegmentIndex,
    merge: HistoryMerge,
    bug: Option<Bug>,
) {
    let (Some(writer), Some(recovery)) = (state.writer, recovery(&state.writer)) else {
        return;
    };
    let Some(outcome) = recovery.outcome else {
        return;
    };
    let after = after_recovery_write(state, &writer, index, &outcome, merge);
    state.segments[index as usize] = after;
    recovery_written(state, config, index, after.scl, bug);
}

/// R10: no segment that took this recovery's epoch (it reported or was written) still
/// promises a read lease to an older writer; recovery opens only then (mutant
/// lease-not-waited: always).
pub fn leases_waited_out(
    state: &State,
    recovery: &Recovery,
    epoch: Epoch,
    bug: Option<Bug>,
) -> bool {
    if bug == Some(Bug::LeaseNotWaited) {
        return true;
    }
    let took_epoch = recovery.reported | recovery.written;
    state.segments.iter().enumerate().all(|(index, segment)| {
        took_epoch & (1 << index) == 0 || segment.promise == 0 || segment.promise >= epoch
    })
}

/// X5, R10: the write quorum of every PG is written and no older lease is left on the
/// segments that took the epoch: recovery may open.
pub fn recovery_can_open(state: &State, config: &Config, bug: Option<Bug>) -> bool {
    let (Some(writer), Some(recovery)) = (state.writer, recovery(&state.writer)) else {
        return false;
    };
    recovery.outcome.is_some()
        && (0..config.pg_count).all(|pg| reports_in_pg(recovery.written, pg) >= WRITE_QUORUM)
        && leases_waited_out(state, &recovery, writer.epoch, bug)
}

/// X7, R10: opens the recovered writer (once [`recovery_can_open`]).
pub fn recovery_open(state: &mut State, config: &Config, bug: Option<Bug>) {
    if !recovery_can_open(state, config, bug) {
        return;
    }
    let (Some(writer), Some(recovery)) = (state.writer, recovery(&state.writer)) else {
        return;
    };
    if let Some(outcome) = recovery.outcome {
        open_after_recovery(state, config, writer, &outcome);
    }
}

/// R7, R8: the node of `index` grants a lease to the writer of its epoch (`stale` picks
/// the partitioned old writer); the writer counts it. One running promise per segment.
/// Only the first writer's leases are modelled: configs have one failover, so no later
/// writer is ever replaced while running.
pub fn can_renew(state: &State, stale: bool, index: SegmentIndex) -> bool {
    let writer = if stale {
        state.writer_stale
    } else {
        state.writer
    };
    let segment = &state.segments[index as usize];
    writer.is_some_and(|writer| {
        writer.phase == Phase::Active
            && writer.epoch == FIRST_EPOCH
            && segment.epoch == writer.epoch
            && segment.promise == 0
            && writer.leased & (1 << index) == 0
    })
}

pub fn renew(state: &mut State, stale: bool, index: SegmentIndex) {
    let slot = if stale {
        &mut state.writer_stale
    } else {
        &mut state.writer
    };
    if let Some(writer) = slot.as_mut() {
        writer.leased |= 1 << index;
        state.segments[index as usize].promise = writer.epoch;
    }
}

/// R7, R11: the promise of `index` runs out; the writer's count of it ended no later.
pub fn expire_lease(state: &mut State, index: SegmentIndex) {
    state.segments[index as usize].promise = 0;
    for writer in [state.writer.as_mut(), state.writer_stale.as_mut()]
        .into_iter()
        .flatten()
    {
        writer.leased &= !(1 << index);
    }
}

/// R8: the writer holds the read lease: Vr grants in every PG.
pub fn holds_lease(writer: &Writer, pg_count: usize) -> bool {
    (0..pg_count).all(|pg| reports_in_pg(writer.leased, pg) >= super::state::READ_QUORUM)
}

/// R9: the partitioned old writer serves a read of `pg` from its cache: its own view at its
/// VDL. Allowed only under the lease (mutant stale-read-after-fencing: always). The read
/// misses every commit a newer epoch acknowledged.
pub fn can_stale_read(state: &State, config: &Config, bug: Option<Bug>) -> bool {
    state.writer_stale.is_some_and(|stale| {
        stale.phase == Phase::Active
            && (bug == Some(Bug::StaleReadAfterFencing) || holds_lease(&stale, config.pg_count))
    })
}

pub fn stale_read(state: &mut State, pg: usize) {
    let Some(stale) = state.writer_stale else {
        return;
    };
    let missed = members(state.ghost.acked)
        .flat_map(|commit| members(state.mtr_of(commit)))
        .any(|lsn| state.record(lsn).epoch > stale.epoch && state.record(lsn).pg as usize == pg);
    if missed {
        state.ghost.violations |= violation::STALE_READ;
    }
}

/// X5, X7: the writer takes a segment's answer to its recovery write, carrying the SCL the
/// segment reached (W6). The segment counts toward the write quorum once it is complete up
/// to VDL; when a write quorum of every PG is, the writer opens. Trace validation calls this
/// directly with the SCL an implementation's segment answered.
pub fn recovery_written(
    state: &mut State,
    config: &Config,
    index: SegmentIndex,
    scl: Lsn,
    bug: Option<Bug>,
) {
    let (Some(mut writer), Some(mut recovery)) = (state.writer, recovery(&state.writer)) else {
        return;
    };
    let Some(outcome) = recovery.outcome else {
        return;
    };
    if segment_complete_to(state, index, scl, &outcome) {
        recovery.written |= 1 << index;
    }
    writer.scl_by_segment[index as usize] = scl;
    state.writer = Some(writer);
    set_recovery(state, recovery);
    // R10: with leases still promised to an older writer, RecoveryOpen waits for them.
    recovery_open(state, config, bug);
}

/// X7: allocate from VDL + LAL + 1; backlinks point at the last LSN ≤ VDL of each PG.
fn open_after_recovery(
    state: &mut State,
    config: &Config,
    writer: Writer,
    outcome: &RecoveryOutcome,
) {
    let lsn_base = outcome.lsn_end;
    let mut lsn_last_by_pg = [0; 2];
    for (pg, last) in lsn_last_by_pg.iter_mut().enumerate().take(config.pg_count) {
        *last = state.last_in_pg(pg, outcome.vdl, outcome.truncated);
    }
    state.writer = Some(Writer {
        epoch: writer.epoch,
        phase: Phase::Active,
        lsn_next: lsn_base.saturating_add(1),
        vcl: lsn_base,
        vdl: outcome.vdl,
        lsn_base,
        vdl_recovered: outcome.vdl,
        truncated: outcome.truncated,
        lsn_last_by_pg,
        scl_by_segment: writer.scl_by_segment,
        commits_waiting: 0,
        leased: 0,
    });
    state.ghost.recovery_completed = true;
    state.ghost.vdl_high = state.ghost.vdl_high.max(outcome.vdl);
}

/// Whether `lsn` is part of the volume as the writer's recovery left it (truncated LSNs are
/// void; LSNs above the recovered VDL exist only if this writer allocated them).
pub fn in_volume(state: &State, writer: &Writer, lsn: Lsn) -> bool {
    state.is_allocated(lsn)
        && !contains(writer.truncated, lsn)
        && (lsn <= writer.vdl_recovered || state.record(lsn).epoch == writer.epoch)
}

/// The value of `pg`'s page at `lsn_read_point`, from the writer's own history.
pub fn committed_value(state: &State, writer: &Writer, pg: usize, lsn_read_point: Lsn) -> Lsn {
    members(range(0, lsn_read_point))
        .filter(|lsn| state.record(*lsn).pg as usize == pg && in_volume(state, writer, *lsn))
        .last()
        .unwrap_or(0)
}

/// R1–R3: a read at the writer's VDL from one segment whose SCL covers it.
pub fn read(state: &mut State, index: SegmentIndex) {
    let Some(writer) = state.writer else {
        return;
    };
    let pg = index as usize / SEGMENTS_PER_PG;
    let lsn_read_point = writer.vdl;
    let value = segment::read_page(state, index, lsn_read_point);
    if value != committed_value(state, &writer, pg, lsn_read_point) {
        state.ghost.violations |= violation::READ_WRONG_VALUE;
    }
    if value != 0 {
        let mtr: LsnSet = state.mtr_of(value);
        let whole = members(mtr).all(|lsn| lsn <= lsn_read_point && in_volume(state, &writer, lsn));
        if !whole {
            state.ghost.violations |= violation::READ_PARTIAL_MTR;
        }
    }
    let acked_newest = members(state.ghost.acked)
        .flat_map(|commit| members(state.mtr_of(commit)))
        .filter(|lsn| *lsn <= lsn_read_point && state.record(*lsn).pg as usize == pg)
        .last()
        .unwrap_or(0);
    if acked_newest > value {
        state.ghost.violations |= violation::READ_LOST_ACKED;
    }
    if writer.epoch > 1 {
        state.ghost.read_after_recovery = true;
    }
}

/// R1, S15: the writer reads from a segment that holds its recovery's history and whose
/// acked SCL covers the PG's last LSN ≤ the read
/// point (an SCL is an LSN of its own PG).
pub fn can_read(state: &State, index: SegmentIndex) -> bool {
    let Some(writer) = state.writer else {
        return false;
    };
    if writer.phase != Phase::Active || writer.vdl == 0 {
        return false;
    }
    if segment::lacks_writer_history(&state.segments[index as usize], writer.epoch) {
        // S15: refused until gossip brings the history.
        return false;
    }
    let pg = index as usize / SEGMENTS_PER_PG;
    let needed = committed_value(state, &writer, pg, writer.vdl);
    // R3, S20: the segment serves only when its own SCL covers the read's PG LSN too (a
    // segment that lost its disk is behind the SCL it once acked).
    needed != 0
        && writer.scl_by_segment[index as usize] >= needed
        && state.segments[index as usize].scl >= needed
}
