#!/usr/bin/env python3
"""Failover time on Apache Kafka: from SIGKILL of the instance that decides to the first decision of the next
event by the other instance.

A broker of its own (scripts/kafka.sh, in a temporary folder), one CFS partition, two `serve` instances of one
deployment (the release binary, default settings: one decides, one stands by), calls produced at 20/s
throughout (`replay --to-kafka --rate 20`). Each round: find the decider (the instance whose /readyz answers
200), SIGKILL it, poll the standby's `dispatch_trigger_decisions_total` every 20 ms until it grows (its first
decision), then start the killed instance again as the standby and let the group settle. Prints a Markdown table and writes
out/failover.json.

    python3 benches/failover.py [--rounds 10]

With `--broker-outage SECONDS`, each round SIGSTOPs the broker for that long instead (longer than the leadership
group's 6 s session) and times, from its SIGCONT, the first decision of either instance.

    python3 benches/failover.py --rounds 5 --broker-outage 30
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "dispatch-trigger")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def decisions(port):
    """The instance's decisions so far (every outcome), from its /metrics."""
    status, body = get(port, "/metrics")
    if status != 200:
        return None
    return sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith("dispatch_trigger_decisions_total{"))


def kafka(cmd, kdir):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "kafka.sh"), cmd, "--dir", kdir],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Instance:
    def __init__(self, name, work, kafka_section):
        self.name, self.port = name, free_port()
        self.config = os.path.join(work, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(f'policy = "{os.path.join(ROOT, "config", "policy.toml")}"\n{kafka_section}'
                    f'[http]\nlisten = "127.0.0.1:{self.port}"\n[log]\nlevel = "warn"\n')
        self.log = os.path.join(work, f"{name}.log")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.config], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "a"))
        deadline = time.time() + 60
        while get(self.port, "/healthz")[0] != 200:
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit(f"{self.name} did not start: see {self.log}")
            time.sleep(0.05)

    def ready(self):
        return get(self.port, "/readyz")[0] == 200

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--broker-outage", type=float, default=0, metavar="SECONDS")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="dt-failover-")
    kdir = os.path.join(work, "kafka")
    bootstrap = kafka("start", kdir).split("=", 1)[1]
    procs = []
    try:
        section = f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "failover-bench"\n'
        subprocess.run([BIN, "topics", "create", "--to", bootstrap, "--partitions", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        cams = os.path.join(work, "cams.jsonl")
        subprocess.run([BIN, "cameras", "generate", "--count", "2000", "--seed", "7", "--around",
                        os.path.join(ROOT, "fixtures", "nashville-mnpd-2024-07-01_07.csv"), "--profile",
                        "nashville-mnpd", "--out", cams], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        subprocess.run([BIN, "cameras", "publish", "--cameras", cams, "--to", bootstrap], check=True,
                       stdout=subprocess.DEVNULL)
        a, b = Instance("a", work, section), Instance("b", work, section)
        a.start()
        b.start()
        # Calls throughout: the bundled week, over and over, at 20/s.
        week = os.path.join(ROOT, "fixtures", "nashville-mnpd-2024-07-01_07.csv")
        sender = subprocess.Popen(
            ["bash", "-c", f'while true; do "{BIN}" replay "{week}" --format csv --profile nashville-mnpd '
                           f'--to-kafka {bootstrap} --rate 20 >/dev/null 2>&1 || exit 1; done'], cwd=ROOT)
        procs.append(sender)
        times = []
        for r in range(args.rounds):
            deadline = time.time() + 90
            while True:
                owner = next((i for i in (a, b) if i.ready()), None)
                survivor = b if owner is a else a
                if owner and not survivor.ready() and decisions(owner.port):
                    break
                if time.time() > deadline:
                    sys.exit("the deployment never settled on one decider")
                time.sleep(0.1)
            if args.broker_outage:
                kafka("pause", kdir)
                time.sleep(args.broker_outage)
                kafka("resume", kdir)
                t0 = time.monotonic()
                total = lambda: sum(decisions(i.port) or 0.0 for i in (a, b))
                before = total()
                while total() <= before:
                    if time.monotonic() - t0 > 120:
                        sys.exit("no decision after the outage")
                    time.sleep(0.02)
            else:
                before = decisions(survivor.port) or 0.0
                t0 = time.monotonic()
                owner.kill()
                while (decisions(survivor.port) or 0.0) <= before:
                    if time.monotonic() - t0 > 120:
                        sys.exit("the survivor never decided")
                    time.sleep(0.02)
            took = time.monotonic() - t0
            times.append(took)
            print(f"round {r + 1}: {took:.2f} s", file=sys.stderr)
            if not args.broker_outage:
                owner.start()
            time.sleep(3)
        result = {"rounds": len(times), "p50_s": round(statistics.median(times), 2),
                  "max_s": round(max(times), 2), "min_s": round(min(times), 2),
                  "times_s": [round(t, 2) for t in times]}
        os.makedirs(os.path.join(ROOT, "out"), exist_ok=True)
        with open(os.path.join(ROOT, "out", "failover.json"), "w") as f:
            json.dump(result, f, indent=2)
        what = f"{args.broker_outage:g} s outages" if args.broker_outage else "kills"
        print(f"| {what} | failover p50 | max | min |\n| --- | --- | --- | --- |")
        print(f"| {result['rounds']} | {result['p50_s']} s | {result['max_s']} s | {result['min_s']} s |")
    finally:
        for p in procs:
            p.kill()
        subprocess.run(["pkill", "-f", "--", f"--to-kafka {bootstrap}"], check=False)
        subprocess.run(["pkill", "-f", work], check=False)
        kafka("stop", kdir)


if __name__ == "__main__":
    main()
