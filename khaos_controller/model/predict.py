"""Use a fitted model: predicted p99 latency and recovery time at a rate, an interval and a failure mode."""

from __future__ import annotations

import numpy as np

from ..errors import KhaosError
from .features import columns
from .store import REFERENCE_MODE, Model, Spec


def spec_predict(spec: Spec, ci, rate, mode) -> np.ndarray:
    """Predictions of one fitted spec for arrays of (ci, rate, mode); rate and mode may be scalars."""
    ci = np.atleast_1d(np.asarray(ci, dtype=float))
    n = len(ci)
    rate = np.broadcast_to(np.asarray(rate, dtype=float), (n,)) if np.ndim(rate) == 0 else np.asarray(rate, float)
    mode = np.broadcast_to(np.asarray(mode, dtype=object), (n,)) if np.ndim(mode) == 0 else np.asarray(mode, object)
    X = columns(spec.features, ci, rate, mode, spec.constants)
    out = np.full(n, float(spec.intercept))
    for j, b in enumerate(spec.coef):
        if b != 0.0:  # a zero coefficient on an infinite feature contributes nothing, not NaN
            out = out + b * X[:, j]
    return out


def predict(
    model: Model, rate: float, ci, mode: str = REFERENCE_MODE, which: str = "physics"
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Predicted (p99 latency in ms, recovery time in s) at ``rate`` events/s and a ``ci`` s interval.

    ``which`` is ``physics`` (the chosen model) or ``baseline``. Recovery is for a failure just before
    a checkpoint (the profiled worst case); ``inf`` means the job is predicted never to catch up
    (rate at or above the estimated capacity). Arrays of ``ci`` give arrays back.
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
    lat = spec_predict(getattr(model.latency, which), ci, rate, mode)
    rec = spec_predict(getattr(model.recovery, which), ci, rate, mode)
    if scalar:
        return float(lat[0]), float(rec[0])
    return lat, rec


def extrapolation_warnings(model: Model, rate: float, ci: float | None = None) -> list[str]:
    """Plain-words notes when a prediction leaves the profiled ranges."""
    out = []
    lo, hi = model.ranges.rate
    if not (lo <= rate <= hi):
        out.append(f"rate {rate:g} events/s is outside the profiled {lo:g}-{hi:g} events/s")
    if ci is not None:
        lo, hi = model.ranges.ci_s
        if not (lo <= ci <= hi):
            out.append(f"interval {ci:g} s is outside the profiled {lo:g}-{hi:g} s")
    cap = model.recovery.physics.constants.capacity
    if cap and rate >= cap:
        out.append(
            f"rate {rate:g} events/s is at or above the estimated capacity {cap:.0f} events/s: "
            "the job is predicted never to catch up"
        )
    return out
