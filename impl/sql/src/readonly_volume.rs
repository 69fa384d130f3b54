//! [`ReadOnlyVolume`]: the volume as a read-only attach sees it (R12): one durable read
//! point, no epoch raised, every commit refused. `db list` and `sql --readonly` use it, so
//! they never fence the application's writer.

use sixfold_cluster::{ClusterConfig, Reader, ReaderError};
use sixfold_core::PageId;

use crate::volume::{PageVolume, PageWrite, VolumeError};

/// A read-only attach as a [`PageVolume`].
pub struct ReadOnlyVolume {
    reader: Reader,
}

impl ReadOnlyVolume {
    /// R12: attaches without raising the epoch.
    pub fn attach(config: ClusterConfig) -> Result<Self, ReaderError> {
        Ok(ReadOnlyVolume {
            reader: Reader::attach(config)?,
        })
    }
}

impl PageVolume for ReadOnlyVolume {
    fn begin_read(&self) -> Result<u64, VolumeError> {
        Ok(self.reader.read_point().0)
    }

    fn end_read(&self, _read_point: u64) {}

    fn read_page(
        &self,
        db: u32,
        page_no: u32,
        _read_point: u64,
    ) -> Result<Option<Vec<u8>>, VolumeError> {
        self.reader
            .read_page(PageId::new(db, page_no))
            .map_err(|error| VolumeError::Backend(format!("db {db} page {page_no}: {error}")))
    }

    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
        Err(VolumeError::Backend(format!(
            "attached read-only (R12): a commit of {} pages is refused",
            writes.len()
        )))
    }
}
