#!/usr/bin/env python3
"""Benchmark: seconds from nothing to the sample job RUNNING on 3 lab hosts, and RSS per JVM.

nothing -> `lab up` -> playbooks/flink_cluster.yml (every TaskManager registered) ->
playbooks/deploy_job.yml (every task RUNNING). The Flink tarball (`khaos dist`) and the job
jar are build artifacts and are not counted. Target: <= 60 s. Run as root: make bench
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from khaos_controller.infra import ansible
from khaos_controller.infra.lab import Lab


def jvm_rss(lab: Lab) -> list[tuple[str, str, float]]:
    rows = []
    for h in lab.hosts.values():
        pids = subprocess.run(["ip", "netns", "pids", lab.netns(h)], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                p = psutil.Process(int(pid))
                if p.name() != "java":
                    continue
                cmd = " ".join(p.cmdline())
                kind = (
                    "JobManager"
                    if "StandaloneSessionClusterEntrypoint" in cmd
                    else "TaskManager"
                    if "TaskManagerRunner" in cmd
                    else "java"
                )
                rows.append((h.name, kind, p.memory_info().rss / 2**20))
            except psutil.NoSuchProcess:
                continue
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="repeat and report each run")
    args = ap.parse_args()
    print(
        f"# bench/lab_startup  {datetime.datetime.now().isoformat(timespec='seconds')}  "
        f"{platform.node()} {os.cpu_count()} cores {psutil.virtual_memory().total / 2**30:.0f} GiB  "
        f"Python {platform.python_version()}"
    )
    totals = []
    for run in range(1, args.runs + 1):
        lab = Lab("bench")
        lab.down(quiet=True)
        lab = Lab("bench")
        try:
            t0 = time.monotonic()
            lab.up(hosts=args.hosts)
            t_lab = time.monotonic()
            ansible.run_playbook("flink_cluster", lab.inventory)
            t_cluster = time.monotonic()
            ansible.run_playbook("deploy_job", lab.inventory, extravars={"checkpoint_interval": "5s"})
            t_job = time.monotonic()
            total = t_job - t0
            totals.append(total)
            print(
                f"run {run}: lab up {t_lab - t0:5.1f} s | cluster (all TMs registered) {t_cluster - t_lab:5.1f} s"
                f" | job submitted to all tasks RUNNING {t_job - t_cluster:5.1f} s | TOTAL {total:5.1f} s"
            )
            time.sleep(5)  # let the JVMs settle before measuring memory
            for host, kind, rss in jvm_rss(lab):
                print(f"  RSS {kind:<11} on {host:<8} {rss:6.0f} MB")
        finally:
            lab.down(quiet=True)
    worst = max(totals)
    print(
        f"result: nothing -> job RUNNING on {args.hosts} hosts: best {min(totals):.1f} s, worst {worst:.1f} s "
        f"(target <= 60 s: {'PASS' if worst <= 60 else 'FAIL'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
