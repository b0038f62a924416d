"""Scoring an evaluation: one row per second and copy from the samples, the same rules for every copy.

violation  the sink's p99 latency of that second > L_max, or the copy is down (not every task
           RUNNING, or no job); a second without a sink measurement keeps the previous second's
           state ("carried").
recovery   from the kill to the start of the first `consecutive_s` violation-free seconds after
           the first violation it caused (0 if it caused none); NaN if not recovered before the
           next failure or the end.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import journal
from ..control import step
from .config import is_khaos


def per_second(
    samples: pd.DataFrame, start_s: int, offered: np.ndarray, l_max_ms: float, output: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per second [start_s, start_s + len(offered)) from a copy's samples (module docstring). A job
    without sink gauges (no sink_second) is measured by ``output``: its output topic's latency seconds
    (kafka/latency.py: second, count, p99_ms, max_ms)."""
    n = len(offered)
    sec = pd.DataFrame(
        {"second": start_s + np.arange(n), "t": np.arange(n), "offered_rate": np.asarray(offered, float)}
    )
    df = samples.sort_values("t").copy()
    df["s"] = np.floor(df["t"]).astype(int)
    df["down"] = ~df["all_running"].fillna(False).astype(bool)
    state = df.groupby("s").agg(
        job_id=("job_id", "last"),
        ci_s=("ci_s", "last"),
        rate_in=("rate_in", "last"),
        lag_ms=("lag_ms", "last"),
        down=("down", "max"),
    )
    # a second without any sample keeps the state of the last sample before it
    state = state.reindex(range(int(df["s"].min()) if len(df) else start_s, start_s + n)).ffill()
    state = state.reindex(sec["second"])
    sink = (
        df[df["sink_second"].notna()]
        .groupby("sink_second")
        .agg(
            latency_p99_ms=("latency_p99_ms", "last"),
            latency_max_ms=("latency_max_ms", "last"),
            throughput=("sink_count", "last"),
        )
    )
    if output is not None and sink.empty:  # the latency a consumer of the output topic sees
        out = output[output["count"] > 0].set_index(output["second"].astype(float))
        sink = pd.DataFrame(
            {"latency_p99_ms": out["p99_ms"], "latency_max_ms": out["max_ms"], "throughput": out["count"]}
        )
    sink = sink.reindex(sec["second"].astype(float))
    for col in ("job_id", "ci_s", "rate_in", "lag_ms"):
        sec[col] = state[col].to_numpy()
    sec["up"] = (~state["down"].fillna(True).astype(bool)).astype(int).to_numpy()
    for col in ("throughput", "latency_p99_ms", "latency_max_ms"):
        sec[col] = sink[col].to_numpy()
    sec["measured"] = sec["latency_p99_ms"].notna().astype(int)
    violation, reason, prev = [], [], 0
    for up, measured, p99 in zip(sec["up"], sec["measured"], sec["latency_p99_ms"]):
        if measured and p99 > l_max_ms:
            v, r = 1, "latency"
        elif not up:
            v, r = 1, "down"
        elif measured:
            v, r = 0, ""
        else:
            v, r = prev, "carried" if prev else ""
        violation.append(v)
        reason.append(r)
        prev = v
    sec["violation"], sec["reason"] = violation, reason
    return sec


def hit(samples: pd.DataFrame, at: float, window_s: float = 30.0) -> bool:
    """Did the failure at `at` take this copy down: the job it ran then restarted or stopped running?"""
    before = samples[(samples["t"] <= at) & samples["job_id"].notna()].tail(1)
    if before.empty:
        return False
    jid, restarts = before["job_id"].iloc[0], before["restarts"].iloc[0]
    after = samples[(samples["t"] > at) & (samples["t"] <= at + window_s) & (samples["job_id"] == jid)]
    return bool(((after["restarts"] > restarts) | ~after["all_running"].astype(bool)).any())


def recovery_s(sec: pd.DataFrame, at: float, until: float, consecutive_s: int, first_within_s: float = 30.0) -> float:
    """Seconds from the kill at `at` to the start of the first `consecutive_s` violation-free seconds
    after the first violation it caused (0.0 if none within first_within_s; NaN if none before `until`)."""
    t0 = sec["second"].iloc[0]
    v = sec["violation"].to_numpy()
    i0 = max(0, math.floor(at) - t0)
    end = min(len(v), math.floor(until) - t0)
    bad = [i for i in range(i0, min(end, i0 + int(first_within_s) + 1)) if v[i]]
    if not bad:
        return 0.0
    run = 0
    for i in range(bad[0], end):
        run = run + 1 if not v[i] else 0
        if run == consecutive_s:
            return float(t0 + i - consecutive_s + 1 - at)
    return float("nan")


def score(
    seconds: dict[str, pd.DataFrame],
    samples: dict[str, pd.DataFrame],
    failures: list[dict],
    reconfigs: list[dict],
    audits: dict[str, dict],
    limits: dict,
    consecutive_s: int,
    ci_label: dict[str, str],
    end: float,
) -> pd.DataFrame:
    """The table: one row per copy. Fills failures[i]['hit'] / ['recovery_s'] per copy."""
    spans = []  # seconds from each failure to the next one (or the end)
    for i, f in enumerate(failures):
        until = failures[i + 1]["at"] if i + 1 < len(failures) else end
        spans.append(until - f["at"])
        f["hit"], f["recovery_s"] = {}, {}
        for copy, sec in seconds.items():
            f["hit"][copy] = hit(samples[copy], f["at"])
            f["recovery_s"][copy] = recovery_s(sec, f["at"], until, consecutive_s) if f["hit"][copy] else None
    rows = []
    for copy, sec in seconds.items():
        rec = np.array([f["recovery_s"][copy] for f in failures if f["hit"][copy]], dtype=float)
        # not recovered before the next failure: at least the whole span to it
        span = np.array([t for f, t in zip(failures, spans) if f["hit"][copy]], dtype=float)
        excess = np.clip(np.where(np.isnan(rec), span, rec) - limits["recovery_s"], 0, None)
        lat = sec.loc[sec["measured"] == 1, "latency_p99_ms"]
        smp = samples[copy].dropna(subset=["job_id"])
        a = audits.get(copy, {})
        rows.append(
            {
                "copy": copy,
                "ci": ci_label[copy],
                "violation_s": int(sec["violation"].sum()),
                "violation_pct": round(100.0 * sec["violation"].mean(), 2),
                "down_s": int((sec["reason"] == "down").sum()),
                "latency_violation_s": int(((sec["violation"] == 1) & (sec["reason"] != "down")).sum()),
                "measured_pct": round(100.0 * sec.loc[sec["up"] == 1, "measured"].mean(), 1)
                if sec["up"].any()
                else 0.0,
                "recoveries": len(rec),
                "recoveries_over_rmax": int(((rec > limits["recovery_s"]) | np.isnan(rec)).sum()),
                "recovery_mean_s": round(float(np.nanmean(rec)), 2) if np.isfinite(rec).any() else float("nan"),
                "recovery_max_s": round(float(np.nanmax(rec)), 2) if np.isfinite(rec).any() else float("nan"),
                "recovery_excess_s": round(float(excess.sum()), 1),
                "latency_mean_ms": round(float(lat.mean()), 1) if len(lat) else float("nan"),
                "latency_p99_ms": round(float(lat.quantile(0.99)), 1) if len(lat) else float("nan"),
                "checkpoints": int(smp.groupby("job_id")["checkpoints"].max().sum()) if len(smp) else 0,
                "reconfigurations": sum(1 for r in reconfigs if r["copy"] == copy and r["status"] == "ok"),
                "audit_records": a.get("records"),
                "audit_lost": a.get("lost"),
                "audit_duplicated": a.get("duplicated"),
            }
        )
    return pd.DataFrame(rows)


def ratios(table: pd.DataFrame) -> dict:
    """Each Khaos copy against the static copies: violation seconds over the best and the median static
    copy's; and the two scores, (a) latency-violation seconds and (b) recovery excess, each against the
    best static copy's, and (a)+(b) over the median static copy's."""
    khaos = table["copy"].map(is_khaos)
    st = table[~khaos].set_index("copy")
    best, med = float(st["violation_s"].min()), float(st["violation_s"].median())
    a_b = st["latency_violation_s"] + st["recovery_excess_s"]

    def ratio(k: float, x: float) -> float | None:
        return round(k / x, 3) if x > 0 else (0.0 if k == 0 else None)

    out = {}
    for copy, row in table[khaos].set_index("copy").iterrows():
        k_ab = float(row["latency_violation_s"] + row["recovery_excess_s"])
        out[str(copy)] = {
            "violation_s": float(row["violation_s"]),
            "ratio_best": ratio(float(row["violation_s"]), best),
            "ratio_median": ratio(float(row["violation_s"]), med),
            "latency_violation_s": float(row["latency_violation_s"]),
            "recovery_excess_s": float(row["recovery_excess_s"]),
            "a_le_best_static": bool(row["latency_violation_s"] <= st["latency_violation_s"].min()),
            "b_le_best_static": bool(row["recovery_excess_s"] <= st["recovery_excess_s"].min()),
            "a_plus_b_ratio_median": ratio(k_ab, float(a_b.median())),
        }
    return {
        "best_static": str(st["violation_s"].idxmin()),
        "best_static_violation_s": best,
        "median_static_violation_s": med,
        "best_static_latency_violation_s": float(st["latency_violation_s"].min()),
        "best_static_recovery_excess_s": float(st["recovery_excess_s"].min()),
        "median_static_a_plus_b": float(a_b.median()),
        "khaos": out,
    }


def reconfigurations(journal_path: Path, start: float, copy: str) -> list[dict]:
    """A Khaos copy's realized (or failed) interval changes, from its daemon's journal."""
    out = []
    for s in step.read(journal.read(journal_path)):
        r = s.realization
        if r is not None and r.status in ("ok", "failed"):
            out.append(
                {
                    "copy": copy,
                    "t": round(s.ts - start, 1),
                    "from_ci_s": s.decision.current_ci_s,
                    "to_ci_s": r.target_ci_s,
                    "seconds": r.seconds,
                    "status": r.status,
                    "rate": s.observation.demand_rate,
                }
            )
    return out


def paced(sec: pd.DataFrame, reconfigs: list[dict]) -> pd.DataFrame:
    """A paced copy's seconds with ci_s the interval in force (step.interval_in_force): the paced one, or the
    job's own (its safety net, which is what the samples read) when that is shorter."""
    changes = [(r["t"], r["to_ci_s"]) for r in reconfigs if r["status"] == "ok"]
    held = step.timeline(sec["t"].tolist(), sec["ci_s"].tolist(), changes)
    return sec.assign(ci_s=np.array(held, dtype=float))


def notes(table: pd.DataFrame, failures: list[dict]) -> list[str]:
    """Plain-words notes for the report: failures that missed a copy, audits that failed."""
    out = []
    for f in failures:
        missed = [c for c, h in f.get("hit", {}).items() if not h]
        if missed:
            out.append(f"failure {f['n']} ({f['mode']} at {f['t']:g} s) did not take down: {', '.join(missed)}")
    bad = table[(table["audit_lost"].fillna(0) > 0) | (table["audit_duplicated"].fillna(0) > 0)]
    for _, row in bad.iterrows():
        out.append(f"{row['copy']}: sink audit lost {row['audit_lost']}, duplicated {row['audit_duplicated']}")
    return out
