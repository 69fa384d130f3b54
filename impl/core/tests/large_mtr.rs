//! W8–W10: an MTR as large as LAL, crashed at any point of its delivery, is recovered
//! all or nothing: VDL is either the CPL before it or its own CPL, and in the first case
//! the truncation voids every record of it that reached a segment.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{mtr, writer};
use proptest::prelude::*;
use sixfold_core::{
    Epoch, Lsn, PgId, QuorumConfig, RecoveryPlanner, RedoRecord, SegmentId, SegmentReport,
};

const PG_PAGES: u32 = 4;
const LAL: u64 = 48;

/// The report of one segment that holds `held` of the records (those above its hint).
fn report(segment: SegmentId, hint: Lsn, held: &[&RedoRecord]) -> SegmentReport {
    let tip_at_hint = held
        .iter()
        .filter(|r| r.lsn <= hint)
        .map(|r| r.lsn)
        .max()
        .unwrap_or(Lsn::ZERO);
    SegmentReport {
        segment,
        epoch: Epoch(1),
        scl: Lsn::ZERO,
        vdl_hint: hint,
        tip_at_hint,
        held: held
            .iter()
            .filter(|r| r.lsn > hint)
            .map(|r| (r.lsn, r.cpl, r.epoch))
            .collect(),
        truncations: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// W8, W9, W10, X4: a committed MTR, then one of up to LAL records over several PGs
    /// whose records reached a random subset of segments (each record any subset, the
    /// CPL among them or not), then a crash; recovery from any read quorum of every PG.
    #[test]
    fn a_crash_during_a_large_mtr_leaves_all_or_none_of_it(
        size in 8usize..=LAL as usize - 2,
        delivered in prop::collection::vec(0u8..64, LAL as usize),
        reporters in prop::collection::vec(3usize..=6, 16),
        hint_seen in any::<bool>(),
    ) {
        let mut state = writer(PG_PAGES, LAL);
        let first = state.submit_mtr(mtr(&[(1, 0), (1, 5)])).unwrap();
        let pages: Vec<(u32, u32)> = (0..size as u32).map(|i| (1, i % 16)).collect();
        let big = state.submit_mtr(mtr(&pages)).unwrap();
        prop_assert_eq!(big.records.len(), size);
        let (cpl_before, cpl_big) = (first.commit_lsn, big.commit_lsn);
        let hint = if hint_seen { cpl_before } else { Lsn::ZERO };
        // The first MTR is on every segment; each big record on the replicas its bits say.
        let mut holds: BTreeMap<SegmentId, Vec<&RedoRecord>> = BTreeMap::new();
        for record in &first.records {
            for replica in 0..6u8 {
                holds.entry(SegmentId { pg: record.pg, replica }).or_default().push(record);
            }
        }
        for (index, record) in big.records.iter().enumerate() {
            for replica in 0..6u8 {
                let segment = SegmentId { pg: record.pg, replica };
                let entry = holds.entry(segment).or_default();
                if delivered[index] & (1 << replica) != 0 {
                    entry.push(record);
                }
            }
        }
        let pgs: BTreeSet<PgId> = holds.keys().map(|s| s.pg).collect();
        let mut planner = RecoveryPlanner::new(QuorumConfig::AURORA, LAL, Epoch(2), pgs.clone());
        for pg in &pgs {
            let count = reporters[pg.0 as usize % reporters.len()];
            for replica in 0..count as u8 {
                let segment = SegmentId { pg: *pg, replica };
                let held = holds.get(&segment).cloned().unwrap_or_default();
                planner.handle_report(report(segment, hint, &held)).unwrap();
            }
        }
        let (plan, _) = planner.plan().unwrap();
        let reported: BTreeSet<Lsn> = holds
            .iter()
            .filter(|(segment, _)| {
                (segment.replica as usize) < reporters[segment.pg.0 as usize % reporters.len()]
            })
            .flat_map(|(_, held)| held.iter().map(|r| r.lsn))
            .collect();
        if plan.vdl == cpl_big {
            // All: every record of the big MTR was found, so the whole of it is visible.
            for record in &big.records {
                prop_assert!(reported.contains(&record.lsn), "VDL at the CPL with {} lost", record.lsn);
            }
        } else {
            // None: the committed MTR stays, and every big record is void (S8).
            prop_assert_eq!(plan.vdl, cpl_before);
            prop_assert_eq!(plan.truncation.lsn_begin, cpl_before);
            for record in &big.records {
                prop_assert!(plan.truncation.contains(record.lsn) && plan.truncation.voids(record.lsn, record.epoch));
            }
            prop_assert!(plan.writer_start().next_lsn > cpl_big, "a later writer reuses no LSN of it");
        }
    }
}
