//! `sixfold check membership`: the subcommand runs the membership model (M1–M6), exits 1
//! with a counterexample for a mutant and 2 for an unknown name.

use std::process::Command;

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

// M1 broken on purpose: the check fails with the epoch property and its steps.
#[test]
fn check_membership_with_a_mutant_fails_with_a_counterexample() {
    let output = Command::new(sixfold())
        .args(["check", "membership", "--bug", "epoch-follows-request"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("model membership config small bug epoch-follows-request"));
    assert!(stdout.contains("result: FAILED"), "{stdout}");
    assert!(stdout.contains("counterexample to"), "{stdout}");
    assert!(
        stdout.contains("counterexample to \"membership epochs never decrease\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("control plane begins replacing"),
        "{stdout}"
    );
}

#[test]
fn check_membership_refuses_an_unknown_config_or_bug() {
    for args in [
        ["check", "membership", "--config", "no-such-config"],
        ["check", "membership", "--bug", "write-quorum-3"],
    ] {
        let output = Command::new(sixfold()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("valid:"), "{args:?}: {stderr}");
    }
}
