#!/usr/bin/env bash
# Fuzz every decoder and the decision after it: `fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]` (default 30 s,
# every target). Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). The stable toolchain runs it with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags); targets build in release with debug assertions and overflow
# checks on, without a sanitizer (safe Rust: what we look for are panics and overflows). Seeds are generated
# from the real data (see crates/trigger-cad/examples/fuzz_seeds.rs); findings land in fuzz/artifacts/.
# FUZZ_RUNS=N instead runs N executions per target (the long runs recorded in RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
if [ ! -d fuzz/corpus ]; then
  cargo run -q --locked -p trigger-cad --example fuzz_seeds -- fuzz/corpus
fi
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -s none --debug-assertions
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -n "${FUZZ_RUNS:-}" ]; then budget=(-runs="$FUZZ_RUNS"); else budget=(-max_total_time="$secs"); fi
  # Row-based inputs: 2 KB is a dozen CSV rows, plenty to reach every branch, and four times the executions.
  case "$t" in csv_*) max_len=2048 ;; *) max_len=8192 ;; esac
  echo "=== fuzz $t (${FUZZ_RUNS:-${secs}s})"
  cargo fuzz run -s none --debug-assertions "$t" "corpus/$t" -- -dict=extreme.dict "${budget[@]}" \
    -print_final_stats=1 -max_len="$max_len" 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread|panicked|Done)|ERROR' || true
  # Either kind alone is a failure (one `ls` of both globs fails whenever only one of them matches).
  if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/oom-*" >/dev/null; then
    echo "fuzz target $t found a failing input: fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
