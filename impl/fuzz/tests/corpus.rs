//! Replays the fuzz corpus kept in the repository (`fuzz/corpus/<target>/`, seeds and every
//! input a fuzzer found worth keeping, findings included) through each target: a decoder
//! that panics on any of them fails here, on stable, in the ordinary test run (L6).

use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus folder {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect()
}

#[test]
fn every_target_has_a_corpus_and_survives_it() {
    for (name, target) in sixfold_fuzz::TARGETS {
        let inputs = inputs(name);
        assert!(!inputs.is_empty(), "target {name} has no corpus");
        for (path, bytes) in inputs {
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(
                outcome.is_ok(),
                "target {name} panicked on {}",
                path.display()
            );
        }
    }
}

#[test]
fn seeds_are_in_the_corpus_and_decode() {
    // The seeds are valid inputs: each must be kept in the corpus and pass its target.
    for (target, name, bytes) in sixfold_fuzz::seeds::all() {
        let path = corpus_dir().join(target).join(format!("seed-{name}"));
        let kept = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if target != "trace" {
            assert_eq!(kept, bytes, "{} is stale: run fuzz-seeds", path.display());
        }
        sixfold_fuzz::target(target).expect("seed of a known target")(&bytes);
    }
}
