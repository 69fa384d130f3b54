//! What the volume must hold: every record the writers made, which recoveries voided, and
//! which commits were acknowledged. Pages are recomputed from it by brute force.

use std::collections::{BTreeMap, BTreeSet};

use sixfold_core::redo::apply_body;
use sixfold_core::{Epoch, Lsn, PAGE_BYTES, PageId, RedoRecord, SubmittedMtr, TruncationRange};

#[derive(Debug, Default)]
pub struct Oracle {
    /// Every record ever allocated, by LSN. Records of different epochs never share an
    /// LSN (X4, X7), which `submitted` asserts.
    records: BTreeMap<Lsn, RedoRecord>,
    /// Commit LSN → the LSNs of its MTR.
    mtrs: BTreeMap<Lsn, Vec<Lsn>>,
    acknowledged: BTreeSet<Lsn>,
    truncations: Vec<TruncationRange>,
}

impl Oracle {
    pub fn submitted(&mut self, mtr: &SubmittedMtr) -> Result<(), String> {
        for record in &mtr.records {
            if let Some(earlier) = self.records.get(&record.lsn) {
                // Two writers allocated one LSN: fine only if the earlier one was voided.
                if !self.voided(earlier) {
                    return Err(format!(
                        "LSN {} allocated twice (epochs {} and {}) and not truncated (L1, X4, X7)",
                        record.lsn, earlier.epoch, record.epoch
                    ));
                }
            }
            self.records.insert(record.lsn, record.clone());
        }
        self.mtrs
            .insert(mtr.commit_lsn, mtr.records.iter().map(|r| r.lsn).collect());
        Ok(())
    }

    pub fn acknowledged(&mut self, lsn: Lsn) {
        self.acknowledged.insert(lsn);
    }

    pub fn is_acknowledged(&self, lsn: Lsn) -> bool {
        self.acknowledged.contains(&lsn)
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.len()
    }

    pub fn mtr_records(&self, commit_lsn: Lsn) -> Vec<RedoRecord> {
        self.mtrs
            .get(&commit_lsn)
            .into_iter()
            .flatten()
            .filter_map(|lsn| self.records.get(lsn).cloned())
            .collect()
    }

    fn voided(&self, record: &RedoRecord) -> bool {
        self.truncations
            .iter()
            .any(|t| t.epoch > record.epoch && t.contains(record.lsn))
    }

    /// A recovery at `epoch` decided `vdl`: it must keep every commit acknowledged by a
    /// writer of a lower epoch (C3 across epochs, C4) and be a CPL (C3, X4).
    ///
    /// Commits acknowledged at a higher epoch are not its to keep: a writer whose recovery
    /// stalled (its epoch's write quorum completes only after a newer writer took over)
    /// may still open, but every write quorum and every lease quorum now meets a node of
    /// the newer epoch, so it can neither commit (E3) nor serve a read (R8, R9): X12.
    pub fn recovered(
        &mut self,
        epoch: Epoch,
        vdl: Lsn,
        truncation: Option<TruncationRange>,
    ) -> Result<(), String> {
        let acknowledged_earlier = |lsn: &&Lsn| {
            self.records
                .get(lsn)
                .is_none_or(|record| record.epoch < epoch)
        };
        if let Some(&lost) = self
            .acknowledged
            .iter()
            .filter(acknowledged_earlier)
            .find(|&&lsn| lsn > vdl)
        {
            return Err(format!(
                "durability: recovery at epoch {epoch} chose VDL {vdl} below acknowledged commit {lost} (C3, C4, X3)"
            ));
        }
        if vdl != Lsn::ZERO && !self.records.get(&vdl).is_some_and(|r| r.cpl) {
            return Err(format!(
                "recovery at epoch {epoch} chose VDL {vdl}, which is not a CPL (C3, X4)"
            ));
        }
        if let Some(range) = truncation {
            self.truncations.push(range);
        }
        // MTR atomicity: an MTR with its CPL at or below VDL must have all its records.
        Ok(())
    }

    /// Every acknowledged commit is at or below the final VDL, with all its records alive.
    pub fn check_acknowledged_survive(&self, vdl: Lsn) -> Result<(), String> {
        for &commit in &self.acknowledged {
            if commit > vdl {
                return Err(format!(
                    "acknowledged commit {commit} is above the final VDL {vdl}"
                ));
            }
            for record in self.mtr_records(commit) {
                if self.voided(&record) {
                    return Err(format!(
                        "record {} of acknowledged commit {commit} was truncated",
                        record.lsn
                    ));
                }
            }
        }
        Ok(())
    }

    /// The page as of `vdl`: every live record ≤ VDL applied in LSN order.
    pub fn page_at(&self, page: PageId, vdl: Lsn) -> Vec<u8> {
        let mut bytes = vec![0u8; PAGE_BYTES];
        for record in self.records.range(..=vdl).map(|(_, r)| r) {
            if record.page == page && !self.voided(record) {
                apply_body(&mut bytes, &record.body);
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixfold_core::{DbId, PgId, RedoBody};

    fn commit(oracle: &mut Oracle, lsn: u64, epoch: u64) {
        let record = RedoRecord {
            lsn: Lsn(lsn),
            pg: PgId(0),
            prev_lsn_pg: Lsn::ZERO,
            prev_lsn_page: Lsn::ZERO,
            epoch: Epoch(epoch),
            page: PageId {
                db: DbId(1),
                page_no: 0,
            },
            cpl: true,
            body: RedoBody::Edits(Vec::new()),
        };
        let mtr = SubmittedMtr {
            records: vec![record],
            commit_lsn: Lsn(lsn),
        };
        oracle.submitted(&mtr).expect("fresh LSN");
        oracle.acknowledged(Lsn(lsn));
    }

    /// X12: a recovery must keep the commits of lower epochs…
    #[test]
    fn recovery_below_a_lower_epoch_commit_is_a_loss() {
        let mut oracle = Oracle::default();
        commit(&mut oracle, 7, 1);
        let verdict = oracle.recovered(Epoch(2), Lsn::ZERO, None);
        assert!(verdict.is_err_and(|e| e.contains("below acknowledged commit 7")));
        assert!(oracle.recovered(Epoch(2), Lsn(7), None).is_ok());
    }

    /// …and not those of a newer writer that took over while it stalled (seed 21009836).
    #[test]
    fn stalled_recovery_need_not_keep_a_newer_epochs_commits() {
        let mut oracle = Oracle::default();
        commit(&mut oracle, 7, 1);
        commit(&mut oracle, 147, 3);
        assert!(oracle.recovered(Epoch(2), Lsn(7), None).is_ok());
        assert!(oracle.recovered(Epoch(4), Lsn(7), None).is_err());
    }
}
