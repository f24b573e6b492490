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
Then, per round of `--rounds` (a relay run and an engine run, in either order), the p99 of the batch totals:
the spread between rounds is this machine's noise, which a pooled ratio averages over. Runs are told apart by
bench-kafka's summary line at the end of each; the broker warm-up run it does not count is left out.
"""
import re
import sys

PARTS = ["age_at_poll_us", "registry_sync_us", "plan_us", "ack_us"]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0


# bench-kafka's line at the end of each run: "relay      100: 3000 events, 100/s, p99 Some(4.1) ms".
RUN_END = re.compile(r"^\s*(relay|engine)\s+(\S+): \d+ events")


def runs_of(path):
    """The one-event batches of each run, closed by bench-kafka's summary line of that run: a list of
    (processor, offered, counted, rows). A run the bench did not count (its broker warm-up) says so."""
    runs, rows = [], []
    for line in open(path, errors="replace"):
        end = RUN_END.match(line)
        if end:
            runs.append((end.group(1), end.group(2), "not counted" not in line, rows))
            rows = []
            continue
        if " batch " not in line or "age_at_poll_us=" not in line:
            continue
        kv = dict(re.findall(r"(\w+)=(\d+)", line))
        if int(kv.get("events", 0)) != 1:
            continue
        row = {k: int(kv[k]) for k in PARTS + ["records"]}
        row["relay"] = " relay batch " in line
        row["total_us"] = sum(row[k] for k in PARTS)
        rows.append(row)
    return runs


def main(path):
    runs = runs_of(path)
    rows = [r for _, _, counted, rs in runs if counted for r in rs]
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
    rounds(runs)


def rounds(runs):
    """Per round (bench-kafka's --rounds: a relay run and an engine run at one rate, in either order), the p99
    of the batch totals of each side and the engine's over the relay's: how much the pooled ratio hides."""
    paced = [(p, rate, rs) for p, rate, counted, rs in runs if counted and rate != "max"]
    pairs = [(a, b) for a, b in zip(paced[0::2], paced[1::2]) if a[1] == b[1] and {a[0], b[0]} == {"relay", "engine"}]
    if not pairs:
        return
    print("\n| round | rate | first | relay p99 ms | engine p99 ms | engine / relay |")
    print("|---|---|---|---|---|---|")
    for n, (a, b) in enumerate(pairs, 1):
        side = {a[0]: a[2], b[0]: b[2]}
        ra, rb = (pct([r["total_us"] for r in side[k]], 0.99) / 1e3 for k in ("relay", "engine"))
        print(f"| {n} | {a[1]} | {a[0]} | {ra:.2f} | {rb:.2f} | {rb / ra:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")
