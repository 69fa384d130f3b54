//! SQLite's sqllogictest corpus on the VFS (MemVolume): every record must pass, since
//! the expected results come from stock SQLite (V4, V5).

use std::path::PathBuf;
use std::sync::Arc;

use sixfold_sql::{MemVolume, PageVolume, slt};

fn corpus_dir() -> PathBuf {
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

fn run(relative: &str) {
    let path = corpus_dir().join(relative);
    let volume: Arc<dyn PageVolume> = Arc::new(MemVolume::new());
    let report = slt::run_file(volume, "slt", &path, None)
        .unwrap_or_else(|error| panic!("{relative}: {error}"));
    assert!(report.records > 0, "{relative}: {report:?}");
}

macro_rules! slt_tests {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run($file);
            }
        )*
    };
}

slt_tests! {
    select1 => "select1.test",
    select2 => "select2.test",
    select3 => "select3.test",
    select4 => "select4.test",
    select5 => "select5.test",
    evidence_in1 => "evidence/in1.test",
    evidence_in2 => "evidence/in2.test",
    evidence_aggfunc => "evidence/slt_lang_aggfunc.test",
    evidence_createtrigger => "evidence/slt_lang_createtrigger.test",
    evidence_createview => "evidence/slt_lang_createview.test",
    evidence_dropindex => "evidence/slt_lang_dropindex.test",
    evidence_droptable => "evidence/slt_lang_droptable.test",
    evidence_droptrigger => "evidence/slt_lang_droptrigger.test",
    evidence_dropview => "evidence/slt_lang_dropview.test",
    evidence_reindex => "evidence/slt_lang_reindex.test",
    evidence_replace => "evidence/slt_lang_replace.test",
    evidence_update => "evidence/slt_lang_update.test",
}

#[test]
fn evidence_files_are_all_listed() {
    let mut found: Vec<String> = std::fs::read_dir(corpus_dir().join("evidence"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let listed = [
        "in1.test",
        "in2.test",
        "slt_lang_aggfunc.test",
        "slt_lang_createtrigger.test",
        "slt_lang_createview.test",
        "slt_lang_dropindex.test",
        "slt_lang_droptable.test",
        "slt_lang_droptrigger.test",
        "slt_lang_dropview.test",
        "slt_lang_reindex.test",
        "slt_lang_replace.test",
        "slt_lang_update.test",
    ];
    assert_eq!(found, listed, "a new evidence file needs a test above");
}

#[test]
fn hook_runs_between_records_and_a_wrong_result_fails() {
    // The runner must be able to fail: a wrong expected value is reported.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.test");
    std::fs::write(
        &path,
        "statement ok\nCREATE TABLE t(a INTEGER)\n\nstatement ok\nINSERT INTO t VALUES (1)\n\n\
         query I nosort\nSELECT a FROM t\n----\n2\n",
    )
    .unwrap();
    let volume: Arc<dyn PageVolume> = Arc::new(MemVolume::new());
    let mut calls = Vec::new();
    let mut hook = |index: usize| calls.push(index);
    let error = slt::run_file(volume, "slt", &path, Some(&mut hook)).unwrap_err();
    assert!(
        matches!(error, slt::SltError::Record { index: 2, .. }),
        "{error}"
    );
    assert_eq!(calls, vec![0, 1, 2]);
}
