//! The recovery planner (X1–X5, X7, E1): from segment reports of a read quorum per PG to
//! the new epoch's VCL, VDL, truncation range and starting point. No I/O: the shell gathers
//! the reports, then repairs and writes what the plan says.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::ProtocolEvent;
use crate::quorum::QuorumConfig;
use crate::segment::SegmentReport;
use crate::types::{Epoch, Lsn, PgId, SegmentId, TruncationRange};
use crate::writer::WriterStart;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("pg{pg} has {have} reports; a read quorum is {need} (X2)")]
    NoReadQuorum { pg: u32, have: usize, need: usize },
    #[error(
        "segment {segment} holds epoch {seen}, above the proposed {proposed}: retry higher (E1)"
    )]
    EpochTooLow {
        segment: SegmentId,
        seen: Epoch,
        proposed: Epoch,
    },
    #[error("report from {segment} is for an unknown PG")]
    UnknownPg { segment: SegmentId },
}

/// What recovery decided (X3, X4, X7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub epoch: Epoch,
    pub vcl: Lsn,
    pub vdl: Lsn,
    /// X4: `(VDL, B + LAL]`, B the higher of VDL and every earlier truncation's end.
    pub truncation: TruncationRange,
    /// S15: the truncation history this recovery leaves in force: the newest history a
    /// reporter held, plus `truncation`. Segments adopt it whole (X5).
    pub history: Vec<TruncationRange>,
    /// X5: each PG must have a write quorum with SCL at or past this before opening.
    pub last_lsn_by_pg: BTreeMap<PgId, Lsn>,
}

impl RecoveryPlan {
    /// X7: where the new writer starts.
    pub fn writer_start(&self) -> WriterStart {
        WriterStart {
            epoch: self.epoch,
            vdl: self.vdl,
            next_lsn: self.truncation.lsn_end.next(),
            last_lsn_by_pg: self.last_lsn_by_pg.clone(),
            page_lsns_known: false,
        }
    }
}

/// Gathers reports for one recovery attempt at a proposed epoch.
#[derive(Clone, Debug)]
pub struct RecoveryPlanner {
    quorum: QuorumConfig,
    lal: u64,
    epoch: Epoch,
    pgs: BTreeSet<PgId>,
    reports: BTreeMap<SegmentId, SegmentReport>,
}

impl RecoveryPlanner {
    /// E1, E4: `epoch` is the proposed new epoch; reports are answers of segments that have
    /// already raised to it (so they now refuse the old writer).
    pub fn new(quorum: QuorumConfig, lal: u64, epoch: Epoch, pgs: BTreeSet<PgId>) -> Self {
        RecoveryPlanner {
            quorum,
            lal,
            epoch,
            pgs,
            reports: BTreeMap::new(),
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// X1: take one segment's report.
    pub fn handle_report(&mut self, report: SegmentReport) -> Result<(), RecoveryError> {
        if !self.pgs.contains(&report.segment.pg) {
            return Err(RecoveryError::UnknownPg {
                segment: report.segment,
            });
        }
        if report.epoch > self.epoch {
            return Err(RecoveryError::EpochTooLow {
                segment: report.segment,
                seen: report.epoch,
                proposed: self.epoch,
            });
        }
        self.reports.insert(report.segment, report);
        Ok(())
    }

    /// Whether `segment` has reported.
    pub fn has_report(&self, segment: SegmentId) -> bool {
        self.reports.contains_key(&segment)
    }

    /// X2: whether every PG has a read quorum of reports.
    pub fn has_read_quorum(&self) -> bool {
        self.missing_quorum().is_none()
    }

    /// X2: the first PG without a read quorum of reports, as an error.
    pub fn missing_quorum(&self) -> Option<RecoveryError> {
        let need = self.quorum.read_quorum();
        self.pgs.iter().find_map(|&pg| {
            let have = self.reports.keys().filter(|s| s.pg == pg).count();
            (have < need).then_some(RecoveryError::NoReadQuorum {
                pg: pg.0,
                have,
                need,
            })
        })
    }

    /// X2–X4, X7: compute the plan, or refuse without a read quorum of every PG.
    pub fn plan(&self) -> Result<(RecoveryPlan, Vec<ProtocolEvent>), RecoveryError> {
        if let Some(error) = self.missing_quorum() {
            return Err(error);
        }
        // X3: F is the highest VDL hint; above it, count held LSNs and truncated ranges.
        let floor = self
            .reports
            .values()
            .map(|r| r.vdl_hint)
            .max()
            .unwrap_or(Lsn::ZERO);
        // S15: the ranges in force are the newest history any reporter holds. A range
        // another reporter holds that this history lacks belongs to a recovery that never
        // completed (X5 would have put it where the newer recovery had to see it), and
        // that newer recovery decided the LSNs it covered: it voids nothing.
        let in_force: Vec<TruncationRange> = self
            .reports
            .values()
            .max_by_key(|report| crate::types::history_epoch(&report.truncations))
            .map(|report| report.truncations.clone())
            .unwrap_or_default();
        let truncations = in_force;
        // S8: a held record in a range of a higher epoch than its own is void, even if its
        // reporter missed the truncation; it counts neither as held nor as a CPL.
        // X10: of records reported at one LSN, the one of the highest epoch counts (a lower
        // one lies in the range the later writer's recovery truncated, X7); reports of one
        // epoch are one record (L1) and the LSN is a CPL if any says so.
        let mut newest: BTreeMap<Lsn, (Epoch, bool)> = BTreeMap::new();
        for report in self.reports.values() {
            for &(lsn, cpl, epoch) in &report.held {
                if truncations.iter().any(|t| t.voids(lsn, epoch)) {
                    continue;
                }
                let entry = newest.entry(lsn).or_insert((epoch, cpl));
                if epoch > entry.0 {
                    *entry = (epoch, cpl);
                } else if epoch == entry.0 {
                    entry.1 |= cpl;
                }
            }
        }
        let present: BTreeMap<Lsn, bool> = newest
            .into_iter()
            .map(|(lsn, (_, cpl))| (lsn, cpl))
            .collect();
        // X3: walk up from F: an LSN is complete when held, or when a range voids whatever
        // an earlier writer may have put there.
        let mut vcl = floor;
        loop {
            let next = vcl.next();
            if present.contains_key(&next) {
                vcl = next;
            } else if let Some(end) = void_run_end(&truncations, next) {
                vcl = end;
            } else {
                break;
            }
        }
        // X4: the highest CPL ≤ VCL; below F everything was already durable at a CPL
        // (a VDL hint is a VDL, C3).
        let vdl = present
            .range(floor.next()..)
            .take_while(|&(&lsn, _)| lsn <= vcl)
            .filter(|&(_, &cpl)| cpl)
            .map(|(&lsn, _)| lsn)
            .last()
            .unwrap_or(floor);
        // X4: a writer of an earlier epoch allocated at most LAL above the higher of its
        // VDL (≤ ours) and its own truncation end (W1), so that is the bound to void.
        // Every reported range counts here, in force or not: the bound only grows.
        let allocation_base = self
            .reports
            .values()
            .flat_map(|report| report.truncations.iter())
            .map(|t| t.lsn_end)
            .fold(vdl, Lsn::max);
        let truncation = TruncationRange {
            lsn_begin: vdl,
            lsn_end: Lsn(allocation_base.0 + self.lal),
            epoch: self.epoch,
        };
        let last_lsn_by_pg = self
            .pgs
            .iter()
            .map(|&pg| (pg, self.last_lsn_of(pg, vdl, &truncations)))
            .collect();
        let events = vec![
            ProtocolEvent::Truncated { range: truncation },
            ProtocolEvent::RecoveryCompleted {
                epoch: self.epoch,
                vcl,
                vdl,
            },
        ];
        let mut history = truncations;
        history.push(truncation);
        let plan = RecoveryPlan {
            epoch: self.epoch,
            vcl,
            vdl,
            truncation,
            history,
            last_lsn_by_pg,
        };
        Ok((plan, events))
    }

    /// X7: the PG's last LSN ≤ VDL among the reports.
    fn last_lsn_of(&self, pg: PgId, vdl: Lsn, truncations: &[TruncationRange]) -> Lsn {
        self.reports
            .values()
            .filter(|report| report.segment.pg == pg)
            .map(|report| {
                let held = report
                    .held
                    .iter()
                    .filter(|&&(lsn, _, epoch)| !truncations.iter().any(|t| t.voids(lsn, epoch)))
                    .map(|&(lsn, _, _)| lsn)
                    .filter(|&lsn| lsn <= vdl)
                    .max()
                    .unwrap_or(Lsn::ZERO);
                held.max(report.tip_at_hint.min(vdl))
            })
            .max()
            .unwrap_or(Lsn::ZERO)
    }
}

/// X3: nothing at `lsn` can survive: a range voids it, and no writer of a later epoch than
/// that range allocated there (each allocates only above its own range's end).
/// X3, W11: if `lsn` is surely void, the last LSN of the run from `lsn` on that is surely
/// void too (still inside a voiding range, and past no further end of a later range), so
/// the walk steps over a whole range at once: its cost does not grow with LAL.
fn void_run_end(truncations: &[TruncationRange], lsn: Lsn) -> Option<Lsn> {
    truncations
        .iter()
        .filter(|range| {
            range.contains(lsn)
                && !truncations
                    .iter()
                    .any(|later| later.epoch > range.epoch && later.lsn_end < lsn)
        })
        .map(|range| {
            truncations
                .iter()
                .filter(|later| later.epoch > range.epoch && later.lsn_end >= lsn)
                .map(|later| later.lsn_end)
                .fold(range.lsn_end, Lsn::min)
        })
        .max()
}

#[cfg(test)]
fn surely_void(truncations: &[TruncationRange], lsn: Lsn) -> bool {
    truncations.iter().any(|range| {
        range.contains(lsn)
            && !truncations
                .iter()
                .any(|later| later.epoch > range.epoch && later.lsn_end < lsn)
    })
}

/// X1, X11, V2, S20: what one node's answer to `RaiseEpoch` says of a segment placed on it.
/// Its report if it has one; an empty report, with the node's truncation history, if the
/// node does not host it (V2: a segment is created at its PG's first write there) and does
/// not say it may have lost it; nothing — no answer — if the segment is repairing or the
/// node may have lost it (a late node, S19). One rule for both drivers: the production
/// recovery applies it to each node's answer, the simulated node to its own.
pub fn placed_report(
    segment: SegmentId,
    epoch: Epoch,
    answer: PlacedAnswer<'_>,
) -> Option<SegmentReport> {
    if answer.repairing.contains(&segment) {
        return None;
    }
    match answer.reports.iter().find(|r| r.segment == segment) {
        Some(report) => Some(report.clone()),
        None if answer.absent_may_be_lost => None,
        None => Some(SegmentReport {
            truncations: answer.truncations.to_vec(),
            ..SegmentReport::empty(segment, epoch)
        }),
    }
}

/// One node's answer to `RaiseEpoch`, as [`placed_report`] reads it.
#[derive(Clone, Copy, Debug)]
pub struct PlacedAnswer<'a> {
    /// Reports of the hosted segments that are not repairing.
    pub reports: &'a [SegmentReport],
    /// S20: segments that count as no answer.
    pub repairing: &'a [SegmentId],
    /// S20: a placed segment the node does not host may be one it lost.
    pub absent_may_be_lost: bool,
    /// The node's truncation history, for the empty reports.
    pub truncations: &'a [TruncationRange],
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges() -> impl Strategy<Value = Vec<TruncationRange>> {
        prop::collection::vec((0u64..60, 0u64..30, 1u64..5), 0..5).prop_map(|raw| {
            raw.into_iter()
                .map(|(begin, len, epoch)| TruncationRange {
                    lsn_begin: Lsn(begin),
                    lsn_end: Lsn(begin + len),
                    epoch: Epoch(epoch),
                })
                .collect()
        })
    }

    proptest! {
        /// X3, W11: stepping over a run of void LSNs at once ends where the LSN-by-LSN
        /// walk would: every LSN of the run is void, and so is no LSN right after it
        /// unless another run starts there.
        #[test]
        fn a_void_run_is_void_lsn_by_lsn(truncations in ranges(), start in 1u64..100) {
            let lsn = Lsn(start);
            match void_run_end(&truncations, lsn) {
                None => prop_assert!(!surely_void(&truncations, lsn)),
                Some(end) => {
                    prop_assert!(end >= lsn);
                    for l in lsn.0..=end.0 {
                        prop_assert!(surely_void(&truncations, Lsn(l)), "LSN {l} in the run is not void");
                    }
                }
            }
        }
    }
}
