//! A minimal statement runner for this crate's tests (`sixfold sql` has the full shell,
//! impl/cli/src/shell): reads SQL, prints rows as the sqlite3
//! shell does by default (list mode: columns joined by `|`, one row per line, NULL as
//! empty, no header), reports the first error on stderr and stops.

use std::io::{BufRead, Write};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, Statement, ffi};

use crate::last_vfs_error;

/// Why [`run_shell`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Reading the input or writing the output failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A statement failed (the message was also written to the error stream).
    #[error("{kind} error near line {line}: {message}")]
    Sql {
        /// "Parse" (preparing failed) or "Runtime" (running failed), as sqlite3 says.
        kind: &'static str,
        /// The line the failing statement starts on (1-based).
        line: usize,
        /// SQLite's message, with the VFS's text when the volume failed.
        message: String,
    },
    /// The input ended inside a statement.
    #[error("incomplete SQL: {0}")]
    Incomplete(String),
}

/// Longest statement text the shell accumulates, in bytes.
pub const STATEMENT_BYTES_MAX: usize = 64 << 20;

/// Runs every statement read from `input` on `conn`, printing result rows to `out`.
/// Stops at the first error, which is also written to `err` as sqlite3 writes it
/// (`Parse error near line N: …` / `Runtime error near line N: …`).
pub fn run_shell(
    conn: &Connection,
    input: impl BufRead,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ShellError> {
    let mut pending = String::new();
    let mut pending_line = 1;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if pending.trim().is_empty() {
            pending.clear();
            pending_line = index + 1;
        }
        pending.push_str(&line);
        pending.push('\n');
        if pending.len() > STATEMENT_BYTES_MAX {
            return Err(ShellError::Incomplete(format!(
                "statement over {STATEMENT_BYTES_MAX} bytes"
            )));
        }
        if is_complete(&pending) {
            let result = run_chunk(conn, &pending, pending_line, out);
            pending.clear();
            if let Err(error) = result {
                writeln!(err, "{error}")?;
                return Err(error);
            }
        }
    }
    if !pending.trim().is_empty() {
        // sqlite3 runs a last statement that lacks its semicolon.
        if let Err(error) = run_chunk(conn, &pending, pending_line, out) {
            writeln!(err, "{error}")?;
            return Err(error);
        }
    }
    out.flush()?;
    Ok(())
}

/// sqlite3_complete: the text ends with a complete statement (semicolon outside
/// literals, comments and trigger bodies).
pub fn is_complete(sql: &str) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return true; // a NUL byte: let SQLite report it
    };
    // SAFETY: `text` is a NUL-terminated string alive across the call.
    unsafe { ffi::sqlite3_complete(text.as_ptr()) == 1 }
}

fn describe(conn: &Connection, error: &rusqlite::Error) -> String {
    let message = match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    };
    match last_vfs_error(conn) {
        Some(text) if is_io_error(error) => format!("{message} ({text})"),
        _ => message,
    }
}

fn is_io_error(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::SystemIoFailure)
}

fn run_chunk(
    conn: &Connection,
    sql: &str,
    line: usize,
    out: &mut impl Write,
) -> Result<(), ShellError> {
    let sql_error = |kind, error: rusqlite::Error| ShellError::Sql {
        kind,
        line,
        message: describe(conn, &error),
    };
    let mut batch = Batch::new(conn, sql);
    loop {
        let statement = match batch.next() {
            Ok(Some(statement)) => statement,
            Ok(None) => return Ok(()),
            Err(error) => return Err(sql_error("Parse", error)),
        };
        print_rows(statement, out).map_err(|error| match error {
            RowsError::Sql(error) => sql_error("Runtime", error),
            RowsError::Io(error) => ShellError::Io(error),
        })?;
    }
}

enum RowsError {
    Sql(rusqlite::Error),
    Io(std::io::Error),
}

fn print_rows(mut statement: Statement<'_>, out: &mut impl Write) -> Result<(), RowsError> {
    let columns = statement.column_count();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(RowsError::Sql)? {
        for index in 0..columns {
            if index > 0 {
                out.write_all(b"|").map_err(RowsError::Io)?;
            }
            let value = row.get_ref(index).map_err(RowsError::Sql)?;
            write_value(value, out).map_err(RowsError::Io)?;
        }
        out.write_all(b"\n").map_err(RowsError::Io)?;
    }
    Ok(())
}

/// A value as sqlite3_column_text renders it, which is what the shell prints.
fn write_value(value: ValueRef<'_>, out: &mut impl Write) -> std::io::Result<()> {
    match value {
        ValueRef::Null => Ok(()),
        ValueRef::Integer(number) => write!(out, "{number}"),
        ValueRef::Real(number) => out.write_all(format_real(number).as_bytes()),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => out.write_all(bytes),
    }
}

/// A REAL as SQLite renders it as text (sqlite3_column_text, which the sqlite3 shell
/// prints in list mode): the shortest form that round-trips, with `.0` or an exponent
/// as SQLite writes them. Produced by the bundled SQLite itself, so it matches the
/// sqlite3 shell of the same SQLite version exactly.
pub fn format_real(number: f64) -> String {
    thread_local! {
        static RENDERER: Option<Connection> = Connection::open_in_memory().ok();
    }
    let rendered = RENDERER.with(|renderer| {
        renderer.as_ref().and_then(|conn| {
            conn.query_row("SELECT CAST(?1 AS TEXT)", [number], |row| {
                row.get::<_, String>(0)
            })
            .ok()
        })
    });
    // An in-memory SQLite connection does not fail to open or to cast a bound double;
    // should it, Rust's shortest round-trip form is the closest rendering.
    rendered.unwrap_or_else(|| format!("{number:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str) -> (Result<(), ShellError>, String, String) {
        let conn = Connection::open_in_memory().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run_shell(&conn, sql.as_bytes(), &mut out, &mut err);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn prints_list_mode_rows() {
        let (result, out, err) = run(
            "CREATE TABLE t(a, b, c);\nINSERT INTO t VALUES (1, 'x', NULL), (2.5, '', 1e100);\n\
             SELECT * FROM t; SELECT 0.1, 1.0, -0.0, 100.0/3, 1e15, 123456789012345678.0;",
        );
        result.unwrap();
        assert_eq!(err, "");
        assert_eq!(
            out,
            "1|x|\n2.5||1.0e+100\n0.1|1.0|0.0|33.333333333333336|1000000000000000.0|1.2345678901234568e+17\n"
        );
    }

    #[test]
    fn statement_spanning_lines_and_trigger_bodies() {
        let (result, out, _) = run(
            "CREATE TABLE t(a);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  INSERT INTO t \
             SELECT 99 WHERE new.a = 1;\nEND;\nINSERT INTO t\nVALUES (1);\nSELECT a FROM t \
             ORDER BY a",
        );
        result.unwrap();
        assert_eq!(out, "1\n99\n");
    }

    #[test]
    fn stops_at_first_error_with_its_line() {
        let (result, out, err) = run("SELECT 1;\n\nSELECT * FROM missing;\nSELECT 2;\n");
        assert!(matches!(
            result,
            Err(ShellError::Sql {
                kind: "Parse",
                line: 3,
                ..
            })
        ));
        assert_eq!(out, "1\n");
        assert_eq!(err, "Parse error near line 3: no such table: missing\n");
        let (result, _, err) = run("CREATE TABLE t(a UNIQUE); INSERT INTO t VALUES (1), (1);");
        assert!(matches!(
            result,
            Err(ShellError::Sql {
                kind: "Runtime",
                line: 1,
                ..
            })
        ));
        assert!(
            err.starts_with("Runtime error near line 1: UNIQUE constraint failed"),
            "{err}"
        );
    }
}
