//! The shell of `sixfold sql`: the sqlite3 3.40 shell's input rules, dot commands and
//! output modes, on a database of the volume (docs/sql.md, "The shell").
//!
//! Input is read line by line as sqlite3 reads it: a line starting with `.` (when no
//! statement is pending) is a dot command, `#` a comment, anything else accumulates
//! until `sqlite3_complete` says a statement ends. An error is reported with the line its
//! text started on and the shell goes on, unless `.bail on`; the exit code is 1 if any
//! error happened.

mod dot_commands;
mod dump;
mod format;
mod import;
mod long_double;
mod output_modes;

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::fallible_iterator::FallibleIterator;

pub use format::Value;
pub use output_modes::Mode;
pub use output_modes::{Renderer, Style};

/// What the command line asked of the shell (sqlite3's options).
#[derive(Default)]
pub struct Options {
    pub mode: Option<Mode>,
    pub header: Option<bool>,
    pub bail: bool,
    pub echo: bool,
    pub null_value: Option<String>,
    pub separator: Option<String>,
    /// `-cmd`: run before the input, in order.
    pub commands: Vec<String>,
    /// SQL or dot commands given as arguments: run instead of reading the input.
    pub sql: Vec<String>,
}

/// Where rows go: standard output, or a file after `.output`/`.once`.
struct Output {
    writer: Box<dyn Write>,
    name: String,
    /// `.once`: back to standard output after the next SQL.
    once: bool,
}

impl Output {
    fn stdout() -> Output {
        Output {
            writer: Box::new(io::BufWriter::new(io::stdout())),
            name: "stdout".to_string(),
            once: false,
        }
    }
}

/// The state `.show` describes.
pub struct Shell<'c> {
    conn: &'c Connection,
    /// The name `.databases` and `.show` give the main database.
    file_label: String,
    style: Style,
    /// `.headers` was given: `.mode column` no longer turns headers on.
    header_set: bool,
    bail: bool,
    echo: bool,
    timer: bool,
    changes: bool,
    /// Reading from a terminal: errors carry no line number, `.bail` does not stop.
    interactive: bool,
    output: Output,
    /// `.exit CODE`: the process's exit code.
    exit_code: Option<u8>,
}

/// How one SQL text failed, as sqlite3 words it.
#[derive(Debug)]
pub enum ExecError {
    Sql {
        /// "in prepare" or "stepping".
        phase: &'static str,
        /// SQLite's message, its result code when above 1, and where a parse failed.
        message: String,
        /// SQLite's primary result code (the exit code of SQL given as an argument).
        code: u8,
    },
    Io(io::Error),
}

impl From<io::Error> for ExecError {
    fn from(error: io::Error) -> ExecError {
        ExecError::Io(error)
    }
}

/// Whether a dot command asks to stop (`.quit`) or failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DotOutcome {
    Done,
    Failed,
    Quit,
}

/// One input source: its line number and the statement being accumulated.
struct Input {
    pending: String,
    start_line: usize,
    line_no: usize,
    errors: usize,
}

impl Input {
    fn new() -> Input {
        Input {
            pending: String::new(),
            start_line: 0,
            line_no: 0,
            errors: 0,
        }
    }
}

enum LineFlow {
    Continue,
    Quit,
}

/// The shell's longest statement text, in bytes.
const STATEMENT_BYTES_MAX: usize = 64 << 20;

impl<'c> Shell<'c> {
    pub fn new(conn: &'c Connection, file_label: String, interactive: bool) -> Shell<'c> {
        Shell {
            conn,
            file_label,
            style: Style {
                mode: Mode::List,
                show_header: false,
                null_value: Vec::new(),
                column_separator: b"|".to_vec(),
                row_separator: b"\n".to_vec(),
                insert_table: "\"table\"".to_string(),
                widths: Vec::new(),
                wrap: 60,
            },
            header_set: false,
            bail: false,
            echo: false,
            timer: false,
            changes: false,
            interactive,
            output: Output::stdout(),
            exit_code: None,
        }
    }

    /// Runs the shell as `sqlite3 [options] FILE [SQL...]` does; the exit code is sqlite3's.
    pub fn run(mut self, options: Options, input: impl BufRead) -> io::Result<ExitCode> {
        self.apply(&options);
        // `-cmd`: a failure (or `.quit`) ends the run only under `-bail`, as in sqlite3.
        for command in &options.commands {
            let failure = if command.starts_with('.') {
                match self.dot_command(command)? {
                    DotOutcome::Done => None,
                    DotOutcome::Quit => Some(0),
                    DotOutcome::Failed => Some(1),
                }
            } else {
                self.argument_sql(command)?
            };
            if let Some(code) = failure
                && self.bail
            {
                return self.finish(ExitCode::from(code));
            }
        }
        if !options.sql.is_empty() {
            for text in &options.sql {
                if text.starts_with('.') {
                    match self.dot_command(text)? {
                        DotOutcome::Done => {}
                        DotOutcome::Quit => return self.finish(ExitCode::SUCCESS),
                        DotOutcome::Failed => return self.finish(ExitCode::FAILURE),
                    }
                } else if let Some(code) = self.argument_sql(text)? {
                    return self.finish(ExitCode::from(code.max(1)));
                }
            }
            return self.finish(ExitCode::SUCCESS);
        }
        let mut state = Input::new();
        self.process(input, &mut state)?;
        let code = if state.errors > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
        self.finish(code)
    }

    fn finish(mut self, code: ExitCode) -> io::Result<ExitCode> {
        self.output.writer.flush()?;
        Ok(self.exit_code.map_or(code, ExitCode::from))
    }

    fn apply(&mut self, options: &Options) {
        if let Some(mode) = options.mode {
            self.set_flag_mode(mode);
        }
        if let Some(header) = options.header {
            self.style.show_header = header;
            self.header_set = true;
        }
        if let Some(null) = &options.null_value {
            self.style.null_value = null.clone().into_bytes();
        }
        if let Some(separator) = &options.separator {
            self.style.column_separator = separator.clone().into_bytes();
        }
        self.bail = options.bail;
        self.echo = options.echo;
    }

    /// SQL given with `-cmd` or as an argument: errors are "Error: …"; returns the
    /// failing statement's result code.
    fn argument_sql(&mut self, sql: &str) -> io::Result<Option<u8>> {
        match self.execute(sql) {
            Ok(()) => Ok(None),
            Err(ExecError::Io(error)) => Err(error),
            Err(ExecError::Sql {
                phase,
                message,
                code,
            }) => {
                self.output.writer.flush()?;
                eprintln!("Error: {phase}, {message}");
                Ok(Some(code))
            }
        }
    }

    /// Reads `input` to its end (or `.quit`, or the first error under `.bail on`).
    fn process(&mut self, input: impl BufRead, state: &mut Input) -> io::Result<LineFlow> {
        for line in input.split(b'\n') {
            if state.errors > 0 && self.bail && !self.interactive {
                return Ok(LineFlow::Continue);
            }
            let line = String::from_utf8_lossy(&line?).into_owned();
            if let LineFlow::Quit = self.line(&line, state)? {
                return Ok(LineFlow::Quit);
            }
        }
        let stopped = state.errors > 0 && self.bail;
        if !state.pending.trim().is_empty() && !stopped {
            let sql = std::mem::take(&mut state.pending);
            self.echo_text(&sql)?;
            self.run_sql(&sql, state)?;
        }
        Ok(LineFlow::Continue)
    }

    /// One input line, as sqlite3's `process_input` handles it.
    fn line(&mut self, line: &str, state: &mut Input) -> io::Result<LineFlow> {
        state.line_no += 1;
        let mut line = line;
        if !state.pending.is_empty()
            && is_command_terminator(line)
            && is_complete(&format!("{};", state.pending))
        {
            line = ";";
        }
        if state.pending.is_empty() && is_blank(line) {
            self.echo_text(line)?;
            return Ok(LineFlow::Continue);
        }
        if state.pending.is_empty() && (line.starts_with('.') || line.starts_with('#')) {
            self.echo_text(line)?;
            if line.starts_with('.') {
                match self.dot_command(line)? {
                    DotOutcome::Quit => return Ok(LineFlow::Quit),
                    DotOutcome::Failed => state.errors += 1,
                    DotOutcome::Done => {}
                }
            }
            return Ok(LineFlow::Continue);
        }
        if state.pending.is_empty() {
            state.pending.push_str(line.trim_start());
            state.start_line = state.line_no;
        } else {
            state.pending.push('\n');
            state.pending.push_str(line);
        }
        if state.pending.len() > STATEMENT_BYTES_MAX {
            self.output.writer.flush()?;
            eprintln!("Error: statement over {STATEMENT_BYTES_MAX} bytes; skipped");
            state.pending.clear();
            state.errors += 1;
            return Ok(LineFlow::Continue);
        }
        if is_complete(&state.pending) {
            let sql = std::mem::take(&mut state.pending);
            self.echo_text(&sql)?;
            self.run_sql(&sql, state)?;
            if self.output.once {
                self.set_output(Output::stdout())?;
            }
        } else if is_blank(&state.pending) {
            state.pending.clear();
        }
        Ok(LineFlow::Continue)
    }

    fn echo_text(&mut self, text: &str) -> io::Result<()> {
        if self.echo {
            writeln!(self.output.writer, "{text}")?;
        }
        Ok(())
    }

    /// sqlite3's `runOneSqlLine`: run, then report an error with its line, or the
    /// change counts under `.changes on`.
    fn run_sql(&mut self, sql: &str, state: &mut Input) -> io::Result<()> {
        let started = Instant::now();
        let cpu_before = cpu_seconds();
        let result = self.execute(sql);
        if self.timer {
            let (user, system) = cpu_seconds();
            writeln!(
                self.output.writer,
                "Run Time: real {:.3} user {:.6} sys {:.6}",
                started.elapsed().as_secs_f64(),
                user - cpu_before.0,
                system - cpu_before.1
            )?;
        }
        match result {
            Ok(()) => {
                if self.changes {
                    writeln!(
                        self.output.writer,
                        "changes: {}   total_changes: {}",
                        self.conn.changes(),
                        self.conn.total_changes()
                    )?;
                }
            }
            Err(ExecError::Io(error)) => return Err(error),
            Err(ExecError::Sql { phase, message, .. }) => {
                state.errors += 1;
                let kind = if phase == "in prepare" {
                    "Parse error"
                } else {
                    "Runtime error"
                };
                self.output.writer.flush()?;
                if self.interactive {
                    eprintln!("{kind}: {message}");
                } else {
                    eprintln!("{kind} near line {}: {message}", state.start_line);
                }
            }
        }
        self.output.writer.flush()
    }

    /// sqlite3's `shell_exec`: every statement of `sql` in turn, rows to the output;
    /// stops at the first error.
    pub fn execute(&mut self, sql: &str) -> Result<(), ExecError> {
        let mut batch = rusqlite::Batch::new(self.conn, sql);
        loop {
            let statement = match batch.next() {
                Ok(Some(statement)) => statement,
                Ok(None) => return Ok(()),
                Err(error) => return Err(self.sql_error("in prepare", error)),
            };
            self.run_statement(statement)?;
        }
    }

    fn run_statement(&mut self, mut statement: rusqlite::Statement<'_>) -> Result<(), ExecError> {
        let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
        let mut renderer = Renderer::new(self.style.clone(), columns.clone());
        let mut rows = statement.raw_query();
        let mut printed = 0usize;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(error) => {
                    renderer.finish(&mut self.output.writer)?;
                    return Err(self.sql_error("stepping", error));
                }
            };
            let values: Vec<Value> = (0..columns.len())
                .map(|index| row.get_ref(index).map(Value::from))
                .collect::<Result<_, _>>()
                .map_err(|error| self.sql_error("stepping", error))?;
            renderer.row(values, &mut self.output.writer)?;
            printed += 1;
        }
        renderer.finish(&mut self.output.writer)?;
        // sqlite3 grows its width list to the columns of each columnar result (`.show`).
        if self.style.mode.is_columnar() && printed > 0 && self.style.widths.len() < columns.len() {
            self.style.widths.resize(columns.len(), 0);
        }
        Ok(())
    }

    fn sql_error(&self, phase: &'static str, error: rusqlite::Error) -> ExecError {
        let (message, code, context) = match &error {
            rusqlite::Error::SqlInputError {
                error,
                msg,
                sql,
                offset,
            } => (
                msg.clone(),
                error.extended_code & 0xff,
                error_context(sql, *offset),
            ),
            rusqlite::Error::SqliteFailure(error, message) => (
                message.clone().unwrap_or_else(|| error.to_string()),
                error.extended_code & 0xff,
                String::new(),
            ),
            other => (other.to_string(), 1, String::new()),
        };
        let mut message = message;
        if code == rusqlite::ffi::SQLITE_IOERR
            && let Some(text) = sixfold_sql::last_vfs_error(self.conn)
        {
            message = format!("{message} ({text})");
        }
        if code > 1 {
            message = format!("{message} ({code})");
        }
        ExecError::Sql {
            phase,
            message: format!("{message}{context}"),
            code: u8::try_from(code).unwrap_or(1),
        }
    }

    /// `.mode`: some modes also reset the separators, as sqlite3's do.
    fn set_mode(&mut self, mode: Mode) {
        self.style.mode = mode;
        match mode {
            Mode::List => self.set_separators("|", "\n"),
            Mode::Tabs => self.style.column_separator = b"\t".to_vec(),
            Mode::Csv => self.set_separators(",", "\r\n"),
            Mode::Quote => self.set_separators(",", "\n"),
            Mode::Ascii => self.set_separators("\x1f", "\x1e"),
            Mode::Line => self.style.row_separator = b"\n".to_vec(),
            Mode::Column => {
                self.style.row_separator = b"\n".to_vec();
                if !self.header_set {
                    self.style.show_header = true;
                }
            }
            _ => {}
        }
        if mode == Mode::Insert {
            self.style.insert_table = "\"table\"".to_string();
        }
    }

    /// A mode given on the command line (`-csv`, ...): as sqlite3's flags, which reset
    /// fewer settings than `.mode` does (`-csv` keeps "\n" rows, `-column` no header).
    fn set_flag_mode(&mut self, mode: Mode) {
        self.style.mode = mode;
        match mode {
            Mode::Csv => self.style.column_separator = b",".to_vec(),
            Mode::Tabs => self.set_separators("\t", "\n"),
            Mode::Quote => self.set_separators(",", "\n"),
            Mode::Ascii => self.set_separators("\x1f", "\x1e"),
            _ => {}
        }
    }

    fn set_separators(&mut self, column: &str, row: &str) {
        self.style.column_separator = column.as_bytes().to_vec();
        self.style.row_separator = row.as_bytes().to_vec();
    }

    fn set_output(&mut self, output: Output) -> io::Result<()> {
        self.output.writer.flush()?;
        self.output = output;
        Ok(())
    }

    /// A terminal session: a prompt, line editing and history; Ctrl-C drops the
    /// statement being typed.
    pub fn run_interactive(mut self, options: Options, banner: &str) -> anyhow::Result<ExitCode> {
        use anyhow::Context;
        use rustyline::error::ReadlineError;
        self.apply(&options);
        for command in &options.commands {
            if command.starts_with('.') {
                self.dot_command(command)?;
            } else {
                self.argument_sql(command)?;
            }
        }
        let config = rustyline::Config::builder()
            .max_history_size(HISTORY_LINES_MAX)
            .context("history size")?
            .auto_add_history(false)
            .build();
        let mut editor =
            rustyline::DefaultEditor::with_config(config).context("starting the line editor")?;
        let history = history_path();
        if let Some(path) = &history {
            let _ = editor.load_history(path); // absent on first use
        }
        println!("{banner}");
        let mut state = Input::new();
        loop {
            let prompt = if state.pending.is_empty() {
                "sixfold> "
            } else {
                "   ...> "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    state.pending.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(error) => return Err(error).context("reading a line"),
            };
            // History keeps whole statements, however many lines they took.
            let statement = if state.pending.is_empty() {
                line.clone()
            } else {
                format!("{}\n{line}", state.pending)
            };
            let flow = self.line(&line, &mut state)?;
            if state.pending.is_empty() && !is_blank(&statement) {
                let _ = editor.add_history_entry(statement.as_str());
            }
            if let LineFlow::Quit = flow {
                break;
            }
        }
        if let Some(path) = &history
            && let Err(error) = editor.save_history(path)
        {
            eprintln!("warning: history not saved to {}: {error}", path.display());
        }
        self.finish(ExitCode::SUCCESS).context("writing output")
    }
}

/// Most lines the interactive history keeps.
const HISTORY_LINES_MAX: usize = 1_000;

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".sixfold_history"))
}

/// sqlite3's caret under a parse error: the statement (up to 78 bytes around the error,
/// whitespace as spaces) and `^--- error here`.
fn error_context(sql: &str, offset: i32) -> String {
    let Ok(mut offset) = usize::try_from(offset) else {
        return String::new();
    };
    let trimmed = sql.trim_start();
    offset = offset.saturating_sub(sql.len() - trimmed.len());
    let mut text = trimmed.as_bytes();
    while offset > 50 {
        offset -= 1;
        text = &text[1..];
        while text.first().is_some_and(|b| b & 0xc0 == 0x80) {
            text = &text[1..];
            offset = offset.saturating_sub(1);
        }
    }
    let mut len = text.len().min(78);
    while len < text.len() && len > 0 && text[len] & 0xc0 == 0x80 {
        len -= 1;
    }
    let code: String = String::from_utf8_lossy(&text[..len])
        .chars()
        .map(|c| if c.is_ascii_whitespace() { ' ' } else { c })
        .collect();
    if offset < 25 {
        format!("\n  {code}\n  {}^--- error here", " ".repeat(offset))
    } else {
        format!("\n  {code}\n  {}error here ---^", " ".repeat(offset - 14))
    }
}

/// A line holding only whitespace or a `--` comment.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with("--")
    })
}

/// sqlite3 also ends a statement with a line holding only `/` or `go`.
fn is_command_terminator(line: &str) -> bool {
    let line = line.trim_start();
    let rest = if let Some(rest) = line.strip_prefix('/') {
        rest
    } else if line.len() >= 2 && line[..2].eq_ignore_ascii_case("go") {
        &line[2..]
    } else {
        return false;
    };
    rest.trim().is_empty()
}

/// `sqlite3_complete`: the text ends with a complete statement.
pub fn is_complete(sql: &str) -> bool {
    sixfold_sql::shell::is_complete(sql)
}

/// CPU seconds (user, system) of this process, from /proc (zero where absent).
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_and_terminators() {
        assert!(is_blank("   "));
        assert!(is_blank("-- note"));
        assert!(!is_blank("SELECT 1;"));
        assert!(is_command_terminator("go"));
        assert!(is_command_terminator("  /  "));
        assert!(!is_command_terminator("gone"));
    }

    #[test]
    fn caret_points_at_the_error() {
        assert_eq!(
            error_context("SELEC 5;", 0),
            "\n  SELEC 5;\n  ^--- error here"
        );
    }
}
