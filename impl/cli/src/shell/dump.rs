//! `.dump`: the database as SQL text that the stock sqlite3 loads back (sqlite3 3.40's
//! format: tables with their rows, `sqlite_sequence`, then indexes, triggers and views).

use std::io::{self, Write};

use super::dot_commands::schema_line;
use super::format::{Value, quote_identifier, sql_literal};
use super::output_modes::{Mode, Renderer};
use super::{DotOutcome, Shell};

impl Shell<'_> {
    pub(super) fn dump(&mut self, args: &[String]) -> io::Result<DotOutcome> {
        let mut data_only = false;
        let mut patterns = Vec::new();
        for arg in args {
            match arg.trim_start_matches('-') {
                "data-only" if arg.starts_with('-') => data_only = true,
                _ if arg.starts_with('-') => {
                    eprintln!("Unknown option \"{arg}\" on \".dump\"");
                    return Ok(DotOutcome::Failed);
                }
                _ => patterns.push(format!("name LIKE {} ESCAPE '\\'", sql_literal(arg))),
            }
        }
        let like = if patterns.is_empty() {
            "true".to_string()
        } else {
            patterns.join(" OR ")
        };
        if !data_only {
            self.output
                .writer
                .write_all(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")?;
        }
        // One read snapshot for the whole dump.
        let _ = self.conn.execute_batch("SAVEPOINT dump");
        let mut errors = 0;
        let tables = format!(
            "SELECT sql, type, name FROM sqlite_schema AS o WHERE ({like}) AND type=='table' \
             AND sql NOT NULL ORDER BY tbl_name='sqlite_sequence', rowid"
        );
        match self.schema_entries(&tables) {
            Ok(entries) => {
                for (sql, kind, name) in entries {
                    errors += self.dump_table(&name, &kind, &sql, data_only)?;
                }
            }
            Err(_) => errors += 1,
        }
        if !data_only {
            let others = format!(
                "SELECT sql, type, name FROM sqlite_schema AS o WHERE ({like}) AND sql NOT NULL \
                 AND type IN ('index','trigger','view')"
            );
            match self.schema_entries(&others) {
                Ok(entries) => {
                    for (sql, _, _) in entries {
                        let end = if sql.contains("--") { "\n;\n" } else { ";\n" };
                        write!(self.output.writer, "{sql}{end}")?;
                    }
                }
                Err(_) => errors += 1,
            }
        }
        let _ = self.conn.execute_batch("RELEASE dump");
        if !data_only {
            let end: &[u8] = if errors > 0 {
                b"ROLLBACK; -- due to errors\n"
            } else {
                b"COMMIT;\n"
            };
            self.output.writer.write_all(end)?;
        }
        Ok(DotOutcome::Done)
    }

    /// One table: its CREATE statement and an INSERT per row. Returns the error count.
    fn dump_table(
        &mut self,
        name: &str,
        kind: &str,
        sql: &str,
        data_only: bool,
    ) -> io::Result<usize> {
        let out = &mut self.output.writer;
        if name == "sqlite_sequence" {
            out.write_all(b"DELETE FROM sqlite_sequence;\n")?;
        } else if name.starts_with("sqlite_stat") {
            out.write_all(b"ANALYZE sqlite_schema;\n")?;
        } else if name.starts_with("sqlite_") {
            return Ok(0);
        } else if data_only {
        } else if sql.starts_with("CREATE VIRTUAL TABLE") {
            writeln!(
                out,
                "PRAGMA writable_schema=ON;\nINSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)\
                 VALUES('table',{},{},0,{});",
                sql_literal(name),
                sql_literal(name),
                sql_literal(sql)
            )?;
            return Ok(0);
        } else {
            out.write_all(schema_line(sql, ";\n").as_bytes())?;
        }
        if kind != "table" {
            return Ok(0);
        }
        let columns = match self.column_names(name) {
            Ok(columns) if !columns.is_empty() => columns,
            _ => return Ok(1),
        };
        let select = format!(
            "SELECT {} FROM {}",
            columns
                .iter()
                .map(|c| quote_identifier(c))
                .collect::<Vec<_>>()
                .join(","),
            quote_identifier(name)
        );
        let mut style = self.style.clone();
        style.mode = Mode::Insert;
        style.show_header = false;
        style.insert_table = quote_identifier(name);
        let mut renderer = Renderer::new(style, columns.clone());
        let result = (|| -> Result<(), rusqlite::Error> {
            let mut statement = self.conn.prepare(&select)?;
            let mut rows = statement.raw_query();
            while let Some(row) = rows.next()? {
                let values: Vec<Value> = (0..columns.len())
                    .map(|index| row.get_ref(index).map(Value::from))
                    .collect::<Result<_, _>>()?;
                renderer
                    .row(values, &mut self.output.writer)
                    .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(0),
            Err(rusqlite::Error::ToSqlConversionFailure(error)) => {
                match error.downcast::<io::Error>() {
                    Ok(error) => Err(*error),
                    Err(_) => Ok(1),
                }
            }
            Err(_) => Ok(1),
        }
    }

    fn column_names(&self, table: &str) -> rusqlite::Result<Vec<String>> {
        let sql = format!("PRAGMA main.table_info={}", sql_literal(table));
        let mut statement = self.conn.prepare(&sql)?;
        let names = statement.query_map([], |row| row.get::<_, String>(1))?;
        names.collect()
    }
}
