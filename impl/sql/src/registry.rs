//! Per-volume shared state: the in-process lock table and the VFS registration.
//!
//! One [`VolumeState`] exists per live volume instance in this process. It owns the lock
//! table every connection to that volume's databases shares, and the name of the VFS
//! registered with SQLite for the volume. The state holds the volume only weakly: open
//! files hold it strongly, so a volume nobody uses any more is dropped, and its VFS is
//! unregistered at the next registration sweep.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::volume::PageVolume;

/// SQLite's lock levels (sqlite3.h `SQLITE_LOCK_*`), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LockLevel {
    None = 0,
    Shared = 1,
    Reserved = 2,
    Pending = 3,
    Exclusive = 4,
}

impl LockLevel {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::None),
            1 => Some(Self::Shared),
            2 => Some(Self::Reserved),
            3 => Some(Self::Pending),
            4 => Some(Self::Exclusive),
            _ => None,
        }
    }
}

/// Lock-table entry of one database.
#[derive(Debug, Default)]
pub(crate) struct DbLocks {
    /// Main-database files open on this database (any lock level).
    pub(crate) open_files: u32,
    /// Files holding at least SHARED.
    pub(crate) shared: u32,
    /// The file holding RESERVED or above, if any: at most one writer per database.
    pub(crate) writer: Option<u64>,
    /// LSN of the last commit of this database made in this process. A file whose read
    /// point is below it read a stale snapshot and may not start writing.
    pub(crate) last_commit_lsn: u64,
}

/// Why a lock was not granted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LockRefused {
    /// Another file holds RESERVED or above.
    OtherWriter,
    /// The file's snapshot (read point) is older than the last commit: writing from it
    /// would lose that commit's changes.
    StaleSnapshot {
        read_point: u64,
        last_commit_lsn: u64,
    },
}

/// Shared state of one volume instance in this process.
pub(crate) struct VolumeState {
    volume: Weak<dyn PageVolume>,
    handle_id_next: AtomicU64,
    /// Serialises catalog changes and main-file opens of this volume (V3).
    catalog_lock: Mutex<()>,
    locks: Mutex<HashMap<u32, DbLocks>>,
    /// The VFS registered for this volume, once registered.
    vfs: Mutex<Option<RegisteredVfs>>,
}

/// A VFS registered with SQLite: its name and the allocation SQLite points at.
pub(crate) struct RegisteredVfs {
    pub(crate) name: CString,
    pub(crate) raw: crate::vfs::RawVfs,
}

fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below completes its mutation before anything that could
    // panic, so the data behind a poisoned mutex is consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl VolumeState {
    /// The volume, if some owner still holds it.
    pub(crate) fn volume(&self) -> Option<Arc<dyn PageVolume>> {
        self.volume.upgrade()
    }

    pub(crate) fn new_handle_id(&self) -> u64 {
        self.handle_id_next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn catalog_guard(&self) -> MutexGuard<'_, ()> {
        lock_unpoisoned(&self.catalog_lock)
    }

    pub(crate) fn locks(&self) -> MutexGuard<'_, HashMap<u32, DbLocks>> {
        lock_unpoisoned(&self.locks)
    }

    pub(crate) fn vfs_slot(&self) -> MutexGuard<'_, Option<RegisteredVfs>> {
        lock_unpoisoned(&self.vfs)
    }

    /// Open files of a database (drop_database refuses while any is open).
    pub(crate) fn open_files(&self, db: u32) -> u32 {
        self.locks().get(&db).map_or(0, |entry| entry.open_files)
    }

    /// RESERVED for `handle_id` on `db`, reading at `read_point`.
    pub(crate) fn acquire_writer(
        &self,
        db: u32,
        handle_id: u64,
        read_point: u64,
    ) -> Result<(), LockRefused> {
        let mut locks = self.locks();
        let entry = locks.entry(db).or_default();
        match entry.writer {
            Some(holder) if holder == handle_id => return Ok(()),
            Some(_) => return Err(LockRefused::OtherWriter),
            None => {}
        }
        if read_point < entry.last_commit_lsn {
            return Err(LockRefused::StaleSnapshot {
                read_point,
                last_commit_lsn: entry.last_commit_lsn,
            });
        }
        entry.writer = Some(handle_id);
        Ok(())
    }

    pub(crate) fn release_writer(&self, db: u32, handle_id: u64) {
        let mut locks = self.locks();
        let entry = locks.entry(db).or_default();
        assert_eq!(
            entry.writer,
            Some(handle_id),
            "writer lock released by a file that does not hold it"
        );
        entry.writer = None;
    }

    pub(crate) fn other_writer(&self, db: u32, handle_id: u64) -> bool {
        self.locks()
            .get(&db)
            .and_then(|entry| entry.writer)
            .is_some_and(|holder| holder != handle_id)
    }

    pub(crate) fn note_commit(&self, db: u32, handle_id: u64, lsn: u64) {
        let mut locks = self.locks();
        let entry = locks.entry(db).or_default();
        assert_eq!(
            entry.writer,
            Some(handle_id),
            "commit without the writer lock"
        );
        assert!(
            lsn > entry.last_commit_lsn,
            "commit LSNs of a database go up"
        );
        entry.last_commit_lsn = lsn;
    }

    pub(crate) fn shared_delta(&self, db: u32, open: bool) {
        let mut locks = self.locks();
        let entry = locks.entry(db).or_default();
        if open {
            entry.shared += 1;
        } else {
            entry.shared = entry.shared.checked_sub(1).expect("SHARED count underflow");
        }
    }

    pub(crate) fn open_delta(&self, db: u32, open: bool) {
        let mut locks = self.locks();
        let entry = locks.entry(db).or_default();
        if open {
            entry.open_files += 1;
        } else {
            entry.open_files = entry
                .open_files
                .checked_sub(1)
                .expect("open-file count underflow");
        }
    }
}

struct Registration {
    /// Address of the volume's data: identifies the instance while it lives.
    key: usize,
    state: Arc<VolumeState>,
}

static REGISTRY: Mutex<Vec<Registration>> = Mutex::new(Vec::new());

fn volume_key(volume: &Arc<dyn PageVolume>) -> usize {
    Arc::as_ptr(volume).cast::<()>() as usize
}

/// The state of this volume instance, created on first use. Also sweeps the states of
/// volumes that no longer exist (unregistering their VFS).
pub(crate) fn state_for(volume: &Arc<dyn PageVolume>) -> Arc<VolumeState> {
    let key = volume_key(volume);
    let mut registry = lock_unpoisoned(&REGISTRY);
    let (dead, live): (Vec<Registration>, Vec<Registration>) = registry
        .drain(..)
        .partition(|registration| registration.state.volume.strong_count() == 0);
    *registry = live;
    for registration in dead {
        if let Some(vfs) = registration.state.vfs_slot().take() {
            crate::vfs::unregister(vfs);
        }
    }
    if let Some(found) = registry.iter().find(|r| r.key == key) {
        return found.state.clone();
    }
    let state = Arc::new(VolumeState {
        volume: Arc::downgrade(volume),
        handle_id_next: AtomicU64::new(1),
        catalog_lock: Mutex::new(()),
        locks: Mutex::new(HashMap::new()),
        vfs: Mutex::new(None),
    });
    registry.push(Registration {
        key,
        state: state.clone(),
    });
    state
}
