"""`khaos evaluate` with a Kafka-fed job on the lab (issue 13, item 6): the copies (2 statics and the
Khaos-managed one) of the sample job each read their own topic, fed by ONE replay of the trace from t=0;
a TaskManager kill hits every copy; every copy's file audit is 0 lost / 0 duplicated. Lab `tkev` (3 Flink
hosts + a Kafka host), always taken down; run under `flock /tmp/khaos-lab-tests.lock`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from khaos_controller.evaluate import config as ev_config
from khaos_controller.evaluate import runner
from khaos_controller.infra.lab import Lab

pytestmark = pytest.mark.lab

SHORT = """name: shortk
seed: 3
workload: {seconds: 120, low: 800, high: 1600, bursts: 0}
statics: [4, 20]
limits: {latency_ms: 1000, recovery_s: 5}
khaos:
  results: examples/profile-lab-results.csv
  start_ci_s: 20
  ci: {min: 2, max: 20, cooldown_s: 30}
  loop: {period_s: 10, window_s: 10, min_uptime_s: 15, forecast_step_s: 5}
failures: {at: [60], modes: [process]}
cluster: {lab: tkev}
kafka: {partitions: 2}
measurement: {lead_s: 60}
"""


def test_short_evaluation_on_kafka(tmp_path, jar_built):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "khaos"), "dist", "kafka"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    Lab("tkev").down(quiet=True)
    cfg = tmp_path / "short.yml"
    cfg.write_text(SHORT + f"output: {tmp_path / 'out'}\n")
    ev = ev_config.load(cfg)
    assert ev.kafka is not None and "{topic}" in ev.args
    try:
        result = runner.Runner(ev).run()
    finally:
        Lab("tkev").down(quiet=True)
    table, summary = result["table"].set_index("copy"), result["summary"]
    assert list(table.index) == ["static-4", "static-20", "khaos"]
    (failure,) = summary["failures"]
    assert failure["hit"] == {"static-4": True, "static-20": True, "khaos": True}, summary["placement"]
    for copy in table.index:  # every copy read every record of its own topic exactly once
        assert table.loc[copy, "audit_records"] > 100_000
        assert table.loc[copy, "audit_lost"] == 0 and table.loc[copy, "audit_duplicated"] == 0
        sec = pd.read_csv(tmp_path / "out" / "seconds" / f"{copy}.csv")
        assert sec["measured"].sum() > 80  # the sample job's sink gauges, from Kafka input
    print(table[["violation_s", "recovery_max_s", "audit_records", "audit_lost", "audit_duplicated"]].to_string())
