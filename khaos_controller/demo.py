"""`khaos demo`: the sample job end to end on the local lab, then everything is cleaned up.

lab up -> playbooks/flink_cluster.yml -> playbooks/deploy_job.yml -> watch checkpoints, rate,
lag and latency -> stop with savepoint -> audit the exactly-once sink -> lab down.
"""
from __future__ import annotations

import time

from . import ansible, audit
from .chaos import running_job
from .errors import KhaosError
from .flink import FlinkClient
from .lab import Lab
from .probe import JobProbe


def _step(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)


def run(lab_name: str = "demo", hosts: int = 3, rate: int = 2000, interval: str = "5s", seconds: int = 60,
        keep: bool = False, profile: str | None = "examples/experiment-lab.yml") -> None:
    t0 = time.monotonic()
    lab = Lab(lab_name)
    if lab.hosts:
        raise KhaosError(f"lab {lab_name!r} is already up: `khaos lab down --name {lab_name}` first")
    try:
        _step(t0, f"lab up: {hosts} hosts (1 JobManager, {hosts - 1} TaskManagers)")
        lab.up(hosts=hosts)
        _step(t0, f"playbooks/flink_cluster.yml on {lab.inventory.name}")
        ansible.run_playbook("flink_cluster", lab.inventory, ident=f"demo-cluster-{int(time.time())}")
        _step(t0, f"playbooks/deploy_job.yml: sample job at {rate} events/s, checkpoint interval {interval}")
        ansible.run_playbook("deploy_job", lab.inventory, extravars={"checkpoint_interval": interval,
                                                                      "flink_job_rate": rate})
        jm = next(iter(lab.hosts.values()))
        client = FlinkClient(f"http://{jm.ip}:8081")
        job_id = running_job(client, "iot-vehicles")
        _step(t0, f"job {job_id} RUNNING; interval in force: {client.checkpoint_interval_ms(job_id) / 1000:g}s")
        probe = JobProbe(client, job_id)
        print(f"{'time':>8} {'checkpoints':>11} {'rate/s':>8} {'backlog':>8} {'lag ms':>7} {'p99 latency ms':>15}")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s = probe.sample()
            print(f"{time.monotonic() - t0:7.1f}s {s.checkpoints_completed:>11} {_fmt(s.rate):>8} {_fmt(s.backlog):>8} "
                  f"{_fmt(s.lag_ms):>7} {_fmt(s.latency_p99_ms):>15}", flush=True)
            time.sleep(min(5, max(0, end - time.monotonic())))
        location = client.stop_with_savepoint(job_id)
        _step(t0, f"stopped with savepoint {location}")
        result = audit.audit(lab.shared_dir / "jobs" / "iot-vehicles" / "out")
        _step(t0, f"sink audit: {result.records} records, ids {result.min_id}..{result.max_id}, "
                  f"lost {result.lost}, duplicated {result.duplicated}")
        if result.lost or result.duplicated:
            raise KhaosError(f"sink audit failed: {result.lost} lost, {result.duplicated} duplicated")
    finally:
        if not keep:
            lab.down(quiet=True)
            _step(t0, f"lab {lab_name} down: hosts, JVMs and files removed")
    if profile:
        short_profile(t0, profile)


def short_profile(t0: float, path: str) -> None:
    """Part 2: parallel clusters, real failures at the worst moment, recovery measured."""
    from . import REPO_ROOT, experiment
    from .profiler import Profiler
    exp = experiment.load(REPO_ROOT / path)
    prof = Profiler(exp, out=REPO_ROOT / exp.output)
    _step(t0, "short profile: " + prof.describe().splitlines()[0])
    df = prof.run()
    cols = ["cluster", "ci_s", "rate", "mode", "since_checkpoint_s", "detect_s", "running_s", "recovery_s",
            "peak_lag_ms", "audit_lost", "audit_duplicated"]
    print(df[cols].round(1).to_string(index=False))
    _step(t0, f"profile done: {len(df)} failures; results {prof.out / 'results.csv'}, "
              f"plot {prof.out / 'recovery_vs_rate.png'}, journal {prof.out / 'journal.jsonl'}")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"
