//! The page volume as the SQL layer sees it (V1, V5, R2, R4, C4).
//!
//! The networked writer implements [`PageVolume`]; tests use [`crate::MemVolume`].

/// Size of one volume page in bytes (spec terms: "page").
pub const PAGE_SIZE: usize = 4096;

/// A page volume as the SQL layer sees it (the writer implements it).
///
/// Pages are addressed by `(db, page_no)` (V1). Every method may be called from any
/// thread; SQLite calls them from whichever thread runs a connection.
pub trait PageVolume: Send + Sync + 'static {
    /// Start a read: returns the read point (the VDL now, R2) and registers it (R4
    /// PGMRPL tracking). Every successful call is paired with one [`PageVolume::end_read`].
    fn begin_read(&self) -> Result<u64, VolumeError>;

    /// End a read started with [`PageVolume::begin_read`].
    fn end_read(&self, read_point: u64);

    /// The page as of `read_point`; `None` if never written (reads as zeros). Pages
    /// are [`PAGE_SIZE`] bytes.
    fn read_page(
        &self,
        db: u32,
        page_no: u32,
        read_point: u64,
    ) -> Result<Option<Vec<u8>>, VolumeError>;

    /// Write these full page images atomically as one MTR (V5); returns the commit
    /// LSN only once it is durable (VDL ≥ LSN, C4). The implementation diffs against
    /// prior images (V7). An error means the MTR did not become durable: none of its
    /// pages is ever visible.
    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError>;
}

/// One full page image to write, part of an MTR given to [`PageVolume::commit`].
#[derive(Clone, PartialEq, Eq)]
pub struct PageWrite {
    /// The database the page belongs to (V1).
    pub db: u32,
    /// The page number inside that database.
    pub page_no: u32,
    /// The full new image, exactly [`PAGE_SIZE`] bytes.
    pub image: Vec<u8>,
}

impl std::fmt::Debug for PageWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageWrite")
            .field("db", &self.db)
            .field("page_no", &self.page_no)
            .field("image_len", &self.image.len())
            .finish()
    }
}

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A fault injected by a test hook (see [`crate::MemVolume`]).
    #[error("injected fault in {operation}")]
    Injected {
        /// The operation that failed ("commit", "read_page", "begin_read").
        operation: &'static str,
    },
    /// A page image given to commit is not [`PAGE_SIZE`] bytes.
    #[error("page image for db {db} page {page_no} is {len} bytes, expected {PAGE_SIZE}")]
    BadImageSize {
        /// Database of the bad write.
        db: u32,
        /// Page number of the bad write.
        page_no: u32,
        /// Its length.
        len: usize,
    },
    /// The read point is not one this volume can serve (R3: below PGMRPL or above VDL).
    #[error("read point {read_point} cannot be served (oldest {oldest}, VDL {vdl})")]
    ReadPointUnavailable {
        /// The requested read point.
        read_point: u64,
        /// The oldest read point still served.
        oldest: u64,
        /// The VDL now.
        vdl: u64,
    },
    /// An MTR with no page writes; the SQL layer never sends one.
    #[error("empty MTR")]
    EmptyMtr,
    /// An error of the implementation (the writer: fenced, quorum lost, ...), as text.
    #[error("{0}")]
    Backend(String),
    /// W12: the transaction is larger than the volume takes in one MTR; nothing was
    /// written. SQLite reports it as SQLITE_FULL with this text, not as an I/O error.
    #[error("{0}")]
    TooLarge(String),
    /// A commit was sent but its durability could not be confirmed (the writer crashed
    /// or was fenced while it waited): it may or may not show after recovery (X4).
    #[error("{0}")]
    OutcomeUnknown(String),
}

/// V5: what every `commit` checks first: an MTR has at least one page, and every image is
/// exactly one page.
pub fn check_writes(writes: &[PageWrite]) -> Result<(), VolumeError> {
    if writes.is_empty() {
        return Err(VolumeError::EmptyMtr);
    }
    if let Some(bad) = writes.iter().find(|w| w.image.len() != PAGE_SIZE) {
        return Err(VolumeError::BadImageSize {
            db: bad.db,
            page_no: bad.page_no,
            len: bad.image.len(),
        });
    }
    Ok(())
}
