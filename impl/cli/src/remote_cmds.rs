//! `sixfold sql --server URL` and `sixfold db list --server URL`: the CLI as a client of
//! a running `sixfold serve` (H19). No writer is opened here, so the server's writer is
//! never fenced.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value as Json, json};
use sixfold_server::client::Client;

use crate::shell::{Mode, Renderer, Style, Value};
use crate::sql_cmds::SqlArgs;

/// H19: `db list` through the server: name and id, as `db list` prints them.
pub fn db_list(url: &str) -> anyhow::Result<ExitCode> {
    let client = Client::new(url)?;
    let (status, answer) = client.call("GET", "/v1/db", None)?;
    if status != 200 {
        eprintln!("error: {}", error_text(&answer));
        return Ok(ExitCode::FAILURE);
    }
    for db in answer["databases"].as_array().into_iter().flatten() {
        println!("{}\t{}", db["name"].as_str().unwrap_or("?"), db["id"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// H19: the statements of the arguments (or standard input), one request each, rows
/// printed in the chosen output mode; the database is created if missing.
pub fn sql(args: &SqlArgs, url: &str) -> anyhow::Result<ExitCode> {
    let client = Client::new(url)?;
    let (status, answer) = client.call("POST", "/v1/db", Some(&json!({ "name": args.db })))?;
    if status != 200 && status != 201 {
        eprintln!("error: {}", error_text(&answer));
        return Ok(ExitCode::FAILURE);
    }
    let mut chunks: Vec<String> = args.cmd.clone();
    if args.sql.is_empty() {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading SQL from standard input")?;
        chunks.push(input);
    } else {
        chunks.extend(args.sql.iter().cloned());
    }
    let style = style(args);
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for statement in chunks.iter().flat_map(|chunk| split_statements(chunk)) {
        if args.echo {
            writeln!(out, "{statement}")?;
        }
        let ok = if statement.starts_with('.') {
            eprintln!("Error: dot commands are not available with --server: {statement}");
            false
        } else {
            run_one(&client, &args.db, &statement, &style, &mut out)?
        };
        failed |= !ok;
        if !ok && args.bail {
            break;
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_one(
    client: &Client,
    db: &str,
    sql: &str,
    style: &Style,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let (status, answer) = client.call(
        "POST",
        &format!("/v1/db/{db}"),
        Some(&json!({ "sql": sql })),
    )?;
    if status != 200 {
        out.flush()?;
        eprintln!("Error: {}", error_text(&answer));
        return Ok(false);
    }
    let result = &answer["results"][0];
    let columns: Vec<String> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|name| name.as_str().unwrap_or("").to_string())
        .collect();
    if columns.is_empty() {
        return Ok(true);
    }
    let mut renderer = Renderer::new(style.clone(), columns);
    for row in result["rows"].as_array().into_iter().flatten() {
        let values = row.as_array().into_iter().flatten().map(value_of).collect();
        renderer.row(values, out)?;
    }
    renderer.finish(out)?;
    Ok(true)
}

/// H4 in reverse: the API's JSON value as the shell's value.
fn value_of(json: &Json) -> Value {
    use base64::Engine;
    match json {
        Json::Null => Value::Null,
        Json::Number(number) => match number.as_i64() {
            Some(int) => Value::Integer(int),
            None => Value::Real(number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => Value::Text(text.clone().into_bytes()),
        Json::Object(fields) => match (fields.get("base64"), fields.get("real")) {
            (Some(Json::String(data)), _) => Value::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap_or_default(),
            ),
            (_, Some(Json::String(inf))) if inf == "-inf" => Value::Real(f64::NEG_INFINITY),
            (_, Some(_)) => Value::Real(f64::INFINITY),
            _ => Value::Text(json.to_string().into_bytes()),
        },
        other => Value::Text(other.to_string().into_bytes()),
    }
}

fn error_text(answer: &Json) -> String {
    let error = &answer["error"];
    match (error["kind"].as_str(), error["message"].as_str()) {
        (Some("outcome_unknown"), Some(message)) => format!("outcome unknown: {message}"),
        (_, Some(message)) => message.to_string(),
        _ => answer.to_string(),
    }
}

fn style(args: &SqlArgs) -> Style {
    let mode = args.mode.unwrap_or(Mode::List);
    let (column, row) = match mode {
        Mode::Csv => (",", "\n"),
        Mode::Tabs => ("\t", "\n"),
        Mode::Quote => (",", "\n"),
        Mode::Ascii => ("\x1f", "\x1e"),
        _ => ("|", "\n"),
    };
    Style {
        mode,
        show_header: args.header || (mode.is_columnar() && !args.noheader),
        null_value: args.nullvalue.clone().unwrap_or_default().into_bytes(),
        column_separator: args
            .separator
            .clone()
            .unwrap_or_else(|| column.to_string())
            .into_bytes(),
        row_separator: row.as_bytes().to_vec(),
        insert_table: "\"table\"".to_string(),
        widths: Vec::new(),
        wrap: 60,
    }
}

/// Splits SQL text at each `;` that ends a complete statement (sqlite3_complete: not in
/// a literal, a comment or a trigger body); pieces holding only comments are dropped.
fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(';') {
        let piece = &text[start..=at];
        if sixfold_sql::shell::is_complete(piece) {
            push_piece(&mut out, piece);
            start = at + 1;
        }
    }
    push_piece(&mut out, &text[start..]);
    out
}

fn push_piece(out: &mut Vec<String>, piece: &str) {
    let trimmed = piece.trim();
    if !without_comments(trimmed)
        .trim()
        .trim_matches(';')
        .trim()
        .is_empty()
    {
        out.push(trimmed.trim_end_matches(';').trim_end().to_string());
    }
}

/// The text with `-- ...` and `/* ... */` comments removed (outside literals is enough
/// here: it only decides whether a piece is empty).
fn without_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            let mut chars = rest.chars();
            out.extend(chars.next());
            rest = chars.as_str();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_where_sqlite_says_they_end() {
        // H19
        assert_eq!(
            split_statements("SELECT 1; SELECT ';';\n-- done\n"),
            ["SELECT 1", "SELECT ';'"]
        );
        assert_eq!(
            split_statements(
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END; SELECT 3"
            ),
            [
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END",
                "SELECT 3"
            ]
        );
        assert!(split_statements(" /* nothing */ ; -- at all").is_empty());
    }
}
