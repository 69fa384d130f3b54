//! Regression tests for the two sixfold-core fixes the cluster work needed (S6, S8, X3).

use std::collections::BTreeSet;

use sixfold_core::{
    DbId, Edit, Epoch, Lsn, PageId, PgId, QuorumConfig, RecoveryPlanner, RedoBody, RedoRecord,
    SegmentId, SegmentReport, SegmentState, TruncationRange,
};

fn segment(replica: u8) -> SegmentId {
    SegmentId {
        pg: PgId(0),
        replica,
    }
}

fn record(lsn: u64, prev: u64, epoch: u64) -> RedoRecord {
    RedoRecord {
        lsn: Lsn(lsn),
        pg: PgId(0),
        prev_lsn_pg: Lsn(prev),
        prev_lsn_page: Lsn(0),
        epoch: Epoch(epoch),
        page: PageId {
            db: DbId(1),
            page_no: lsn as u32,
        },
        cpl: true,
        body: RedoBody::Edits(vec![Edit {
            offset: 0,
            bytes: vec![1],
        }]),
    }
}

#[test]
fn gossip_still_works_after_a_second_recovery() {
    // S6, S8: a peer's truncation range of an older epoch does not make gossip fail.
    let old = TruncationRange {
        lsn_begin: Lsn(1),
        lsn_end: Lsn(100),
        epoch: Epoch(2),
    };
    let mut segment = SegmentState::new(segment(0));
    segment.handle_truncate(&[old]).unwrap();
    segment.raise_epoch(Epoch(3)).unwrap();
    let merged = segment.handle_gossip(Epoch(3), &[old], vec![record(101, 1, 3)]);
    assert_eq!(merged.unwrap(), vec![Lsn(101)]);
}

#[test]
fn a_held_lsn_someone_truncated_is_not_recovered() {
    // X3, S8: a segment that missed a truncation still reports the voided LSNs; the plan
    // ignores them (and their CPL flags).
    let range = TruncationRange {
        lsn_begin: Lsn(1),
        lsn_end: Lsn(50),
        epoch: Epoch(2),
    };
    let mut planner = RecoveryPlanner::new(
        QuorumConfig::AURORA,
        10,
        Epoch(4),
        BTreeSet::from([PgId(0)]),
    );
    for replica in 0..3 {
        let stale = replica == 0;
        planner
            .handle_report(SegmentReport {
                segment: segment(replica),
                epoch: Epoch(4),
                scl: Lsn(1),
                vdl_hint: Lsn(1),
                tip_at_hint: Lsn(1),
                held: if stale {
                    vec![(Lsn(2), false, Epoch(1)), (Lsn(3), true, Epoch(1))]
                } else {
                    Vec::new()
                },
                truncations: if stale { Vec::new() } else { vec![range] },
            })
            .unwrap();
    }
    let (plan, _) = planner.plan().unwrap();
    assert_eq!(plan.vdl, Lsn(1), "a voided CPL became the VDL");
}
