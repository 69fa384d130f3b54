//! Running one request's statements as one SQLite transaction on a pooled connection
//! (H5–H10). Everything here blocks: the HTTP layer calls it on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, ffi};
use serde_json::Value as Json;
use sixfold_sql::{Catalog, CatalogError, DatabaseInfo, PageVolume, open_connection};

use crate::metrics::{CommitNote, commit_note, reset_commit_note};
use crate::values::to_json;

/// How long a statement waits for another connection's lock before SQLITE_BUSY.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per database; more are closed when returned.
const IDLE_PER_DATABASE: usize = 32;

/// One statement of a request and its bound parameters.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Params,
}

/// H3: positional (`?`, `?NNN`) or named (`:name`, `@name`, `$name`) parameters.
#[derive(Debug, Clone)]
pub enum Params {
    Positional(Vec<Value>),
    Named(Vec<(String, Value)>),
}

/// What one statement returned.
#[derive(Debug, serde::Serialize)]
pub struct StatementResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
    pub rows_changed: u64,
    pub last_insert_rowid: i64,
}

/// What a whole request returned.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub results: Vec<StatementResult>,
    /// H9: the LSN of the transaction's commit, durable (VDL ≥ it) when this is sent;
    /// `None` when the transaction wrote no page.
    pub commit_lsn: Option<u64>,
}

/// Why a request failed; [`crate::http`] turns each into a status code (H11).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no database named {0:?}")]
    NoSuchDatabase(String),
    #[error("{0}")]
    BadRequest(String),
    /// H7: SQLite refused a statement (or the commit): rolled back, nothing written.
    #[error("{message}")]
    Sql {
        /// Index of the failing statement; `None` for BEGIN or COMMIT.
        statement: Option<usize>,
        code: i32,
        message: String,
    },
    /// H10: the commit was sent, and whether it became durable is unknown.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("{0}")]
    Internal(String),
}

/// Where a request is, as the HTTP layer sees it when its deadline passes (H10).
pub const STAGE_READING: u8 = 0;
pub const STAGE_WRITING: u8 = 1;

/// The volume's databases and the idle connections to each.
pub struct Databases {
    volume: Arc<dyn PageVolume>,
    idle: Mutex<HashMap<String, Vec<Connection>>>,
    /// Catalog changes one at a time (creates race each other otherwise).
    catalog_lock: Mutex<()>,
}

impl Databases {
    pub fn new(volume: Arc<dyn PageVolume>) -> Databases {
        Databases {
            volume,
            idle: Mutex::new(HashMap::new()),
            catalog_lock: Mutex::new(()),
        }
    }

    pub fn list(&self) -> Result<Vec<DatabaseInfo>, ExecError> {
        Catalog::new(self.volume.clone())
            .list_databases()
            .map_err(catalog_error)
    }

    /// H12: creates database `name`; `Ok(false)` if it already exists.
    pub fn create(&self, name: &str) -> Result<bool, ExecError> {
        let _one_at_a_time = self.catalog_lock.lock();
        match Catalog::new(self.volume.clone()).create_database(name) {
            Ok(_) => Ok(true),
            Err(CatalogError::AlreadyExists(_)) => Ok(false),
            Err(error) => Err(catalog_error(error)),
        }
    }

    pub(crate) fn take(&self, name: &str) -> Result<Connection, ExecError> {
        if let Some(conn) = self.idle.lock().get_mut(name).and_then(Vec::pop) {
            return Ok(conn);
        }
        let conn = open_connection(self.volume.clone(), name).map_err(|error| {
            match error.sqlite_error_code() {
                Some(ErrorCode::CannotOpen) if error.to_string().contains("no database") => {
                    ExecError::NoSuchDatabase(name.to_string())
                }
                _ => ExecError::Internal(format!("opening database {name:?}: {error}")),
            }
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|error| ExecError::Internal(error.to_string()))?;
        Ok(conn)
    }

    pub(crate) fn give_back(&self, name: &str, conn: Connection) {
        // A connection left inside a transaction (a failed ROLLBACK) is closed instead.
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.idle.lock();
        let list = idle.entry(name.to_string()).or_default();
        if list.len() < IDLE_PER_DATABASE {
            list.push(conn);
        }
    }

    /// H5: runs `statements` on database `name` as one transaction. `stage` tells the
    /// caller whether a write may have begun; `interrupt` holds the connection's
    /// interrupt handle while the request runs (the caller interrupts a read whose
    /// deadline passed), and is emptied under its lock before the connection is reused.
    pub fn execute(
        &self,
        name: &str,
        statements: &[Statement],
        stage: &AtomicU8,
        interrupt: &Mutex<Option<rusqlite::InterruptHandle>>,
    ) -> Result<Outcome, ExecError> {
        let conn = self.take(name)?;
        *interrupt.lock() = Some(conn.get_interrupt_handle());
        let result = run_transaction(&conn, statements, stage);
        interrupt.lock().take();
        self.give_back(name, conn);
        result
    }
}

fn catalog_error(error: CatalogError) -> ExecError {
    match error {
        CatalogError::InvalidName { .. } | CatalogError::Full => {
            ExecError::BadRequest(error.to_string())
        }
        CatalogError::NotFound(name) => ExecError::NoSuchDatabase(name),
        other => ExecError::Internal(other.to_string()),
    }
}

/// H6: the first keyword of a statement that ends or starts a transaction: a request is
/// one transaction, so these are refused before anything runs.
fn transaction_control(sql: &str) -> Option<String> {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(word.as_str(), "BEGIN" | "COMMIT" | "END" | "ROLLBACK").then_some(word)
}

/// Whether every statement prepares now and only reads: then the transaction starts
/// DEFERRED and never blocks writers; otherwise IMMEDIATE, so two writers never deadlock
/// upgrading their locks.
fn all_read_only(conn: &Connection, statements: &[Statement]) -> bool {
    statements.iter().all(|statement| {
        conn.prepare_cached(&statement.sql)
            .is_ok_and(|prepared| prepared.readonly())
    })
}

fn run_transaction(
    conn: &Connection,
    statements: &[Statement],
    stage: &AtomicU8,
) -> Result<Outcome, ExecError> {
    for (index, statement) in statements.iter().enumerate() {
        if let Some(word) = transaction_control(&statement.sql) {
            return Err(ExecError::BadRequest(format!(
                "statement {index}: {word} is refused: each request is one transaction \
                 (send the statements together in one request)"
            )));
        }
    }
    reset_commit_note();
    let begin = if all_read_only(conn, statements) {
        "BEGIN DEFERRED"
    } else {
        stage.store(STAGE_WRITING, Ordering::SeqCst);
        "BEGIN IMMEDIATE"
    };
    conn.execute_batch(begin)
        .map_err(|error| sql_error(conn, None, error))?;
    let mut results = Vec::with_capacity(statements.len());
    for (index, statement) in statements.iter().enumerate() {
        match run_statement(conn, statement) {
            Ok(result) => results.push(result),
            Err(error) => {
                let error = sql_error(conn, Some(index), error);
                rollback(conn);
                return Err(error);
            }
        }
    }
    stage.store(STAGE_WRITING, Ordering::SeqCst);
    match conn.execute_batch("COMMIT") {
        Ok(()) => match commit_note() {
            CommitNote::Durable(lsn) => Ok(Outcome {
                results,
                commit_lsn: Some(lsn),
            }),
            CommitNote::Nothing => Ok(Outcome {
                results,
                commit_lsn: None,
            }),
            CommitNote::OutcomeUnknown => Err(ExecError::OutcomeUnknown(
                "a commit attempt of this transaction ended with its outcome unknown".into(),
            )),
            CommitNote::Failed => Err(ExecError::Internal(
                "SQLite reported a commit the volume refused".into(),
            )),
        },
        Err(error) => {
            let note = commit_note();
            let error = sql_error(conn, None, error);
            rollback(conn);
            match note {
                CommitNote::OutcomeUnknown => Err(ExecError::OutcomeUnknown(error.to_string())),
                _ => Err(error),
            }
        }
    }
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(error) = conn.execute_batch("ROLLBACK")
    {
        tracing::warn!(%error, "rollback after a failed request");
    }
}

fn run_statement(
    conn: &Connection,
    statement: &Statement,
) -> Result<StatementResult, rusqlite::Error> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    match &statement.params {
        Params::Positional(values) => {
            if values.len() != prepared.parameter_count() {
                let wanted = prepared.parameter_count();
                return Err(rusqlite::Error::InvalidParameterCount(values.len(), wanted));
            }
            for (at, value) in values.iter().enumerate() {
                prepared.raw_bind_parameter(at + 1, value)?;
            }
        }
        Params::Named(values) => {
            for (name, value) in values {
                let Some(at) = prepared.parameter_index(name)? else {
                    return Err(rusqlite::Error::InvalidParameterName(name.clone()));
                };
                prepared.raw_bind_parameter(at, value)?;
            }
        }
    }
    let columns: Vec<String> = prepared.column_names().map(str::to_string).collect();
    let changes_before = conn.total_changes();
    let mut rows = Vec::new();
    {
        let mut cursor = prepared.raw_query();
        while let Some(row) = cursor.next()? {
            let mut values = Vec::with_capacity(columns.len());
            for at in 0..columns.len() {
                values.push(to_json(row.get_ref(at)?));
            }
            rows.push(values);
        }
    }
    let rows_changed = if prepared.readonly() {
        0
    } else {
        conn.total_changes().saturating_sub(changes_before)
    };
    Ok(StatementResult {
        columns,
        rows,
        rows_changed,
        last_insert_rowid: conn.last_insert_rowid(),
    })
}

/// H7: SQLite's extended result code and message; a failure of the volume adds the
/// VFS's own text (SQLite only says "disk I/O error").
fn sql_error(conn: &Connection, statement: Option<usize>, error: rusqlite::Error) -> ExecError {
    let (code, mut message) = match &error {
        rusqlite::Error::SqliteFailure(failure, text) => (
            failure.extended_code,
            text.clone().unwrap_or_else(|| failure.to_string()),
        ),
        rusqlite::Error::InvalidParameterName(name) => {
            (ffi::SQLITE_RANGE, format!("no parameter named {name}"))
        }
        rusqlite::Error::InvalidParameterCount(given, wanted) => (
            ffi::SQLITE_RANGE,
            format!("{given} parameters given, the statement has {wanted}"),
        ),
        rusqlite::Error::MultipleStatement => (
            ffi::SQLITE_ERROR,
            "one statement per entry: this SQL holds more than one".into(),
        ),
        other => (ffi::SQLITE_ERROR, other.to_string()),
    };
    if code & 0xff == ffi::SQLITE_IOERR
        && let Some(vfs) = sixfold_sql::last_vfs_error(conn)
    {
        message = format!("{message}: {vfs}");
    }
    ExecError::Sql {
        statement,
        code,
        message,
    }
}

/// The name of an SQLite primary result code (`SQLITE_CONSTRAINT` for 2067).
pub fn code_name(code: i32) -> &'static str {
    match code & 0xff {
        ffi::SQLITE_ERROR => "SQLITE_ERROR",
        ffi::SQLITE_INTERNAL => "SQLITE_INTERNAL",
        ffi::SQLITE_PERM => "SQLITE_PERM",
        ffi::SQLITE_ABORT => "SQLITE_ABORT",
        ffi::SQLITE_BUSY => "SQLITE_BUSY",
        ffi::SQLITE_LOCKED => "SQLITE_LOCKED",
        ffi::SQLITE_NOMEM => "SQLITE_NOMEM",
        ffi::SQLITE_READONLY => "SQLITE_READONLY",
        ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        ffi::SQLITE_IOERR => "SQLITE_IOERR",
        ffi::SQLITE_CORRUPT => "SQLITE_CORRUPT",
        ffi::SQLITE_NOTFOUND => "SQLITE_NOTFOUND",
        ffi::SQLITE_FULL => "SQLITE_FULL",
        ffi::SQLITE_CANTOPEN => "SQLITE_CANTOPEN",
        ffi::SQLITE_PROTOCOL => "SQLITE_PROTOCOL",
        ffi::SQLITE_SCHEMA => "SQLITE_SCHEMA",
        ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        ffi::SQLITE_MISUSE => "SQLITE_MISUSE",
        ffi::SQLITE_AUTH => "SQLITE_AUTH",
        ffi::SQLITE_RANGE => "SQLITE_RANGE",
        ffi::SQLITE_NOTADB => "SQLITE_NOTADB",
        _ => "SQLITE_UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, TrackedVolume};
    use sixfold_sql::{MemVolume, PageWrite, VolumeError};
    use std::sync::atomic::AtomicBool;

    /// A volume whose commits can be made to end as a fenced writer's do: sent, and
    /// then nobody knows (VolumeError::OutcomeUnknown), or refused before sending.
    struct Faulty {
        inner: MemVolume,
        unknown: AtomicBool,
    }

    impl PageVolume for Faulty {
        fn begin_read(&self) -> Result<u64, VolumeError> {
            self.inner.begin_read()
        }
        fn end_read(&self, read_point: u64) {
            self.inner.end_read(read_point)
        }
        fn read_page(&self, db: u32, page: u32, at: u64) -> Result<Option<Vec<u8>>, VolumeError> {
            self.inner.read_page(db, page, at)
        }
        fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
            if self.unknown.load(Ordering::SeqCst) {
                return Err(VolumeError::OutcomeUnknown(
                    "writer fenced by epoch 9 while commit 77 waited".into(),
                ));
            }
            self.inner.commit(writes)
        }
    }

    fn databases() -> (Arc<Faulty>, Arc<Metrics>, Databases) {
        let faulty = Arc::new(Faulty {
            inner: MemVolume::new(),
            unknown: AtomicBool::new(false),
        });
        let metrics = Arc::new(Metrics::new());
        let tracked: Arc<dyn PageVolume> = Arc::new(TrackedVolume {
            inner: faulty.clone(),
            metrics: metrics.clone(),
        });
        let databases = Databases::new(tracked);
        assert!(databases.create("app").unwrap());
        (faulty, metrics, databases)
    }

    fn run(databases: &Databases, sql: &[&str]) -> Result<Outcome, ExecError> {
        let statements: Vec<Statement> = sql
            .iter()
            .map(|sql| Statement {
                sql: sql.to_string(),
                params: Params::Positional(Vec::new()),
            })
            .collect();
        let interrupt = Mutex::new(None);
        databases.execute(
            "app",
            &statements,
            &AtomicU8::new(STAGE_READING),
            &interrupt,
        )
    }

    #[test]
    fn a_commit_whose_outcome_is_unknown_is_never_a_success() {
        // H10, H9
        let (faulty, metrics, databases) = databases();
        let created = run(&databases, &["CREATE TABLE t(k)"]).unwrap();
        assert!(
            created.commit_lsn.is_some(),
            "a write carries its commit LSN"
        );
        assert!(run(&databases, &["SELECT 1"]).unwrap().commit_lsn.is_none());
        faulty.unknown.store(true, Ordering::SeqCst);
        match run(
            &databases,
            &["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"],
        ) {
            Err(ExecError::OutcomeUnknown(text)) => assert!(text.contains("fenced"), "{text}"),
            other => panic!("expected outcome unknown, got {other:?}"),
        }
        assert!(metrics.outcome_unknown.get() >= 1);
        // The connection went back to the pool usable; the volume took nothing.
        faulty.unknown.store(false, Ordering::SeqCst);
        let rows = run(&databases, &["SELECT count(*) FROM t"]).unwrap();
        assert_eq!(rows.results[0].rows, vec![vec![Json::from(0)]]);
    }

    #[test]
    fn a_commit_refused_before_sending_is_a_plain_error() {
        // H10, H11: nothing was sent, so the outcome is known: not committed.
        let (faulty, metrics, databases) = databases();
        run(&databases, &["CREATE TABLE t(k)"]).unwrap();
        // SQLite tries the batch, then falls back to its journal: both refused.
        faulty.inner.fail_next_commits(2);
        match run(&databases, &["INSERT INTO t VALUES (1)"]) {
            Err(ExecError::Sql {
                statement: None,
                code,
                ..
            }) => {
                assert_eq!(code & 0xff, ffi::SQLITE_IOERR)
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert_eq!(metrics.commit_failures.get(), 2);
        assert_eq!(metrics.outcome_unknown.get(), 0);
        let rows = run(&databases, &["SELECT count(*) FROM t"]).unwrap();
        assert_eq!(rows.results[0].rows, vec![vec![Json::from(0)]]);
    }

    #[test]
    fn transaction_control_statements_are_recognised() {
        // H6
        for sql in ["BEGIN", " begin immediate", "COMMIT;", "end", "rollback"] {
            assert!(transaction_control(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SAVEPOINT a",
            "ROLLBACKX",
            "INSERT INTO begin VALUES(1)",
        ] {
            assert!(transaction_control(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn primary_code_names_come_from_extended_codes() {
        // H7
        assert_eq!(
            code_name(ffi::SQLITE_CONSTRAINT_UNIQUE),
            "SQLITE_CONSTRAINT"
        );
        assert_eq!(code_name(ffi::SQLITE_IOERR_WRITE), "SQLITE_IOERR");
        assert_eq!(code_name(ffi::SQLITE_ERROR), "SQLITE_ERROR");
    }
}
