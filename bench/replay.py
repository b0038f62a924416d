#!/usr/bin/env python3
"""Benchmark: `khaos replay`'s producer throughput, CPU and memory (the aim: >= 100,000 records/s in total).

For each case (topics x total rate), a child process replays generated iot-vehicles records (the format the
sample job reads) for --seconds into fresh topics of a broker: a local one started from jobs/kafka-dist (the
default, on 127.0.0.1) or --bootstrap. Reported per case: records/s in total (records delivered to the broker,
counted from the log end offsets, over the replay's active time), CPU of the replaying process (user + system
of all its threads, % of one core: its whole life's CPU, imports and final flush included, over the replay's
active seconds; "(replay)": only the CPU of the replay() call), its peak RSS (ru_maxrss), how late it ran
(seconds with a record sent > 100 ms after its due time; the latest), and the machine's load. The broker's own CPU is not counted (it shares the 2 cores).
Run: .venv/bin/python bench/replay.py [--seconds 30] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from khaos_controller.kafka import admin, replay

CASES = [  # (topics, total records/s, format)
    (2, 100_000, "iot"),
    (4, 100_000, "iot"),
    (4, 100_000, "ysb"),
    (2, 200_000, "iot"),  # beyond the target: where does it saturate?
    (4, 400_000, "iot"),
]


def child(args) -> None:
    """Run one replay (in its own process) and print its summary as JSON."""
    source = replay.rate_source(args.rate / len(args.topic), args.seconds, args.format)
    s = replay.replay(source, args.topic, bootstrap=args.bootstrap)
    print(json.dumps({**s.__dict__, "sent": s.sent}))


def run_case(bootstrap: str, topics: int, rate: int, fmt: str, seconds: int, tag: str) -> dict:
    client = admin.connect(bootstrap)
    names = [f"bench-{tag}-{k}" for k in range(topics)]
    for t in names:
        admin.delete_topic(client, t)
        admin.create_topic(client, t, partitions=4)
    cmd = [sys.executable, __file__, "--child", "--bootstrap", bootstrap, "--rate", str(rate)]
    cmd += ["--seconds", str(seconds), "--format", fmt] + [a for t in names for a in ("--topic", t)]
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"replay child failed ({status}): {out[-500:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    delivered = sum(sum(admin.end_offsets(client, t).values()) for t in names)
    for t in names:
        admin.delete_topic(client, t)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "case": f"{topics} topics x {rate // topics:,}/s {fmt}",
        "target": rate,
        "delivered": delivered,
        "due": summary["due"] * topics,
        "rate": delivered / summary["active_s"],
        "cpu_pct": 100 * cpu / summary["active_s"],
        "cpu_replay_pct": 100 * summary["cpu_s"] / summary["active_s"],
        "rss_mb": usage.ru_maxrss / 1024,
        "late_s": summary["late_seconds"],
        "max_late_ms": summary["max_late_ms"],
        "load": (load0 + os.getloadavg()[0]) / 2,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help="a broker to use (default: start a local one from jobs/kafka-dist)")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    p.add_argument("--format", default="iot", help=argparse.SUPPRESS)
    p.add_argument("--topic", action="append", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    import confluent_kafka

    cpu_model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    print(
        f"# bench/replay  {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
        f"{os.cpu_count()} cores ({cpu_model})  {psutil.virtual_memory().total / 2**30:.0f} GiB  "
        f"Python {platform.python_version()}  confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]})"
    )
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap
        if not bootstrap:
            from support.broker import local_broker

            broker = stack.enter_context(local_broker())
            bootstrap = broker.bootstrap
            print(
                f"# broker: Kafka 4.4.0 (jobs/kafka-dist) on {bootstrap}, same machine, up in {broker.started_s:.1f} s"
            )
        print(f"# {args.seconds} s per case; producer {replay.PRODUCER}")
        print(
            f"{'case':<28} {'records/s':>10} {'delivered':>10} {'of due':>9} {'CPU %':>6} {'(replay)':>8} "
            f"{'RSS MB':>7} {'late s':>6} {'max late ms':>11} {'load':>5}"
        )
        for n, (topics, rate, fmt) in enumerate(CASES):
            r = run_case(bootstrap, topics, rate, fmt, args.seconds, str(n))
            print(
                f"{r['case']:<28} {r['rate']:>10,.0f} {r['delivered']:>10,} {r['due']:>9,} {r['cpu_pct']:>6.1f} "
                f"{r['cpu_replay_pct']:>8.1f} {r['rss_mb']:>7.0f} {r['late_s']:>6} {r['max_late_ms']:>11.0f} "
                f"{r['load']:>5.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
