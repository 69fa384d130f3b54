//! Redo records and mini-transactions (L2–L4).

use serde::{Deserialize, Serialize};

use crate::types::{Epoch, Lsn, PAGE_BYTES, PageId, PgId};

/// One byte-range edit of a page (L4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub offset: u16,
    pub bytes: Vec<u8>,
}

/// What a record does to its page (L4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedoBody {
    /// Byte-range edits, applied in order.
    Edits(Vec<Edit>),
    /// A whole page image of exactly `PAGE_BYTES`.
    FullImage(Vec<u8>),
}

impl RedoBody {
    /// L4: every edit lies inside the page, a full image is exactly one page, and the
    /// encoded body fits its frame (`RECORD_BODY_BYTES_MAX`, spec/formats.md): a body no
    /// frame can carry is never stored, so a segment holds only what it could log and
    /// forward (S13).
    pub fn is_well_formed(&self) -> bool {
        match self {
            RedoBody::FullImage(image) => image.len() == PAGE_BYTES,
            RedoBody::Edits(edits) => {
                edits.len() <= usize::from(u16::MAX)
                    && edits.iter().all(|edit| {
                        !edit.bytes.is_empty()
                            && edit.offset as usize + edit.bytes.len() <= PAGE_BYTES
                    })
                    && self.encoded_bytes() <= crate::codec::RECORD_BODY_BYTES_MAX
            }
        }
    }

    /// Bytes of the encoded body (spec/formats.md): the image, or a `u16` count and a
    /// 4-byte header per edit before its bytes.
    pub fn encoded_bytes(&self) -> usize {
        match self {
            RedoBody::FullImage(image) => image.len(),
            RedoBody::Edits(edits) => 2 + edits.iter().map(|e| 4 + e.bytes.len()).sum::<usize>(),
        }
    }
}

/// A redo record: one change to one page, with its backlinks (L3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedoRecord {
    pub lsn: Lsn,
    pub pg: PgId,
    /// L3: the previous record of the same PG (0 for the first).
    pub prev_lsn_pg: Lsn,
    /// L3: the previous record of the same page (0 for the first).
    pub prev_lsn_page: Lsn,
    /// The volume epoch of the writer that made it.
    pub epoch: Epoch,
    pub page: PageId,
    /// L2: the last record of its MTR.
    pub cpl: bool,
    pub body: RedoBody,
}

/// A mini-transaction being built: page changes that must apply atomically (L2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mtr {
    pub changes: Vec<(PageId, RedoBody)>,
}

impl Mtr {
    pub fn new() -> Mtr {
        Mtr::default()
    }

    pub fn push(&mut self, page: PageId, body: RedoBody) -> &mut Mtr {
        self.changes.push((page, body));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}
