//! The replica model (spec/replica.md): the correct rules pass every property on the small
//! config, and each mutant is caught by the property named for it, with a counterexample.

use sixfold_model_checks::replica::{
    Bug, CACHE_AT_READ_POINT, Config, FAILOVER_EXPOSES_RECOVERED, NO_READ_REFUSED,
    READ_POINT_IS_VDL, ReplicaCheckOptions, WHOLE_MTRS, run_replica_check,
};
use sixfold_model_checks::{Report, Stop};

fn check(config: Config, bug: Option<Bug>, stop: Stop) -> Report {
    run_replica_check(&ReplicaCheckOptions {
        config,
        bug,
        threads: 1,
        progress: false,
        stop,
        time_limit: None,
    })
}

/// Checks `bug` until `property` fails; panics with the report if it never does.
fn assert_mutant_caught(bug: Bug, property: &'static str) {
    let report = check(bug.config(), Some(bug), Stop::Failed(property));
    let verdict = report.verdict(property).expect("property exists");
    assert!(
        !verdict.holds,
        "mutant {bug} was not caught by {property:?}:\n{report}"
    );
    let steps = verdict.counterexample.as_ref().expect("a counterexample");
    assert!(!steps.is_empty(), "empty counterexample for {bug}");
    assert!(!report.all_hold());
}

// P2-P9 hold, exhaustively, and every witness is reached: the writer reaching its last VDL
// with no replica having received anything (P1, P2: it never waits for one), redo applied
// to a held page (P4), a late storage read caught up (P6), collection while replicas read
// (P8), a warm promotion (P9).
#[test]
fn small_config_every_property_holds() {
    let report = check(Config::small(), None, Stop::Exhaustive);
    assert!(report.all_hold(), "{report}");
    assert!(report.unique_states > 1_000, "{report}");
}

// P4: a record above the read point is never applied, however early it arrives.
#[test]
fn mutant_apply_above_vdl_is_caught() {
    assert_mutant_caught(Bug::ApplyAboveVdl, CACHE_AT_READ_POINT);
}

// P3, P4, L2: the read point never stops inside an MTR, and is always a VDL.
#[test]
fn mutant_apply_partial_mtr_is_caught() {
    assert_mutant_caught(Bug::ApplyPartialMtr, WHOLE_MTRS);
    assert_mutant_caught(Bug::ApplyPartialMtr, READ_POINT_IS_VDL);
}

// P5: a page is never built from redo alone.
#[test]
fn mutant_apply_without_base_is_caught() {
    assert_mutant_caught(Bug::ApplyWithoutBase, CACHE_AT_READ_POINT);
}

// P8, R4: PGMRPL counts the replicas' read points.
#[test]
fn mutant_gc_ignores_replica_read_point_is_caught() {
    assert_mutant_caught(Bug::GcIgnoresReplicaReadPoint, NO_READ_REFUSED);
}

// P8: the reported point is the oldest open read's.
#[test]
fn mutant_report_ignores_open_reads_is_caught() {
    assert_mutant_caught(Bug::ReportIgnoresOpenReads, NO_READ_REFUSED);
}

// P6: a page read at an older read point is brought up to the current one.
#[test]
fn mutant_miss_not_caught_up_is_caught() {
    assert_mutant_caught(Bug::MissNotCaughtUp, CACHE_AT_READ_POINT);
}

// P9: a promoted replica exposes nothing above the recovered VDL.
#[test]
fn mutant_promote_applies_above_vdl_is_caught() {
    assert_mutant_caught(Bug::PromoteAppliesAboveVdl, FAILOVER_EXPOSES_RECOVERED);
}

#[test]
fn names_parse_and_configs_validate() {
    for name in Config::NAMES {
        let config = Config::named(name).expect("named config");
        assert!(config.validate().is_ok(), "{name}");
    }
    assert!(Config::named("huge").is_err());
    for bug in Bug::ALL {
        assert_eq!(bug.name().parse::<Bug>(), Ok(*bug));
    }
    assert!("no-such-bug".parse::<Bug>().is_err());
    assert!(sixfold_model_checks::validate_model("replica").is_ok());
}

/// The larger configs, for the numbers in docs/model-checking.md (optimized test profile):
/// `cargo test -p sixfold-model-checks --test replica_model -- --ignored --nocapture`.
#[test]
#[ignore = "minutes; run by hand for the docs' state counts"]
fn larger_configs_every_property_holds() {
    for config in [Config::two_replicas(), Config::reference()] {
        let report = run_replica_check(&ReplicaCheckOptions {
            config,
            bug: None,
            threads: 2,
            progress: false,
            stop: Stop::Exhaustive,
            time_limit: None,
        });
        println!("{report}");
        assert!(report.all_hold(), "{report}");
    }
}
