#!/usr/bin/env python3
"""Benchmark: the controller daemon's footprint at idle, and the data gap of a reconfiguration.

On a 3-host lab with the sample job (1000 events/s):
1. Idle: `khaos run` with production loop settings (period and window 300 s, 1 Hz sampling) runs
   for --idle seconds after a warm-up; no decision falls inside the measurement. Reported: CPU
   (user + system of the daemon and its children) as % of one core, and peak RSS.
   Targets: <= 1 % of a core, <= 150 MB.
2. Reconfiguration: --changes runs of playbooks/reconfigure.yml (what the daemon runs), CI
   alternating 10 s / 5 s. Per change: the playbook's time; the job downtime (old job FINISHED ->
   every task of the new job RUNNING, from Flink's own timestamps); and the data gap: the longest
   time no record was processed, read from the sample job's latency histogram (`e2eLatencyMs_max`
   of the new job's first records = how long the oldest waiting record waited) minus the median
   latency before the change. Target: data gap <= 1 s median.
Run as root: .venv/bin/python bench/controller.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from khaos_controller import REPO_ROOT
from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible
from khaos_controller.infra.inventory import cluster_facts
from khaos_controller.infra.lab import Lab
from khaos_controller.model import fit, store

JOB = "iot-vehicles"
RATE = 1000


def footprint(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """(% of one core, peak RSS MB) of `proc` and its children over `seconds`."""

    def cpu() -> float:
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    c0, t0, peak = cpu(), time.monotonic(), 0.0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, proc.memory_info().rss / 2**20)
        time.sleep(1)
    return 100 * (cpu() - c0) / (time.monotonic() - t0), peak


def latency_stat_ms(client: FlinkClient, job_id: str, stat: str = "max") -> float | None:
    """The Latency operator's e2eLatencyMs_<stat> histogram value, max over subtasks (None: not there yet)."""
    vid = client.vertex_id(job_id, "Latency")
    names = [n for n in client.vertex_metric_names(job_id, vid) if n.endswith(f"e2eLatencyMs_{stat}")]
    if not names:
        return None
    return client.vertex_metrics(job_id, vid, names[:1], agg="max").get(names[0])


def wait_metric(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v is not None:
            return v
        time.sleep(0.5)
    return None


def job_times(client: FlinkClient, job_id: str) -> dict:
    return client.job(job_id).get("timestamps") or {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=120, help="seconds of idle measurement (default 120)")
    ap.add_argument("--changes", type=int, default=6, help="reconfigurations to time (default 6)")
    args = ap.parse_args()
    print(
        f"# bench/controller  {datetime.datetime.now().isoformat(timespec='seconds')}  "
        f"{platform.node()} {os.cpu_count()} cores {psutil.virtual_memory().total / 2**30:.0f} GiB  "
        f"Python {platform.python_version()}",
        flush=True,
    )
    lab = Lab("bctl")
    lab.down(quiet=True)
    lab = Lab("bctl")
    tmp = Path(tempfile.mkdtemp(prefix="khaos-bench-controller-"))
    daemon = None
    try:
        lab.up(hosts=3)
        ansible.run_playbook("flink_cluster", lab.inventory, base_dir=tmp / "ansible")
        ansible.run_playbook(
            "deploy_job",
            lab.inventory,
            base_dir=tmp / "ansible",
            extravars={"checkpoint_interval": "10s", "flink_job_rate": RATE},
        )
        client = FlinkClient(cluster_facts(lab.inventory).rest_url)
        model = store.save(
            fit.fit(fit.load_results(REPO_ROOT / "examples/profile-lab-results.csv")), tmp / "model.json"
        )
        cfg = {
            "job": JOB,
            "flink": {"rest_url": client.url},
            "inventory": str(lab.inventory),
            "model": str(model),
            "limits": {"latency_ms": 1000, "recovery_s": 60},
            "journal": str(tmp / "journal.jsonl"),
            "loop": {"period_s": 300, "window_s": 300, "min_uptime_s": 0},
            "metrics": {"port": 0},
            "state_dir": str(lab.dir / "state"),
        }
        (tmp / "controller.yml").write_text(yaml.safe_dump(cfg))

        # 1. idle footprint
        daemon = subprocess.Popen(
            [sys.executable, "-m", "khaos_controller.cli", "run", str(tmp / "controller.yml")],
            stdout=open(tmp / "daemon.log", "wb"),  # noqa: SIM115 - the daemon's log until the end
            stderr=subprocess.STDOUT,
        )
        time.sleep(20)  # start-up (imports, reconcile, job check) and the collector's first samples
        assert daemon.poll() is None, (tmp / "daemon.log").read_text()[-2000:]
        cpu_pct, rss = footprint(psutil.Process(daemon.pid), args.idle)
        decisions = sum(1 for line in (tmp / "journal.jsonl").read_text().splitlines() if '"decision"' in line)
        daemon.terminate()
        daemon.wait(timeout=60)
        print(
            f"idle daemon over {args.idle:.0f}s (1 Hz sampling, {decisions} decisions): CPU {cpu_pct:.2f}% of a core "
            f"(target <= 1%: {'PASS' if cpu_pct <= 1 else 'FAIL'}), peak RSS {rss:.0f} MB "
            f"(target <= 150 MB: {'PASS' if rss <= 150 else 'FAIL'})",
            flush=True,
        )

        # 2. reconfigurations
        gaps, downs, plays = [], [], []
        print(
            f"{'change':>7} {'playbook s':>10} {'downtime s':>10} {'latency before ms':>17} "
            f"{'first max ms':>12} {'data gap s':>10}",
            flush=True,
        )
        for i in range(args.changes):
            new_ci = 5 if i % 2 == 0 else 10
            old = client.running_job(JOB)
            time.sleep(8)  # a steady second or two of the old job after the previous change
            before = wait_metric(lambda old=old: latency_stat_ms(client, old, "median"))
            t0 = time.monotonic()
            ansible.run_playbook(
                "reconfigure",
                lab.inventory,
                base_dir=tmp / "ansible",
                extravars={"checkpoint_interval": f"{new_ci}s", "flink_job_name": JOB},
            )
            play_s = time.monotonic() - t0
            new = client.running_job(JOB)
            ended = job_times(client, old).get("FINISHED")
            client.wait_running(new)
            # all tasks RUNNING: the latest task start among the vertices
            started = max(v.get("start-time", 0) for v in client.job(new)["vertices"])
            down = (started - ended) / 1000 if ended and started else float("nan")
            time.sleep(3)  # the first records of the new job have gone through the Latency operator
            first = wait_metric(lambda new=new: latency_stat_ms(client, new))
            gap = (first - (before or 0)) / 1000 if first is not None else float("nan")
            gaps.append(gap)
            downs.append(down)
            plays.append(play_s)
            print(
                f"{i + 1:>4} ->{new_ci:>2}s {play_s:>8.1f} {down:>10.2f} {before or 0:>17.0f} "
                f"{first or 0:>12.0f} {gap:>10.2f}",
                flush=True,
            )
        med = statistics.median(gaps)
        print(
            f"reconfiguration: playbook median {statistics.median(plays):.1f}s, job downtime median "
            f"{statistics.median(downs):.2f}s, data gap median {med:.2f}s (min {min(gaps):.2f}, max {max(gaps):.2f}) "
            f"(target <= 1 s: {'PASS' if med <= 1 else 'FAIL'})"
        )
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        lab.down(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
