mod common;

use common::{mtr, writer};
use sixfold_core::{Epoch, Lsn, PageId, PgId, ProtocolEvent, SegmentId, WriteError, WriterState};

fn ack_all(writer: &mut WriterState, pg: u32, replicas: &[u8], scl: u64) {
    for &replica in replicas {
        let segment = SegmentId {
            pg: PgId(pg),
            replica,
        };
        writer.handle_ack(segment, Lsn(scl), writer.epoch());
    }
}

fn acknowledged(writer: &mut WriterState) -> Vec<u64> {
    std::iter::from_fn(|| writer.poll_event())
        .filter_map(|event| match event {
            ProtocolEvent::CommitAcknowledged { lsn } => Some(lsn.0),
            _ => None,
        })
        .collect()
}

#[test]
fn records_carry_pg_and_page_backlinks() {
    // L1, L2, L3, W2, W3
    let mut writer = writer(4, 100);
    let first = writer.submit_mtr(mtr(&[(1, 0), (1, 5)])).unwrap();
    let second = writer.submit_mtr(mtr(&[(1, 1), (1, 0)])).unwrap();
    let lsns: Vec<u64> = first
        .records
        .iter()
        .chain(&second.records)
        .map(|r| r.lsn.0)
        .collect();
    assert_eq!(lsns, vec![1, 2, 3, 4]);
    assert_eq!(first.records[1].pg, PgId(1));
    assert_eq!((first.commit_lsn, second.commit_lsn), (Lsn(2), Lsn(4)));
    assert!(!first.records[0].cpl && first.records[1].cpl);
    let last = &second.records[1];
    assert_eq!((last.prev_lsn_pg, last.prev_lsn_page), (Lsn(3), Lsn(1)));
    assert_eq!(second.records[0].prev_lsn_page, Lsn(0));
}

#[test]
fn records_go_to_their_pgs_six_segments() {
    // W4
    let segments = WriterState::segments_of(PgId(3));
    assert_eq!(segments.len(), 6);
    assert!(segments.iter().all(|segment| segment.pg == PgId(3)));
}

#[test]
fn allocation_stops_at_vdl_plus_lal() {
    // W1
    let mut writer = writer(4, 3);
    writer.submit_mtr(mtr(&[(1, 0), (1, 1)])).unwrap();
    let refused = writer.submit_mtr(mtr(&[(1, 2), (1, 3)]));
    assert!(matches!(refused, Err(WriteError::Backpressure { .. })));
    ack_all(&mut writer, 0, &[0, 1, 2, 3], 2);
    assert_eq!(writer.vdl(), Lsn(2));
    writer.submit_mtr(mtr(&[(1, 2), (1, 3)])).unwrap();
}

#[test]
fn an_mtr_of_lal_records_is_allocated_and_one_more_is_refused() {
    // W8: an MTR of exactly LAL records fits once VDL is the base; one of LAL + 1 could
    // never be allocated (VDL moves only at its CPL), so it is refused, not left waiting.
    let mut writer = writer(4, 3);
    let refused = writer.submit_mtr(mtr(&[(1, 0), (1, 1), (1, 2), (1, 3)]));
    assert_eq!(
        refused,
        Err(WriteError::MtrLargerThanLal { records: 4, lal: 3 })
    );
    assert_eq!(writer.last_allocated(), Lsn(0), "nothing was allocated");
    let fits = writer.submit_mtr(mtr(&[(1, 0), (1, 1), (1, 2)])).unwrap();
    assert_eq!(fits.commit_lsn, Lsn(3));
}

#[test]
fn a_commit_waits_for_a_write_quorum() {
    // C1, C4, Q1: three acks are not a quorum; the fourth releases the commit.
    let mut writer = writer(4, 100);
    writer.submit_mtr(mtr(&[(1, 0)])).unwrap();
    ack_all(&mut writer, 0, &[0, 1, 2], 1);
    assert_eq!(writer.pgcl(PgId(0)), Lsn(0));
    assert!(acknowledged(&mut writer).is_empty());
    ack_all(&mut writer, 0, &[5], 1);
    assert_eq!(
        (writer.pgcl(PgId(0)), writer.vcl(), writer.vdl()),
        (Lsn(1), Lsn(1), Lsn(1))
    );
    assert_eq!(acknowledged(&mut writer), vec![1]);
}

#[test]
fn commit_waits_for_vdl_not_vcl() {
    // C2, C3, C4: an MTR spanning two PGs is acknowledged only when its CPL is complete.
    let mut writer = writer(4, 100);
    writer.submit_mtr(mtr(&[(1, 0), (1, 4)])).unwrap(); // LSN 1 in pg0, CPL 2 in pg1
    ack_all(&mut writer, 0, &[0, 1, 2, 3], 1);
    assert_eq!(writer.vcl(), Lsn(1));
    assert_eq!(writer.vdl(), Lsn(0), "VCL is past LSN 1 but no CPL is");
    assert!(acknowledged(&mut writer).is_empty());
    ack_all(&mut writer, 1, &[0, 1, 2, 3], 2);
    assert_eq!((writer.vcl(), writer.vdl()), (Lsn(2), Lsn(2)));
    assert_eq!(acknowledged(&mut writer), vec![2]);
}

#[test]
fn acks_of_other_epochs_are_ignored_and_newer_ones_fence() {
    // W6, E3, C6
    let mut writer = writer(4, 100);
    writer.submit_mtr(mtr(&[(1, 0)])).unwrap();
    for replica in 0..4 {
        writer.handle_ack(
            SegmentId {
                pg: PgId(0),
                replica,
            },
            Lsn(1),
            Epoch(0),
        );
    }
    assert_eq!(writer.vdl(), Lsn(0));
    writer.handle_ack(
        SegmentId {
            pg: PgId(0),
            replica: 0,
        },
        Lsn(1),
        Epoch(2),
    );
    assert_eq!(writer.fenced_by(), Some(Epoch(2)));
    let events: Vec<ProtocolEvent> = std::iter::from_fn(|| writer.poll_event()).collect();
    assert!(events.contains(&ProtocolEvent::CommitFailed { lsn: Lsn(1) }));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ProtocolEvent::CommitAcknowledged { .. }))
    );
    ack_all(&mut writer, 0, &[0, 1, 2, 3], 1);
    assert_eq!(writer.vdl(), Lsn(0), "a fenced writer acknowledges nothing");
    assert!(matches!(
        writer.submit_mtr(mtr(&[(1, 1)])),
        Err(WriteError::Fenced { .. })
    ));
}

#[test]
fn reads_go_to_one_segment_that_covers_the_read_point() {
    // R1, R2
    let mut writer = writer(4, 100);
    writer.submit_mtr(mtr(&[(1, 0)])).unwrap();
    writer.submit_mtr(mtr(&[(1, 4)])).unwrap(); // pg1: PG0 has nothing at LSN 2
    ack_all(&mut writer, 0, &[0, 1, 2, 3], 1);
    ack_all(&mut writer, 1, &[0, 1, 2, 3], 2);
    let read_point = writer.begin_read();
    assert_eq!(read_point, Lsn(2));
    assert_eq!(writer.pg_lsn_at(PgId(0), read_point), Lsn(1));
    let candidates = writer.read_candidates(PgId(0), read_point);
    let replicas: Vec<u8> = candidates.iter().map(|s| s.replica).collect();
    assert_eq!(
        replicas,
        vec![0, 1, 2, 3],
        "segments 4 and 5 never acked LSN 1"
    );
}

#[test]
fn pgmrpl_is_the_lowest_open_read_point() {
    // R4
    let mut writer = writer(4, 100);
    writer.submit_mtr(mtr(&[(1, 0)])).unwrap();
    ack_all(&mut writer, 0, &[0, 1, 2, 3], 1);
    let old = writer.begin_read();
    writer.submit_mtr(mtr(&[(1, 0)])).unwrap();
    ack_all(&mut writer, 0, &[0, 1, 2, 3], 2);
    let new = writer.begin_read();
    assert_eq!((old, new, writer.pgmrpl()), (Lsn(1), Lsn(2), Lsn(1)));
    writer.end_read(old);
    assert_eq!(writer.pgmrpl(), Lsn(2));
    writer.end_read(new);
    assert_eq!(writer.pgmrpl(), writer.vdl());
}

#[test]
fn unacked_records_are_resent() {
    // W7
    let mut writer = writer(4, 100);
    writer.submit_mtr(mtr(&[(1, 0), (1, 1)])).unwrap();
    let lagging = SegmentId {
        pg: PgId(0),
        replica: 5,
    };
    writer.handle_ack(lagging, Lsn(1), writer.epoch());
    let resend: Vec<u64> = writer
        .records_to_resend(lagging)
        .iter()
        .map(|r| r.lsn.0)
        .collect();
    assert_eq!(resend, vec![2]);
}

#[test]
fn after_recovery_unknown_page_lsns_must_be_read_first() {
    // X7
    use sixfold_core::{Geometry, QuorumConfig, WriterConfig, WriterStart};
    let start = WriterStart {
        epoch: Epoch(2),
        vdl: Lsn(10),
        next_lsn: Lsn(21),
        last_lsn_by_pg: [(PgId(0), Lsn(10))].into(),
        page_lsns_known: false,
    };
    let config = WriterConfig {
        geometry: Geometry { pg_pages: 4 },
        quorum: QuorumConfig::AURORA,
        lal: 10,
    };
    let mut writer = WriterState::new(config, start);
    assert!(matches!(
        writer.submit_mtr(mtr(&[(1, 0)])),
        Err(WriteError::PageLsnUnknown { .. })
    ));
    writer.note_page_lsn(PageId::new(1, 0), Lsn(7));
    let submitted = writer.submit_mtr(mtr(&[(1, 0)])).unwrap();
    let record = &submitted.records[0];
    assert_eq!(
        (record.lsn, record.prev_lsn_pg, record.prev_lsn_page),
        (Lsn(21), Lsn(10), Lsn(7))
    );
    assert_eq!(
        writer.truncation().map(|t| (t.lsn_begin, t.lsn_end)),
        Some((Lsn(10), Lsn(20)))
    );
}
