//! `sixfold demo --quick`: the README's main command, shortened for the debug build. It
//! must pass, and say why.

use std::process::Command;

#[test]
fn demo_passes_and_says_why() {
    // C4, E1, X4, Q4: acknowledged transactions survive AZ loss, AZ+1 and a writer crash.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sixfold"))
        .args(["demo", "--quick", "--data"])
        .arg(dir.path().join("cluster"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "writes went on",
        "reads went on",
        "waited",
        "caught up",
        "full dump equals stock SQLite's",
        "PASS",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert_eq!(stdout.matches("integrity_check ok").count(), 3, "{stdout}");
}

#[test]
fn demo_refuses_a_folder_that_holds_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sixfold"))
        .args(["demo", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already holds a cluster"));
}
