"""Held-out scoring of the fitted models: folds that hold out whole ``(ci_s, rate)`` units (or
``(ci_s, utilization level)``), predictions for the held-out rows, their errors, the choice among the
candidate feature sets, and the extrapolation check (fit at low utilization, predict high)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from .greybox import EXTRAPOLATION_FIT_MAX, EXTRAPOLATION_TEST_MIN, RESIDUAL_SUFFIX, extrapolation_split, has_capacity
from .predict import spec_predict
from .store import Spec

_NAN = float("nan")


def cv_folds(rows: pd.DataFrame) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Folds holding out whole (ci, rate) or (ci, utilization level) units; leave-one-row-out below 3 units."""
    by_level = "u_target" in rows and bool(np.isfinite(rows["u_target"]).all())
    second, what = ("u_target", "utilization") if by_level else ("rate", "rate")
    units = rows["ci"].round(6).astype(str) + "@" + rows[second].round(6).astype(str)
    labels = sorted(set(units))
    idx = np.arange(len(rows))
    if len(labels) >= 3:
        if len(labels) <= 30:
            return (
                [(idx[units.to_numpy() != u], idx[units.to_numpy() == u]) for u in labels],
                f"leave-one-(ci,{what})-unit-out, {len(labels)} folds",
            )
        from sklearn.model_selection import GroupKFold

        folds = [(tr, te) for tr, te in GroupKFold(n_splits=10).split(idx, groups=units)]
        return folds, f"10-fold grouped by (ci,{what}) unit ({len(labels)} units)"
    return [
        (np.delete(idx, i), idx[i : i + 1]) for i in idx
    ], f"leave-one-row-out ({len(labels)} unit(s) only), {len(idx)} folds"


def predict_rows(spec: Spec, test: pd.DataFrame) -> np.ndarray:
    """Predictions for rows from (ci, rate, mode) and, where measured, the capacity of their cluster."""
    cap = test["cap"].to_numpy(float) if "cap" in test else None
    ci, rate, mode = test["ci"].to_numpy(float), test["rate"].to_numpy(float), test["mode"].to_numpy(object)
    return spec_predict(spec, ci, rate, mode, capacity=cap)


def heldout_predictions(rows: pd.DataFrame, folds, fitter: Callable[[pd.DataFrame], Spec]) -> np.ndarray:
    """Each row predicted by the model ``fitter`` fits on the rows its fold trains on."""
    pred = np.full(len(rows), _NAN)
    for tr, te in folds:
        spec = fitter(rows.iloc[tr].reset_index(drop=True))
        pred[te] = predict_rows(spec, rows.iloc[te])
    return pred


def errors(observed, predicted) -> dict:
    """MAPE (fraction) and MAE of held-out predictions."""
    o = np.asarray(observed, float)
    p = np.asarray(predicted, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ape = np.abs(p - o) / np.abs(o)
    return {
        "mape": float(np.mean(ape)) if len(o) else _NAN,
        "mae": float(np.mean(np.abs(p - o))) if len(o) else _NAN,
        "n": len(o),
    }


def choose(cands: dict[str, dict]) -> str:
    """Lowest CV MAPE; ties (within 1e-9) -> fewer features, then lower MAE. A ``+residual`` candidate
    only counts when its MAPE is below that of the same set without the residual."""

    def mape(name):
        m = cands[name]["mape"]
        return round(m, 9) if math.isfinite(m) else math.inf

    def key(name):
        e = cands[name]
        a = e["mae"] if math.isfinite(e["mae"]) else math.inf
        return (mape(name), e["n_features"], a)

    def kept(name):
        base = name.removesuffix(RESIDUAL_SUFFIX)
        return base == name or base not in cands or mape(name) < mape(base)

    return min(filter(kept, cands), key=key)


def extrapolation(parts: dict[str, tuple[pd.DataFrame, str, Callable, str]], baseline: Callable) -> dict | None:
    """Errors at utilization >= 80 % of the chosen model and the baseline fitted at <= 70 % (None: no split)."""
    # parts: target -> (rows, target column, fitter of the chosen model, its name); baseline: (rows, column) -> spec
    out: dict = {"fit_max": EXTRAPOLATION_FIT_MAX, "test_min": EXTRAPOLATION_TEST_MIN}
    for target, (rows, col, fitter, name) in parts.items():
        split = extrapolation_split(rows) if has_capacity(rows) else None
        if split is None:
            return None
        train, test = rows[split[0]].reset_index(drop=True), rows[split[1]]
        y = test[col].to_numpy(float)
        out[target] = {**errors(y, predict_rows(fitter(train), test)), "feature_set": name}
        base = predict_rows(baseline(train, col), test)
        out[target + "_baseline"] = {**errors(y, base), "feature_set": "baseline"}
    return out
