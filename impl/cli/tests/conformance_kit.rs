//! The conformance runner's interface (spec/conformance.md): `--list`, `--suite`, per-case
//! diffs, `conformance-target` in `--help`, and the Python implementation as a target.

use std::process::Command;

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(sixfold()).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn list_names_suites_cases_and_rules() {
    let (code, stdout) = run(&["conformance", "--list", "--suite", "recovery"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("recovery: "), "{stdout}");
    assert!(stdout.contains("two reports of one LSN: the higher epoch counts (X10)  [X10]"));
    assert!(!stdout.contains("writer:"), "{stdout}");
}

#[test]
fn a_suite_filter_runs_only_that_suite_and_failures_show_a_diff() {
    let target = format!("{} conformance-target", sixfold());
    let (code, stdout) = run(&["conformance", "--suite", "wire", "--target", &target]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("wire: 14 passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("writer:"), "{stdout}");
    // A target that answers every codec case with a bad_magic error.
    let (code, stdout) = run(&[
        "conformance",
        "--suite",
        "codec",
        "--max-diffs",
        "1",
        "--target",
        r#"while read -r line; do echo '{"error": "bad_magic"}'; done"#,
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("  expected: "), "{stdout}");
    assert!(
        stdout.contains("  actual:   {\"error\":\"bad_magic\"}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    $.error: expected null, actual \"bad_magic\""),
        "{stdout}"
    );
    assert_eq!(stdout.matches("FAIL codec").count(), 1, "{stdout}");
}

#[test]
fn help_documents_the_reference_target() {
    let (code, stdout) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("conformance-target"), "{stdout}");
}

#[test]
fn the_python_implementation_passes_through_the_cli() {
    let available = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("SKIPPED: python3 is not on PATH");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/python/target.py"
    );
    let (code, stdout) = run(&["conformance", "--target", &format!("python3 {script}")]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
