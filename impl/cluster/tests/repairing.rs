//! S19–S21, X11: a segment that lost what it acknowledged never answers recovery as an
//! empty one. Six real node stores (files, fsync) in a temporary folder, driven by hand:
//! the writer's batches, recovery's `RaiseEpoch` and the nodes' gossip.
//!
//! The scenario is the one the safety gap describes: record L is durable on segments
//! A, B, C and D; E and F lag; D's disk is lost; recovery hears from D, E and F.

use std::collections::BTreeSet;
use std::path::Path;

use sixfold_cluster::config::{ClusterConfig, six_node_toml};
use sixfold_cluster::recovery::{Answers, NodeAnswer, placed_reports};
use sixfold_cluster::store::{self, GossipAnswer, NodeStore};
use sixfold_core::{
    Birth, DbId, Edit, Epoch, Lsn, NodeId, PageId, PgId, QuorumConfig, RecoveryPlanner, RedoBody,
    RedoRecord, SegmentId,
};

const PG: PgId = PgId(0);

fn segment(replica: u8) -> SegmentId {
    SegmentId { pg: PG, replica }
}

fn node(replica: u8) -> NodeId {
    NodeId(u32::from(replica) + 1)
}

fn record(lsn: u64, prev: u64) -> RedoRecord {
    RedoRecord {
        lsn: Lsn(lsn),
        pg: PG,
        prev_lsn_pg: Lsn(prev),
        prev_lsn_page: Lsn(prev),
        epoch: Epoch(1),
        page: PageId {
            db: DbId(1),
            page_no: 1,
        },
        cpl: true,
        body: RedoBody::Edits(vec![Edit {
            offset: lsn as u16,
            bytes: vec![lsn as u8],
        }]),
    }
}

struct Cluster {
    config: ClusterConfig,
    stores: Vec<Option<NodeStore>>,
}

impl Cluster {
    fn new(dir: &Path) -> Cluster {
        let text = six_node_toml("repair", "secret-secret", 16, &[1, 2, 3, 4, 5, 6]);
        let config = ClusterConfig::parse(&text, dir).expect("config");
        assert_eq!(
            config.placement(PG).to_vec(),
            (1..=6).map(NodeId).collect::<Vec<_>>()
        );
        let stores = (1..=6)
            .map(|id| Some(store::open(&config, NodeId(id)).expect("open")))
            .collect();
        Cluster { config, stores }
    }

    fn store(&mut self, replica: u8) -> &mut NodeStore {
        self.stores[replica as usize].as_mut().expect("node up")
    }

    fn restart(&mut self, replica: u8, before: impl FnOnce(&Path)) {
        self.stores[replica as usize] = None;
        let dir = self.config.node(node(replica)).unwrap().data_dir.clone();
        before(&dir);
        self.stores[replica as usize] =
            Some(store::open(&self.config, node(replica)).expect("reopen"));
    }

    /// X1: `RaiseEpoch` to the nodes holding `replicas`, as recovery's driver sees it.
    fn raise(&mut self, epoch: u64, replicas: &[u8]) -> Answers {
        let mut answers = Answers::new();
        for &replica in replicas {
            let store = self.store(replica);
            let answer = store.raise_epoch(Epoch(epoch)).expect("raise");
            answers.insert(
                node(replica),
                NodeAnswer {
                    reports: answer.reports,
                    truncations: store.truncations().to_vec(),
                    repairing: answer.repairing,
                    absent_may_be_lost: answer.absent_may_be_lost,
                    incarnation: answer.incarnation,
                    blank: answer.blank,
                },
            );
        }
        answers
    }

    /// S6: one gossip exchange: `asker`'s segment asks `peer`'s segment.
    fn gossip(&mut self, asker: u8, peer: u8) -> usize {
        let request = self
            .store(asker)
            .gossip_request(segment(asker))
            .expect("hosted");
        let peer_store = self.store(peer);
        let records = peer_store.answer_gossip(segment(peer), Some(node(asker)), &request);
        let (peer_scl, peer_repairing) = peer_store.gossip_standing(segment(peer));
        let answer = GossipAnswer {
            peer: segment(peer),
            epoch: peer_store.epoch(),
            truncations: peer_store.truncations().to_vec(),
            complete: records.len() < 256,
            records,
            peer_scl,
            peer_repairing,
        };
        self.store(asker)
            .merge_gossip(segment(asker), answer)
            .expect("merge")
    }
}

/// X2, X3: what recovery plans from these answers: `Err` when some PG lacks a read quorum.
fn plan(config: &ClusterConfig, answers: &Answers, epoch: u64) -> Result<Lsn, String> {
    let pgs = BTreeSet::from([PG]);
    let reports = placed_reports(config, answers, &pgs, Epoch(epoch)).map_err(|e| e.to_string())?;
    let mut planner = RecoveryPlanner::new(QuorumConfig::AURORA, 100, Epoch(epoch), pgs);
    for report in reports {
        planner.handle_report(report).map_err(|e| e.to_string())?;
    }
    planner
        .plan()
        .map(|(plan, _)| plan.vdl)
        .map_err(|e| e.to_string())
}

/// The first writer's recovery reaches all six (S19: all born with the volume); records
/// 1..=3 reach A, B, C, D only (E and F lag: the write quorum is 4 of 6).
fn acknowledged_on_four(dir: &Path) -> Cluster {
    let mut cluster = Cluster::new(dir);
    let answers = cluster.raise(1, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(plan(&cluster.config, &answers, 1), Ok(Lsn(0)));
    for replica in 0..4 {
        let batch = vec![record(1, 0), record(2, 1), record(3, 2)];
        let scl = cluster
            .store(replica)
            .write(segment(replica), Epoch(1), Lsn(0), None, batch)
            .expect("write");
        assert_eq!(scl, Lsn(3));
    }
    for replica in 0..6 {
        assert_eq!(cluster.store(replica).birth(), Birth::WithVolume);
    }
    cluster
}

#[test]
fn a_segment_rebuilt_empty_counts_as_no_answer_until_repaired() {
    // S19, X11: D's `meta` is lost; S17 rebuilds it empty. Recovery hearing from D, E and F
    // must refuse (two answers) rather than truncate record 3, which A, B and C still hold.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = acknowledged_on_four(dir.path());
    cluster.restart(3, |node_dir| {
        std::fs::remove_file(node_dir.join("pg0.3").join("meta")).expect("meta removed");
    });
    assert!(
        cluster.store(3).is_repairing(segment(3)),
        "S19: rebuilt ⇒ repairing"
    );

    let answers = cluster.raise(2, &[3, 4, 5]);
    assert_eq!(answers[&node(3)].repairing, vec![segment(3)]);
    assert!(answers[&node(3)].reports.is_empty(), "S20: no report");
    let refused = plan(&cluster.config, &answers, 2).expect_err("X2: two answers only");
    assert!(refused.contains("quorum"), "{refused}");

    // With a holder in the quorum, record 3 survives.
    let mut answers = cluster.raise(3, &[3, 4, 5]);
    answers.extend(cluster.raise(3, &[0]));
    assert_eq!(plan(&cluster.config, &answers, 3), Ok(Lsn(3)));

    // S21: E and F (empty, complete) and then A (which ships 1..=3) end the repair.
    cluster.gossip(3, 4);
    cluster.gossip(3, 5);
    assert!(
        cluster.store(3).is_repairing(segment(3)),
        "two peers are not enough"
    );
    assert_eq!(cluster.gossip(3, 0), 3);
    assert!(
        cluster.store(3).is_repairing(segment(3)),
        "S21: three peers, but no writer above the loss epoch (1) opened yet"
    );
    cluster.store(3).note_open_writer(Epoch(3)).unwrap();
    assert!(!cluster.store(3).is_repairing(segment(3)), "S21: ended");

    // S21: the end of repair is durable.
    cluster.restart(3, |_| {});
    assert!(!cluster.store(3).is_repairing(segment(3)));
    let answers = cluster.raise(4, &[3, 4, 5]);
    assert_eq!(answers[&node(3)].reports.len(), 1);
    assert_eq!(plan(&cluster.config, &answers, 4), Ok(Lsn(3)));
}

#[test]
fn a_segment_whose_directory_is_gone_is_hosted_again_and_repairs() {
    // S19: node.meta remembers D hosted pg0.3; its directory vanished.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = acknowledged_on_four(dir.path());
    cluster.restart(3, |node_dir| {
        std::fs::remove_dir_all(node_dir.join("pg0.3")).expect("segment dir removed");
    });
    assert!(
        cluster.store(3).hosted().contains(&segment(3)),
        "hosted again"
    );
    assert!(cluster.store(3).is_repairing(segment(3)));
    let answers = cluster.raise(2, &[3, 4, 5]);
    assert!(plan(&cluster.config, &answers, 2).is_err(), "X11");
}

#[test]
fn a_repairing_peer_or_an_incomplete_chain_does_not_end_a_repair() {
    // S21: a peer that is itself repairing proves nothing; nor does an answer that leaves
    // the segment's SCL below the peer's.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = acknowledged_on_four(dir.path());
    cluster.restart(3, |node_dir| {
        std::fs::remove_file(node_dir.join("pg0.3").join("meta")).unwrap();
    });
    cluster.restart(2, |node_dir| {
        std::fs::remove_file(node_dir.join("pg0.2").join("meta")).unwrap();
    });
    cluster.gossip(3, 2);
    cluster.gossip(3, 4);
    cluster.gossip(3, 5);
    assert!(
        cluster.store(3).is_repairing(segment(3)),
        "C is repairing too: only E and F count"
    );
    cluster.store(3).note_open_writer(Epoch(1)).unwrap();
    assert!(
        cluster.store(3).is_repairing(segment(3)),
        "S21: a writer of the loss epoch may still count an ack given before the loss"
    );
    cluster.raise(2, &[0, 1, 2, 3, 4, 5]);
    cluster.store(3).note_open_writer(Epoch(2)).unwrap();
    assert!(
        cluster.store(3).is_repairing(segment(3)),
        "two peers so far"
    );
    cluster.gossip(3, 1);
    assert!(!cluster.store(3).is_repairing(segment(3)));
}

#[test]
fn a_node_whose_folder_was_replaced_is_late_and_its_absent_segments_are_no_answer() {
    // S19, S20, X11: E's whole disk is replaced after the volume began. It learns the
    // epoch from a heartbeat, so it is late, and a segment it does not host is not counted
    // as empty.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = acknowledged_on_four(dir.path());
    cluster.restart(3, |node_dir| {
        std::fs::remove_dir_all(node_dir).unwrap();
    });
    assert_eq!(cluster.store(3).birth(), Birth::Unknown);
    cluster.store(3).adopt_epoch(Epoch(1)).unwrap();
    assert_eq!(cluster.store(3).birth(), Birth::Late);
    let answers = cluster.raise(2, &[3, 4, 5]);
    assert!(answers[&node(3)].absent_may_be_lost);
    assert!(
        plan(&cluster.config, &answers, 2).is_err(),
        "X11: D's absence is no answer"
    );
    // A late node's new segment repairs like a rebuilt one (S19).
    cluster.store(3).host(segment(3)).unwrap();
    assert!(cluster.store(3).is_repairing(segment(3)));
}

#[test]
fn a_new_folder_reached_first_by_a_later_recovery_is_late() {
    // S19: only `RaiseEpoch` to epoch 1 proves a folder was there from the start.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(dir.path());
    cluster.raise(1, &[0, 1, 2, 3]);
    cluster.raise(2, &[4]);
    assert_eq!(cluster.store(0).birth(), Birth::WithVolume);
    assert_eq!(cluster.store(4).birth(), Birth::Late);
    assert_eq!(cluster.store(5).birth(), Birth::Unknown);
    cluster.restart(4, |_| {});
    assert_eq!(cluster.store(4).birth(), Birth::Late, "durable");
    // The first recovery's truncation (epoch 1) is as good as its RaiseEpoch.
    let history = [sixfold_core::TruncationRange {
        lsn_begin: Lsn(0),
        lsn_end: Lsn(100),
        epoch: Epoch(1),
    }];
    cluster.store(5).truncate(&history).unwrap();
    assert_eq!(cluster.store(5).birth(), Birth::WithVolume);
}
