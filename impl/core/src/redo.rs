//! Page redo as pure functions: apply a page's records in LSN order (S9), and diff two
//! images into byte-range edits (V7).

use crate::record::{Edit, RedoBody, RedoRecord};
use crate::types::{Lsn, PAGE_BYTES};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedoError {
    #[error("record {lsn} follows {prev} but the page is at {page_lsn} (S9)")]
    BrokenChain { lsn: Lsn, prev: Lsn, page_lsn: Lsn },
    #[error("record {lsn} is malformed (L4)")]
    Malformed { lsn: Lsn },
}

/// Applies one record's body to a page image.
pub fn apply_body(page: &mut [u8], body: &RedoBody) {
    debug_assert_eq!(page.len(), PAGE_BYTES);
    match body {
        RedoBody::FullImage(image) => page.copy_from_slice(image),
        RedoBody::Edits(edits) => {
            for edit in edits {
                let start = edit.offset as usize;
                page[start..start + edit.bytes.len()].copy_from_slice(&edit.bytes);
            }
        }
    }
}

/// S9: the page as of `read_lsn`, from `base` (a version at `base_lsn`) and the page's
/// records in LSN order. Records above `read_lsn` are ignored; each applied record must
/// follow the previous one along `prev_lsn_page`.
pub fn materialize<'a>(
    base: &[u8],
    base_lsn: Lsn,
    records: impl IntoIterator<Item = &'a RedoRecord>,
    read_lsn: Lsn,
) -> Result<(Vec<u8>, Lsn), RedoError> {
    let mut page = base.to_vec();
    let mut page_lsn = base_lsn;
    for record in records {
        if record.lsn <= page_lsn {
            continue; // already in the base version
        }
        if record.lsn > read_lsn {
            break;
        }
        if record.prev_lsn_page != page_lsn {
            return Err(RedoError::BrokenChain {
                lsn: record.lsn,
                prev: record.prev_lsn_page,
                page_lsn,
            });
        }
        if !record.body.is_well_formed() {
            return Err(RedoError::Malformed { lsn: record.lsn });
        }
        apply_body(&mut page, &record.body);
        page_lsn = record.lsn;
    }
    Ok((page, page_lsn))
}

/// Bytes of equal content that may sit inside one edit rather than split it in two: an
/// edit header costs 4 bytes.
const EDIT_MERGE_GAP_BYTES: usize = 8;

/// V7: the change from `old` to `new` as byte-range edits, or a full image when that is
/// smaller. `None` when the pages are equal.
pub fn diff_pages(old: &[u8], new: &[u8]) -> Option<RedoBody> {
    assert_eq!(old.len(), PAGE_BYTES);
    assert_eq!(new.len(), PAGE_BYTES);
    let mut edits: Vec<Edit> = Vec::new();
    let mut at = 0;
    while at < PAGE_BYTES {
        if old[at] == new[at] {
            at += 1;
            continue;
        }
        let start = at;
        let mut end = at + 1; // exclusive end of the differing run
        let mut scan = end;
        while scan < PAGE_BYTES && scan - end <= EDIT_MERGE_GAP_BYTES {
            if old[scan] != new[scan] {
                end = scan + 1;
            }
            scan += 1;
        }
        edits.push(Edit {
            offset: start as u16,
            bytes: new[start..end].to_vec(),
        });
        at = end;
    }
    if edits.is_empty() {
        return None;
    }
    let edit_bytes: usize = 2 + edits.iter().map(|e| 4 + e.bytes.len()).sum::<usize>();
    if edit_bytes >= PAGE_BYTES || edit_bytes > crate::codec::RECORD_BODY_BYTES_MAX {
        Some(RedoBody::FullImage(new.to_vec()))
    } else {
        Some(RedoBody::Edits(edits))
    }
}
