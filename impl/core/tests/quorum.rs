use std::collections::BTreeSet;

use sixfold_core::{AzId, NodeId, Placement, QuorumConfig, QuorumError};

fn aurora_placement() -> Placement {
    Placement::new((0..6).map(|i| (NodeId(i + 1), AzId(i / 2))).collect()).unwrap()
}

fn nodes(ids: &[u32]) -> BTreeSet<NodeId> {
    ids.iter().map(|&id| NodeId(id)).collect()
}

#[test]
fn aurora_sizes_are_accepted() {
    // Q1
    let quorum = QuorumConfig::new(6, 4, 3).unwrap();
    assert_eq!(
        (quorum.copies(), quorum.write_quorum(), quorum.read_quorum()),
        (6, 4, 3)
    );
}

#[test]
fn sizes_where_reads_miss_writes_are_refused() {
    // Q2: 3 + 3 = 6 lets a read quorum miss a write quorum.
    assert!(matches!(
        QuorumConfig::new(6, 3, 3),
        Err(QuorumError::ReadsMissWrites { .. })
    ));
    // Q2: 2·3 = 6 lets two write quorums miss each other.
    assert!(matches!(
        QuorumConfig::new(6, 3, 4),
        Err(QuorumError::WritesMissWrites { .. })
    ));
    assert!(matches!(
        QuorumConfig::new(6, 7, 3),
        Err(QuorumError::OutOfRange { .. })
    ));
    assert!(matches!(
        QuorumConfig::new(6, 4, 0),
        Err(QuorumError::OutOfRange { .. })
    ));
}

#[test]
fn crowded_or_narrow_placements_are_refused() {
    // Q3: three segments in one AZ.
    let crowded = (0..6)
        .map(|i| (NodeId(i), AzId(if i < 3 { 0 } else { i % 2 + 1 })))
        .collect();
    assert!(matches!(
        Placement::new(crowded),
        Err(QuorumError::CrowdedAz { .. })
    ));
    // Q6: one node holding two segments.
    let shared = (0..6).map(|i| (NodeId(i.min(4)), AzId(i / 2))).collect();
    assert!(matches!(
        Placement::new(shared),
        Err(QuorumError::SharedNode { .. })
    ));
    // Q1: five segments.
    let five = (0..5).map(|i| (NodeId(i), AzId(i / 2))).collect();
    assert!(matches!(
        Placement::new(five),
        Err(QuorumError::SegmentCount { .. })
    ));
}

#[test]
fn az_plus_one_is_computed_from_the_failed_set() {
    // Q4
    let placement = aurora_placement();
    let quorum = QuorumConfig::AURORA;
    let az_down = placement.availability(&quorum, &nodes(&[1, 2]));
    assert!(az_down.writes && az_down.reads);
    let az_plus_one = placement.availability(&quorum, &nodes(&[1, 2, 3]));
    assert!(!az_plus_one.writes && az_plus_one.reads);
    let four_down = placement.availability(&quorum, &nodes(&[1, 2, 3, 4]));
    assert!(!four_down.writes && !four_down.reads);
    assert!(placement.survives_az_plus_one(&quorum));
    // With a 6/5/2 quorum an AZ loss stops writes: the claim is computed, not assumed.
    let strict = QuorumConfig::new(6, 5, 2).unwrap();
    assert!(!placement.survives_az_plus_one(&strict));
}
