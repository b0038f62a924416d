"""Turn a per-second job series plus a failure time into failure measurements.

Input: the sampler's series, one row per REST sample (~1 s apart, gaps and jitter allowed), columns
``t`` (epoch s, required) and any of ``all_running``, ``restarts``, ``rate_in``, ``throughput``,
``lag_ms``, ``backlog``, ``latency_p99_ms``, ``checkpoints``, ``sink_second`` (the epoch second the
sink's per-second throughput / latency_p99_ms describe), ``running_since`` (Flink's RUNNING time of the
current attempts) (missing columns / NaN cells are fine).

Definitions (docs/recovery.md has the timeline and the reasons for each default)::

    detect_s   = first sample after t_fail with all_running False or restarts increased  (or t_detect)
    running_s  = Flink's running_since of the first attempt RUNNING after t_fail, where the series has it;
                 else the first sample with all_running True after it was seen False (or, if the
                 restart was too quick to see it False, at/after detection)               (or t_running)
    recovery_s = START of the first run of samples, beginning at/after t_running, in which every
                 used signal (lag_ms, throughput, latency_p99_ms; whichever exist) stays inside its
                 steady-state band (after a 3-sample rolling median; the first sample must be in
                 band without it) for consecutive_s seconds, tasks running, no hole > max_gap_s;
                 NaN and recovered=False if that run does not start within timeout_s or the
                 series ends first. Where the series has sink_second, the run is searched over
                 the seconds the sink's values describe (one row per second, at its start), so
                 recovery_s is the start of the first normal second, not a sample time.

Rule "lag" (any Kafka-fed job, standard metrics; RecoveryParams.rule): the run's signals are the backlog
(the KafkaSource's pendingRecords; else lag_ms) inside the pre-failure lag band, [0, max(q95 of the baseline
x (1 + tolerance), 1 s of input at the pre-failure rate)] (:func:`lag_band`), and the last vertex's
records-in rate (throughput) inside its band below: the records already fetched are worked off too.

Bands are learned per signal from the baseline window [t_fail - baseline_s, t_fail):
``center +- max(k_sigma * sigma, floor)``, widened to cover the baseline's [q01, q99], with
center/sigma = median and 1.4826*MAD (robust; ``robust=False`` uses mean/std). lag_ms and latency_p99_ms
are one-sided (lo = 0: being faster than usual is no anomaly); throughput is two-sided, so the
catch-up phase, where the sink runs ABOVE the input rate, counts as not yet recovered.

Physics (why recovery includes catch-up): the job restarts from the last completed checkpoint, so at
restart the source is behind by ``L0 = time since that checkpoint + downtime`` seconds of input
(``backlog = L0 * rate`` records). It drains at ``capacity - rate`` records/s, i.e. catch-up takes
``L0 * rate / (capacity - rate)`` s. :func:`expected_peak_lag_s` and :func:`expected_catchup_s` give
these numbers; ``peak_lag_ms`` and ``caught_up_records`` are their measured counterparts.

The samples' cleaning, the sink's per-second timeline and the search for the first run in band are in
timeline.py. :func:`~.remeasure.remeasure` measures a stored profile again from its ``series/`` (after a
change of this module).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..errors import KhaosError
from .timeline import normal_run_start, per_second, prepare, sample_period

_BAND_SIGNALS = ("lag_ms", "throughput", "latency_p99_ms", "rate_in")
_ONE_SIDED = {"lag_ms", "latency_p99_ms"}
_NAN = float("nan")


@dataclass
class RecoveryParams:
    """Knobs of the measurement; docs/recovery.md explains each default."""

    baseline_s: float = 120.0  # steady-state window before the failure that defines "normal"
    k_sigma: float = 3.0  # band half-width in (robust) standard deviations
    consecutive_s: float = 10.0  # K: seconds all signals must stay in band to call it recovered
    timeout_s: float = 600.0  # a run starting later than t_fail + timeout_s is "not recovered"
    lag_floor_ms: float = 500.0  # min half-width for lag_ms (half a sampling period of lag)
    latency_floor_ms: float = 200.0  # min half-width for latency_p99_ms (GC / checkpoint-alignment jitter)
    throughput_floor_frac: float = 0.10  # min half-width for throughput / rate_in, fraction of the center
    throughput_floor_abs: float = 1.0  # ... and never below 1 record/s (idle or tiny jobs)
    robust: bool = True  # median / 1.4826*MAD instead of mean / std
    cover_quantile: float = 0.99  # band always covers the baseline's [1-q, q] quantiles (0 = off)
    min_baseline_samples: int = 10  # fewer baseline samples -> KhaosError
    max_gap_s: float = 5.0  # a longer hole between usable samples breaks an in-band run
    smooth_samples: int = 3  # centered rolling median before the band test (1 = off)
    signals: tuple[str, ...] = ("lag_ms", "throughput", "latency_p99_ms")  # judged for recovery, if present
    # rule "lag" (any Kafka-fed job, standard source metrics): back inside the pre-failure lag band,
    # backlog <= max(q-quantile of the baseline x (1 + tolerance), floor_s of input at the pre-failure rate)
    rule: str = "bands"  # "bands" (the per-signal bands above) or "lag"
    lag_quantile: float = 0.95  # the baseline's high-water mark, ignoring its 5 % highest samples
    lag_tolerance: float = 0.5  # ... plus half of it again
    lag_floor_s: float = 1.0  # never below one second of input at the pre-failure rate
    latency_limit_ms: float | None = None  # L_max: pre_late_share is the share of steady seconds above it
    lag_floor_records: float = 100.0  # ... nor below 100 records (tiny rates)
    # ... and the records-in rate of the last vertex back inside its band: the source's backlog reaches the
    # band while tens of thousands of records still sit in network buffers (measured: 6-7 s of drain)
    lag_throughput: bool = True


@dataclass
class FailureMeasure:
    """What one failure cost: detection, restart, recovery and the catch-up."""

    t_fail: float
    detect_s: float  # NaN: no failure visible in the series (and no t_detect given)
    running_s: float  # NaN: never running again (or not knowable)
    recovery_s: float  # NaN unless recovered
    recovered: bool
    catchup_s: float  # recovery_s - running_s
    pre_rate: float  # mean rate_in over the baseline (throughput if rate_in is missing)
    pre_latency_p99_ms: float
    pre_latency_mean_ms: float  # mean of the steady window's per-second p99s (the latency model's statistic)
    pre_late_share: float  # share of the steady window's seconds whose p99 is above latency_limit_ms (NaN: no limit)
    peak_lag_ms: float  # max lag_ms from t_fail to the recovery point (or end of window)
    peak_backlog: float
    caught_up_records: float  # ~ integral of (throughput - pre_rate) from running to recovered
    restarts_delta: float
    signals: tuple[str, ...]  # signals that decided recovery
    samples: int  # samples examined after t_fail
    baseline_samples: int
    baseline_s_used: float
    band: dict[str, tuple[float, float]] = field(default_factory=dict)
    rule: str = "bands"

    def as_dict(self) -> dict:
        """A flat dict (one results.csv row)."""
        d = asdict(self)
        d["signals"] = ",".join(self.signals)
        for sig, (lo, hi) in d.pop("band").items():
            d[f"band_{sig}_lo"], d[f"band_{sig}_hi"] = lo, hi
        return d


# ---------------------------------------------------------------------------------------------- helpers


def steady_window(t_first: float, p: RecoveryParams) -> tuple[float, float]:
    """The baseline window of every failure of one deployment: the ``baseline_s`` before its FIRST failure.
    A later failure's own pre-failure window holds the previous catch-up's tail (latency seconds above
    normal after the source lag is gone), which widens its bands and ends its recovery early."""
    return (t_first - p.baseline_s, t_first)


def steady_latency(base: pd.DataFrame, limit_ms: float | None) -> tuple[float, float]:
    """(mean per-second p99, share of seconds with p99 > limit_ms) of a steady window; one value per second
    (the sampler looks twice a second at the last complete second, ``sink_second`` where the job says it)."""
    lat = base.dropna(subset=["latency_p99_ms"])
    if "sink_second" in lat and lat["sink_second"].notna().any():
        lat = lat.dropna(subset=["sink_second"]).drop_duplicates("sink_second", keep="last")
    values = lat["latency_p99_ms"].to_numpy(float)
    if not len(values):
        return _NAN, _NAN
    late = float(np.mean(values > limit_ms)) if limit_ms else _NAN
    return float(np.mean(values)), late


def expected_peak_lag_s(ci_s: float, t_since_checkpoint_s: float | None, downtime_s: float) -> float:
    """Lag (s of input) at restart: the job rewinds to its last completed checkpoint.

    ``t_since_checkpoint_s`` is the time from that checkpoint to the failure; ``None`` means the
    worst case Khaos injects (just before the next checkpoint), i.e. a full ``ci_s``. ``downtime_s``
    is failure -> tasks running again (``running_s``). Backlog in records = this value * rate.
    """
    since = ci_s if t_since_checkpoint_s is None else t_since_checkpoint_s
    if since < 0 or downtime_s < 0 or ci_s < 0:
        raise KhaosError("expected_peak_lag_s needs non-negative times")
    return float(since + downtime_s)


def expected_catchup_s(peak_lag_s: float, rate: float, capacity: float) -> float:
    """Seconds to drain ``peak_lag_s * rate`` records at ``capacity - rate`` records/s (inf if none spare):
    the catch-up law of model/features.py."""
    from ..model.features import catchup_s

    return float(catchup_s(peak_lag_s, rate, capacity))


def _baseline(
    df: pd.DataFrame, t_fail: float, p: RecoveryParams, window: tuple[float, float] | None
) -> tuple[pd.DataFrame, float]:
    a, b = window if window is not None else (t_fail - p.baseline_s, t_fail)
    rows = df[(df["t"] >= a) & (df["t"] < b)]
    if len(rows) < p.min_baseline_samples:
        raise KhaosError(
            f"only {len(rows)} samples in the baseline window [{a:.1f}, {b:.1f}) before the failure at "
            f"{t_fail:.1f}; need >= {p.min_baseline_samples}: sample longer before failing the job"
        )
    return rows, float(b - rows["t"].iloc[0])


def _floor(sig: str, center: float, p: RecoveryParams) -> float:
    if sig == "lag_ms":
        return p.lag_floor_ms
    if sig == "latency_p99_ms":
        return p.latency_floor_ms
    return max(p.throughput_floor_frac * abs(center), p.throughput_floor_abs)


def _bands(rows: pd.DataFrame, p: RecoveryParams) -> dict[str, tuple[float, float]]:
    out = {}
    for sig in _BAND_SIGNALS:
        x = rows[sig].dropna().to_numpy(dtype=float)
        if len(x) < p.min_baseline_samples:
            continue  # signal not available (or too sparse) before the failure: skipped
        if p.robust:
            center = float(np.median(x))
            sigma = 1.4826 * float(np.median(np.abs(x - center)))
        else:
            center, sigma = float(np.mean(x)), float(np.std(x, ddof=1))
        half = max(p.k_sigma * sigma, _floor(sig, center, p))
        lo, hi = center - half, center + half
        if p.cover_quantile:
            lo = min(lo, float(np.quantile(x, 1 - p.cover_quantile)))
            hi = max(hi, float(np.quantile(x, p.cover_quantile)))
        out[sig] = (0.0 if sig in _ONE_SIDED else max(0.0, lo), hi)
    return out


def steady_band(
    series: pd.DataFrame,
    t_fail: float,
    params: RecoveryParams | None = None,
    baseline: tuple[float, float] | None = None,
) -> dict[str, tuple[float, float]]:
    """Per available signal (lag_ms, throughput, latency_p99_ms, rate_in) the (lo, hi) band of "normal".

    Learned from the samples in ``baseline`` = [start, end) (default [t_fail - baseline_s, t_fail)).
    Raises KhaosError if the window holds fewer than ``min_baseline_samples`` samples; a signal with
    fewer non-NaN values than that is left out of the result.
    """
    p = params or RecoveryParams()
    rows, _ = _baseline(prepare(series), t_fail, p, baseline)
    return _bands(rows, p)


def _first(t: np.ndarray, mask: np.ndarray) -> float:
    idx = np.flatnonzero(mask)
    return float(t[idx[0]]) if len(idx) else _NAN


def lag_band(base: pd.DataFrame, pre_rate: float, p: RecoveryParams) -> tuple[str, float]:
    """(signal, upper edge) of the pre-failure lag band: ``backlog`` (records; the KafkaSource's standard
    pendingRecords) where the baseline has it, else ``lag_ms``; the edge is the baseline's ``lag_quantile``
    times (1 + ``lag_tolerance``), at least ``lag_floor_s`` of input (at ``pre_rate``; in ms for lag_ms)."""
    for sig in ("backlog", "lag_ms"):
        x = base[sig].dropna().to_numpy(dtype=float)
        # one value > 0 throughout: a frozen gauge (seen: pendingRecords stuck at its first value)
        frozen = sig == "backlog" and len(x) and x.min() == x.max() > 0
        if len(x) >= p.min_baseline_samples and not frozen:
            break
    else:
        raise KhaosError(
            "cannot judge recovery by the lag band: the series has neither backlog (pendingRecords) nor lag_ms "
            f"in {p.min_baseline_samples}+ samples before the failure"
        )
    if sig == "backlog":
        rate = pre_rate if math.isfinite(pre_rate) and pre_rate > 0 else 0.0
        floor = max(p.lag_floor_s * rate, p.lag_floor_records)
    else:
        floor = p.lag_floor_s * 1000.0
    return sig, max(float(np.quantile(x, p.lag_quantile)) * (1.0 + p.lag_tolerance), floor)


# ---------------------------------------------------------------------------------------------- measure


def _signals(base: pd.DataFrame, band: dict, pre_rate: float, p: RecoveryParams, t_fail: float) -> list[str]:
    """The signals that judge the recovery: the lag band's one signal (and throughput if asked), or every
    banded signal of p.signals (one of lag_ms and throughput among them); the lag rule adds its band."""
    if p.rule == "lag":  # back inside the pre-failure lag band: one signal decides
        sig, hi = lag_band(base, pre_rate, p)
        band[sig] = (0.0, hi)
        return [sig] + (["throughput"] if p.lag_throughput and "throughput" in band else [])
    if p.rule != "bands":
        raise KhaosError(f"unknown recovery rule {p.rule!r} (bands or lag)")
    used = [s for s in p.signals if s in band]
    if not {"lag_ms", "throughput"} & set(used):
        raise KhaosError(
            f"cannot judge recovery of the failure at {t_fail:.1f}: the series has neither "
            "lag_ms nor throughput before it"
        )
    return used


def _restart_times(after: pd.DataFrame, t_fail: float, r0: float, t_detect, t_running) -> tuple[float, float, bool]:
    """(detected, running again, whether the series has all_running) of the failure at ``t_fail``; given
    times (Flink's exception history) win, then Flink's own RUNNING timestamp of the first attempt after
    the failure (exact, not rounded up to a sample), then the samples."""
    t = after["t"].to_numpy()
    ar = after["all_running"].to_numpy()
    t_det = _first(t, (ar == 0.0) | (after["restarts"].to_numpy() > r0)) if t_detect is None else float(t_detect)
    has_ar = bool(np.isfinite(ar).any())
    exact = after.loc[(after["all_running"] == 1.0) & (after["running_since"] > t_fail), "running_since"]
    if t_running is not None:
        return t_det, float(t_running), has_ar
    if len(exact):
        return t_det, float(exact.iloc[0]), has_ar
    if not math.isnan(t_det) and has_ar:  # running again after having been seen not running
        t_down = _first(t, ar == 0.0)
        return t_det, _first(t, (t >= (t_det if math.isnan(t_down) else max(t_det, t_down))) & (ar == 1.0)), has_ar
    return t_det, _NAN, has_ar


def _caught_up(samples: pd.DataFrame | None, seconds: pd.DataFrame, t_run: float, rec_start: float, pre_rate: float):
    """Records processed beyond the arrival rate between running again and recovered: over the sample
    series (``samples``, weighted by the sample gaps), else over whole seconds of sink counts."""
    if samples is not None:
        dt = samples["t"].diff()
        win = (samples["t"] > t_run) & (samples["t"] <= rec_start) & samples["throughput"].notna()
        return float(((samples.loc[win, "throughput"] - pre_rate) * dt[win]).sum())
    win = (seconds["t"] >= t_run) & (seconds["t"] < rec_start) & seconds["throughput"].notna()
    return float((seconds.loc[win, "throughput"] - pre_rate).sum())


def _search_start(t_fail: float, t_det: float, t_run: float, has_ar: bool) -> float:
    """Where the search for the normal run starts: running again; without a visible failure, at the
    failure; without all_running in the series, at detection (signals alone must show normality)."""
    if not math.isnan(t_run):
        return t_run
    if math.isnan(t_det):
        return t_fail
    return _NAN if has_ar else t_det


def _timeline(after: pd.DataFrame, used: list[str], p: RecoveryParams, period: float) -> tuple[pd.DataFrame, float]:
    """The rows the normal run is searched over, and their step. Where the series says which second the
    sink's values describe (the sample job's latencySecond), those seconds, not the sample times (which are
    1-3 s later and jitter with the REST metric cache): a run then starts at the start of its first normal
    second. The lag rule without throughput judges a source gauge alone: sample times."""
    if (p.rule == "bands" or "throughput" in used) and after["sink_second"].notna().any():
        return per_second(after), 1.0
    return after, period


def _judged(
    after: pd.DataFrame, timeline: pd.DataFrame, rec_start: float, rec_end: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples up to the end of the normal run, samples up to its start) of a recovered failure; on the
    per-second timeline, up to the sample that reported the run's last (first) second."""
    seen = after[after["t"] <= rec_end]
    upto = after[after["t"] <= rec_start]
    if timeline is not after:
        first = after.loc[after["sink_second"] >= rec_start, "t"]
        upto = after[after["t"] <= first.iloc[0]] if len(first) else upto
        last = after.loc[after["sink_second"] >= rec_end, "t"]
        seen = after[after["t"] <= last.iloc[0]] if len(last) else seen
    return seen, upto


def measure(
    series: pd.DataFrame,
    t_fail: float,
    params: RecoveryParams | None = None,
    t_detect: float | None = None,
    t_running: float | None = None,
    baseline: tuple[float, float] | None = None,
) -> FailureMeasure:
    """Measure one failure at ``t_fail`` (epoch s). See the module docstring for the definitions.

    ``t_detect`` / ``t_running`` override the series-derived times (e.g. from Flink's exception
    history); ``baseline`` overrides the [start, end) window the bands are learned from.
    Needs lag_ms or throughput in the baseline, else KhaosError.
    """
    p = params or RecoveryParams()
    df = prepare(series)
    base, base_s = _baseline(df, t_fail, p, baseline)
    band = _bands(base, p)
    pre_rate = base["rate_in"].mean() if base["rate_in"].notna().any() else base["throughput"].mean()
    used = _signals(base, band, float(pre_rate), p, t_fail)
    pre_lat = base["latency_p99_ms"].dropna()
    pre_lat_p99 = float(pre_lat.quantile(0.99)) if len(pre_lat) else _NAN
    pre_lat_mean, late = steady_latency(base, p.latency_limit_ms)
    prior = df.loc[df["t"] <= t_fail, "restarts"].dropna()
    r0 = float(prior.iloc[-1]) if len(prior) else _NAN

    after = df[(df["t"] > t_fail) & (df["t"] <= t_fail + p.timeout_s + p.consecutive_s + p.max_gap_s)]
    t_det, t_run, has_ar = _restart_times(after, t_fail, r0, t_detect, t_running)

    search = _search_start(t_fail, t_det, t_run, has_ar)
    timeline, step = _timeline(after, used, p, sample_period(df))
    rec_start = rec_end = _NAN
    if not math.isnan(search):
        rec_start, rec_end = normal_run_start(
            timeline[timeline["t"] >= search], band, used, p, step, t_fail + p.timeout_s
        )
    recovered = not math.isnan(rec_start)
    seen, upto = _judged(after, timeline, rec_start, rec_end) if recovered else (after, after)
    caught = _NAN
    if recovered and not math.isnan(t_run) and not math.isnan(pre_rate):
        caught = _caught_up(df if timeline is after else None, timeline, t_run, rec_start, float(pre_rate))

    def peak(col: str) -> float:
        v = upto[col].dropna()
        return float(v.max()) if len(v) else _NAN

    r_after = seen["restarts"].dropna()
    peak_lag = peak("lag_ms")
    if p.rule == "lag" and used[0] == "backlog" and pre_rate > 0:  # the backlog's age at the arrival rate
        peak_lag = peak("backlog") / float(pre_rate) * 1000.0
    return FailureMeasure(
        t_fail=float(t_fail),
        detect_s=t_det - t_fail,
        running_s=t_run - t_fail,
        recovery_s=rec_start - t_fail,
        recovered=recovered,
        catchup_s=rec_start - t_run if recovered else _NAN,
        pre_rate=float(pre_rate),
        pre_latency_p99_ms=pre_lat_p99,
        pre_latency_mean_ms=pre_lat_mean,
        pre_late_share=late,
        peak_lag_ms=peak_lag,
        peak_backlog=peak("backlog"),
        caught_up_records=caught,
        restarts_delta=float(r_after.max() - r0) if len(r_after) and not math.isnan(r0) else _NAN,
        signals=tuple(used),
        samples=len(seen),
        baseline_samples=len(base),
        baseline_s_used=base_s,
        band=band,
        rule=p.rule,
    )
