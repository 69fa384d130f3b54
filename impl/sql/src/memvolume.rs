//! [`MemVolume`]: an in-memory, multi-version [`PageVolume`] for tests.
//!
//! It keeps full page images per LSN (no redo, no storage nodes): it stands in for the
//! writer so the SQL layer can be tested alone. It follows the rules the SQL layer relies
//! on: one LSN per page write and the commit LSN is the MTR's last (L1, L2, V5), a commit
//! is visible to reads at read points ≥ its LSN and to no earlier one (R2, R3), read
//! points are tracked and versions no open read can see are dropped (R4, S10).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::volume::{PageVolume, PageWrite, VolumeError, check_writes};

/// An in-memory multi-version page volume with fault hooks for tests.
#[derive(Default)]
pub struct MemVolume {
    state: Mutex<MemState>,
}

/// Versions of one page, oldest first: (LSN that wrote it, image).
type PageVersions = Vec<(u64, Vec<u8>)>;

#[derive(Default)]
struct MemState {
    /// The last allocated LSN, also the VDL: a commit is durable when it returns.
    lsn_last: u64,
    /// Versions of each page, oldest first, each tagged with the LSN that wrote it.
    versions: HashMap<(u32, u32), PageVersions>,
    /// Open read points and how many reads hold each (R4).
    read_points: BTreeMap<u64, u32>,
    /// Fault hooks.
    fail_commits: u32,
    fail_reads: u32,
    /// Counters for tests.
    commits_ok: u64,
    commits_failed: u64,
}

/// Counters of a [`MemVolume`], for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemVolumeStats {
    /// Commits that returned an LSN.
    pub commits_ok: u64,
    /// Commits that failed (faults injected).
    pub commits_failed: u64,
    /// The VDL (last LSN; every MTR is durable once committed).
    pub vdl: u64,
    /// Reads begun and not ended.
    pub open_reads: u32,
    /// Page versions held.
    pub versions_held: usize,
}

impl MemVolume {
    /// An empty volume: VDL 0, no page written.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        // A panic while holding the lock is a bug in this file; the data is still
        // consistent (every mutation is completed before any call that can panic).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fault hook: the next `count` commits fail with [`VolumeError::Injected`] and
    /// write nothing.
    pub fn fail_next_commits(&self, count: u32) {
        self.lock().fail_commits = count;
    }

    /// Fault hook: the next `count` page reads fail with [`VolumeError::Injected`].
    pub fn fail_next_reads(&self, count: u32) {
        self.lock().fail_reads = count;
    }

    /// Counters and state, for tests.
    pub fn stats(&self) -> MemVolumeStats {
        let state = self.lock();
        MemVolumeStats {
            commits_ok: state.commits_ok,
            commits_failed: state.commits_failed,
            vdl: state.lsn_last,
            open_reads: state.read_points.values().sum(),
            versions_held: state.versions.values().map(Vec::len).sum(),
        }
    }
}

impl MemState {
    /// The lowest read point any open read may use (R4: PGMRPL, or VDL when none).
    fn min_read_point(&self) -> u64 {
        self.read_points
            .keys()
            .next()
            .copied()
            .unwrap_or(self.lsn_last)
    }

    /// S10: keep, per page, the newest version ≤ PGMRPL and everything above it.
    fn collect_garbage(&mut self, pages: &[(u32, u32)]) {
        let floor = self.min_read_point();
        for key in pages {
            let Some(list) = self.versions.get_mut(key) else {
                continue;
            };
            let keep_from = list.iter().rposition(|(lsn, _)| *lsn <= floor).unwrap_or(0);
            list.drain(..keep_from);
        }
    }
}

impl PageVolume for MemVolume {
    fn begin_read(&self) -> Result<u64, VolumeError> {
        let mut state = self.lock();
        let read_point = state.lsn_last;
        *state.read_points.entry(read_point).or_insert(0) += 1;
        Ok(read_point)
    }

    fn end_read(&self, read_point: u64) {
        let mut state = self.lock();
        let count = state
            .read_points
            .get_mut(&read_point)
            .expect("end_read of a read point that was never begun");
        *count -= 1;
        if *count == 0 {
            state.read_points.remove(&read_point);
        }
    }

    fn read_page(
        &self,
        db: u32,
        page_no: u32,
        read_point: u64,
    ) -> Result<Option<Vec<u8>>, VolumeError> {
        let mut state = self.lock();
        if state.fail_reads > 0 {
            state.fail_reads -= 1;
            return Err(VolumeError::Injected {
                operation: "read_page",
            });
        }
        // R3: a read point must be registered (≥ PGMRPL) and ≤ VDL.
        let oldest = state.min_read_point();
        if read_point < oldest || read_point > state.lsn_last {
            return Err(VolumeError::ReadPointUnavailable {
                read_point,
                oldest,
                vdl: state.lsn_last,
            });
        }
        let Some(list) = state.versions.get(&(db, page_no)) else {
            return Ok(None);
        };
        Ok(list
            .iter()
            .rev()
            .find(|(lsn, _)| *lsn <= read_point)
            .map(|(_, image)| image.clone()))
    }

    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
        check_writes(&writes)?;
        let mut state = self.lock();
        if state.fail_commits > 0 {
            state.fail_commits -= 1;
            state.commits_failed += 1;
            return Err(VolumeError::Injected {
                operation: "commit",
            });
        }
        // L1/L2: one dense LSN per page write; the last one is the CPL, returned.
        let mut touched = Vec::with_capacity(writes.len());
        for write in writes {
            state.lsn_last += 1;
            let lsn = state.lsn_last;
            let key = (write.db, write.page_no);
            state
                .versions
                .entry(key)
                .or_default()
                .push((lsn, write.image));
            touched.push(key);
        }
        state.commits_ok += 1;
        state.collect_garbage(&touched);
        Ok(state.lsn_last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> Vec<u8> {
        vec![byte; crate::volume::PAGE_SIZE]
    }

    #[test]
    fn read_sees_exactly_commits_at_or_below_read_point() {
        // R2/R3: a read point sees the commits ≤ it and none above.
        let volume = MemVolume::new();
        let before = volume.begin_read().unwrap();
        let lsn = volume
            .commit(vec![PageWrite {
                db: 1,
                page_no: 3,
                image: page(7),
            }])
            .unwrap();
        let after = volume.begin_read().unwrap();
        assert_eq!(volume.read_page(1, 3, before).unwrap(), None);
        assert_eq!(volume.read_page(1, 3, after).unwrap(), Some(page(7)));
        assert_eq!(after, lsn);
        volume.end_read(before);
        volume.end_read(after);
        assert_eq!(volume.stats().open_reads, 0);
    }

    #[test]
    fn commit_lsn_is_the_last_of_a_dense_range() {
        // L1/L2/V5: one LSN per page write, the commit LSN is the last one.
        let volume = MemVolume::new();
        let writes = (0..3)
            .map(|n| PageWrite {
                db: 2,
                page_no: n,
                image: page(1),
            })
            .collect();
        assert_eq!(volume.commit(writes).unwrap(), 3);
        let one = vec![PageWrite {
            db: 2,
            page_no: 0,
            image: page(2),
        }];
        assert_eq!(volume.commit(one).unwrap(), 4);
    }

    #[test]
    fn failed_commit_writes_nothing() {
        let volume = MemVolume::new();
        volume.fail_next_commits(1);
        let write = PageWrite {
            db: 1,
            page_no: 1,
            image: page(9),
        };
        assert!(matches!(
            volume.commit(vec![write.clone()]),
            Err(VolumeError::Injected { .. })
        ));
        let read_point = volume.begin_read().unwrap();
        assert_eq!(read_point, 0);
        assert_eq!(volume.read_page(1, 1, read_point).unwrap(), None);
        volume.end_read(read_point);
        assert_eq!(volume.commit(vec![write]).unwrap(), 1);
        assert_eq!(volume.stats().commits_failed, 1);
    }

    #[test]
    fn bad_image_size_and_empty_mtr_are_refused() {
        let volume = MemVolume::new();
        let short = PageWrite {
            db: 1,
            page_no: 1,
            image: vec![0; 10],
        };
        assert!(matches!(
            volume.commit(vec![short]),
            Err(VolumeError::BadImageSize { len: 10, .. })
        ));
        assert!(matches!(volume.commit(vec![]), Err(VolumeError::EmptyMtr)));
    }

    #[test]
    fn versions_below_the_oldest_read_point_are_collected() {
        // R4/S10: a held read point keeps its version; once released, old versions go.
        let volume = MemVolume::new();
        let write = |byte| {
            volume
                .commit(vec![PageWrite {
                    db: 1,
                    page_no: 1,
                    image: page(byte),
                }])
                .unwrap()
        };
        write(1);
        let held = volume.begin_read().unwrap();
        write(2);
        write(3);
        assert_eq!(volume.read_page(1, 1, held).unwrap(), Some(page(1)));
        volume.end_read(held);
        write(4);
        assert_eq!(volume.stats().versions_held, 1);
        let stale = volume.read_page(1, 1, held);
        assert!(matches!(
            stale,
            Err(VolumeError::ReadPointUnavailable { .. })
        ));
    }
}
