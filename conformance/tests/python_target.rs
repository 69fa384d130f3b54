//! The second implementation (conformance/python/target.py, Python standard library only,
//! written from spec/conformance.md and the specs it cites) passes every suite. Skipped,
//! with a message, where python3 is missing.

use std::path::Path;
use std::process::Command;

use sixfold_conformance::runner::{Target, load_vectors, run};

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn the_python_implementation_passes_every_suite() {
    if !python3_available() {
        eprintln!("SKIPPED: python3 is not on PATH; the Python target was not run");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = load_vectors(&root.join("vectors")).unwrap();
    let script = root.join("python").join("target.py");
    let mut target = Target::spawn(&format!("python3 {}", script.display())).unwrap();
    let summary = run(&files, &mut target).unwrap();
    let first = summary.mismatches.first().map(|m| {
        format!(
            "{} / {}:\n  expected {}\n  actual   {}",
            m.suite, m.case, m.expected, m.actual
        )
    });
    assert!(
        summary.mismatches.is_empty(),
        "{} cases failed; first: {}",
        summary.mismatches.len(),
        first.unwrap_or_default()
    );
    assert!(summary.passed >= 1000, "only {} cases", summary.passed);
}

#[test]
fn a_broken_python_implementation_fails() {
    // The same script with the write quorum off by one must fail: the test can fail.
    if !python3_available() {
        eprintln!("SKIPPED: python3 is not on PATH");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("python").join("target.py")).unwrap();
    let broken = text.replace("VW, VR, V = 4, 3, 6", "VW, VR, V = 3, 3, 6");
    assert_ne!(text, broken);
    let dir = std::env::temp_dir().join(format!("sixfold-broken-target-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("target.py");
    std::fs::write(&script, broken).unwrap();
    let files: Vec<_> = load_vectors(&root.join("vectors"))
        .unwrap()
        .into_iter()
        .filter(|f| f.suite == "writer")
        .collect();
    let mut target = Target::spawn(&format!("python3 {}", script.display())).unwrap();
    let summary = run(&files, &mut target).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!summary.mismatches.is_empty());
}
