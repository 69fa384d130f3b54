//! `.import FILE TABLE`: CSV (or the current separators) into a table, created from the
//! header row if missing, as sqlite3 3.40 does it.

use std::io;

use super::format::always_quoted;
use super::output_modes::Mode;
use super::{DotOutcome, Shell};

/// sqlite3's CSV field reader: fields split at `column`, records at `row`, `"…"` quoting
/// with `""` for a quote, a `\r` before the record separator dropped, a leading BOM skipped.
struct FieldReader {
    data: Vec<u8>,
    at: usize,
    file: String,
    column: u8,
    row: u8,
    line: usize,
    /// What ended the last field: a separator, or `None` at the end of the file.
    term: Option<u8>,
    first: bool,
}

impl FieldReader {
    fn getc(&mut self) -> Option<u8> {
        let byte = self.data.get(self.at).copied();
        self.at += 1;
        byte
    }

    fn field(&mut self) -> Option<Vec<u8>> {
        let Some(c) = self.getc() else {
            self.term = None;
            return None;
        };
        let mut text = Vec::new();
        if c == b'"' {
            self.quoted_field(&mut text);
        } else {
            if self.first && self.data[self.at - 1..].starts_with(b"\xef\xbb\xbf") {
                self.at += 2;
                self.first = false;
                return self.field();
            }
            let mut current = Some(c);
            while let Some(byte) = current {
                if byte == self.column || byte == self.row {
                    break;
                }
                text.push(byte);
                current = self.getc();
            }
            if current == Some(self.row) {
                self.line += 1;
                if text.last() == Some(&b'\r') {
                    text.pop();
                }
            }
            self.term = current;
        }
        self.first = false;
        Some(text)
    }

    fn quoted_field(&mut self, text: &mut Vec<u8>) {
        let start_line = self.line;
        let (mut pc, mut ppc) = (None::<u8>, None::<u8>);
        loop {
            let c = self.getc();
            if c == Some(self.row) {
                self.line += 1;
            }
            if c == Some(b'"') && pc == Some(b'"') {
                pc = None;
                continue;
            }
            let closing = pc == Some(b'"')
                && (c == Some(self.column) || c == Some(self.row) || c.is_none())
                || (c == Some(self.row) && pc == Some(b'\r') && ppc == Some(b'"'));
            if closing {
                while let Some(last) = text.pop() {
                    if last == b'"' {
                        break;
                    }
                }
                self.term = c;
                return;
            }
            if pc == Some(b'"') && c != Some(b'\r') {
                eprintln!("{}:{}: unescaped \" character", self.file, self.line);
            }
            let Some(byte) = c else {
                eprintln!("{}:{start_line}: unterminated \"-quoted field", self.file);
                self.term = None;
                return;
            };
            text.push(byte);
            ppc = pc;
            pc = Some(byte);
        }
    }
}

impl Shell<'_> {
    pub(super) fn import(&mut self, args: &[String]) -> io::Result<DotOutcome> {
        let (mut csv, mut skip, mut positional) = (false, 0usize, Vec::new());
        let mut index = 0;
        while index < args.len() {
            match args[index].as_str() {
                "--csv" => csv = true,
                "--skip" => {
                    index += 1;
                    skip = args.get(index).and_then(|n| n.parse().ok()).unwrap_or(0);
                }
                other if other.starts_with('-') => {
                    eprintln!("ERROR: unknown option: \"{other}\".  Usage:");
                    eprintln!(".import FILE TABLE (options: --csv, --skip N)");
                    return Ok(DotOutcome::Failed);
                }
                other => positional.push(other.to_string()),
            }
            index += 1;
        }
        let [file, table] = positional.as_slice() else {
            eprintln!("Usage: .import FILE TABLE");
            return Ok(DotOutcome::Failed);
        };
        let (column, row) = if csv || self.style.mode == Mode::Csv {
            (b",".to_vec(), b"\n".to_vec())
        } else {
            (
                self.style.column_separator.clone(),
                self.style.row_separator.clone(),
            )
        };
        if column.len() != 1 {
            eprintln!("Error: multi-character column separators not allowed for import");
            return Ok(DotOutcome::Failed);
        }
        if row.len() != 1 {
            eprintln!("Error: multi-character row separators not allowed for import");
            return Ok(DotOutcome::Failed);
        }
        let Ok(data) = std::fs::read(file) else {
            eprintln!("Error: cannot open \"{file}\"");
            return Ok(DotOutcome::Failed);
        };
        let mut reader = FieldReader {
            data,
            at: 0,
            file: file.clone(),
            column: column[0],
            row: row[0],
            line: 1,
            term: None,
            first: true,
        };
        let target = format!("\"main\".{}", always_quoted(table));
        if let Err(message) = self.import_into(&mut reader, &target, skip) {
            eprintln!("Error: {message}");
            return Ok(DotOutcome::Failed);
        }
        Ok(DotOutcome::Done)
    }

    fn import_into(
        &mut self,
        reader: &mut FieldReader,
        target: &str,
        mut skip: usize,
    ) -> Result<(), String> {
        let conn = self.conn;
        let existing = conn
            .prepare(&format!("SELECT * FROM {target}"))
            .map(|statement| statement.column_count());
        let columns = match existing {
            Ok(count) => count,
            Err(_) => {
                let mut names = Vec::new();
                while let Some(name) = reader.field() {
                    names.push(format!(
                        "{} TEXT",
                        always_quoted(&String::from_utf8_lossy(&name))
                    ));
                    if reader.term != Some(reader.column) {
                        break;
                    }
                }
                if names.is_empty() {
                    return Err(format!("empty file: {}", reader.file));
                }
                let create = format!("CREATE TABLE {target}(\n{})", names.join(", "));
                conn.execute_batch(&create)
                    .map_err(|error| format!("{error}"))?;
                names.len()
            }
        };
        while skip > 0 {
            while reader.field().is_some() && reader.term == Some(reader.column) {}
            skip -= 1;
        }
        let placeholders = vec!["?"; columns].join(",");
        let mut insert = conn
            .prepare(&format!("INSERT INTO {target} VALUES({placeholders})"))
            .map_err(|error| format!("{error}"))?;
        let began = conn.is_autocommit() && conn.execute_batch("BEGIN").is_ok();
        loop {
            let start_line = reader.line;
            match self.import_record(reader, columns, start_line) {
                None => break,
                Some(values) => {
                    let params = rusqlite::params_from_iter(values.iter());
                    if let Err(error) = insert.execute(params) {
                        let message = match &error {
                            rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
                            other => other.to_string(),
                        };
                        eprintln!("{}:{start_line}: INSERT failed: {message}", reader.file);
                    }
                }
            }
            if reader.term.is_none() {
                break;
            }
        }
        drop(insert);
        if began {
            conn.execute_batch("COMMIT")
                .map_err(|error| format!("{error}"))?;
        }
        Ok(())
    }

    /// One record's values (`None` for a missing field), or `None` at the end of input.
    fn import_record(
        &self,
        reader: &mut FieldReader,
        columns: usize,
        start_line: usize,
    ) -> Option<Vec<Option<String>>> {
        let mut values: Vec<Option<String>> = vec![None; columns];
        let mut index = 0;
        while index < columns {
            let field = reader.field();
            if field.is_none() && index == 0 {
                return None;
            }
            values[index] = field.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            if index + 1 < columns && reader.term != Some(reader.column) {
                eprintln!(
                    "{}:{start_line}: expected {columns} columns but found {} - filling the rest with NULL",
                    reader.file,
                    index + 1
                );
                index = columns + 1;
                break;
            }
            index += 1;
        }
        if reader.term == Some(reader.column) {
            loop {
                reader.field();
                index += 1;
                if reader.term != Some(reader.column) {
                    break;
                }
            }
            eprintln!(
                "{}:{start_line}: expected {columns} columns but found {index} - extras ignored",
                reader.file
            );
        }
        Some(values)
    }
}
