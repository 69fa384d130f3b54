//! One PostgreSQL client session after startup (H25–H29): the simple and extended query
//! protocols, transaction blocks and their status, prepared statements and portals.
//! Decoded messages in, backend messages out; SQL runs on a pooled SQLite connection
//! that the session holds only while a transaction block is open. Everything here
//! blocks: the network shell ([`super`]) calls it on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{Connection, InterruptHandle, ffi};

use super::codec::{Backend, FieldDescription, Frontend, Notice};
use super::types;
use crate::exec::{Databases, ExecError, STAGE_READING, STAGE_WRITING, code_name};
use crate::metrics::{CommitNote, Metrics, commit_note, reset_commit_note};

/// What `ParameterStatus` reports at startup and `SHOW` answers (H21).
pub const PARAMETERS: [(&str, &str); 9] = [
    ("server_version", "16.0 (sixfold, SQLite)"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("IntervalStyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"),
    ("is_superuser", "off"),
];

/// H26: where the session is: outside a transaction block, inside one, or inside one
/// that failed (every statement refused until ROLLBACK). `Implicit` is the transaction
/// wrapped around a multi-statement simple query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Idle,
    Open,
    Implicit,
    Failed,
}

/// A statement that BEGINs, ends or marks a transaction, or that this server answers
/// itself; everything else is SQLite's.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Begin(&'static str),
    Commit,
    Rollback,
    Savepoint(&'static str),
    Set,
    Show(String),
    /// `DEALLOCATE [PREPARE] name | ALL` (drivers send it to drop prepared statements).
    Deallocate(Option<String>),
    Sql,
}

/// H26: the kind of `sql`, from its leading keywords (PostgreSQL's spellings included:
/// `START TRANSACTION`, `ABORT`, `BEGIN ... READ ONLY`).
fn classify(sql: &str) -> Kind {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_ascii_uppercase)
        .collect();
    let word = |at: usize| words.get(at).map_or("", String::as_str);
    let has = |w: &str| words.iter().any(|x| x == w);
    match word(0) {
        "BEGIN" | "START" if word(0) == "BEGIN" || word(1) == "TRANSACTION" => {
            Kind::Begin(if has("DEFERRED") || (has("READ") && has("ONLY")) {
                "BEGIN DEFERRED"
            } else if has("EXCLUSIVE") {
                "BEGIN EXCLUSIVE"
            } else {
                "BEGIN IMMEDIATE"
            })
        }
        "COMMIT" | "END" => Kind::Commit,
        "ROLLBACK" | "ABORT" if has("TO") => Kind::Savepoint("ROLLBACK"),
        "ROLLBACK" | "ABORT" => Kind::Rollback,
        "SAVEPOINT" => Kind::Savepoint("SAVEPOINT"),
        "RELEASE" => Kind::Savepoint("RELEASE"),
        "SET" => Kind::Set,
        "DEALLOCATE" => {
            let name = sql
                .split_whitespace()
                .map(|w| w.trim_end_matches(';'))
                .filter(|w| !w.eq_ignore_ascii_case("PREPARE"))
                .nth(1)
                .unwrap_or_default();
            Kind::Deallocate(
                (!name.eq_ignore_ascii_case("ALL")).then(|| name.trim_matches('"').to_string()),
            )
        }
        "SHOW" if words.len() == 2 => Kind::Show(
            sql.split_whitespace()
                .nth(1)
                .map_or(String::new(), |name| name.trim_end_matches(';').to_string()),
        ),
        _ => Kind::Sql,
    }
}

/// H27: the command tag PostgreSQL would send for a statement that returned `rows` rows
/// and changed `changes`.
fn command_tag(sql: &str, has_columns: bool, rows: usize, changes: u64) -> String {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase);
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "INSERT" | "REPLACE" => format!("INSERT 0 {changes}"),
        "UPDATE" | "DELETE" => format!("{first} {changes}"),
        "CREATE" | "DROP" => {
            let object = words
                .find(|w| !matches!(w.as_str(), "TEMP" | "TEMPORARY" | "UNIQUE" | "VIRTUAL"))
                .unwrap_or_default();
            format!("{first} {object}")
        }
        "ALTER" => "ALTER TABLE".into(),
        _ if has_columns => format!("SELECT {rows}"),
        _ => first,
    }
}

/// Splits a simple query into its statements with SQLite's own notion of a complete
/// statement (`sqlite3_complete`), so a `;` inside a string, a comment or a trigger body
/// does not split.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (at, _) in sql.match_indices(';') {
        let candidate = &sql[start..=at];
        if is_complete(candidate) {
            pieces.push(candidate);
            start = at + 1;
        }
    }
    pieces.push(&sql[start..]);
    pieces
        .into_iter()
        .map(|piece| piece.trim().trim_end_matches(';').trim())
        .filter(|piece| !piece.is_empty())
        .collect()
}

fn is_complete(sql: &str) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: `text` is a NUL-terminated string that outlives the call.
    unsafe { ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

/// A statement a Parse message prepared (H28).
struct Prepared {
    sql: String,
    kind_is_sql: bool,
    param_types: Vec<u32>,
}

/// A bound statement (H28): its result is computed when first described or executed,
/// and Execute sends it in pieces of `max_rows`.
struct Portal {
    sql: String,
    params: Vec<Value>,
    result_formats: Vec<i16>,
    result: Option<Done>,
    sent: usize,
}

/// What one statement returned.
struct Done {
    names: Vec<String>,
    oids: Vec<u32>,
    rows: Vec<Vec<Value>>,
    tag: String,
    notices: Vec<Notice>,
}

impl Done {
    fn tag(tag: &str) -> Done {
        Done {
            names: Vec::new(),
            oids: Vec::new(),
            rows: Vec::new(),
            tag: tag.into(),
            notices: Vec::new(),
        }
    }

    fn fields(&self, formats: &[i16]) -> Vec<FieldDescription> {
        self.names
            .iter()
            .zip(&self.oids)
            .enumerate()
            .map(|(at, (name, &oid))| FieldDescription {
                name: name.clone(),
                type_oid: oid,
                type_size: types::type_size(oid),
                format: format_of(formats, at),
            })
            .collect()
    }

    fn data_row(&self, row: &[Value], formats: &[i16]) -> Backend {
        Backend::DataRow(
            row.iter()
                .zip(&self.oids)
                .enumerate()
                .map(|(at, (value, &oid))| match format_of(formats, at) {
                    1 => types::binary_value(value, oid),
                    _ => types::text_value(value),
                })
                .collect(),
        )
    }
}

/// The format of item `at` given a Bind's format codes: none (all text), one (all the
/// same), or one each.
fn format_of(formats: &[i16], at: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(at).copied().unwrap_or(0),
    }
}

fn error(code: &'static str, message: impl Into<String>) -> Notice {
    Notice {
        severity: "ERROR",
        code,
        message: message.into(),
        detail: None,
        hint: None,
    }
}

fn warning(code: &'static str, message: &str) -> Notice {
    Notice {
        severity: "WARNING",
        ..error(code, message)
    }
}

/// H23: an SQLite error as an ErrorResponse: the SQLSTATE, SQLite's message, and its
/// result code in the detail.
fn sql_notice(conn: Option<&Connection>, failure: rusqlite::Error) -> Notice {
    let (code, mut message) = match &failure {
        rusqlite::Error::SqliteFailure(failure, text) => (
            failure.extended_code,
            text.clone().unwrap_or_else(|| failure.to_string()),
        ),
        other => (ffi::SQLITE_ERROR, other.to_string()),
    };
    if code & 0xff == ffi::SQLITE_IOERR
        && let Some(vfs) = conn.and_then(sixfold_sql::last_vfs_error)
    {
        message = format!("{message}: {vfs}");
    }
    Notice {
        detail: Some(format!("SQLite result code {code} ({})", code_name(code))),
        ..error(types::sqlstate(code, &message), message)
    }
}

/// H29: a commit whose durability cannot be confirmed.
fn outcome_unknown(text: &str) -> Notice {
    error(
        "08007",
        format!("the commit's outcome is unknown (it may or may not be durable): {text}"),
    )
}

/// One client session.
pub struct PgSession {
    databases: Arc<Databases>,
    metrics: Arc<Metrics>,
    database: String,
    conn: Option<Connection>,
    block: Block,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// H28: after an error in the extended protocol, messages up to Sync are skipped.
    skip_to_sync: bool,
    /// H29: whether the current batch may have begun writing (the shell reads it when
    /// `--commit-wait` passes).
    pub stage: Arc<AtomicU8>,
    /// The running statement's interrupt handle, for `--commit-wait` and CancelRequest.
    pub interrupt: Arc<Mutex<Option<InterruptHandle>>>,
}

impl PgSession {
    /// H21: a session on database `database`; fails if it does not exist.
    pub fn open(
        databases: Arc<Databases>,
        metrics: Arc<Metrics>,
        database: &str,
    ) -> Result<PgSession, ExecError> {
        let conn = databases.take(database)?;
        databases.give_back(database, conn);
        Ok(PgSession {
            databases,
            metrics,
            database: database.to_string(),
            conn: None,
            block: Block::Idle,
            statements: HashMap::new(),
            portals: HashMap::new(),
            skip_to_sync: false,
            stage: Arc::new(AtomicU8::new(STAGE_READING)),
            interrupt: Arc::new(Mutex::new(None)),
        })
    }

    /// H26: the ReadyForQuery status byte.
    pub fn status(&self) -> u8 {
        match self.block {
            Block::Idle => b'I',
            Block::Open | Block::Implicit => b'T',
            Block::Failed => b'E',
        }
    }

    /// Handles one message, appending the answers to `out`; `false` once the client
    /// said Terminate.
    pub fn handle(&mut self, message: Frontend, out: &mut Vec<Backend>) -> bool {
        self.stage.store(STAGE_READING, Ordering::SeqCst);
        if self.skip_to_sync && !matches!(message, Frontend::Sync | Frontend::Terminate) {
            return true;
        }
        let answered = match message {
            Frontend::Query(sql) => {
                self.metrics.pg_queries.inc();
                self.simple_query(&sql, out);
                self.end_of_cycle(out);
                Ok(())
            }
            Frontend::Parse {
                name,
                sql,
                param_types,
            } => self.parse(name, sql, param_types, out),
            Frontend::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            } => self.bind(
                portal,
                &statement,
                &param_formats,
                params,
                result_formats,
                out,
            ),
            Frontend::Describe { portal: true, name } => self.describe_portal(&name, out),
            Frontend::Describe {
                portal: false,
                name,
            } => self.describe_statement(&name, out),
            Frontend::Execute { portal, max_rows } => {
                self.metrics.pg_queries.inc();
                self.execute(&portal, max_rows, out)
            }
            Frontend::Close { portal, name } => {
                if portal {
                    self.portals.remove(&name);
                } else {
                    self.statements.remove(&name);
                }
                out.push(Backend::CloseComplete);
                Ok(())
            }
            Frontend::Sync => {
                self.skip_to_sync = false;
                if self.block == Block::Implicit {
                    // H28: the statements executed since the last Sync commit together.
                    self.block = Block::Idle;
                    if let Err(notice) = self.commit() {
                        out.push(Backend::Error(notice));
                    }
                }
                self.end_of_cycle(out);
                Ok(())
            }
            Frontend::Flush => Ok(()),
            Frontend::Terminate => return false,
            Frontend::Unsupported(kind) => Err(error(
                "0A000",
                format!(
                    "message type {kind:?} is not supported (no COPY, function calls or passwords after startup)"
                ),
            )),
        };
        if let Err(notice) = answered {
            out.push(Backend::Error(notice));
            self.skip_to_sync = true;
        }
        true
    }

    /// The end of a query cycle: ReadyForQuery, and the connection goes back to the
    /// pool when no transaction block holds it.
    fn end_of_cycle(&mut self, out: &mut Vec<Backend>) {
        if self.block == Block::Idle {
            self.portals.clear();
            self.release();
        }
        out.push(Backend::ReadyForQuery(self.status()));
    }

    fn release(&mut self) {
        // Under the lock: a deadline's interrupt never reaches the next user.
        self.interrupt.lock().take();
        if let Some(conn) = self.conn.take() {
            if !conn.is_autocommit()
                && let Err(error) = conn.execute_batch("ROLLBACK")
            {
                tracing::warn!(%error, "rollback of a pg session's open transaction");
            }
            self.databases.give_back(&self.database, conn);
        }
    }

    fn conn(&mut self) -> Result<&Connection, Notice> {
        if self.conn.is_none() {
            let conn = self.databases.take(&self.database).map_err(|failure| {
                error(
                    "58000",
                    format!("opening database {:?}: {failure}", self.database),
                )
            })?;
            *self.interrupt.lock() = Some(conn.get_interrupt_handle());
            self.conn = Some(conn);
        }
        Ok(self.conn.as_ref().expect("set above"))
    }

    /// H25: a Query message: each statement in turn, several as one implicit
    /// transaction unless the string controls transactions itself.
    fn simple_query(&mut self, sql: &str, out: &mut Vec<Backend>) {
        let pieces = split_statements(sql);
        if pieces.is_empty() {
            out.push(Backend::EmptyQueryResponse);
            return;
        }
        let implicit = self.block == Block::Idle
            && pieces.len() > 1
            && pieces.iter().all(|piece| classify(piece) == Kind::Sql);
        if implicit && let Err(notice) = self.begin_implicit(&pieces) {
            out.push(Backend::Error(notice));
            return;
        }
        for piece in &pieces {
            match self.run(piece, &[]) {
                Ok(done) => {
                    out.extend(done.notices.iter().cloned().map(Backend::Notice));
                    if !done.names.is_empty() {
                        out.push(Backend::RowDescription(done.fields(&[])));
                    }
                    out.extend(done.rows.iter().map(|row| done.data_row(row, &[])));
                    out.push(Backend::CommandComplete(done.tag));
                }
                Err(notice) => {
                    out.push(Backend::Error(notice));
                    return;
                }
            }
        }
        if implicit {
            self.block = Block::Idle;
            if let Err(notice) = self.commit() {
                out.push(Backend::Error(notice));
            }
        }
    }

    fn begin_implicit(&mut self, pieces: &[&str]) -> Result<(), Notice> {
        let conn = self.conn()?;
        let read_only = pieces.iter().all(|piece| {
            conn.prepare_cached(piece)
                .is_ok_and(|prepared| prepared.readonly())
        });
        let begin = if read_only {
            "BEGIN DEFERRED"
        } else {
            self.stage.store(STAGE_WRITING, Ordering::SeqCst);
            "BEGIN IMMEDIATE"
        };
        self.exec(begin)?;
        self.block = Block::Implicit;
        Ok(())
    }

    fn exec(&mut self, sql: &str) -> Result<(), Notice> {
        let conn = self.conn()?;
        conn.execute_batch(sql)
            .map_err(|failure| sql_notice(Some(conn), failure))
    }

    /// H26: one statement, by the session's transaction state. A failure inside a block
    /// fails the block; inside the implicit transaction it rolls it back.
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Done, Notice> {
        let result = self.run_in_block(sql, params);
        if result.is_err() {
            match self.block {
                Block::Open => self.block = Block::Failed,
                Block::Implicit => {
                    let _ = self.exec("ROLLBACK");
                    self.block = Block::Idle;
                }
                Block::Idle | Block::Failed => {}
            }
        }
        result
    }

    fn run_in_block(&mut self, sql: &str, params: &[Value]) -> Result<Done, Notice> {
        match (classify(sql), self.block) {
            (Kind::Commit | Kind::Rollback, Block::Failed) => {
                self.block = Block::Idle;
                self.rollback_if_open()
                    .or_else(|_| self.forget_connection())?;
                Ok(Done::tag("ROLLBACK"))
            }
            (Kind::Savepoint("ROLLBACK"), Block::Failed) => {
                self.exec(sql)?;
                self.block = Block::Open;
                Ok(Done::tag("ROLLBACK"))
            }
            (_, Block::Failed) => Err(error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
            (Kind::Begin(_), Block::Implicit) => {
                // As PostgreSQL: BEGIN makes the implicit transaction an explicit block.
                self.block = Block::Open;
                Ok(Done::tag("BEGIN"))
            }
            (Kind::Begin(_), Block::Open) => {
                let mut done = Done::tag("BEGIN");
                done.notices.push(warning(
                    "25001",
                    "there is already a transaction in progress",
                ));
                Ok(done)
            }
            (Kind::Begin(begin), Block::Idle) => {
                self.exec(begin)?;
                self.block = Block::Open;
                Ok(Done::tag("BEGIN"))
            }
            (Kind::Commit | Kind::Rollback, Block::Idle) => {
                let tag = if classify(sql) == Kind::Commit {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                let mut done = Done::tag(tag);
                done.notices
                    .push(warning("25P01", "there is no transaction in progress"));
                Ok(done)
            }
            (Kind::Commit, _) => {
                self.block = Block::Idle;
                self.commit().map(|()| Done::tag("COMMIT"))
            }
            (Kind::Rollback, _) => {
                self.block = Block::Idle;
                self.rollback_if_open()?;
                Ok(Done::tag("ROLLBACK"))
            }
            (Kind::Savepoint(word), Block::Idle) => Err(error(
                "25P01",
                format!("{word} can only be used in transaction blocks"),
            )),
            (Kind::Savepoint(word), _) => {
                self.exec(sql)?;
                Ok(Done::tag(word))
            }
            (Kind::Set, _) => Ok(Done::tag("SET")),
            (Kind::Deallocate(None), _) => {
                self.statements.clear();
                Ok(Done::tag("DEALLOCATE ALL"))
            }
            (Kind::Deallocate(Some(name)), _) => match self.statements.remove(&name) {
                Some(_) => Ok(Done::tag("DEALLOCATE")),
                None => Err(error(
                    "26000",
                    format!("prepared statement {name:?} does not exist"),
                )),
            },
            (Kind::Show(name), _) => show(&name),
            (Kind::Sql, Block::Idle) => self.autocommit(sql, params),
            (Kind::Sql, _) => {
                let conn = self.conn()?;
                statement(conn, sql, params).map_err(|failure| sql_notice(Some(conn), failure))
            }
        }
    }

    /// Rolls back SQLite's transaction, unless SQLite already did (some errors and an
    /// interrupt end it themselves).
    fn rollback_if_open(&mut self) -> Result<(), Notice> {
        match &self.conn {
            Some(conn) if !conn.is_autocommit() => self.exec("ROLLBACK"),
            _ => Ok(()),
        }
    }

    /// A connection whose ROLLBACK failed is closed rather than reused.
    fn forget_connection(&mut self) -> Result<(), Notice> {
        self.interrupt.lock().take();
        self.conn = None;
        Ok(())
    }

    /// H29: COMMIT of the open transaction, answered only once durable.
    fn commit(&mut self) -> Result<(), Notice> {
        self.stage.store(STAGE_WRITING, Ordering::SeqCst);
        reset_commit_note();
        let conn = self.conn()?;
        let result = conn.execute_batch("COMMIT");
        let checked = self.commit_outcome(result);
        if checked.is_err() {
            let _ = self.exec("ROLLBACK");
        }
        checked.map(|_| ())
    }

    /// H29: what the volume said about the commit this thread just made.
    fn commit_outcome<T>(&mut self, result: rusqlite::Result<T>) -> Result<T, Notice> {
        match (result, commit_note()) {
            (_, CommitNote::OutcomeUnknown) => Err(outcome_unknown(
                "the writer was fenced or crashed while the commit waited",
            )),
            (Ok(value), CommitNote::Durable(_)) => {
                self.metrics.transactions.inc();
                Ok(value)
            }
            (Ok(value), CommitNote::Nothing) => Ok(value),
            (Ok(_), CommitNote::Failed) => Err(error(
                "XX000",
                "SQLite reported a commit the volume refused",
            )),
            (Err(failure), _) => Err(sql_notice(self.conn.as_ref(), failure)),
        }
    }

    /// H26, H29: a statement outside a transaction block commits on its own (SQLite's
    /// autocommit), and is answered only once that commit is durable.
    fn autocommit(&mut self, sql: &str, params: &[Value]) -> Result<Done, Notice> {
        let read_only = self
            .conn()?
            .prepare_cached(sql)
            .is_ok_and(|prepared| prepared.readonly());
        if !read_only {
            self.stage.store(STAGE_WRITING, Ordering::SeqCst);
        }
        reset_commit_note();
        let conn = self.conn()?;
        let result = statement(conn, sql, params);
        self.commit_outcome(result)
    }

    fn parse(
        &mut self,
        name: String,
        sql: String,
        param_types: Vec<u32>,
        out: &mut Vec<Backend>,
    ) -> Result<(), Notice> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(error(
                "42P05",
                format!("prepared statement {name:?} already exists"),
            ));
        }
        let pieces = split_statements(&sql);
        if pieces.len() > 1 {
            return Err(error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let sql = pieces
            .first()
            .map_or(String::new(), |piece| piece.to_string());
        let kind_is_sql = classify(&sql) == Kind::Sql && !sql.is_empty();
        if kind_is_sql {
            // A syntax error or an unknown table is reported now, as PostgreSQL does.
            let conn = self.conn()?;
            conn.prepare_cached(&sql)
                .map_err(|failure| sql_notice(Some(conn), failure))?;
        }
        self.statements.insert(
            name,
            Prepared {
                sql,
                kind_is_sql,
                param_types,
            },
        );
        out.push(Backend::ParseComplete);
        Ok(())
    }

    fn prepared(&self, name: &str) -> Result<&Prepared, Notice> {
        self.statements.get(name).ok_or_else(|| {
            error(
                "26000",
                format!("prepared statement {name:?} does not exist"),
            )
        })
    }

    fn bind(
        &mut self,
        portal: String,
        statement: &str,
        formats: &[i16],
        params: Vec<Option<Vec<u8>>>,
        result_formats: Vec<i16>,
        out: &mut Vec<Backend>,
    ) -> Result<(), Notice> {
        let prepared = self.prepared(statement)?;
        let (sql, types, is_sql) = (
            prepared.sql.clone(),
            prepared.param_types.clone(),
            prepared.kind_is_sql,
        );
        let wanted = if is_sql {
            let conn = self.conn()?;
            parameter_count(conn, &sql)?
        } else {
            0
        };
        if params.len() != wanted {
            return Err(error(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement {statement:?} requires {wanted}",
                    params.len()
                ),
            ));
        }
        let values = params
            .iter()
            .enumerate()
            .map(|(at, bytes)| {
                let oid = types.get(at).copied().unwrap_or(0);
                types::param_value(bytes.as_deref(), oid, format_of(formats, at) == 1).map_err(
                    |failure| {
                        let code = match failure {
                            types::ParamError::Invalid { .. } => "22P02",
                            types::ParamError::BinaryUnsupported(_) => "0A000",
                        };
                        error(code, format!("parameter ${}: {failure}", at + 1))
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.portals.insert(
            portal,
            Portal {
                sql,
                params: values,
                result_formats,
                result: None,
                sent: 0,
            },
        );
        out.push(Backend::BindComplete);
        Ok(())
    }

    fn describe_statement(&mut self, name: &str, out: &mut Vec<Backend>) -> Result<(), Notice> {
        let prepared = self.prepared(name)?;
        let (sql, types, is_sql) = (
            prepared.sql.clone(),
            prepared.param_types.clone(),
            prepared.kind_is_sql,
        );
        if !is_sql {
            out.push(Backend::ParameterDescription(Vec::new()));
            out.push(Backend::NoData);
            return Ok(());
        }
        let conn = self.conn()?;
        let count = parameter_count(conn, &sql)?;
        let oids = (0..count)
            .map(|at| match types.get(at) {
                Some(&oid) if oid != 0 => oid,
                _ => types::TEXT,
            })
            .collect();
        out.push(Backend::ParameterDescription(oids));
        let prepared = conn
            .prepare_cached(&sql)
            .map_err(|failure| sql_notice(Some(conn), failure))?;
        let fields: Vec<FieldDescription> = prepared
            .columns()
            .map(|column| {
                let oid = column.decl_type().map_or(types::TEXT, types::affinity_type);
                FieldDescription {
                    name: column.name().to_string(),
                    type_oid: oid,
                    type_size: types::type_size(oid),
                    format: 0,
                }
            })
            .collect();
        out.push(if fields.is_empty() {
            Backend::NoData
        } else {
            Backend::RowDescription(fields)
        });
        Ok(())
    }

    /// Runs a portal's statement once, keeping its rows for Execute.
    fn materialize(&mut self, name: &str) -> Result<(), Notice> {
        let portal = self
            .portals
            .get(name)
            .ok_or_else(|| error("34000", format!("portal {name:?} does not exist")))?;
        if portal.result.is_some() {
            return Ok(());
        }
        let (sql, params) = (portal.sql.clone(), portal.params.clone());
        if self.block == Block::Idle && classify(&sql) == Kind::Sql {
            // H28: outside a block, the Executes up to Sync are one implicit transaction.
            self.begin_implicit(&[&sql])?;
        }
        let done = self.run(&sql, &params)?;
        if let Some(portal) = self.portals.get_mut(name) {
            portal.result = Some(done);
        }
        Ok(())
    }

    /// H28: a portal's row description. A statement that returns rows runs here, so the
    /// column types come from its values (H24).
    fn describe_portal(&mut self, name: &str, out: &mut Vec<Backend>) -> Result<(), Notice> {
        let portal = self
            .portals
            .get(name)
            .ok_or_else(|| error("34000", format!("portal {name:?} does not exist")))?;
        let returns_rows = match classify(&portal.sql) {
            Kind::Show(_) => true,
            Kind::Sql if !portal.sql.is_empty() => {
                let sql = portal.sql.clone();
                let conn = self.conn()?;
                conn.prepare_cached(&sql)
                    .map_err(|failure| sql_notice(Some(conn), failure))?
                    .column_count()
                    > 0
            }
            _ => false,
        };
        if !returns_rows {
            out.push(Backend::NoData);
            return Ok(());
        }
        self.materialize(name)?;
        let portal = &self.portals[name];
        let done = portal.result.as_ref().expect("materialized above");
        out.push(Backend::RowDescription(done.fields(&portal.result_formats)));
        Ok(())
    }

    fn execute(&mut self, name: &str, max_rows: i32, out: &mut Vec<Backend>) -> Result<(), Notice> {
        let is_empty = self
            .portals
            .get(name)
            .is_some_and(|portal| portal.sql.is_empty());
        if is_empty {
            out.push(Backend::EmptyQueryResponse);
            return Ok(());
        }
        self.materialize(name)?;
        let portal = self.portals.get_mut(name).expect("materialized above");
        let done = portal.result.as_ref().expect("materialized above");
        out.extend(done.notices.iter().cloned().map(Backend::Notice));
        let remaining = done.rows.len() - portal.sent;
        let take = match usize::try_from(max_rows) {
            Ok(limit) if limit > 0 => limit.min(remaining),
            _ => remaining,
        };
        let rows = &done.rows[portal.sent..portal.sent + take];
        out.extend(
            rows.iter()
                .map(|row| done.data_row(row, &portal.result_formats)),
        );
        portal.sent += take;
        if portal.sent < done.rows.len() {
            out.push(Backend::PortalSuspended);
        } else {
            out.push(Backend::CommandComplete(done.tag.clone()));
        }
        Ok(())
    }
}

impl Drop for PgSession {
    /// A client that goes away inside a transaction block: rolled back, connection
    /// returned (H14).
    fn drop(&mut self) {
        self.release();
    }
}

fn show(name: &str) -> Result<Done, Notice> {
    let value = PARAMETERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
        .or_else(|| (name.eq_ignore_ascii_case("transaction_isolation")).then_some("serializable"))
        .ok_or_else(|| {
            error(
                "42704",
                format!("unrecognized configuration parameter {name:?}"),
            )
        })?;
    Ok(Done {
        names: vec![name.to_string()],
        oids: vec![types::TEXT],
        rows: vec![vec![Value::Text(value.to_string())]],
        tag: "SHOW".into(),
        notices: Vec::new(),
    })
}

/// H28: parameters are `$1`, `$2`, ... (SQLite's `?NNN` too); the count is the highest
/// number used.
fn parameter_count(conn: &Connection, sql: &str) -> Result<usize, Notice> {
    let prepared = conn
        .prepare_cached(sql)
        .map_err(|failure| sql_notice(Some(conn), failure))?;
    let mut highest = 0;
    for at in 1..=prepared.parameter_count() {
        highest = highest.max(parameter_number(prepared.parameter_name(at), at)?);
    }
    Ok(highest)
}

/// The 1-based number of SQLite parameter `at` named `name`: `$N` or `?N` is N, a bare
/// `?` is its position; names (`:x`, `@x`) have no number on this protocol.
fn parameter_number(name: Option<&str>, at: usize) -> Result<usize, Notice> {
    match name {
        None => Ok(at),
        Some(name) => name
            .strip_prefix(['$', '?'])
            .and_then(|digits| digits.parse::<usize>().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                error(
                    "42P02",
                    format!("parameter {name} has no number: use $1, $2, ..."),
                )
            }),
    }
}

/// Runs one SQLite statement with `params` bound to `$1`, `$2`, ...: its columns, every
/// row, and the command tag.
fn statement(conn: &Connection, sql: &str, params: &[Value]) -> rusqlite::Result<Done> {
    let mut prepared = conn.prepare_cached(sql)?;
    for at in 1..=prepared.parameter_count() {
        let number = parameter_number(prepared.parameter_name(at), at)
            .map_err(|notice| rusqlite::Error::InvalidParameterName(notice.message))?;
        let value = params.get(number - 1).unwrap_or(&Value::Null);
        prepared.raw_bind_parameter(at, value)?;
    }
    let names: Vec<String> = prepared.column_names().map(str::to_string).collect();
    let declared: Vec<Option<String>> = prepared
        .columns()
        .map(|column| column.decl_type().map(str::to_string))
        .collect();
    let mut rows = Vec::new();
    {
        let mut cursor = prepared.raw_query();
        while let Some(row) = cursor.next()? {
            rows.push(
                (0..names.len())
                    .map(|at| row.get::<_, Value>(at))
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            );
        }
    }
    let oids = declared
        .iter()
        .enumerate()
        .map(|(at, declared)| {
            types::column_type(rows.iter().map(|row| &row[at]), declared.as_deref())
        })
        .collect();
    let changes = if prepared.readonly() {
        0
    } else {
        conn.changes()
    };
    let tag = command_tag(sql, !names.is_empty(), rows.len(), changes);
    Ok(Done {
        names,
        oids,
        rows,
        tag,
        notices: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixfold_sql::{MemVolume, PageVolume};

    fn session() -> PgSession {
        let volume: Arc<dyn PageVolume> = Arc::new(MemVolume::new());
        let databases = Arc::new(Databases::new(volume));
        databases.create("app").unwrap();
        PgSession::open(databases, Arc::new(Metrics::new()), "app").unwrap()
    }

    fn query(session: &mut PgSession, sql: &str) -> Vec<Backend> {
        let mut out = Vec::new();
        assert!(session.handle(Frontend::Query(sql.into()), &mut out));
        out
    }

    fn tags(out: &[Backend]) -> Vec<String> {
        out.iter()
            .map(|message| match message {
                Backend::CommandComplete(tag) => tag.clone(),
                Backend::Error(notice) => format!("error {}", notice.code),
                Backend::Notice(notice) => format!("notice {}", notice.code),
                Backend::ReadyForQuery(status) => format!("Z{}", *status as char),
                Backend::RowDescription(_) => "T".into(),
                Backend::DataRow(_) => "D".into(),
                Backend::EmptyQueryResponse => "I".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A volume whose commits end as a fenced writer's do: sent, then nobody knows.
    struct Fenced {
        inner: MemVolume,
        fenced: std::sync::atomic::AtomicBool,
    }

    impl PageVolume for Fenced {
        fn begin_read(&self) -> Result<u64, sixfold_sql::VolumeError> {
            self.inner.begin_read()
        }
        fn end_read(&self, read_point: u64) {
            self.inner.end_read(read_point)
        }
        fn read_page(
            &self,
            db: u32,
            page: u32,
            at: u64,
        ) -> Result<Option<Vec<u8>>, sixfold_sql::VolumeError> {
            self.inner.read_page(db, page, at)
        }
        fn commit(
            &self,
            writes: Vec<sixfold_sql::PageWrite>,
        ) -> Result<u64, sixfold_sql::VolumeError> {
            if self.fenced.load(Ordering::SeqCst) {
                return Err(sixfold_sql::VolumeError::OutcomeUnknown(
                    "writer fenced by epoch 9".into(),
                ));
            }
            self.inner.commit(writes)
        }
    }

    #[test]
    fn a_commit_whose_outcome_is_unknown_is_never_a_success() {
        // H29, H30
        let volume = Arc::new(Fenced {
            inner: MemVolume::new(),
            fenced: false.into(),
        });
        let metrics = Arc::new(Metrics::new());
        let tracked: Arc<dyn PageVolume> = Arc::new(crate::metrics::TrackedVolume {
            inner: volume.clone(),
            metrics: metrics.clone(),
        });
        let databases = Arc::new(Databases::new(tracked));
        databases.create("app").unwrap();
        let mut s = PgSession::open(databases, metrics.clone(), "app").unwrap();
        assert_eq!(
            tags(&query(&mut s, "CREATE TABLE t(k)")),
            ["CREATE TABLE", "ZI"]
        );
        assert_eq!(metrics.transactions.get(), 1);
        volume.fenced.store(true, Ordering::SeqCst);
        assert_eq!(
            tags(&query(&mut s, "INSERT INTO t VALUES (1)")),
            ["error 08007", "ZI"]
        );
        query(&mut s, "BEGIN; INSERT INTO t VALUES (2)");
        assert_eq!(tags(&query(&mut s, "COMMIT")), ["error 08007", "ZI"]);
        assert_eq!(
            tags(&query(
                &mut s,
                "INSERT INTO t VALUES (3); INSERT INTO t VALUES (4)"
            )),
            ["INSERT 0 1", "INSERT 0 1", "error 08007", "ZI"]
        );
        assert_eq!(
            metrics.transactions.get(),
            1,
            "no unknown commit counted as done"
        );
        assert!(metrics.pg_queries.get() >= 5);
        volume.fenced.store(false, Ordering::SeqCst);
        let out = query(&mut s, "SELECT count(*) FROM t");
        assert_eq!(out[1], Backend::DataRow(vec![Some(b"0".to_vec())]));
    }

    #[test]
    fn statements_split_where_sqlite_says_they_end() {
        // H25
        assert_eq!(
            split_statements("SELECT 1; SELECT 'a;b' ;; -- x\n"),
            vec!["SELECT 1", "SELECT 'a;b'", "-- x"]
        );
        let trigger = "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; SELECT 2; END; SELECT 3";
        assert_eq!(split_statements(trigger).len(), 2);
        assert!(split_statements(" ; ").is_empty());
    }

    #[test]
    fn statements_are_classified_and_tagged() {
        // H26, H27
        assert_eq!(classify("begin"), Kind::Begin("BEGIN IMMEDIATE"));
        assert_eq!(
            classify("START TRANSACTION READ ONLY"),
            Kind::Begin("BEGIN DEFERRED")
        );
        assert_eq!(
            classify("BEGIN DEFERRED TRANSACTION"),
            Kind::Begin("BEGIN DEFERRED")
        );
        assert_eq!(classify("end"), Kind::Commit);
        assert_eq!(classify("ABORT"), Kind::Rollback);
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT a"),
            Kind::Savepoint("ROLLBACK")
        );
        assert_eq!(classify("START x"), Kind::Sql);
        assert_eq!(classify("DEALLOCATE ALL"), Kind::Deallocate(None));
        assert_eq!(
            classify("deallocate prepare _pg3_1"),
            Kind::Deallocate(Some("_pg3_1".into()))
        );
        assert_eq!(
            command_tag("insert into t values (1)", false, 0, 3),
            "INSERT 0 3"
        );
        assert_eq!(
            command_tag("CREATE UNIQUE INDEX i ON t(k)", false, 0, 0),
            "CREATE INDEX"
        );
        assert_eq!(command_tag("DELETE FROM t", false, 0, 2), "DELETE 2");
        assert_eq!(command_tag("VALUES (1),(2)", true, 2, 0), "SELECT 2");
        assert_eq!(
            command_tag("PRAGMA user_version = 3", false, 0, 0),
            "PRAGMA"
        );
    }

    #[test]
    fn transaction_blocks_report_their_status() {
        // H25, H26
        let mut s = session();
        assert_eq!(
            tags(&query(
                &mut s,
                "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)"
            )),
            ["CREATE TABLE", "ZI"]
        );
        assert_eq!(tags(&query(&mut s, "BEGIN")), ["BEGIN", "ZT"]);
        assert_eq!(
            tags(&query(&mut s, "INSERT INTO t VALUES (1, 'a')")),
            ["INSERT 0 1", "ZT"]
        );
        assert_eq!(
            tags(&query(&mut s, "INSERT INTO t VALUES (1, 'b')")),
            ["error 23505", "ZE"]
        );
        assert_eq!(tags(&query(&mut s, "SELECT 1")), ["error 25P02", "ZE"]);
        assert_eq!(tags(&query(&mut s, "COMMIT")), ["ROLLBACK", "ZI"]);
        assert_eq!(
            tags(&query(&mut s, "SELECT count(*) FROM t")),
            ["T", "D", "SELECT 1", "ZI"]
        );
        // Several statements are one implicit transaction: a failure undoes them all.
        assert_eq!(
            tags(&query(
                &mut s,
                "INSERT INTO t VALUES (2, 'x'); INSERT INTO t VALUES (2, 'y')"
            )),
            ["INSERT 0 1", "error 23505", "ZI"]
        );
        let out = query(&mut s, "SELECT count(*) FROM t");
        assert_eq!(out[1], Backend::DataRow(vec![Some(b"0".to_vec())]));
        assert_eq!(tags(&query(&mut s, "")), ["I", "ZI"]);
        assert_eq!(
            tags(&query(&mut s, "COMMIT")),
            ["notice 25P01", "COMMIT", "ZI"]
        );
        assert_eq!(tags(&query(&mut s, "SAVEPOINT a")), ["error 25P01", "ZI"]);
        assert_eq!(tags(&query(&mut s, "SELEC 1")), ["error 42601", "ZI"]);
        // A savepoint rolled back to recovers a failed block.
        let out = query(
            &mut s,
            "BEGIN; INSERT INTO t VALUES (5, 'a'); SAVEPOINT s; INSERT INTO t VALUES (5, 'b')",
        );
        assert_eq!(
            tags(&out),
            ["BEGIN", "INSERT 0 1", "SAVEPOINT", "error 23505", "ZE"]
        );
        assert_eq!(tags(&query(&mut s, "ROLLBACK TO s")), ["ROLLBACK", "ZT"]);
        assert_eq!(tags(&query(&mut s, "COMMIT")), ["COMMIT", "ZI"]);
        let out = query(&mut s, "SELECT v FROM t");
        assert_eq!(out[1], Backend::DataRow(vec![Some(b"a".to_vec())]));
    }

    #[test]
    fn the_extended_protocol_binds_dollar_parameters() {
        // H28, H24
        let mut s = session();
        query(&mut s, "CREATE TABLE t(k INTEGER, v)");
        let mut out = Vec::new();
        for message in [
            Frontend::Parse {
                name: "ins".into(),
                sql: "INSERT INTO t VALUES ($2, $1)".into(),
                param_types: vec![0, types::INT8],
            },
            Frontend::Bind {
                portal: String::new(),
                statement: "ins".into(),
                param_formats: vec![0],
                params: vec![Some(b"".to_vec()), Some(b"7".to_vec())],
                result_formats: vec![],
            },
            Frontend::Execute {
                portal: String::new(),
                max_rows: 0,
            },
            Frontend::Bind {
                portal: String::new(),
                statement: "ins".into(),
                param_formats: vec![],
                params: vec![None, Some(b"8".to_vec())],
                result_formats: vec![],
            },
            Frontend::Execute {
                portal: String::new(),
                max_rows: 0,
            },
            Frontend::Parse {
                name: String::new(),
                sql: "SELECT k, v FROM t ORDER BY k".into(),
                param_types: vec![],
            },
            Frontend::Bind {
                portal: "p".into(),
                statement: String::new(),
                param_formats: vec![],
                params: vec![],
                result_formats: vec![1, 0],
            },
            Frontend::Describe {
                portal: true,
                name: "p".into(),
            },
            Frontend::Execute {
                portal: "p".into(),
                max_rows: 1,
            },
            Frontend::Execute {
                portal: "p".into(),
                max_rows: 1,
            },
            Frontend::Sync,
        ] {
            s.handle(message, &mut out);
        }
        let fields = match &out[7] {
            Backend::RowDescription(fields) => fields.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!((fields[0].type_oid, fields[0].format), (types::INT8, 1));
        assert_eq!((fields[1].type_oid, fields[1].format), (types::TEXT, 0));
        assert_eq!(
            out[8],
            Backend::DataRow(vec![Some(7i64.to_be_bytes().to_vec()), Some(Vec::new())])
        );
        assert_eq!(out[9], Backend::PortalSuspended);
        assert_eq!(
            out[10],
            Backend::DataRow(vec![Some(8i64.to_be_bytes().to_vec()), None])
        );
        assert_eq!(out[11], Backend::CommandComplete("SELECT 2".into()));
        assert_eq!(out[12], Backend::ReadyForQuery(b'I'));
        // An error skips everything up to Sync.
        let mut out = Vec::new();
        for message in [
            Frontend::Bind {
                portal: String::new(),
                statement: "ins".into(),
                param_formats: vec![],
                params: vec![None],
                result_formats: vec![],
            },
            Frontend::Execute {
                portal: String::new(),
                max_rows: 0,
            },
            Frontend::Sync,
        ] {
            s.handle(message, &mut out);
        }
        assert_eq!(tags(&out), ["error 08P01", "ZI"]);
        // Executes up to Sync are one implicit transaction: a failure undoes them all.
        let mut out = Vec::new();
        for k in ["-20", "-9223372036854775808"] {
            for message in [
                Frontend::Parse {
                    name: String::new(),
                    sql: "INSERT INTO t VALUES (abs($1), 'x')".into(),
                    param_types: vec![types::INT8],
                },
                Frontend::Bind {
                    portal: String::new(),
                    statement: String::new(),
                    param_formats: vec![],
                    params: vec![Some(k.as_bytes().to_vec())],
                    result_formats: vec![],
                },
                Frontend::Execute {
                    portal: String::new(),
                    max_rows: 0,
                },
            ] {
                s.handle(message, &mut out);
            }
        }
        s.handle(Frontend::Sync, &mut out);
        assert_eq!(
            tags(&out),
            [
                "ParseComplete",
                "BindComplete",
                "INSERT 0 1",
                "ParseComplete",
                "BindComplete",
                "error 42000",
                "ZI"
            ]
            .map(String::from)
        );
        let rows = query(&mut s, "SELECT count(*) FROM t WHERE k = 20");
        assert_eq!(rows[1], Backend::DataRow(vec![Some(b"0".to_vec())]));
        // Close forgets a statement; binding it afterwards is 26000.
        let mut out = Vec::new();
        for message in [
            Frontend::Close {
                portal: false,
                name: "ins".into(),
            },
            Frontend::Bind {
                portal: String::new(),
                statement: "ins".into(),
                param_formats: vec![],
                params: vec![],
                result_formats: vec![],
            },
            Frontend::Sync,
        ] {
            s.handle(message, &mut out);
        }
        assert_eq!(tags(&out), ["CloseComplete", "error 26000", "ZI"]);
    }
}
