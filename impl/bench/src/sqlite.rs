//! Stock SQLite on a local file: the baselines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::BenchError;
use crate::workload;

/// One baseline configuration.
#[derive(Clone, Copy, Debug)]
pub struct SqliteMode {
    pub name: &'static str,
    pub journal_mode: &'static str,
    pub synchronous: &'static str,
}

pub const BASELINES: [SqliteMode; 3] = [
    SqliteMode {
        name: "sqlite wal full",
        journal_mode: "WAL",
        synchronous: "FULL",
    },
    SqliteMode {
        name: "sqlite wal normal",
        journal_mode: "WAL",
        synchronous: "NORMAL",
    },
    SqliteMode {
        name: "sqlite rollback full",
        journal_mode: "DELETE",
        synchronous: "FULL",
    },
];

pub struct SqliteDb {
    pub path: PathBuf,
    pub mode: SqliteMode,
}

impl SqliteDb {
    /// A fresh database under `dir` with the benchmark table of `rows` rows.
    pub fn create(dir: &Path, mode: SqliteMode, rows: u64) -> Result<SqliteDb, BenchError> {
        Self::create_named(dir, mode, rows, "")
    }

    /// As [`SqliteDb::create`], a file of its own for each `suffix`.
    pub fn create_named(
        dir: &Path,
        mode: SqliteMode,
        rows: u64,
        suffix: &str,
    ) -> Result<SqliteDb, BenchError> {
        let path = dir.join(format!("{}{suffix}.db", mode.name.replace(' ', "-")));
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let db = SqliteDb { path, mode };
        let connection = db.connect()?;
        workload::setup(&connection, rows)?;
        if mode.journal_mode == "WAL" {
            connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        }
        Ok(db)
    }

    pub fn connect(&self) -> Result<Connection, BenchError> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        let _: String = connection.query_row(
            &format!("PRAGMA journal_mode={}", self.mode.journal_mode),
            [],
            |row| row.get(0),
        )?;
        connection.execute_batch(&format!("PRAGMA synchronous={}", self.mode.synchronous))?;
        Ok(connection)
    }

    /// Bytes of the database file and its WAL.
    pub fn file_bytes(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", self.path.display())).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// WAL bytes per commit of the workload (WAL modes only): autocheckpoint off, N commits,
    /// the WAL's size divided by N.
    pub fn wal_bytes_per_commit(&self, rows: u64, commits: u64) -> Result<f64, BenchError> {
        let connection = self.connect()?;
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint=0")?;
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        // One connection with checkpoints off: the WAL only grows, by what the commits wrote.
        let done = workload::run_commits_on(&connection, rows, commits)?;
        let after = std::fs::metadata(&wal).map_err(BenchError::io(&wal))?.len();
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok((after.saturating_sub(before)) as f64 / done.max(1) as f64)
    }

    /// SQLite's recovery of a WAL of about `backlog_bytes`: the files are copied while the
    /// WAL is full (no checkpoint), and the copy is opened and queried.
    pub fn wal_recovery_time(
        &self,
        scratch: &Path,
        rows: u64,
        backlog_bytes: u64,
    ) -> Result<Duration, BenchError> {
        let connection = self.connect()?;
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint=0")?;
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        let mut next = 0u64;
        while std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) < backlog_bytes {
            connection.execute_batch("BEGIN")?;
            for _ in 0..256 {
                connection.execute(
                    "UPDATE accounts SET balance = balance + 1 WHERE id = ?1",
                    [((next * 7919) % rows) as i64],
                )?;
                next += 1;
            }
            connection.execute_batch("COMMIT")?;
        }
        let copy = scratch.join("recovering.db");
        for suffix in ["", "-wal"] {
            let from = format!("{}{suffix}", self.path.display());
            let to = format!("{}{suffix}", copy.display());
            std::fs::copy(&from, &to).map_err(BenchError::io(Path::new(&from)))?;
        }
        let _ = std::fs::remove_file(format!("{}-shm", copy.display()));
        let started = Instant::now();
        let recovered = Connection::open(&copy)?;
        let _: i64 = recovered.query_row("SELECT count(*) FROM accounts", [], |row| row.get(0))?;
        let elapsed = started.elapsed();
        drop(recovered);
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
        }
        Ok(elapsed)
    }
}
