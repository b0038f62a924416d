"""Measuring one failure from outside the job: wait until it has recovered (judged by profile/recovery.py
on the job sampler's series) and read how long the restarted tasks spent deploying and restoring state; the
row of a failure left out because the job could not keep up with its input at all (:func:`overloaded_row`)."""

from __future__ import annotations

import time

import pandas as pd

from ..errors import KhaosError
from ..flink.client import FlinkClient
from ..flink.sampler import JobSampler
from .recovery import FailureMeasure, measure, steady_latency


def await_recovery(get_series, t_fail: float, params, deadline: float, sleep, **kw) -> FailureMeasure:
    """Measure the failure at ``t_fail`` every 2 s until it has recovered or ``deadline`` (epoch s) has
    passed, at least once: a slow host replacement can return after the deadline, and the measurement
    looks back over the series. KhaosError (with the measurement's reason) if no series could be judged."""
    m = why = None
    while True:
        sleep(2)
        try:
            m = measure(get_series(), t_fail, params, **kw)
        except KhaosError as e:
            why = e
        if (m is not None and m.recovered) or time.time() >= deadline:
            break
    if m is None:
        raise KhaosError(f"no usable samples around the failure at {t_fail:.1f}: {why}")
    return m


def restart_phases(client: FlinkClient, job_id: str) -> dict:
    """The restarted tasks' deploy_s (scheduled and deploying) and restore_s (initializing: state read back
    from the checkpoint), longest subtask; None each when Flink does not say."""
    try:
        s = client.phase_seconds(job_id)
    except (KhaosError, KeyError, TypeError):
        s = {}
    deploy = s.get("SCHEDULED", 0.0) + s.get("DEPLOYING", 0.0) if "DEPLOYING" in s else None
    return {"deploy_s": deploy, "restore_s": s.get("INITIALIZING")}


def series(sampler: JobSampler) -> pd.DataFrame:
    """The sampler's rows that reached Flink (a failed REST call is a hole, not a down second)."""
    df = sampler.frame()
    return df[df["error"].isna()].reset_index(drop=True)


def overloaded_row(unit, cluster: str, mode: str, rep: int, t: float, steady: pd.DataFrame, summary: dict, limit_ms):
    """The row of a failure NOT injected: the job never caught up with its input at this interval and rate
    (it processes less than arrives), so a failure would never recover; the profile saves the recovery
    timeout and says so (``recovered`` false, ``recovery_rule`` overloaded). ``steady``: the series of the
    window before ``t`` (its rate and latency columns are still measured), ``summary``: Flink's checkpoint
    summary (duration and size)."""
    lat = steady["latency_p99_ms"].dropna() if "latency_p99_ms" in steady else pd.Series(dtype=float)
    mean, late = steady_latency(steady, limit_ms) if len(lat) else (None, None)
    rate_in = steady["rate_in"].dropna() if "rate_in" in steady else pd.Series(dtype=float)
    return {
        "trial": f"{unit.ident}-{mode}{rep}",
        "cluster": cluster,
        "ci_s": unit.ci_s,
        "rate": unit.rate,
        "mode": mode,
        "rep": rep,
        "t_fail": t,
        "recovery_s": None,
        "recovered": False,
        "pre_rate": float(rate_in.mean()) if len(rate_in) else None,
        "latency_p99_ms": float(lat.quantile(0.99)) if len(lat) else None,
        "latency_mean_ms": mean,
        "late_share": late,
        **checkpoint_columns(summary),
        "recovery_rule": "overloaded",
        "recovery_signals": "",
    }


def checkpoint_columns(summary: dict) -> dict:
    """A row's checkpoint columns from Flink's checkpoint summary: mean duration (ms) and size (bytes)."""
    return {
        "checkpoint_duration_ms": (summary.get("end_to_end_duration") or {}).get("avg"),
        "checkpoint_size_bytes": (summary.get("state_size") or summary.get("checkpointed_size") or {}).get("avg"),
    }
