//! `sixfold conformance --target "sixfold conformance-target"` passes every vector, and a
//! target that answers wrongly fails.

use std::process::Command;

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

#[test]
fn sixfold_passes_its_own_vectors() {
    let output = Command::new(sixfold())
        .args([
            "conformance",
            "--target",
            &format!("{} conformance-target", sixfold()),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn a_wrong_target_fails() {
    // A target that answers `{}` to everything.
    let output = Command::new(sixfold())
        .args([
            "conformance",
            "--target",
            "while read -r line; do echo '{}'; done",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("0 passed"), "{stdout}");
}

/// `sixfold sim` with one seed prints its verdict, and in the model's scope the replay
/// through the model; a failing mutant seed prints a replay command and exits 1.
#[test]
fn sim_prints_the_model_replay_and_replays_failures() {
    let output = Command::new(sixfold())
        .args(["sim", "--seed", "4", "--scope", "model", "--mtrs", "6"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("seed 4: passed"), "{stdout}");
    assert!(stdout.contains("model refinement:"), "{stdout}");

    let output = Command::new(sixfold())
        .args(["sim", "--seeds", "3", "--mutant", "ack-before-fsync"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "replay: sixfold sim --seed 0 --faults all --mtrs 150 --mutant ack-before-fsync"
        ),
        "{stdout}"
    );
}

/// Bad flags get a clear error and exit 2, before anything runs.
#[test]
fn sim_refuses_bad_flags() {
    for (args, expected) in [
        (&["--workload", "nope"][..], "unknown workload"),
        (&["--scope", "tiny"][..], "unknown scope"),
        (&["--mutant", "nope"][..], "unknown mutant"),
        (&["--faults", "rain"][..], "unknown fault"),
        (
            &["--workload", "sql", "--scope", "model"][..],
            "full scope only",
        ),
    ] {
        let output = Command::new(sixfold())
            .arg("sim")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
