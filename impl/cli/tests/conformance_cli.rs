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
