"""khaos evaluate: the scoring rules on hand-made samples, the plan, and bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from khaos_controller import evaluate
from khaos_controller.errors import KhaosError

from conftest import one_line

T0 = 1_800_000_000


def samples(n: int = 60, fail_at: int | None = None, down_s: int = 3, slow_s: int = 4, jid: str = "a",
            skip: tuple[int, ...] = ()) -> pd.DataFrame:
    """Two samples a second; a failure at `fail_at`: `down_s` seconds down, then `slow_s` seconds
    of p99 5000 ms (catch-up), then normal (50 ms). Seconds in `skip` have no sink measurement."""
    rows = []
    for i in range(n):
        for half in (0.1, 0.6):
            t = T0 + i + half
            down = fail_at is not None and fail_at <= i < fail_at + down_s
            slow = fail_at is not None and fail_at + down_s <= i < fail_at + down_s + slow_s
            restarts = 1 if fail_at is not None and i >= fail_at else 0
            second = None if down or i in skip else float(T0 + i)  # the sink reports the second itself
            rows.append({"t": t, "job_id": jid, "ci_s": 10.0, "all_running": not down, "restarts": restarts,
                         "checkpoints": i // 10, "rate": 1000.0, "lag_ms": 5.0,
                         "latency_p99_ms": 5000.0 if slow else 50.0, "latency_max_ms": 60.0,
                         "sink_count": 1000.0, "sink_second": second})
    return pd.DataFrame(rows)


def test_per_second_marks_latency_down_and_carried_seconds():
    df = samples(fail_at=20, skip=(10, 29))
    sec = evaluate.per_second(df, T0, np.full(60, 1000.0), l_max_ms=1000)
    assert len(sec) == 60 and list(sec["t"]) == list(range(60))
    by_t = sec.set_index("t")
    assert list(by_t.loc[20:22, "reason"]) == ["down"] * 3
    assert list(by_t.loc[23:26, "reason"]) == ["latency"] * 4
    assert by_t.loc[10, "measured"] == 0 and by_t.loc[10, "violation"] == 0  # a missed second after a good one
    assert by_t.loc[27, "violation"] == 0
    assert by_t.loc[29, "violation"] == 0 and by_t.loc[29, "reason"] == ""
    assert sec["violation"].sum() == 7
    assert by_t.loc[23, "latency_p99_ms"] == 5000.0 and by_t.loc[5, "offered_rate"] == 1000.0


def test_a_missing_second_inside_an_outage_stays_violated():
    df = samples(fail_at=20, skip=(23,))  # the first catch-up second was not seen
    sec = evaluate.per_second(df, T0, np.full(60, 1000.0), l_max_ms=1000).set_index("t")
    assert sec.loc[23, "reason"] == "carried" and sec.loc[23, "violation"] == 1
    assert sec["violation"].sum() == 7


def test_recovery_hit_and_score():
    s_fail, s_calm = samples(fail_at=20), samples()
    offered = np.full(60, 1000.0)
    secs = {"static-10": evaluate.per_second(s_fail, T0, offered, 1000),
            "khaos": evaluate.per_second(s_calm, T0, offered, 1000)}
    at = T0 + 20.3
    assert evaluate.hit(s_fail, at) and not evaluate.hit(s_calm, at)
    # violations 20..26, then 5 clean seconds from 27: back at 27 - 20.3 = 6.7 s
    assert evaluate.recovery_s(secs["static-10"], at, T0 + 60, consecutive_s=5) == pytest.approx(6.7)
    assert evaluate.recovery_s(secs["khaos"], at, T0 + 60, consecutive_s=5) == 0.0
    assert math.isnan(evaluate.recovery_s(secs["static-10"], at, T0 + 30, consecutive_s=5))  # next failure first
    failures = [{"n": 1, "t": 20.3, "at": at, "mode": "process"}]
    table = evaluate.score(secs, {"static-10": s_fail, "khaos": s_calm}, failures,
                           [{"copy": "khaos", "status": "ok"}, {"copy": "khaos", "status": "failed"}],
                           {"static-10": {"records": 10, "lost": 0, "duplicated": 0}},
                           {"latency_ms": 1000, "recovery_s": 5}, 5, {"static-10": "10 s", "khaos": "khaos"},
                           T0 + 60).set_index("copy")
    assert failures[0]["hit"] == {"static-10": True, "khaos": False}
    assert table.loc["static-10", "violation_s"] == 7 and table.loc["static-10", "down_s"] == 3
    assert table.loc["static-10", "recoveries"] == 1 and table.loc["static-10", "recoveries_over_rmax"] == 1
    assert table.loc["static-10", "recovery_max_s"] == pytest.approx(6.7)
    assert table.loc["khaos", "violation_s"] == 0 and table.loc["khaos", "recoveries"] == 0
    assert table.loc["khaos", "reconfigurations"] == 1
    assert table.loc["static-10", "checkpoints"] == 5 and table.loc["static-10", "audit_records"] == 10
    lat = secs["static-10"].query("measured == 1")["latency_p99_ms"]
    assert table.loc["static-10", "latency_mean_ms"] == pytest.approx(lat.mean(), abs=0.05)


def test_ratios_best_and_median():
    t = pd.DataFrame({"copy": ["static-10", "static-30", "static-60", "khaos"], "violation_s": [20, 40, 90, 10]})
    r = evaluate.ratios(t)
    assert r["best_static"] == "static-10" and r["ratio_best"] == 0.5 and r["ratio_median"] == 0.25
    t["violation_s"] = [0, 40, 90, 5]
    assert evaluate.ratios(t)["ratio_best"] is None  # nothing to divide by: reported as n/a
    t["violation_s"] = [0, 40, 90, 0]
    assert evaluate.ratios(t)["ratio_best"] == 0.0


def test_the_shared_target_takes_down_every_copy_with_the_fewest_hosts():
    assert evaluate.covering_hosts({"static-10": ["h2", "h3"], "khaos": ["h2", "h3"]}) == ["h2"]
    # after a host kill the restarted statics gathered on h3, the resubmitted Khaos job on h2
    assert evaluate.covering_hosts({"static-10": ["h3"], "static-30": ["h2", "h3"], "khaos": ["h2"]}) == ["h2", "h3"]
    assert evaluate.covering_hosts({"static-10": ["h3"], "static-30": ["h3"], "khaos": []}) == ["h3"]
    with pytest.raises(KhaosError, match="nothing to kill"):
        evaluate.covering_hosts({"khaos": []})


def test_failure_schedule_is_seeded_spaced_and_cycles_modes(tmp_path):
    ev = evaluate.load(write(tmp_path, "failures: {count: 5, modes: [process, host], first_s: 100, min_gap_s: 120}\n"
                                       "workload: {seconds: 1200}\n"))
    a, b = evaluate.failure_schedule(ev, 1200), evaluate.failure_schedule(ev, 1200)
    assert a == b and len(a) == 5
    times = [f["t"] for f in a]
    assert times[0] >= 100 and times[-1] <= 1200 - 90 and min(np.diff(times)) >= 120
    assert [f["mode"] for f in a] == ["process", "host", "process", "host", "process"]
    ev.seed += 1
    assert [f["t"] for f in evaluate.failure_schedule(ev, 1200)] != times
    ev.failures["count"] = 12
    with pytest.raises(KhaosError, match="do not fit"):
        evaluate.failure_schedule(ev, 1200)


def write(tmp_path, extra: str = "", base: bool = True) -> str:
    text = ("statics: [10, 30]\nlimits: {latency_ms: 1000, recovery_s: 8}\n"
            "khaos: {results: examples/profile-lab-results.csv}\n" if base else "") + extra
    p = tmp_path / "eval.yml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("extra, base, message", [
    ("name: x\n", False, "statics: missing"),
    ("statics: [10, 10]\nlimits: {latency_ms: 1000, recovery_s: 8}\nkhaos: {results: examples/profile-lab-results.csv}\n",
     False, "statics: has duplicates"),
    ("statics: [10]\nlimits: {latency_ms: 1000}\nkhaos: {results: examples/profile-lab-results.csv}\n",
     False, "both latency_ms"),
    ("statics: [10]\nlimits: {latency_ms: 1000, recovery_s: 8}\n", False, "khaos: needs model"),
    ("failures: {modes: [crash]}\n", True, "failures.modes"),
    ("workload: {trace: nope.txt}\n", True, "workload.trace: nope.txt does not exist"),
    ("workload: {low: 900, high: 100}\n", True, "low 900 > high 100"),
    ("colour: red\n", True, "colour: unknown field"),
])
def test_bad_evaluation_files_give_one_line(tmp_path, extra, base, message):
    with pytest.raises(KhaosError) as e:
        evaluate.load(write(tmp_path, extra, base))
    assert message in one_line(e.value)


def test_dry_run_prints_the_plan(tmp_path, capsys):
    assert evaluate.run(write(tmp_path), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "static-10 (eval-static-10), static-30 (eval-static-30), khaos (eval-khaos)" in out
    assert "6 slots per TaskManager" in out and "nothing started" in out


# ---- on the lab: a shortened evaluation, its table checked against the raw data ---------------------

SHORT = """name: short
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
cluster: {lab: tev}
measurement: {lead_s: 45}
"""


@pytest.mark.lab
def test_short_evaluation_on_the_lab(tmp_path, jar_built):
    from khaos_controller.lab import Lab
    Lab("tev").down(quiet=True)  # leftovers of an interrupted run
    cfg = tmp_path / "short.yml"
    cfg.write_text(SHORT + f"output: {tmp_path / 'out'}\n")
    ev = evaluate.load(cfg)
    try:
        result = evaluate.Runner(ev).run()
    finally:
        Lab("tev").down(quiet=True)
    out, table = tmp_path / "out", result["table"].set_index("copy")
    summary = result["summary"]
    assert list(table.index) == ["static-4", "static-20", "khaos"]

    # every copy: exactly once through a real TaskManager kill
    for copy in table.index:
        assert table.loc[copy, "audit_records"] > 100_000
        assert table.loc[copy, "audit_lost"] == 0 and table.loc[copy, "audit_duplicated"] == 0
    (failure,) = summary["failures"]
    assert failure["mode"] == "process" and failure["t"] >= 60
    assert failure["hit"] == {"static-4": True, "static-20": True, "khaos": True}, summary["placement"]

    l_max, k = ev.limits["latency_ms"], ev.consecutive_s
    for copy in table.index:
        raw = pd.read_csv(out / "samples" / f"{copy}.csv")
        sec = pd.read_csv(out / "seconds" / f"{copy}.csv", keep_default_na=False, na_values=[""])
        assert len(sec) == 120 and sec["second"].iloc[0] == int(summary["start"])
        # each measured second is what a sample reported for exactly that sink second
        seen = raw.dropna(subset=["sink_second"]).groupby("sink_second")["latency_p99_ms"].last()
        measured = sec[sec["measured"] == 1]
        assert len(measured) > 80
        assert np.allclose(measured["latency_p99_ms"], seen.loc[measured["second"].astype(float)].to_numpy())
        # the violation rule, recomputed second by second
        prev = 0
        for row in sec.itertuples():
            want = 1 if (row.measured and row.latency_p99_ms > l_max) or not row.up else (0 if row.measured else prev)
            assert row.violation == want, (copy, row.t)
            prev = want
        # the table's numbers from the per-second rows
        assert table.loc[copy, "violation_s"] == sec["violation"].sum()
        assert table.loc[copy, "down_s"] == ((sec["up"] == 0) & ~((sec["measured"] == 1) & (sec["latency_p99_ms"] > l_max))).sum()
        assert table.loc[copy, "latency_mean_ms"] == pytest.approx(measured["latency_p99_ms"].mean(), abs=0.06)
        assert table.loc[copy, "latency_p99_ms"] == pytest.approx(measured["latency_p99_ms"].quantile(0.99), abs=0.06)
        # the recovery: first violation after the kill, then k clean seconds
        v = sec["violation"].to_numpy()
        i = int(math.floor(failure["at"])) - int(sec["second"].iloc[0])
        first = next((j for j in range(i, i + 31) if v[j]), None)
        rec = 0.0 if first is None else next(
            sec["second"].iloc[j] - failure["at"] for j in range(first, len(v) - k + 1) if not v[j:j + k].any())
        assert failure["recovery_s"][copy] == pytest.approx(rec, abs=1e-6)
        assert table.loc[copy, "recovery_max_s"] == pytest.approx(rec, abs=0.01)
        assert table.loc[copy, "violation_s"] >= 1  # the kill took every copy down for at least a second
        # the interval in force: fixed for a static copy; for Khaos one job per realized change
        cis = sec["ci_s"].dropna().unique()
        if copy != "khaos":
            assert list(cis) == [float(copy.split("-")[1])]
    jobs = pd.read_csv(out / "samples" / "khaos.csv")["job_id"].dropna().unique()
    assert table.loc["khaos", "reconfigurations"] == len(jobs) - 1
    assert table.loc["khaos", "reconfigurations"] == len([r for r in summary["reconfigurations"] if r["status"] == "ok"])

    # the outputs
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "http://" not in html
    md = (out / "table.md").read_text().splitlines()
    assert sum(1 for line in md if line.startswith("| static-") or line.startswith("| khaos")) == 3
    saved = pd.read_csv(out / "table.csv").set_index("copy")
    assert (saved["violation_s"] == table["violation_s"]).all()
    assert json.loads((out / "summary.json").read_text())["ratio_best"] == summary["ratio_best"]
