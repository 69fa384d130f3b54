//! Test helpers: a one-PG record generator that links backlinks like the writer (W3), a
//! brute-force page model, and nodes on a fault-injecting disk.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use sixfold_core::redo::apply_body;
use sixfold_core::{
    Edit, Epoch, Geometry, Lsn, PAGE_BYTES, PageId, PgId, RedoBody, RedoRecord, SegmentId,
};
use sixfold_storage::{FaultyDisk, StorageConfig, StorageNode};

pub const DIR: &str = "/data";
/// Pages per PG in tests: PG k holds page numbers 16k..16k+15 of every database.
pub const PG_PAGES: u32 = 16;

pub fn seg(pg: u32, replica: u8) -> SegmentId {
    SegmentId {
        pg: PgId(pg),
        replica,
    }
}

/// Small files, so roll-over, collection and scrub all happen in short tests.
pub fn config() -> StorageConfig {
    StorageConfig {
        log_file_bytes_max: 2048,
        page_file_bytes_max: 8 * 4128,
        queue_bytes_max: 1 << 20,
        cache_bytes: 32 * 4096,
        cache_shards: 2,
        checkpoint_pages_per_step: 4,
        flush_pages_per_step: 4,
        geometry: Geometry { pg_pages: PG_PAGES },
    }
}

pub fn open(disk: &FaultyDisk) -> StorageNode {
    StorageNode::open(Arc::new(disk.clone()), DIR, config()).expect("open")
}

pub fn try_open(disk: &FaultyDisk) -> Result<StorageNode, sixfold_storage::StorageError> {
    StorageNode::open(Arc::new(disk.clone()), DIR, config())
}

/// Generates the records of one PG as its writer would: dense LSNs of this PG, backlinks
/// to the previous record of the PG and of the page (L3, W3).
#[derive(Clone, Debug)]
pub struct Gen {
    pub pg: PgId,
    pub epoch: Epoch,
    next_lsn: u64,
    last_pg: Lsn,
    last_page: HashMap<PageId, Lsn>,
    rng: u64,
    /// Every record generated, in LSN order.
    pub all: Vec<RedoRecord>,
}

impl Gen {
    pub fn new(pg: u32, seed: u64) -> Gen {
        Gen {
            pg: PgId(pg),
            epoch: Epoch(1),
            next_lsn: 1,
            last_pg: Lsn::ZERO,
            last_page: HashMap::new(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            all: Vec::new(),
        }
    }

    pub fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The `index`-th page of this PG (of database `db`).
    pub fn page(&self, db: u32, index: u32) -> PageId {
        PageId::new(db, self.pg.0 * PG_PAGES + index % PG_PAGES)
    }

    pub fn record(&mut self, page: PageId, body: RedoBody) -> RedoRecord {
        let lsn = Lsn(self.next_lsn);
        self.next_lsn += 1;
        let record = RedoRecord {
            lsn,
            pg: self.pg,
            prev_lsn_pg: self.last_pg,
            prev_lsn_page: self.last_page.get(&page).copied().unwrap_or(Lsn::ZERO),
            epoch: self.epoch,
            page,
            cpl: true,
            body,
        };
        self.last_pg = lsn;
        self.last_page.insert(page, lsn);
        self.all.push(record.clone());
        record
    }

    /// A record editing a few random bytes of a random page among the first `pages`.
    pub fn random_edit(&mut self, pages: u32) -> RedoRecord {
        let index = (self.random() % u64::from(pages)) as u32;
        let db = (self.random() % 2) as u32;
        let page = self.page(db, index);
        let offset = (self.random() % (PAGE_BYTES as u64 - 16)) as u16;
        let len = 1 + (self.random() % 12) as usize;
        let bytes = (0..len).map(|_| self.random() as u8).collect();
        self.record(page, RedoBody::Edits(vec![Edit { offset, bytes }]))
    }

    pub fn batch(&mut self, records: usize, pages: u32) -> Vec<RedoRecord> {
        (0..records).map(|_| self.random_edit(pages)).collect()
    }

    pub fn last_lsn(&self) -> Lsn {
        self.last_pg
    }

    /// Every page the generator touched.
    pub fn pages(&self) -> Vec<PageId> {
        let mut pages: Vec<PageId> = self.last_page.keys().copied().collect();
        pages.sort();
        pages
    }

    /// The brute-force model: the page with every generated record ≤ `lsn` applied.
    pub fn page_at(&self, page: PageId, lsn: Lsn) -> (Vec<u8>, Lsn) {
        let mut bytes = vec![0; PAGE_BYTES];
        let mut at = Lsn::ZERO;
        for record in self.all.iter().filter(|r| r.page == page && r.lsn <= lsn) {
            apply_body(&mut bytes, &record.body);
            at = record.lsn;
        }
        (bytes, at)
    }
}

/// Asserts that every page the generator touched reads back exactly as the model says at
/// `read_lsn` (R3), with `required` = `read_lsn` (one PG, dense LSNs).
pub fn assert_pages_exact(node: &mut StorageNode, segment: SegmentId, log: &Gen, read_lsn: Lsn) {
    for page in log.pages() {
        let image = node
            .get_page(segment, log.epoch, page, read_lsn, read_lsn)
            .unwrap_or_else(|error| panic!("{segment} {page}@{read_lsn}: {error}"));
        let (bytes, lsn) = log.page_at(page, read_lsn);
        assert_eq!(image.lsn, lsn, "{segment} {page}@{read_lsn}: page LSN");
        assert!(
            image.bytes == bytes,
            "{segment} {page}@{read_lsn}: page bytes differ from the model"
        );
    }
}

/// Reads every page at `read_lsn` and checks that whatever is served is exact (errors are
/// allowed: "nothing corrupt is served").
pub fn assert_nothing_corrupt_served(
    node: &mut StorageNode,
    segment: SegmentId,
    log: &Gen,
    read_lsn: Lsn,
) {
    for page in log.pages() {
        if let Ok(image) = node.get_page(segment, log.epoch, page, read_lsn, read_lsn) {
            let (bytes, lsn) = log.page_at(page, read_lsn);
            assert_eq!(
                image.lsn, lsn,
                "{segment} {page}@{read_lsn}: served page LSN"
            );
            assert!(
                image.bytes == bytes,
                "{segment} {page}@{read_lsn}: served corrupt bytes"
            );
        }
    }
}

/// Runs gossip rounds from `peer` (healthy) into `node` until `node` has no holes and its
/// SCL reached `target`, at most `rounds` times (S6).
pub fn repair_from(
    node: &mut StorageNode,
    segment: SegmentId,
    peer: &StorageNode,
    peer_segment: SegmentId,
    target: Lsn,
    rounds: usize,
) {
    for _ in 0..rounds {
        let status = node.segment_status(segment).unwrap();
        if status.scl >= target && !status.damaged {
            return;
        }
        let request = node.gossip_request(segment).unwrap();
        let answer = peer.answer_gossip(peer_segment, &request).unwrap();
        let peer_report = peer.report(peer_segment).unwrap();
        node.handle_gossip(segment, peer_report.epoch, &peer_report.truncations, answer)
            .unwrap();
        node.flush().unwrap();
    }
}
