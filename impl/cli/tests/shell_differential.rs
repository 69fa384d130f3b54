//! `sixfold sql` against the stock sqlite3 shell (Debian 12's 3.40): every script of
//! tests/shell_corpus/*.sql runs through both, and standard output and the exit code
//! must match byte for byte, and so must standard error (docs/sql.md, "The shell", lists what may differ and why).
//!
//! A script's first line may be `-- args: FLAGS` (whitespace-separated sqlite3 flags,
//! given to both). Other files of the corpus folder (CSV, included scripts) are copied
//! into the working folder both shells run in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shell_corpus")
}

/// The stock shell's version, installing Debian's `sqlite3` if it is missing; `None`
/// (the test is skipped, saying why) if it cannot be had.
fn stock_sqlite3() -> Option<String> {
    let version = || {
        Command::new("sqlite3")
            .arg("-version")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    if let Some(found) = version() {
        return Some(found);
    }
    eprintln!("sqlite3 not found; trying `apt-get install -y sqlite3`");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "sqlite3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    version()
}

/// The reference is the 3.40 shell; another version formats differently (REAL text
/// changed in 3.43), so it is no reference for this corpus.
fn reference_shell() -> Option<()> {
    let Some(version) = stock_sqlite3() else {
        eprintln!("SKIPPED: the stock sqlite3 shell is not installed and could not be installed");
        return None;
    };
    if !version.starts_with("3.40.") {
        eprintln!("SKIPPED: the reference is sqlite3 3.40 (Debian 12); found {version}");
        return None;
    }
    Some(())
}

struct Run {
    stdout: Vec<u8>,
    stderr: String,
    code: Option<i32>,
}

fn run(mut command: Command, input: &[u8]) -> Run {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output: Output = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    Run {
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code(),
    }
}

fn script_flags(script: &str) -> Vec<String> {
    script
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("-- args:"))
        .map(|flags| flags.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn stock(work: &Path, database: &Path, flags: &[String], input: &[u8]) -> Run {
    let mut command = Command::new("sqlite3");
    command
        .current_dir(work)
        .env("HOME", work) // no ~/.sqliterc
        .args(flags)
        .arg(database);
    run(command, input)
}

fn ours(work: &Path, data: &Path, db: &str, flags: &[String], input: &[u8]) -> Run {
    let mut command = Command::new(sixfold());
    command
        .current_dir(work)
        .env("HOME", work)
        .env("RUST_LOG", "off")
        .args(["sql", "--data"])
        .arg(data)
        .args(["--db", db])
        .args(flags);
    run(command, input)
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn corpus_matches_the_stock_sqlite3_shell() {
    if reference_shell().is_none() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (work, data) = (temp.path().join("work"), temp.path().join("data"));
    std::fs::create_dir_all(&work).unwrap();
    let mut scripts = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "sql") {
            scripts.push(path);
        } else {
            std::fs::copy(&path, work.join(path.file_name().unwrap())).unwrap();
        }
    }
    scripts.sort();
    assert!(scripts.len() >= 15, "corpus has {} scripts", scripts.len());
    let mut failures = Vec::new();
    for (index, path) in scripts.iter().enumerate() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let script = std::fs::read(path).unwrap();
        let flags = script_flags(&show(&script));
        let expected = stock(&work, &work.join(format!("{name}.db")), &flags, &script);
        let actual = ours(&work, &data, &format!("corpus{index}"), &flags, &script);
        let same = expected.stdout == actual.stdout
            && expected.code == actual.code
            && expected.stderr == actual.stderr;
        if !same {
            failures.push(format!(
                "== {name}: exit {:?} (sqlite3) vs {:?} (sixfold)\n--- sqlite3 stdout\n{}\n--- sixfold stdout\n{}\n--- sqlite3 stderr\n{}--- sixfold stderr\n{}",
                expected.code,
                actual.code,
                show(&expected.stdout),
                show(&actual.stdout),
                expected.stderr,
                actual.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scripts differ:\n{}",
        failures.len(),
        scripts.len(),
        failures.join("\n")
    );
}

/// `.dump` of sixfold loads into the stock sqlite3, whose own `.dump` of the result is
/// the same text; loaded back into sixfold it dumps the same again.
#[test]
fn dump_round_trips_through_the_stock_sqlite3() {
    if reference_shell().is_none() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (work, data) = (temp.path().join("work"), temp.path().join("data"));
    std::fs::create_dir_all(&work).unwrap();
    let script = std::fs::read(corpus_dir().join("09_dump.sql")).unwrap();
    let setup: Vec<u8> = show(&script)
        .lines()
        .filter(|line| !line.starts_with(".dump"))
        .flat_map(|line| format!("{line}\n").into_bytes())
        .collect();
    let created = ours(&work, &data, "source", &[], &setup);
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let dump = ours(&work, &data, "source", &[], b".dump\n");
    assert_eq!(dump.code, Some(0), "{}", dump.stderr);
    assert!(show(&dump.stdout).ends_with("COMMIT;\n"));
    let copy = work.join("copy.db");
    let loaded = stock(&work, &copy, &[], &dump.stdout);
    assert_eq!(
        loaded.code,
        Some(0),
        "sqlite3 refused the dump: {}",
        loaded.stderr
    );
    let redumped = stock(&work, &copy, &[], b".dump\n");
    assert_eq!(show(&redumped.stdout), show(&dump.stdout));
    let reloaded = ours(&work, &data, "reloaded", &[], &dump.stdout);
    assert_eq!(reloaded.code, Some(0), "{}", reloaded.stderr);
    let again = ours(&work, &data, "reloaded", &[], b".dump\n");
    assert_eq!(show(&again.stdout), show(&dump.stdout));
}

/// SQL given as arguments: run in order, the first error ends the run with SQLite's
/// result code, as the stock shell does.
#[test]
fn sql_arguments_and_their_exit_codes_match_sqlite3() {
    if reference_shell().is_none() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (work, data) = (temp.path().join("work"), temp.path().join("data"));
    std::fs::create_dir_all(&work).unwrap();
    // (database, arguments): a case may use the database an earlier case made.
    let cases: &[(usize, &[&str])] = &[
        (0, &["SELECT 1", "SELECT 2"]),
        (
            1,
            &[
                "CREATE TABLE u(a UNIQUE); INSERT INTO u VALUES (1), (1)",
                "SELECT 3",
            ],
        ),
        (2, &["SELECT * FROM missing"]),
        (3, &[".nosuch"]),
        (
            4,
            &[
                "-cmd",
                ".mode csv",
                "-cmd",
                "SELECT 1, 2",
                "SELECT 3, 'a b'",
            ],
        ),
        (5, &["-header", "-box", "SELECT 1 AS a, 'x' AS b"]),
        (5, &["-column", "SELECT 1 AS a, 'x' AS b"]),
        (5, &["-csv", "-noheader", "SELECT 'a b', 2"]),
        (1, &["-readonly", "INSERT INTO u VALUES (5)"]),
        (1, &["-readonly", "SELECT count(*) FROM u"]),
        (6, &["SELECT 1; SELECT 2", ".mode json", "SELECT 3 AS c"]),
        (
            6,
            &[
                "-bail",
                "-cmd",
                "SELECT * FROM nope",
                "SELECT 'not reached'",
            ],
        ),
        (6, &["-cmd", "SELECT * FROM nope", "SELECT 'reached'"]),
        (6, &[".quit", "SELECT 'not reached'"]),
        (
            1,
            &[
                "-bail",
                "-cmd",
                "INSERT INTO u VALUES (1)",
                "SELECT 'not reached'",
            ],
        ),
        (6, &["-bail", "-cmd", ".quit", "SELECT 'not reached'"]),
        (6, &["-cmd", ".quit", "SELECT 'reached'"]),
    ];
    let mut failures = Vec::new();
    for (index, args) in cases {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut command = Command::new("sqlite3");
        command.current_dir(&work).env("HOME", &work);
        let (flags, sql): (Vec<String>, Vec<String>) = split_flags(&args);
        command
            .args(&flags)
            .arg(work.join(format!("args{index}.db")))
            .args(&sql);
        let expected = run(command, b"");
        let mut command = Command::new(sixfold());
        command
            .current_dir(&work)
            .env("RUST_LOG", "off")
            .args(["sql", "--data"])
            .arg(&data)
            .args(["--db", &format!("args{index}")])
            .args(&flags)
            .args(&sql);
        let actual = run(command, b"");
        if expected.stdout != actual.stdout || expected.code != actual.code {
            failures.push(format!(
                "{args:?}: exit {:?} vs {:?}\n{}---\n{}",
                expected.code,
                actual.code,
                show(&expected.stdout),
                show(&actual.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Leading `-flag [value]` arguments (values after `-cmd`) and the SQL after them.
fn split_flags(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut flags = Vec::new();
    let mut index = 0;
    while index < args.len() && args[index].starts_with('-') {
        flags.push(args[index].clone());
        if args[index] == "-cmd" {
            index += 1;
            flags.push(args[index].clone());
        }
        index += 1;
    }
    (flags, args[index..].to_vec())
}
