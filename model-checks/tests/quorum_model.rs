//! The quorum model: the correct protocol passes every property on the small config, and
//! each mutant is caught by the property named for it, with a counterexample.

use sixfold_model_checks::quorum::{
    Bug, Config, DURABILITY, FENCING, MTR_ATOMICITY, NO_STALE_READ, QUIESCENT_REPAIR_ENDS,
    QUIESCENT_SEGMENTS_REACH_VCL, READ_AT_POINT, RECOVERY_AFTER_DISK_LOSS, REPAIR_ENDS,
    REPAIR_RESTORES, SERVES_ONLY_VOLUME, STALE_WRITER_READS, VDL_RULES,
};
use sixfold_model_checks::{CheckOptions, Report, Stop, run_check};

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
fn assert_mutant_caught(config: Config, bug: Bug, property: &'static str) -> Report {
    let report = check(config, Some(bug), Stop::Failed(property));
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

fn failover_config() -> Config {
    Config::failover()
}

fn two_recoveries_config() -> Config {
    Config::two_recoveries()
}

// Without --config, --bug runs the config that catches the mutant.
#[test]
fn each_mutant_has_a_config_that_catches_it() {
    for bug in Bug::ALL {
        let config = bug.config();
        assert!(config.validate().is_ok());
        assert!(
            Config::named(config.name).is_ok(),
            "{bug}: config {} is named",
            config.name
        );
    }
}

// Q1, C1–C5, S1–S8, R1–R3, X1–X7, E1–E5: the correct protocol, exhaustively.
#[test]
fn correct_model_small_config_holds_every_property_exhaustively() {
    let report = check(Config::small(), None, Stop::Exhaustive);
    assert!(
        report.complete,
        "small must be explored to the end:\n{report}"
    );
    assert!(report.all_hold(), "correct model failed:\n{report}");
    for name in [DURABILITY, MTR_ATOMICITY, VDL_RULES, FENCING, READ_AT_POINT] {
        let verdict = report.verdict(name).expect("property exists");
        assert!(verdict.holds && verdict.counterexample.is_none());
        assert!(!verdict.rules.is_empty(), "{name} names its rule IDs");
    }
    assert!(
        report.unique_states > 1_000,
        "small explored too little:\n{report}"
    );
}

// E3, E4, C6: with the old writer still running after a failover, nothing breaks.
#[test]
fn correct_model_holds_with_a_failover() {
    let report = check(failover_config(), None, Stop::FirstFailure);
    assert!(report.complete, "{report}");
    assert!(report.all_hold(), "{report}");
}

// R7–R11, E3: a partitioned old writer reads under its lease, a newer one recovers, opens
// and commits; no read the old writer serves misses that commit. Exhaustive.
#[test]
fn correct_model_lease_config_never_serves_a_stale_read() {
    let report = check(Config::lease(), None, Stop::Exhaustive);
    assert!(
        report.complete,
        "lease must be explored to the end:\n{report}"
    );
    assert!(report.all_hold(), "correct model failed:\n{report}");
    let served = report.verdict(STALE_WRITER_READS).expect("property exists");
    assert!(
        served.holds,
        "the old writer never read: the check is vacuous\n{report}"
    );
    let stale = report.verdict(NO_STALE_READ).expect("property exists");
    assert!(stale.holds && !stale.rules.is_empty());
}

// R9 broken: the old writer reads from its cache without a lease and misses the new
// writer's acknowledged commit.
#[test]
fn mutant_stale_read_after_fencing_serves_a_stale_read() {
    assert_mutant_caught(Config::lease(), Bug::StaleReadAfterFencing, NO_STALE_READ);
}

// R10 broken: recovery opens while nodes of its quorum still promise the old writer a
// lease; the old writer, still counting it, reads and misses the new writer's commit.
#[test]
fn mutant_lease_not_waited_serves_a_stale_read() {
    assert_mutant_caught(Config::lease(), Bug::LeaseNotWaited, NO_STALE_READ);
}

// Q1, Q2: a write quorum of 3 does not meet every read quorum of 3; recovery misses an
// acknowledged commit.
#[test]
fn mutant_write_quorum_3_loses_an_acknowledged_commit() {
    assert_mutant_caught(Config::small(), Bug::WriteQuorum3, DURABILITY);
}

// C4: acknowledging at VCL acknowledges a commit whose MTR is only partly durable; X4
// truncates it.
#[test]
fn mutant_commit_at_vcl_loses_an_acknowledged_commit() {
    assert_mutant_caught(Config::small(), Bug::CommitAtVcl, DURABILITY);
}

// X4, S8, X3: without the truncation range a later recovery cannot cross the LSNs the
// previous recovery skipped, and loses what the new epoch committed above them.
#[test]
fn mutant_no_truncation_loses_an_acknowledged_commit() {
    assert_mutant_caught(two_recoveries_config(), Bug::NoTruncation, DURABILITY);
}

// S7, E2: a segment that has seen the new epoch takes the crashed writer's late write.
#[test]
fn mutant_no_fencing_breaks_fencing() {
    assert_mutant_caught(Config::small(), Bug::NoFencing, FENCING);
}

// X2: two reports per PG miss a record that was durable at a write quorum.
#[test]
fn mutant_recovery_read_quorum_2_loses_an_acknowledged_commit() {
    assert_mutant_caught(Config::small(), Bug::RecoveryReadQuorum2, DURABILITY);
}

// E4: recovery reads that do not fence let the old writer (still running after a failover)
// reach a write quorum and acknowledge a commit the recovery already truncated: the
// BookKeeper 4.11 bug.
#[test]
fn mutant_unfenced_recovery_reads_loses_an_acknowledged_commit() {
    assert_mutant_caught(failover_config(), Bug::UnfencedRecoveryReads, DURABILITY);
}

// S6, S7: a fenced segment merges gossip from a segment still in the old epoch.
#[test]
fn mutant_gossip_ignores_epoch_breaks_fencing() {
    assert_mutant_caught(Config::small(), Bug::GossipIgnoresEpoch, FENCING);
}

// S15, X9, S6: three epochs with gossip; segments take the newest truncation history whole,
// from recovery writes and from peers, and refuse a writer whose history they lack. Every
// property holds, the liveness one at every quiescent state, and a quiescent state is reached.
#[test]
fn correct_model_history_one_lsn_holds_every_property_exhaustively() {
    let report = check(Config::history_one_lsn(), None, Stop::Exhaustive);
    assert!(report.complete, "{report}");
    assert!(report.all_hold(), "correct model failed:\n{report}");
    for name in [SERVES_ONLY_VOLUME, QUIESCENT_SEGMENTS_REACH_VCL] {
        let verdict = report.verdict(name).expect("property exists");
        assert!(verdict.rules.contains(&"S15"), "{name} cites S15");
    }
}

// S15, X9, R1, R3: with two LSNs a completed recovery voids a record that a segment which
// missed it still holds; the next recovery's write of the whole history drops it.
#[test]
fn correct_model_history_no_gossip_holds_every_property_exhaustively() {
    let report = check(Config::history_no_gossip(), None, Stop::Exhaustive);
    assert!(report.complete, "{report}");
    assert!(report.all_hold(), "correct model failed:\n{report}");
}

// S15, X9: a segment that merges truncation ranges one by one keeps the range of a
// recovery that never completed after a later recovery kept a record in it: a hole no peer
// can fill, and the segment never reaches VCL (issue 21's stuck segment).
#[test]
fn mutant_truncation_union_leaves_a_segment_stuck() {
    assert_mutant_caught(
        Config::history_one_lsn(),
        Bug::TruncationUnion,
        QUIESCENT_SEGMENTS_REACH_VCL,
    );
}

// S15, X5, R3: a recovery write that brings only the recovery's own range leaves a record
// that an earlier completed recovery voided on the segment's chain, under the newest
// history's epoch (issue 21's page built on a void record).
#[test]
fn mutant_recovery_sends_own_range_serves_a_void_record() {
    assert_mutant_caught(
        Config::history_no_gossip(),
        Bug::RecoverySendsOwnRange,
        SERVES_ONLY_VOLUME,
    );
}

// The report says what a reader needs: counts, verdicts, rule IDs, and readable steps.
#[test]
fn report_prints_counts_verdicts_and_steps() {
    let report = assert_mutant_caught(Config::small(), Bug::RecoveryReadQuorum2, DURABILITY);
    let text = report.to_string();
    for needle in [
        "unique states:",
        "states generated:",
        "max depth:",
        "seconds:",
        "FAILS",
        "X2",
    ] {
        assert!(text.contains(needle), "report lacks {needle:?}:\n{text}");
    }
    assert!(
        text.contains("recovery e2 decides VCL"),
        "steps are not readable:\n{text}"
    );
}

// Names: every mutant parses from its CLI name and back; unknown names list the valid ones.
#[test]
fn names_round_trip_and_unknown_names_list_valid_ones() {
    for bug in Bug::ALL {
        assert_eq!(bug.name().parse::<Bug>(), Ok(*bug));
    }
    let error = "write-quorum-2".parse::<Bug>().unwrap_err().to_string();
    assert!(error.contains("write-quorum-3") && error.contains("gossip-ignores-epoch"));
    let error = Config::named("huge").unwrap_err().to_string();
    assert!(error.contains("small") && error.contains("reference") && error.contains("large"));
    assert!(sixfold_model_checks::validate_model("paxos").is_err());
    assert!(sixfold_model_checks::validate_model("quorum").is_ok());
}

// L2, W4, C2, C3: an MTR that spans two PGs commits only when both PGs hold their record at
// a write quorum; with two PGs and no restart every always-property holds exhaustively.
#[test]
fn two_pgs_commit_an_mtr_spanning_both() {
    let config = Config {
        name: "two-pgs",
        pg_count: 2,
        lsn_cap: 2,
        writer_restarts: 0,
        gossip: false,
        mtr_shapes: &[&[0, 1]],
        ..Config::small()
    };
    let report = check(config, None, Stop::Exhaustive);
    assert!(report.complete, "{report}");
    for name in [DURABILITY, MTR_ATOMICITY, VDL_RULES, FENCING, READ_AT_POINT] {
        assert!(
            report.verdict(name).is_some_and(|verdict| verdict.holds),
            "{report}"
        );
    }
    let commit = report.verdict(sixfold_model_checks::quorum::COMMIT_ACKED);
    assert!(commit.is_some_and(|verdict| verdict.holds), "{report}");
}

// S17, S19–S21, X11: a record reaches four segments and is acknowledged while two lag; one
// of the four loses its disk and comes back empty and repairing; the writer crashes and
// recovery counts the repairing segment as no answer (X11) and reads three others, which
// include a holder. The repair ends (S21) only after three distinct non-repairing peers
// answered and a writer above the epoch of the loss opened. Exhaustive: every property
// holds, and the scenario and the end of a repair are both witnessed.
#[test]
fn correct_model_disk_loss_config_keeps_every_acknowledged_commit() {
    let report = check(Config::disk_loss(), None, Stop::Exhaustive);
    assert!(
        report.complete,
        "disk-loss must be explored to the end:\n{report}"
    );
    assert!(report.all_hold(), "correct model failed:\n{report}");
    for name in [REPAIR_ENDS, RECOVERY_AFTER_DISK_LOSS] {
        let witnessed = report.verdict(name).expect("property exists");
        assert!(witnessed.holds, "{name} never happened: vacuous\n{report}");
    }
    for name in [DURABILITY, REPAIR_RESTORES, QUIESCENT_REPAIR_ENDS] {
        let verdict = report.verdict(name).expect("property exists");
        assert!(
            verdict.holds && verdict.counterexample.is_none(),
            "{report}"
        );
    }
    let rules = report
        .verdict(REPAIR_RESTORES)
        .expect("property exists")
        .rules;
    assert!(rules.contains(&"S19") && rules.contains(&"S21"));
    let rules = report
        .verdict(RECOVERY_AFTER_DISK_LOSS)
        .expect("property exists")
        .rules;
    assert!(rules.contains(&"X11") && rules.contains(&"S20"));
}

// X11, S20 broken: recovery counts the repairing segment's empty report toward its read
// quorum; with the two lagging segments it holds no copy of the acknowledged record, and
// recovery truncates it.
#[test]
fn mutant_repairing_counts_in_recovery_loses_an_acknowledged_commit() {
    let report = assert_mutant_caught(
        Config::disk_loss(),
        Bug::RepairingCountsInRecovery,
        DURABILITY,
    );
    assert!(
        report.to_string().contains("(repairing, counted as empty)"),
        "{report}"
    );
}

// S21 broken: a repair ends after answers from two distinct peers, the two lagging ones;
// the segment ends its repair without the record it held at a write quorum when it lost
// its disk.
#[test]
fn mutant_repair_clears_early_ends_a_repair_without_a_lost_record() {
    assert_mutant_caught(Config::disk_loss(), Bug::RepairClearsEarly, REPAIR_RESTORES);
}

// S21 as first written (gossip answers alone end a repair): the writer still counts the
// ack the segment gave before it lost its disk; a record reaches a write quorum with it
// after three peers answered, one of them before it took the record. The repaired segment
// then counts in recovery with the two lagging ones and the commit is truncated. S21's
// newer-writer condition (a recovery above the loss epoch completed without the segment,
// X11) closes it.
#[test]
fn mutant_repair_ends_in_loss_epoch_loses_an_acknowledged_commit() {
    assert_mutant_caught(Config::disk_loss(), Bug::RepairEndsInLossEpoch, DURABILITY);
}
