//! Point-in-time restore (B13–B16): choose a restore point (always a VDL), read and verify
//! every object it needs, rebuild each page as of the point, and write a new volume.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sixfold_core::redo::materialize;
use sixfold_core::{Lsn, PAGE_BYTES, PageId, PgId, RedoRecord};

use super::format::{ManifestPoint, RedoObjectName, decode_redo_object, parse_manifest_name};
use super::{BackupError, BackupTarget, chained_bound};
use crate::config::six_node_toml;
use crate::embedded::{CONFIG_FILE, EmbeddedCluster, SECRET_RANDOM_BYTES, free_ports};
use crate::files;
use crate::writer::{Writer, WriterOptions};

/// Pages written to the new volume per MTR (well under the writer's MTR bound).
pub const RESTORE_PAGES_PER_MTR: usize = 512;

/// B13: where to restore to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorePoint {
    /// The latest restorable point (B14).
    Latest,
    /// The highest CPL at or below this LSN and the latest restorable point.
    Vdl(Lsn),
    /// The highest manifest point whose time (ms since the Unix epoch) is at or before it.
    Time(u64),
}

/// The volume as of a restore point, built from the store and checked, not yet written.
#[derive(Debug)]
pub struct RestorePlan {
    /// B13: the VDL restored to.
    pub point: Lsn,
    /// B14: the latest restorable point when the restore read the store.
    pub latest: Lsn,
    pub pg_pages: u32,
    /// Every page with a record at or below the point, as of the point.
    pub pages: BTreeMap<PageId, Vec<u8>>,
    pub objects: usize,
    pub records: usize,
}

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub point: Lsn,
    pub latest: Lsn,
    pub pages: usize,
    pub records: usize,
    pub objects: usize,
    /// Time to read and verify the store and build the pages, in milliseconds.
    pub plan_ms: u64,
    /// Time to write the new volume, in milliseconds.
    pub write_ms: u64,
}

/// B13–B16: restores `target` at `to` into a new volume at `into` (which must not exist).
/// Every object is read and verified before anything is written; the volume is built in a
/// temporary folder beside `into` and renamed to it once complete.
pub fn restore(
    target: &BackupTarget,
    to: RestorePoint,
    into: &Path,
) -> Result<RestoreSummary, BackupError> {
    let started = Instant::now();
    if into.exists() {
        return Err(into_error(
            into,
            "already exists; restore builds a new volume",
        ));
    }
    let plan = plan(target, to)?;
    let plan_ms = started.elapsed().as_millis() as u64;
    let writing = Instant::now();
    write_volume(&plan, into)?;
    Ok(RestoreSummary {
        point: plan.point,
        latest: plan.latest,
        pages: plan.pages.len(),
        records: plan.records,
        objects: plan.objects,
        plan_ms,
        write_ms: writing.elapsed().as_millis() as u64,
    })
}

fn into_error(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Into {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// B9, B16: every manifest point, by VDL, each verified.
fn manifest_points(target: &BackupTarget) -> Result<Vec<ManifestPoint>, BackupError> {
    let mut points = Vec::new();
    for name in target.list("manifest")? {
        let Some(vdl) = parse_manifest_name(&name) else {
            continue;
        };
        let bytes = target.get(&name)?;
        let point = ManifestPoint::decode(&bytes).map_err(|reason| BackupError::Damaged {
            object: name.clone(),
            reason,
        })?;
        if point.vdl != vdl {
            return Err(BackupError::Damaged {
                object: name,
                reason: format!("holds the point of VDL {}", point.vdl.0),
            });
        }
        points.push(point);
    }
    points.sort_by_key(|p| p.vdl);
    let Some(first) = points.first() else {
        return Err(BackupError::NoPoint(format!(
            "no manifest in {} (is the writer's backup on?)",
            target.url()
        )));
    };
    if let Some(other) = points
        .iter()
        .find(|p| (p.pg_pages, &p.volume_id) != (first.pg_pages, &first.volume_id))
    {
        return Err(BackupError::Damaged {
            object: other.name(),
            reason: "another volume's manifest (volume id or pg_pages differ)".into(),
        });
    }
    Ok(points)
}

/// B6, B16: each PG's objects and staged bound; a gap in a chain is a missing object.
fn staged_chains(
    target: &BackupTarget,
    points: &[ManifestPoint],
) -> Result<BTreeMap<PgId, (Vec<RedoObjectName>, Lsn)>, BackupError> {
    let mut pgs: Vec<PgId> = target.staged_pgs()?;
    pgs.extend(points.iter().flat_map(|p| p.pg_last.keys().copied()));
    pgs.sort();
    pgs.dedup();
    let mut chains = BTreeMap::new();
    for pg in pgs {
        let objects = target.redo_objects(pg)?;
        let (bound, gap) = chained_bound(&objects);
        if let Some((from, next)) = gap {
            return Err(BackupError::Missing {
                object: format!(
                    "{}/{:020}-… (no object starts at LSN {}; the next starts at {})",
                    super::format::redo_dir(pg),
                    from.0,
                    from.0,
                    next.0
                ),
            });
        }
        chains.insert(pg, (objects, bound));
    }
    Ok(chains)
}

/// B14: the highest manifest point every PG's staged bound covers.
fn latest_restorable<'a>(
    points: &'a [ManifestPoint],
    chains: &BTreeMap<PgId, (Vec<RedoObjectName>, Lsn)>,
) -> Option<&'a ManifestPoint> {
    points.iter().rev().find(|point| {
        point.pg_last.iter().all(|(pg, &last)| {
            last == Lsn::ZERO || chains.get(pg).is_some_and(|(_, bound)| *bound >= last)
        })
    })
}

/// B14: the latest restorable point of `target` (`None` if no point is fully staged):
/// manifest points are read from the newest down until one is covered, so this is cheap
/// enough to poll.
pub fn latest_restorable_point(
    target: &BackupTarget,
) -> Result<Option<ManifestPoint>, BackupError> {
    let names: Vec<String> = target
        .list("manifest")?
        .into_iter()
        .filter(|name| parse_manifest_name(name).is_some())
        .collect();
    let mut bounds: BTreeMap<PgId, Lsn> = BTreeMap::new();
    for name in names.iter().rev() {
        let bytes = target.get(name)?;
        let point = ManifestPoint::decode(&bytes).map_err(|reason| BackupError::Damaged {
            object: name.clone(),
            reason,
        })?;
        let mut covered = true;
        for (&pg, &last) in &point.pg_last {
            let bound = match bounds.get(&pg) {
                Some(&bound) => bound,
                None => {
                    let bound = chained_bound(&target.redo_objects(pg)?).0;
                    *bounds.entry(pg).or_insert(bound)
                }
            };
            covered &= bound >= last;
        }
        if covered {
            return Ok(Some(point));
        }
    }
    Ok(None)
}

/// B13: the target LSN (not yet snapped to a CPL) for `to`.
fn target_lsn(
    to: RestorePoint,
    points: &[ManifestPoint],
    latest: &ManifestPoint,
) -> Result<Lsn, BackupError> {
    match to {
        RestorePoint::Latest => Ok(latest.vdl),
        RestorePoint::Vdl(lsn) => Ok(lsn.min(latest.vdl)),
        RestorePoint::Time(time_ms) => {
            let point = points
                .iter()
                .filter(|p| p.time_ms <= time_ms)
                .max_by_key(|p| p.vdl)
                .ok_or_else(|| {
                    BackupError::NoPoint(format!(
                        "no manifest point at or before {time_ms} ms (the first is at {} ms)",
                        points[0].time_ms
                    ))
                })?;
            if point.vdl > latest.vdl {
                return Err(BackupError::NoPoint(format!(
                    "the point at {} ms (VDL {}) is not fully staged yet; the latest \
                     restorable point is VDL {} at {} ms",
                    point.time_ms, point.vdl.0, latest.vdl.0, latest.time_ms
                )));
            }
            Ok(point.vdl)
        }
    }
}

/// B13–B16: reads and verifies what restoring at `to` needs and builds every page.
pub fn plan(target: &BackupTarget, to: RestorePoint) -> Result<RestorePlan, BackupError> {
    let points = manifest_points(target)?;
    let chains = staged_chains(target, &points)?;
    let latest = latest_restorable(&points, &chains).ok_or_else(|| {
        BackupError::NoPoint("no manifest point is fully staged yet (B14)".into())
    })?;
    let wanted = target_lsn(to, &points, latest)?;
    let mut records: BTreeMap<PgId, BTreeMap<Lsn, RedoRecord>> = BTreeMap::new();
    let mut objects = 0;
    for (&pg, (names, _)) in &chains {
        let held = records.entry(pg).or_default();
        for name in names.iter().filter(|n| n.from < wanted) {
            read_object(target, name, wanted, held)?;
            objects += 1;
        }
    }
    // B13: the point is a VDL, the highest CPL at or below what was asked.
    let point = records
        .values()
        .flat_map(|held| held.values())
        .filter(|r| r.cpl && r.lsn <= wanted)
        .map(|r| r.lsn)
        .max()
        .unwrap_or(Lsn::ZERO);
    for held in records.values_mut() {
        held.retain(|&lsn, _| lsn <= point);
    }
    check_chains(&records, points.iter().find(|p| p.vdl == point))?;
    let count = records.values().map(BTreeMap::len).sum();
    let pages = build_pages(&records, point)?;
    Ok(RestorePlan {
        point,
        latest: latest.vdl,
        pg_pages: latest.pg_pages,
        pages,
        objects,
        records: count,
    })
}

/// B16: one object, verified, its records at or below `wanted` merged into `held`; a
/// record two objects both hold must be byte-identical in both.
fn read_object(
    target: &BackupTarget,
    name: &RedoObjectName,
    wanted: Lsn,
    held: &mut BTreeMap<Lsn, RedoRecord>,
) -> Result<(), BackupError> {
    let object = name.name();
    let bytes = target.get(&object)?;
    let decoded = decode_redo_object(name, &bytes).map_err(|reason| BackupError::Damaged {
        object: object.clone(),
        reason,
    })?;
    for record in decoded.into_iter().filter(|r| r.lsn <= wanted) {
        if let Some(earlier) = held.get(&record.lsn) {
            if *earlier != record {
                return Err(BackupError::Damaged {
                    object,
                    reason: format!("record {} differs from another object's", record.lsn.0),
                });
            }
            continue;
        }
        held.insert(record.lsn, record);
    }
    Ok(())
}

/// B16: each PG's records chain from 0 along `prev_lsn_pg`; at a manifest point, the last
/// one is the PG's last LSN the point names.
fn check_chains(
    records: &BTreeMap<PgId, BTreeMap<Lsn, RedoRecord>>,
    point: Option<&ManifestPoint>,
) -> Result<(), BackupError> {
    for (&pg, held) in records {
        let mut previous = Lsn::ZERO;
        for record in held.values() {
            if record.prev_lsn_pg != previous {
                return Err(BackupError::Damaged {
                    object: super::format::redo_dir(pg),
                    reason: format!(
                        "record {} follows {}, but the staged record before it is {}",
                        record.lsn.0, record.prev_lsn_pg.0, previous.0
                    ),
                });
            }
            previous = record.lsn;
        }
        if let Some(point) = point {
            let named = point.pg_last.get(&pg).copied().unwrap_or(Lsn::ZERO);
            if named != previous {
                return Err(BackupError::Damaged {
                    object: point.name(),
                    reason: format!(
                        "pg{} ends at {} in the store, the manifest says {}",
                        pg.0, previous.0, named.0
                    ),
                });
            }
        }
    }
    Ok(())
}

/// B15: every page as of `point`, its records applied in LSN order along `prev_lsn_page`.
fn build_pages(
    records: &BTreeMap<PgId, BTreeMap<Lsn, RedoRecord>>,
    point: Lsn,
) -> Result<BTreeMap<PageId, Vec<u8>>, BackupError> {
    let mut by_page: HashMap<PageId, Vec<&RedoRecord>> = HashMap::new();
    for record in records.values().flat_map(|held| held.values()) {
        by_page.entry(record.page).or_default().push(record);
    }
    let zeros = vec![0u8; PAGE_BYTES];
    let mut pages = BTreeMap::new();
    for (page, mut chain) in by_page {
        chain.sort_by_key(|r| r.lsn);
        let (image, _) =
            materialize(&zeros, Lsn::ZERO, chain, point).map_err(|e| BackupError::Damaged {
                object: format!("redo of {page}"),
                reason: e.to_string(),
            })?;
        pages.insert(page, image);
    }
    Ok(pages)
}

/// B15: writes `plan` as a new volume (new ids, epoch 1) in a folder beside `into`, then
/// renames it to `into`: a failed restore leaves nothing under `into`.
fn write_volume(plan: &RestorePlan, into: &Path) -> Result<(), BackupError> {
    let parent = match into.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = into
        .file_name()
        .ok_or_else(|| into_error(into, "has no folder name"))?;
    let building = parent.join(format!(
        ".{}.restoring-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    let result = build_in(plan, &building).and_then(|()| {
        std::fs::rename(&building, into).map_err(|e| into_error(into, e.to_string()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    result
}

fn build_in(plan: &RestorePlan, dir: &Path) -> Result<(), BackupError> {
    let fail = |reason: String| into_error(dir, reason);
    files::create_private_dir(dir).map_err(|e| fail(e.to_string()))?;
    let ports = free_ports().map_err(|e| fail(e.to_string()))?;
    let secret: String = (0..SECRET_RANDOM_BYTES)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    // I1: a new config is a new volume (fresh volume id); the source's geometry.
    let text = six_node_toml("restored", &secret, plan.pg_pages, &ports);
    files::write_private_file(&dir.join(CONFIG_FILE), text.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let cluster = EmbeddedCluster::start(dir).map_err(|e| fail(e.to_string()))?;
    let written = write_pages(plan, &cluster);
    cluster.stop();
    written.map_err(fail)
}

fn write_pages(plan: &RestorePlan, cluster: &EmbeddedCluster) -> Result<(), String> {
    let writer = Writer::open(cluster.config().clone(), WriterOptions::default())
        .map_err(|e| e.to_string())?;
    let pages: Vec<(PageId, Vec<u8>)> = plan
        .pages
        .iter()
        .filter(|(_, image)| image.iter().any(|&b| b != 0))
        .map(|(&page, image)| (page, image.clone()))
        .collect();
    for chunk in pages.chunks(RESTORE_PAGES_PER_MTR) {
        writer
            .commit_pages(chunk.to_vec())
            .map_err(|e| e.to_string())?;
    }
    writer.close();
    Ok(())
}
