"""The grey-box parts of a fit: the learned residual, the candidate sets a measured capacity adds, and the
extrapolation check (fitted on low utilization, predicting high utilization).

The recovery law (docs/models.md):

    recovery = detect + restart            intercept, + mode=host
             + restore(state size)         state_gb
             + catch-up                    L0 * u/(1-u) = backlog / (capacity - rate),
                                           backlog = rate * L0, L0 = age of the restored checkpoint + downtime

with non-negative constants fitted from the profile (fit.py), then a **learned residual**: a ridge
regression of ``log(observed / physical)`` on a few inputs (utilization, interval, failure mode), fitted on
the training rows' *prediction-time* physical estimates (L0 from the interval, not the measured one), so it
learns what the law misses there. It multiplies the physical prediction by ``exp(residual)``. Whether a
candidate gets the residual is decided, like the feature set, by the held-out error.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .features import columns, expand
from .store import Residual, Spec

RESIDUAL_FEATURES = ["u", "ci", "<modes>"]  # what the residual may lean on
RESIDUAL_ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))  # ridge strengths tried (efficient LOO)
RESIDUAL_SUFFIX = "+residual"
EXTRAPOLATION_FIT_MAX = 0.70  # fitted on utilization <= this ...
EXTRAPOLATION_TEST_MIN = 0.80  # ... predicting utilization >= this


def has_capacity(rows: pd.DataFrame) -> bool:
    """Every row has a measured capacity (profile/capacity.py) above its rate."""
    return "cap" in rows and bool(np.isfinite(rows["cap"]).all() and (rows["cap"] > rows["rate"]).all())


def raw_predict(spec: Spec, ci, rate, mode, capacity=None) -> np.ndarray:
    """The linear (physical) part of a spec's prediction, without its residual."""
    X = columns(spec.features, ci, rate, mode, spec.constants, capacity=capacity)
    out = np.full(len(np.atleast_1d(ci)), float(spec.intercept))
    for j, b in enumerate(spec.coef):
        if b != 0.0:  # a zero coefficient on an infinite feature contributes nothing, not NaN
            out = out + b * X[:, j]
    return out


def correction(spec: Spec, ci, rate, mode, capacity=None) -> np.ndarray:
    """The residual's factor exp(intercept + coef . features) (1 without a residual)."""
    r = spec.residual
    if r is None:
        return np.ones(len(np.atleast_1d(ci)))
    X = columns(r.features, ci, rate, mode, spec.constants, capacity=capacity)
    z = r.intercept + X @ np.asarray(r.coef, float) if r.coef else np.full(len(X), r.intercept)
    return np.exp(np.clip(z, -3.0, 3.0))  # a residual may correct, not replace: at most x20


def fit_residual(spec: Spec, train: pd.DataFrame, target: str) -> Spec:
    """``spec`` with a ridge residual of log(observed / physical prediction) on the training rows."""
    from sklearn.linear_model import RidgeCV

    ci, rate, mode = train["ci"].to_numpy(float), train["rate"].to_numpy(float), train["mode"].to_numpy(object)
    cap = train["cap"].to_numpy(float) if "cap" in train else None
    phys = raw_predict(spec, ci, rate, mode, capacity=cap)
    y = train[target].to_numpy(float)
    ok = np.isfinite(phys) & (phys > 0) & np.isfinite(y) & (y > 0)
    feats = expand(RESIDUAL_FEATURES, set(train["mode"]))
    if spec.constants.capacity is None:
        feats = [f for f in feats if f != "u"]
    if ok.sum() < 4:
        return spec
    X = columns(feats, ci, rate, mode, spec.constants, capacity=cap)[ok]
    r = np.log(y[ok] / phys[ok])
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = RidgeCV(alphas=RESIDUAL_ALPHAS).fit((X - mu) / sd, r)
    coef = np.asarray(m.coef_, float) / sd  # back to the raw features
    icpt = float(m.intercept_ - np.sum(coef * mu))
    res = Residual(features=feats, coef=[float(c) for c in coef], intercept=icpt, alpha=float(m.alpha_))
    return spec.model_copy(update={"name": spec.name + RESIDUAL_SUFFIX, "residual": res})


def extrapolation_split(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(train mask, test mask): utilization <= 0.70 vs >= 0.80 (the profiled level where there is one);
    None without a measured utilization or without 3+ training and 2+ test rows."""
    if "u" not in rows or not np.isfinite(rows["u"]).all():
        return None
    level = rows["u_target"].where(np.isfinite(rows["u_target"]), rows["u"]) if "u_target" in rows else rows["u"]
    train = (level <= EXTRAPOLATION_FIT_MAX + 1e-9).to_numpy()
    test = (level >= EXTRAPOLATION_TEST_MIN - 1e-9).to_numpy()
    if train.sum() < 3 or test.sum() < 2:
        return None
    return train, test


def fmt_level(x: float) -> str:
    """0.7 -> '70 %'."""
    return f"{100 * x:.0f} %" if math.isfinite(x) else "n/a"
