"""Test doubles for a daemon step, for the unit tests of khaos_controller/control: a config file, a fake
collector and a fake playbook (the restart realizer's), a daemon made of them, a clock and a scripted Flink
REST client for the pacer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from khaos_controller.control import config as daemon_config
from khaos_controller.control import daemon, realizer
from khaos_controller.control.collector import Observation, Point, summarise
from khaos_controller.errors import KhaosError
from khaos_controller.flink.client import FlinkError


def write_config(tmp_path: Path, model_file: Path, **over) -> Path:
    inv = tmp_path / "inventory.yml"
    if not inv.exists():
        inv.write_text(yaml.safe_dump({"all": {"vars": {"khaos_state_dir": str(tmp_path / "state")}}}))
    cfg = {
        "job": "tj",
        "flink": {"rest_url": "http://127.0.0.1:1"},
        "inventory": "inventory.yml",
        "model": str(model_file),
        "limits": {"latency_ms": 1000, "recovery_s": 25},
        "mtbf_h": 0.01,  # failures every 36 s: a recovery excess outweighs what a restart change costs
        # slack 1e6: the longest feasible interval (these tests are about the loop; test_optimizer, the slack)
        "ci": {"min": 2, "max": 20, "step": 1, "dead_band_s": 3, "cooldown_s": 600, "slack_s_per_h": 1e6},
        "loop": {"period_s": 15, "window_s": 10, "min_uptime_s": 10},
        "journal": "journal.jsonl",
        "metrics": {"host": "127.0.0.1", "port": 0},
    }
    for key, value in over.items():
        if value is ...:
            cfg.pop(key, None)
        elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = tmp_path / "controller.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class FakeCollector:
    """Test double of FlinkCollector: a window of `rate` events/s at interval `ci_s`."""

    def __init__(self, rate=300.0, ci_s=20.0, uptime_s=3600.0, samples=10, job_id="j1", backlog=None):
        self.rate, self.ci_s, self.uptime_s, self.samples, self.job_id, self.backlog = (
            rate,
            ci_s,
            uptime_s,
            samples,
            job_id,
            backlog,
        )
        self.started = self.stopped = False
        self.down, self.t = False, None  # down: the job runs but not every task; t: the sample time

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    capacity = None  # events/s estimated from busy time (None: no estimate)
    jobs = None  # running jobs of the name (None: one while there is a job id)

    def snapshot(self, window_s):
        now = self.t or time.time()
        obs = Observation(
            t=now,
            job_id=self.job_id,
            jobs_running=self.jobs if self.jobs is not None else (1 if self.job_id else 0),
            state="RUNNING" if self.job_id else "NONE",
            all_running=self.job_id is not None and not self.down,
            ci_s=self.ci_s,
            uptime_s=self.uptime_s,
            window_s=window_s,
            samples=0,
        )
        pts = [
            Point(
                t=now - self.samples + i,
                job_id=self.job_id,
                rate_in=self.rate,
                throughput=self.rate,
                latency_p99_ms=120.0,
                lag_ms=50.0,
                backlog=None if self.backlog is None else self.backlog * i,
                ci_s=self.ci_s,
                all_running=True,
                restarts=0,
            )
            for i in range(self.samples)
        ]
        obs = summarise(obs, pts)
        if self.capacity:
            obs.capacity, obs.utilization = self.capacity, obs.demand_rate / self.capacity
        return obs


class FakePlaybook:
    """Test double of ansible.run_playbook("reconfigure", ...) for the restart realizer: records the intervals
    asked for; a reconcile-only run finishes the record's pending change as the playbook would."""

    def __init__(self, fail: str | None = None, during=None, record: Path | None = None):
        self.calls: list[float] = []
        self.reconciled = 0
        self.fail, self.during, self.record = fail, during, record

    def __call__(self, name, inventory, extravars=None, **kw):
        if extravars.get("flink_job_reconcile_only"):
            self.reconciled += 1
            if self.fail:
                raise KhaosError(self.fail)
            rec = json.loads(self.record.read_text())
            target = rec["pending"]["new_s"]
            self.record.write_text(
                json.dumps({**rec, "pending": None, "job_id": "j3", "checkpoint_interval_s": target})
            )
            return
        self.calls.append(float(extravars["checkpoint_interval"].rstrip("s")))
        if self.during:
            self.during()
        if self.fail:
            raise KhaosError(self.fail)


def restart(cfg, playbook: FakePlaybook | None = None) -> realizer.PlaybookRealizer:
    """The restart realizer with the fake playbook."""
    playbook = playbook or FakePlaybook()
    playbook.record = cfg.record
    return realizer.PlaybookRealizer(cfg, playbook=playbook)


def make_daemon(tmp_path, model_file, advisor=False, collector=None, realize=None, **over):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, **over))
    d = daemon.Daemon(
        cfg,
        advisor=advisor,
        collector=collector or FakeCollector(),
        realizer=None if advisor else restart(cfg, realize),
    )
    d.playbook = None if advisor else d.realizer.playbook
    d.calls = [] if advisor else d.playbook.calls  # what was realized (an advisor realizes nothing)
    return d


def journal(d) -> list[dict]:
    return [json.loads(line) for line in d.cfg.journal.read_text().splitlines()]


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class ScriptedFlink:
    """Answers the five calls the pacer makes, from fields a test sets."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.jobs = [{"jid": "j1", "name": "tj", "state": "RUNNING"}]
        self.config = {"interval": 60_000, "min_pause": 0, "timeout": 600_000}
        self.in_progress = 0
        self.latest = {"id": 7, "trigger_timestamp": 0, "latest_ack_timestamp": 0, "end_to_end_duration": 400}
        self.triggers: list[float] = []
        self.fail: str | None = None
        self.next_id = 100

    def live_jobs(self, name):
        return [j for j in self.jobs if j["name"] == name]

    def checkpoint_config(self, jid):
        return dict(self.config)

    def checkpoints(self, jid):
        return {"counts": {"in_progress": self.in_progress}, "latest": {"completed": self.latest}}

    def trigger_checkpoint(self, jid):
        self.triggers.append(self.clock())
        return "trigger-1"

    def await_checkpoint(self, jid, trigger, timeout):
        if self.fail:
            raise FlinkError(self.fail)
        self.next_id += 1
        self.latest = {**self.latest, "id": self.next_id}
        return self.next_id
