//! Property tests: the incremental SCL / PGCL / VCL / VDL against brute-force recomputation
//! from the set of delivered records, over random orders, losses and duplicates; and
//! recovery against the history it recovers.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sixfold_core::redo::{apply_body, diff_pages, materialize};
use sixfold_core::{
    Epoch, Lsn, Mtr, PAGE_BYTES, PageId, PgId, ProtocolEvent, QuorumConfig, RecoveryPlanner,
    RedoRecord, SegmentId, SegmentState, WriterState,
};

const PGS: u32 = 2;
const PG_PAGES: u32 = 4;

#[derive(Clone, Debug)]
struct Delivery {
    record: usize,
    replica: u8,
    ack: bool,
}

fn scenario() -> impl Strategy<Value = (Vec<Vec<u32>>, Vec<Delivery>)> {
    let mtrs = prop::collection::vec(prop::collection::vec(0..PGS * PG_PAGES, 1..=3), 1..8);
    let deliveries = prop::collection::vec(
        (0usize..64, 0u8..6, prop::bool::weighted(0.7)).prop_map(|(record, replica, ack)| {
            Delivery {
                record,
                replica,
                ack,
            }
        }),
        0..120,
    );
    (mtrs, deliveries)
}

struct Run {
    writer: WriterState,
    records: Vec<RedoRecord>,
    segments: BTreeMap<SegmentId, SegmentState>,
    delivered: BTreeMap<SegmentId, BTreeSet<Lsn>>,
    acked_scl: BTreeMap<SegmentId, Lsn>,
    acknowledged: BTreeSet<Lsn>,
}

fn start(mtrs: &[Vec<u32>]) -> Run {
    let mut writer = common::writer(PG_PAGES, 1_000);
    let mut records = Vec::new();
    for pages in mtrs {
        let mut mtr = Mtr::new();
        for (index, &page_no) in pages.iter().enumerate() {
            mtr.push(
                PageId::new(1, page_no),
                common::edit(index as u16, &[page_no as u8]),
            );
        }
        records.extend(writer.submit_mtr(mtr).unwrap().records);
    }
    let segments = (0..PGS)
        .flat_map(|pg| WriterState::segments_of(PgId(pg)))
        .map(|segment| (segment, SegmentState::new(segment)))
        .collect();
    Run {
        writer,
        records,
        segments,
        delivered: BTreeMap::new(),
        acked_scl: BTreeMap::new(),
        acknowledged: BTreeSet::new(),
    }
}

impl Run {
    fn deliver(&mut self, delivery: &Delivery) {
        let record = self.records[delivery.record % self.records.len()].clone();
        let segment = SegmentId {
            pg: record.pg,
            replica: delivery.replica,
        };
        let state = self.segments.get_mut(&segment).unwrap();
        let vdl_hint = self.writer.vdl();
        let accepted = state
            .handle_write(Epoch(1), vdl_hint, record.clone())
            .unwrap();
        self.delivered
            .entry(segment)
            .or_default()
            .insert(record.lsn);
        if delivery.ack {
            self.writer.handle_ack(segment, accepted.scl, Epoch(1));
            let acked = self.acked_scl.entry(segment).or_default();
            *acked = (*acked).max(accepted.scl);
        }
        while let Some(event) = self.writer.poll_event() {
            if let ProtocolEvent::CommitAcknowledged { lsn } = event {
                self.acknowledged.insert(lsn);
            }
        }
    }

    fn pg_lsns(&self, pg: PgId) -> Vec<Lsn> {
        self.records
            .iter()
            .filter(|r| r.pg == pg)
            .map(|r| r.lsn)
            .collect()
    }

    /// Brute force S4: the longest prefix of the PG's records all delivered.
    fn brute_scl(&self, segment: SegmentId) -> Lsn {
        let held = self.delivered.get(&segment).cloned().unwrap_or_default();
        self.pg_lsns(segment.pg)
            .into_iter()
            .take_while(|lsn| held.contains(lsn))
            .last()
            .unwrap_or(Lsn::ZERO)
    }

    /// Brute force C1–C3 from the acked SCLs.
    fn brute_vcl_vdl(&self) -> (Lsn, Lsn) {
        let durable = |record: &RedoRecord| {
            WriterState::segments_of(record.pg)
                .iter()
                .filter(|s| self.acked_scl.get(s).copied().unwrap_or_default() >= record.lsn)
                .count()
                >= QuorumConfig::AURORA.write_quorum()
        };
        let vcl = self
            .records
            .iter()
            .take_while(|r| durable(r))
            .last()
            .map_or(Lsn::ZERO, |r| r.lsn);
        let vdl = self
            .records
            .iter()
            .rfind(|r| r.cpl && r.lsn <= vcl)
            .map_or(Lsn::ZERO, |r| r.lsn);
        (vcl, vdl)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn incremental_bookkeeping_matches_brute_force((mtrs, deliveries) in scenario()) {
        // S3, S4, C1, C2, C3, C4, C5
        let mut run = start(&mtrs);
        let mut last_vdl = Lsn::ZERO;
        for delivery in &deliveries {
            run.deliver(delivery);
            for (&segment, state) in &run.segments {
                prop_assert_eq!(state.scl(), run.brute_scl(segment), "SCL of {}", segment);
            }
            let (vcl, vdl) = run.brute_vcl_vdl();
            prop_assert_eq!(run.writer.vcl(), vcl);
            prop_assert_eq!(run.writer.vdl(), vdl);
            prop_assert!(vdl >= last_vdl);
            last_vdl = vdl;
            let expected: BTreeSet<Lsn> = run.records.iter().filter(|r| r.cpl && r.lsn <= vdl).map(|r| r.lsn).collect();
            prop_assert_eq!(&run.acknowledged, &expected);
        }
    }

    #[test]
    fn recovery_keeps_every_acknowledged_commit_and_no_partial_mtr(
        (mtrs, deliveries) in scenario(),
        quorum_picks in prop::collection::vec(prop::sample::subsequence((0u8..6).collect::<Vec<_>>(), 3..=6), PGS as usize),
    ) {
        // X1–X4, Q5, C4, L2
        let mut run = start(&mtrs);
        for delivery in &deliveries {
            run.deliver(delivery);
        }
        let pgs: BTreeSet<PgId> = (0..PGS).map(PgId).collect();
        let mut planner = RecoveryPlanner::new(QuorumConfig::AURORA, 1_000, Epoch(2), pgs);
        for (pg, replicas) in quorum_picks.iter().enumerate() {
            for &replica in replicas {
                let segment = SegmentId { pg: PgId(pg as u32), replica };
                planner.handle_report(run.segments[&segment].report()).unwrap();
            }
        }
        let (plan, _) = planner.plan().unwrap();
        // Durability: every acknowledged commit is at or below the recovered VDL.
        prop_assert!(run.acknowledged.iter().all(|&lsn| lsn <= plan.vdl));
        prop_assert!(plan.vdl >= run.writer.vdl(), "C3: VDL never goes back across epochs");
        prop_assert!(plan.vdl <= plan.vcl);
        // VDL is a CPL (or nothing).
        prop_assert!(plan.vdl == Lsn::ZERO || run.records.iter().any(|r| r.lsn == plan.vdl && r.cpl));
        // No partial MTR: every record ≤ VDL is held by some segment that reported.
        let held: BTreeSet<Lsn> = run.segments.values().flat_map(|s| s.records().map(|r| r.lsn)).collect();
        prop_assert!(run.records.iter().filter(|r| r.lsn <= plan.vdl).all(|r| held.contains(&r.lsn)));
        // X5: applying the truncation and gossiping from the reporting segments brings a
        // write quorum of every PG to its last LSN ≤ VDL.
        for (pg, replicas) in quorum_picks.iter().enumerate() {
            let pg = PgId(pg as u32);
            let sources: Vec<SegmentState> = replicas
                .iter()
                .map(|&replica| run.segments[&SegmentId { pg, replica }].clone())
                .collect();
            let mut repaired = 0;
            for target in WriterState::segments_of(pg) {
                let mut state = run.segments[&target].clone();
                state.handle_truncate(&plan.history).unwrap();
                for _ in 0..4 {
                    for source in &sources {
                        let mut source = source.clone();
                        source.handle_truncate(&plan.history).unwrap();
                        let answer = source.answer_gossip(&state.gossip_request());
                        state.handle_gossip(source.epoch(), source.truncations(), answer).unwrap();
                    }
                }
                if state.scl() >= plan.last_lsn_by_pg[&pg] {
                    repaired += 1;
                }
            }
            prop_assert!(repaired >= QuorumConfig::AURORA.write_quorum());
        }
        // X7: each PG's starting backlink is its last record ≤ VDL.
        for pg in 0..PGS {
            let expected = run.pg_lsns(PgId(pg)).into_iter().rfind(|&l| l <= plan.vdl).unwrap_or(Lsn::ZERO);
            prop_assert_eq!(plan.last_lsn_by_pg[&PgId(pg)], expected);
        }
    }

    #[test]
    fn diff_then_apply_gives_the_new_page(
        base in prop::collection::vec(any::<u8>(), PAGE_BYTES),
        changes in prop::collection::vec((0usize..PAGE_BYTES, any::<u8>()), 0..64),
    ) {
        // V7, S9
        let mut new = base.clone();
        for &(at, byte) in &changes {
            new[at] = byte;
        }
        match diff_pages(&base, &new) {
            None => prop_assert_eq!(&base, &new),
            Some(body) => {
                prop_assert!(body.is_well_formed());
                let mut page = base.clone();
                apply_body(&mut page, &body);
                prop_assert_eq!(page, new);
            }
        }
    }
}

#[test]
fn materialize_stops_at_the_read_lsn_and_checks_the_chain() {
    // S9, R3
    let page = PageId::new(1, 0);
    let record = |lsn: u64, prev: u64, byte: u8| RedoRecord {
        lsn: Lsn(lsn),
        pg: PgId(0),
        prev_lsn_pg: Lsn(prev),
        prev_lsn_page: Lsn(prev),
        epoch: Epoch(1),
        page,
        cpl: true,
        body: common::edit(0, &[byte]),
    };
    let chain = [record(1, 0, 10), record(3, 1, 30), record(7, 3, 70)];
    let base = vec![0u8; PAGE_BYTES];
    let (at_5, lsn) = materialize(&base, Lsn(0), &chain, Lsn(5)).unwrap();
    assert_eq!((at_5[0], lsn), (30, Lsn(3)));
    let (at_7, _) = materialize(&base, Lsn(0), &chain, Lsn(7)).unwrap();
    assert_eq!(at_7[0], 70);
    let broken = [record(1, 0, 10), record(7, 3, 70)];
    assert!(materialize(&base, Lsn(0), &broken, Lsn(7)).is_err());
}
