"""Measure again: several failures in one series, and a stored profile from its raw ``series/``."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import KhaosError
from .recovery import RecoveryParams, measure, steady_window
from .timeline import prepare


def measure_all(series: pd.DataFrame, failures: list[dict], params: RecoveryParams | None = None) -> pd.DataFrame:
    """One row per failure (dicts with ``t_fail`` and optional ``t_detect`` / ``t_running``; other keys
    are copied into the row).

    Each failure is measured on the series cut at the next failure, and its baseline starts no earlier
    than the previous failure's recovery point (so it never contains that failure's outage or catch-up):
    ``baseline_s_used`` shows how much was left. If that clean window holds fewer than
    ``min_baseline_samples`` samples (previous failure not recovered, or too close), the previous
    failure's baseline window is reused (``baseline_reused`` True). A KhaosError for one failure fills
    its ``error`` column instead of aborting the others; such a failure is assumed over after timeout_s.
    """
    p = params or RecoveryParams()
    df = prepare(series)
    rows, prev_window, clean_since = [], None, -math.inf
    fails = sorted(failures, key=lambda f: f["t_fail"])
    for i, f in enumerate(fails):
        t_fail = float(f["t_fail"])
        t_next = float(fails[i + 1]["t_fail"]) if i + 1 < len(fails) else math.inf
        window = (max(t_fail - p.baseline_s, clean_since), t_fail)
        n_clean = int(((df["t"] >= window[0]) & (df["t"] < window[1])).sum())
        reused = n_clean < p.min_baseline_samples and prev_window is not None
        if reused:
            window = prev_window
        row = {k: v for k, v in f.items()}
        try:
            m = measure(df[df["t"] < t_next], t_fail, p, f.get("t_detect"), f.get("t_running"), baseline=window)
            row.update(m.as_dict(), baseline_reused=reused, error=None)
            prev_window = window
        except KhaosError as e:
            m = None
            row.update(t_fail=t_fail, recovered=False, baseline_reused=reused, error=str(e))
        # The next baseline starts where this failure is over: its recovery point; never, if it did not
        # recover; after timeout_s if it could not be measured.
        if m is None:
            clean_since = min(t_fail + p.timeout_s, t_next)
        else:
            clean_since = t_fail + m.recovery_s if m.recovered else t_next
        rows.append(row)
    return pd.DataFrame(rows)


def remeasure(results: pd.DataFrame, series_dir: str | Path, params: RecoveryParams | None = None) -> pd.DataFrame:
    """Measure a stored profile again from its raw series, e.g. after a change of this module.

    ``results`` is the profile's ``results.csv`` (one row per failure: ``trial``, ``cluster``, ``mode``,
    ``rep``, ``t_fail``, ``detect_s``); ``series_dir`` holds its ``<cluster>-<unit>.csv`` sample series.
    Each failure is measured as the profiler did: :func:`measure` on its unit's series cut at the unit's
    next failure, with the baseline of the unit's first failure (:func:`~.recovery.steady_window`) and Flink's detection time
    ``t_fail + detect_s``. ``params`` must be the profile's: ``baseline_s = max(10, warmup_s - 5)``,
    ``consecutive_s`` and ``timeout_s = recovery_timeout_s`` of its experiment. Returns a copy of
    ``results`` with the measured columns replaced; a series that is missing or unmeasurable raises
    KhaosError naming the trial.
    """
    p = params or RecoveryParams()
    out = results.copy().reset_index(drop=True)
    need = [c for c in ("trial", "cluster", "mode", "rep", "t_fail", "detect_s") if c not in out.columns]
    if need:
        raise KhaosError(f"results lack column(s) {', '.join(need)}: not a khaos profile results.csv")
    units = [
        str(r.trial)[: -len(f"-{r.mode}{r.rep}")] if str(r.trial).endswith(f"-{r.mode}{r.rep}") else None
        for r in out.itertuples()
    ]
    series: dict[str, pd.DataFrame] = {}
    for i, r in enumerate(out.itertuples()):
        if units[i] is None:
            raise KhaosError(f"trial {r.trial!r} does not end in -<mode><rep>; cannot find its unit's series")
        path = Path(series_dir) / f"{r.cluster}-{units[i]}.csv"
        if str(path) not in series:
            if not path.is_file():
                raise KhaosError(f"no series {path} for trial {r.trial}")
            series[str(path)] = prepare(pd.read_csv(path))
        df = series[str(path)]
        t_fail = float(r.t_fail)
        unit_fails = [
            float(o.t_fail) for j, o in enumerate(out.itertuples()) if units[j] == units[i] and o.cluster == r.cluster
        ]
        later = [t for t in unit_fails if t > t_fail]
        if later:
            df = df[df["t"] < min(later)]
        first = min(unit_fails)
        t_detect = t_fail + float(r.detect_s) if pd.notna(r.detect_s) else None
        try:
            m = measure(df, t_fail, p, t_detect=t_detect, baseline=steady_window(first, p))
        except KhaosError as e:
            raise KhaosError(f"trial {r.trial}: {e}") from None
        for col, v in (
            ("detect_s", m.detect_s),
            ("running_s", m.running_s),
            ("recovery_s", m.recovery_s),
            ("recovered", m.recovered),
            ("catchup_s", m.catchup_s),
            ("pre_rate", m.pre_rate),
            ("latency_p99_ms", m.pre_latency_p99_ms),
            ("peak_lag_ms", m.peak_lag_ms),
        ):
            out.loc[i, col] = v
    return out
