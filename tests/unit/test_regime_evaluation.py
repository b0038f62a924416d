"""The regime evaluations of docs/evaluation.md (issue 15), recomputed from what the runs wrote: each copy's
per-second rows (examples/evaluate-regime-runs/<run>/seconds) and summary.json (the failures with each
copy's recovery). Every figure the docs and README quote is checked here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.evaluate import score

RUNS = REPO_ROOT / "examples" / "evaluate-regime-runs"
ISSUE_STATICS = ["static-5", "static-15", "static-30", "static-60"]  # issue 15's statics (run c2 adds static-2)
ALL = ["a", "b", "a2"]  # a, b: the longest feasible interval (session 7); a2...: the slack rule


def load(run: str) -> tuple[dict, dict[str, pd.DataFrame], pd.DataFrame]:
    d = RUNS / run
    summary = json.loads((d / "summary.json").read_text())
    table = pd.read_csv(d / "table.csv").set_index("copy")
    seconds = {c: pd.read_csv(d / "seconds" / f"{c}.csv.gz") for c in table.index}
    return summary, seconds, table


def recovery_spans(summary: dict, copy: str) -> list[tuple[float, float, float]]:
    """(kill t, recovery s or the span to the next failure if not recovered, span) per failure."""
    fs, out = summary["failures"], []
    for i, f in enumerate(fs):
        until = fs[i + 1]["t"] if i + 1 < len(fs) else summary["duration_s"]
        r = f["recovery_s"][copy]
        out.append((f["t"], until - f["t"] if r is None else r, until - f["t"]))
    return out


@pytest.mark.parametrize("run", ALL)
def test_the_table_follows_from_the_seconds(run):
    summary, seconds, table = load(run)
    r_max = summary["limits"]["recovery_s"]
    for c in table.index:
        sec = seconds[c]
        assert len(sec) == summary["duration_s"] == 1200
        assert table.loc[c, "violation_s"] == sec["violation"].sum()
        assert table.loc[c, "down_s"] == (sec["reason"] == "down").sum()
        assert table.loc[c, "latency_violation_s"] == ((sec["violation"] == 1) & (sec["reason"] != "down")).sum()
        excess = sum(max(0.0, rec - r_max) for _, rec, _ in recovery_spans(summary, c))
        assert table.loc[c, "recovery_excess_s"] == pytest.approx(excess, abs=0.05)
        assert table.loc[c, "audit_lost"] == 0 and table.loc[c, "audit_duplicated"] == 0
    assert table["audit_records"].nunique() == 1  # every copy read every record once


@pytest.mark.parametrize(
    "run, a_ok, b_ok, ratio, oracle",
    [("a", False, False, 1.025, 0.762), ("b", True, True, 0.667, 0.624), ("a2", True, True, 0.715, 0.693)],
)
def test_the_targets_as_the_docs_quote_them(run, a_ok, b_ok, ratio, oracle):
    summary, seconds, table = load(run)
    r = score.ratios(table.reset_index())
    pace = r["khaos"]["khaos-pace"]
    assert (pace["a_le_best_static"], pace["b_le_best_static"]) == (a_ok, b_ok)
    assert pace["a_plus_b_ratio_median"] == pytest.approx(ratio, abs=0.001)
    assert r["best_static"] == "static-5"
    # the best (a)+(b) of all six copies at each failure, summed, against the median static copy
    r_max = summary["limits"]["recovery_s"]
    best = 0.0
    for i in range(len(summary["failures"])):
        per = []
        for c in table.index:
            t, rec, span = recovery_spans(summary, c)[i]
            sec = seconds[c]
            w = sec[(sec["t"] >= t - 1) & (sec["t"] < t + span)]
            per.append(((w["violation"] == 1) & (w["reason"] != "down")).sum() + max(0.0, rec - r_max))
        best += min(per)
    assert best / r["median_static_a_plus_b"] == pytest.approx(oracle, abs=0.001)


@pytest.mark.parametrize("run", ALL)
def test_every_violation_second_is_a_recovery_second(run):
    summary, seconds, table = load(run)
    for c in table.index:
        sec = seconds[c]
        inside = np.zeros(len(sec), dtype=bool)
        for t, rec, _ in recovery_spans(summary, c):
            inside |= ((sec["t"] >= t - 1) & (sec["t"] <= t + rec + 1)).to_numpy()
        for ch in summary["reconfigurations"]:  # a restart change's own cost (t: its end): down, catching up
            if ch["copy"] == c and ch["seconds"] > 0:
                inside |= ((sec["t"] >= ch["t"] - ch["seconds"] - 1) & (sec["t"] <= ch["t"] + 10)).to_numpy()
        assert ((sec["violation"] == 1).to_numpy() & ~inside).sum() <= 3, c
        steady = sec.loc[~inside & (sec["measured"] == 1), "latency_p99_ms"]
        assert 115 <= steady.median() <= 130, c  # the interval costs no latency L_max sees
