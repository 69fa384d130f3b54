//! The membership model (spec/protocol.md M1–M6): the correct protocol passes every
//! property, and each mutant is caught by the property named for it, with a counterexample.

use sixfold_model_checks::membership::{
    ACKED_DURING_CHANGE, Bug, CHANGE_ABORTED, CHANGE_FINALIZED, CHANGES_COMPOSE, CheckOptions,
    Config, EPOCH_MONOTONIC, FINALIZE_ONLY_WHOLE, NO_ACKED_WRITE_LOST, READ_QUORUM_SEES_ACKED,
    run_check,
};
use sixfold_model_checks::{Report, Stop};

fn check(config: Config, bug: Option<Bug>, stop: Stop) -> Report {
    run_check(&CheckOptions {
        config,
        bug,
        threads: 1,
        progress: false,
        stop,
        time_limit: None,
    })
}

/// Checks `bug` until `property` fails; panics with the report if it never does.
fn assert_mutant_caught(bug: Bug, property: &'static str) -> Report {
    let report = check(bug.config(), Some(bug), Stop::Failed(property));
    let verdict = report.verdict(property).expect("property exists");
    assert!(
        !verdict.holds,
        "mutant {bug} was not caught by {property:?}:\n{report}"
    );
    let steps = verdict
        .counterexample
        .as_ref()
        .expect("an always property has a counterexample");
    assert!(!steps.is_empty(), "empty counterexample for {bug}");
    assert!(!report.all_hold());
    report
}

// M1, M2, M3, M4, M5, Q1: one replacement of a member (live or failed) by a spare, begun, hydrated,
// finalized or aborted, with writes and a failure interleaved: exhaustively, every property
// holds and every scenario is reached.
#[test]
fn correct_model_small_config_holds_every_property_exhaustively() {
    let report = check(Config::small(), None, Stop::Exhaustive);
    assert!(
        report.complete,
        "small must be explored to the end:\n{report}"
    );
    assert!(report.all_hold(), "correct model failed:\n{report}");
    for name in [
        NO_ACKED_WRITE_LOST,
        READ_QUORUM_SEES_ACKED,
        EPOCH_MONOTONIC,
        FINALIZE_ONLY_WHOLE,
        CHANGE_FINALIZED,
        CHANGE_ABORTED,
        ACKED_DURING_CHANGE,
    ] {
        let verdict = report.verdict(name).expect("property exists");
        assert!(verdict.holds, "{name}:\n{report}");
        assert!(!verdict.rules.is_empty(), "{name} names its rule IDs");
    }
    assert!(
        report.unique_states > 1_000,
        "small explored too little:\n{report}"
    );
}

// M6: a replacement in flight while a second member fails and is replaced too (four
// quorum sets), two failures: every property holds, and two changes were in flight.
#[test]
fn correct_model_composed_changes_hold_exhaustively() {
    let report = check(Config::composed(), None, Stop::Exhaustive);
    assert!(report.complete, "{report}");
    assert!(report.all_hold(), "correct model failed:\n{report}");
    let composed = report.verdict(CHANGES_COMPOSE).expect("property exists");
    assert!(
        composed.holds,
        "two changes were never in flight:\n{report}"
    );
}

// M5 broken: F is replaced by G before G copied what F's peers hold; a write acknowledged
// at A,B,C,F is then on three of ABCDEG.
#[test]
fn mutant_finalize_before_hydrate_is_caught() {
    assert_mutant_caught(Bug::FinalizeBeforeHydrate, FINALIZE_ONLY_WHOLE);
    assert_mutant_caught(Bug::FinalizeBeforeHydrate, READ_QUORUM_SEES_ACKED);
}

// M2 broken: in the dual state a write acknowledged at 4/6 of ABCDEG only (A,B,C,G) is
// missed by the read quorum D,E,F of ABCDEF (or after an abort back to ABCDEF).
#[test]
fn mutant_write_quorum_only_new_set_is_caught() {
    assert_mutant_caught(Bug::WriteQuorumOnlyNewSet, READ_QUORUM_SEES_ACKED);
}

// M1 broken: segments take writes of the writer's stale membership; it acknowledges at
// 4/6 of ABCDEF after G has hydrated, and the finalized ABCDEG misses the write.
#[test]
fn mutant_stale_membership_epoch_accepted_is_caught() {
    assert_mutant_caught(Bug::StaleMembershipEpochAccepted, READ_QUORUM_SEES_ACKED);
}

// M1 broken: a segment takes the epoch of a stale request as its own.
#[test]
fn mutant_epoch_follows_request_is_caught() {
    assert_mutant_caught(Bug::EpochFollowsRequest, EPOCH_MONOTONIC);
}

// M3 broken: F drops its records when the change begins; with G still hydrating, the read
// quorum D,E,F of ABCDEF misses a write acknowledged at A,B,C,F.
#[test]
fn mutant_drop_f_before_finalize_is_caught() {
    assert_mutant_caught(Bug::DropFBeforeFinalize, READ_QUORUM_SEES_ACKED);
}

// Every mutant has a named config, and every config is valid.
#[test]
fn each_mutant_and_config_is_named_and_valid() {
    for bug in Bug::ALL {
        let config = bug.config();
        assert!(Config::named(config.name).is_ok(), "{bug}");
        assert_eq!(bug.name().parse::<Bug>(), Ok(*bug));
    }
    for name in Config::NAMES {
        let config = Config::named(name).expect("named");
        assert_eq!(config.validate(), Ok(()), "{name}");
    }
    assert!("no-such-bug".parse::<Bug>().is_err());
}

// M5 as first written: a hydrating member counted peer copies across membership epochs;
// with two changes, one finalized between its copies, its three peers all lacked a write
// acknowledged before its change began.
#[test]
fn mutant_hydration_peers_across_epochs_is_caught() {
    let report = assert_mutant_caught(Bug::HydrationPeersAcrossEpochs, FINALIZE_ONLY_WHOLE);
    println!("{report}");
}
