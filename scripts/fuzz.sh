#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted bytes (docs/fuzzing.md), on the
# stable toolchain: libFuzzer (the libfuzzer-sys crate) with rustc's stable
# `-Cpasses=sancov-module` instrumentation.
#
#   scripts/fuzz.sh                 # every target for 60 s each
#   scripts/fuzz.sh 600 wire page   # the named targets for 600 s each
#
# New inputs that reach new code are added to fuzz/corpus/<target>/ (minimize with
# libFuzzer's -merge=1 before committing); a crash is written to fuzz/artifacts/<target>/
# and the run stops. Replay the corpus on stable with `cargo test -p sixfold-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(wire session record page segment_meta config trace)
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/fuzz}
cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}")

for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  echo "== fuzzing $target for ${seconds}s"
  "$CARGO_TARGET_DIR/$host/release/$target" \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" \
    "fuzz/corpus/$target"
done
