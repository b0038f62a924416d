"""Workloads: record a job's input rate, choose failure points, build and forecast traces.

A *trace* is what the sample job replays with `--trace FILE`: one non-negative number per line,
the events due in that second (the job repeats the trace after its last line). In Python a trace
is a float `pd.Series` named "rate" whose positions are seconds (position i = second i).

Learning phase: `record_rate` samples a production job once per second into a CSV,
`load_trace` reads it back, `failure_points` picks moments spread over the whole rate range, and
`trace_window` + `write_trace` cut the replay file around each of them. `step_trace` and
`synthetic_day` make artificial traces (the daemon's rate forecast is control/forecast.py).
See docs/workload.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import KhaosError
from ..flink.client import FlinkError
from ..schema import MAX_DURATION_S

EMITTED_SUFFIX = ".emitted"  # the sample job's own source counter (events emitted)
RECORDS_OUT = "numRecordsOut"  # standard Flink counter, fallback for any job
_SETTLE_LOOKS = 10  # metric lists to read before accepting numRecordsOut over .emitted
MAX_TRACE_SECONDS = MAX_DURATION_S  # a longer trace (or a gap in t that long) is a mistake


# ---- recording ------------------------------------------------------------------------
def _source_vertices(client, job_id: str, source: str | None) -> list[str]:
    vertices = client.job(job_id)["vertices"]
    if source:
        ids = [v["id"] for v in vertices if source in v["name"]]
    else:
        ids = [v["id"] for v in vertices if v["name"].startswith("Source")]
    if not ids:
        names = ", ".join(repr(v["name"]) for v in vertices) or "none"
        want = f"named like {source!r}" if source else "whose name starts with 'Source'"
        raise KhaosError(f"job {job_id} has no vertex {want} (vertices: {names})")
    return ids


def _pick_metric(names: list[str]) -> str | None:
    emitted = sorted(n for n in names if n.endswith(EMITTED_SUFFIX))
    if emitted:
        return emitted[0]
    return RECORDS_OUT if RECORDS_OUT in names else None


def _counter_delta(old: float, new: float) -> float:
    """Events between two readings of a counter; a restart resets it, so new < old means the
    counter started again from 0 and `new` is what was counted since."""
    return new - old if new >= old else new


def record_rate(
    client,
    job_id: str,
    out_csv: str | Path,
    seconds: float,
    interval: float = 1.0,
    source: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Record a job's source throughput into `out_csv` (columns t,rate); returns the rows written.

    Every `interval` seconds (paced on the monotonic clock) the source counters are read over
    REST and summed over subtasks: the vertex's `*.emitted` counter if the job has one, else
    `numRecordsOut`. Source vertices: names starting with "Source", or containing `source`;
    several are summed. A row is `t` (epoch second of the sample, int) and `rate` = counter
    delta / elapsed seconds since the previous good sample (events/s; with interval 1, the events
    of that second). The first sample is only a baseline. A sample with a missing metric or a REST
    error writes no row; the next good sample covers the gap (load_trace spreads it back). A
    counter that went down was reset by a restart: its new value is the delta. Each row is flushed.
    The file is overwritten.
    """
    if not interval >= 1:
        raise KhaosError(f"record_rate: interval must be >= 1 s (got {interval})")
    if not seconds >= interval:
        raise KhaosError(f"record_rate: seconds must be >= interval {interval} (got {seconds})")
    vertices = _source_vertices(client, job_id, source)
    metric: dict[str, str | None] = {v: None for v in vertices}
    looks = 0
    total = int(seconds // interval)
    prev: dict[str, float] | None = None  # vertex -> counter at tick prev_tick
    prev_tick = 0
    rows = 0
    t0_wall, t0 = time.time(), time.monotonic()
    with open(out_csv, "w", encoding="utf-8") as fh:
        fh.write("t,rate\n")
        fh.flush()
        tick = 0
        while tick <= total:
            wait = t0 + tick * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            values: dict[str, float] | None = None
            try:
                # metric lists appear over REST seconds after the tasks run: look until settled
                if not all(metric.values()) or (
                    looks < _SETTLE_LOOKS and not all(m.endswith(EMITTED_SUFFIX) for m in metric.values())
                ):
                    picked = {v: _pick_metric(client.vertex_metric_names(job_id, v)) for v in vertices}
                    looks += all(picked.values())
                    if picked != metric:
                        metric, prev = picked, None  # another counter: start a new baseline
                if all(metric.values()):
                    values = {}
                    for v in vertices:
                        got = client.vertex_metrics(job_id, v, [metric[v]], agg="sum")
                        if metric[v] not in got:
                            values = None
                            break
                        values[v] = got[metric[v]]
            except FlinkError:
                values = None  # REST hiccup or job restarting: no row, the next sample covers it
            if values is not None:
                if prev is not None:
                    delta = sum(_counter_delta(prev[v], values[v]) for v in vertices)
                    rate = delta / ((tick - prev_tick) * interval)
                    fh.write(f"{round(t0_wall + tick * interval)},{float(rate)!r}\n")
                    fh.flush()
                    rows += 1
                prev, prev_tick = values, tick
            if progress and tick:
                progress(tick, total)
            # a slow REST call may overrun ticks: continue with the latest one already due
            late = max(tick + 1, int((time.monotonic() - t0) // interval))
            tick = total if tick < total < late else late  # still take the last sample
    return rows


# ---- trace files ------------------------------------------------------------------------
def _number(text: str, path: Path, line_no: int, what: str = "value") -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise KhaosError(f"trace {path} line {line_no}: not a number: {text[:40]!r}")
    if v < 0:
        raise KhaosError(f"trace {path} line {line_no}: negative {what} {text[:40]}")
    return v


def load_trace(path: str | Path) -> pd.Series:
    """Read a recorded CSV (header `t,rate`) or a plain trace (one number per line) as a Series.

    Plain trace: index = seconds 0..n-1; blank and '#' lines are skipped, as the job does.
    CSV: index = seconds since the first row's t (kept in `series.attrs["t0"]`); seconds without
    a row (skipped samples, interval > 1) take the rate of the next row, which was measured over
    that gap. Raises KhaosError (one line) for a missing file, a non-numeric line (with its
    number), a negative value, t not increasing, or no values at all.
    """
    path = Path(path)
    if not path.is_file():
        raise KhaosError(f"trace file {path} does not exist" if not path.exists() else f"trace {path} is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KhaosError(f"cannot read trace {path}: {e}") from None
    body = [(i, ln.strip()) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.strip().startswith("#")]
    if not body:
        raise KhaosError(f"trace {path} has no values")
    if len(body) > MAX_TRACE_SECONDS:
        raise KhaosError(f"trace {path} has {len(body)} lines (a trace spans at most {MAX_TRACE_SECONDS} seconds)")
    if "," not in body[0][1]:
        values = [_number(text, path, i) for i, text in body]
        return pd.Series(values, index=pd.RangeIndex(len(values), name="t"), name="rate", dtype=float)

    header = [h.strip().lower() for h in body[0][1].split(",")]
    if "t" not in header or "rate" not in header:
        raise KhaosError(f"trace {path} line {body[0][0]}: CSV header must have columns t and rate, got {body[0][1]!r}")
    ti, ri = header.index("t"), header.index("rate")
    ts: list[int] = []
    rates: list[float] = []
    for i, text in body[1:]:
        cells = text.split(",")
        if len(cells) != len(header):
            raise KhaosError(f"trace {path} line {i}: expected {len(header)} columns, got {len(cells)}")
        t = int(_number(cells[ti].strip(), path, i, "t"))
        if ts and t <= ts[-1]:
            raise KhaosError(f"trace {path} line {i}: t {t} does not increase (previous {ts[-1]})")
        if ts and t - ts[0] >= MAX_TRACE_SECONDS:
            raise KhaosError(
                f"trace {path} line {i}: t {t} is {t - ts[0]} seconds after the first row "
                f"(a trace spans at most {MAX_TRACE_SECONDS} seconds)"
            )
        ts.append(t)
        rates.append(_number(cells[ri].strip(), path, i, "rate"))
    if not ts:
        raise KhaosError(f"trace {path} has a header but no rows")
    t0 = ts[0]
    s = pd.Series(rates, index=np.asarray(ts) - t0, dtype=float)
    s = s.reindex(pd.RangeIndex(ts[-1] - t0 + 1, name="t")).bfill().rename("rate")
    s.attrs["t0"] = t0
    return s


def write_trace(series: pd.Series, path: str | Path) -> int:
    """Write a trace file for the job's `--trace`: one integer per line (negative -> 0, then
    rounded half up). Written to a temporary file and renamed. Returns the number of lines."""
    v = np.asarray(series, dtype=float)
    if v.size == 0:
        raise KhaosError(f"write_trace {path}: the series is empty")
    if not np.isfinite(v).all():
        raise KhaosError(f"write_trace {path}: the series has NaN or infinite values")
    counts = np.floor(np.clip(v, 0, None) + 0.5).astype(np.int64)
    if not counts.any():
        raise KhaosError(f"write_trace {path}: every second has 0 events; the job cannot replay that")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text("\n".join(map(str, counts.tolist())) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise KhaosError(f"write_trace {path}: {e.strerror or e}") from None
    return int(counts.size)


# ---- failure points ---------------------------------------------------------------------
def failure_points(rates: pd.Series, count: int = 12, window: int = 300, min_distance: int = 1800) -> pd.DataFrame:
    """Moments to inject failures at, spread over the whole observed rate range.

    avg = trailing mean of `window` seconds (defined from position window-1 on). Targets =
    `count` rates evenly spaced from min(avg) to max(avg). Hardest target first (fewest moments
    whose avg lies within half a target spacing of it; ties: farthest from the middle first), each
    takes the free moment whose avg is closest to it (earliest on ties); a moment is free if it is
    >= `min_distance` s from every moment already taken. If no moment is free, the remaining
    targets get none: fewer than `count` rows, no error. Columns: t (position in `rates`),
    target_rate, avg_rate; sorted by t.
    """
    for name, value, low in (("count", count, 1), ("window", window, 1), ("min_distance", min_distance, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise KhaosError(f"failure_points: {name} must be an integer >= {low} (got {value!r})")
    y = np.asarray(rates, dtype=float)
    if y.size < window:
        raise KhaosError(f"failure_points: the series has {y.size} s, shorter than the {window} s averaging window")
    if not np.isfinite(y).all():
        raise KhaosError("failure_points: the series has NaN or infinite values")
    avg = pd.Series(y).rolling(window).mean().to_numpy()  # NaN before position window-1
    valid = np.arange(window - 1, y.size)
    targets = np.linspace(avg[valid].min(), avg[valid].max(), count)
    half = (targets[-1] - targets[0]) / (count - 1) / 2 if count > 1 else 0.0
    sorted_avg = np.sort(avg[valid])
    support = np.searchsorted(sorted_avg, targets + half, "right") - np.searchsorted(sorted_avg, targets - half, "left")
    order = sorted(range(count), key=lambda k: (support[k], -abs(targets[k] - targets.mean()), k))

    free = np.zeros(y.size, dtype=bool)
    free[valid] = True
    picked = []
    for k in order:
        dist = np.where(free, np.abs(avg - targets[k]), np.inf)
        t = int(np.argmin(dist))
        if not np.isfinite(dist[t]):
            break  # every moment is too close to one already taken
        picked.append((t, float(targets[k]), float(avg[t])))
        if min_distance:
            free[max(0, t - min_distance + 1) : t + min_distance] = False
        else:
            free[t] = False
    return pd.DataFrame(picked, columns=["t", "target_rate", "avg_rate"]).sort_values("t", ignore_index=True)


def trace_window(rates: pd.Series, center: int, before: int, after: int) -> pd.Series:
    """The replay window around a failure point: positions [center-before, center+after),
    clipped to the series; the original index is kept (so window.index[0] says where it starts)."""
    if not 0 <= center < len(rates):
        raise KhaosError(f"trace_window: center {center} is outside the series (0..{len(rates) - 1})")
    if before < 0 or after < 0:
        raise KhaosError(f"trace_window: before and after must be >= 0 (got {before}, {after})")
    return rates.iloc[max(0, center - before) : min(len(rates), center + after)]


# ---- synthetic traces -------------------------------------------------------------------
def step_trace(rates: list[float], step_seconds: int) -> pd.Series:
    """A stepped trace: each rate held for `step_seconds` seconds, in the given order."""
    if isinstance(step_seconds, bool) or not isinstance(step_seconds, (int, np.integer)) or step_seconds < 1:
        raise KhaosError(f"step_trace: step_seconds must be an integer >= 1 (got {step_seconds!r})")
    r = np.asarray(rates, dtype=float)
    if r.size == 0 or not np.isfinite(r).all() or (r < 0).any():
        raise KhaosError(f"step_trace: rates must be a non-empty list of non-negative numbers (got {list(rates)[:8]})")
    return pd.Series(np.repeat(r, step_seconds), index=pd.RangeIndex(r.size * step_seconds, name="t"), name="rate")


def synthetic_day(seconds: int, low: float, high: float, seed: int, bursts: int = 3, noise: float = 0.05) -> pd.Series:
    """One day-shaped cycle compressed into `seconds`: low at the start and end, high in the middle
    (low + (high-low) * (1 - cos(2 pi t / seconds)) / 2), plus Gaussian noise of sd
    noise * (high-low) and `bursts` rectangular bursts (30..300 s, +20..50 % of `high`) at random
    times. Same seed, same series. Clipped at 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, np.integer)) or seconds < 1:
        raise KhaosError(f"synthetic_day: seconds must be an integer >= 1 (got {seconds!r})")
    if not 0 <= low <= high:
        raise KhaosError(f"synthetic_day: need 0 <= low <= high (got low {low}, high {high})")
    if bursts < 0 or noise < 0:
        raise KhaosError(f"synthetic_day: bursts and noise must be >= 0 (got {bursts}, {noise})")
    rng = np.random.default_rng(seed)
    t = np.arange(seconds)
    y = low + (high - low) * (1 - np.cos(2 * np.pi * t / seconds)) / 2
    y = y + rng.normal(0, noise * (high - low), seconds)
    for _ in range(bursts):
        length = int(rng.integers(30, 301))
        start = int(rng.integers(0, max(1, seconds - length)))
        y[start : start + length] += rng.uniform(0.2, 0.5) * high
    return pd.Series(np.clip(y, 0, None), index=pd.RangeIndex(seconds, name="t"), name="rate")
