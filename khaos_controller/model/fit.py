"""Fit latency and recovery models from profile results, with held-out (cross-validated) errors.

Input: one or more profile results (``results.csv`` / ``.parquet`` written by ``khaos profile``, one row
per injected failure; docs/profiling.md lists the columns). Output: a typed :class:`~.store.Model`.

Two model families are fitted and cross-validated side by side (docs/models.md has the reasons):

* ``baseline``: the original Khaos prototype's two OLS regressions, ``latency ~ rate + CI`` and
  ``recovery ~ rate + CI`` (scikit-learn ``LinearRegression``), without its hard-coded 55 s filter.
* ``physics``: non-negative linear models (``LinearRegression(positive=True)``) on physical features
  (features.py). A few feature sets per target are tried; the one with the lowest CV MAPE is kept.

Cross-validation holds out whole ``(ci_s, rate)`` units (all failures of one profiled deployment), so
no held-out failure has a sibling from the same deployment in the training fold.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import KhaosError
from ..jsonio import jsonable
from .features import BASELINE_FEATURES, CAPACITY_FACTORS, LATENCY_SETS, RECOVERY_SETS, columns, expand, measured
from .predict import spec_predict
from .store import SCHEMA, SCHEMA_VERSION, CheckpointCost, Constants, Model, Spec, parse

MIN_RECOVERED_ROWS = 4  # below this a 3-4 parameter model is not a fit but an interpolation
MIN_LATENCY_ROWS = 4
REQUIRED_COLUMNS = ("ci_s", "rate", "mode", "recovered", "recovery_s", "latency_p99_ms")
_NAN = float("nan")


# ------------------------------------------------------------------------------------------- input


def load_results(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read one or more profile results (CSV or Parquet) into one frame; KhaosError if unusable."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise KhaosError("no results file given")
    frames = []
    for p in map(Path, paths):
        if not p.is_file():
            raise KhaosError(f"results file {p} " + ("is not a file" if p.exists() else "does not exist"))
        try:
            df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's file
            raise KhaosError(f"cannot read results file {p}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise KhaosError(
                f"results file {p} lacks column(s) {', '.join(missing)} (is it a khaos profile results.csv?)"
            )
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    key = [c for c in ("trial", "t_fail") if c in df.columns]
    if len(key) == 2:  # the same failure read twice (a file given twice) must not count twice
        df = df.drop_duplicates(subset=key, keep="first").reset_index(drop=True)
    return df


def _as_bool(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), _NAN)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def _prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Clean input -> (recovery rows, latency rows, row accounting)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise KhaosError(f"results lack column(s) {', '.join(missing)}")
    d = pd.DataFrame(
        {
            "ci": _num(df, "ci_s"),
            "rate": _num(df, "rate"),
            "mode": df["mode"].astype(str).str.strip().str.lower(),
            "recovered": [_as_bool(v) for v in df["recovered"]],
            "recovery_s": _num(df, "recovery_s"),
            "latency_ms": _num(df, "latency_p99_ms"),
            "since_s": _num(df, "since_checkpoint_s"),
            "running_s": _num(df, "running_s"),
            "ckpt_s": _num(df, "checkpoint_duration_ms") / 1000.0,
        }
    )
    base_ok = (
        np.isfinite(d["ci"])
        & (d["ci"] > 0)
        & np.isfinite(d["rate"])
        & (d["rate"] > 0)
        & d["mode"].ne("")
        & d["mode"].ne("nan")
    )
    rec_drop: dict[str, int] = {}
    lat_drop: dict[str, int] = {}

    def count(drop, mask, why):
        n = int(mask.sum())
        if n:
            drop[why] = drop.get(why, 0) + n

    bad = ~base_ok
    count(rec_drop, bad, "ci_s/rate/mode missing or not positive")
    count(lat_drop, bad, "ci_s/rate/mode missing or not positive")
    not_rec = base_ok & ~d["recovered"]
    count(rec_drop, not_rec, "not recovered within the profile's timeout")
    bad_rec = base_ok & d["recovered"] & ~(np.isfinite(d["recovery_s"]) & (d["recovery_s"] > 0))
    count(rec_drop, bad_rec, "recovery_s missing or not positive")
    rec_ok = base_ok & d["recovered"] & np.isfinite(d["recovery_s"]) & (d["recovery_s"] > 0)
    lat_ok = base_ok & np.isfinite(d["latency_ms"]) & (d["latency_ms"] > 0)
    count(lat_drop, base_ok & ~lat_ok, "latency_p99_ms missing or not positive")
    rows = {
        "input": len(d),
        "recovery_used": int(rec_ok.sum()),
        "recovery_dropped": rec_drop,
        "latency_used": int(lat_ok.sum()),
        "latency_dropped": lat_drop,
    }
    used = rec_ok | lat_ok
    return d[rec_ok].reset_index(drop=True), d[lat_ok].reset_index(drop=True), {**rows, "_used": used, "_clean": d}


def data_hash(clean: pd.DataFrame, used: pd.Series) -> str:
    """sha256 over the rows used (the fitted columns, one JSON line each, lines sorted): order-independent."""
    cols = ["ci", "rate", "mode", "recovered", "recovery_s", "latency_ms", "since_s", "running_s", "ckpt_s"]
    lines = []
    for rec in clean.loc[used, cols].to_dict("records"):
        rec = {
            k: (
                None
                if isinstance(v, float) and not math.isfinite(v)
                else (round(v, 9) if isinstance(v, float) else (bool(v) if isinstance(v, (bool, np.bool_)) else v))
            )
            for k, v in rec.items()
        }
        lines.append(json.dumps(rec, sort_keys=True))
    return "sha256:" + hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


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
    margin = train["ci"] - train["since_s"]
    margin = float(np.nanmedian(margin)) if np.isfinite(margin).any() else 0.0
    down: dict[str, float] = {}
    rs = train["running_s"]
    overall = float(np.nanmean(rs)) if np.isfinite(rs).any() else 0.0
    for m, g in train.groupby("mode"):
        v = g["running_s"]
        down[str(m)] = float(np.nanmean(v)) if np.isfinite(v).any() else overall
    down["*"] = overall
    return Constants(margin_s=max(margin, 0.0), downtime_s=down, capacity=capacity)


def _ckpt_model(rows: pd.DataFrame) -> CheckpointCost:
    ok = np.isfinite(rows["ckpt_s"])
    if ok.sum() >= 2:
        coef, icpt = _linreg(rows.loc[ok, ["rate", "ci"]].to_numpy(), rows.loc[ok, "ckpt_s"].to_numpy(), True)
        return CheckpointCost(intercept=max(icpt, 0.0), rate=float(coef[0]), ci=float(coef[1]))
    mean = float(rows.loc[ok, "ckpt_s"].mean()) if ok.any() else 0.0
    return CheckpointCost(intercept=mean, rate=0.0, ci=0.0)


def _fit_spec(
    train: pd.DataFrame, target: str, name: str, feature_set: list[str], positive: bool, capacity: float | None = None
) -> Spec:
    """Fit one model on ``train`` (target column ``target``); returns a self-contained spec."""
    y = train[target].to_numpy(dtype=float)
    modes = sorted(set(train["mode"]))
    feats = expand(feature_set, modes)
    c = _constants(train, capacity)
    if "ckpt/ci" in feats:
        c.ckpt_model = _ckpt_model(train)
    caps = [None]
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


# ------------------------------------------------------------------------------------ validation


def cv_folds(rows: pd.DataFrame) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Folds holding out whole (ci, rate) units; leave-one-row-out when there are fewer than 3 units."""
    units = rows["ci"].round(6).astype(str) + "@" + rows["rate"].round(6).astype(str)
    labels = sorted(set(units))
    idx = np.arange(len(rows))
    if len(labels) >= 3:
        if len(labels) <= 30:
            return (
                [(idx[units.to_numpy() != u], idx[units.to_numpy() == u]) for u in labels],
                f"leave-one-(ci,rate)-unit-out, {len(labels)} folds",
            )
        from sklearn.model_selection import GroupKFold

        folds = [(tr, te) for tr, te in GroupKFold(n_splits=10).split(idx, groups=units)]
        return folds, f"10-fold grouped by (ci,rate) unit ({len(labels)} units)"
    return [
        (np.delete(idx, i), idx[i : i + 1]) for i in idx
    ], f"leave-one-row-out ({len(labels)} unit(s) only), {len(idx)} folds"


def _heldout(rows: pd.DataFrame, folds, fitter: Callable[[pd.DataFrame], Spec]) -> np.ndarray:
    pred = np.full(len(rows), _NAN)
    for tr, te in folds:
        spec = fitter(rows.iloc[tr].reset_index(drop=True))
        test = rows.iloc[te]
        pred[te] = spec_predict(
            spec, test["ci"].to_numpy(float), test["rate"].to_numpy(float), test["mode"].to_numpy(object)
        )
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


def _choose(cands: dict[str, dict]) -> str:
    """Lowest CV MAPE; ties (within 1e-9) -> fewer features, then lower MAE."""

    def key(name):
        e = cands[name]
        m = e["mape"] if math.isfinite(e["mape"]) else math.inf
        a = e["mae"] if math.isfinite(e["mae"]) else math.inf
        return (round(m, 9), e["n_features"], a)

    return min(cands, key=key)


# ------------------------------------------------------------------------------------------- fit


def usable(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(recovery rows, latency rows, row accounting) of profile results; KhaosError if too few rows
    are usable to fit (what an evaluation's dry run checks before it builds anything)."""
    rec, lat, rows = _prepare(results)
    if len(rec) < MIN_RECOVERED_ROWS:
        why = "; ".join(f"{n} {w}" for w, n in rows["recovery_dropped"].items()) or "none dropped"
        raise KhaosError(
            f"too few recovered failures to fit: {len(rec)} of {rows['input']} rows usable "
            f"(need >= {MIN_RECOVERED_ROWS}; dropped: {why})"
        )
    if len(lat) < MIN_LATENCY_ROWS:
        raise KhaosError(f"too few rows with a latency_p99_ms to fit: {len(lat)} (need >= {MIN_LATENCY_ROWS})")
    return rec, lat, rows


def fit(results: pd.DataFrame, capacity: float | None = None, sources: Sequence[str] = ()) -> Model:
    """Fit baseline and physics models for latency and recovery (see docs/models.md)."""
    rec, lat, rows = usable(results)
    used, clean = rows.pop("_used"), rows.pop("_clean")
    if capacity is not None and capacity <= float(rec["rate"].max()):
        raise KhaosError(f"--capacity {capacity:g} is not above the highest profiled rate {rec['rate'].max():g}")

    out: dict = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data_hash": data_hash(clean, used),
        "sources": [str(s) for s in sources],
        "rows": rows,
    }
    allrows = clean[used]
    out["ranges"] = {
        "ci_s": [float(allrows["ci"].min()), float(allrows["ci"].max())],
        "rate": [float(allrows["rate"].min()), float(allrows["rate"].max())],
        "modes": sorted(set(rec["mode"])),
    }
    ck = clean.loc[used, "ckpt_s"]
    ck = ck[np.isfinite(ck)]
    out["checkpoint_duration_s"] = (
        {"mean": float(ck.mean()), "min": float(ck.min()), "max": float(ck.max()), "n": len(ck)} if len(ck) else None
    )

    cv: dict = {}
    heldout: dict = {}
    for target, rows_t, col, sets in (
        ("recovery", rec, "recovery_s", RECOVERY_SETS),
        ("latency", lat, "latency_ms", LATENCY_SETS),
    ):
        folds, protocol = cv_folds(rows_t)
        y = rows_t[col].to_numpy()
        base_fit = lambda tr, col=col: _fit_spec(tr, col, "baseline", BASELINE_FEATURES, positive=False)  # noqa: E731
        base_pred = _heldout(rows_t, folds, base_fit)
        cands, preds = {}, {}
        for name, fs in sets.items():
            if "ckpt/ci" in fs and not np.isfinite(rows_t["ckpt_s"]).any():
                continue
            f = lambda tr, col=col, name=name, fs=fs: _fit_spec(tr, col, name, fs, True, capacity)  # noqa: E731
            preds[name] = _heldout(rows_t, folds, f)
            cands[name] = {**errors(y, preds[name]), "n_features": len(expand(fs, set(rows_t["mode"])))}
        pick = _choose(cands)
        out[target] = {
            "baseline": _fit_spec(rows_t, col, "baseline", BASELINE_FEATURES, positive=False).model_dump(),
            "physics": _fit_spec(rows_t, col, pick, sets[pick], True, capacity).model_dump(),
        }
        cv[target] = {
            "protocol": protocol,
            "folds": len(folds),
            "baseline": errors(y, base_pred),
            "physics": {**errors(y, preds[pick]), "feature_set": pick},
            "candidates": cands,
        }
        heldout[target] = [
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
    cv["heldout"] = heldout
    cv["note"] = (
        "physics feature sets were chosen by this CV error among "
        f"{len(RECOVERY_SETS)} (recovery) / {len(LATENCY_SETS)} (latency) candidates, "
        "so its number is slightly optimistic"
    )
    out["cv"] = cv
    return parse(jsonable(out), "fitted model")
