//! A fault-injecting disk: an in-memory filesystem that knows which bytes and directory
//! entries are durable, for tests and the deterministic simulator.
//!
//! - Bytes written to a file are *pending* until `sync`; entries created, renamed or removed
//!   in a directory are pending until `sync_dir` of that directory.
//! - [`FaultyDisk::crash`] keeps the durable state plus, per file, a seeded random prefix of
//!   the pending writes, the last kept one possibly torn at any byte; pending directory
//!   changes are dropped. Handles opened before a crash fail afterwards.
//! - [`FaultyDisk::inject`] arms errors on the next matching operations: ENOSPC, EIO, or a
//!   torn write (a prefix is written, then EIO).
//! - A failed `sync` behaves as Linux does ("fsyncgate"): the pending writes it should have
//!   made durable are dropped from the durable path, though reads still see them.
//! - [`FaultyDisk::flip_bit`] corrupts a byte on the medium (durable and visible).
//!
//! Everything random comes from the seed, so a run replays exactly.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::disk::{Disk, DiskFile, FileSync, OpenMode};

/// Kinds of disk operation, for aiming faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiskOp {
    Open,
    Create,
    Write,
    Read,
    SetLen,
    Sync,
    SyncDir,
    Rename,
    Remove,
    List,
    CreateDir,
    Len,
}

/// Which operations an armed fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpFilter {
    Any,
    /// Everything that changes the disk: create, write, set_len, rename, remove, create_dir.
    Mutations,
    /// `sync` and `sync_dir`.
    Syncs,
    Only(DiskOp),
}

impl OpFilter {
    fn matches(self, op: DiskOp) -> bool {
        match self {
            OpFilter::Any => true,
            OpFilter::Mutations => matches!(
                op,
                DiskOp::Create
                    | DiskOp::Write
                    | DiskOp::SetLen
                    | DiskOp::Rename
                    | DiskOp::Remove
                    | DiskOp::CreateDir
            ),
            OpFilter::Syncs => matches!(op, DiskOp::Sync | DiskOp::SyncDir),
            OpFilter::Only(only) => only == op,
        }
    }
}

/// The error an armed fault produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// ENOSPC: nothing is written.
    NoSpace,
    /// EIO: nothing is done (a failed `sync` drops its pending writes, see the module doc).
    Io,
    /// A write stores a random strict prefix of its bytes, then fails with EIO. On other
    /// operations it acts as `Io`.
    TornWrite,
}

/// How a crash treats pending (unsynced) writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Per file, a seeded random prefix of the pending writes survives, the last possibly torn.
    Random,
    /// No pending write survives.
    DropUnsynced,
    /// Every pending write survives whole (the disk happened to write everything back).
    KeepUnsynced,
}

/// Counters of what the disk was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub syncs: u64,
    pub dir_syncs: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub reads: u64,
    /// Every operation, counted (faults included).
    pub ops: u64,
}

#[derive(Clone, Debug)]
enum PendingWrite {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl PendingWrite {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            PendingWrite::Write { offset, bytes } => write_into(data, *offset, bytes),
            PendingWrite::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// What reads see.
    current: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<PendingWrite>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Clone, Copy, Debug)]
struct ArmedFault {
    filter: OpFilter,
    kind: FaultKind,
    /// Matching operations to let pass before the first failure.
    skip: u64,
    /// Failures left.
    count: u64,
}

/// SplitMix64: small, seeded, good enough to pick crash points.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (max + 1)
        }
    }
}

#[derive(Debug)]
struct FsState {
    rng: Rng,
    names: BTreeMap<PathBuf, Entry>,
    durable_names: BTreeMap<PathBuf, Entry>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    faults: Vec<ArmedFault>,
    /// Raised by every crash; handles of an older generation are dead.
    generation: u64,
    stats: DiskStats,
    /// Operations seen, when tracing is on (for debugging a failing seed).
    trace: Option<Vec<(DiskOp, Option<FaultKind>)>>,
}

/// An in-memory disk with crash and fault injection. Clones share the same disk.
#[derive(Clone, Debug)]
pub struct FaultyDisk {
    state: Arc<Mutex<FsState>>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl FsState {
    fn lock(state: &Mutex<FsState>) -> MutexGuard<'_, FsState> {
        // A panic while holding this lock is a bug in this file or a test; keep going with
        // the state as it is rather than hide the first panic behind a second.
        state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts the operation and fires an armed fault if one matches.
    fn check(&mut self, op: DiskOp) -> Option<FaultKind> {
        self.stats.ops += 1;
        let fired = self.fire(op);
        if let Some(trace) = &mut self.trace {
            trace.push((op, fired));
        }
        fired
    }

    fn fire(&mut self, op: DiskOp) -> Option<FaultKind> {
        for fault in &mut self.faults {
            if fault.count == 0 || !fault.filter.matches(op) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            fault.count -= 1;
            return Some(fault.kind);
        }
        None
    }

    fn fail(op: DiskOp, kind: FaultKind) -> io::Error {
        match kind {
            FaultKind::NoSpace => io::Error::new(
                io::ErrorKind::StorageFull,
                format!("injected ENOSPC on {op:?}"),
            ),
            FaultKind::Io | FaultKind::TornWrite => {
                io::Error::other(format!("injected EIO on {op:?}"))
            }
        }
    }

    fn gate(&mut self, op: DiskOp) -> io::Result<()> {
        match self.check(op) {
            Some(kind) => Err(FsState::fail(op, kind)),
            None => Ok(()),
        }
    }

    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("file was removed"))
    }

    fn parent_is_dir(&self, path: &Path) -> bool {
        let parent = parent_of(path);
        parent.as_os_str().is_empty() || self.names.get(&parent) == Some(&Entry::Dir)
    }

    fn crash(&mut self, mode: CrashMode) {
        self.generation += 1;
        self.names = self.durable_names.clone();
        let live: Vec<u64> = self
            .names
            .values()
            .filter_map(|entry| match entry {
                Entry::File(id) => Some(*id),
                Entry::Dir => None,
            })
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
        let mut ids: Vec<u64> = self.inodes.keys().copied().collect();
        ids.sort_unstable(); // HashMap order is not deterministic; the rng draws must be.
        for id in ids {
            let mut inode = self.inodes.remove(&id).expect("listed above");
            let pending = std::mem::take(&mut inode.pending);
            let keep = match mode {
                CrashMode::DropUnsynced => 0,
                CrashMode::KeepUnsynced => pending.len(),
                CrashMode::Random => self.rng.up_to(pending.len() as u64) as usize,
            };
            for write in &pending[..keep] {
                write.apply(&mut inode.durable);
            }
            if mode == CrashMode::Random
                && let Some(PendingWrite::Write { offset, bytes }) = pending.get(keep)
                && self.rng.up_to(1) == 1
            {
                let torn = self.rng.up_to(bytes.len() as u64) as usize;
                write_into(&mut inode.durable, *offset, &bytes[..torn]);
            }
            inode.current = inode.durable.clone();
            self.inodes.insert(id, inode);
        }
    }
}

impl FaultyDisk {
    /// A new empty disk whose random choices come from `seed`.
    pub fn new(seed: u64) -> FaultyDisk {
        // The root directory always exists.
        let root = BTreeMap::from([(PathBuf::from("/"), Entry::Dir)]);
        FaultyDisk {
            state: Arc::new(Mutex::new(FsState {
                rng: Rng(seed),
                names: root.clone(),
                durable_names: root,
                inodes: HashMap::new(),
                next_inode: 1,
                faults: Vec::new(),
                generation: 0,
                stats: DiskStats::default(),
                trace: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FsState> {
        FsState::lock(&self.state)
    }

    /// Arms a fault: after `skip` matching operations pass, the next `count` fail.
    pub fn inject(&self, filter: OpFilter, kind: FaultKind, skip: u64, count: u64) {
        self.lock().faults.push(ArmedFault {
            filter,
            kind,
            skip,
            count,
        });
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Simulates power loss with [`CrashMode::Random`].
    pub fn crash(&self) {
        self.crash_with(CrashMode::Random);
    }

    pub fn crash_with(&self, mode: CrashMode) {
        self.lock().crash(mode);
    }

    /// Flips bit `bit` (0..8) of byte `offset` of a file, durably: media corruption.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut state = self.lock();
        let Some(Entry::File(id)) = state.names.get(path).copied() else {
            return Err(not_found(path));
        };
        let inode = state.inode(id)?;
        let mask = 1u8 << (bit % 8);
        let at = offset as usize;
        if at >= inode.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bit flip past the end of the file",
            ));
        }
        inode.current[at] ^= mask;
        if at < inode.durable.len() {
            inode.durable[at] ^= mask;
        }
        Ok(())
    }

    /// Writes `bytes` over `path` at `offset`, durably and within the file: a misdirected
    /// write, whose bytes (a whole valid frame, say) were meant for another place. Nothing
    /// the engine does notices it until it reads the bytes.
    pub fn misdirect(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let Some(Entry::File(id)) = state.names.get(path).copied() else {
            return Err(not_found(path));
        };
        let inode = state.inode(id)?;
        let end = offset as usize + bytes.len();
        if end > inode.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "misdirected write past the end of the file",
            ));
        }
        inode.current[offset as usize..end].copy_from_slice(bytes);
        if end <= inode.durable.len() {
            inode.durable[offset as usize..end].copy_from_slice(bytes);
        }
        Ok(())
    }

    /// The bytes a read of `path` would see now (no fault, not counted).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.names.get(path) {
            Some(Entry::File(id)) => state.inodes.get(id).map(|inode| inode.current.clone()),
            _ => None,
        }
    }

    /// Every file path, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        let state = self.lock();
        state
            .names
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::File(_)))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Starts recording every operation (and the fault it hit), or stops and returns them.
    pub fn trace(&self, on: bool) -> Vec<(DiskOp, Option<FaultKind>)> {
        let mut state = self.lock();
        let taken = state.trace.take().unwrap_or_default();
        if on {
            state.trace = Some(Vec::new());
        }
        taken
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }
}

#[derive(Debug)]
struct FaultyFile {
    state: Arc<Mutex<FsState>>,
    inode: u64,
    generation: u64,
}

impl FaultyFile {
    fn enter(&self, op: DiskOp) -> io::Result<MutexGuard<'_, FsState>> {
        let mut state = FsState::lock(&self.state);
        if state.generation != self.generation {
            return Err(io::Error::other("handle opened before a crash"));
        }
        state.gate(op)?;
        Ok(state)
    }

    fn write(&self, offset: Option<u64>, bytes: &[u8]) -> io::Result<u64> {
        let mut state = FsState::lock(&self.state);
        if state.generation != self.generation {
            return Err(io::Error::other("handle opened before a crash"));
        }
        let fault = state.check(DiskOp::Write);
        let torn = match fault {
            Some(FaultKind::TornWrite) if !bytes.is_empty() => {
                Some(state.rng.up_to(bytes.len() as u64 - 1) as usize)
            }
            Some(kind) => return Err(FsState::fail(DiskOp::Write, kind)),
            None => None,
        };
        state.stats.writes += 1;
        let inode = state.inode(self.inode)?;
        let offset = offset.unwrap_or(inode.current.len() as u64);
        let written = &bytes[..torn.unwrap_or(bytes.len())];
        write_into(&mut inode.current, offset, written);
        inode.pending.push(PendingWrite::Write {
            offset,
            bytes: written.to_vec(),
        });
        state.stats.bytes_written += written.len() as u64;
        match torn {
            Some(_) => Err(FsState::fail(DiskOp::Write, FaultKind::TornWrite)),
            None => Ok(offset),
        }
    }
}

impl DiskFile for FaultyFile {
    fn size_bytes(&self) -> io::Result<u64> {
        let mut state = self.enter(DiskOp::Len)?;
        Ok(state.inode(self.inode)?.current.len() as u64)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        self.write(None, bytes)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.write(Some(offset), bytes).map(|_| ())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut state = self.enter(DiskOp::Read)?;
        state.stats.reads += 1;
        let inode = state.inode(self.inode)?;
        let start = offset as usize;
        let end = start.saturating_add(buf.len());
        if end > inode.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        buf.copy_from_slice(&inode.current[start..end]);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.enter(DiskOp::SetLen)?;
        let inode = state.inode(self.inode)?;
        inode.current.resize(len as usize, 0);
        inode.pending.push(PendingWrite::SetLen(len));
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_now()
    }

    fn sync_handle(&self) -> io::Result<Box<dyn FileSync>> {
        Ok(Box::new(FaultyFile {
            state: Arc::clone(&self.state),
            inode: self.inode,
            generation: self.generation,
        }))
    }
}

impl FileSync for FaultyFile {
    fn sync(&self) -> io::Result<()> {
        self.sync_now()
    }
}

impl FaultyFile {
    /// One fsync: every write made through any handle of the inode becomes durable, or,
    /// on an injected fault, is dropped from what is pending (fsyncgate).
    fn sync_now(&self) -> io::Result<()> {
        let mut state = FsState::lock(&self.state);
        if state.generation != self.generation {
            return Err(io::Error::other("handle opened before a crash"));
        }
        let fault = state.check(DiskOp::Sync);
        state.stats.syncs += 1;
        let inode = state.inode(self.inode)?;
        let pending = std::mem::take(&mut inode.pending);
        if let Some(kind) = fault {
            // fsyncgate: the writes are marked clean without reaching the medium.
            return Err(FsState::fail(DiskOp::Sync, kind));
        }
        for write in &pending {
            write.apply(&mut inode.durable);
        }
        Ok(())
    }
}

impl Disk for FaultyDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.lock();
        let op = match mode {
            OpenMode::Existing => DiskOp::Open,
            OpenMode::CreateNew => DiskOp::Create,
        };
        state.gate(op)?;
        let inode = match (mode, state.names.get(path).copied()) {
            (OpenMode::Existing, Some(Entry::File(id))) => id,
            (OpenMode::Existing, _) => return Err(not_found(path)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            (OpenMode::CreateNew, None) => {
                if !state.parent_is_dir(path) {
                    return Err(not_found(&parent_of(path)));
                }
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.names.insert(path.to_path_buf(), Entry::File(id));
                id
            }
        };
        Ok(Box::new(FaultyFile {
            state: Arc::clone(&self.state),
            inode,
            generation: state.generation,
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.gate(DiskOp::CreateDir)?;
        match state.names.get(path) {
            Some(Entry::Dir) => Ok(()),
            Some(Entry::File(_)) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file has that name",
            )),
            None if !state.parent_is_dir(path) => Err(not_found(&parent_of(path))),
            None => {
                state.names.insert(path.to_path_buf(), Entry::Dir);
                Ok(())
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.gate(DiskOp::Rename)?;
        let Some(entry @ Entry::File(_)) = state.names.get(from).copied() else {
            return Err(not_found(from));
        };
        if let Some(Entry::File(old)) = state.names.insert(to.to_path_buf(), entry)
            && !state.durable_names.values().any(|e| *e == Entry::File(old))
        {
            state.inodes.remove(&old);
        }
        state.names.remove(from);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.gate(DiskOp::Remove)?;
        match state.names.get(path) {
            Some(Entry::File(_)) => {
                state.names.remove(path);
                Ok(())
            }
            _ => Err(not_found(path)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.lock();
        state.gate(DiskOp::List)?;
        if state.names.get(dir) != Some(&Entry::Dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.stats.dir_syncs += 1;
        state.gate(DiskOp::SyncDir)?;
        if state.names.get(dir) != Some(&Entry::Dir) {
            return Err(not_found(dir));
        }
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        state.durable_names.retain(|path, _| !in_dir(path));
        let current: Vec<(PathBuf, Entry)> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, entry)| (path.clone(), *entry))
            .collect();
        state.durable_names.extend(current);
        // Files neither visible nor durable are gone for good.
        let FsState {
            names,
            durable_names,
            inodes,
            ..
        } = &mut *state;
        inodes.retain(|id, _| {
            let entry = Entry::File(*id);
            names.values().any(|e| *e == entry) || durable_names.values().any(|e| *e == entry)
        });
        Ok(())
    }
}
