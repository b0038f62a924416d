"""`khaos evaluate` on the lab with a Kafka-fed job: the copies (2 statics and two
Khaos-managed ones, one paced and one restarted) of the sample job each read their own topic, fed by ONE
replay of the trace from t=0;
a TaskManager kill hits every copy; every copy's file audit is 0 lost / 0 duplicated; the table is checked
against the raw samples second by second. Lab `tkev` (3 Flink hosts + a Kafka host), always taken down.
(The job's synthetic source path of the evaluation is the same runner with another feed: unit tests.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
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
  realize: [pace, restart]
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
    Lab("tkev").down(quiet=True)  # leftovers of an interrupted run
    cfg = tmp_path / "short.yml"
    cfg.write_text(SHORT + f"output: {tmp_path / 'out'}\n")
    ev = ev_config.load(cfg)
    assert ev.kafka is not None and "{topic}" in ev.args
    try:
        result = runner.Runner(ev).run()
    finally:
        Lab("tkev").down(quiet=True)
    out, table, summary = tmp_path / "out", result["table"].set_index("copy"), result["summary"]
    copies = ["static-4", "static-20", "khaos-pace", "khaos-restart"]
    assert list(table.index) == copies
    (failure,) = summary["failures"]
    assert failure["mode"] == "process" and failure["t"] >= 60
    assert failure["hit"] == dict.fromkeys(copies, True), summary["placement"]
    for copy in table.index:  # every copy read every record of its own topic exactly once
        assert table.loc[copy, "audit_records"] > 100_000
        assert table.loc[copy, "audit_lost"] == 0 and table.loc[copy, "audit_duplicated"] == 0
    print(table[["violation_s", "recovery_max_s", "audit_records", "audit_lost", "audit_duplicated"]].to_string())

    l_max, k = ev.limits["latency_ms"], ev.consecutive_s
    for copy in table.index:
        raw = pd.read_csv(out / "samples" / f"{copy}.csv")
        sec = pd.read_csv(out / "seconds" / f"{copy}.csv", keep_default_na=False, na_values=[""])
        assert len(sec) == 120 and sec["second"].iloc[0] == int(summary["start"])
        # each measured second is what a sample reported for exactly that sink second
        seen = raw.dropna(subset=["sink_second"]).groupby("sink_second")["latency_p99_ms"].last()
        measured = sec[sec["measured"] == 1]
        # most seconds are measured (a sampler starved by a busy machine skips some: 76 of 120 seen with the
        # whole suite running); the check below needs many of them, not all
        assert len(measured) > 60
        assert np.allclose(measured["latency_p99_ms"], seen.loc[measured["second"].astype(float)].to_numpy())
        # the violation rule, recomputed second by second
        prev = 0
        for row in sec.itertuples():
            want = 1 if (row.measured and row.latency_p99_ms > l_max) or not row.up else (0 if row.measured else prev)
            assert row.violation == want, (copy, row.t)
            prev = want
        # the table's numbers from the per-second rows
        assert table.loc[copy, "violation_s"] == sec["violation"].sum()
        assert (
            table.loc[copy, "down_s"]
            == ((sec["up"] == 0) & ~((sec["measured"] == 1) & (sec["latency_p99_ms"] > l_max))).sum()
        )
        assert table.loc[copy, "latency_mean_ms"] == pytest.approx(measured["latency_p99_ms"].mean(), abs=0.06)
        assert table.loc[copy, "latency_p99_ms"] == pytest.approx(measured["latency_p99_ms"].quantile(0.99), abs=0.06)
        # the recovery: first violation after the kill, then k clean seconds
        v = sec["violation"].to_numpy()
        i = math.floor(failure["at"]) - int(sec["second"].iloc[0])
        first = next((j for j in range(i, i + 31) if v[j]), None)
        rec = (
            0.0
            if first is None
            else next(
                sec["second"].iloc[j] - failure["at"] for j in range(first, len(v) - k + 1) if not v[j : j + k].any()
            )
        )
        assert failure["recovery_s"][copy] == pytest.approx(rec, abs=1e-6)
        assert table.loc[copy, "recovery_max_s"] == pytest.approx(rec, abs=0.01)
        assert table.loc[copy, "violation_s"] >= 1  # the kill took every copy down for at least a second
        assert table.loc[copy, "recovery_excess_s"] == pytest.approx(max(0.0, rec - ev.limits["recovery_s"]), abs=0.1)
        # the interval in force: fixed for a static copy; paced or one job per realized change for Khaos
        if copy.startswith("static-"):
            assert list(sec["ci_s"].dropna().unique()) == [float(copy.split("-")[1])]
    changes = {c: [r for r in summary["reconfigurations"] if r["copy"] == c and r["status"] == "ok"] for c in copies}
    jobs = {c: pd.read_csv(out / "samples" / f"{c}.csv")["job_id"].dropna().unique() for c in copies}
    assert table.loc["khaos-restart", "reconfigurations"] == len(jobs["khaos-restart"]) - 1
    assert table.loc["khaos-restart", "reconfigurations"] == len(changes["khaos-restart"])
    # pacing never restarts its job; the seconds show the paced interval, capped by the safety net (20 s)
    assert len(jobs["khaos-pace"]) == 1 and table.loc["khaos-pace", "reconfigurations"] == len(changes["khaos-pace"])
    paced = pd.read_csv(out / "seconds" / "khaos-pace.csv")
    for r, nxt in zip(changes["khaos-pace"], [*changes["khaos-pace"][1:], None], strict=True):
        if math.ceil(r["t"]) < len(paced) and (nxt is None or nxt["t"] >= math.ceil(r["t"]) + 1):
            assert paced["ci_s"].iloc[math.ceil(r["t"])] == min(r["to_ci_s"], 20.0), r
    triggers = [
        e
        for e in map(json.loads, (out / "khaos-pace-journal.jsonl").read_text().splitlines())
        if e.get("event") == "checkpoint_trigger" and e.get("status") == "completed"
    ]
    assert table.loc["khaos-pace", "checkpoints"] >= len(triggers) - 1  # the table counts the paced ones too
    print(f"khaos-pace: {len(changes['khaos-pace'])} changes, {len(triggers)} paced checkpoints")

    # the outputs
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "http://" not in html
    md = (out / "table.md").read_text().splitlines()
    assert sum(1 for line in md if line.startswith("| static-") or line.startswith("| khaos")) == 4
    assert any(line.startswith("khaos-pace violation seconds / best static") for line in md)
    saved = pd.read_csv(out / "table.csv").set_index("copy")
    assert (saved["violation_s"] == table["violation_s"]).all()
    assert json.loads((out / "summary.json").read_text())["khaos"] == summary["khaos"]
