//! A small JSON Schema validator for the subset `conformance/schema/*.json` use (draft
//! 2020-12 keywords: `type`, `const`, `enum`, `properties`, `required`,
//! `additionalProperties`, `propertyNames`, `items`, `prefixItems`, `minItems`,
//! `minimum`, `maximum`, `minLength`, `maxLength`, `pattern` (only the hex and ID
//! patterns below), `oneOf`, `$ref` to `#/$defs/…`). A keyword outside the subset is an
//! error, so a schema never passes by being misunderstood. Hand-written instead of the
//! `jsonschema` crate: that crate pulls in a regex engine and an HTTP client for remote
//! references, which a check of five local files does not need.

use serde_json::{Map, Value};

const KNOWN: [&str; 22] = [
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "const",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "items",
    "prefixItems",
    "minItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "oneOf",
];

/// Validates `value` against `schema` (whose `$defs` resolve `$ref`s); the first
/// violation, with its JSON path.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    Validator { root: schema }.check(schema, value, "$")
}

struct Validator<'a> {
    root: &'a Value,
}

fn pattern_matches(pattern: &str, text: &str) -> Result<bool, String> {
    match pattern {
        "^([0-9a-f][0-9a-f])*$" => Ok(text.len().is_multiple_of(2)
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        "^[A-Z][0-9]+$" => Ok(text.len() >= 2
            && text.as_bytes()[0].is_ascii_uppercase()
            && text.bytes().skip(1).all(|b| b.is_ascii_digit())),
        "^(0|[1-9][0-9]*)$" => Ok(!text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'))),
        other => Err(format!("unsupported pattern {other:?}")),
    }
}

fn type_matches(name: &str, value: &Value) -> Result<bool, String> {
    Ok(match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "null" => value.is_null(),
        other => return Err(format!("unsupported type {other:?}")),
    })
}

impl Validator<'_> {
    fn resolve(&self, reference: &str) -> Result<&Value, String> {
        let name = reference
            .strip_prefix("#/$defs/")
            .ok_or_else(|| format!("unsupported $ref {reference:?}"))?;
        self.root
            .get("$defs")
            .and_then(|defs| defs.get(name))
            .ok_or_else(|| format!("$ref {reference:?} is not defined"))
    }

    fn check(&self, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{path}: no value is allowed here")),
            Value::Object(map) => map,
            _ => return Err(format!("{path}: a schema must be an object or a boolean")),
        };
        if let Some(key) = schema.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("{path}: unsupported schema keyword {key:?}"));
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            self.check(self.resolve(reference)?, value, path)?;
        }
        self.check_scalar(schema, value, path)?;
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let passing = options
                .iter()
                .filter(|option| self.check(option, value, path).is_ok())
                .count();
            if passing != 1 {
                return Err(format!(
                    "{path}: {value} matches {passing} of the oneOf alternatives, not exactly 1"
                ));
            }
        }
        if let Value::Object(object) = value {
            self.check_object(schema, object, path)?;
        }
        if let Value::Array(items) = value {
            self.check_array(schema, items, path)?;
        }
        Ok(())
    }

    fn check_scalar(
        &self,
        schema: &Map<String, Value>,
        value: &Value,
        path: &str,
    ) -> Result<(), String> {
        if let Some(name) = schema.get("type").and_then(Value::as_str)
            && !type_matches(name, value)?
        {
            return Err(format!("{path}: {value} is not of type {name}"));
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            return Err(format!("{path}: {value} is not {expected}"));
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            return Err(format!("{path}: {value} is not one of {options:?}"));
        }
        if let Some(number) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && number < min
            {
                return Err(format!("{path}: {value} is below {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && number > max
            {
                return Err(format!("{path}: {value} is above {max}"));
            }
        }
        if let Some(text) = value.as_str() {
            let chars = text.chars().count() as u64;
            if schema
                .get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|min| chars < min)
                || schema
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|max| chars > max)
            {
                return Err(format!(
                    "{path}: a string of {chars} characters is out of bounds"
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !pattern_matches(pattern, text)?
            {
                return Err(format!("{path}: {text:?} does not match {pattern}"));
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        path: &str,
    ) -> Result<(), String> {
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{path}: missing required field {name:?}"));
            }
        }
        for (key, field) in object {
            let field_path = format!("{path}.{key}");
            if let Some(names) = schema.get("propertyNames") {
                self.check(names, &Value::String(key.clone()), &field_path)?;
            }
            match (properties.get(key), schema.get("additionalProperties")) {
                (Some(sub), _) => self.check(sub, field, &field_path)?,
                (None, Some(extra)) => self.check(extra, field, &field_path)?,
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn check_array(
        &self,
        schema: &Map<String, Value>,
        items: &[Value],
        path: &str,
    ) -> Result<(), String> {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            return Err(format!(
                "{path}: {} items, at least {min} needed",
                items.len()
            ));
        }
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        let skip = prefix.map_or(0, Vec::len);
        for (index, (sub, item)) in prefix.into_iter().flatten().zip(items).enumerate() {
            self.check(sub, item, &format!("{path}[{index}]"))?;
        }
        if let Some(rest) = schema.get("items") {
            for (index, item) in items.iter().enumerate().skip(skip) {
                self.check(rest, item, &format!("{path}[{index}]"))?;
            }
        }
        Ok(())
    }
}

/// The schema of `suite`, from `conformance/schema/<suite>.json`.
pub fn load(schema_dir: &std::path::Path, suite: &str) -> Result<Value, String> {
    let path = schema_dir.join(format!("{suite}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
