#!/usr/bin/env python3
"""Benchmark: a full profile (>= 30 failures over >= 5 intervals x >= 5 rates) on the local lab.

Prints wall time, failures per minute, the failures measured within the first 30 minutes (the aim:
>= 30) and peak memory (the profiler process, and the machine as a whole with every lab JVM).
Run as root:
  .venv/bin/python bench/profile.py [bench/profile.yml]
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from khaos_controller.errors import KhaosError
from khaos_controller.profile import experiment
from khaos_controller.profile.profiler import Profiler


def measured_within(journal: Path, seconds: float) -> int:
    """Failures whose measurement the journal records within ``seconds`` of the profile's start."""
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    t0 = events[0]["ts"]
    return sum(1 for e in events if e.get("event") == "measure" and e["ts"] - t0 <= seconds)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("profile.yml"))
    exp = experiment.load(path)
    print(
        f"# bench/profile  {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()} "
        f"{os.cpu_count()} cores {psutil.virtual_memory().total / 2**30:.0f} GiB  experiment {path}"
    )
    base_used = psutil.virtual_memory().used
    peak = {"used": base_used}
    stop = threading.Event()

    def watch():
        while not stop.wait(1):
            peak["used"] = max(peak["used"], psutil.virtual_memory().used)

    threading.Thread(target=watch, daemon=True).start()
    prof = Profiler(exp)
    print(prof.describe(), flush=True)
    t0 = time.monotonic()
    try:
        df = prof.run()
    except KhaosError as e:
        print(f"bench/profile: {e}")
        return 1
    wall = time.monotonic() - t0
    stop.set()
    n = len(df)
    print(df.groupby(["ci_s", "mode"])["recovery_s"].agg(["count", "mean", "min", "max"]).round(1).to_string())
    print(
        f"failures measured: {n} of {exp.failures} planned ({len(prof.errors)} unit errors); "
        f"recovered: {int(df['recovered'].sum()) if n else 0}; "
        f"sink audits: lost {int(df['audit_lost'].sum()) if n else 0}, "
        f"duplicated {int(df['audit_duplicated'].sum()) if n else 0}"
    )
    print(
        f"result: wall time {wall / 60:.1f} min, {n / (wall / 60):.2f} failures/min, "
        f"peak RSS of the profiler {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
        f"peak machine memory in use +{(peak['used'] - base_used) / 2**30:.1f} GiB over idle"
    )
    in_30 = measured_within(prof.out / "journal.jsonl", 1800)
    print(f"failures measured within 30 min of the start: {in_30} (target >= 30: {'PASS' if in_30 >= 30 else 'FAIL'})")
    print(f"plot: {prof.out / 'recovery_vs_rate.png'}  results: {prof.out / 'results.csv'}")
    return 0 if not prof.errors else 1


if __name__ == "__main__":
    sys.exit(main())
