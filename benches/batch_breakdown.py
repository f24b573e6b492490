#!/usr/bin/env python3
"""Where the engine's end-to-end time goes, from the service's per-batch debug lines.

    RUST_LOG=warn,trigger_kafka::service=debug,trigger_kafka::relay=debug cargo run --release -- bench-kafka --bootstrap "$B" \
        --rates 100 --seconds 30 --max-events 1000 --rounds 2 2> batches.log
    benches/batch_breakdown.py batches.log

Reads the `batch` lines (events, records, age_at_poll_us, registry_sync_us, plan_us, ack_us) of one-event
batches (every batch at 100 events/s), and prints percentiles of each part: for the relay's (`relay batch`:
no registry sync; plan = enqueueing its one record), and for the engine's events that wrote one
record (the audit record alone) and for those that wrote more (commands, audit and owner notices: one produce
request per partition, which the broker answers one at a time on the producer's connection). The warm-up's and
the flat-out runs' batches are in the log too; at 100 events/s they are a few percent of the one-event batches.
Then, per round of `--rounds` (the relay's run and the engine's after it), the p99 of the batch total: the
spread between rounds is this machine's noise, which a pooled ratio averages over.
"""
import re
import sys

PARTS = ["age_at_poll_us", "registry_sync_us", "plan_us", "ack_us"]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0


def main(path):
    rows = []
    for line in open(path, errors="replace"):
        if " batch " not in line or "age_at_poll_us=" not in line:
            continue
        kv = dict(re.findall(r"(\w+)=(\d+)", line))
        if int(kv.get("events", 0)) != 1:
            continue
        row = {k: int(kv[k]) for k in PARTS + ["records"]}
        row["relay"] = " relay batch " in line
        row["total_us"] = sum(row[k] for k in PARTS)
        rows.append(row)
    if not rows:
        sys.exit(f"{path}: no one-event batch lines (run with RUST_LOG=trigger_kafka::service=debug)")
    engine = [r for r in rows if not r["relay"]]
    groups = [
        ("relay", [r for r in rows if r["relay"]]),
        ("engine, one record", [r for r in engine if r["records"] == 1]),
        ("engine, more records", [r for r in engine if r["records"] > 1]),
        ("engine, all", engine),
    ]
    print("| events | n | " + " | ".join(f"{k[:-3]} p50 / p99 ms" for k in PARTS + ["total_us"]) + " |")
    print("|---|---|" + "---|" * (len(PARTS) + 1))
    for name, g in groups:
        if not g:
            continue
        cells = [f"{pct([r[k] for r in g], 0.5) / 1e3:.2f} / {pct([r[k] for r in g], 0.99) / 1e3:.2f}" for k in PARTS + ["total_us"]]
        print(f"| {name} | {len(g)} | " + " | ".join(cells) + " |")
    rounds(rows)


def rounds(rows, least=500):
    """Per round (a run of consecutive relay or engine batches, as `--rounds` alternates them), the p99 of the
    batch total, and each engine round's p99 over the relay round before it: how much the pooled ratio hides."""
    runs = []
    for r in rows:
        if runs and runs[-1][0] == r["relay"]:
            runs[-1][1].append(r["total_us"])
        else:
            runs.append((r["relay"], [r["total_us"]]))
    runs = [(relay, t) for relay, t in runs if len(t) >= least]
    if len(runs) < 2:
        return
    print("\n| round | relay n | relay p99 ms | engine n | engine p99 ms | engine / relay |")
    print("|---|---|---|---|---|---|")
    n = 0
    for (a_relay, a), (b_relay, b) in zip(runs, runs[1:]):
        if a_relay and not b_relay:
            n += 1
            ra, rb = pct(a, 0.99) / 1e3, pct(b, 0.99) / 1e3
            print(f"| {n} | {len(a)} | {ra:.2f} | {len(b)} | {rb:.2f} | {rb / ra:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")
