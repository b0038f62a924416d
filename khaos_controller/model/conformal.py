"""Prediction intervals from held-out errors: split conformal on the cross-validated predictions.

SLOs are about the bad case, so a recovery prediction comes with a band that should hold the measured
recovery in ``LEVEL`` of failures. The band is multiplicative: ``[pred x ratio_lo, pred x ratio_hi]``, the
ratios being conformal quantiles of observed / held-out prediction over every profiled failure (recovery
spans seconds to many minutes, and its error grows with it). Its coverage is itself measured held out:
for each CV fold, the ratios of the OTHER folds set the band and the fold's failures are checked against
it, so the printed coverage is what a new unit could expect, not the in-sample 90 %."""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.9


def ratios(observed, predicted) -> np.ndarray:
    """observed / predicted for the pairs where both are finite and the prediction is > 0."""
    o, p = np.asarray(observed, float), np.asarray(predicted, float)
    ok = np.isfinite(o) & np.isfinite(p) & (p > 0)
    return o[ok] / p[ok]


def bounds(r: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """(ratio_lo, ratio_hi): the conformal quantiles of ratios ``r`` (finite-sample corrected: ranks
    ceil((n+1)(1-a/2)) and floor((n+1) a/2)); None with too few ratios for the level."""
    n, a = len(r), 1 - level
    # rounded first: 20 x 0.95 is 19.000000000000004 in floating point
    hi_rank, lo_rank = math.ceil(round((n + 1) * (1 - a / 2), 9)), math.floor(round((n + 1) * a / 2, 9))
    if n == 0 or hi_rank > n or lo_rank < 1:
        return None
    s = np.sort(r)
    return float(s[lo_rank - 1]), float(s[hi_rank - 1])


def coverage(observed, predicted, folds, level: float = LEVEL) -> float | None:
    """Share of failures inside the band set by the other folds' ratios (None: no fold had enough)."""
    o, p = np.asarray(observed, float), np.asarray(predicted, float)
    hits = total = 0
    for _, test in folds:
        rest = np.setdiff1d(np.arange(len(o)), test)
        b = bounds(ratios(o[rest], p[rest]), level)
        if b is None:
            continue
        ok = np.isfinite(o[test]) & np.isfinite(p[test]) & (p[test] > 0)
        inside = (o[test] >= p[test] * b[0]) & (o[test] <= p[test] * b[1])
        hits += int(np.sum(inside & ok))
        total += int(np.sum(ok))
    return hits / total if total else None


def interval(observed, predicted, folds, level: float = LEVEL) -> dict | None:
    """The band of the chosen model and its held-out coverage, as the model file keeps it; None when the
    profile has too few failures for the level (fewer than 2 / (1 - level) - 1)."""
    b = bounds(ratios(observed, predicted), level)
    if b is None:
        return None
    return {"level": level, "ratio_lo": b[0], "ratio_hi": b[1], "coverage": coverage(observed, predicted, folds, level)}
