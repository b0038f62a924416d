"""Fit latency and recovery models from profile results, with held-out (cross-validated) errors.

Input: one or more profile results (``results.csv`` / ``.parquet`` written by ``khaos profile``, one row
per injected failure; docs/profiling.md lists the columns), read and cleaned by results.py. Output: a
typed :class:`~.store.Model`.

Two model families are fitted and cross-validated side by side (docs/models.md has the reasons):

* ``baseline``: the original Khaos prototype's two OLS regressions, ``latency ~ rate + CI`` and
  ``recovery ~ rate + CI`` (scikit-learn ``LinearRegression``), without its hard-coded 55 s filter.
* ``physics``: non-negative linear models (``LinearRegression(positive=True)``) on physical features
  (features.py). A few feature sets per target are tried; the one with the lowest CV MAPE is kept.

Where the profile measured each cluster's capacity (columns ``capacity``, ``utilization_target``,
``restored_checkpoint_age_s``, ``checkpoint_size_bytes``; profile/capacity.py), the grey-box sets
(features.py ``GREYBOX_SETS``, each also with the learned residual of greybox.py) join the recovery
candidates and the utilization sets the latency candidates; the extrapolation check fits on low
utilization and predicts high utilization. A results file without those columns gives the same model
as before.

Cross-validation holds out whole ``(ci_s, rate)`` units (``(ci_s, utilization level)`` where the profile
ran levels): all failures of one profiled deployment, so no held-out failure has a sibling from the
same deployment in the training fold (cv.py scores the candidates).
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import KhaosError
from ..jsonio import jsonable
from . import conformal, overhead
from .cv import choose, cv_folds, errors, extrapolation, heldout_predictions
from .features import (
    BASELINE_FEATURES,
    CAPACITY_FACTORS,
    GREYBOX_SETS,
    LATENCY_CAPACITY_SETS,
    LATENCY_SETS,
    RECOVERY_SETS,
    columns,
    expand,
    measured,
)
from .greybox import RESIDUAL_FEATURES, RESIDUAL_SUFFIX, fit_residual, has_capacity
from .results import data_hash, load_results, usable
from .store import SCHEMA, SCHEMA_VERSION, CheckpointCost, Constants, Model, Spec, parse

__all__ = ["cv_folds", "fit", "fit_residual", "load_results", "usable"]  # what callers use of this module


# ---------------------------------------------------------------------------------------- fitting


def _linreg(X: np.ndarray, y: np.ndarray, positive: bool) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LinearRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient folds are expected with tiny data
        m = LinearRegression(positive=positive).fit(X, y)
    return np.asarray(m.coef_, dtype=float), float(m.intercept_)


def _nnls_sse(X: np.ndarray, y: np.ndarray) -> float:
    """Training SSE of a non-negative fit with a free intercept (what LinearRegression(positive=True)
    solves: NNLS on centred data), without scikit-learn's per-call overhead: used to rank capacities."""
    from scipy.optimize import nnls

    xm, ym = X.mean(axis=0), y.mean()
    coef, _ = nnls(X - xm, y - ym)
    return float(np.sum((X @ coef + (ym - xm @ coef) - y) ** 2))


def _constants(train: pd.DataFrame, capacity: float | None) -> Constants:
    since = train["since_s"]
    if "age_s" in train:  # the restored checkpoint's age, as the measured L0 uses (features.measured)
        since = train["age_s"].where(np.isfinite(train["age_s"]), since)
    margin = train["ci"] - since
    margin = float(np.nanmedian(margin)) if np.isfinite(margin).any() else 0.0
    down: dict[str, float] = {}
    rs = train["running_s"]
    overall = float(np.nanmean(rs)) if np.isfinite(rs).any() else 0.0
    for m, g in train.groupby("mode"):
        v = g["running_s"]
        down[str(m)] = float(np.nanmean(v)) if np.isfinite(v).any() else overall
    down["*"] = overall
    return Constants(margin_s=max(margin, 0.0), downtime_s=down, capacity=capacity)


def _ckpt_model(rows: pd.DataFrame, col: str = "ckpt_s") -> CheckpointCost:
    ok = np.isfinite(rows[col])
    if ok.sum() >= 2:
        coef, icpt = _linreg(rows.loc[ok, ["rate", "ci"]].to_numpy(), rows.loc[ok, col].to_numpy(), True)
        return CheckpointCost(intercept=max(icpt, 0.0), rate=float(coef[0]), ci=float(coef[1]))
    mean = float(rows.loc[ok, col].mean()) if ok.any() else 0.0
    return CheckpointCost(intercept=mean, rate=0.0, ci=0.0)


def _fit_spec(
    train: pd.DataFrame,
    target: str,
    name: str,
    feature_set: list[str],
    positive: bool,
    capacity: float | None = None,
    measured_cap: bool = False,
) -> Spec:
    """Fit one model on ``train`` (target column ``target``); returns a self-contained spec. With
    ``measured_cap`` (and no ``capacity``) the capacity is the training rows' median measured one."""
    y = train[target].to_numpy(dtype=float)
    modes = sorted(set(train["mode"]))
    feats = expand(feature_set, modes)
    measured_cap = measured_cap and capacity is None  # a given capacity wins
    if measured_cap:
        capacity = float(np.median(train["cap"]))
    c = _constants(train, capacity)
    c.capacity_measured = measured_cap
    if any(f.startswith("ckpt/ci") for f in feats):
        c.ckpt_model = _ckpt_model(train)
    if "state_gb" in feats:
        c.state_model = _ckpt_model(train, "state_gb")
    caps = [capacity]  # the given or measured one (None: none); a drain set without one searches
    if any("cap" in f for f in feats):
        top = float(train["rate"].max())
        caps = [capacity] if capacity else [top * k for k in CAPACITY_FACTORS]
    ci, rate, mode = train["ci"].to_numpy(float), train["rate"].to_numpy(float), train["mode"].to_numpy(object)
    meas = measured(train)
    cap = caps[0]
    if len(caps) > 1:

        def sse_at(k: float) -> float:
            c.capacity = k
            X = columns(feats, ci, rate, mode, c, observed=meas)
            return _nnls_sse(X, y) if np.isfinite(X).all() else math.inf

        sses = [sse_at(k) for k in caps]
        j = int(np.argmin(sses))  # first minimum: on a flat curve the smaller, more cautious capacity
        cap = caps[j]
        if 0 < j < len(caps) - 1:  # refine between the grid neighbours (log scale)
            from scipy.optimize import minimize_scalar

            r = minimize_scalar(
                lambda lk: sse_at(math.exp(lk)),
                method="bounded",
                bounds=(math.log(caps[j - 1]), math.log(caps[j + 1])),
                options={"xatol": 1e-3},
            )
            if r.success and r.fun <= sses[j]:
                cap = float(math.exp(r.x))
        c.capacity_at_grid_edge = j == len(caps) - 1
    c.capacity = cap
    X = columns(feats, ci, rate, mode, c, observed=meas)
    if not np.isfinite(X).all():
        raise KhaosError(f"no usable capacity for the '{name}' model: a profiled rate exceeds the capacity")
    coef, icpt = _linreg(X, y, positive)
    return Spec(
        name=name, features=feats, coef=[float(x) for x in coef], intercept=icpt, positive=positive, constants=c
    )


def _candidates(target: str, rows: pd.DataFrame) -> tuple[dict[str, tuple[list[str], bool]], int]:
    """Candidate name -> (feature set, with residual) the rows can fit, and how many were offered."""
    sets = {n: (fs, False) for n, fs in (RECOVERY_SETS if target == "recovery" else LATENCY_SETS).items()}
    if has_capacity(rows) and target == "recovery":
        for n, fs in GREYBOX_SETS.items():
            sets[n], sets[n + RESIDUAL_SUFFIX] = (fs, False), (fs, True)
    elif has_capacity(rows):
        sets.update({n: (fs, False) for n, fs in LATENCY_CAPACITY_SETS.items()})

    def fits(fs: list[str]) -> bool:
        if any(f.startswith("ckpt/ci") for f in fs) and not np.isfinite(rows["ckpt_s"]).any():
            return False
        return "state_gb" not in fs or ("state_gb" in rows and bool(np.isfinite(rows["state_gb"]).all()))

    return {n: v for n, v in sets.items() if fits(v[0])}, len(sets)


def _fitter(col: str, name: str, fs: list[str], residual: bool, capacity: float | None, measured_cap: bool):
    """train rows -> the fitted spec of one candidate (with its residual if asked)."""

    def f(tr: pd.DataFrame) -> Spec:
        spec = _fit_spec(tr, col, name.removesuffix(RESIDUAL_SUFFIX), fs, True, capacity, measured_cap)
        return fit_residual(spec, tr, col) if residual else spec  # fit_residual adds the suffix back

    return f


def _base_fitter(tr: pd.DataFrame, col: str) -> Spec:
    return _fit_spec(tr, col, "baseline", BASELINE_FEATURES, positive=False)


# ------------------------------------------------------------------------------------------- fit


def _fit_target(target: str, rows_t: pd.DataFrame, col: str, capacity: float | None) -> tuple:
    """One target's fit: every candidate feature set held out by the same folds, the best chosen; returns
    (baseline and physics specs, CV errors, held-out predictions, the choice, candidates offered)."""
    folds, protocol = cv_folds(rows_t)
    y = rows_t[col].to_numpy()
    base_pred = heldout_predictions(rows_t, folds, lambda tr: _base_fitter(tr, col))
    sets, offered = _candidates(target, rows_t)
    measured_cap = has_capacity(rows_t)
    modes = set(rows_t["mode"])
    n_res = len(expand(RESIDUAL_FEATURES, modes))
    cands, preds, fitters = {}, {}, {}
    for name, (fs, residual) in sets.items():
        fitters[name] = _fitter(col, name, fs, residual, capacity, measured_cap)
        preds[name] = heldout_predictions(rows_t, folds, fitters[name])
        cands[name] = {**errors(y, preds[name]), "n_features": len(expand(fs, modes)) + residual * n_res}
    pick = choose(cands)
    specs = {"baseline": _base_fitter(rows_t, col).model_dump(), "physics": fitters[pick](rows_t).model_dump()}
    cv = {
        "protocol": protocol,
        "folds": len(folds),
        "baseline": errors(y, base_pred),
        "physics": {**errors(y, preds[pick]), "feature_set": pick},
        "candidates": cands,
        "interval": conformal.interval(y, preds[pick], folds),
    }
    heldout = [
        {
            "ci_s": float(r.ci),
            "rate": float(r.rate),
            "mode": r.mode,
            "observed": float(o),
            "baseline": float(b),
            "physics": float(p),
        }
        for r, o, b, p in zip(rows_t.itertuples(), y, base_pred, preds[pick])
    ]
    return specs, cv, heldout, (rows_t, col, fitters[pick], pick), offered


def fit(results: pd.DataFrame, capacity: float | None = None, sources: Sequence[str] = ()) -> Model:
    """Fit baseline and physics models for latency and recovery (see docs/models.md)."""
    rec, lat, rows = usable(results)
    used, clean = rows.pop("_used"), rows.pop("_clean")
    if capacity is not None and capacity <= float(rec["rate"].max()):
        raise KhaosError(f"--capacity {capacity:g} is not above the highest profiled rate {rec['rate'].max():g}")
    # a capacity measured for only some rows is not used: the fit searches one, as for older profiles
    rec, lat = (t if has_capacity(t) else t.drop(columns=["cap", "u"], errors="ignore") for t in (rec, lat))
    rec, lat, ov = overhead.applied(results, rec, lat) if capacity is None else (rec, lat, None)

    out: dict = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data_hash": data_hash(clean, used),
        "sources": [str(s) for s in sources],
        "rows": rows,
        "overhead": ov,
    }
    allrows = clean[used]
    out["ranges"] = {
        "ci_s": [float(allrows["ci"].min()), float(allrows["ci"].max())],
        "rate": [float(allrows["rate"].min()), float(allrows["rate"].max())],
        "modes": sorted(set(rec["mode"])),
    }
    if "cap" in rec or "cap" in lat:
        caps = pd.concat([t[["cap", "u"]] for t in (rec, lat) if "cap" in t])
        out["ranges"]["utilization"] = [float(caps["u"].min()), float(caps["u"].max())]
        out["ranges"]["capacity"] = [float(caps["cap"].min()), float(caps["cap"].max())]
    ck = clean.loc[used, "ckpt_s"]
    ck = ck[np.isfinite(ck)]
    out["checkpoint_duration_s"] = (
        {"mean": float(ck.mean()), "min": float(ck.min()), "max": float(ck.max()), "n": len(ck)} if len(ck) else None
    )

    cv: dict = {}
    heldout: dict = {}
    offered: dict[str, int] = {}
    chosen: dict = {}
    for target, rows_t, col in (("recovery", rec, "recovery_s"), ("latency", lat, "latency_ms")):
        out[target], cv[target], heldout[target], chosen[target], offered[target] = _fit_target(
            target, rows_t, col, capacity
        )
    cv["heldout"] = heldout
    cv["note"] = (
        "physics feature sets were chosen by this CV error among "
        f"{offered['recovery']} (recovery) / {offered['latency']} (latency) candidates, "
        "so its number is slightly optimistic"
    )
    cv["extrapolation"] = extrapolation(chosen, _base_fitter)
    out["cv"] = cv
    return parse(jsonable(out), "fitted model")
