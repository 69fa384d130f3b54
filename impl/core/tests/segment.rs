mod common;

use common::{edit, lsn};
use sixfold_core::{
    Epoch, Hole, Lsn, PageId, PgId, RedoRecord, SegmentError, SegmentId, SegmentState,
    TruncationRange,
};

const SEGMENT: SegmentId = SegmentId {
    pg: PgId(0),
    replica: 0,
};

/// A chain of PG 0 records at the given LSNs, each linked to the one before.
fn chain(lsns: &[u64]) -> Vec<RedoRecord> {
    let mut prev = 0;
    lsns.iter()
        .map(|&l| {
            let record = RedoRecord {
                lsn: Lsn(l),
                pg: PgId(0),
                prev_lsn_pg: Lsn(prev),
                prev_lsn_page: Lsn(prev),
                epoch: Epoch(1),
                page: PageId::new(1, 0),
                cpl: true,
                body: edit(0, &[l as u8]),
            };
            prev = l;
            record
        })
        .collect()
}

#[test]
fn scl_follows_backlinks_in_any_order() {
    // S3, S4: out-of-order arrival and duplicates; SCL only moves along the chain.
    let records = chain(&[2, 5, 9]);
    let mut segment = SegmentState::new(SEGMENT);
    let accepted = segment
        .handle_write(Epoch(1), Lsn(0), records[2].clone())
        .unwrap();
    assert_eq!(accepted.scl, Lsn(0));
    segment
        .handle_write(Epoch(1), Lsn(0), records[0].clone())
        .unwrap();
    assert_eq!(segment.scl(), Lsn(2));
    let duplicate = segment
        .handle_write(Epoch(1), Lsn(0), records[0].clone())
        .unwrap();
    assert!(!duplicate.inserted);
    segment
        .handle_write(Epoch(1), Lsn(0), records[1].clone())
        .unwrap();
    assert_eq!(segment.scl(), Lsn(9));
}

#[test]
fn holes_are_reported_as_ranges() {
    // S5
    let records = chain(&[2, 5, 9, 12]);
    let mut segment = SegmentState::new(SEGMENT);
    for index in [0, 2, 3] {
        segment
            .handle_write(Epoch(1), Lsn(0), records[index].clone())
            .unwrap();
    }
    assert_eq!(segment.scl(), Lsn(2));
    assert_eq!(
        segment.holes(),
        vec![Hole {
            after: lsn(2),
            before: lsn(9)
        }]
    );
}

#[test]
fn gossip_fills_holes_from_a_peer() {
    // S6
    let records = chain(&[2, 5, 9, 12]);
    let mut full = SegmentState::new(SEGMENT);
    for record in &records {
        full.handle_write(Epoch(1), Lsn(0), record.clone()).unwrap();
    }
    let mut lagging = SegmentState::new(SegmentId {
        pg: PgId(0),
        replica: 1,
    });
    lagging
        .handle_write(Epoch(1), Lsn(0), records[2].clone())
        .unwrap();
    let request = lagging.gossip_request();
    let answer = full.answer_gossip(&request);
    let sent: Vec<u64> = answer.iter().map(|r| r.lsn.0).collect();
    assert_eq!(sent, vec![2, 5, 12]);
    lagging
        .handle_gossip(full.epoch(), full.truncations(), answer)
        .unwrap();
    assert_eq!(lagging.scl(), Lsn(12));
}

#[test]
fn stale_epochs_are_refused() {
    // S7, E2, E5
    let records = chain(&[1, 2]);
    let mut segment = SegmentState::new(SEGMENT);
    assert!(segment.raise_epoch(Epoch(3)).unwrap());
    let refused = segment.handle_write(Epoch(2), Lsn(0), records[0].clone());
    assert!(matches!(refused, Err(SegmentError::StaleEpoch { .. })));
    assert_eq!(segment.scl(), Lsn(0));
    assert!(segment.raise_epoch(Epoch(2)).is_err());
    assert_eq!(segment.epoch(), Epoch(3));
    // S6, S7: a peer of a lower epoch gets no records (it may lack a truncation).
    let mut stale_peer = SegmentState::new(SegmentId {
        pg: PgId(0),
        replica: 2,
    });
    stale_peer.raise_epoch(Epoch(1)).unwrap();
    segment
        .handle_write(Epoch(3), Lsn(0), records[0].clone())
        .unwrap();
    assert!(
        segment
            .answer_gossip(&stale_peer.gossip_request())
            .is_empty()
    );
}

#[test]
fn truncation_voids_and_refuses_records() {
    // S8
    let records = chain(&[1, 2, 3, 4]);
    let mut segment = SegmentState::new(SEGMENT);
    for record in &records {
        segment
            .handle_write(Epoch(1), Lsn(0), record.clone())
            .unwrap();
    }
    let range = TruncationRange {
        lsn_begin: Lsn(2),
        lsn_end: Lsn(10),
        epoch: Epoch(2),
    };
    let voided = segment.handle_truncate(&[range]).unwrap();
    assert_eq!(voided, vec![Lsn(3), Lsn(4)]);
    assert_eq!(segment.scl(), Lsn(2));
    assert_eq!(segment.epoch(), Epoch(2));
    let refused = segment.handle_write(Epoch(2), Lsn(0), records[2].clone());
    assert!(matches!(refused, Err(SegmentError::Truncated { .. })));
    // Idempotent.
    assert!(segment.handle_truncate(&[range]).unwrap().is_empty());
    // The new epoch's record links to 2, above the range.
    let mut next = chain(&[2, 11])[1].clone();
    next.epoch = Epoch(2);
    segment.handle_write(Epoch(2), Lsn(2), next).unwrap();
    assert_eq!(segment.scl(), Lsn(11));
}

#[test]
fn bad_records_are_refused_and_nothing_is_lost() {
    // S13
    let records = chain(&[1, 2]);
    let mut segment = SegmentState::new(SEGMENT);
    segment
        .handle_write(Epoch(1), Lsn(0), records[0].clone())
        .unwrap();
    let mut other_pg = records[1].clone();
    other_pg.pg = PgId(4);
    assert!(matches!(
        segment.handle_write(Epoch(1), Lsn(0), other_pg),
        Err(SegmentError::WrongPg { .. })
    ));
    let mut forward_link = records[1].clone();
    forward_link.prev_lsn_pg = Lsn(7);
    assert!(matches!(
        segment.handle_write(Epoch(1), Lsn(0), forward_link),
        Err(SegmentError::Malformed { .. })
    ));
    let mut changed = records[0].clone();
    changed.body = edit(9, &[9]);
    assert!(matches!(
        segment.handle_write(Epoch(1), Lsn(0), changed),
        Err(SegmentError::DuplicateMismatch { .. })
    ));
    assert_eq!(segment.scl(), Lsn(1));
    assert_eq!(segment.record(Lsn(1)), Some(&records[0]));
}

#[test]
fn report_lists_what_is_held_above_the_hint() {
    // X1
    let records = chain(&[1, 2, 4]);
    let mut segment = SegmentState::new(SEGMENT);
    for record in &records {
        segment
            .handle_write(Epoch(1), Lsn(2), record.clone())
            .unwrap();
    }
    let report = segment.report();
    assert_eq!(report.vdl_hint, Lsn(2));
    assert_eq!(report.tip_at_hint, Lsn(2));
    assert_eq!(report.held, vec![(Lsn(4), true, Epoch(1))]);
}

#[test]
fn forgetting_keeps_the_chain_going() {
    // S10
    let records = chain(&[1, 2, 4, 6]);
    let mut segment = SegmentState::new(SEGMENT);
    for record in &records[..3] {
        segment
            .handle_write(Epoch(1), Lsn(0), record.clone())
            .unwrap();
    }
    assert_eq!(segment.forget_through(Lsn(3)), 2);
    assert_eq!(segment.forgotten_through(), Lsn(2));
    assert!(
        !segment
            .handle_write(Epoch(1), Lsn(0), records[0].clone())
            .unwrap()
            .inserted
    );
    segment
        .handle_write(Epoch(1), Lsn(0), records[3].clone())
        .unwrap();
    assert_eq!(segment.scl(), Lsn(6));
}

#[test]
fn recovery_epoch_fences_the_old_writer_and_hints_are_kept() {
    // E4: once a segment answered recovery at epoch 2, the epoch-1 writer is refused.
    // W5: every write carries the writer's VDL as a hint; the segment keeps the highest.
    let records = chain(&[1, 2, 3]);
    let mut segment = SegmentState::new(SEGMENT);
    segment
        .handle_write(Epoch(1), Lsn(0), records[0].clone())
        .unwrap();
    segment
        .handle_write(Epoch(1), Lsn(1), records[1].clone())
        .unwrap();
    assert_eq!(segment.vdl_hint(), Lsn(1));
    segment.raise_epoch(Epoch(2)).unwrap();
    let report = segment.report();
    assert_eq!((report.epoch, report.vdl_hint), (Epoch(2), Lsn(1)));
    assert!(matches!(
        segment.handle_write(Epoch(1), Lsn(2), records[2].clone()),
        Err(SegmentError::StaleEpoch { .. })
    ));
    assert_eq!(segment.scl(), Lsn(2));
}

#[test]
fn a_range_voids_only_records_of_lower_epochs() {
    // S8: a range of epoch 3 never voids or refuses a record written in epoch 4.
    let mut segment = SegmentState::new(SEGMENT);
    segment.raise_epoch(Epoch(4)).unwrap();
    let mut later = chain(&[217])[0].clone();
    later.epoch = Epoch(4);
    later.prev_lsn_pg = Lsn(0);
    segment
        .handle_write(Epoch(4), Lsn(0), later.clone())
        .unwrap();
    let old = TruncationRange {
        lsn_begin: Lsn(178),
        lsn_end: Lsn(226),
        epoch: Epoch(3),
    };
    segment.handle_gossip(Epoch(4), &[old], Vec::new()).unwrap();
    assert_eq!(segment.record(Lsn(217)), Some(&later));
    assert_eq!(segment.scl(), Lsn(217));
}

#[test]
fn a_later_epochs_backlink_drops_records_a_missed_recovery_voided() {
    // S14: the segment holds 3 and 4 of epoch 1; epoch 2's recovery truncated above 2, which
    // the segment missed; epoch 2's record 9 links to 2, so 3 and 4 are void.
    let records = chain(&[1, 2, 3, 4]);
    let mut segment = SegmentState::new(SEGMENT);
    for record in &records {
        segment
            .handle_write(Epoch(1), Lsn(0), record.clone())
            .unwrap();
    }
    assert_eq!(segment.scl(), Lsn(4));
    let mut next = chain(&[2, 9])[1].clone();
    next.epoch = Epoch(2);
    segment.handle_write(Epoch(2), Lsn(2), next).unwrap();
    assert_eq!(segment.scl(), Lsn(9));
    assert!(segment.record(Lsn(3)).is_none() && segment.record(Lsn(4)).is_none());
    // A stale copy of 3 arriving later is skipped, not stored.
    assert!(
        !segment
            .handle_write(Epoch(2), Lsn(2), records[2].clone())
            .unwrap()
            .inserted
    );
}

#[test]
fn a_newer_history_drops_a_range_its_recovery_never_saw() {
    // S15 (issue #21, bug 1): recovery 2 truncated (1, 10] here but never completed;
    // recovery 3 did not see it, kept record 2 (epoch 1), and left history {(2, 12, 3)}.
    // The segment adopts that history whole: range 2 is gone, and record 2 is taken again,
    // so the chain through it (record 13 of epoch 3 links to 2) completes.
    let mut segment = SegmentState::new(SEGMENT);
    let records = chain(&[1, 2]);
    segment
        .handle_write(Epoch(1), Lsn(0), records[0].clone())
        .unwrap();
    let never_completed = TruncationRange {
        lsn_begin: Lsn(1),
        lsn_end: Lsn(10),
        epoch: Epoch(2),
    };
    segment.handle_truncate(&[never_completed]).unwrap();
    assert!(matches!(
        segment.handle_write(Epoch(2), Lsn(0), records[1].clone()),
        Err(SegmentError::Truncated { .. })
    ));
    let overriding = TruncationRange {
        lsn_begin: Lsn(2),
        lsn_end: Lsn(12),
        epoch: Epoch(3),
    };
    segment.handle_truncate(&[overriding]).unwrap();
    assert_eq!(segment.truncations(), &[overriding]);
    assert_eq!(segment.history_epoch(), Epoch(3));
    segment
        .handle_write(Epoch(3), Lsn(0), records[1].clone())
        .unwrap();
    let mut next = chain(&[2, 13])[1].clone();
    next.epoch = Epoch(3);
    segment.handle_write(Epoch(3), Lsn(0), next).unwrap();
    assert_eq!(segment.scl(), Lsn(13));
}

#[test]
fn a_newer_history_from_gossip_voids_what_a_missed_recovery_truncated() {
    // S15 (issue #21, bug 2): the segment missed recovery 2, which voided record 3; a peer's
    // gossip carries the history {(2, 10, 2), (11, 20, 3)}: record 3 goes, SCL falls to 2.
    let mut segment = SegmentState::new(SEGMENT);
    for record in chain(&[1, 2, 3]) {
        segment.handle_write(Epoch(1), Lsn(0), record).unwrap();
    }
    assert_eq!(segment.scl(), Lsn(3));
    let history = [
        TruncationRange {
            lsn_begin: Lsn(2),
            lsn_end: Lsn(10),
            epoch: Epoch(2),
        },
        TruncationRange {
            lsn_begin: Lsn(11),
            lsn_end: Lsn(20),
            epoch: Epoch(3),
        },
    ];
    segment
        .handle_gossip(Epoch(3), &history, Vec::new())
        .unwrap();
    assert_eq!(segment.record(Lsn(3)), None);
    assert_eq!(segment.scl(), Lsn(2));
    // An older history changes nothing.
    segment
        .handle_gossip(Epoch(3), &history[..1], Vec::new())
        .unwrap();
    assert_eq!(segment.truncations(), &history);
}

#[test]
fn a_history_over_the_one_limit_is_refused_whole() {
    // S15: TRUNCATIONS_MAX bounds a history everywhere; a longer one, from a recovery or a
    // peer's gossip, is a typed error and changes nothing.
    let mut segment = SegmentState::new(SEGMENT);
    segment
        .handle_write(Epoch(1), Lsn(0), chain(&[1])[0].clone())
        .unwrap();
    let history: Vec<TruncationRange> = (0..=sixfold_core::types::TRUNCATIONS_MAX as u64)
        .map(|i| TruncationRange {
            lsn_begin: Lsn(10 + 2 * i),
            lsn_end: Lsn(11 + 2 * i),
            epoch: Epoch(2 + i),
        })
        .collect();
    assert!(matches!(
        segment.handle_truncate(&history),
        Err(SegmentError::TooManyTruncations { ranges, .. })
            if ranges == sixfold_core::types::TRUNCATIONS_MAX + 1
    ));
    assert!(matches!(
        segment.handle_gossip(Epoch(5000), &history, Vec::new()),
        Err(SegmentError::TooManyTruncations { .. })
    ));
    assert_eq!(segment.epoch(), Epoch(1));
    assert!(segment.truncations().is_empty());
    // At the limit it is taken.
    segment
        .handle_truncate(&history[..sixfold_core::types::TRUNCATIONS_MAX])
        .unwrap();
    assert_eq!(
        segment.truncations().len(),
        sixfold_core::types::TRUNCATIONS_MAX
    );
}

#[test]
fn a_recoverys_raise_epoch_must_be_strictly_higher() {
    // E1, E4: an equal epoch is stale for a recovery (two recoveries never share one).
    let mut segment = sixfold_core::SegmentState::new(sixfold_core::SegmentId {
        pg: sixfold_core::PgId(0),
        replica: 0,
    });
    segment.begin_recovery(sixfold_core::Epoch(2)).unwrap();
    assert!(segment.begin_recovery(sixfold_core::Epoch(2)).is_err());
    assert!(segment.begin_recovery(sixfold_core::Epoch(1)).is_err());
    assert_eq!(segment.epoch(), sixfold_core::Epoch(2));
    assert!(segment.raise_epoch(sixfold_core::Epoch(2)).is_ok());
}

#[test]
fn an_oversize_body_is_malformed() {
    // L4, S13: 2 + 3 × (4 + 2048) = 6158 fits; one more edit of 2048 (8210) does not.
    let edit = |offset: u16| sixfold_core::Edit {
        offset,
        bytes: vec![7; 2048],
    };
    let fits = sixfold_core::RedoBody::Edits(vec![edit(0), edit(2048), edit(1024)]);
    assert!(fits.is_well_formed());
    let over = sixfold_core::RedoBody::Edits(vec![edit(0), edit(2048), edit(1024), edit(0)]);
    assert_eq!(over.encoded_bytes(), 8210);
    assert!(!over.is_well_formed());
}
