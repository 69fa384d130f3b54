//! What the CLI prints besides its results: nothing after a closed pipe, no colour codes
//! in a log that is not a terminal.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

/// `sixfold sql ... | head -1`: the reader goes away; the shell stops quietly.
#[test]
fn a_closed_pipe_ends_sql_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(sixfold())
        .args(["sql", "--data"])
        .arg(dir.path().join("data"))
        .args(["--db", "app"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000000)\n\
              SELECT i, 'a row long enough to fill the pipe quickly' FROM c;\n",
        )
        .unwrap();
    drop(stdin);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "1|a row long enough to fill the pipe quickly\n");
    drop(stdout); // as `head -1` exits
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// Log lines written to a file (stderr not a terminal) carry no ANSI escape codes.
#[test]
fn log_lines_to_a_file_have_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    for no_color in [None, Some("1")] {
        let mut command = Command::new(sixfold());
        command
            .args(["sql", "--data"])
            .arg(dir.path().join("data"))
            .args(["--db", "app", "SELECT 1"])
            .env("RUST_LOG", "sixfold=debug,sixfold_cluster=debug");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.is_empty(),
            "debug logging should have printed something"
        );
        assert!(!stderr.contains('\u{1b}'), "ANSI codes in: {stderr}");
    }
}

/// Every subcommand's help ends with at least one example.
#[test]
fn every_subcommand_help_has_an_example() {
    let help = Command::new(sixfold()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(commands.len() >= 12, "{help}");
    for command in commands {
        let output = Command::new(sixfold())
            .args([command, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("Examples:\n  sixfold "),
            "`sixfold {command} --help` has no example:\n{text}"
        );
    }
}
