"""The runtime daemon without Flink: config validation, Prometheus exposition, the decision loop with a
fake collector and a fake realizer (test doubles for these unit tests only), journal, signals, reconcile."""

from __future__ import annotations

import collections
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from support.models import BACKLOG_COEF, rate_model

from khaos_controller.control import config as daemon_config
from khaos_controller.control import daemon, log, metrics, planner, realizer
from khaos_controller.control.collector import Observation, Point, summarise
from khaos_controller.errors import KhaosError
from khaos_controller.model import store
from khaos_controller.signals import on_stop


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return store.save(rate_model(), tmp_path_factory.mktemp("model") / "model.json")


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


# ================================================================================= config validation


def load_error(tmp_path, model_file, **over) -> str:
    path = write_config(tmp_path, model_file, **over)
    with pytest.raises(KhaosError) as e:
        daemon_config.load_config(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg[len(str(path)) + 2 :]


def test_config_defaults(tmp_path, model_file):
    path = write_config(tmp_path, model_file, loop=..., ci=..., journal=..., metrics=..., mtbf_h=...)
    cfg = daemon_config.load_config(path)
    assert (cfg.loop.period_s, cfg.loop.window_s, cfg.loop.min_uptime_s, cfg.loop.forecast_horizon_s) == (
        300,
        300,
        600,
        300,
    )
    assert (cfg.ci.min, cfg.ci.max, cfg.ci.step, cfg.ci.dead_band_s, cfg.ci.cooldown_s) == (1, 120, 1, 5, 600)
    assert cfg.file.mtbf_h == 24 and cfg.mode == "process" and cfg.loop.sample_s == 1
    assert cfg.state_dir == tmp_path / "state"  # from the inventory's khaos_state_dir
    assert cfg.record == tmp_path / "state" / "tj.json"
    assert cfg.journal == tmp_path / "state" / "tj.journal.jsonl"
    assert (cfg.file.metrics.host, cfg.file.metrics.port) == ("127.0.0.1", 9790)
    assert cfg.inventory == tmp_path / "inventory.yml"  # relative to the config file
    assert (cfg.limits.latency_ms, cfg.limits.recovery_s) == (1000, 25)


def test_config_horizon_defaults_to_the_period_and_metrics_can_be_off(tmp_path, model_file):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, loop={"period_s": 42}, metrics=None))
    assert cfg.loop.forecast_horizon_s == 42 and cfg.file.metrics is None


def test_missing_limits(tmp_path, model_file):
    assert load_error(tmp_path, model_file, limits=...).startswith("limits: missing (both limits are required")
    assert (
        load_error(tmp_path, model_file, limits={"latency_ms": 500, "recovery_s": None})
        == "limits.recovery_s: missing (the recovery time limit R_max in s)"
    )
    assert (
        load_error(tmp_path, model_file, limits={"recovery_s": 60, "latency_ms": None})
        == "limits.latency_ms: missing (the p99 latency limit L_max in ms)"
    )


@pytest.mark.parametrize("ci", [{"min": 30, "max": 10}, {"min": 20, "max": 20}])
def test_inverted_ci_range(tmp_path, model_file, ci):
    msg = load_error(tmp_path, model_file, ci=ci)
    assert msg.startswith(f"ci: min {ci['min']} >= max {ci['max']}") and "inverted" in msg


@pytest.mark.parametrize(
    "over,expected",
    [
        ({"loop": {"period_s": "fast"}}, "loop.period_s: 'fast' is not a number"),
        ({"limits": {"latency_ms": True, "recovery_s": 5}}, "limits.latency_ms: True is not a number"),
        ({"limits": {"latency_ms": -5, "recovery_s": 5}}, "limits.latency_ms: -5 must be > 0"),
        ({"metrics": {"port": 1.5}}, "metrics.port: 1.5 is not a whole number"),
        ({"limits": {"latency_ms": float("nan"), "recovery_s": 5}}, "limits.latency_ms: nan is not a finite number"),
        ({"ci": {"min": 2, "max": float("inf")}}, "ci.max: inf is not a finite number"),
        ({"metrics": {"port": 70000}}, "metrics.port: 70000 is not a TCP port"),
        ({"ci": {"step": 0}}, "ci.step: 0 must be > 0"),
        ({"ci": {"cooldown_s": -1}}, "ci.cooldown_s: -1 must be >= 0"),
        ({"ci": {"slack_s_per_h": -1}}, "ci.slack_s_per_h: -1 must be >= 0"),
        ({"ci": {"hysteresis": 1}}, "ci.hysteresis: 1 must be <= 0.9"),
        ({"loop": {"window_s": 0.1}}, "loop.window_s: 0.1 must be >= 2"),
        ({"mtbf_h": "1d"}, "mtbf_h: '1d' is not a number"),
        ({"flink": "http://x"}, "flink: must be a mapping"),
        ({"flink": {"rest_url": 8081}}, "flink.rest_url: 8081 is not a string"),
        ({"flink": {"rest_url": ""}}, "flink.rest_url: '' is not a non-empty string"),
        ({"flink": {"rest": "http://x"}}, "flink.rest: unknown field"),
        ({"loops": {}}, "loops: unknown field"),
        ({"job": ...}, "job: missing"),
        ({"model": "nowhere.json"}, "model: model file"),
        ({"mode": "network"}, "mode: 'network' was not profiled"),
        ({"log": {"format": "xml"}}, "log.format: 'xml' is not one of kv, json"),
    ],
)
def test_bad_fields(tmp_path, model_file, over, expected):
    assert load_error(tmp_path, model_file, **over).startswith(expected)


def test_example_config_is_valid(tmp_path, model_file):
    from khaos_controller import REPO_ROOT

    raw = yaml.safe_load((REPO_ROOT / "examples" / "controller.yml").read_text())
    raw["model"] = str(model_file)  # the example's model is made by khaos fit
    assert raw["inventory"] == "../inventories/local/khaos.yml"  # ... and its inventory by khaos lab up
    inventory = tmp_path / "khaos.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": {"khaos_state_dir": str(tmp_path / "state")}}}))
    raw["inventory"] = str(inventory)
    path = REPO_ROOT / "examples" / f".test-{os.getpid()}.yml"
    path.write_text(yaml.safe_dump(raw))
    try:
        cfg = daemon_config.load_config(path)
    finally:
        path.unlink()
    assert cfg.inventory == inventory
    assert (
        cfg.loop.period_s,
        cfg.loop.window_s,
        cfg.loop.min_uptime_s,
        cfg.limits.latency_ms,
        cfg.limits.recovery_s,
    ) == (300, 300, 600, 1000, 60)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("job: [unclosed\n")
    with pytest.raises(KhaosError, match=r"bad.yml: line \d+: malformed YAML"):
        daemon_config.load_config(bad)
    with pytest.raises(KhaosError, match="no such config file"):
        daemon_config.load_config(tmp_path / "none.yml")


@pytest.mark.parametrize(
    "host, warned",
    [
        ("127.0.0.1", None),
        ("10.213.0.14", None),
        ("::1", None),
        ("bastion.internal", None),
        ("0.0.0.0", "every interface"),
        ("::", "every interface"),
        ("[::]", "every interface"),
        ("8.8.8.8", "a public address"),
        ("2001:4860::8888", "a public address"),
    ],
)
def test_metrics_on_every_interface_or_a_public_address_are_warned_about(tmp_path, model_file, host, warned):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, metrics={"host": host, "port": 0}))
    text = daemon_config.exposed_metrics(cfg)
    if warned is None:
        assert text is None
    else:
        assert warned in text and "\n" not in text and f"metrics.host {host.strip('[]')} " in text


# ================================================================================= Prometheus

SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? '
    r"(\S+)$"
)


def parse_exposition(text: str) -> dict:
    """Strict reader of the text format 0.0.4: {name: {"type", "help", "samples": {labels: value}}}."""
    families: dict[str, dict] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_ = line[7:].split(" ", 1)
            assert name not in families, f"second HELP for {name}"
            families[name] = {"help": help_, "type": None, "samples": {}}
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("counter", "gauge") and families[name]["type"] is None and not families[name]["samples"]
            families[name]["type"] = kind
        else:
            m = SAMPLE_RE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.group(1), m.group(3) or "", m.group(4)
            assert name in families and families[name]["type"], f"sample of {name} before its TYPE"
            v = float(value)  # accepts NaN, +Inf
            families[name]["samples"][labels] = v
    for name, fam in families.items():
        if fam["type"] == "counter":
            assert name.endswith("_total"), name
            assert all(v >= 0 for v in fam["samples"].values())
    return families


REQUIRED = {
    "khaos_checkpoint_interval_seconds": "gauge",
    "khaos_input_rate": "gauge",
    "khaos_forecast_rate": "gauge",
    "khaos_latency_p99_milliseconds": "gauge",
    "khaos_predicted_latency_milliseconds": "gauge",
    "khaos_predicted_recovery_seconds": "gauge",
    "khaos_recommended_checkpoint_interval_seconds": "gauge",
    "khaos_reconfigurations_total": "counter",
    "khaos_reconfiguration_failures_total": "counter",
    "khaos_alerts_total": "counter",
    "khaos_loop_duration_seconds": "gauge",
    "khaos_up": "gauge",
}


def test_exposition_parses_back():
    m = metrics.Metrics({"flink_job": 'a"b\\c'})
    m.set("khaos_checkpoint_interval_seconds", 20)
    m.set("khaos_input_rate", 1234.5)
    m.set("khaos_predicted_recovery_seconds", math.inf)
    m.set("khaos_up", 1)
    m.inc("khaos_reconfigurations_total")
    m.inc("khaos_decisions_total", action="keep")
    m.inc("khaos_decisions_total", action="keep")
    fam = parse_exposition(m.render())
    for name, kind in REQUIRED.items():
        assert fam[name]["type"] == kind and fam[name]["help"], name
    lab = 'flink_job="a\\"b\\\\c"'
    assert fam["khaos_checkpoint_interval_seconds"]["samples"] == {lab: 20.0}
    assert fam["khaos_input_rate"]["samples"] == {lab: 1234.5}
    assert fam["khaos_predicted_recovery_seconds"]["samples"] == {lab: math.inf}
    assert fam["khaos_reconfigurations_total"]["samples"] == {lab: 1.0}
    assert fam["khaos_reconfiguration_failures_total"]["samples"] == {lab: 0.0}  # counters exist from the start
    assert fam["khaos_decisions_total"]["samples"]['action="keep",' + lab] == 2.0  # labels sorted by name
    assert fam["khaos_forecast_rate"]["samples"] == {}  # unknown gauges have no sample, not a fake 0


def test_metrics_server_serves_the_exposition():
    m = metrics.Metrics({"flink_job": "x"})
    m.set("khaos_up", 1)
    srv = metrics.MetricsServer(m, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            fam = parse_exposition(r.read().decode())
        assert fam["khaos_up"]["samples"] == {'flink_job="x"': 1.0}
    finally:
        srv.stop()


# ================================================================================= the decision loop


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


def test_low_rate_keeps_the_current_interval(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20))
    e = d.step()
    assert e.decision.action == "keep" and e.decision.ci_s == 20 and not e.decision.alert
    assert d.calls == []
    assert e.plan.at_current.recovery_s < 25


def test_rising_rate_shortens_the_interval(tmp_path, model_file):
    col = FakeCollector(rate=300, ci_s=20)
    d = make_daemon(tmp_path, model_file, collector=col)
    assert d.step().decision.action == "keep"
    col.rate = 1500
    e = d.step()
    assert e.decision.action == "change"
    assert e.decision.ci_s == 11.0 and e.realization.status == "ok"
    assert d.calls == [11.0]
    assert e.plan.at_current.recovery_s > 25 and e.decision.predicted_recovery_s <= 25
    v = e.decision.violation_s_per_h  # the recovery excess at 20 s counts; 11 s has none
    assert v["current"] > v["best"] > 0
    assert d.metrics.get("khaos_reconfigurations_total") == 1
    assert d.metrics.get("khaos_recommended_checkpoint_interval_seconds") == 11
    # the journal says the reconfiguration started before its result
    events = [x["event"] for x in journal(d)]
    assert events == ["decision", "reconfigure_started", "decision"]


def test_backlog_growth_counts_as_input(tmp_path, model_file):
    # the job reads only 300/s but its backlog grows by 1200/s: 1500/s arrive
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20, backlog=1200))
    e = d.step()
    assert e.observation.demand_rate == pytest.approx(1500) and e.decision.action == "change"


def test_advisor_never_realizes(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, advisor=True, collector=FakeCollector(rate=1500, ci_s=20))
    for _ in range(3):
        e = d.step()
        assert e.decision.action == "change" and e.realization.journal() == {"status": "advisor", "target_ci_s": 11.0}
    assert d.calls == [] and d.metrics.get("khaos_reconfigurations_total") == 0
    assert "reconfigure_started" not in [x["event"] for x in journal(d)]


def test_cooldown_after_a_change(tmp_path, model_file):
    col = FakeCollector(rate=1500, ci_s=20)
    d = make_daemon(tmp_path, model_file, collector=col)
    assert d.step().decision.action == "change"
    col.ci_s, col.rate = 11.0, 300  # the rate fell: a longer interval would do, but the last change was just now
    e = d.step()
    assert e.decision.action == "wait" and "cooldown" in e.decision.reason
    assert not e.decision.alert and d.calls == [11.0]
    col.rate = 3000  # now 11 s breaks R_max: a breach that a feasible interval fixes does not wait
    e = d.step()
    assert e.decision.action == "change" and "inside the 600 s cooldown" in e.decision.reason
    assert len(d.calls) == 2 and d.calls[1] < 11.0


def test_cooldown_survives_a_restart_via_the_record(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=11))  # 20 s would do
    d.cfg.record.parent.mkdir(parents=True)
    d.cfg.record.write_text(
        json.dumps(
            {
                "name": "tj",
                "pending": None,
                "history": [
                    {"ts": time.time() - 100, "action": "deployed"},
                    {"ts": time.time() - 60, "action": "running"},
                ],
            }
        )
    )
    assert d.reconcile() is None and d.realizer.last_change_ts == pytest.approx(time.time() - 60, abs=2)
    e = d.step()
    assert e.decision.action == "wait" and d.calls == []


def test_no_decision_before_min_uptime_or_without_samples(tmp_path, model_file):
    col = FakeCollector(rate=1500, ci_s=20, uptime_s=5)
    d = make_daemon(tmp_path, model_file, collector=col)
    e = d.step()
    assert e.decision.action == "wait" and "min_uptime_s 10" in e.decision.reason
    col.uptime_s, col.samples = 100, 2
    assert "rate samples in the window" in d.step().decision.reason
    col.job_id = None
    assert "no running job named 'tj'" in d.step().decision.reason
    assert d.metrics.get("khaos_up") == 0 and d.calls == []
    assert d.metrics.get("khaos_decisions_total", action="wait") == 3


def test_both_limits_unmeetable_alerts(tmp_path, model_file):
    # recovery <= 5 s is impossible at any interval: the least bad one is chosen, and it alerts
    d = make_daemon(
        tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20), limits={"latency_ms": 1000, "recovery_s": 5}
    )
    e = d.step()
    assert e.decision.alert and not e.decision.feasible and e.decision.action == "change"
    assert e.decision.ci_s == 2 and "ALERT" in e.explain
    assert d.metrics.get("khaos_alerts_total") == 1


def test_failed_reconfiguration_is_counted_and_cools_down(tmp_path, model_file):
    d = make_daemon(
        tmp_path,
        model_file,
        collector=FakeCollector(rate=1500, ci_s=20),
        realize=FakePlaybook(fail="reconfigure.yml: savepoint failed"),
    )
    e = d.step()
    assert e.realization.status == "failed" and "savepoint failed" in e.realization.error
    assert d.metrics.get("khaos_reconfiguration_failures_total") == 1
    assert d.metrics.get("khaos_reconfigurations_total") == 0
    e = d.step()  # the current interval still breaks R_max, but a failed attempt waits out the cooldown
    assert e.decision.action == "wait" and e.decision.alert and len(d.calls) == 1


def test_journal_lines_are_json_with_inputs_and_decision(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=1500, ci_s=20))
    d.step()
    d.collector.uptime_s = 0
    d.step()
    lines = d.cfg.journal.read_text().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    decisions = [e for e in entries if e["event"] == "decision"]
    for e in decisions:
        assert {"ts", "time", "job", "iteration", "inputs", "decision", "limits"} <= set(e)
        assert {"rate_mean", "demand_rate", "ci_s", "uptime_s", "samples", "latency_p99_ms", "lag_ms"} <= set(
            e["inputs"]
        )
        assert {"action", "ci_s", "current_ci_s", "alert", "reason"} <= set(e["decision"])
    first = decisions[0]
    assert first["inputs"]["rate_mean"] == 1500 and first["plan_rate"] >= 1500
    assert first["predicted_at_current"]["ci_s"] == 20 and first["decision"]["best_ci_s"] == 11


def test_forecast_of_a_rising_rate_is_planned_for(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, loop={"forecast_step_s": 2})
    obs = FakeCollector(rate=300).snapshot(10)
    obs.rates = [300.0] * 5 + [600, 800, 1000, 1200, 1400]
    obs.rate_mean = obs.demand_rate = sum(obs.rates) / 10
    fc, plan = d.plan_rate(obs)
    assert fc > 1200 > obs.rate_mean and plan == fc
    obs.rates = obs.rates[::-1]  # falling: plan for the window mean, not the lower forecast
    fc, plan = d.plan_rate(obs)
    assert fc < obs.rate_mean and plan == obs.rate_mean


# ================================================================================= reconcile and start


def test_reconcile_finishes_a_pending_change(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file)
    d.cfg.record.parent.mkdir(parents=True)
    d.cfg.record.write_text(
        json.dumps({"name": "tj", "pending": {"savepoint": "file:///sp", "old_s": 20.0, "new_s": 11.0}, "history": []})
    )
    result = d.reconcile()
    assert d.playbook.reconciled == 1 and d.calls == [] and result.interval_s == 11.0
    assert d.metrics.get("khaos_reconciliations_total") == 1
    assert [e["event"] for e in journal(d)] == ["reconcile_started", "reconcile"]
    assert d.reconcile() is None  # nothing pending any more
    # in advisor mode nothing is changed, but the pending change is reported
    d2 = make_daemon(tmp_path, model_file, advisor=True)
    d2.cfg.record.write_text(json.dumps({"name": "tj", "pending": {"old_s": 20.0, "new_s": 11.0}, "history": []}))
    assert d2.reconcile() is None and d2.calls == []


def test_every_step_finishes_a_pending_change_and_alerts_when_it_cannot(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20))
    d.cfg.record.parent.mkdir(parents=True)
    pending = {"name": "tj", "pending": {"phase": "stopping", "old_s": 20.0, "new_s": 11.0}, "history": []}
    d.cfg.record.write_text(json.dumps(pending))
    d.step()
    assert d.playbook.reconciled == 1 and json.loads(d.cfg.record.read_text())["pending"] is None
    d.step()
    assert d.playbook.reconciled == 1  # nothing pending: no playbook run
    d.cfg.record.write_text(json.dumps(pending))
    d.playbook.fail = "reconfigure.yml: flink_reconfigure: the stop has no known outcome yet"
    d.step()  # a failure is an alert, not the end of the daemon; the next step tries again
    d.step()
    assert d.playbook.reconciled == 3 and d.metrics.get("khaos_reconciliation_failures_total") == 2
    assert [e["status"] for e in journal(d) if e["event"] == "reconcile"] == ["ok", "failed", "failed"]


def test_a_job_that_is_gone_or_stuck_is_alerted(tmp_path, model_file):
    col = FakeCollector(rate=300, ci_s=20, job_id=None)
    d = make_daemon(tmp_path, model_file, collector=col, loop={"stuck_s": 30})
    e = d.step()
    assert e.job_alerts == ["gone"] and e.decision.alert
    assert d.metrics.get("khaos_job_alerts_total", kind="gone") == 1
    col.job_id = "j1"
    assert d.step().job_alerts == [] and d.metrics.get("khaos_job_problem_seconds") == 0
    col.down = True  # the job runs but not every task: stuck once it lasts stuck_s
    col.t = time.time()
    assert d.step().job_alerts == []
    col.t += 31
    e = d.step()
    assert e.job_alerts == ["stuck"] and d.metrics.get("khaos_job_alerts_total", kind="stuck") == 1
    alerts = [x for x in journal(d) if x["event"] == "job_alert"]
    assert [a["kind"] for a in alerts] == ["gone", "stuck"] and alerts[1]["since_s"] >= 31


class FlinkStub:
    """A Flink REST stub on a local port: /jobs/overview and the checkpoints of finished jobs."""

    def __init__(self, jobs):
        stub = self
        self.jobs = jobs

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/jobs/overview":
                    body = {"jobs": stub.jobs}
                elif self.path.endswith("/checkpoints"):
                    body = {"latest": {"savepoint": {"external_path": "file:/sp/savepoint-1"}}}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flink_stub():
    stubs = []

    def make(jobs):
        stubs.append(FlinkStub(jobs))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def test_unknown_job_at_start_is_one_clear_line(tmp_path, model_file, flink_stub):
    stub = flink_stub(
        [
            {"jid": "a1", "name": "other", "state": "RUNNING"},
            {"jid": "b2", "name": "tj", "state": "FINISHED", "end-time": 5},
        ]
    )
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}))
    d = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    with pytest.raises(KhaosError) as e:
        d.start()
    d.close()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{cfg.path}: job: no running job named 'tj' on {stub.url}")
    assert "the last one (b2) is FINISHED with savepoint file:/sp/savepoint-1" in msg
    assert not d.collector.started  # nothing started


def test_two_jobs_of_the_name_refuse_to_start(tmp_path, model_file, flink_stub):
    stub = flink_stub(
        [{"jid": "a1", "name": "tj", "state": "RUNNING"}, {"jid": "a2", "name": "tj", "state": "RUNNING"}]
    )
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}))
    d = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    with pytest.raises(KhaosError, match="job: 2 jobs named 'tj' run"):
        d.start()
    d.close()


def test_unreachable_flink_at_start(tmp_path, model_file):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file))  # http://127.0.0.1:1: nothing listens
    d = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    with pytest.raises(KhaosError, match=r"flink.rest_url: Flink REST at http://127.0.0.1:1 is unreachable"):
        d.start()
    d.close()


def test_one_daemon_per_job(tmp_path, model_file, flink_stub):
    stub = flink_stub([{"jid": "a1", "name": "tj", "state": "RUNNING"}])
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}))
    cfg.record.parent.mkdir(parents=True, exist_ok=True)
    cfg.record.write_text(json.dumps({"name": "tj", "pending": None, "history": []}))
    d1 = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    d1.start()
    try:
        d2 = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
        with pytest.raises(KhaosError, match=f"another khaos daemon \\(pid {os.getpid()}\\) already controls job 'tj'"):
            d2.start()
    finally:
        d1.close()


@pytest.fixture
def own_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def fast_config(tmp_path, model_file, flink_stub):
    """A config on a Flink stub with one running job 'tj', deciding twice a second, with its record."""
    stub = flink_stub([{"jid": "a1", "name": "tj", "state": "RUNNING"}])
    loop = {"period_s": 0.5, "window_s": 0.5, "sample_s": 0.25}
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}, loop=loop))
    cfg.record.parent.mkdir(parents=True, exist_ok=True)
    cfg.record.write_text(json.dumps({"name": "tj", "pending": None, "history": []}))
    return cfg


def test_sigterm_lets_the_reconfiguration_finish_then_exits_0(tmp_path, model_file, flink_stub, own_signals, caplog):
    cfg = fast_config(tmp_path, model_file, flink_stub)
    finished = []

    def during():  # two signals arrive while the playbook runs; it must still complete
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        finished.append(True)

    d = daemon.Daemon(
        cfg, collector=FakeCollector(rate=1500, ci_s=20), realizer=restart(cfg, FakePlaybook(during=during))
    )
    with caplog.at_level("INFO", logger="khaos"), on_stop(d.on_signal):
        logging_prop = log.log.parent.propagate
        log.log.parent.propagate = True
        try:
            rc = d.run()
        finally:
            log.log.parent.propagate = logging_prop
    assert rc == 0 and finished == [True] and d.realizer.playbook.calls == [11.0]
    assert d.metrics.get("khaos_reconfigurations_total") == 1
    events = [e["event"] for e in journal(d)]
    assert events == ["start", "reconfigure_started", "decision", "stop"]
    msgs = [r.getMessage() for r in caplog.records]
    assert "stopping" in msgs and "still_finishing" in msgs
    assert d.collector.stopped


def test_once_runs_one_iteration(tmp_path, model_file, flink_stub, own_signals):
    cfg = fast_config(tmp_path, model_file, flink_stub)
    d = daemon.Daemon(cfg, advisor=True, collector=FakeCollector(rate=300, ci_s=20))
    assert d.run(once=True) == 0
    assert [e["event"] for e in journal(d)] == ["start", "decision", "stop"]


# ================================================================================= pieces


def test_orphaned_playbook_processes_are_found(tmp_path):
    base = tmp_path / "runs"
    env = {**os.environ, "AWX_ISOLATED_DATA_DIR": f"{base}/reconfigure-x/artifacts/reconfigure-x"}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        deadline = time.monotonic() + 5
        while proc.pid not in realizer.orphan_runs(base) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert realizer.orphan_runs(base) == [proc.pid]
        assert realizer.orphan_runs(tmp_path / "other") == []
    finally:
        proc.kill()
        proc.wait()


def test_the_journal_rotates(tmp_path):
    from khaos_controller.journal import Journal, read

    j = Journal(tmp_path / "j.jsonl", fsync=False, max_bytes=2000, keep=3)
    for i in range(200):
        j.write("decision", i=i, pad="x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["j.jsonl", "j.jsonl.1", "j.jsonl.2", "j.jsonl.3"]
    assert all((tmp_path / f).stat().st_size < 2200 for f in files)
    assert read(tmp_path / "j.jsonl")[-1]["i"] == 199  # the newest lines are in the live file


def test_playbook_extravars(tmp_path, model_file):
    cfg = daemon_config.load_config(
        write_config(tmp_path, model_file, reconfigure={"timeout_s": 90, "savepoint_dir": "file:///sp"})
    )
    ev = realizer.PlaybookRealizer(cfg).extravars(11.0)
    assert ev == {
        "checkpoint_interval": "11s",
        "flink_job_name": "tj",
        "flink_job_state_dir": str(tmp_path / "state"),
        "flink_job_rest_url": "http://127.0.0.1:1",
        "flink_job_reconfigure_timeout": 90,
        "flink_job_keep_savepoints": 5,
        "flink_job_savepoint_dir": "file:///sp",
    }
    assert realizer.PlaybookRealizer(cfg).extravars(2.5)["checkpoint_interval"] == "2.5s"


def test_cli_registers_run():
    import argparse

    from khaos_controller.control import cli

    p = argparse.ArgumentParser(prog="khaos")
    sub = p.add_subparsers(dest="cmd", required=True)
    cli.add_cli(sub)
    a = p.parse_args(["run", "c.yml", "--advisor", "--once"])
    assert (a.config, a.advisor, a.once, a.func) == ("c.yml", True, True, cli._run)
    a = p.parse_args(["run", "c.yml"])
    assert (a.advisor, a.once) == (False, False)


def test_cli_error_is_one_line(tmp_path, model_file):
    path = write_config(tmp_path, model_file, limits=...)
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "run", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"khaos: error: {path}: limits: missing (both limits are required, "
        "e.g. limits: {latency_ms: 1000, recovery_s: 60})"
    ]


def test_log_formats():
    rec = log.log.makeRecord(
        "khaos.daemon",
        20,
        __file__,
        1,
        "decision",
        None,
        None,
        extra={"kv": {"action": "keep", "reason": "a b", "rate": 1234.5678, "n": None}},
    )
    kv = log.Formatter("kv").format(rec)
    assert kv.split(" ", 1)[1] == 'level=info event=decision action=keep reason="a b" rate=1234.57 n=None'
    js = json.loads(log.Formatter("json").format(rec))
    assert js["event"] == "decision" and js["reason"] == "a b" and js["n"] is None


def test_check_prints_one_line_and_starts_nothing(tmp_path, model_file):
    path = write_config(tmp_path, model_file)
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "run", "--check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.strip().splitlines()
    assert line.startswith(f"{path}: ok: job 'tj' on http://127.0.0.1:1, limits 1000 ms / 25 s, CI 2-20 s"), line
    assert not (tmp_path / "journal.jsonl").exists()  # nothing started, nothing journaled


def test_a_promoted_model_is_used_at_the_next_decision(tmp_path, model_file):
    import shutil

    own = tmp_path / "model.json"
    shutil.copy(model_file, own)
    d = make_daemon(tmp_path, own, collector=FakeCollector(rate=1500, ci_s=20), advisor=True)
    assert d.step().decision.ci_s == 11.0
    # a model whose backlog term is 4x steeper: the same rate needs a shorter interval
    steeper = store.load(own)
    spec = steeper.recovery.physics
    spec.coef[spec.features.index("L0*rate")] = 4 * BACKLOG_COEF
    steeper.data_hash = "sha256:steeper"
    store.save(steeper, own)
    os.utime(own, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a new mtime even on a coarse clock
    e = d.step()
    assert e.decision.ci_s < 11.0
    # a broken file is reported and the last good model stays in use
    own.write_text("{not json")
    os.utime(own, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert d.step().decision.ci_s == e.decision.ci_s
    events = [x["event"] for x in journal(d)]
    assert events.count("model_reloaded") == 1 and events.count("model_reload_failed") == 1
    reloaded = next(x for x in journal(d) if x["event"] == "model_reloaded")
    assert reloaded["model_data_hash"] == "sha256:steeper"


def test_restart_changes_are_weighed_against_their_measured_down_time(tmp_path, model_file):
    col = FakeCollector(rate=1500, ci_s=20)
    d = make_daemon(tmp_path, model_file, collector=col, mtbf_h=24)
    assert d.policy(20).change_cost_s == planner.PRIOR_CHANGE_COST_S
    e = d.step()  # 20 s breaks R_max at 1500/s, but a failure within the next 600 s is unlikely
    assert e.decision.action == "keep" and e.decision.alert, e.decision
    assert "not more than a restart costs (5.0 s)" in e.decision.reason and d.calls == []
    # the record's history tells what the changes cost so far: down 0.4 s and 0.6 s
    d.cfg.record.parent.mkdir(parents=True, exist_ok=True)
    d.cfg.record.write_text(
        json.dumps(
            {
                "name": "tj",
                "job_id": "j1",
                "pending": None,
                "history": [
                    {"ts": 100.0, "action": "stopped_with_savepoint"},
                    {"ts": 100.4, "action": "running"},
                    {"ts": 200.0, "action": "stopped_with_savepoint"},
                    {"ts": 200.6, "action": "running"},
                ],
            }
        )
    )
    d.reconcile(at_start=True)
    assert d.policy(20).change_cost_s == 0.5
    d.cfg.file.ci.change_cost_s = 0.0  # a configured cost wins over the measured one
    assert d.policy(20).change_cost_s == 0.0


# ================================================================================= capacity online


def _look(t: float, busy_ms: float, idle_ms: float, records: float) -> list[dict]:
    """busy_times() rows of a 2-vertex job: the source nearly idle, the window operator busy."""
    return [
        {
            "t": t,
            "vertex": "v1",
            "name": "Source",
            "subtask": 0,
            "busy_ms": 0.05 * busy_ms,
            "idle_ms": idle_ms + 0.95 * busy_ms,
            "backpressured_ms": 0.0,
            "records_in": 0.0,
            "records_out": records,
        },
        {
            "t": t,
            "vertex": "v2",
            "name": "Window",
            "subtask": 0,
            "busy_ms": busy_ms,
            "idle_ms": idle_ms,
            "backpressured_ms": 0.0,
            "records_in": records,
            "records_out": records,
        },
    ]


def test_the_capacity_is_the_rate_over_the_busiest_subtasks_busy_fraction():
    from khaos_controller.control.collector import with_capacity

    obs = FakeCollector(rate=1000.0).snapshot(30)
    # 10 s apart: the window operator was busy 4 of 10 s while the job read 1000 events/s -> 2500 events/s
    out = with_capacity(obs, [_look(100.0, 0.0, 0.0, 0.0), _look(110.0, 4000.0, 6000.0, 10_000.0)])
    assert out.capacity == pytest.approx(2500.0) and out.busy == pytest.approx(0.4)
    assert out.utilization == pytest.approx(0.4)
    # too short a window, a restart between the looks (counters went down), or no looks: no estimate
    short = with_capacity(
        FakeCollector(rate=1000.0).snapshot(30), [_look(100.0, 0, 0, 0), _look(104.0, 1600, 2400, 4000)]
    )
    assert short.capacity is None and short.utilization is None
    again = with_capacity(
        FakeCollector(rate=1000.0).snapshot(30), [_look(100.0, 9000, 1000, 10_000), _look(110.0, 10, 20, 30)]
    )
    assert again.capacity is None
    assert with_capacity(FakeCollector(rate=1000.0).snapshot(30), []).capacity is None
    idle = with_capacity(FakeCollector(rate=1000.0).snapshot(30), [_look(100, 0, 0, 0), _look(110, 500, 9500, 10_000)])
    assert idle.capacity is None  # busy 5 %: rate / busy says little


def test_a_measured_capacity_model_predicts_with_the_jobs_own_capacity():
    from khaos_controller.control.planner import measured_capacity

    m = rate_model()
    assert not measured_capacity(m)
    spec = m.recovery.physics
    spec.features = [*spec.features, "L0*rate/(cap-rate)"]
    spec.coef = [*spec.coef, 1.0]
    spec.constants.capacity, spec.constants.capacity_measured = 5000.0, True
    assert measured_capacity(m)
    p = planner.Policy(l_max_ms=1e9, r_max_s=1e9, slack_s_per_h=1e6)  # both pick the longest: compare there
    at_profiled = planner.recommend(m, 1500.0, 20.0, p)
    on_a_slower_cluster = planner.recommend(m, 1500.0, 20.0, p, capacity=2000.0)
    # 1500/s is 30 % of the profiled clusters' capacity but 75 % of this one's: a longer catch-up
    assert on_a_slower_cluster.ci_s == at_profiled.ci_s
    assert on_a_slower_cluster.predicted_recovery_s > at_profiled.predicted_recovery_s * 1.5


def test_the_daemon_plans_with_the_capacity_it_measures(tmp_path):
    m = rate_model()
    spec = m.recovery.physics
    spec.features, spec.coef = [*spec.features, "L0*rate/(cap-rate)"], [*spec.coef, 1.0]
    spec.constants.capacity, spec.constants.capacity_measured = 5000.0, True
    model_path = store.save(m, tmp_path / "greybox.json")
    col = FakeCollector(rate=1500, ci_s=20)
    d = make_daemon(tmp_path, model_path, collector=col, advisor=True)
    profiled = d.step()
    col.capacity = 2000.0  # this cluster is slower than the profiling clusters
    own = d.step()
    assert profiled.plan.capacity_used is None and own.plan.capacity_used == 2000.0
    assert own.observation.utilization == pytest.approx(0.75)
    assert own.plan.at_current.recovery_s > 1.5 * profiled.plan.at_current.recovery_s
    assert d.metrics.get("khaos_capacity_events_per_second") == 2000.0
    assert d.metrics.get("khaos_utilization_ratio") == pytest.approx(0.75)


def test_a_step_without_a_fresh_capacity_keeps_the_last_estimate(monkeypatch):
    """One missed busy-time look must not send the planner back to the model's profiled capacity (in an
    evaluation that flipped the paced interval between 2 s and 46 s every third step)."""
    from khaos_controller.control import collector as col

    now = [1000.0]
    monkeypatch.setattr(col.time, "time", lambda: now[0])
    c = col.FlinkCollector(client=None, job="j")  # nothing is sampled: its state is planted below
    c._job_id, c._running_since, c._all_running, c._state = "a", 900.0, True, "RUNNING"

    def window(t_end: float) -> None:
        c._points = collections.deque(
            col.Point(t, "a", 1000.0, 1000.0, 100.0, 5.0, 0.0, 10.0, True, 0)
            for t in range(int(t_end) - 14, int(t_end) + 1)
        )

    # looks 10 s apart within the last 30 s (wider than the 15 s decision window): busy 40 % -> 2500 events/s
    window(1000.0)
    c._looks = collections.deque([_look(978.0, 0, 0, 0), _look(988.0, 4000.0, 6000.0, 10_000.0)])
    first = c.snapshot(15)
    assert first.capacity == pytest.approx(2500.0) and first.capacity_age_s is None
    # 20 s later no usable span (the looks since were missed): the last estimate, held, with its age
    now[0] = 1020.0
    window(1020.0)
    c._looks = collections.deque([_look(1019.0, 0, 0, 0)])
    held = c.snapshot(15)
    assert held.capacity == pytest.approx(2500.0) and held.capacity_age_s == 20.0
    assert held.utilization == pytest.approx(0.4) and held.busy is None
    # too old: no capacity (the model's profiled one is used)
    now[0] = 1000.0 + col.CAPACITY_HOLD_S + 1
    window(now[0])
    assert c.snapshot(15).capacity is None
