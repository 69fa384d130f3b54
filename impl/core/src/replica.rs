//! A read replica's protocol decisions, sans-IO (spec/replica.md, P2–P9).
//!
//! The shell receives the writer's stream and storage's pages and holds the page bytes;
//! this machine decides what the replica may show: which read point, which records go to
//! which held page, which records to keep, what to report for PGMRPL. Every method returns
//! the step the shell must make visible at once ([`ReplicaStep`]), so that no read sees a
//! partial MTR (P4).

use std::collections::{BTreeMap, BTreeSet};

use crate::record::RedoRecord;
use crate::types::{Epoch, Lsn, PageId};

/// What the replica refuses; none of these changes its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("page {page} is already held or being read")]
    PageInUse { page: PageId },
    #[error("no storage read of page {page} is open")]
    NoOpenRead { page: PageId },
    #[error("page {page} arrived at {arrived} but was read at {requested} (P6)")]
    WrongReadPoint {
        page: PageId,
        requested: Lsn,
        arrived: Lsn,
    },
    #[error("the replica was promoted; it takes no stream any more (P9)")]
    Promoted,
}

/// Records the shell applies to one held page, in LSN order along `prev_lsn_page` (S9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageApply {
    pub page: PageId,
    pub records: Vec<RedoRecord>,
}

/// One step the shell makes visible atomically: apply `apply` to the pages it holds,
/// drop `evict`, then serve reads at `read_point`; send `report` to the writer (P8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStep {
    pub read_point: Lsn,
    pub apply: Vec<PageApply>,
    pub evict: Vec<PageId>,
    /// P8: a new oldest read point for the writer's PGMRPL, when it rose.
    pub report: Option<Lsn>,
}

/// A storage read the shell must issue: `page` at `read_point` (R1–R3, P6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageRead {
    pub page: PageId,
    pub read_point: Lsn,
}

/// The replica's state. It holds no page bytes: only which pages the shell holds.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    /// P2: the highest writer epoch heard.
    epoch: Epoch,
    /// P3: the applied VDL.
    read_point: Lsn,
    /// P2: the highest VDL heard.
    heard_vdl: Lsn,
    /// Records above the read point, and those kept for an open read (P6).
    held: BTreeMap<Lsn, RedoRecord>,
    /// Pages the shell holds (P5: only these take redo).
    pages: BTreeSet<PageId>,
    /// Open storage reads and the read point each was issued at (P6).
    reading: BTreeMap<PageId, Lsn>,
    /// P8: the oldest read point last reported.
    reported: Lsn,
    promoted: bool,
}

impl ReplicaState {
    /// P1, P3: a replica attached read-only at `attach_point` (R12's `F`) in `epoch`.
    pub fn attach(epoch: Epoch, attach_point: Lsn) -> ReplicaState {
        ReplicaState {
            epoch,
            read_point: attach_point,
            heard_vdl: attach_point,
            held: BTreeMap::new(),
            pages: BTreeSet::new(),
            reading: BTreeMap::new(),
            reported: attach_point,
            promoted: false,
        }
    }

    /// P3: the point every read of this replica sees.
    pub fn read_point(&self) -> Lsn {
        self.read_point
    }

    pub fn heard_vdl(&self) -> Lsn {
        self.heard_vdl
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn holds(&self, page: PageId) -> bool {
        self.pages.contains(&page)
    }

    /// Records kept (above the read point or for an open read).
    pub fn held_records(&self) -> usize {
        self.held.len()
    }

    /// P3: the lowest LSN in `(read point, heard VDL]` the replica lacks, if any.
    pub fn first_gap(&self) -> Option<Lsn> {
        let mut lsn = self.read_point.next();
        while lsn <= self.heard_vdl {
            if !self.held.contains_key(&lsn) {
                return Some(lsn);
            }
            lsn = lsn.next();
        }
        None
    }

    /// P8: the lowest read point of the open storage reads, or the read point.
    pub fn oldest_read_point(&self) -> Lsn {
        self.reading
            .values()
            .copied()
            .fold(self.read_point, Lsn::min)
    }

    /// P2: a record from the stream. Duplicates, records at or below the read point and
    /// records of an older epoch change nothing; a record of a newer epoch is taken (its
    /// epoch is heard). Records are never applied here (P4).
    pub fn on_redo(&mut self, record: RedoRecord) -> Result<(), ReplicaError> {
        self.refuse_if_promoted()?;
        if record.epoch < self.epoch || record.lsn <= self.read_point {
            return Ok(());
        }
        self.epoch = record.epoch;
        self.held.entry(record.lsn).or_insert(record);
        Ok(())
    }

    /// P2, P3, P4: a VDL from the stream. The read point moves to the highest VDL heard
    /// once every LSN up to it is held; the step applies the records in between to the
    /// held pages and discards the others.
    pub fn on_vdl(&mut self, epoch: Epoch, vdl: Lsn) -> Result<Option<ReplicaStep>, ReplicaError> {
        self.refuse_if_promoted()?;
        if epoch < self.epoch {
            return Ok(None);
        }
        self.epoch = epoch;
        self.heard_vdl = self.heard_vdl.max(vdl);
        if self.heard_vdl <= self.read_point || self.first_gap().is_some() {
            return Ok(None);
        }
        let to = self.heard_vdl;
        Ok(Some(self.advance_to(to)))
    }

    /// P6: the shell misses `page`; it reads it from storage at the returned read point.
    pub fn start_read(&mut self, page: PageId) -> Result<StorageRead, ReplicaError> {
        self.refuse_if_promoted()?;
        if self.pages.contains(&page) || self.reading.contains_key(&page) {
            return Err(ReplicaError::PageInUse { page });
        }
        self.reading.insert(page, self.read_point);
        Ok(StorageRead {
            page,
            read_point: self.read_point,
        })
    }

    /// P6: storage answered the read of `page` at `read_point`. The shell applies the
    /// returned records to the page before any read sees it, then holds it.
    pub fn page_arrived(
        &mut self,
        page: PageId,
        read_point: Lsn,
    ) -> Result<ReplicaStep, ReplicaError> {
        let requested = *self
            .reading
            .get(&page)
            .ok_or(ReplicaError::NoOpenRead { page })?;
        if requested != read_point {
            return Err(ReplicaError::WrongReadPoint {
                page,
                requested,
                arrived: read_point,
            });
        }
        self.reading.remove(&page);
        let records: Vec<RedoRecord> = self
            .held_between(read_point, self.read_point)
            .filter(|record| record.page == page)
            .cloned()
            .collect();
        self.pages.insert(page);
        self.prune_held();
        let apply = if records.is_empty() {
            Vec::new()
        } else {
            vec![PageApply { page, records }]
        };
        Ok(ReplicaStep {
            read_point: self.read_point,
            apply,
            evict: Vec::new(),
            report: self.take_report(),
        })
    }

    /// A storage read failed (the shell may read again at the current read point).
    pub fn read_failed(&mut self, page: PageId) -> Option<Lsn> {
        self.reading.remove(&page);
        self.prune_held();
        self.take_report()
    }

    /// P7: the shell drops a page (pages are never dirty).
    pub fn evict(&mut self, page: PageId) {
        self.pages.remove(&page);
    }

    /// P7: after a loss, evict every page, abandon open reads and move to the heard VDL.
    pub fn resync(&mut self) -> Result<ReplicaStep, ReplicaError> {
        self.refuse_if_promoted()?;
        let evict: Vec<PageId> = std::mem::take(&mut self.pages).into_iter().collect();
        self.reading.clear();
        self.read_point = self.read_point.max(self.heard_vdl);
        self.prune_held();
        Ok(ReplicaStep {
            read_point: self.read_point,
            apply: Vec::new(),
            evict,
            report: self.take_report(),
        })
    }

    /// P9: promoted by a recovery that found `recovered_vdl` in `epoch`. The held pages
    /// are brought to the recovered VDL when every LSN up to it is held, else all evicted;
    /// records above it are void and dropped. The replica takes no stream afterwards.
    pub fn promote(&mut self, epoch: Epoch, recovered_vdl: Lsn) -> ReplicaStep {
        self.epoch = self.epoch.max(epoch);
        self.reading.clear();
        self.held.retain(|lsn, _| *lsn <= recovered_vdl);
        self.heard_vdl = recovered_vdl;
        let complete = self.first_gap().is_none();
        let mut step = if complete && recovered_vdl > self.read_point {
            self.advance_to(recovered_vdl)
        } else {
            ReplicaStep::default()
        };
        if !complete {
            step.evict = std::mem::take(&mut self.pages).into_iter().collect();
        }
        self.read_point = self.read_point.max(recovered_vdl);
        self.held.clear();
        self.promoted = true;
        step.read_point = self.read_point;
        step.report = None;
        step
    }

    fn refuse_if_promoted(&self) -> Result<(), ReplicaError> {
        if self.promoted {
            Err(ReplicaError::Promoted)
        } else {
            Ok(())
        }
    }

    /// P4: one step from the read point to `to` (a heard VDL, every LSN held).
    fn advance_to(&mut self, to: Lsn) -> ReplicaStep {
        let mut apply: BTreeMap<PageId, Vec<RedoRecord>> = BTreeMap::new();
        for record in self.held_between(self.read_point, to) {
            if self.pages.contains(&record.page) {
                apply.entry(record.page).or_default().push(record.clone());
            }
        }
        self.read_point = to;
        self.prune_held();
        ReplicaStep {
            read_point: to,
            apply: apply
                .into_iter()
                .map(|(page, records)| PageApply { page, records })
                .collect(),
            evict: Vec::new(),
            report: self.take_report(),
        }
    }

    /// Held records with LSN in `(after, upto]`, ascending.
    fn held_between(&self, after: Lsn, upto: Lsn) -> impl Iterator<Item = &RedoRecord> {
        // BTreeMap::range panics on a range whose start is above its end.
        let records = (after < upto).then(|| self.held.range(after.next()..=upto));
        records.into_iter().flatten().map(|(_, record)| record)
    }

    /// P6: a record at or below the read point stays only while an open read of its page
    /// was issued below it.
    fn prune_held(&mut self) {
        let read_point = self.read_point;
        let reading = &self.reading;
        self.held.retain(|lsn, record| {
            *lsn > read_point || reading.get(&record.page).is_some_and(|point| point < lsn)
        });
    }

    /// P8: the oldest read point, when it rose since the last report.
    fn take_report(&mut self) -> Option<Lsn> {
        let oldest = self.oldest_read_point();
        if oldest > self.reported {
            self.reported = oldest;
            Some(oldest)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Edit, RedoBody};
    use crate::redo::materialize;
    use crate::types::{PAGE_BYTES, PgId};
    use proptest::prelude::*;
    use std::collections::HashMap;

    const E1: Epoch = Epoch(1);

    fn page(number: u32) -> PageId {
        PageId::new(1, number)
    }

    /// A writer's stream: MTRs of (page number, byte) changes, dense LSNs from 1 (L1, L2, L3).
    fn stream(mtrs: &[Vec<(u32, u8)>]) -> Vec<RedoRecord> {
        let mut records = Vec::new();
        let mut last_of_page: HashMap<u32, Lsn> = HashMap::new();
        let mut last = Lsn(0);
        for mtr in mtrs {
            for (index, (number, byte)) in mtr.iter().enumerate() {
                let lsn = Lsn(last.0 + 1);
                let prev_lsn_page = last_of_page.insert(*number, lsn).unwrap_or(Lsn(0));
                records.push(RedoRecord {
                    lsn,
                    pg: PgId(0),
                    prev_lsn_pg: last,
                    prev_lsn_page,
                    epoch: E1,
                    page: page(*number),
                    cpl: index + 1 == mtr.len(),
                    body: RedoBody::Edits(vec![Edit {
                        offset: (lsn.0 % 64) as u16,
                        bytes: vec![*byte],
                    }]),
                });
                last = lsn;
            }
        }
        records
    }

    /// The writer's page at `point` (what storage serves, R3), with its page LSN.
    fn page_at(records: &[RedoRecord], wanted: PageId, point: Lsn) -> (Vec<u8>, Lsn) {
        let own: Vec<&RedoRecord> = records.iter().filter(|r| r.page == wanted).collect();
        materialize(&vec![0; PAGE_BYTES], Lsn(0), own, point).expect("a clean chain")
    }

    fn feed_all(replica: &mut ReplicaState, records: &[RedoRecord]) {
        for record in records {
            replica.on_redo(record.clone()).unwrap();
        }
    }

    // P4: records above the heard VDL are kept, not applied, however early they arrive;
    // P3: a VDL with a missing LSN below it does not move the read point.
    #[test]
    fn records_wait_for_vdl_and_vdl_waits_for_every_lsn() {
        let records = stream(&[vec![(0, 1)], vec![(0, 2), (1, 3)]]);
        let mut replica = ReplicaState::attach(E1, Lsn(0));
        replica.on_redo(records[0].clone()).unwrap();
        replica.on_redo(records[2].clone()).unwrap();
        assert_eq!(replica.on_vdl(E1, Lsn(3)).unwrap(), None, "LSN 2 missing");
        assert_eq!(replica.read_point(), Lsn(0));
        assert_eq!(replica.first_gap(), Some(Lsn(2)));
        replica.on_redo(records[1].clone()).unwrap();
        assert_eq!(
            replica.on_vdl(E1, Lsn(1)).unwrap().unwrap().read_point,
            Lsn(3)
        );
    }

    // P2: duplicates and messages of an older epoch change nothing; the highest VDL heard
    // counts.
    #[test]
    fn duplicates_and_stale_epochs_change_nothing() {
        let records = stream(&[vec![(0, 1)], vec![(0, 2)]]);
        let mut replica = ReplicaState::attach(Epoch(2), Lsn(0));
        let mut stale = records[0].clone();
        stale.epoch = E1;
        replica.on_redo(stale).unwrap();
        assert_eq!(replica.held_records(), 0);
        assert_eq!(replica.on_vdl(E1, Lsn(1)).unwrap(), None);
        assert_eq!(replica.heard_vdl(), Lsn(0));
        for record in &records {
            let mut current = record.clone();
            current.epoch = Epoch(2);
            replica.on_redo(current.clone()).unwrap();
            replica.on_redo(current).unwrap();
        }
        assert_eq!(replica.held_records(), 2);
        let step = replica.on_vdl(Epoch(2), Lsn(2)).unwrap().unwrap();
        assert_eq!(step.read_point, Lsn(2));
        assert_eq!(replica.on_vdl(Epoch(2), Lsn(1)).unwrap(), None);
        assert_eq!(replica.read_point(), Lsn(2));
    }

    // P4, P5: a step applies an MTR's records to held pages only; records of other pages
    // are discarded, never materialised.
    #[test]
    fn records_of_pages_not_held_are_discarded() {
        let records = stream(&[vec![(0, 1)], vec![(0, 2), (1, 3)]]);
        let mut replica = ReplicaState::attach(E1, Lsn(0));
        let read = replica.start_read(page(0)).unwrap();
        replica.page_arrived(page(0), read.read_point).unwrap();
        feed_all(&mut replica, &records);
        let step = replica.on_vdl(E1, Lsn(3)).unwrap().unwrap();
        assert_eq!(step.apply.len(), 1);
        assert_eq!(step.apply[0].page, page(0));
        let lsns: Vec<Lsn> = step.apply[0].records.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, vec![Lsn(1), Lsn(2)]);
        assert_eq!(replica.held_records(), 0);
        assert!(!replica.holds(page(1)));
    }

    // P6: a page read at an older read point gets the records since, before it is shown;
    // P8: while the read is open the replica reports its point, not the newer one.
    #[test]
    fn a_late_page_is_caught_up_and_its_read_point_is_reported() {
        let records = stream(&[vec![(0, 1)], vec![(0, 2), (1, 3)]]);
        let mut replica = ReplicaState::attach(E1, Lsn(1));
        feed_all(&mut replica, &records[1..]);
        let read = replica.start_read(page(0)).unwrap();
        assert_eq!(read.read_point, Lsn(1));
        let step = replica.on_vdl(E1, Lsn(3)).unwrap().unwrap();
        assert!(step.apply.is_empty());
        assert_eq!(step.report, None, "the open read still needs LSN 1");
        assert_eq!(replica.oldest_read_point(), Lsn(1));
        assert_eq!(
            replica.page_arrived(page(0), Lsn(3)),
            Err(ReplicaError::WrongReadPoint {
                page: page(0),
                requested: Lsn(1),
                arrived: Lsn(3)
            })
        );
        let arrived = replica.page_arrived(page(0), Lsn(1)).unwrap();
        assert_eq!(arrived.apply[0].records.len(), 1);
        assert_eq!(arrived.apply[0].records[0].lsn, Lsn(2));
        assert_eq!(arrived.report, Some(Lsn(3)));
        assert_eq!(replica.held_records(), 0);
    }

    // P7: a resync evicts, abandons reads and moves to the heard VDL; P9: a promotion
    // with every LSN held brings the pages to the recovered VDL and drops what is above.
    #[test]
    fn resync_and_promotion() {
        let records = stream(&[vec![(0, 1)], vec![(0, 2)], vec![(0, 3)]]);
        let mut replica = ReplicaState::attach(E1, Lsn(0));
        let read = replica.start_read(page(0)).unwrap();
        replica.page_arrived(page(0), read.read_point).unwrap();
        replica.on_redo(records[1].clone()).unwrap();
        assert_eq!(replica.on_vdl(E1, Lsn(2)).unwrap(), None);
        let step = replica.resync().unwrap();
        assert_eq!((step.read_point, step.evict), (Lsn(2), vec![page(0)]));

        let mut warm = ReplicaState::attach(E1, Lsn(0));
        let read = warm.start_read(page(0)).unwrap();
        warm.page_arrived(page(0), read.read_point).unwrap();
        feed_all(&mut warm, &records);
        let step = warm.promote(Epoch(2), Lsn(2));
        let lsns: Vec<Lsn> = step.apply[0].records.iter().map(|r| r.lsn).collect();
        assert_eq!((step.read_point, lsns), (Lsn(2), vec![Lsn(1), Lsn(2)]));
        assert!(warm.holds(page(0)));
        assert_eq!(
            warm.on_redo(records[2].clone()),
            Err(ReplicaError::Promoted)
        );

        let mut cold = ReplicaState::attach(E1, Lsn(0));
        let read = cold.start_read(page(0)).unwrap();
        cold.page_arrived(page(0), read.read_point).unwrap();
        cold.on_redo(records[1].clone()).unwrap();
        let step = cold.promote(Epoch(2), Lsn(2));
        assert_eq!(step.evict, vec![page(0)], "LSN 1 missing: the cache goes");
        assert_eq!(step.read_point, Lsn(2));
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Deliver the in-flight message at this index; keep it (a duplicate) or not.
        Deliver {
            index: usize,
            keep: bool,
        },
        Lose(usize),
        AdvanceWriterVdl,
        StartRead(u32),
        FinishRead(u32),
        Evict(u32),
        Resync,
    }

    #[derive(Clone, Debug)]
    enum Message {
        Redo(usize),
        Vdl(Lsn),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..64usize, any::<bool>()).prop_map(|(index, keep)| Op::Deliver { index, keep }),
            1 => (0..64usize).prop_map(Op::Lose),
            2 => Just(Op::AdvanceWriterVdl),
            2 => (0..3u32).prop_map(Op::StartRead),
            2 => (0..3u32).prop_map(Op::FinishRead),
            1 => (0..3u32).prop_map(Op::Evict),
            1 => Just(Op::Resync),
        ]
    }

    fn mtrs() -> impl Strategy<Value = Vec<Vec<(u32, u8)>>> {
        prop::collection::vec(prop::collection::vec((0..3u32, 1..=255u8), 1..4), 1..8)
    }

    /// The shell: page bytes with their page LSN, applied exactly as the steps say.
    fn apply_step(shell: &mut HashMap<PageId, (Vec<u8>, Lsn)>, step: &ReplicaStep) {
        for gone in &step.evict {
            shell.remove(gone);
        }
        for PageApply { page, records } in &step.apply {
            let (bytes, lsn) = shell.get(page).expect("a held page").clone();
            let built = materialize(&bytes, lsn, records, step.read_point).expect("S9 chain");
            shell.insert(*page, built);
        }
    }

    proptest! {
        // P2-P8 together: over a stream that loses, reorders and duplicates, every page
        // the replica holds equals the writer's page at the replica's read point, which
        // is a CPL at or below the writer's VDL and never goes backwards.
        #[test]
        fn held_pages_are_the_volume_at_the_read_point(mtrs in mtrs(), ops in prop::collection::vec(op(), 1..120)) {
            let records = stream(&mtrs);
            let cpls: Vec<Lsn> = records.iter().filter(|r| r.cpl).map(|r| r.lsn).collect();
            let mut in_flight: Vec<Message> = (0..records.len()).map(Message::Redo).collect();
            let mut writer_vdl = Lsn(0);
            let mut replica = ReplicaState::attach(E1, Lsn(0));
            let mut shell: HashMap<PageId, (Vec<u8>, Lsn)> = HashMap::new();
            let mut open: HashMap<PageId, Lsn> = HashMap::new();
            for op in ops {
                let before = replica.read_point();
                let mut step = None;
                match op {
                    Op::Deliver { index, keep } if !in_flight.is_empty() => {
                        let index = index % in_flight.len();
                        let message = if keep { in_flight[index].clone() } else { in_flight.swap_remove(index) };
                        match message {
                            Message::Redo(at) => replica.on_redo(records[at].clone()).unwrap(),
                            Message::Vdl(vdl) => step = replica.on_vdl(E1, vdl).unwrap(),
                        }
                    }
                    Op::Lose(index) if !in_flight.is_empty() => {
                        in_flight.swap_remove(index % in_flight.len());
                    }
                    Op::AdvanceWriterVdl => {
                        if let Some(next) = cpls.iter().find(|cpl| **cpl > writer_vdl) {
                            writer_vdl = *next;
                            in_flight.push(Message::Vdl(writer_vdl));
                        }
                    }
                    Op::StartRead(number) => {
                        if let Ok(read) = replica.start_read(page(number)) {
                            open.insert(read.page, read.read_point);
                        }
                    }
                    Op::FinishRead(number) => {
                        if let Some(point) = open.remove(&page(number)) {
                            shell.insert(page(number), page_at(&records, page(number), point));
                            step = Some(replica.page_arrived(page(number), point).unwrap());
                        }
                    }
                    Op::Evict(number) => {
                        replica.evict(page(number));
                        shell.remove(&page(number));
                    }
                    Op::Resync => {
                        open.clear();
                        step = Some(replica.resync().unwrap());
                    }
                    Op::Deliver { .. } | Op::Lose(_) => {}
                }
                if let Some(step) = &step {
                    apply_step(&mut shell, step);
                }
                let point = replica.read_point();
                prop_assert!(point >= before, "P3: read point went back");
                prop_assert!(point <= writer_vdl, "P4: read point above the VDL");
                prop_assert!(point == Lsn(0) || cpls.contains(&point), "P3: inside an MTR");
                prop_assert!(replica.oldest_read_point() <= point);
                for (held, (bytes, _)) in &shell {
                    prop_assert!(replica.holds(*held));
                    let (expected, _) = page_at(&records, *held, point);
                    prop_assert!(bytes == &expected, "page {} differs at {}", held, point);
                }
            }
        }
    }
}
