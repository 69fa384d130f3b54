//! The committed vectors equal what the reference produces now (a change to them is a
//! protocol change, reviewed like one), every case validates against its suite's schema
//! (spec/conformance.md, conformance/schema), and the reference passes them in process.

use std::path::{Path, PathBuf};

use serde_json::json;
use sixfold_conformance::runner::load_vectors;
use sixfold_conformance::vectors::{VectorFile, evaluate, generate, generated, schema};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

/// The hand-written files are pretty JSON; generated ones one case a line (smaller diffs
/// and files).
fn compact(file: &VectorFile) -> String {
    let mut out = format!(
        "{{\"suite\": {}, \"about\": {}, \"cases\": [\n",
        json!(file.suite),
        json!(file.about)
    );
    let lines: Vec<String> = file
        .cases
        .iter()
        .map(|case| serde_json::to_string(case).unwrap())
        .collect();
    out.push_str(&lines.join(",\n"));
    out.push_str("\n]}\n");
    out
}

fn check_committed(path: &Path, text: &str) {
    if std::env::var_os("SIXFOLD_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with SIXFOLD_WRITE_VECTORS=1",
            path.display()
        )
    });
    assert!(
        committed == text,
        "{} is stale; regenerate with SIXFOLD_WRITE_VECTORS=1",
        path.display()
    );
}

#[test]
fn committed_vectors_are_the_reference_outputs() {
    for file in generate() {
        insta::assert_json_snapshot!(file.suite.clone(), file);
        let path = vectors_dir().join(format!("{}.json", file.suite));
        check_committed(
            &path,
            &(serde_json::to_string_pretty(&file).unwrap() + "\n"),
        );
    }
}

#[test]
fn generated_vectors_are_the_reference_outputs_of_the_runs() {
    // The recovery cases also assert that the reference's decision equals the simulator's.
    for file in generated::generate() {
        let path = vectors_dir()
            .join("generated")
            .join(format!("{}.json", file.suite));
        check_committed(&path, &compact(&file));
    }
}

#[test]
fn every_vector_validates_against_its_suite_schema() {
    let files = load_vectors(&vectors_dir()).unwrap();
    let mut checked = 0;
    for file in &files {
        let schema = schema::load(&schema_dir(), &file.suite).unwrap();
        for case in &file.cases {
            let value = serde_json::to_value(case).unwrap();
            if let Err(error) = schema::validate(&schema, &value) {
                panic!("{} / {}: {error}", file.suite, case.name);
            }
            checked += 1;
        }
    }
    assert!(checked >= 1000, "only {checked} cases");
}

#[test]
fn the_schema_check_rejects_what_the_schemas_forbid() {
    let schema = schema::load(&schema_dir(), "segment").unwrap();
    let good = json!({"name": "x", "input": {"pg": 0, "steps": [{"op": "report"}]},
        "expected": {"steps": [{"result": "ok", "scl": 0, "epoch": 0, "vdl_hint": 0, "holes": [], "held": [], "truncations": []}]}});
    schema::validate(&schema, &good).unwrap();
    let broken = [
        json!({"name": "x", "input": {"pg": 0, "steps": [{"op": "reboot"}]}, "expected": good["expected"]}),
        json!({"name": "x", "input": {"pg": 0, "steps": [{"op": "write", "epoch": 1, "vdl_hint": 0, "record": {"lsn": 1, "pg": 0, "prev_lsn_pg": 0}}]}, "expected": good["expected"]}),
        json!({"name": "x", "input": {"pg": -1, "steps": []}, "expected": good["expected"]}),
        json!({"name": "x", "input": good["input"], "expected": {"steps": [{"result": "maybe", "scl": 0, "epoch": 0, "vdl_hint": 0, "holes": [], "held": [], "truncations": []}]}}),
        json!({"name": "x", "input": good["input"], "expected": {"steps": [{"result": "ok", "scl": 0, "epoch": 0, "holes": [], "held": [], "truncations": []}]}}),
        json!({"name": "x", "input": good["input"], "expected": good["expected"], "extra": 1}),
    ];
    for case in broken {
        assert!(schema::validate(&schema, &case).is_err(), "{case}");
    }
}

#[test]
fn every_vector_passes_against_the_reference() {
    let files = load_vectors(&vectors_dir()).unwrap();
    assert_eq!(files.len(), 9);
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
    assert!(cases >= 1000, "only {cases} cases");
}
