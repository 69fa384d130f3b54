//! `sixfold slt` on the cluster volume: SQLite's sqllogictest files, with and without
//! storage nodes stopped and the writer crashed and recovered between records (V4, V5,
//! X4). Every record must pass: the expected results come from stock SQLite.

use std::path::PathBuf;
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/sqllogictest"
    ));
    assert!(
        dir.join("select1.test").is_file(),
        "sqllogictest corpus missing at {} (conformance/sqllogictest in the repository)",
        dir.display()
    );
    dir
}

fn slt(args: &[&str], files: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sixfold"))
        .arg("slt")
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

fn files() -> Vec<PathBuf> {
    let corpus = corpus();
    vec![
        corpus.join("select1.test"),
        corpus.join("evidence/slt_lang_update.test"),
        corpus.join("evidence/slt_lang_replace.test"),
    ]
}

#[test]
fn slt_files_pass_on_the_cluster() {
    let output = slt(&[], &files());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("3 files, 3 passed, 0 failed"), "{stdout}");
}

#[test]
fn slt_files_pass_with_nodes_and_the_writer_killed_between_records() {
    let output = slt(
        &["--faults", "--fault-every", "15", "--seed", "3"],
        &files(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("3 files, 3 passed, 0 failed"), "{stdout}");
    // The faults happened: select1.test alone has over a thousand records.
    let line = stdout.lines().find(|l| l.contains("select1.test")).unwrap();
    assert!(!line.contains(" 0 node stops"), "{line}");
    assert!(!line.contains(" 0 writer crashes"), "{line}");
}

#[test]
fn a_wrong_expected_result_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.test");
    std::fs::write(
        &path,
        "statement ok\nCREATE TABLE t(a INTEGER)\n\nstatement ok\nINSERT INTO t VALUES(1)\n\n\
         query I nosort\nSELECT a FROM t\n----\n2\n",
    )
    .unwrap();
    let output = slt(&[], &[path]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 files, 0 passed, 1 failed"), "{stdout}");
}
