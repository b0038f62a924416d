#!/usr/bin/env python3
"""Benchmark: seconds from nothing to the sample job RUNNING on 3 lab hosts, and RSS per JVM.

nothing -> `lab up` -> playbooks/flink_cluster.yml (every TaskManager registered) ->
playbooks/deploy_job.yml (every task RUNNING). The Flink tarball (`khaos dist`) and the job
jar are build artifacts and are not counted. Target: <= 60 s. Run as root: make bench

``--kafka``: the same with a Kafka host: `lab up --kafka` -> playbooks/flink_cluster.yml and
playbooks/kafka.yml at the same time (broker healthy) -> a fresh topic and one replay (1000 events/s,
kafka/feed.py) -> the sample job reading that topic deployed -> every task RUNNING, then the first
records read (the source's numRecordsOut > 0). Target: <= 75 s to RUNNING.
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
from khaos_controller.flink.client import FlinkClient
from khaos_controller.flink.probe import JobProbe
from khaos_controller.infra import ansible
from khaos_controller.infra.inventory import cluster_facts
from khaos_controller.infra.lab import Lab
from khaos_controller.kafka import feed as kfeed


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
                    else "Kafka"
                    if "kafka.Kafka" in cmd
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
    ap.add_argument("--kafka", action="store_true", help="a Kafka host too; the job reads a topic (target 75 s)")
    args = ap.parse_args()
    if args.kafka:
        return main_kafka(args)
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


def main_kafka(args) -> int:
    """nothing -> job RUNNING reading Kafka (module docstring)."""
    print(
        f"# bench/lab_startup --kafka  {datetime.datetime.now().isoformat(timespec='seconds')}  "
        f"{platform.node()} {os.cpu_count()} cores {psutil.virtual_memory().total / 2**30:.0f} GiB  "
        f"Python {platform.python_version()}  load {os.getloadavg()[0]:.1f}"
    )
    totals = []
    for run in range(1, args.runs + 1):
        Lab("benchk").down(quiet=True)
        lab, feed = Lab("benchk"), None
        try:
            t0 = time.monotonic()
            lab.up(hosts=args.hosts, kafka=1)
            t_lab = time.monotonic()
            runs = {
                p: ansible.run_playbook_async(p, lab.inventory, ident=f"bench-{p}") for p in ("flink_cluster", "kafka")
            }
            done = {}
            while len(done) < len(runs):  # each playbook's own end, whichever ends first
                for p, (thread, runner) in runs.items():
                    if p not in done and not thread.is_alive():
                        ansible.result_of(runner)
                        done[p] = time.monotonic()
                time.sleep(0.1)
            t_cluster = max(done.values())
            spec = kfeed.KafkaSpec()
            feed = kfeed.Feed(spec, lab.kafka_bootstrap, kfeed.run_prefix("bench"), ["bench"], partitions=2)
            feed.open()
            feed.start(kfeed.source(spec, 3600, rate=1000))
            t_feed = time.monotonic()
            sink = lab.shared_dir / "jobs" / "bench" / "out"
            job_args = [a.format(output=sink, **feed.fill("bench")) for a in kfeed.SAMPLE_ARGS]
            ansible.run_playbook(
                "deploy_job", lab.inventory, extravars={"checkpoint_interval": "5s", "flink_job_args": job_args}
            )
            t_job = time.monotonic()
            client = FlinkClient(cluster_facts(lab.inventory).rest_url)
            probe, read_at = JobProbe(client, client.running_job("iot-vehicles")), None
            while time.monotonic() - t_job < 60 and read_at is None:
                s = probe.sample()
                if s.emitted:
                    read_at = time.monotonic()
                time.sleep(0.2)
            total = t_job - t0
            totals.append(total)
            print(
                f"run {run}: lab up (3 + 1 Kafka host) {t_lab - t0:5.1f} s | flink_cluster.yml + kafka.yml in parallel "
                f"{t_cluster - t_lab:5.1f} s (Flink {done['flink_cluster'] - t_lab:.1f} s, Kafka "
                f"{done['kafka'] - t_lab:.1f} s) | topic + replay {t_feed - t_cluster:4.1f} s | job submitted to all "
                f"tasks RUNNING {t_job - t_feed:5.1f} s | TOTAL {total:5.1f} s | first records read "
                + (f"{read_at - t0:5.1f} s" if read_at else "not within 60 s")
            )
            time.sleep(5)
            for host, kind, rss in jvm_rss(lab):
                print(f"  RSS {kind:<11} on {host:<14} {rss:6.0f} MB")
        finally:
            if feed is not None:
                feed.close()
            lab.down(quiet=True)
    worst = max(totals)
    print(
        f"result: nothing -> job RUNNING on Kafka ({args.hosts} Flink hosts + 1 Kafka host): best "
        f"{min(totals):.1f} s, worst {worst:.1f} s (target <= 75 s: {'PASS' if worst <= 75 else 'FAIL'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
