//! Done-when of issue 4: every fault of the fault-injecting disk (ENOSPC, EIO, torn write,
//! fsync failure, lost unsynced writes, bit flips) injected at every disk operation of
//! append, flush and restart: nothing acknowledged is lost and nothing corrupt is served.

mod common;

use common::{
    Gen, assert_nothing_corrupt_served, assert_pages_exact, open, repair_from, seg, try_open,
};
use sixfold_core::{Lsn, SegmentId};
use sixfold_storage::{
    CrashMode, Damage, FaultKind, FaultyDisk, OpFilter, StorageError, StorageNode,
};

const KINDS: [FaultKind; 3] = [FaultKind::NoSpace, FaultKind::Io, FaultKind::TornWrite];

struct Run {
    disk: FaultyDisk,
    node: StorageNode,
    logs: Vec<Gen>,
    segments: Vec<SegmentId>,
    /// Per segment, the highest SCL an ack carried.
    acked: Vec<Lsn>,
    /// Per segment, records a blocked segment refused (S18), to resend.
    unsent: Vec<Vec<sixfold_core::RedoRecord>>,
}

impl Run {
    /// Two segments with some acknowledged, checkpointed and collected history.
    fn setup(seed: u64, replica: u8) -> Run {
        let disk = FaultyDisk::new(seed);
        let node = open(&disk);
        let mut run = Run {
            disk,
            node,
            logs: vec![Gen::new(0, seed), Gen::new(1, seed + 1)],
            segments: vec![seg(0, replica), seg(1, replica)],
            acked: vec![Lsn::ZERO; 2],
            unsent: vec![Vec::new(), Vec::new()],
        };
        for &segment in &run.segments {
            run.node.host_segment(segment).unwrap();
        }
        for _ in 0..3 {
            run.round(3);
            run.node.flush().map(|acks| run.take(&acks)).unwrap();
        }
        for index in 0..2 {
            let pgmrpl = Lsn(run.logs[index].last_lsn().0 - 2);
            run.node.set_pgmrpl(run.segments[index], pgmrpl).unwrap();
        }
        while run.node.background_step().unwrap() != Default::default() {}
        run
    }

    /// Submits `records` new records per segment, after those a blocked segment refused
    /// (S18: a writer resends a refused batch).
    fn round(&mut self, records: usize) {
        for index in 0..2 {
            let hint = Lsn(self.logs[index].last_lsn().0.saturating_sub(1));
            let mut batch = std::mem::take(&mut self.unsent[index]);
            batch.extend(self.logs[index].batch(records, 5));
            if batch.is_empty() {
                continue;
            }
            let epoch = self.logs[index].epoch;
            match self
                .node
                .submit(self.segments[index], epoch, hint, None, batch.clone())
            {
                Ok(_) => {}
                Err(StorageError::SegmentBlocked { .. }) => self.unsent[index] = batch,
                Err(error) => panic!("submit: {error}"),
            }
        }
    }

    fn take(&mut self, acks: &[sixfold_storage::Ack]) {
        for ack in acks {
            let index = self
                .segments
                .iter()
                .position(|s| *s == ack.segment)
                .unwrap();
            self.acked[index] = self.acked[index].max(ack.scl);
        }
    }

    /// Append, flush, materialize, collect and read, tolerating disk errors.
    fn workload(&mut self) {
        for step in 0..4 {
            self.round(2);
            if let Ok(acks) = self.node.flush() {
                self.take(&acks);
            }
            if step % 2 == 1 {
                for index in 0..2 {
                    let pgmrpl = Lsn(self.acked[index].0.saturating_sub(1));
                    self.node.set_pgmrpl(self.segments[index], pgmrpl).unwrap();
                }
            }
            let _ = self.node.background_step();
            self.check_reads();
        }
    }

    fn check_reads(&mut self) {
        for index in 0..2 {
            let status = self.node.segment_status(self.segments[index]).unwrap();
            for read in [status.pgmrpl, status.scl] {
                if read >= status.pgmrpl && read <= status.scl {
                    assert_nothing_corrupt_served(
                        &mut self.node,
                        self.segments[index],
                        &self.logs[index],
                        read,
                    );
                }
            }
        }
    }

    /// With the faults gone, the queue drains and everything is acknowledged.
    fn finish(&mut self) {
        self.disk.clear_faults();
        self.round(0);
        let acks = self.node.flush().expect("flush after the faults cleared");
        self.take(&acks);
        for index in 0..2 {
            assert!(
                self.acked[index] >= self.logs[index].last_lsn(),
                "everything acked after retry"
            );
        }
    }

    fn crash_and_reopen(&mut self, mode: CrashMode) {
        self.disk.clear_faults();
        self.node = StorageNode::open(
            std::sync::Arc::new(FaultyDisk::new(0)),
            common::DIR,
            common::config(),
        )
        .unwrap(); // drops the old node first
        self.disk.crash_with(mode);
        self.node = open(&self.disk);
    }

    /// S1, S12: acknowledged records are all back and pages read exactly.
    fn verify(&mut self, context: &str) {
        for index in 0..2 {
            let segment = self.segments[index];
            let status = self.node.segment_status(segment).unwrap();
            assert!(
                status.scl >= self.acked[index],
                "{context}: {segment} SCL {} below acknowledged {}",
                status.scl,
                self.acked[index]
            );
            assert!(
                !status.damaged,
                "{context}: {segment} damaged: {:?}",
                status.damage
            );
            for read in [
                status.pgmrpl,
                Lsn((status.pgmrpl.0 + status.scl.0) / 2),
                status.scl,
            ] {
                assert_pages_exact(&mut self.node, segment, &self.logs[index], read);
            }
        }
    }
}

fn workload_ops(seed: u64) -> u64 {
    let mut run = Run::setup(seed, 0);
    let before = run.disk.stats().ops;
    run.workload();
    run.disk.stats().ops - before
}

#[test]
fn faults_at_every_step_of_append_and_flush_lose_nothing_acknowledged() {
    // S1, S2, S13: one fault at operation k of the workload, for every k and kind; then a
    // crash either right away or after the queue drained.
    for seed in [11, 31] {
        let ops = workload_ops(seed);
        assert!(ops > 20, "the workload does real I/O ({ops} ops)");
        for kind in KINDS {
            for skip in 0..ops {
                for drain_first in [false, true] {
                    let context = format!("{kind:?} at op {skip}, drain {drain_first}");
                    let mut run = Run::setup(seed, 0);
                    run.disk.inject(OpFilter::Any, kind, skip, 1);
                    run.workload();
                    if drain_first {
                        run.finish();
                    }
                    run.crash_and_reopen(CrashMode::Random);
                    run.verify(&format!("seed {seed}: {context}"));
                }
            }
        }
    }
}

#[test]
fn a_full_disk_refuses_until_space_returns_and_loses_nothing() {
    // ENOSPC on every mutation from operation k on, until space is freed.
    let seed = 12;
    let ops = workload_ops(seed);
    for skip in (0..ops).step_by(3) {
        let mut run = Run::setup(seed, 0);
        run.disk
            .inject(OpFilter::Mutations, FaultKind::NoSpace, skip, u64::MAX);
        run.workload();
        run.finish();
        run.crash_and_reopen(CrashMode::Random);
        run.verify(&format!("ENOSPC from op {skip}"));
    }
}

#[test]
fn unsynced_writes_lost_or_torn_at_a_crash_never_lose_acknowledged_records() {
    // The crash model itself: for many seeds, every prefix and tear of unsynced writes.
    for seed in 0..60 {
        let mut run = Run::setup(seed, 0);
        run.workload();
        // One more batch that is written but never synced.
        run.round(3);
        run.disk.inject(OpFilter::Syncs, FaultKind::Io, 0, u64::MAX);
        assert!(run.node.flush().is_err());
        run.crash_and_reopen(CrashMode::Random);
        run.verify(&format!("crash seed {seed}"));
    }
}

fn restart_ops(seed: u64) -> u64 {
    let mut run = Run::setup(seed, 0);
    run.workload();
    run.finish();
    run.crash_and_reopen(CrashMode::Random);
    run.disk.crash_with(CrashMode::DropUnsynced);
    let before = run.disk.stats().ops;
    let _node = open(&run.disk);
    run.disk.stats().ops - before
}

#[test]
fn faults_at_every_step_of_restart_are_typed_errors_and_a_retry_recovers() {
    // S12: a restart that hits a disk error fails with a typed error (no panic); another
    // crash and a clean restart find every acknowledged record.
    let seed = 13;
    let ops = restart_ops(seed);
    assert!(ops > 5, "restart reads files ({ops} ops)");
    for kind in KINDS {
        for skip in 0..ops + 2 {
            let context = format!("{kind:?} at restart op {skip}");
            let mut run = Run::setup(seed, 0);
            run.workload();
            // Leave an unsynced tail for the restart to cut.
            run.round(2);
            run.disk.inject(OpFilter::Syncs, FaultKind::Io, 0, 1);
            let _ = run.node.flush();
            run.crash_and_reopen(CrashMode::KeepUnsynced);
            drop(std::mem::replace(&mut run.node, open(&FaultyDisk::new(0))));
            run.disk.crash_with(CrashMode::Random);
            run.disk.inject(OpFilter::Any, kind, skip, 1);
            match try_open(&run.disk) {
                Ok(node) => run.node = node,
                Err(error) => {
                    assert!(error.is_io(), "{context}: {error}");
                    run.disk.crash();
                    run.disk.clear_faults();
                    run.node = open(&run.disk);
                }
            }
            run.disk.clear_faults();
            run.verify(&context);
        }
    }
}

/// Flips one bit of a log or page file of `run` at a seeded position.
fn flip_somewhere(run: &Run, choice: u64) -> String {
    let files: Vec<_> = run
        .disk
        .files()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".sxr") || name.ends_with(".sxp")
        })
        .collect();
    let path = &files[(choice % files.len() as u64) as usize];
    let len = run.disk.contents(path).unwrap().len() as u64;
    let offset = (choice / 7) % len;
    run.disk.flip_bit(path, offset, (choice % 8) as u8).unwrap();
    format!("{}@{offset}", path.display())
}

#[test]
fn bit_flips_anywhere_are_never_served_and_are_repaired_from_a_peer() {
    // S11, S9, L5: a flipped bit in any log or page file: the restart marks the damage,
    // serves only verified data, and gossip from a healthy replica repairs the records.
    let mut detected = 0;
    for choice in 0..150u64 {
        let choice = choice.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
        let mut damaged = Run::setup(21, 0);
        let mut healthy = Run::setup(21, 1);
        damaged.workload();
        damaged.finish();
        healthy.workload();
        healthy.finish();
        let flipped = flip_somewhere(&damaged, choice);
        damaged.crash_and_reopen(CrashMode::DropUnsynced);
        for index in 0..2 {
            let segment = damaged.segments[index];
            let status = damaged.node.segment_status(segment).unwrap();
            if status.damaged || status.scl < damaged.acked[index] {
                detected += 1;
            }
            for read in [status.pgmrpl, status.scl] {
                if read >= status.pgmrpl && read <= status.scl {
                    assert_nothing_corrupt_served(
                        &mut damaged.node,
                        segment,
                        &damaged.logs[index],
                        read,
                    );
                }
            }
            let target = damaged.acked[index];
            repair_from(
                &mut damaged.node,
                segment,
                &healthy.node,
                healthy.segments[index],
                target,
                8,
            );
        }
        // A scrub pass finds nothing left to repair but what only a page copy could fix.
        for _ in 0..damaged.node.scrub_files() {
            damaged.node.scrub_step().unwrap();
        }
        for index in 0..2 {
            let segment = damaged.segments[index];
            let status = damaged.node.segment_status(segment).unwrap();
            let context = format!("flip {flipped}");
            assert!(
                status.scl >= damaged.acked[index],
                "{context}: SCL {} not repaired",
                status.scl
            );
            let lost_pages: Vec<_> = status
                .damage
                .iter()
                .map(|d| match d {
                    Damage::Page { page, .. } => *page,
                    other => panic!("{context}: unrepaired {other:?}"),
                })
                .collect();
            let model = &damaged.logs[index];
            if lost_pages.is_empty() {
                assert_pages_exact(&mut damaged.node, segment, model, status.scl);
            } else {
                // Only a page copy from a peer could restore these; they are refused.
                assert_nothing_corrupt_served(&mut damaged.node, segment, model, status.scl);
            }
        }
    }
    assert!(
        detected > 30,
        "flips in record frames are found on restart ({detected} of 150)"
    );
}
