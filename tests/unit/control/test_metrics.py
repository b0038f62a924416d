"""The Prometheus exposition (control/metrics.py), read back by a strict parser, and its HTTP server."""

from __future__ import annotations

import math
import re
import urllib.request

from khaos_controller.control import metrics

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
