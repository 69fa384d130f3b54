//! The simulator under faults: seeds pass, a seed replays to the same trace hash, and each
//! implementation mutant is caught.

use sixfold_conformance::refine::refine;
use sixfold_conformance::sim::{self, FaultSet, Mutant, Scope, SimOptions, Workload};
use sixfold_conformance::trace::{SimEvent, Trace, TraceEvent, TraceLine};
use sixfold_core::ProtocolEvent;

fn options(seed: u64) -> SimOptions {
    SimOptions {
        seed,
        faults: FaultSet::all(),
        mtrs: 40,
        mutant: None,
        scope: Scope::Full,
        workload: Workload::Pages,
    }
}

#[test]
fn seeds_pass_under_all_faults() {
    let seeds: u64 = std::env::var("SIXFOLD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let outcome = sim::run(options(seed));
        if let Some(failure) = outcome.failure {
            failures.push(format!(
                "seed {seed}: {failure}\n  replay: sixfold sim --seed {seed}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_seed_replays_exactly() {
    let first = sim::run(options(17));
    let second = sim::run(options(17));
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.trace.lines.len(), second.trace.lines.len());
    assert!(first.acknowledged > 0, "the run acknowledged nothing");
    let other = sim::run(options(18));
    assert_ne!(first.trace_hash, other.trace_hash);
}

/// Runs seeds until the mutant is caught; returns the first failure.
fn first_failure(mutant: Mutant, seeds: u64) -> Option<(u64, String)> {
    (0..seeds).find_map(|seed| {
        let outcome = sim::run(SimOptions {
            mutant: Some(mutant),
            ..options(seed)
        });
        outcome.failure.map(|failure| (seed, failure))
    })
}

#[test]
fn an_ack_before_fsync_is_caught() {
    // S1: the storage node acknowledges on receipt, before its group commit.
    let (_, failure) = first_failure(Mutant::AckBeforeFsync, 10).expect("caught");
    assert!(failure.contains("acknowledged => durable"), "{failure}");
}

#[test]
fn a_commit_at_vcl_is_caught() {
    // C4: a commit acknowledged once VCL reaches its MTR's first record.
    let (_, failure) = first_failure(Mutant::CommitAtVcl, 20).expect("caught");
    assert!(
        failure.contains("C4") || failure.contains("acknowledged => durable"),
        "{failure}"
    );
}

#[test]
fn a_vcl_hint_is_caught() {
    // W5, C3, X4: the writer's VDL hint is its VCL, so recovery may land inside an MTR.
    let (_, failure) = first_failure(Mutant::HintAtVcl, 60).expect("caught");
    assert!(
        failure.contains("not a CPL")
            || failure.contains("differs")
            || failure.contains("durability"),
        "{failure}"
    );
}

#[test]
fn recovery_without_truncation_is_caught() {
    // X4, S8: records above VDL survive recovery and resurface.
    let (_, failure) = first_failure(Mutant::RecoveryWithoutTruncation, 30).expect("caught");
    assert!(!failure.is_empty());
}

/// Trace validation alone rejects each mutant's traces: the validator reads only the trace.
fn validation_rejects(mutant: Mutant, seeds: u64) -> Option<String> {
    (0..seeds).find_map(|seed| {
        let outcome = sim::run(SimOptions {
            mutant: Some(mutant),
            ..options(seed)
        });
        sixfold_conformance::validate::validate(&outcome.trace)
            .err()
            .map(|v| v.to_string())
    })
}

#[test]
fn trace_validation_passes_correct_runs() {
    for seed in 0..20 {
        let outcome = sim::run(options(seed));
        let lines = sixfold_conformance::validate::validate(&outcome.trace).unwrap();
        assert!(lines > 100, "seed {seed}: a trace of {lines} lines");
    }
}

#[test]
fn trace_validation_rejects_an_ack_before_fsync() {
    // S1
    let violation = validation_rejects(Mutant::AckBeforeFsync, 10).expect("rejected");
    assert!(violation.contains("S1"), "{violation}");
}

#[test]
fn trace_validation_rejects_recovery_without_truncation() {
    // X5
    let violation = validation_rejects(Mutant::RecoveryWithoutTruncation, 10).expect("rejected");
    assert!(violation.contains("X5"), "{violation}");
}

#[test]
fn trace_validation_rejects_a_commit_at_vcl() {
    // C4
    let violation = validation_rejects(Mutant::CommitAtVcl, 20).expect("rejected");
    assert!(violation.contains("C4"), "{violation}");
}

#[test]
fn trace_validation_rejects_a_vcl_hint() {
    // X4: a recovery lands on a hint that is not a CPL.
    let violation = validation_rejects(Mutant::HintAtVcl, 80).expect("rejected");
    assert!(violation.contains("X4"), "{violation}");
}

fn model_scope(seed: u64) -> SimOptions {
    SimOptions {
        mtrs: 6,
        scope: Scope::Model,
        ..options(seed)
    }
}

/// Every run in the model's scope is replayed through the stateright model's transitions
/// (the simulator does it for each run; a failure fails the seed). Together the seeds must
/// reach the model's recoveries and commits, or the replay would prove little.
#[test]
fn model_scope_seeds_refine_the_model() {
    let seeds: u64 = std::env::var("SIXFOLD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let mut failures = Vec::new();
    let (mut recoveries, mut commits, mut actions, mut reads) = (0, 0, 0, 0);
    for seed in 0..seeds {
        let outcome = sim::run(model_scope(seed));
        if let Some(failure) = outcome.failure {
            failures.push(format!(
                "seed {seed}: {failure}\n  replay: sixfold sim --scope model --mtrs 6 --seed {seed}"
            ));
            continue;
        }
        let refined = outcome.refined.expect("model-scope runs are refined");
        recoveries += refined.recoveries;
        commits += refined.commits;
        actions += refined.actions;
        reads += refined.reads;
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every run's first writer recovers once; the faults must add at least as many more.
    assert!(
        recoveries > 2 * seeds as usize
            && commits > 2 * seeds as usize
            && actions > 20 * seeds as usize
            && reads > seeds as usize,
        "{recoveries} recoveries, {commits} commits, {reads} reads, {actions} model actions over {seeds} seeds"
    );
}

/// Model refinement alone (no other check) rejects a mutant's traces.
fn refinement_rejects(mutant: Mutant, seeds: u64) -> Option<String> {
    (0..seeds).find_map(|seed| {
        let outcome = sim::run(SimOptions {
            mutant: Some(mutant),
            ..model_scope(seed)
        });
        refine(&outcome.trace, Scope::Model.lal())
            .err()
            .map(|v| format!("seed {seed}: {v}"))
    })
}

#[test]
fn refinement_rejects_an_ack_before_fsync() {
    // S1: the model's segments ack only what a flush made durable.
    let violation = refinement_rejects(Mutant::AckBeforeFsync, 50).expect("rejected");
    assert!(violation.contains("S1"), "{violation}");
}

#[test]
fn refinement_rejects_a_commit_at_vcl() {
    // C4: the implementation acknowledges a commit the model's writer does not.
    let violation = refinement_rejects(Mutant::CommitAtVcl, 100).expect("rejected");
    assert!(
        violation.contains("C2–C5") && violation.contains("CommitAcknowledged"),
        "{violation}"
    );
}

#[test]
fn refinement_rejects_a_vcl_hint() {
    // W5: the mutant's hint is VCL, above every VDL the model's writers reach.
    let violation = refinement_rejects(Mutant::HintAtVcl, 100).expect("rejected");
    assert!(violation.contains("W5"), "{violation}");
}

#[test]
fn refinement_rejects_recovery_without_truncation() {
    // X5: the model's writer does not open before a write quorum holds the truncation.
    let violation = refinement_rejects(Mutant::RecoveryWithoutTruncation, 20).expect("rejected");
    assert!(violation.contains("X5"), "{violation}");
}

/// A trace of a passing run, edited one line at a time: each edit is a step the model does
/// not take, and the replay names it.
#[test]
fn refinement_rejects_edited_traces() {
    let outcome = (0..50)
        .map(|seed| sim::run(model_scope(seed)))
        .find(|outcome| {
            outcome
                .refined
                .is_some_and(|r| r.recoveries >= 2 && r.commits >= 3)
        })
        .expect("a run with two recoveries and three commits");
    let edit = |find: &dyn Fn(&TraceLine) -> bool, change: &dyn Fn(&mut TraceLine) -> bool| {
        let mut trace = Trace::default();
        let mut edited = false;
        for line in &outcome.trace.lines {
            let mut line = line.clone();
            if !edited && find(&line) {
                edited = true;
                if !change(&mut line) {
                    continue; // dropped
                }
            }
            trace.push(line.tick, &line.actor, line.event);
        }
        assert!(edited, "nothing to edit");
        refine(&trace, Scope::Model.lal())
            .expect_err("an edited trace is rejected")
            .to_string()
    };
    let is = |want: fn(&ProtocolEvent) -> bool| move |line: &TraceLine| matches!(&line.event, TraceEvent::Protocol(e) if want(e));
    // A commit acknowledgement the implementation forgot.
    let dropped = edit(
        &is(|e| matches!(e, ProtocolEvent::CommitAcknowledged { .. })),
        &|_| false,
    );
    assert!(dropped.contains("acknowledge commit"), "{dropped}");
    // VDL one past where the model's writer puts it.
    let raised = edit(
        &is(|e| matches!(e, ProtocolEvent::VdlAdvanced { .. })),
        &|line| {
            if let TraceEvent::Protocol(ProtocolEvent::VdlAdvanced { vdl }) = &mut line.event {
                vdl.0 += 1;
            }
            true
        },
    );
    assert!(raised.contains("C2–C5"), "{raised}");
    // A recovery that decides a lower VDL than the model from the same reports.
    let lowered = edit(
        &|line: &TraceLine| matches!(&line.event, TraceEvent::Protocol(ProtocolEvent::RecoveryCompleted { vdl, .. }) if vdl.0 > 0),
        &|line| {
            if let TraceEvent::Protocol(ProtocolEvent::RecoveryCompleted { vdl, .. }) =
                &mut line.event
            {
                vdl.0 -= 1;
            }
            true
        },
    );
    assert!(lowered.contains("X3, X4"), "{lowered}");
    // A page served as of another LSN than the model's committed value there.
    let stale = edit(
        &|line: &TraceLine| matches!(&line.event, TraceEvent::Sim(SimEvent::PageServed { lsn, .. }) if *lsn > 0),
        &|line| {
            if let TraceEvent::Sim(SimEvent::PageServed { lsn, .. }) = &mut line.event {
                *lsn -= 1;
            }
            true
        },
    );
    assert!(stale.contains("R3"), "{stale}");
    // A segment that never made the recovery's truncation durable (the first such line).
    let unapplied = edit(
        &|line: &TraceLine| {
            matches!(
                &line.event,
                TraceEvent::Sim(SimEvent::TruncationApplied { .. })
            )
        },
        &|_| false,
    );
    // The writer opens on its segment's answer; the model's recovery lacks that segment.
    assert!(unapplied.contains("X5"), "{unapplied}");
}

/// The model's LSNs are 4 bits: a trace beyond them is refused, not silently cut.
#[test]
fn refinement_refuses_a_trace_outside_the_models_scope() {
    // A full-scope run's LAL alone is outside the model.
    let outcome = sim::run(options(3));
    let refused = refine(&outcome.trace, Scope::Full.lal()).expect_err("outside the scope");
    assert!(
        refused.to_string().contains("outside the model's scope"),
        "{refused}"
    );
    // A model-scope trace whose first record is moved to LSN 16 is refused at that line.
    let outcome = sim::run(model_scope(0));
    let mut trace = Trace::default();
    let mut moved = None;
    for (index, line) in outcome.trace.lines.iter().enumerate() {
        let mut line = line.clone();
        if moved.is_none()
            && let TraceEvent::Protocol(ProtocolEvent::RecordSent { lsn, .. }) = &mut line.event
        {
            lsn.0 = 16;
            moved = Some(index + 1);
        }
        trace.push(line.tick, &line.actor, line.event);
    }
    let refused = refine(&trace, Scope::Model.lal()).expect_err("outside the scope");
    assert_eq!(Some(refused.line), moved);
    assert!(
        refused.reason.contains("outside the model's scope"),
        "{refused}"
    );
}
/// With stock SQLite on the simulated volume, under every fault: each database equals stock
/// SQLite fed the statements that took effect (V5, C4), and the segments pass the same final
/// checks. Together the seeds must settle commits through recoveries, void ones included.
#[test]
fn sqlite_on_the_simulated_volume_equals_stock_sqlite() {
    let mut failures = Vec::new();
    let mut total = sim::SqlRun::default();
    for seed in 0..40 {
        let outcome = sim::run(SimOptions {
            mtrs: 60,
            workload: Workload::Sql,
            ..options(seed)
        });
        match (outcome.failure, outcome.sql) {
            (None, Some(run)) => {
                total.statements += run.statements;
                total.applied += run.applied;
                total.rows += run.rows;
                total.settled_by_recovery += run.settled_by_recovery;
                total.void += run.void;
            }
            (failure, _) => failures.push(format!(
                "seed {seed}: {failure:?}\n  replay: sixfold sim --workload sql --mtrs 60 --seed {seed}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Most statements take effect (SQLite retries a void batch commit through its journal,
    // and only a statement whose every commit is void does not), tables hold more than
    // the row written after healing, and commits were settled through recoveries, some
    // void.
    assert!(
        total.applied * 10 > total.statements * 9
            && total.rows > 40 * 5
            && total.settled_by_recovery > 0
            && total.void > 0,
        "{total:?}"
    );
}

#[test]
fn sqlite_on_the_volume_catches_a_recovery_without_truncation() {
    // X4: records above VDL survive recovery; the run fails (database, pages or liveness).
    let caught = (0..10).find_map(|seed| {
        sim::run(SimOptions {
            mtrs: 60,
            workload: Workload::Sql,
            mutant: Some(Mutant::RecoveryWithoutTruncation),
            ..options(seed)
        })
        .failure
    });
    let caught = caught.expect("the mutant passed 10 seeds");
    assert!(!caught.starts_with("panicked"), "{caught}");
}

/// Issue #21's seeds: at 400 and 1,000 MTRs they once left a segment stuck behind a hole no
/// peer could fill (a never-completed recovery's range outliving the recovery that overrode
/// it) or served a page built on a record a completed recovery voided. S15 and X9 make
/// both states impossible; each seed must now pass. Seed 21,009,836 at 1,000 MTRs had a
/// stale writer open at epoch 2 after the epoch-3 writer acknowledged commits: harmless
/// (X12), and the oracle now checks a recovery against lower epochs' commits only.
#[test]
fn long_runs_that_once_failed_pass() {
    for (seed, mtrs) in [
        (7_000_833, 400),
        (5_001_119, 1000),
        (5_001_592, 1000),
        (5_001_462, 1000),
        (5_001_963, 1000),
        (21_009_836, 1000),
        // S23: the first writer stopped before epoch 1 reached three nodes; every other
        // node was late and no recovery could plan until the genesis rule.
        (1_240, 150),
    ] {
        let outcome = sim::run(SimOptions {
            mtrs,
            ..options(seed)
        });
        assert!(
            outcome.failure.is_none(),
            "seed {seed}: {:?}\n  replay: sixfold sim --seed {seed} --mtrs {mtrs}",
            outcome.failure
        );
        // X12: the trace validator, too, holds each recovery to lower epochs' commits only.
        sixfold_conformance::validate::validate(&outcome.trace)
            .unwrap_or_else(|v| panic!("seed {seed}: trace rejected: {v}"));
    }
}

/// The simulator's reach grows with run length (#21): short runs at 10 MTRs and long ones
/// at 400, beside the 40-MTR seeds above.
#[test]
fn seeds_pass_at_several_lengths() {
    let mut failures = Vec::new();
    for (mtrs, seeds) in [(10_usize, 100_u64), (400, 12)] {
        for seed in 0..seeds {
            let seed = 1_000_000 * mtrs as u64 + seed;
            if let Some(failure) = sim::run(SimOptions {
                mtrs,
                ..options(seed)
            })
            .failure
            {
                failures.push(format!(
                    "seed {seed}: {failure}\n  replay: sixfold sim --seed {seed} --mtrs {mtrs}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// S15's mutant `truncation-union` (issue #21, bug 1) lives in the node machine now
// (`NodeStoreMutant::TruncationUnion`); `impl/storage/tests/node_store.rs` shows it caught.
// Once the simulator ran that machine, `sixfold sim --seeds 600 --seed 9000000 --mtrs 1000
// --mutant truncation-union` no longer failed (its old seed 9000189 included): a node now
// adopts a history whole, for all its segments at once, which closes the per-segment path
// that the old seed took.
