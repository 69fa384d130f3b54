//! The simulator under faults: seeds pass, a seed replays to the same trace hash, and each
//! implementation mutant is caught.

use sixfold_conformance::sim::{self, FaultSet, Mutant, SimOptions};

fn options(seed: u64) -> SimOptions {
    SimOptions {
        seed,
        faults: FaultSet::all(),
        mtrs: 40,
        mutant: None,
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
    // C3, C4, X4: the writer treats VCL as its durable point (its VDL hint is VCL).
    let (_, failure) = first_failure(Mutant::CommitAtVcl, 60).expect("caught");
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
    // X4
    let violation = validation_rejects(Mutant::CommitAtVcl, 80).expect("rejected");
    assert!(
        violation.contains("X4") || violation.contains("C4"),
        "{violation}"
    );
}
