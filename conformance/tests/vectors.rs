//! The committed vectors equal what the reference produces now (a change to them is a
//! protocol change, reviewed like one), and the reference passes them in process.

use std::path::Path;

use sixfold_conformance::runner::load_vectors;
use sixfold_conformance::vectors::{evaluate, generate};

fn vectors_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

#[test]
fn committed_vectors_are_the_reference_outputs() {
    for file in generate() {
        insta::assert_json_snapshot!(file.suite.clone(), file);
        let path = vectors_dir().join(format!("{}.json", file.suite));
        let text = serde_json::to_string_pretty(&file).unwrap() + "\n";
        if std::env::var_os("SIXFOLD_WRITE_VECTORS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with SIXFOLD_WRITE_VECTORS=1",
                path.display()
            )
        });
        assert_eq!(
            committed,
            text,
            "{} is stale; regenerate with SIXFOLD_WRITE_VECTORS=1",
            path.display()
        );
    }
}

#[test]
fn every_vector_passes_against_the_reference() {
    let files = load_vectors(&vectors_dir()).unwrap();
    assert_eq!(files.len(), 5);
    let mut cases = 0;
    for file in &files {
        for case in &file.cases {
            assert_eq!(
                evaluate(&file.suite, &case.input).unwrap(),
                case.expected,
                "{}",
                case.name
            );
            cases += 1;
        }
    }
    assert!(cases >= 60, "only {cases} cases");
}
