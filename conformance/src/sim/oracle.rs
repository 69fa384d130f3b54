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

    /// A recovery decided `vdl`: it must keep every acknowledged commit (C3 across epochs,
    /// C4) and be a CPL (C3, X4).
    pub fn recovered(
        &mut self,
        epoch: Epoch,
        vdl: Lsn,
        truncation: Option<TruncationRange>,
    ) -> Result<(), String> {
        if let Some(&lost) = self.acknowledged.iter().find(|&&lsn| lsn > vdl) {
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
