//! SQLite values on the PostgreSQL wire (H24): the type OID of a result column, a value
//! in text or binary format, a bound parameter decoded by its type, and the SQLSTATE of
//! an SQLite error (H23).

use rusqlite::ffi;
use rusqlite::types::Value;

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const NUMERIC: u32 = 1700;

/// The wire size of a type (`-1` for variable length).
pub fn type_size(oid: u32) -> i16 {
    match oid {
        INT8 | FLOAT8 => 8,
        _ => -1,
    }
}

/// H24: the type of a result column, from its values when it has any: all integers →
/// int8, all numbers → float8, all blobs → bytea, anything else → text. A column with no
/// non-NULL value takes its declared type's SQLite affinity.
pub fn column_type<'a>(values: impl Iterator<Item = &'a Value>, declared: Option<&str>) -> u32 {
    let (mut ints, mut reals, mut blobs, mut texts) = (false, false, false, false);
    for value in values {
        match value {
            Value::Null => {}
            Value::Integer(_) => ints = true,
            Value::Real(_) => reals = true,
            Value::Blob(_) => blobs = true,
            Value::Text(_) => texts = true,
        }
    }
    match (ints, reals, blobs, texts) {
        (false, false, false, false) => declared.map_or(TEXT, affinity_type),
        (true, false, false, false) => INT8,
        (_, true, false, false) => FLOAT8,
        (false, false, true, false) => BYTEA,
        _ => TEXT,
    }
}

/// SQLite's affinity rules (datatype3.html §3.1) as a PostgreSQL type.
pub fn affinity_type(declared: &str) -> u32 {
    let upper = declared.to_ascii_uppercase();
    if upper.contains("INT") {
        INT8
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|w| upper.contains(w)) {
        TEXT
    } else if upper.contains("BLOB") {
        BYTEA
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|w| upper.contains(w)) {
        FLOAT8
    } else {
        TEXT
    }
}

/// H24: a value in the text format: integers in decimal, reals as PostgreSQL prints
/// float8, blobs as `\x` and lowercase hex; NULL is `None`.
pub fn text_value(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Integer(int) => Some(int.to_string().into_bytes()),
        Value::Real(real) => Some(real_text(*real).into_bytes()),
        Value::Text(text) => Some(text.as_bytes().to_vec()),
        Value::Blob(bytes) => Some(hex(bytes).into_bytes()),
    }
}

fn real_text(real: f64) -> String {
    if real.is_nan() {
        "NaN".into()
    } else if real.is_infinite() {
        if real > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if real != 0.0 && !(1e-4..1e16).contains(&real.abs()) {
        format!("{real:e}")
    } else {
        format!("{real}")
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// H24: a value in the binary format of column type `oid` (which [`column_type`] chose
/// so that every value fits it).
pub fn binary_value(value: &Value, oid: u32) -> Option<Vec<u8>> {
    match (value, oid) {
        (Value::Null, _) => None,
        (Value::Integer(int), INT8) => Some(int.to_be_bytes().to_vec()),
        (Value::Integer(int), FLOAT8) => Some((*int as f64).to_be_bytes().to_vec()),
        (Value::Real(real), FLOAT8) => Some(real.to_be_bytes().to_vec()),
        (Value::Blob(bytes), BYTEA) => Some(bytes.clone()),
        (Value::Blob(bytes), _) => Some(bytes.clone()),
        (other, _) => text_value(other),
    }
}

/// Why a parameter could not be bound (SQLSTATE 22P02 or 0A000).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamError {
    #[error("invalid input for type {oid}: {text:?}")]
    Invalid { oid: u32, text: String },
    #[error("binary format for parameter type {0} is not supported; send it as text")]
    BinaryUnsupported(u32),
}

/// H24: a bound parameter as the SQLite value it binds, by its declared type (`0`:
/// unknown, bound as text) and format (0 text, 1 binary).
pub fn param_value(bytes: Option<&[u8]>, oid: u32, binary: bool) -> Result<Value, ParamError> {
    let Some(bytes) = bytes else {
        return Ok(Value::Null);
    };
    if binary {
        return binary_param(bytes, oid);
    }
    let invalid = || ParamError::Invalid {
        oid,
        text: String::from_utf8_lossy(bytes).into_owned(),
    };
    if oid == BYTEA {
        return decode_bytea(bytes).ok_or_else(invalid);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| invalid())?;
    match oid {
        BOOL => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "y" | "1" => Ok(Value::Integer(1)),
            "f" | "false" | "off" | "no" | "n" | "0" => Ok(Value::Integer(0)),
            _ => Err(invalid()),
        },
        INT2 | INT4 | INT8 | OID => text
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| invalid()),
        FLOAT4 | FLOAT8 => parse_real(text).map(Value::Real).ok_or_else(invalid),
        NUMERIC => match text.trim().parse::<i64>() {
            Ok(int) => Ok(Value::Integer(int)),
            Err(_) => parse_real(text).map(Value::Real).ok_or_else(invalid),
        },
        _ => Ok(Value::Text(text.to_string())),
    }
}

fn parse_real(text: &str) -> Option<f64> {
    match text.trim().to_ascii_lowercase().as_str() {
        "infinity" | "inf" | "+infinity" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

fn decode_bytea(bytes: &[u8]) -> Option<Value> {
    let Some(digits) = bytes.strip_prefix(b"\\x") else {
        // The escape format: plain bytes, with `\\` for a backslash.
        return Some(Value::Blob(bytes.to_vec()));
    };
    let digits: Vec<u8> = digits
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()
        .map(Value::Blob)
}

fn binary_param(bytes: &[u8], oid: u32) -> Result<Value, ParamError> {
    let invalid = || ParamError::Invalid {
        oid,
        text: format!("{} binary bytes", bytes.len()),
    };
    match oid {
        BOOL => match bytes {
            [flag] => Ok(Value::Integer(i64::from(*flag != 0))),
            _ => Err(invalid()),
        },
        INT2 => <[u8; 2]>::try_from(bytes)
            .map(|b| Value::Integer(i16::from_be_bytes(b).into()))
            .map_err(|_| invalid()),
        INT4 => <[u8; 4]>::try_from(bytes)
            .map(|b| Value::Integer(i32::from_be_bytes(b).into()))
            .map_err(|_| invalid()),
        INT8 => <[u8; 8]>::try_from(bytes)
            .map(|b| Value::Integer(i64::from_be_bytes(b)))
            .map_err(|_| invalid()),
        FLOAT4 => Ok(Value::Real(
            f32::from_be_bytes(bytes.try_into().map_err(|_| invalid())?).into(),
        )),
        FLOAT8 => Ok(Value::Real(f64::from_be_bytes(
            bytes.try_into().map_err(|_| invalid())?,
        ))),
        BYTEA => Ok(Value::Blob(bytes.to_vec())),
        0 | TEXT | 1042 | 1043 | 19 | 114 => std::str::from_utf8(bytes)
            .map(|text| Value::Text(text.to_string()))
            .map_err(|_| invalid()),
        other => Err(ParamError::BinaryUnsupported(other)),
    }
}

/// H23: the SQLSTATE of an SQLite error, by its extended code and, for the generic
/// SQLITE_ERROR, its message.
pub fn sqlstate(code: i32, message: &str) -> &'static str {
    match code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "23505",
        ffi::SQLITE_CONSTRAINT_NOTNULL => "23502",
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "23503",
        ffi::SQLITE_CONSTRAINT_CHECK => "23514",
        _ => match code & 0xff {
            ffi::SQLITE_CONSTRAINT => "23000",
            ffi::SQLITE_ERROR => error_sqlstate(message),
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => "40001",
            ffi::SQLITE_INTERRUPT => "57014",
            ffi::SQLITE_IOERR => "58030",
            ffi::SQLITE_READONLY => "25006",
            ffi::SQLITE_MISMATCH => "42804",
            ffi::SQLITE_TOOBIG => "54000",
            ffi::SQLITE_FULL => "53100",
            ffi::SQLITE_CORRUPT | ffi::SQLITE_NOTADB => "XX001",
            ffi::SQLITE_AUTH | ffi::SQLITE_PERM => "42501",
            ffi::SQLITE_RANGE => "08P01",
            _ => "XX000",
        },
    }
}

fn error_sqlstate(message: &str) -> &'static str {
    if message.contains("syntax error") || message.contains("incomplete input") {
        "42601"
    } else if message.starts_with("no such table") {
        "42P01"
    } else if message.starts_with("no such column") {
        "42703"
    } else if message.starts_with("no such function") {
        "42883"
    } else if message.contains("already exists") {
        "42P07"
    } else {
        "42000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_take_the_type_their_values_fit() {
        // H24
        let ints = [Value::Integer(1), Value::Null, Value::Integer(-2)];
        assert_eq!(column_type(ints.iter(), Some("TEXT")), INT8);
        let numbers = [Value::Integer(1), Value::Real(0.5)];
        assert_eq!(column_type(numbers.iter(), None), FLOAT8);
        let mixed = [Value::Integer(1), Value::Text("a".into())];
        assert_eq!(column_type(mixed.iter(), None), TEXT);
        assert_eq!(column_type([Value::Blob(vec![1])].iter(), None), BYTEA);
        assert_eq!(column_type([Value::Null].iter(), Some("BIGINT")), INT8);
        assert_eq!(column_type([].iter(), Some("VARCHAR(10)")), TEXT);
        assert_eq!(column_type([].iter(), Some("DOUBLE")), FLOAT8);
        assert_eq!(column_type([].iter(), None), TEXT);
    }

    #[test]
    fn values_print_as_postgresql_prints_them() {
        // H24
        let text = |v: Value| String::from_utf8(text_value(&v).unwrap()).unwrap();
        assert_eq!(text(Value::Integer(-7)), "-7");
        assert_eq!(text(Value::Real(0.1)), "0.1");
        assert_eq!(text(Value::Real(2.0)), "2");
        assert_eq!(text(Value::Real(1e300)), "1e300");
        assert_eq!(text(Value::Real(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(text(Value::Blob(vec![0, 1, 0xff])), "\\x0001ff");
        assert_eq!(text(Value::Text(String::new())), "");
        assert_eq!(text_value(&Value::Null), None);
        assert_eq!(
            binary_value(&Value::Integer(1), INT8),
            Some(1i64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn parameters_decode_by_type_and_format() {
        // H24
        let text = |s: &str, oid| param_value(Some(s.as_bytes()), oid, false);
        assert_eq!(text("42", INT4), Ok(Value::Integer(42)));
        assert_eq!(text("42", 0), Ok(Value::Text("42".into())));
        assert_eq!(text("1.5", FLOAT8), Ok(Value::Real(1.5)));
        assert_eq!(
            text("-Infinity", FLOAT8),
            Ok(Value::Real(f64::NEG_INFINITY))
        );
        assert_eq!(text("7", NUMERIC), Ok(Value::Integer(7)));
        assert_eq!(text("t", BOOL), Ok(Value::Integer(1)));
        assert_eq!(text("\\x00ff", BYTEA), Ok(Value::Blob(vec![0, 255])));
        assert!(text("\\x0", BYTEA).is_err());
        assert!(text("x", INT8).is_err());
        assert_eq!(param_value(None, INT8, false), Ok(Value::Null));
        let binary = |b: &[u8], oid| param_value(Some(b), oid, true);
        assert_eq!(binary(&[0, 0, 0, 5], INT4), Ok(Value::Integer(5)));
        assert_eq!(binary(&[0xff, 0xfe], INT2), Ok(Value::Integer(-2)));
        assert_eq!(binary(&[1, 2], BYTEA), Ok(Value::Blob(vec![1, 2])));
        assert!(binary(&[1, 2, 3], INT4).is_err());
        assert!(matches!(
            binary(&[0; 16], 2950),
            Err(ParamError::BinaryUnsupported(2950))
        ));
    }

    #[test]
    fn sqlite_errors_have_sqlstates() {
        // H23
        assert_eq!(sqlstate(ffi::SQLITE_CONSTRAINT_UNIQUE, ""), "23505");
        assert_eq!(sqlstate(ffi::SQLITE_CONSTRAINT_NOTNULL, ""), "23502");
        assert_eq!(sqlstate(ffi::SQLITE_CONSTRAINT, ""), "23000");
        assert_eq!(
            sqlstate(ffi::SQLITE_ERROR, "near \"SELEC\": syntax error"),
            "42601"
        );
        assert_eq!(sqlstate(ffi::SQLITE_ERROR, "no such table: t"), "42P01");
        assert_eq!(sqlstate(ffi::SQLITE_BUSY, "database is locked"), "40001");
    }
}
