"""The sampler's series as the recovery measurement (recovery.py) reads it: the samples cleaned and sorted,
the sink's per-second values placed on the second they describe, and the first run of samples inside the
steady-state bands on either timeline."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import KhaosError

if TYPE_CHECKING:
    from .recovery import RecoveryParams

NUMERIC = (
    "restarts",
    "rate_in",
    "throughput",
    "lag_ms",
    "backlog",
    "latency_p99_ms",
    "checkpoints",
    "sink_second",
    "running_since",
)
# A sink second reported more than this long after it ended is stale: REST served old values, or no record
# reached the sink since (the sample job's gauges keep the last second that had records).
SINK_SECOND_MAX_AGE_S = 6.0
_NAN = float("nan")
# column names of series stored by khaos before the one sampler (flink/sampler.py)
_LEGACY = {"latency_ms": "latency_p99_ms", "checkpoints_completed": "checkpoints"}


def _flag(v) -> float:
    try:
        if pd.isna(v):
            return _NAN
    except (TypeError, ValueError):
        return _NAN
    return 1.0 if bool(v) else 0.0


def prepare(series: pd.DataFrame) -> pd.DataFrame:
    """Sorted copy with every known column present: numeric floats, all_running as 1.0/0.0/NaN."""
    if "t" not in series.columns:
        raise KhaosError("the recovery series has no 't' column (epoch seconds of each sample)")
    df = series.rename(columns={k: v for k, v in _LEGACY.items() if k in series and v not in series})
    df["t"] = pd.to_numeric(df["t"], errors="coerce")
    df = df[df["t"].notna()].sort_values("t", kind="stable").reset_index(drop=True)
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float) if c in df else _NAN
    df["all_running"] = df["all_running"].map(_flag).astype(float) if "all_running" in df else _NAN
    return df


def sample_period(df: pd.DataFrame) -> float:
    """The series' usual time between samples: the median gap (1 s without one)."""
    d = np.diff(df["t"].to_numpy())
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0


def _distinct_median(sig: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per column, a centered rolling median of ``k`` over the distinct values only: a sample that
    repeats its predecessor's value (the REST metric cache serving the same second again) gets the
    smoothed value of the sample it repeats. NaN stays NaN."""
    out = {}
    for col in sig.columns:
        x = sig[col]
        new = x.notna() & x.ne(x.ffill().shift())
        group = new.cumsum()
        smoothed = x[new].rolling(k, center=True, min_periods=1).median()
        out[col] = group.map(pd.Series(smoothed.to_numpy(), index=group[new].to_numpy())).where(x.notna())
    return pd.DataFrame(out, index=sig.index)


def per_second(rows: pd.DataFrame) -> pd.DataFrame:
    """The sink's per-second values placed on the second they describe.

    ``sink_second`` is the epoch second [S, S+1) the sample's ``throughput`` (sink count) and
    ``latency_p99_ms`` (sink p99) describe. One row per distinct S, at ``t = S``, from the first sample that
    reported it; the row also carries that sample's ``lag_ms`` / ``backlog`` / ``rate_in``, which were
    read right after second S (the fetch that saw S finished happened during S+1). A second reported
    more than SINK_SECOND_MAX_AGE_S after its end is stale and dropped. Samples that saw the tasks not
    running are kept at their own time, with ``all_running`` 0 and no values, so they break a run.
    """
    s = rows["sink_second"]
    ok = s.notna() & (rows["t"] >= s + 1 - 0.5) & (rows["t"] - (s + 1) <= SINK_SECOND_MAX_AGE_S)
    sec = rows[ok].drop_duplicates("sink_second", keep="first").copy()
    sec["t"] = sec["sink_second"]
    down = rows[rows["all_running"] == 0.0].copy()
    down.loc[:, [c for c in NUMERIC if c in down.columns]] = _NAN
    return pd.concat([sec, down]).sort_values("t", kind="stable").reset_index(drop=True)


def normal_run_start(
    rows: pd.DataFrame, band: dict, used: list[str], p: RecoveryParams, period: float, latest_start: float
) -> tuple[float, float]:
    """(start, end) of the first in-band run lasting consecutive_s, or (NaN, NaN).

    Signals are first smoothed by a centered rolling median of ``smooth_samples`` (so one stray sample,
    e.g. a GC pause or a checkpoint-alignment spike, cannot break a run; a monotone return to normal
    is not shifted). A run starts only at a sample whose raw values are all in band: the median may
    keep a run going, but never makes a sample that still shows the catch-up its start. A run is broken
    by an out-of-band sample, by all_running False, or by a hole > max_gap_s between usable samples;
    samples where a used signal is NaN are skipped (holes). Once a run has seen two distinct in-band
    values, one stray second that the REST cache served to two or three samples does not break it
    either (see :func:`_distinct_median`). A run of samples t_first..t_last lasts
    ``t_last - t_first + period`` s (each sample stands for the second before it); a quarter period of
    jitter is tolerated.
    """
    t = rows["t"].to_numpy()
    sig = rows[used]
    missing = sig.isna().to_numpy().any(axis=1)
    k = max(1, p.smooth_samples)
    lo = np.array([band[s][0] for s in used])
    hi = np.array([band[s][1] for s in used])
    vals = sig.rolling(k, center=True, min_periods=1).median().to_numpy(dtype=float)
    inside = ((vals >= lo) & (vals <= hi)).all(axis=1)
    raw = sig.to_numpy(dtype=float)
    raw_inside = ((raw >= lo) & (raw <= hi)).all(axis=1)
    # The REST cache serves one per-second value to 2-3 consecutive samples, so a single stray second
    # can fill two of the three samples of the median above. Smoothed over distinct values instead, it
    # is one stray: once a run has seen two distinct in-band seconds, such an excursion does not break
    # it. The catch-up itself (before a run starts) and frozen metrics (one repeated value) are judged
    # per sample, as before.
    dvals = _distinct_median(sig, k).to_numpy(dtype=float)
    inside_distinct = ((dvals >= lo) & (dvals <= hi)).all(axis=1)
    fresh = (sig.ne(sig.shift()) & sig.notna()).to_numpy().any(axis=1)
    ar = rows["all_running"].to_numpy()
    start, last, seen = _NAN, _NAN, 0
    for i in range(len(t)):
        if ar[i] == 0.0:
            start, last = _NAN, t[i]
            continue
        if missing[i]:
            continue
        if not math.isnan(last) and t[i] - last > p.max_gap_s:
            start = _NAN
        last = t[i]
        if not inside[i] and not (inside_distinct[i] and not math.isnan(start) and seen >= 2):
            start = _NAN
            continue
        if math.isnan(start):
            if not raw_inside[i]:
                continue  # smoothing keeps a run going; it never starts one on an anomalous sample
            if t[i] > latest_start:
                return _NAN, _NAN
            start, seen = t[i], 0
        seen += bool(fresh[i]) and bool(inside[i])
        if t[i] - start + period >= p.consecutive_s - 0.25 * period:
            return float(start), float(t[i])
    return _NAN, _NAN
