#!/usr/bin/env bash
# The engine against a bare consume->produce relay, side by side on one broker in one run (librdkafka's mock
# cluster, in process): fixed offered rates, then flat out. Prints a Markdown table (BENCHMARKS.md) and writes
# out/bench-kafka.json. Extra arguments go to `dispatch-trigger-bench kafka` (see its --help), e.g.
#   benches/kafka_relay.sh --rates 100,1000 --seconds 5
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
cargo build --release --locked --quiet
./target/release/dispatch-trigger-bench kafka --out out/bench-kafka.json "$@" | tee out/bench-kafka.md
