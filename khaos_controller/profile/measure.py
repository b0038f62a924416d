"""Measuring one failure from outside the job: wait until it has recovered (judged by profile/recovery.py
on the job sampler's series) and read how long the restarted tasks spent deploying and restoring state."""

from __future__ import annotations

import time

import pandas as pd

from ..errors import KhaosError
from ..flink.client import FlinkClient
from ..flink.sampler import JobSampler
from .recovery import FailureMeasure, measure


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
