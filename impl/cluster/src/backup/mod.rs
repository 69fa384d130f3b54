//! Continuous backup to object storage and point-in-time restore (spec/backup.md §2–§4).
//!
//! - [`BackupTarget`]: the object store behind a `backup = "URL"` (B20), with blocking
//!   calls over the async `object_store` crate;
//! - [`format`]: the bytes of staged redo objects (B6) and manifest points (B9), and their
//!   checks (B16);
//! - [`stager`]: what a storage node's staging thread does (B8, B10, B11);
//! - [`manifest`]: the writer's manifest points (B9);
//! - [`restore`]: choosing a restore point and building a new volume from the store
//!   (B13–B16).

pub mod format;
pub mod manifest;
pub mod restore;
pub mod stager;

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sixfold_core::{Lsn, PgId};

pub use format::{ManifestPoint, RedoObjectName};
pub use restore::{RestorePoint, RestoreSummary, latest_restorable_point, restore};
pub use stager::Stager;

/// Why a backup or restore step failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup target {url:?}: {reason} (B20)")]
    Target { url: String, reason: String },
    #[error("backup store: {object}: {source}")]
    Store {
        object: String,
        source: object_store::Error,
    },
    #[error("object {object} is missing from the backup (B16)")]
    Missing { object: String },
    #[error("object {object} is damaged: {reason} (B16)")]
    Damaged { object: String, reason: String },
    #[error("no restore point: {0} (B13)")]
    NoPoint(String),
    #[error("restore into {path}: {reason}")]
    Into { path: String, reason: String },
    #[error("cannot start the tokio runtime of the backup target: {0}")]
    Runtime(std::io::Error),
}

/// B20: a backup target URL opened with the `object_store` crate; calls block the thread.
pub struct BackupTarget {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for BackupTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupTarget({})", self.url)
    }
}

impl BackupTarget {
    /// B20: opens `url` (`file:///path` is a local folder, which must exist). A missing
    /// folder or an unknown scheme is an error now, not a silent no-op later.
    pub fn open(url: &str) -> Result<BackupTarget, BackupError> {
        let target_error = |reason: String| BackupError::Target {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| target_error(e.to_string()))?;
        if parsed.scheme() == "file" {
            let path = parsed
                .to_file_path()
                .map_err(|()| target_error("not a local path".into()))?;
            if !path.is_dir() {
                return Err(target_error(format!(
                    "folder {} does not exist",
                    path.display()
                )));
            }
        }
        let (store, prefix) =
            object_store::parse_url(&parsed).map_err(|e| target_error(e.to_string()))?;
        Self::with_store(url, Arc::from(store), prefix)
    }

    /// A target over any object store (tests wrap one to inject faults).
    pub fn with_store(
        url: &str,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    ) -> Result<BackupTarget, BackupError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BackupError::Runtime)?;
        Ok(BackupTarget {
            url: url.to_string(),
            store,
            prefix,
            runtime,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> ObjectPath {
        name.split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// B16: one put under the final name: an upload that fails leaves no object.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        let path = self.path(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|source| BackupError::Store {
                object: name.to_string(),
                source,
            })
    }

    /// B9: a put only if no object has the name yet; `false` if one had (kept as it was).
    pub fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool, BackupError> {
        let path = self.path(name);
        let options = PutOptions::from(PutMode::Create);
        let put = self.store.put_opts(&path, PutPayload::from(bytes), options);
        match self.runtime.block_on(put) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(BackupError::Store {
                object: name.to_string(),
                source,
            }),
        }
    }

    /// The object's bytes; [`BackupError::Missing`] if there is none.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, BackupError> {
        let path = self.path(name);
        let result = self.runtime.block_on(async {
            let got = self.store.get(&path).await?;
            got.bytes().await
        });
        match result {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(object_store::Error::NotFound { .. }) => Err(BackupError::Missing {
                object: name.to_string(),
            }),
            Err(source) => Err(BackupError::Store {
                object: name.to_string(),
                source,
            }),
        }
    }

    /// Names (relative to the target) of every object under `dir`, sorted.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, BackupError> {
        let path = self.path(dir);
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(|source| BackupError::Store {
                object: dir.to_string(),
                source,
            })?;
        let prefix = self.prefix.as_ref();
        let mut names: Vec<String> = metas
            .into_iter()
            .map(|meta| {
                let full = meta.location.as_ref();
                full.strip_prefix(prefix)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// B6: the redo objects of `pg` in the store, by name, in `from` order.
    pub fn redo_objects(&self, pg: PgId) -> Result<Vec<RedoObjectName>, BackupError> {
        let mut objects: Vec<RedoObjectName> = self
            .list(&format::redo_dir(pg))?
            .iter()
            .filter_map(|name| RedoObjectName::parse(name))
            .collect();
        objects.sort_by_key(|o| (o.from, o.to));
        Ok(objects)
    }

    /// B6: every PG with a redo object in the store.
    pub fn staged_pgs(&self) -> Result<Vec<PgId>, BackupError> {
        let mut pgs: Vec<PgId> = self
            .list("redo")?
            .iter()
            .filter_map(|name| RedoObjectName::parse(name).map(|o| o.pg))
            .collect();
        pgs.dedup();
        Ok(pgs)
    }
}

/// B10, B14: a PG's staged bound from its objects' names alone: the highest `to` reached
/// by chaining from 0 (each `from` at or below the bound so far). The first gap found is
/// returned with it: objects above a gap are unreachable (one is missing, B16).
pub fn chained_bound(objects: &[RedoObjectName]) -> (Lsn, Option<(Lsn, Lsn)>) {
    let mut bound = Lsn::ZERO;
    for object in objects {
        if object.from > bound {
            return (bound, Some((bound, object.from)));
        }
        bound = bound.max(object.to);
    }
    (bound, None)
}
