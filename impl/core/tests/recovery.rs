mod common;

use std::collections::BTreeSet;

use sixfold_core::{
    Epoch, Lsn, PgId, QuorumConfig, RecoveryError, RecoveryPlanner, SegmentId, SegmentReport,
    TruncationRange,
};

fn report(pg: u32, replica: u8, hint: u64, held: &[(u64, bool)]) -> SegmentReport {
    SegmentReport {
        segment: SegmentId {
            pg: PgId(pg),
            replica,
        },
        epoch: Epoch(2),
        scl: Lsn(0),
        vdl_hint: Lsn(hint),
        tip_at_hint: Lsn(0),
        held: held
            .iter()
            .map(|&(l, cpl)| (Lsn(l), cpl, Epoch(1)))
            .collect(),
        truncations: Vec::new(),
    }
}

fn planner(pgs: &[u32]) -> RecoveryPlanner {
    RecoveryPlanner::new(
        QuorumConfig::AURORA,
        100,
        Epoch(2),
        pgs.iter().map(|&pg| PgId(pg)).collect::<BTreeSet<_>>(),
    )
}

#[test]
fn fewer_than_a_read_quorum_is_refused() {
    // X2
    let mut planner = planner(&[0, 1]);
    for replica in 0..3 {
        planner.handle_report(report(0, replica, 0, &[])).unwrap();
    }
    planner.handle_report(report(1, 0, 0, &[])).unwrap();
    planner.handle_report(report(1, 1, 0, &[])).unwrap();
    assert!(matches!(
        planner.plan(),
        Err(RecoveryError::NoReadQuorum {
            pg: 1,
            have: 2,
            need: 3
        })
    ));
    planner.handle_report(report(1, 2, 0, &[])).unwrap();
    assert!(planner.plan().is_ok());
}

#[test]
fn vcl_stops_at_the_first_lsn_nobody_holds() {
    // X3, X4: LSNs 1..=3 held across PGs (MTR 1..2 and CPL 3); LSN 4 lost; 5 held.
    let mut planner = planner(&[0, 1]);
    planner
        .handle_report(report(0, 0, 0, &[(1, false), (3, true)]))
        .unwrap();
    planner
        .handle_report(report(0, 1, 0, &[(1, false)]))
        .unwrap();
    planner.handle_report(report(0, 2, 0, &[])).unwrap();
    planner
        .handle_report(report(1, 0, 0, &[(2, true), (5, true)]))
        .unwrap();
    planner
        .handle_report(report(1, 3, 0, &[(2, true)]))
        .unwrap();
    planner.handle_report(report(1, 4, 0, &[])).unwrap();
    let (plan, _) = planner.plan().unwrap();
    assert_eq!((plan.vcl, plan.vdl), (Lsn(3), Lsn(3)));
    assert_eq!(
        plan.truncation,
        TruncationRange {
            lsn_begin: Lsn(3),
            lsn_end: Lsn(103),
            epoch: Epoch(2)
        }
    );
    assert_eq!(plan.last_lsn_by_pg[&PgId(0)], Lsn(3));
    assert_eq!(plan.last_lsn_by_pg[&PgId(1)], Lsn(2));
    // X6, X7: the writer starts from LSNs and flags alone; no record body is read or replayed.
    let start = plan.writer_start();
    assert_eq!((start.next_lsn, start.epoch), (Lsn(104), Epoch(2)));
}

#[test]
fn vdl_drops_a_partial_mtr() {
    // X4, L2: MTR 2..=3 has its CPL 3 missing: VDL is the earlier CPL 1.
    let mut planner = planner(&[0]);
    planner
        .handle_report(report(0, 0, 0, &[(1, true), (2, false)]))
        .unwrap();
    planner.handle_report(report(0, 1, 0, &[])).unwrap();
    planner.handle_report(report(0, 2, 0, &[])).unwrap();
    let (plan, _) = planner.plan().unwrap();
    assert_eq!((plan.vcl, plan.vdl), (Lsn(2), Lsn(1)));
    assert_eq!(plan.last_lsn_by_pg[&PgId(0)], Lsn(1));
}

#[test]
fn earlier_truncations_count_as_complete() {
    // X3, X8: a second recovery walks over the first one's truncation range.
    let mut planner = planner(&[0]);
    let mut first = report(0, 0, 1, &[(12, true)]);
    first.truncations.push(TruncationRange {
        lsn_begin: Lsn(1),
        lsn_end: Lsn(11),
        epoch: Epoch(1),
    });
    first.tip_at_hint = Lsn(1);
    planner.handle_report(first).unwrap();
    planner.handle_report(report(0, 1, 1, &[])).unwrap();
    planner.handle_report(report(0, 2, 0, &[])).unwrap();
    let (plan, _) = planner.plan().unwrap();
    assert_eq!((plan.vcl, plan.vdl), (Lsn(12), Lsn(12)));
}

#[test]
fn a_report_from_a_higher_epoch_forces_a_retry() {
    // E1, E5
    let mut planner = planner(&[0]);
    let mut newer = report(0, 0, 0, &[]);
    newer.epoch = Epoch(5);
    assert!(matches!(
        planner.handle_report(newer),
        Err(RecoveryError::EpochTooLow { .. })
    ));
}

#[test]
fn the_truncation_covers_what_an_earlier_writer_could_allocate() {
    // X4, W1: the writer of epoch 2 recovered to VDL 1 with truncation (1, 101] and could
    // allocate up to 101 + LAL before its VDL moved; none of that is held here, so the new
    // range must reach 201, not VDL + LAL.
    let mut planner = planner(&[0]);
    let earlier = TruncationRange {
        lsn_begin: Lsn(1),
        lsn_end: Lsn(101),
        epoch: Epoch(2),
    };
    for replica in 0..3 {
        let mut report = report(0, replica, 1, &[]);
        report.tip_at_hint = Lsn(1);
        report.truncations.push(earlier);
        planner.handle_report(report).unwrap();
    }
    let (plan, _) = planner.plan().unwrap();
    assert_eq!(plan.vdl, Lsn(1));
    assert_eq!(
        (plan.truncation.lsn_begin, plan.truncation.lsn_end),
        (Lsn(1), Lsn(201))
    );
    assert_eq!(plan.writer_start().next_lsn, Lsn(202));
}

#[test]
fn a_range_of_an_unfinished_recovery_does_not_void_a_later_epochs_records() {
    // S8, X3: epoch 3's recovery wrote (178, 226] to one segment and died; epoch 4 never saw
    // it, recovered to VDL 168 and allocated from 217. Its records 217..=220 are not void,
    // and LSNs above 216 count only where held.
    let mut planner = RecoveryPlanner::new(QuorumConfig::AURORA, 48, Epoch(5), [PgId(0)].into());
    let mut stale = report(0, 0, 168, &[]);
    stale.truncations = vec![
        TruncationRange {
            lsn_begin: Lsn(178),
            lsn_end: Lsn(226),
            epoch: Epoch(3),
        },
        TruncationRange {
            lsn_begin: Lsn(168),
            lsn_end: Lsn(216),
            epoch: Epoch(4),
        },
    ];
    stale.epoch = Epoch(5);
    planner.handle_report(stale).unwrap();
    let mut fresh = report(0, 1, 168, &[]);
    fresh.epoch = Epoch(5);
    fresh.held = vec![
        (Lsn(217), false, Epoch(4)),
        (Lsn(218), true, Epoch(4)),
        (Lsn(220), true, Epoch(4)),
    ];
    planner.handle_report(fresh).unwrap();
    let mut third = report(0, 2, 168, &[]);
    third.epoch = Epoch(5);
    planner.handle_report(third).unwrap();
    let (plan, _) = planner.plan().unwrap();
    // 219 is in epoch 3's range but above epoch 4's end: it may be epoch 4's and nobody holds it.
    assert_eq!((plan.vcl, plan.vdl), (Lsn(218), Lsn(218)));
}

#[test]
fn of_two_records_at_one_lsn_the_higher_epoch_counts() {
    // X10: LSN 2 is reported as a CPL of epoch 1 and as a non-CPL of epoch 3 (no range in
    // force voids the older one): the epoch-3 record counts, so 2 is no CPL and VDL stays
    // at 1. Were the flags OR-ed, VDL would land inside epoch 3's MTR.
    let mut planner = RecoveryPlanner::new(
        QuorumConfig::AURORA,
        100,
        Epoch(4),
        [PgId(0)].into_iter().collect::<BTreeSet<_>>(),
    );
    let mut old = report(0, 0, 0, &[(1, true), (2, true)]);
    old.epoch = Epoch(4);
    let mut new = report(0, 1, 0, &[(1, true)]);
    new.epoch = Epoch(4);
    new.held.push((Lsn(2), false, Epoch(3)));
    let mut empty = report(0, 2, 0, &[]);
    empty.epoch = Epoch(4);
    for r in [old, new, empty] {
        planner.handle_report(r).unwrap();
    }
    let (plan, _) = planner.plan().unwrap();
    assert_eq!(plan.vcl, Lsn(2));
    assert_eq!(plan.vdl, Lsn(1));
    // Same epoch: one record, a CPL if any report flags it.
    let mut planner = RecoveryPlanner::new(
        QuorumConfig::AURORA,
        100,
        Epoch(4),
        [PgId(0)].into_iter().collect::<BTreeSet<_>>(),
    );
    for (replica, cpl) in [(0, false), (1, true), (2, false)] {
        let mut r = report(0, replica, 0, &[(1, cpl)]);
        r.epoch = Epoch(4);
        planner.handle_report(r).unwrap();
    }
    assert_eq!(planner.plan().unwrap().0.vdl, Lsn(1));
}
