//! A sqllogictest runner: SQLite on the VFS, driven by the `sqllogictest` crate.
//!
//! Results are rendered as SQLite's own sqllogictest engine renders them (so that the
//! expected results of the SQLite corpus, produced by stock SQLite, match exactly):
//! per column type `I` → sqlite3_column_int64 as `%lld`, `R` → `%.3f` of
//! sqlite3_column_double, `T` → sqlite3_column_text with `(empty)` for an empty string
//! and bytes outside printable ASCII as `@`; NULL is `NULL`. Conversions are done by
//! SQLite itself (CAST and printf) so they match bit for bit. Expected results list one
//! value per line, so the validator compares the values in order.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::Value;
use rusqlite::{Batch, Connection};
use sqllogictest::{DBOutput, DefaultColumnType, QueryExpect, Record, Runner};

use crate::{Catalog, CatalogError, PageVolume, open_connection};

/// Why a sqllogictest run failed.
#[derive(Debug, thiserror::Error)]
pub enum SltError {
    /// The file does not parse.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The database could not be created.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// A record failed (wrong result, unexpected error, ...).
    #[error("record {index} failed: {message}")]
    Record {
        /// Index of the record in the file (0-based).
        index: usize,
        /// The runner's description, with the file location.
        message: String,
    },
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SltReport {
    /// Records in the file.
    pub records: usize,
    /// Query records that ran (not skipped by `skipif`/`onlyif`).
    pub queries: usize,
}

/// The error type the `DB` implementation returns.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SltDbError(String);

impl From<rusqlite::Error> for SltDbError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

/// Column types of the query record about to run (set by the driver loop).
type ExpectedTypes = Arc<Mutex<Option<Vec<DefaultColumnType>>>>;

/// One connection, as the `sqllogictest` crate's synchronous `DB`.
pub struct SltDb {
    conn: Connection,
    expected_types: ExpectedTypes,
    queries_run: Arc<Mutex<usize>>,
}

impl SltDb {
    fn render(&self, value: &Value, column_type: &DefaultColumnType) -> Result<String, SltDbError> {
        let text = match (column_type, value) {
            (_, Value::Null) => "NULL".into(),
            (DefaultColumnType::Integer, Value::Integer(number)) => number.to_string(),
            (DefaultColumnType::Integer, _) => {
                self.sqlite_render("SELECT CAST(?1 AS INTEGER)", value)?
            }
            (DefaultColumnType::FloatingPoint, _) => {
                self.sqlite_render("SELECT printf('%.3f', ?1)", value)?
            }
            (_, Value::Text(text)) => text_value(text.as_bytes()),
            (_, Value::Blob(bytes)) => text_value(bytes),
            (_, Value::Integer(number)) => number.to_string(),
            (_, Value::Real(_)) => text_value(
                self.sqlite_render("SELECT CAST(?1 AS TEXT)", value)?
                    .as_bytes(),
            ),
        };
        Ok(text)
    }

    fn sqlite_render(&self, sql: &str, value: &Value) -> Result<String, SltDbError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rendered: Value = statement.query_row([value], |row| row.get(0))?;
        Ok(match rendered {
            Value::Integer(number) => number.to_string(),
            Value::Text(text) => text,
            other => format!("{other:?}"),
        })
    }
}

/// sqllogictest's text rendering: `(empty)`, and `@` for bytes outside ' '..='~'.
fn text_value(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    bytes
        .iter()
        .map(|&b| {
            if (b' '..=b'~').contains(&b) {
                char::from(b)
            } else {
                '@'
            }
        })
        .collect()
}

impl sqllogictest::DB for SltDb {
    type Error = SltDbError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltDbError> {
        let types = self
            .expected_types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        // A record may hold several statements (SQLite's runner uses sqlite3_exec); the
        // output is the last one's.
        let mut output = DBOutput::StatementComplete(0);
        let mut batch = Batch::new(&self.conn, sql);
        while let Some(mut statement) = batch.next()? {
            let columns = statement.column_count();
            if columns == 0 {
                let changed = statement.raw_execute()?;
                output = DBOutput::StatementComplete(changed as u64);
                continue;
            }
            let mut raw_rows = Vec::new();
            let mut rows = statement.raw_query();
            loop {
                let row = match rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    // SQLite's runner stops reading rows at a step error without failing
                    // the query (the corpus's expected results rely on it, e.g. sum()'s
                    // integer overflow). Only plain SQL errors are treated so: I/O and
                    // every other error still fail the record.
                    Err(error) if is_plain_sql_error(&error) => break,
                    Err(error) => return Err(error.into()),
                };
                let values: Result<Vec<Value>, _> = (0..columns).map(|i| row.get(i)).collect();
                raw_rows.push(values?);
            }
            output = DBOutput::Rows {
                types: types
                    .clone()
                    .unwrap_or_else(|| vec![DefaultColumnType::Any; columns]),
                rows: Vec::new(),
            };
            if let DBOutput::Rows { types, rows } = &mut output {
                for raw in &raw_rows {
                    let row: Result<Vec<String>, SltDbError> = raw
                        .iter()
                        .enumerate()
                        .map(|(i, value)| {
                            let column_type = types.get(i).unwrap_or(&DefaultColumnType::Any);
                            self.render(value, column_type)
                        })
                        .collect();
                    rows.push(row?);
                }
            }
        }
        if matches!(output, DBOutput::Rows { .. }) {
            *self
                .queries_run
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        }
        Ok(output)
    }

    fn engine_name(&self) -> &str {
        ENGINE_NAME
    }
}

fn is_plain_sql_error(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_ERROR)
}

/// Expected results list one value per line: compare the values in order.
fn value_validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let values = actual.iter().flatten();
    values.clone().count() == expected.len()
        && values
            .zip(expected)
            .all(|(value, line)| normalizer(value) == normalizer(line))
}

/// Runs the sqllogictest file at `path` against database `db_name` of `volume` (created
/// if missing), one connection through the VFS. `between_records` (if any) is called
/// before each record with its index, so a caller can inject faults.
pub fn run_file(
    volume: Arc<dyn PageVolume>,
    db_name: &str,
    path: &Path,
    mut between_records: Option<&mut dyn FnMut(usize)>,
) -> Result<SltReport, SltError> {
    let parse_error = |message: String| SltError::Parse {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| parse_error(error.to_string()))?;
    let records: Vec<Record<DefaultColumnType>> =
        sqllogictest::parse_with_name(&preprocess(&text), path.display().to_string())
            .map_err(|error| parse_error(error.to_string()))?;
    let catalog = Catalog::new(volume.clone());
    if catalog.lookup(db_name)?.is_none() {
        catalog.create_database(db_name)?;
    }
    let expected_types: ExpectedTypes = Arc::default();
    let queries_run = Arc::new(Mutex::new(0));
    let make = {
        let (volume, name) = (volume.clone(), db_name.to_owned());
        let (expected_types, queries_run) = (expected_types.clone(), queries_run.clone());
        move || {
            let db = open_connection(volume.clone(), &name)
                .map(|conn| SltDb {
                    conn,
                    expected_types: expected_types.clone(),
                    queries_run: queries_run.clone(),
                })
                .map_err(SltDbError::from);
            std::future::ready(db)
        }
    };
    let mut runner = Runner::new(make);
    runner.add_label(ENGINE_NAME);
    runner.with_validator(value_validator);
    // SQLite's corpus was generated with a hash threshold of 8 where a file does not set
    // one (`hash-threshold N` records still override it).
    runner.with_hash_threshold(DEFAULT_HASH_THRESHOLD);
    let total = records.len();
    for (index, record) in records.into_iter().enumerate() {
        if let Some(hook) = between_records.as_mut() {
            hook(index);
        }
        let types = match &record {
            Record::Query {
                expected: QueryExpect::Results { types, .. },
                ..
            } => Some(types.clone()),
            _ => None,
        };
        *expected_types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = types;
        runner.run(record).map_err(|error| SltError::Record {
            index,
            message: error.to_string(),
        })?;
    }
    let queries = *queries_run
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(SltReport {
        records: total,
        queries,
    })
}

/// Hash threshold of a file without a `hash-threshold` record.
pub const DEFAULT_HASH_THRESHOLD: usize = 8;

/// The engine name the corpus's `skipif`/`onlyif` lines are matched against.
pub const ENGINE_NAME: &str = "sqlite";

/// Adapts SQLite's corpus to the `sqllogictest` crate's parser, as SQLite's own runner
/// reads it: text after the engine name of a `skipif`/`onlyif` line is a comment, and a
/// `halt` applies only when its conditions select this engine (the crate would carry
/// the conditions over to the next record instead).
fn preprocess(text: &str) -> String {
    let mut output: Vec<String> = Vec::new();
    let mut conditions: Vec<(bool, String)> = Vec::new();
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        match tokens.as_slice() {
            [keyword @ ("skipif" | "onlyif"), engine, ..] => {
                conditions.push((*keyword == "onlyif", (*engine).to_owned()));
            }
            ["halt", ..] => {
                let applies = conditions
                    .drain(..)
                    .all(|(only, engine)| only == (engine == ENGINE_NAME));
                if applies {
                    break;
                }
            }
            _ => {
                for (only, engine) in conditions.drain(..) {
                    let keyword = if only { "onlyif" } else { "skipif" };
                    output.push(format!("{keyword} {engine}"));
                }
                output.push(line.to_owned());
            }
        }
    }
    output.push(String::new());
    output.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_halts_and_condition_comments_are_read_like_sqlite_does() {
        let text = "onlyif mssql\nhalt\n\nskipif mysql # a comment\nstatement ok\nSELECT 1\n\n\
                    skipif sqlite\nhalt\n\nonlyif sqlite\nhalt\n\nstatement ok\nSELECT 2\n";
        assert_eq!(
            preprocess(text),
            "\nskipif mysql\nstatement ok\nSELECT 1\n\n\n"
        );
    }
}
