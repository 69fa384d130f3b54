//! The spec-coverage check: every rule in spec/ is cited by code or a test outside spec/
//! unless it is marked *(planned)*; every cited ID is defined; and every rule of the areas
//! the protocol core implements (Q, L, W, C, X, E), of the server (H) and of read replicas
//! (P) is cited by a test; and every L, W, C, S, R, X and E rule is pinned by a conformance
//! vector's `rules` (spec/conformance.md), except those spec/conformance.md lists as
//! outside the suites' reach.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const AREAS: &str = "QLWCSRXEMVAIBKHP";
const AREAS_NEEDING_TESTS: &str = "QLWCXEHPM";
const AREAS_NEEDING_VECTORS: &str = "LWCSRXE";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Rule IDs defined in spec/*.md: lines starting `- **ID**`, with their planned mark.
fn defined_rules(root: &Path) -> BTreeMap<String, bool> {
    let mut rules = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("spec")).expect("spec/ exists") {
        let path = entry.expect("readable spec/").path();
        if path.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable spec file");
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("- **") else {
                continue;
            };
            let Some(end) = rest.find("**") else { continue };
            let id = &rest[..end];
            if is_rule_id(id) {
                let planned = line.contains("*(planned)*");
                assert!(
                    rules.insert(id.to_string(), planned).is_none(),
                    "rule {id} defined twice"
                );
            }
        }
    }
    rules
}

fn is_rule_id(token: &str) -> bool {
    let mut chars = token.chars();
    matches!(chars.next(), Some(area) if AREAS.contains(area))
        && token.len() >= 2
        && chars.all(|c| c.is_ascii_digit())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(name.as_ref(), "target" | "spec" | ".git" | "snapshots") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Rule-ID tokens cited in a source text.
fn citations(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|token| is_rule_id(token))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_rule_is_cited_and_every_citation_is_defined() {
    let root = workspace();
    let rules = defined_rules(&root);
    assert!(
        rules.len() >= 40,
        "spec/ defines only {} rules",
        rules.len()
    );
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut cited: BTreeSet<String> = BTreeSet::new();
    let mut cited_by_tests: BTreeSet<String> = BTreeSet::new();
    let mut undefined: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let is_test =
            file.components().any(|c| c.as_os_str() == "tests") || text.contains("#[cfg(test)]");
        for id in citations(&text) {
            if !rules.contains_key(&id) {
                undefined.entry(id.clone()).or_insert_with(|| file.clone());
            }
            if is_test {
                cited_by_tests.insert(id.clone());
            }
            cited.insert(id);
        }
    }
    let planned: Vec<&String> = rules
        .iter()
        .filter(|&(_, &p)| p)
        .map(|(id, _)| id)
        .collect();
    let uncited: Vec<&String> = rules
        .iter()
        .filter(|&(id, &p)| !p && !cited.contains(id))
        .map(|(id, _)| id)
        .collect();
    let untested: Vec<&String> = rules
        .iter()
        .filter(|&(id, &p)| {
            !p && AREAS_NEEDING_TESTS.contains(&id[..1]) && !cited_by_tests.contains(id)
        })
        .map(|(id, _)| id)
        .collect();
    println!("rules defined: {}", rules.len());
    println!("planned: {planned:?}");
    println!("uncited: {uncited:?}");
    println!("core areas not cited by a test: {untested:?}");
    assert!(
        undefined.is_empty(),
        "cited but not defined in spec/: {undefined:?}"
    );
    assert!(
        uncited.is_empty(),
        "rules nothing cites (mark them *(planned)* or cite them): {uncited:?}"
    );
    assert!(
        untested.is_empty(),
        "core rules no test cites: {untested:?}"
    );
}

/// Rule IDs cited by the `rules` of every vector file under conformance/vectors.
fn vector_citations(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir)
        .expect("conformance/vectors exists")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            vector_citations(&path, out);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable vector file");
        let file: serde_json::Value = serde_json::from_str(&text).expect("vector JSON");
        for case in file["cases"].as_array().expect("cases") {
            for rule in case["rules"].as_array().into_iter().flatten() {
                out.insert(rule.as_str().expect("rule IDs are strings").to_string());
            }
        }
    }
}

/// The rules spec/conformance.md names under "Rules the suites do not reach".
fn rules_outside_the_suites(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join("spec").join("conformance.md"))
        .expect("spec/conformance.md exists");
    let section = text
        .split("## Rules the suites do not reach")
        .nth(1)
        .expect("spec/conformance.md has the section");
    let section = section.split("\n## ").next().unwrap_or(section);
    citations(section)
}

#[test]
fn every_vector_area_rule_is_pinned_by_a_vector() {
    let root = workspace();
    let rules = defined_rules(&root);
    let mut cited = BTreeSet::new();
    vector_citations(&root.join("conformance").join("vectors"), &mut cited);
    let undefined: Vec<&String> = cited.iter().filter(|id| !rules.contains_key(*id)).collect();
    assert!(
        undefined.is_empty(),
        "vectors cite undefined rules: {undefined:?}"
    );
    let exempt = rules_outside_the_suites(&root);
    for id in &exempt {
        assert!(
            rules.contains_key(id),
            "spec/conformance.md exempts undefined rule {id}"
        );
        assert!(
            !cited.contains(id),
            "{id} is exempted but a vector pins it: drop the exemption"
        );
    }
    let unpinned: Vec<&String> = rules
        .iter()
        .filter(|&(id, &planned)| {
            !planned
                && AREAS_NEEDING_VECTORS.contains(&id[..1])
                && !cited.contains(id)
                && !exempt.contains(id)
        })
        .map(|(id, _)| id)
        .collect();
    println!("rules pinned by vectors: {}", cited.len());
    println!("outside the suites (spec/conformance.md): {exempt:?}");
    assert!(unpinned.is_empty(), "rules no vector pins: {unpinned:?}");
}
