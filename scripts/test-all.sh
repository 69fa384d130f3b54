#!/usr/bin/env bash
# Every test of sixfold: formatting, lints, the workspace's tests (unit, property, model
# checks with their mutants, storage faults, cluster, SQL, conformance, spec coverage) and
# the loom models of the page cache, including the mutant loom must catch.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test --workspace"
cargo test --workspace

if [ -f impl/pagecache/tests/loom.rs ]; then
  step "loom models of the page cache"
  RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p sixfold-pagecache --release --test loom
  step "loom must catch the page-cache mutant"
  RUSTFLAGS="--cfg loom --cfg loom_mutant" CARGO_TARGET_DIR=target/loom-mutant \
    cargo test -p sixfold-pagecache --release --test loom
fi

step "all tests passed"
