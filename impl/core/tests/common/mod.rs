//! Helpers shared by the core tests.
#![allow(dead_code)]

use sixfold_core::{
    Edit, Epoch, Geometry, Lsn, Mtr, PageId, QuorumConfig, RedoBody, WriterConfig, WriterStart,
    WriterState,
};

pub fn edit(offset: u16, bytes: &[u8]) -> RedoBody {
    RedoBody::Edits(vec![Edit {
        offset,
        bytes: bytes.to_vec(),
    }])
}

pub fn writer(pg_pages: u32, lal: u64) -> WriterState {
    WriterState::new(
        WriterConfig {
            geometry: Geometry { pg_pages },
            quorum: QuorumConfig::AURORA,
            lal,
        },
        WriterStart::empty(Epoch(1)),
    )
}

pub fn mtr(pages: &[(u32, u32)]) -> Mtr {
    let mut mtr = Mtr::new();
    for (index, &(db, page_no)) in pages.iter().enumerate() {
        mtr.push(
            PageId::new(db, page_no),
            edit(index as u16, &[index as u8 + 1]),
        );
    }
    mtr
}

pub fn lsn(value: u64) -> Lsn {
    Lsn(value)
}
