//! The dot commands, with sqlite3 3.40's arguments, messages and output.

use std::io::{self, Write};

use super::format::{c_escaped, needs_quotes, quote_identifier, sql_literal};
use super::output_modes::{MODE_NAMES, Mode};
use super::{DotOutcome, Input, Output, Shell};

/// The commands and the shortest prefix each accepts (sqlite3 takes abbreviations).
const COMMANDS: &[(&str, usize)] = &[
    ("bail", 2),
    ("changes", 3),
    ("databases", 2),
    ("dump", 2),
    ("echo", 2),
    ("exit", 2),
    ("headers", 2),
    ("help", 2),
    ("import", 2),
    ("indexes", 3),
    ("indices", 3),
    ("mode", 2),
    ("nullvalue", 2),
    ("once", 2),
    ("output", 2),
    ("print", 2),
    ("quit", 1),
    ("read", 3),
    ("schema", 2),
    ("separator", 3),
    ("show", 4),
    ("tables", 2),
    ("timer", 2),
    ("width", 1),
];

const HELP: &str = "\
.bail on|off             Stop after hitting an error.  Default OFF
.changes on|off          Show number of rows changed by SQL
.databases               List names and files of attached databases
.dump ?OBJECTS?          Render database content as SQL
.echo on|off             Turn command echo on or off
.exit ?CODE?             Exit this program with return-code CODE
.headers on|off          Turn display of headers on or off
.help                    Show this message
.import FILE TABLE       Import data from FILE into TABLE (--csv, --skip N)
.indexes ?TABLE?         Show names of indexes
.mode MODE ?TABLE?       Set output mode
.nullvalue STRING        Use STRING in place of NULL values
.once FILE               Output for the next SQL command only to FILE
.output ?FILE?           Send output to FILE or stdout if FILE is omitted
.print STRING...         Print literal STRING
.quit                    Exit this program
.read FILE               Read input from FILE
.schema ?PATTERN?        Show the CREATE statements matching PATTERN
.separator COL ?ROW?     Change the column and row separators
.show                    Show the current values for various settings
.tables ?TABLE?          List names of tables matching LIKE pattern TABLE
.timer on|off            Turn SQL timer on or off
.width NUM1 NUM2 ...     Set minimum column widths for columnar output
";

/// Splits a dot command's arguments as sqlite3 does: whitespace-separated, `'…'` taken
/// literally, `"…"` and bare words with backslash escapes resolved.
pub fn parse_arguments(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut args = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at >= bytes.len() {
            break;
        }
        let delimiter = bytes[at];
        if delimiter == b'\'' || delimiter == b'"' {
            at += 1;
            let start = at;
            while at < bytes.len() && bytes[at] != delimiter {
                if bytes[at] == b'\\' && delimiter == b'"' && at + 1 < bytes.len() {
                    at += 1;
                }
                at += 1;
            }
            let text = &line[start..at.min(bytes.len())];
            at += 1;
            args.push(if delimiter == b'"' {
                resolve_backslashes(text)
            } else {
                text.to_string()
            });
        } else {
            let start = at;
            while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            args.push(resolve_backslashes(&line[start..at]));
        }
    }
    args
}

/// `\t`, `\n`, `\\`, `\"`, `\'` and octal `\NNN` as the characters they name.
fn resolve_backslashes(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' || at + 1 >= bytes.len() {
            out.push(bytes[at]);
            at += 1;
            continue;
        }
        at += 1;
        let escaped = bytes[at];
        at += 1;
        out.push(match escaped {
            b'a' => 7,
            b'b' => 8,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 11,
            b'f' => 12,
            b'r' => b'\r',
            b'0'..=b'7' => {
                let mut value = u32::from(escaped - b'0');
                for _ in 0..2 {
                    match bytes.get(at) {
                        Some(&digit @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(digit - b'0');
                            at += 1;
                        }
                        _ => break,
                    }
                }
                value as u8
            }
            other => other,
        });
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lookup(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(command, shortest)| name.len() >= *shortest && command.starts_with(name))
        .map(|(command, _)| *command)
}

/// sqlite3's `booleanValue`: on/yes/off/no or a number; anything else is "no".
fn boolean(text: &str) -> bool {
    if let Ok(number) = text.parse::<i64>() {
        return number != 0;
    }
    match text.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => true,
        "off" | "no" | "false" => false,
        _ => {
            eprintln!("ERROR: Not a boolean value: \"{text}\". Assuming \"no\".");
            false
        }
    }
}

impl Shell<'_> {
    /// Runs one dot command line (starting with `.`).
    pub(super) fn dot_command(&mut self, line: &str) -> io::Result<DotOutcome> {
        self.output.writer.flush()?;
        let args = parse_arguments(&line[1..]);
        let Some(name) = args.first() else {
            return Ok(DotOutcome::Done);
        };
        let outcome = match lookup(name) {
            Some(command) => self.dispatch(command, &args)?,
            None => None,
        };
        self.output.writer.flush()?;
        Ok(match outcome {
            Some(outcome) => outcome,
            None => {
                eprintln!(
                    "Error: unknown command or invalid arguments:  \"{name}\". Enter \".help\" for help"
                );
                DotOutcome::Failed
            }
        })
    }

    /// `None`: unknown, or arguments that fit no form of the command.
    fn dispatch(&mut self, command: &str, args: &[String]) -> io::Result<Option<DotOutcome>> {
        let argc = args.len();
        let outcome = match command {
            "bail" | "changes" | "echo" | "headers" | "timer" => {
                if argc != 2 {
                    return Ok(Some(usage(&format!(".{command} on|off"))));
                }
                let value = boolean(&args[1]);
                match command {
                    "bail" => self.bail = value,
                    "changes" => self.changes = value,
                    "echo" => self.echo = value,
                    "timer" => self.timer = value,
                    _ => {
                        self.style.show_header = value;
                        self.header_set = true;
                    }
                }
                DotOutcome::Done
            }
            "databases" => {
                let access = if self.conn.is_readonly("main").unwrap_or(false) {
                    "r/o"
                } else {
                    "r/w"
                };
                let label = self.file_label.clone();
                writeln!(self.output.writer, "main: {label} {access}")?;
                DotOutcome::Done
            }
            "dump" => self.dump(&args[1..])?,
            "exit" | "quit" => {
                if command == "exit" && argc > 1 {
                    self.exit_code = Some(args[1].parse::<i64>().unwrap_or(0) as u8);
                }
                DotOutcome::Quit
            }
            "help" => {
                self.output.writer.write_all(HELP.as_bytes())?;
                DotOutcome::Done
            }
            "import" => self.import(&args[1..])?,
            "indexes" | "indices" => self.list_names(false, args.get(1))?,
            "tables" => self.list_names(true, args.get(1))?,
            "mode" => return self.mode_command(args),
            "nullvalue" => {
                if argc != 2 {
                    return Ok(Some(usage(".nullvalue STRING")));
                }
                self.style.null_value = args[1].clone().into_bytes();
                DotOutcome::Done
            }
            "once" | "output" => self.output_command(command == "once", &args[1..])?,
            "print" => {
                let text = args[1..].join(" ");
                writeln!(self.output.writer, "{text}")?;
                DotOutcome::Done
            }
            "read" => self.read_command(args)?,
            "schema" => self.schema(args.get(1))?,
            "separator" => {
                if !(2..=3).contains(&argc) {
                    return Ok(Some(usage(".separator COL ?ROW?")));
                }
                self.style.column_separator = args[1].clone().into_bytes();
                if argc == 3 {
                    self.style.row_separator = args[2].clone().into_bytes();
                }
                DotOutcome::Done
            }
            "show" => {
                self.show()?;
                DotOutcome::Done
            }
            "width" => {
                self.style.widths = args[1..]
                    .iter()
                    .map(|w| w.parse::<i32>().unwrap_or(0))
                    .collect();
                DotOutcome::Done
            }
            _ => return Ok(None),
        };
        Ok(Some(outcome))
    }

    fn mode_command(&mut self, args: &[String]) -> io::Result<Option<DotOutcome>> {
        let Some(name) = args.get(1) else {
            let mut description = self.style.mode.name().to_string();
            if self.style.mode.is_columnar() {
                description.push_str(" --wrap 60 --wordwrap off --noquote");
            }
            writeln!(self.output.writer, "current output mode: {description}")?;
            return Ok(Some(DotOutcome::Done));
        };
        let Some(mode) = Mode::parse(name) else {
            eprintln!("Error: mode should be one of: {MODE_NAMES}");
            return Ok(Some(DotOutcome::Failed));
        };
        self.set_mode(mode);
        if mode == Mode::Insert
            && let Some(table) = args.get(2)
        {
            self.style.insert_table = quote_identifier(table);
        }
        Ok(Some(DotOutcome::Done))
    }

    fn output_command(&mut self, once: bool, args: &[String]) -> io::Result<DotOutcome> {
        let file = args.iter().find(|arg| !arg.starts_with('-'));
        let Some(file) = file else {
            if once {
                return Ok(usage(".once FILE"));
            }
            self.set_output(Output::stdout())?;
            return Ok(DotOutcome::Done);
        };
        if file == "stdout" || file == "-" {
            self.set_output(Output::stdout())?;
            return Ok(DotOutcome::Done);
        }
        match std::fs::File::create(file) {
            Ok(handle) => {
                self.set_output(Output {
                    writer: Box::new(io::BufWriter::new(handle)),
                    name: file.clone(),
                    once,
                })?;
                Ok(DotOutcome::Done)
            }
            Err(_) => {
                self.set_output(Output::stdout())?;
                eprintln!("Error: cannot write to \"{file}\"");
                Ok(DotOutcome::Failed)
            }
        }
    }

    fn read_command(&mut self, args: &[String]) -> io::Result<DotOutcome> {
        if args.len() != 2 {
            return Ok(usage(".read FILE"));
        }
        let file = match std::fs::File::open(&args[1]) {
            Ok(file) => file,
            Err(_) => {
                eprintln!("Error: cannot open \"{}\"", args[1]);
                return Ok(DotOutcome::Failed);
            }
        };
        let interactive = std::mem::replace(&mut self.interactive, false);
        let mut state = Input::new();
        let flow = self.process(io::BufReader::new(file), &mut state);
        self.interactive = interactive;
        // `.quit` in a read file ends that file only, as in sqlite3 3.40.
        flow?;
        Ok(if state.errors > 0 {
            DotOutcome::Failed
        } else {
            DotOutcome::Done
        })
    }

    /// `.tables` / `.indexes`: names in columns across an 80-character line.
    fn list_names(&mut self, tables: bool, pattern: Option<&String>) -> io::Result<DotOutcome> {
        let pattern = pattern.map_or("%".to_string(), |p| p.clone());
        let sql = if tables {
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') \
             AND name NOT LIKE 'sqlite_%' AND name LIKE ?1 ORDER BY 1"
        } else {
            "SELECT name FROM sqlite_schema WHERE type='index' AND tbl_name LIKE ?1 ORDER BY 1"
        };
        let names = match self.query_strings(sql, &pattern) {
            Ok(names) => names,
            Err(error) => {
                eprintln!("Error: {error}");
                return Ok(DotOutcome::Failed);
            }
        };
        let longest = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let columns = (80 / (longest + 2)).max(1);
        let rows = names.len().div_ceil(columns);
        for row in 0..rows {
            let mut line = String::new();
            for (index, name) in names.iter().enumerate().skip(row).step_by(rows) {
                if index >= rows {
                    line.push_str("  ");
                }
                line.push_str(&format!("{name:<longest$}"));
            }
            writeln!(self.output.writer, "{line}")?;
        }
        Ok(DotOutcome::Done)
    }

    fn query_strings(&self, sql: &str, parameter: &str) -> rusqlite::Result<Vec<String>> {
        let mut statement = self.conn.prepare(sql)?;
        let rows = statement.query_map([parameter], |row| row.get::<_, String>(0))?;
        rows.collect()
    }

    /// `.schema`: the CREATE statements in schema order, with a view's columns as a
    /// comment and a quoted table name made `IF NOT EXISTS`.
    fn schema(&mut self, pattern: Option<&String>) -> io::Result<DotOutcome> {
        let mut sql = String::from("SELECT sql, type, name FROM sqlite_schema WHERE ");
        if let Some(pattern) = pattern {
            let glob = pattern.contains(['*', '?', '[']);
            sql.push_str("lower(tbl_name)");
            sql.push_str(if glob { " GLOB " } else { " LIKE " });
            sql.push_str(&sql_literal(pattern));
            if !glob {
                sql.push_str(" ESCAPE '\\'");
            }
            sql.push_str(" AND ");
        }
        sql.push_str("sql IS NOT NULL ORDER BY rowid");
        let entries = match self.schema_entries(&sql) {
            Ok(entries) => entries,
            Err(error) => {
                eprintln!("Error: {error}");
                return Ok(DotOutcome::Failed);
            }
        };
        for (text, kind, name) in entries {
            let mut text = text;
            if kind == "view"
                && let Some(columns) = self.fake_schema(&name)
            {
                text = format!("{text}\n/* {columns} */");
            }
            let line = schema_line(&text, ";");
            writeln!(self.output.writer, "{line}")?;
        }
        Ok(DotOutcome::Done)
    }

    pub(super) fn schema_entries(
        &self,
        sql: &str,
    ) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut statement = self.conn.prepare(sql)?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect()
    }

    /// sqlite3's `shellFakeSchema`: `name(col,col)` of a view, quoted where needed.
    fn fake_schema(&self, name: &str) -> Option<String> {
        let sql = format!("PRAGMA main.table_info={}", sql_literal(name));
        let mut statement = self.conn.prepare(&sql).ok()?;
        let columns: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(1))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        let quote = |text: &str| {
            if needs_quotes(text) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text.to_string()
            }
        };
        let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        Some(format!("{}({})", quote(name), list.join(",")))
    }

    fn show(&mut self) -> io::Result<()> {
        let style = &self.style;
        let on_off = |value: bool| if value { "on" } else { "off" };
        let mut mode = style.mode.name().to_string();
        if style.mode.is_columnar() {
            mode.push_str(" --wrap 60 --wordwrap off --noquote");
        }
        let widths: String = style.widths.iter().map(|w| format!("{w} ")).collect();
        let lines = [
            ("echo", on_off(self.echo).to_string()),
            ("eqp", "off".to_string()),
            ("explain", "auto".to_string()),
            ("headers", on_off(style.show_header).to_string()),
            ("mode", mode),
            ("nullvalue", c_escaped(&style.null_value)),
            ("output", self.output.name.clone()),
            ("colseparator", c_escaped(&style.column_separator)),
            ("rowseparator", c_escaped(&style.row_separator)),
            ("stats", "off".to_string()),
            ("width", widths),
            ("filename", self.file_label.clone()),
        ];
        let mut text = String::new();
        for (label, value) in lines {
            text.push_str(&format!("{label:>12}: {value}\n"));
        }
        self.output.writer.write_all(text.as_bytes())
    }
}

/// sqlite3's `printSchemaLine`: close a trailing comment before the `;`, and write a
/// table whose name is quoted as `CREATE TABLE IF NOT EXISTS`.
pub fn schema_line(sql: &str, tail: &str) -> String {
    let mut text = sql.to_string();
    if tail.starts_with(';') && (sql.contains("/*") || sql.contains("--")) {
        for ending in ["", "*/", "\n"] {
            let candidate = format!("{sql}{ending};");
            if super::is_complete(&candidate) {
                text = format!("{sql}{ending}");
                break;
            }
        }
    }
    if let Some(rest) = text.strip_prefix("CREATE TABLE ")
        && (rest.starts_with('"') || rest.starts_with('\''))
    {
        return format!("CREATE TABLE IF NOT EXISTS {rest}{tail}");
    }
    format!("{text}{tail}")
}

fn usage(text: &str) -> DotOutcome {
    eprintln!("Usage: {text}");
    DotOutcome::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_as_sqlite3_splits_them() {
        assert_eq!(
            parse_arguments("mode insert 'my table'"),
            ["mode", "insert", "my table"]
        );
        assert_eq!(
            parse_arguments("separator \\t \"\\n\""),
            ["separator", "\t", "\n"]
        );
        assert_eq!(lookup("h"), None);
        assert_eq!(lookup("he"), Some("headers"));
        assert_eq!(lookup("q"), Some("quit"));
    }

    #[test]
    fn schema_lines() {
        assert_eq!(
            schema_line("CREATE TABLE \"a b\"(x)", ";"),
            "CREATE TABLE IF NOT EXISTS \"a b\"(x);"
        );
        assert_eq!(
            schema_line("CREATE TABLE t(x -- c", ";"),
            "CREATE TABLE t(x -- c\n;"
        );
    }
}
