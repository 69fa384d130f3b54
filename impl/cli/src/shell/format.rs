//! Values as the sqlite3 3.40 shell prints them (docs/sql.md, "The shell").
//!
//! The bundled SQLite (3.54) renders a REAL as text with the shortest round-trip form
//! (`0.30000000000000004`); the stock shell of Debian 12 (3.40) uses SQLite's own
//! `%!.15g` (`0.3`). The shell is what users compare against, so the shell formats values
//! itself instead of asking SQLite for the text.

use rusqlite::types::ValueRef;

/// One result value, owned (a row is rendered after its statement has stepped on).
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(value: ValueRef<'_>) -> Value {
        match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(number) => Value::Integer(number),
            ValueRef::Real(number) => Value::Real(number),
            ValueRef::Text(bytes) => Value::Text(bytes.to_vec()),
            ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        }
    }
}

impl Value {
    /// The value as `sqlite3_column_text` gives it to the 3.40 shell (REAL as `%!.15g`),
    /// cut at the first NUL byte as the shell's `%s` cuts it; `None` for NULL.
    pub fn text(&self) -> Option<Vec<u8>> {
        match self {
            Value::Null => None,
            Value::Integer(number) => Some(number.to_string().into_bytes()),
            Value::Real(number) => Some(real_g(*number, 15).into_bytes()),
            Value::Text(bytes) | Value::Blob(bytes) => Some(c_string(bytes).to_vec()),
        }
    }
}

/// The bytes before the first NUL: what C's `%s` prints.
pub fn c_string(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&byte| byte == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// SQLite 3.40's `%!.<digits>g`: `digits` significant digits (computed as 3.40 computes
/// them, in `long double`), trailing zeros dropped but a `.0` kept, an exponent of at
/// least two digits, `Inf`/`-Inf` for infinities.
pub fn real_g(number: f64, digits: usize) -> String {
    if number.is_nan() {
        return "NaN".to_string();
    }
    super::long_double::sqlite_g(number, digits)
}

/// A REAL in quote and JSON modes: `%!.20g`.
pub fn real_20(number: f64) -> String {
    real_g(number, 20)
}

/// A REAL in insert mode (and `.dump`): `1e999`/`-1e999` for infinities, `N.0` for a
/// whole number that fits an i64, else `%!.20g`.
pub fn real_insert(number: f64) -> String {
    if number.is_infinite() {
        return if number > 0.0 { "1e999" } else { "-1e999" }.to_string();
    }
    if number.abs() < 9.0e18 && number == (number as i64) as f64 {
        return format!("{}.0", number as i64);
    }
    real_20(number)
}

/// `X'…'` with lowercase hex digits.
pub fn hex_blob(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2 + 3);
    text.push_str("X'");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\'');
    text
}

/// `'text'` with each `'` doubled, cut at a NUL (quote mode).
pub fn quoted(bytes: &[u8]) -> Vec<u8> {
    let mut text = vec![b'\''];
    for &byte in c_string(bytes) {
        text.push(byte);
        if byte == b'\'' {
            text.push(b'\'');
        }
    }
    text.push(b'\'');
    text
}

/// Insert mode's string literal: as [`quoted`], but newlines and carriage returns are
/// written as `\n`/`\r` inside `replace(…,'\n',char(10))` so the statement stays on one
/// line.
pub fn quoted_escaped(bytes: &[u8]) -> Vec<u8> {
    let text = c_string(bytes);
    let has_nl = text.contains(&b'\n');
    let has_cr = text.contains(&b'\r');
    if !has_nl && !has_cr {
        return quoted(text);
    }
    let newline = unused_marker(text, "\\n", "\\012");
    let carriage = unused_marker(text, "\\r", "\\015");
    let mut out = Vec::new();
    if has_nl {
        out.extend_from_slice(b"replace(");
    }
    if has_cr {
        out.extend_from_slice(b"replace(");
    }
    out.push(b'\'');
    for &byte in text {
        match byte {
            b'\'' => out.extend_from_slice(b"''"),
            b'\n' => out.extend_from_slice(newline.as_bytes()),
            b'\r' => out.extend_from_slice(carriage.as_bytes()),
            other => out.push(other),
        }
    }
    out.push(b'\'');
    if has_cr {
        out.extend_from_slice(format!(",'{carriage}',char(13))").as_bytes());
    }
    if has_nl {
        out.extend_from_slice(format!(",'{newline}',char(10))").as_bytes());
    }
    out
}

/// The first of `first`, `second`, `(firstN)` that does not occur in `text`.
fn unused_marker(text: &[u8], first: &str, second: &str) -> String {
    let absent = |marker: &str| !contains(text, marker.as_bytes());
    if absent(first) {
        return first.to_string();
    }
    if absent(second) {
        return second.to_string();
    }
    (0u32..)
        .map(|n| format!("({first}{n})"))
        .find(|marker| absent(marker))
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A JSON string: `"`, `\` and control characters escaped, other bytes as they are.
pub fn json_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &byte in bytes {
        match byte {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', byte]),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            other => out.push(other),
        }
    }
    out.push(b'"');
    out
}

/// Whether a CSV field must be quoted: empty, or holding a control character, a space,
/// `"`, `'`, DEL, a non-ASCII byte, or the column separator.
pub fn csv_needs_quote(text: &[u8], separator: &[u8]) -> bool {
    text.is_empty()
        || text
            .iter()
            .any(|&byte| byte <= b' ' || byte == b'"' || byte == b'\'' || byte >= 0x7f)
        || (!separator.is_empty() && contains(text, separator))
}

/// A CSV field, `"…"` with `"` doubled when it needs quoting.
pub fn csv_field(text: &[u8], separator: &[u8]) -> Vec<u8> {
    if !csv_needs_quote(text, separator) {
        return text.to_vec();
    }
    let mut out = vec![b'"'];
    for &byte in text {
        out.push(byte);
        if byte == b'"' {
            out.push(b'"');
        }
    }
    out.push(b'"');
    out
}

/// Whether an identifier needs double quotes in generated SQL (not `[A-Za-z_][A-Za-z0-9_]*`,
/// or a keyword): sqlite3's `quoteChar`.
pub fn needs_quotes(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    if !(first.is_ascii_alphabetic() || first == '_') {
        return true;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return true;
    }
    is_keyword(name)
}

fn is_keyword(name: &str) -> bool {
    let Ok(length) = i32::try_from(name.len()) else {
        return false;
    };
    // SAFETY: the pointer and length describe `name`, alive across the call; SQLite
    // only reads those bytes.
    unsafe { rusqlite::ffi::sqlite3_keyword_check(name.as_ptr().cast(), length) != 0 }
}

/// `name` in double quotes (inner `"` doubled) when it needs them.
pub fn quote_identifier(name: &str) -> String {
    if needs_quotes(name) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

/// `name` always in double quotes.
pub fn always_quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Characters as the 3.40 shell counts them for column widths: UTF-8 lead bytes.
pub fn char_count(text: &[u8]) -> usize {
    text.iter().filter(|&&byte| byte & 0xc0 != 0x80).count()
}

/// SQL string literal (`'…'`, `'` doubled) for building queries.
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A separator or null text as `.show` prints it: in double quotes, C escapes.
pub fn c_escaped(text: &[u8]) -> String {
    let mut out = String::from("\"");
    for &byte in text {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e | 0x80..=0xff => out.push(byte as char),
            other => out.push_str(&format!("\\{other:03o}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals_as_sqlite_340_prints_them() {
        let cases = [
            (0.1 + 0.2, "0.3"),
            (1e15, "1.0e+15"),
            (100.0, "100.0"),
            (1.0 / 3.0, "0.333333333333333"),
            (123456789012345678.0, "1.23456789012346e+17"),
            (f64::INFINITY, "Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1e-5, "1.0e-05"),
            (0.0001, "0.0001"),
            (-0.0, "0.0"),
            (0.0, "0.0"),
            (-2.5, "-2.5"),
            (1e100, "1.0e+100"),
            (99999999999999.9, "99999999999999.9"),
        ];
        for (number, expected) in cases {
            assert_eq!(real_g(number, 15), expected, "{number:?}");
        }
        assert_eq!(real_20(0.1), "0.10000000000000000555");
        assert_eq!(real_insert(1e17), "100000000000000000.0");
        assert_eq!(real_insert(-3.0), "-3.0");
        assert_eq!(real_insert(f64::INFINITY), "1e999");
    }

    #[test]
    fn insert_literals_escape_line_breaks() {
        assert_eq!(
            String::from_utf8(quoted_escaped(b"a\nb\rc")).unwrap(),
            "replace(replace('a\\nb\\rc','\\r',char(13)),'\\n',char(10))"
        );
        assert_eq!(
            String::from_utf8(quoted_escaped(b"it's")).unwrap(),
            "'it''s'"
        );
        assert_eq!(
            String::from_utf8(quoted_escaped(b"x\\n\n")).unwrap(),
            "replace('x\\n\\012','\\012',char(10))"
        );
    }

    #[test]
    fn csv_and_identifiers() {
        assert_eq!(csv_field(b"hello", b","), b"hello");
        assert_eq!(csv_field(b"a b", b","), b"\"a b\"");
        assert_eq!(csv_field(b"", b","), b"\"\"");
        assert_eq!(csv_field(b"q\"z", b","), b"\"q\"\"z\"");
        assert!(needs_quotes("table"));
        assert!(needs_quotes("odd name"));
        assert!(!needs_quotes("t1"));
    }
}
