//! SQLite values as JSON, both ways (H4): NULL ↔ `null`, INTEGER ↔ a number without
//! fraction or exponent, REAL ↔ a number with one (`1.0`), TEXT ↔ a string, BLOB ↔
//! `{"base64": "..."}`. A REAL that JSON cannot hold (±infinity) is `{"real": "inf"}` or
//! `{"real": "-inf"}`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::types::{Value, ValueRef};
use serde_json::{Map, Number, Value as Json};

/// Why a JSON value is not an SQLite value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("integer {0} does not fit SQLite's 64-bit signed INTEGER")]
    IntegerRange(String),
    #[error("blob is not valid base64: {0}")]
    Base64(String),
    #[error(
        "a value is null, a number, a string, {{\"base64\": \"...\"}} or {{\"real\": \"inf\"|\"-inf\"}}; got {0}"
    )]
    Unsupported(String),
}

/// H4: a JSON parameter as the SQLite value it binds.
pub fn from_json(json: &Json) -> Result<Value, ValueError> {
    match json {
        Json::Null => Ok(Value::Null),
        Json::Bool(flag) => Ok(Value::Integer(i64::from(*flag))),
        Json::Number(number) => number_value(number),
        Json::String(text) => Ok(Value::Text(text.clone())),
        Json::Object(fields) => tagged_value(fields),
        Json::Array(_) => Err(ValueError::Unsupported("an array".into())),
    }
}

fn number_value(number: &Number) -> Result<Value, ValueError> {
    // serde_json keeps a literal without fraction or exponent as an integer; with
    // arbitrary_precision off, a too-large integer literal arrives as u64 or f64.
    if let Some(int) = number.as_i64() {
        return Ok(Value::Integer(int));
    }
    if number.is_u64() {
        return Err(ValueError::IntegerRange(number.to_string()));
    }
    let real = number
        .as_f64()
        .ok_or_else(|| ValueError::Unsupported(number.to_string()))?;
    Ok(Value::Real(real))
}

fn tagged_value(fields: &Map<String, Json>) -> Result<Value, ValueError> {
    let shown = || Json::Object(fields.clone()).to_string();
    if fields.len() != 1 {
        return Err(ValueError::Unsupported(shown()));
    }
    match fields.iter().next() {
        Some((key, Json::String(text))) if key == "base64" => STANDARD
            .decode(text)
            .map(Value::Blob)
            .map_err(|error| ValueError::Base64(error.to_string())),
        Some((key, Json::String(text))) if key == "real" => match text.as_str() {
            "inf" => Ok(Value::Real(f64::INFINITY)),
            "-inf" => Ok(Value::Real(f64::NEG_INFINITY)),
            _ => Err(ValueError::Unsupported(shown())),
        },
        Some((key, Json::Number(number))) if key == "real" => number
            .as_f64()
            .map(Value::Real)
            .ok_or_else(|| ValueError::Unsupported(shown())),
        _ => Err(ValueError::Unsupported(shown())),
    }
}

/// H4: an SQLite value of a result row as JSON.
pub fn to_json(value: ValueRef<'_>) -> Json {
    match value {
        ValueRef::Null => Json::Null,
        ValueRef::Integer(int) => Json::from(int),
        ValueRef::Real(real) => match Number::from_f64(real) {
            Some(number) => Json::Number(number),
            None if real > 0.0 => serde_json::json!({"real": "inf"}),
            None => serde_json::json!({"real": "-inf"}),
        },
        ValueRef::Text(bytes) => Json::String(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => serde_json::json!({"base64": STANDARD.encode(bytes)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(json: Json) -> Json {
        let value = from_json(&json).expect("a value");
        to_json(ValueRef::from(&value))
    }

    #[test]
    fn every_sqlite_type_round_trips_through_json() {
        // H4
        for json in [
            json!(null),
            json!(0),
            json!(-9223372036854775808i64),
            json!(9223372036854775807i64),
            json!(1.0),
            json!(0.1),
            json!(-2.5e300),
            json!(""),
            json!("héllo"),
            json!({"base64": ""}),
            json!({"base64": "AAEC/w=="}),
            json!({"real": "inf"}),
            json!({"real": "-inf"}),
        ] {
            assert_eq!(round_trip(json.clone()), json);
        }
        assert_eq!(from_json(&json!(1)).unwrap(), Value::Integer(1));
        assert_eq!(from_json(&json!(1.0)).unwrap(), Value::Real(1.0));
        assert_eq!(
            from_json(&json!({"base64": "AAEC/w=="})).unwrap(),
            Value::Blob(vec![0, 1, 2, 255])
        );
        assert_eq!(to_json(ValueRef::Real(2.0)).to_string(), "2.0");
    }

    #[test]
    fn values_sqlite_cannot_hold_are_refused() {
        // H4
        assert!(matches!(
            from_json(&json!(9223372036854775808u64)),
            Err(ValueError::IntegerRange(_))
        ));
        assert!(matches!(
            from_json(&json!({"base64": "not base64!"})),
            Err(ValueError::Base64(_))
        ));
        for bad in [
            json!([1]),
            json!({"blob": "AA=="}),
            json!({"base64": "AA==", "x": 1}),
            json!({"real": "nan"}),
        ] {
            assert!(
                matches!(from_json(&bad), Err(ValueError::Unsupported(_))),
                "{bad}"
            );
        }
    }
}
