"""Use a fitted model: predicted p99 latency and recovery time at a rate, an interval and a failure mode."""

from __future__ import annotations

import numpy as np

from ..errors import KhaosError
from .greybox import correction, raw_predict
from .overhead import duty
from .store import REFERENCE_MODE, Model, Spec


def spec_predict(spec: Spec, ci, rate, mode, capacity=None) -> np.ndarray:
    """Predictions of one fitted spec for arrays of (ci, rate, mode); rate, mode and ``capacity`` (events/s;
    default: the model's) may be scalars."""
    ci = np.atleast_1d(np.asarray(ci, dtype=float))
    n = len(ci)
    rate = np.broadcast_to(np.asarray(rate, dtype=float), (n,)) if np.ndim(rate) == 0 else np.asarray(rate, float)
    mode = np.broadcast_to(np.asarray(mode, dtype=object), (n,)) if np.ndim(mode) == 0 else np.asarray(mode, object)
    if capacity is not None:
        capacity = np.broadcast_to(np.asarray(capacity, dtype=float), (n,))
    out = raw_predict(spec, ci, rate, mode, capacity=capacity)
    if spec.residual is not None:
        with np.errstate(invalid="ignore"):
            out = np.where(np.isfinite(out), out * correction(spec, ci, rate, mode, capacity=capacity), out)
    return out


def predict(
    model: Model,
    rate: float,
    ci,
    mode: str = REFERENCE_MODE,
    which: str = "physics",
    capacity: float | None = None,
    measured_at_ci: float | None = None,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Predicted (p99 latency in ms, recovery time in s) at ``rate`` events/s and a ``ci`` s interval.

    ``which`` is ``physics`` (the chosen model) or ``baseline``. Recovery is for a failure just before
    a checkpoint (the profiled worst case); ``inf`` means the job is predicted never to catch up
    (rate at or above the capacity). ``capacity`` is the job's capacity on the cluster it runs on, events/s
    (estimated online like the profiler does, profile/capacity.py); default: the profiled clusters' median.
    ``measured_at_ci``: the interval in force when ``capacity`` was measured (with a checkpoint overhead
    model, see :func:`capacity_at`). Arrays of ``ci`` give arrays back.
    """
    if which not in ("physics", "baseline"):
        raise KhaosError(f"unknown model family {which!r} (physics or baseline)")
    mode = str(mode).strip().lower()
    missing = model.unprofiled(mode)
    if which == "physics" and missing:
        raise KhaosError(f"failure mode {missing}")
    scalar = np.ndim(ci) == 0
    if not np.all(np.asarray(ci, float) > 0):
        raise KhaosError("checkpoint interval must be > 0 s")
    if not (np.isfinite(rate) and rate > 0):
        raise KhaosError(f"rate must be > 0 events/s, got {rate}")
    if capacity is not None and not (np.isfinite(capacity) and capacity > 0):
        raise KhaosError(f"capacity must be > 0 events/s, got {capacity}")
    if which == "physics":
        capacity = capacity_at(model, ci, capacity, measured_at_ci)
    lat = spec_predict(getattr(model.latency, which), ci, rate, mode, capacity)
    rec = spec_predict(getattr(model.recovery, which), ci, rate, mode, capacity)
    if scalar:
        return float(lat[0]), float(rec[0])
    return lat, rec


def capacity_at(model: Model, ci, capacity: float | None = None, measured_at_ci: float | None = None):
    """The capacity the catch-up law uses at interval(s) ``ci``: with the model's checkpoint overhead
    (``Model.overhead``) the reference capacity (``capacity``, turned into the reference when it was measured
    at ``measured_at_ci``; default the profile's) times 1 - k min(1, C/ci), one per interval; without one
    ``capacity`` as given (None: the spec's own)."""
    ov = model.overhead
    if ov is None:
        return capacity
    ref = ov.capacity_ref if capacity is None else float(capacity)
    if capacity is not None and measured_at_ci is not None:
        ref /= 1 - ov.k * float(duty(measured_at_ci, ov.checkpoint_s))
    return ref * (1 - ov.k * duty(np.atleast_1d(np.asarray(ci, float)), ov.checkpoint_s))


def reference_capacity(model: Model) -> float | None:
    """The capacity a prediction assumes when given none: the profile's reference capacity with a checkpoint
    overhead model, else the profiled clusters' median measured capacity (or the fitted one of a drain
    model); None when the model has no capacity."""
    if model.overhead is not None:
        return float(model.overhead.capacity_ref)
    for pair in (model.recovery, model.latency):
        if pair.physics.constants.capacity is not None:
            return float(pair.physics.constants.capacity)
    return None


def extrapolation_warnings(
    model: Model, rate: float, ci: float | None = None, capacity: float | None = None
) -> list[str]:
    """Plain-words notes when a prediction leaves the profiled ranges (rate, interval, utilization)."""
    out = []
    urange = model.ranges.utilization
    cap = capacity if capacity is not None else reference_capacity(model)
    if urange is not None and cap:
        u, (lo, hi) = rate / cap, urange
        if not (lo - 1e-9 <= u <= hi + 1e-9):
            out.append(
                f"utilization {100 * u:.0f} % ({rate:g} of {cap:.0f} events/s) is outside the profiled "
                f"{100 * lo:.0f}-{100 * hi:.0f} %: the model extrapolates"
            )
    lo, hi = model.ranges.rate
    if not (lo <= rate <= hi):
        out.append(f"rate {rate:g} events/s is outside the profiled {lo:g}-{hi:g} events/s")
    if ci is not None:
        lo, hi = model.ranges.ci_s
        if not (lo <= ci <= hi):
            out.append(f"interval {ci:g} s is outside the profiled {lo:g}-{hi:g} s")
    if cap and rate >= cap:
        out.append(
            f"rate {rate:g} events/s is at or above the estimated capacity {cap:.0f} events/s: "
            "the job is predicted never to catch up"
        )
    return out
