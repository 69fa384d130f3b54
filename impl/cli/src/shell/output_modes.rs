//! The output modes of `.mode`, each printing rows as the sqlite3 3.40 shell does.

use std::io::{self, Write};

use super::format::{
    Value, c_string, char_count, csv_field, hex_blob, json_string, quote_identifier, quoted,
    quoted_escaped, real_20, real_insert,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    List,
    Tabs,
    Ascii,
    Csv,
    Json,
    Line,
    Column,
    Box,
    Table,
    Markdown,
    Quote,
    Insert,
    Html,
}

/// `.mode`'s names, in the order sqlite3 lists them.
pub const MODE_NAMES: &str =
    "ascii box column csv html insert json line list markdown qbox quote table tabs tcl";

impl Mode {
    /// A mode by name or a prefix of it, matched in sqlite3's order (`.mode li` is line).
    pub fn parse(name: &str) -> Option<Mode> {
        const ORDER: &[(&str, Option<Mode>)] = &[
            ("lines", Some(Mode::Line)),
            ("columns", Some(Mode::Column)),
            ("list", Some(Mode::List)),
            ("html", Some(Mode::Html)),
            ("tcl", None),
            ("csv", Some(Mode::Csv)),
            ("tabs", Some(Mode::Tabs)),
            ("insert", Some(Mode::Insert)),
            ("quote", Some(Mode::Quote)),
            ("ascii", Some(Mode::Ascii)),
            ("markdown", Some(Mode::Markdown)),
            ("table", Some(Mode::Table)),
            ("box", Some(Mode::Box)),
            ("json", Some(Mode::Json)),
        ];
        if name.is_empty() {
            return None;
        }
        ORDER
            .iter()
            .find(|(full, _)| full.starts_with(name))
            .and_then(|(_, mode)| *mode)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::List => "list",
            Mode::Tabs => "list",
            Mode::Ascii => "ascii",
            Mode::Csv => "csv",
            Mode::Json => "json",
            Mode::Line => "line",
            Mode::Column => "column",
            Mode::Box => "box",
            Mode::Table => "table",
            Mode::Markdown => "markdown",
            Mode::Quote => "quote",
            Mode::Insert => "insert",
            Mode::Html => "html",
        }
    }

    /// Modes that read every row before printing, to size the columns.
    pub fn is_columnar(self) -> bool {
        matches!(
            self,
            Mode::Column | Mode::Box | Mode::Table | Mode::Markdown
        )
    }
}

/// What the renderer needs of the shell's settings.
#[derive(Clone)]
pub struct Style {
    pub mode: Mode,
    pub show_header: bool,
    pub null_value: Vec<u8>,
    pub column_separator: Vec<u8>,
    pub row_separator: Vec<u8>,
    /// Insert mode's target, already quoted if it needs quotes.
    pub insert_table: String,
    /// `.width`: a column's width, negative for right-aligned, 0 for automatic.
    pub widths: Vec<i32>,
    /// Columnar modes wrap text longer than this (sqlite3's `--wrap 60`).
    pub wrap: usize,
}

/// Prints one statement's rows: [`Renderer::row`] for each, then [`Renderer::finish`].
pub struct Renderer {
    style: Style,
    columns: Vec<String>,
    count: usize,
    held: Vec<Vec<Value>>,
}

impl Renderer {
    pub fn new(style: Style, columns: Vec<String>) -> Renderer {
        Renderer {
            style,
            columns,
            count: 0,
            held: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Vec<Value>, out: &mut dyn Write) -> io::Result<()> {
        if self.style.mode.is_columnar() {
            self.held.push(row);
            return Ok(());
        }
        let first = self.count == 0;
        self.count += 1;
        match self.style.mode {
            Mode::List | Mode::Tabs | Mode::Ascii => self.list_row(first, &row, out),
            Mode::Csv => self.csv_row(first, &row, out),
            Mode::Json => self.json_row(first, &row, out),
            Mode::Line => self.line_row(first, &row, out),
            Mode::Quote => self.quote_row(first, &row, out),
            Mode::Insert => self.insert_row(&row, out),
            Mode::Html => self.html_row(first, &row, out),
            Mode::Column | Mode::Box | Mode::Table | Mode::Markdown => Ok(()),
        }
    }

    pub fn finish(self, out: &mut dyn Write) -> io::Result<()> {
        if self.style.mode.is_columnar() {
            return columnar(&self.style, &self.columns, &self.held, out);
        }
        if self.style.mode == Mode::Json && self.count > 0 {
            out.write_all(b"]\n")?;
        }
        Ok(())
    }

    fn text_or_null(&self, value: &Value) -> Vec<u8> {
        value
            .text()
            .unwrap_or_else(|| self.style.null_value.clone())
    }

    fn list_row(&self, first: bool, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        let style = &self.style;
        if first && style.show_header {
            let names: Vec<&[u8]> = self.columns.iter().map(|c| c.as_bytes()).collect();
            write_joined(out, &names, &style.column_separator)?;
            out.write_all(&style.row_separator)?;
        }
        let cells: Vec<Vec<u8>> = row.iter().map(|v| self.text_or_null(v)).collect();
        write_joined(out, &cells, &style.column_separator)?;
        out.write_all(&style.row_separator)
    }

    fn csv_row(&self, first: bool, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        let style = &self.style;
        let separator = &style.column_separator;
        if first && style.show_header {
            let names: Vec<Vec<u8>> = self
                .columns
                .iter()
                .map(|name| csv_field(c_string(name.as_bytes()), separator))
                .collect();
            write_joined(out, &names, separator)?;
            out.write_all(&style.row_separator)?;
        }
        let cells: Vec<Vec<u8>> = row
            .iter()
            .map(|value| match value.text() {
                None => style.null_value.clone(),
                Some(text) => csv_field(&text, separator),
            })
            .collect();
        write_joined(out, &cells, separator)?;
        out.write_all(&style.row_separator)
    }

    fn json_row(&self, first: bool, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        out.write_all(if first { b"[{" } else { b",\n{" })?;
        for (index, (name, value)) in self.columns.iter().zip(row).enumerate() {
            if index > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&json_string(name.as_bytes()))?;
            out.write_all(b":")?;
            match value {
                Value::Null => out.write_all(b"null")?,
                Value::Integer(number) => write!(out, "{number}")?,
                Value::Real(number) if number.is_infinite() => {
                    out.write_all(if *number > 0.0 { b"1e999" } else { b"-1e999" })?
                }
                Value::Real(number) => out.write_all(real_20(*number).as_bytes())?,
                Value::Text(bytes) => out.write_all(&json_string(c_string(bytes)))?,
                Value::Blob(bytes) => out.write_all(&json_string(bytes))?,
            }
        }
        out.write_all(b"}")
    }

    fn line_row(&self, first: bool, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        let style = &self.style;
        if !first {
            out.write_all(&style.row_separator)?;
        }
        let width = self
            .columns
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(0)
            .max(5);
        for (name, value) in self.columns.iter().zip(row) {
            write!(out, "{name:>width$} = ")?;
            out.write_all(&self.text_or_null(value))?;
            out.write_all(&style.row_separator)?;
        }
        Ok(())
    }

    fn quote_row(&self, first: bool, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        let style = &self.style;
        if first && style.show_header {
            let names: Vec<Vec<u8>> = self.columns.iter().map(|c| quoted(c.as_bytes())).collect();
            write_joined(out, &names, &style.column_separator)?;
            out.write_all(&style.row_separator)?;
        }
        let cells: Vec<Vec<u8>> = row
            .iter()
            .map(|value| match value {
                Value::Null => b"NULL".to_vec(),
                Value::Integer(number) => number.to_string().into_bytes(),
                Value::Real(number) => real_20(*number).into_bytes(),
                Value::Text(bytes) => quoted(bytes),
                Value::Blob(bytes) => hex_blob(bytes).into_bytes(),
            })
            .collect();
        write_joined(out, &cells, &style.column_separator)?;
        out.write_all(&style.row_separator)
    }

    fn insert_row(&self, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        write!(out, "INSERT INTO {}", self.style.insert_table)?;
        if self.style.show_header {
            let names: Vec<String> = self.columns.iter().map(|c| quote_identifier(c)).collect();
            write!(out, "({})", names.join(","))?;
        }
        for (index, value) in row.iter().enumerate() {
            out.write_all(if index == 0 { b" VALUES(" } else { b"," })?;
            write_insert_value(value, out)?;
        }
        out.write_all(b");\n")
    }

    fn html_row(&self, first: bool, row: &[Value], out: &mut dyn Write) -> io::Result<()> {
        if first && self.style.show_header {
            out.write_all(b"<TR>")?;
            for name in &self.columns {
                out.write_all(b"<TH>")?;
                out.write_all(&html_escaped(name.as_bytes()))?;
                out.write_all(b"</TH>\n")?;
            }
            out.write_all(b"</TR>\n")?;
        }
        out.write_all(b"<TR>")?;
        for value in row {
            out.write_all(b"<TD>")?;
            out.write_all(&html_escaped(&self.text_or_null(value)))?;
            out.write_all(b"</TD>\n")?;
        }
        out.write_all(b"</TR>\n")
    }
}

/// One value as an SQL literal of insert mode and `.dump`.
pub fn write_insert_value(value: &Value, out: &mut dyn Write) -> io::Result<()> {
    match value {
        Value::Null => out.write_all(b"NULL"),
        Value::Integer(number) => write!(out, "{number}"),
        Value::Real(number) => out.write_all(real_insert(*number).as_bytes()),
        Value::Text(bytes) => out.write_all(&quoted_escaped(bytes)),
        Value::Blob(bytes) => out.write_all(hex_blob(bytes).as_bytes()),
    }
}

fn write_joined<T: AsRef<[u8]>>(
    out: &mut dyn Write,
    cells: &[T],
    separator: &[u8],
) -> io::Result<()> {
    for (index, cell) in cells.iter().enumerate() {
        if index > 0 {
            out.write_all(separator)?;
        }
        out.write_all(cell.as_ref())?;
    }
    Ok(())
}

fn html_escaped(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &byte in c_string(text) {
        match byte {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A cell's display lines: at most `width` characters each, tabs expanded to stops of 8,
/// a line ending at any other control character (`\r\n` counts as one).
fn display_lines(text: &[u8], width: usize) -> Vec<Vec<u8>> {
    let width = if width == 0 { 1_000_000 } else { width };
    let mut lines = Vec::new();
    let mut rest = text;
    loop {
        let (line, used) = one_display_line(rest, width);
        lines.push(line);
        rest = &rest[used..];
        if rest.is_empty() {
            return lines;
        }
    }
}

fn one_display_line(text: &[u8], width: usize) -> (Vec<u8>, usize) {
    let (mut line, mut shown, mut index) = (Vec::new(), 0, 0);
    while shown < width && index < text.len() {
        let byte = text[index];
        if byte >= b' ' {
            shown += 1;
            line.push(byte);
            index += 1;
            while index < text.len() && text[index] & 0xc0 == 0x80 {
                line.push(text[index]);
                index += 1;
            }
        } else if byte == b'\t' {
            loop {
                shown += 1;
                line.push(b' ');
                if shown % 8 == 0 || shown >= width {
                    break;
                }
            }
            index += 1;
        } else {
            let skip = if text[index..].starts_with(b"\r\n") {
                2
            } else {
                1
            };
            return (line, index + skip);
        }
    }
    (line, index)
}

/// The column, box, table and markdown modes: all rows are read first to size columns.
fn columnar(
    style: &Style,
    columns: &[String],
    rows: &[Vec<Value>],
    out: &mut dyn Write,
) -> io::Result<()> {
    if rows.is_empty() || columns.is_empty() {
        return Ok(());
    }
    let count = columns.len();
    let set_width = |index: usize| style.widths.get(index).copied().unwrap_or(0);
    let wrap_at = |index: usize| match set_width(index) {
        0 => style.wrap,
        width => width.unsigned_abs() as usize,
    };
    let header: Vec<Vec<u8>> = (0..count)
        .map(|i| display_lines(columns[i].as_bytes(), wrap_at(i)).remove(0))
        .collect();
    // Each row becomes one or more physical lines of cells.
    let mut physical: Vec<Vec<Vec<Vec<u8>>>> = Vec::with_capacity(rows.len());
    for row in rows {
        let cells: Vec<Vec<Vec<u8>>> = row
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let text = value.text().unwrap_or_else(|| style.null_value.clone());
                display_lines(&text, wrap_at(i))
            })
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        let lines = (0..height)
            .map(|line| {
                cells
                    .iter()
                    .map(|cell| cell.get(line).cloned().unwrap_or_default())
                    .collect()
            })
            .collect();
        physical.push(lines);
    }
    let multi_line = physical.iter().any(|lines| lines.len() > 1);
    let mut widths: Vec<usize> = (0..count)
        .map(|i| set_width(i).unsigned_abs() as usize)
        .collect();
    for line in std::iter::once(&header).chain(physical.iter().flatten()) {
        for (i, cell) in line.iter().enumerate() {
            widths[i] = widths[i].max(char_count(cell));
        }
    }
    let layout = Layout::of(style.mode);
    layout.header(style, &header, &widths, out)?;
    for (row_index, lines) in physical.iter().enumerate() {
        for line in lines {
            out.write_all(layout.row_start.as_bytes())?;
            for (i, cell) in line.iter().enumerate() {
                let right = set_width(i) < 0;
                write_padded(out, cell, widths[i], right)?;
                let end = if i + 1 == count {
                    layout.row_end
                } else {
                    layout.column_separator
                };
                out.write_all(end.as_bytes())?;
            }
        }
        if multi_line && row_index + 1 < physical.len() {
            layout.between_rows(&widths, out)?;
        }
    }
    layout.footer(&widths, out)
}

struct Layout {
    mode: Mode,
    row_start: &'static str,
    column_separator: &'static str,
    row_end: &'static str,
}

impl Layout {
    fn of(mode: Mode) -> Layout {
        let (row_start, column_separator, row_end) = match mode {
            Mode::Box => ("│ ", " │ ", " │\n"),
            Mode::Table | Mode::Markdown => ("| ", " | ", " |\n"),
            _ => ("", "  ", "\n"),
        };
        Layout {
            mode,
            row_start,
            column_separator,
            row_end,
        }
    }

    fn header(
        &self,
        style: &Style,
        names: &[Vec<u8>],
        widths: &[usize],
        out: &mut dyn Write,
    ) -> io::Result<()> {
        if self.mode == Mode::Column {
            if !style.show_header {
                return Ok(());
            }
            for (i, name) in names.iter().enumerate() {
                let right = style.widths.get(i).copied().unwrap_or(0) < 0;
                write_padded(out, name, widths[i], right)?;
                out.write_all(if i + 1 == names.len() { b"\n" } else { b"  " })?;
            }
            for (i, width) in widths.iter().enumerate() {
                out.write_all("-".repeat(*width).as_bytes())?;
                out.write_all(if i + 1 == widths.len() { b"\n" } else { b"  " })?;
            }
            return Ok(());
        }
        match self.mode {
            Mode::Table => rule(out, widths, "+", "+", "+", "-")?,
            Mode::Box => rule(out, widths, "┌", "┬", "┐", "─")?,
            _ => {}
        }
        out.write_all(self.row_start.as_bytes())?;
        for (i, name) in names.iter().enumerate() {
            let gap = widths[i].saturating_sub(char_count(name));
            out.write_all(" ".repeat(gap / 2).as_bytes())?;
            out.write_all(name)?;
            out.write_all(" ".repeat(gap.div_ceil(2)).as_bytes())?;
            let end = if i + 1 == names.len() {
                self.row_end
            } else {
                self.column_separator
            };
            out.write_all(end.as_bytes())?;
        }
        match self.mode {
            Mode::Table => rule(out, widths, "+", "+", "+", "-"),
            Mode::Markdown => rule(out, widths, "|", "|", "|", "-"),
            Mode::Box => rule(out, widths, "├", "┼", "┤", "─"),
            _ => Ok(()),
        }
    }

    fn between_rows(&self, widths: &[usize], out: &mut dyn Write) -> io::Result<()> {
        match self.mode {
            Mode::Table => rule(out, widths, "+", "+", "+", "-"),
            Mode::Box => rule(out, widths, "├", "┼", "┤", "─"),
            Mode::Column => out.write_all(b"\n"),
            _ => Ok(()),
        }
    }

    fn footer(&self, widths: &[usize], out: &mut dyn Write) -> io::Result<()> {
        match self.mode {
            Mode::Table => rule(out, widths, "+", "+", "+", "-"),
            Mode::Box => rule(out, widths, "└", "┴", "┘", "─"),
            _ => Ok(()),
        }
    }
}

fn rule(
    out: &mut dyn Write,
    widths: &[usize],
    left: &str,
    middle: &str,
    right: &str,
    line: &str,
) -> io::Result<()> {
    let mut text = String::from(left);
    for (i, width) in widths.iter().enumerate() {
        if i > 0 {
            text.push_str(middle);
        }
        text.push_str(&line.repeat(width + 2));
    }
    text.push_str(right);
    text.push('\n');
    out.write_all(text.as_bytes())
}

/// sqlite3's `utf8_width_print`: pad (or cut) to `width` characters.
fn write_padded(out: &mut dyn Write, text: &[u8], width: usize, right: bool) -> io::Result<()> {
    let shown = char_count(text);
    if shown >= width {
        let mut seen = 0;
        let end = text
            .iter()
            .position(|&byte| {
                if byte & 0xc0 != 0x80 {
                    seen += 1;
                }
                seen > width
            })
            .unwrap_or(text.len());
        return out.write_all(&text[..end]);
    }
    let pad = " ".repeat(width - shown);
    if right {
        out.write_all(pad.as_bytes())?;
        out.write_all(text)
    } else {
        out.write_all(text)?;
        out.write_all(pad.as_bytes())
    }
}
