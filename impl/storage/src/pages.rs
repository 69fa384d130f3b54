//! A segment's materialized page versions: append-only files `pages-<seq>.sxp` of
//! fixed-size page frames (codec::encode_page), and the in-memory index
//! page → LSN → where its frame is (S10).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sixfold_core::codec::{PAGE_FRAME_BYTES, PAGE_MAGIC, decode_page, encode_page};
use sixfold_core::{DbId, Lsn, PageId, PageImage};

use crate::disk::{Disk, DiskFile, OpenMode, numbered_file_name, parse_numbered_file_name};
use crate::error::StorageError;

pub const PAGES_PREFIX: &str = "pages-";
pub const PAGES_SUFFIX: &str = ".sxp";

pub fn page_file_name(seq: u64) -> String {
    numbered_file_name(PAGES_PREFIX, seq, PAGES_SUFFIX)
}

pub fn parse_page_file_name(name: &str) -> Option<u64> {
    parse_numbered_file_name(name, PAGES_PREFIX, PAGES_SUFFIX)
}

/// Where a page version's frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionLoc {
    pub seq: u64,
    pub offset: u64,
}

#[derive(Debug, Default)]
pub struct PageFileInfo {
    /// Frames in the index that point into this file.
    pub live: u64,
    pub frames: u64,
}

#[derive(Debug)]
struct ActivePages {
    seq: u64,
    end: u64,
    dir_sync_pending: bool,
    /// Versions appended since the last successful sync.
    unsynced: Vec<(PageId, Lsn)>,
}

/// A frame that failed its check, with what the frame claims to be (untrusted).
#[derive(Clone, Debug)]
pub struct DamagedFrame {
    pub path: PathBuf,
    pub offset: u64,
    pub hint: Option<(PageId, Lsn)>,
}

/// S16: a sealed file is compacted once fewer than this fraction of its frames are live
/// (numerator, denominator). One half: sealed files then average about three quarters live
/// (a file decays from whole to half before it is copied), about 1.33x space over live
/// versions, and each compaction copies at most one live frame per dead frame it frees.
pub const COMPACT_LIVE_FRACTION: (u64, u64) = (1, 2);

/// Bytes compaction wrote in this process, over every segment (for `sixfold bench`).
pub static COMPACTION_BYTES_WRITTEN: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// What one compaction did (S16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Files removed after their live versions were copied out.
    pub files_removed: usize,
    /// Live frames copied into the new file.
    pub frames_copied: u64,
    /// Bytes written by the copy (its cost in write bandwidth).
    pub bytes_written: u64,
}

/// The page versions of one segment.
#[derive(Debug)]
pub struct PageStore {
    dir: PathBuf,
    file_bytes_max: u64,
    pub files: BTreeMap<u64, PageFileInfo>,
    handles: HashMap<u64, Box<dyn DiskFile>>,
    active: Option<ActivePages>,
    next_seq: u64,
    pub index: BTreeMap<PageId, BTreeMap<Lsn, VersionLoc>>,
    /// Failed syncs so far: each may have dropped unsynced versions from the index.
    pub losses: u64,
    /// Bytes written by compaction since open (S16), for its cost per committed byte.
    pub compaction_bytes: u64,
}

/// What a damaged frame's header claims, if its magic is right (the CRC covers it, so this
/// is only a hint).
fn frame_hint(frame: &[u8]) -> Option<(PageId, Lsn)> {
    let word = |at: usize| {
        frame
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    if word(0)? != PAGE_MAGIC {
        return None;
    }
    let lsn = u64::from_le_bytes(frame.get(16..24)?.try_into().ok()?);
    Some((
        PageId {
            db: DbId(word(8)?),
            page_no: word(12)?,
        },
        Lsn(lsn),
    ))
}

impl PageStore {
    pub fn new(dir: &Path, file_bytes_max: u64) -> PageStore {
        PageStore {
            dir: dir.to_path_buf(),
            file_bytes_max,
            files: BTreeMap::new(),
            handles: HashMap::new(),
            active: None,
            next_seq: 1,
            index: BTreeMap::new(),
            losses: 0,
            compaction_bytes: 0,
        }
    }

    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(page_file_name(seq))
    }

    /// S12: indexes every page file, cutting a torn tail; returns frames that failed in the
    /// middle of a file.
    pub fn load(
        &mut self,
        disk: &dyn Disk,
        names: &[String],
    ) -> Result<Vec<DamagedFrame>, StorageError> {
        let mut damaged = Vec::new();
        let mut seqs: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_page_file_name(n))
            .collect();
        seqs.sort_unstable();
        let frame_bytes = PAGE_FRAME_BYTES as u64;
        for seq in seqs {
            let path = self.path(seq);
            let mut file = disk
                .open(&path, OpenMode::Existing)
                .map_err(StorageError::io("open", &path))?;
            let len = file.size_bytes().map_err(StorageError::io("stat", &path))?;
            let frames = len / frame_bytes;
            let mut info = PageFileInfo::default();
            let mut valid_end = 0;
            let mut frame = vec![0; PAGE_FRAME_BYTES];
            let mut file_damage = Vec::new();
            for index in 0..frames {
                let offset = index * frame_bytes;
                file.read_at(offset, &mut frame)
                    .map_err(StorageError::io("read", &path))?;
                match decode_page(&frame) {
                    Ok(image) => {
                        self.index_version(
                            image.page,
                            image.lsn,
                            VersionLoc { seq, offset },
                            &mut info,
                        );
                        // Damage seen so far is in the middle: a good frame follows it.
                        damaged.append(&mut file_damage);
                        valid_end = offset + frame_bytes;
                    }
                    Err(_) => file_damage.push(DamagedFrame {
                        path: path.clone(),
                        offset,
                        hint: frame_hint(&frame),
                    }),
                }
            }
            info.frames = valid_end / frame_bytes;
            if valid_end < len {
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = valid_end,
                    file_bytes = len,
                    "S12: cutting the torn tail of a page file"
                );
                file.set_len(valid_end)
                    .map_err(StorageError::io("cut", &path))?;
                file.sync().map_err(StorageError::io("fsync", &path))?;
            }
            self.files.insert(seq, info);
            self.handles.insert(seq, file);
            self.next_seq = self.next_seq.max(seq + 1);
        }
        Ok(damaged)
    }

    /// Indexes a version of file `loc.seq`, whose info the caller holds out of `files`.
    fn index_version(&mut self, page: PageId, lsn: Lsn, loc: VersionLoc, info: &mut PageFileInfo) {
        let versions = self.index.entry(page).or_default();
        if let Some(old) = versions.insert(lsn, loc) {
            if old.seq == loc.seq {
                info.live = info.live.saturating_sub(1);
            } else if let Some(old_info) = self.files.get_mut(&old.seq) {
                old_info.live = old_info.live.saturating_sub(1);
            }
        }
        info.live += 1;
    }

    /// The newest version of `page` at or below `lsn`.
    pub fn newest_at_or_below(&self, page: PageId, lsn: Lsn) -> Option<(Lsn, VersionLoc)> {
        self.index
            .get(&page)?
            .range(..=lsn)
            .next_back()
            .map(|(&l, &loc)| (l, loc))
    }

    pub fn has_version(&self, page: PageId, lsn: Lsn) -> bool {
        self.index.get(&page).is_some_and(|v| v.contains_key(&lsn))
    }

    /// S11: reads a version and verifies its CRC and that it is what the index says.
    pub fn read(
        &mut self,
        disk: &dyn Disk,
        page: PageId,
        lsn: Lsn,
        loc: VersionLoc,
    ) -> Result<PageImage, StorageError> {
        self.read_frame(disk, page, lsn, loc)
            .map(|(image, _)| image)
    }

    /// S11: the frame at `loc`, decoded and checked to be `page`@`lsn`, with its bytes.
    fn read_frame(
        &mut self,
        disk: &dyn Disk,
        page: PageId,
        lsn: Lsn,
        loc: VersionLoc,
    ) -> Result<(PageImage, Vec<u8>), StorageError> {
        let path = self.path(loc.seq);
        let file = self.handle(disk, loc.seq)?;
        let mut frame = vec![0; PAGE_FRAME_BYTES];
        file.read_at(loc.offset, &mut frame)
            .map_err(StorageError::io("read", &path))?;
        let image = decode_page(&frame)
            .map_err(|error| StorageError::corrupt(&path, loc.offset, &error))?;
        if image.page != page || image.lsn != lsn {
            return Err(StorageError::Corrupt {
                path,
                offset: loc.offset,
                reason: format!(
                    "frame holds {}@{}, index says {page}@{lsn}",
                    image.page, image.lsn
                ),
            });
        }
        Ok((image, frame))
    }

    fn handle(
        &mut self,
        disk: &dyn Disk,
        seq: u64,
    ) -> Result<&mut Box<dyn DiskFile>, StorageError> {
        if !self.handles.contains_key(&seq) {
            let path = self.path(seq);
            let file = disk
                .open(&path, OpenMode::Existing)
                .map_err(StorageError::io("open", &path))?;
            self.handles.insert(seq, file);
        }
        Ok(self.handles.get_mut(&seq).expect("inserted above"))
    }

    /// Appends a version; durable after [`PageStore::sync`]. Indexed at once: reads in this
    /// process see it, and a crash before the sync only loses a version that can be built
    /// again from the records it came from (they are kept until a checkpoint is durable).
    pub fn append(&mut self, disk: &dyn Disk, image: &PageImage) -> Result<(), StorageError> {
        let full = self.active.as_ref().is_some_and(|a| {
            a.end + PAGE_FRAME_BYTES as u64 > self.file_bytes_max && a.unsynced.is_empty()
        });
        if full {
            self.active = None;
        }
        if self.active.is_none() {
            let seq = self.next_seq;
            let path = self.path(seq);
            let file = disk
                .open(&path, OpenMode::CreateNew)
                .map_err(StorageError::io("create", &path))?;
            self.next_seq += 1;
            self.handles.insert(seq, file);
            self.files.insert(seq, PageFileInfo::default());
            self.active = Some(ActivePages {
                seq,
                end: 0,
                dir_sync_pending: true,
                unsynced: Vec::new(),
            });
        }
        let mut frame = Vec::with_capacity(PAGE_FRAME_BYTES);
        encode_page(image, &mut frame);
        let active = self.active.as_mut().expect("opened above");
        let (seq, offset) = (active.seq, active.end);
        let path = self.dir.join(page_file_name(seq));
        let file = self
            .handles
            .get_mut(&seq)
            .expect("active file has a handle");
        if let Err(error) = file.write_at(offset, &frame) {
            if file.set_len(offset).is_err() {
                self.abandon_active();
            }
            return Err(StorageError::io("append", path)(error));
        }
        active.end += PAGE_FRAME_BYTES as u64;
        active.unsynced.push((image.page, image.lsn));
        let mut info = std::mem::take(self.files.get_mut(&seq).expect("active file is listed"));
        info.frames += 1;
        self.index_version(image.page, image.lsn, VersionLoc { seq, offset }, &mut info);
        self.files.insert(seq, info);
        Ok(())
    }

    /// Makes appended versions durable (file fsync, and directory fsync for a new file).
    /// On failure the file is sealed and its unsynced versions are dropped from the index:
    /// their bytes may never reach the disk (a failed fsync may drop dirty pages).
    pub fn sync(&mut self, disk: &dyn Disk) -> Result<(), StorageError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if active.unsynced.is_empty() && !active.dir_sync_pending {
            return Ok(());
        }
        let seq = active.seq;
        let path = self.dir.join(page_file_name(seq));
        let file = self
            .handles
            .get_mut(&seq)
            .expect("active file has a handle");
        let mut result = file.sync().map_err(StorageError::io("fsync", &path));
        if result.is_ok() && active.dir_sync_pending {
            result = disk
                .sync_dir(&self.dir)
                .map_err(StorageError::io("fsync dir", &self.dir));
            if result.is_ok() {
                active.dir_sync_pending = false;
            }
        }
        match result {
            Ok(()) => {
                active.unsynced.clear();
                Ok(())
            }
            Err(error) => {
                self.abandon_active();
                Err(error)
            }
        }
    }

    /// Stops writing to the active file after a failure. Its unsynced versions may never
    /// reach the disk: they leave the index (all of the file's if its directory entry is
    /// not durable), and `losses` tells a checkpoint in progress to start over.
    fn abandon_active(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        self.losses += 1;
        if active.dir_sync_pending {
            self.drop_file_from_index(active.seq);
            return;
        }
        for (page, lsn) in active.unsynced {
            let here = self
                .index
                .get(&page)
                .and_then(|versions| versions.get(&lsn))
                .is_some_and(|loc| loc.seq == active.seq);
            if here {
                self.drop_version(page, lsn);
            }
        }
    }

    /// Forgets every version in file `seq` (the file stays until collected).
    pub fn drop_file_from_index(&mut self, seq: u64) {
        for versions in self.index.values_mut() {
            versions.retain(|_, loc| loc.seq != seq);
        }
        self.index.retain(|_, versions| !versions.is_empty());
        if let Some(info) = self.files.get_mut(&seq) {
            info.live = 0;
        }
    }

    /// Forgets one version (damaged).
    pub fn drop_version(&mut self, page: PageId, lsn: Lsn) {
        if let Some(versions) = self.index.get_mut(&page)
            && let Some(loc) = versions.remove(&lsn)
            && let Some(info) = self.files.get_mut(&loc.seq)
        {
            info.live = info.live.saturating_sub(1);
        }
    }

    /// S10: keeps, per page, the newest version ≤ `pgmrpl` and every newer one; removes
    /// files left with no live version. Returns the versions dropped.
    pub fn collect(&mut self, disk: &dyn Disk, pgmrpl: Lsn) -> Result<usize, StorageError> {
        let mut dropped = 0;
        for versions in self.index.values_mut() {
            let Some((&keep, _)) = versions.range(..=pgmrpl).next_back() else {
                continue;
            };
            let old: Vec<Lsn> = versions.range(..keep).map(|(&l, _)| l).collect();
            for lsn in old {
                let loc = versions.remove(&lsn).expect("listed above");
                if let Some(info) = self.files.get_mut(&loc.seq) {
                    info.live = info.live.saturating_sub(1);
                }
                dropped += 1;
            }
        }
        self.remove_dead_files(disk)?;
        Ok(dropped)
    }

    /// Removes every sealed file with no live version. The removal need not be durable: a
    /// file that comes back after a crash holds only versions collected or held elsewhere,
    /// and is removed again here.
    fn remove_dead_files(&mut self, disk: &dyn Disk) -> Result<(), StorageError> {
        let active = self.active.as_ref().map(|a| a.seq);
        let dead: Vec<u64> = self
            .files
            .iter()
            .filter(|(seq, info)| Some(**seq) != active && info.live == 0)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in dead {
            let path = self.path(seq);
            self.handles.remove(&seq);
            match disk.remove(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(StorageError::io("remove", path)(error)),
            }
            self.files.remove(&seq);
        }
        Ok(())
    }

    /// The sealed files S16 compacts next: those under the live fraction, emptiest first,
    /// as many as one new file holds (at least one).
    fn compaction_victims(&self) -> Vec<u64> {
        let active = self.active.as_ref().map(|a| a.seq);
        let (num, den) = COMPACT_LIVE_FRACTION;
        let mut candidates: Vec<(u64, u64, u64)> = self
            .files
            .iter()
            .filter(|(seq, info)| {
                Some(**seq) != active && info.frames > 0 && info.live * den < info.frames * num
            })
            .map(|(&seq, info)| (seq, info.live, info.frames))
            .collect();
        // Emptiest first: the fewest frames copied per frame freed.
        candidates.sort_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)).then(a.0.cmp(&b.0)));
        let frames_max = (self.file_bytes_max / PAGE_FRAME_BYTES as u64).max(1);
        let mut victims = Vec::new();
        let mut frames = 0;
        for (seq, live, _) in candidates {
            if !victims.is_empty() && frames + live > frames_max {
                break;
            }
            frames += live;
            victims.push(seq);
        }
        victims
    }

    /// S16: copies the live versions of the sparsest sealed files into one new file, makes
    /// it durable (file and directory fsync), points the index at it, and only then removes
    /// the old files. A crash at any step loses nothing: until the index moves, the old files
    /// hold every version; after it, the new file does, and a version found in both at
    /// restart is the same frame (the later file wins, the old file is then dead and
    /// removed). A victim with a frame that fails its check is left for scrub (S11).
    pub fn compact(&mut self, disk: &dyn Disk) -> Result<Compaction, StorageError> {
        let mut done = Compaction::default();
        let mut copies: Vec<(PageId, Lsn, VersionLoc)> = Vec::new();
        let mut frames: Vec<u8> = Vec::new();
        let mut victims = Vec::new();
        for seq in self.compaction_victims() {
            match self.read_live_frames(disk, seq) {
                Ok(live) => {
                    victims.push(seq);
                    for (page, lsn, old, frame) in live {
                        copies.push((page, lsn, old));
                        frames.extend_from_slice(&frame);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, seq, "S16: compaction skips a file that failed a check; scrub repairs it");
                }
            }
        }
        if victims.is_empty() {
            return Ok(done);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.path(seq);
        if !copies.is_empty() {
            let mut file = disk
                .open(&path, OpenMode::CreateNew)
                .map_err(StorageError::io("create", &path))?;
            let written = file
                .write_at(0, &frames)
                .and_then(|()| file.sync())
                .map_err(StorageError::io("write", &path))
                .and_then(|()| {
                    disk.sync_dir(&self.dir)
                        .map_err(StorageError::io("fsync dir", &self.dir))
                });
            if let Err(error) = written {
                // The old files still hold everything; the partial copy is dead at restart.
                drop(file);
                let _ = disk.remove(&path);
                return Err(error);
            }
            self.handles.insert(seq, file);
            let mut info = PageFileInfo::default();
            for (index, (page, lsn, old)) in copies.iter().enumerate() {
                let loc = VersionLoc {
                    seq,
                    offset: index as u64 * PAGE_FRAME_BYTES as u64,
                };
                info.frames += 1;
                let still_here = self
                    .index
                    .get(page)
                    .and_then(|versions| versions.get(lsn))
                    .is_some_and(|at| at == old);
                debug_assert!(
                    still_here,
                    "S16: nothing moves a version during a compaction"
                );
                if still_here {
                    self.index_version(*page, *lsn, loc, &mut info);
                }
            }
            self.files.insert(seq, info);
            done.frames_copied = copies.len() as u64;
            done.bytes_written = frames.len() as u64;
            self.compaction_bytes += done.bytes_written;
            COMPACTION_BYTES_WRITTEN
                .fetch_add(done.bytes_written, std::sync::atomic::Ordering::Relaxed);
        }
        for victim in &victims {
            debug_assert_eq!(self.files.get(victim).map_or(0, |i| i.live), 0);
        }
        let before = self.files.len();
        self.remove_dead_files(disk)?;
        done.files_removed = before - self.files.len();
        Ok(done)
    }

    /// Every live version of file `seq`, with its frame as stored, each verified (S11).
    #[allow(clippy::type_complexity)]
    fn read_live_frames(
        &mut self,
        disk: &dyn Disk,
        seq: u64,
    ) -> Result<Vec<(PageId, Lsn, VersionLoc, Vec<u8>)>, StorageError> {
        let live = self.versions_in(seq);
        let mut out = Vec::with_capacity(live.len());
        for (page, lsn, loc) in live {
            let (_, frame) = self.read_frame(disk, page, lsn, loc)?;
            out.push((page, lsn, loc, frame));
        }
        Ok(out)
    }

    /// Sealed files with no live version: removed at the next collection or restart (S16),
    /// so after a restart this is zero, or a file leaked.
    pub fn dead_files(&self) -> usize {
        let active = self.active.as_ref().map(|a| a.seq);
        self.files
            .iter()
            .filter(|(seq, info)| Some(**seq) != active && info.live == 0)
            .count()
    }

    /// Bytes of page frames on disk, and of live ones (S16's space amplification).
    pub fn bytes(&self) -> (u64, u64) {
        let frame = PAGE_FRAME_BYTES as u64;
        self.files.values().fold((0, 0), |(all, live), info| {
            (all + info.frames * frame, live + info.live * frame)
        })
    }

    /// The versions (page, LSN) stored in file `seq`, for scrub and compaction.
    pub fn versions_in(&self, seq: u64) -> Vec<(PageId, Lsn, VersionLoc)> {
        let mut out: Vec<(PageId, Lsn, VersionLoc)> = self
            .index
            .iter()
            .flat_map(|(&page, versions)| {
                versions
                    .iter()
                    .filter(move |(_, loc)| loc.seq == seq)
                    .map(move |(&lsn, &loc)| (page, lsn, loc))
            })
            .collect();
        out.sort_by_key(|(_, _, loc)| loc.offset);
        out
    }

    pub fn version_count(&self) -> usize {
        self.index.values().map(BTreeMap::len).sum()
    }
}
