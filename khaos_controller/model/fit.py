"""Fit latency and recovery models from profile results, with held-out (cross-validated) errors.

Input: one or more profile results (``results.csv`` / ``.parquet`` written by ``khaos profile``, one row
per injected failure; docs/profiling.md lists the columns). Output: a typed :class:`~.store.Model`.

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
same deployment in the training fold.
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
from ..schema import FAILURE_MODES, MAX_INTERVAL_S, MAX_LATENCY_MS, MAX_RATE, MAX_RECOVERY_S, MIN_INTERVAL_S
from . import conformal, overhead
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
from .greybox import (
    EXTRAPOLATION_FIT_MAX,
    EXTRAPOLATION_TEST_MIN,
    RESIDUAL_FEATURES,
    RESIDUAL_SUFFIX,
    extrapolation_split,
    fit_residual,
    has_capacity,
)
from .predict import spec_predict
from .store import SCHEMA, SCHEMA_VERSION, CheckpointCost, Constants, Model, Spec, parse

MIN_RECOVERED_ROWS = 4  # below this a 3-4 parameter model is not a fit but an interpolation
MIN_LATENCY_ROWS = 4
REQUIRED_COLUMNS = ("ci_s", "rate", "mode", "recovered", "recovery_s", "latency_p99_ms")
# Read only where present (profile/capacity.py writes them), so an older results file gives the same frame.
CAPACITY_COLUMNS = {"cap": "capacity", "u_target": "utilization_target", "age_s": "restored_checkpoint_age_s"}
_NAN = float("nan")
# The physical bounds of a results file's numbers: column -> (low or None, low excluded, high, unit). A number
# outside them is an error; an empty or non-numeric cell is missing (its row is dropped and counted).
ROW_BOUNDS = {
    "ci_s": (MIN_INTERVAL_S, False, MAX_INTERVAL_S, "s"),
    "rate": (0, True, MAX_RATE, "events/s"),
    "recovery_s": (0, True, MAX_RECOVERY_S, "s"),
    "latency_p99_ms": (0, True, MAX_LATENCY_MS, "ms"),
    "capacity": (0, True, MAX_RATE, "events/s"),
    "since_checkpoint_s": (None, False, MAX_RECOVERY_S, "s"),
    "running_s": (None, False, MAX_RECOVERY_S, "s"),
    "restored_checkpoint_age_s": (None, False, MAX_RECOVERY_S, "s"),
    "checkpoint_duration_ms": (None, False, MAX_LATENCY_MS, "ms"),
}


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
        check_rows(df, p)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    key = [c for c in ("trial", "t_fail") if c in df.columns]
    if len(key) == 2:  # the same failure read twice (a file given twice) must not count twice
        df = df.drop_duplicates(subset=key, keep="first").reset_index(drop=True)
    return df


def check_rows(df: pd.DataFrame, source: Path) -> None:
    """Every number of a results file within its physical bounds (ROW_BOUNDS) and every failure mode one
    Khaos profiles; else KhaosError naming the file, the line (CSV) or row (Parquet) and the column."""
    at = (lambda i: f"row {i + 1}") if source.suffix == ".parquet" else (lambda i: f"line {i + 2}")
    for col, (low, open_low, high, unit) in ROW_BOUNDS.items():
        if col not in df.columns:
            continue
        v = _num(df, col)
        below = np.zeros(len(v), bool) if low is None else (v <= low if open_low else v < low)
        bad = np.flatnonzero(np.isfinite(v) & (below | (v > high)))
        if len(bad):
            span = f"<= {high:g}" if low is None else f"in {'(' if open_low else '['}{low:g}, {high:g}]"
            i = int(bad[0])
            raise KhaosError(f"results file {source}: {at(i)}: {col} {v[i]:g} is not {span} {unit}")
    given = df["mode"].notna() & df["mode"].astype(str).str.strip().ne("")
    unknown = np.flatnonzero(given & ~df["mode"].astype(str).str.strip().str.lower().isin(FAILURE_MODES))
    if len(unknown):
        i = int(unknown[0])
        raise KhaosError(
            f"results file {source}: {at(i)}: mode {df['mode'].iloc[i]!r} is not a failure mode "
            f"({', '.join(FAILURE_MODES)})"
        )


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
    for col, src in CAPACITY_COLUMNS.items():
        if src in df.columns:
            d[col] = _num(df, src)
    if "cap" in d:
        with np.errstate(divide="ignore", invalid="ignore"):
            d["u"] = d["rate"] / d["cap"]  # what features.py computes from the same columns
    if "checkpoint_size_bytes" in df.columns:
        d["state_gb"] = _num(df, "checkpoint_size_bytes") / 1e9
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
    over = base_ok & _overloaded(df)  # no failure injected: the job never caught up (profile/measure.py)
    count(rec_drop, over, "overloaded (the job did not keep up: no failure injected)")
    count(lat_drop, over, "overloaded (the job did not keep up: no steady state)")
    base_ok &= ~over
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


def _overloaded(df: pd.DataFrame) -> np.ndarray:
    """Rows of a unit whose job never caught up with its input (``recovery_rule`` overloaded)."""
    if "recovery_rule" not in df:
        return np.zeros(len(df), bool)
    return df["recovery_rule"].astype(str).eq("overloaded").to_numpy()


def data_hash(clean: pd.DataFrame, used: pd.Series) -> str:
    """sha256 over the rows used (the fitted columns, one JSON line each, lines sorted): order-independent."""
    cols = ["ci", "rate", "mode", "recovered", "recovery_s", "latency_ms", "since_s", "running_s", "ckpt_s"]
    extra = [c for c in ("age_s", "cap", "u_target") if c in clean and np.isfinite(clean.loc[used, c]).any()]
    cols += extra + (["state_gb"] if "cap" in extra and "state_gb" in clean else [])  # state: greybox only
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


# ------------------------------------------------------------------------------------ validation


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


def _predict_rows(spec: Spec, test: pd.DataFrame) -> np.ndarray:
    """Predictions for rows from (ci, rate, mode) and, where measured, the capacity of their cluster."""
    cap = test["cap"].to_numpy(float) if "cap" in test else None
    ci, rate, mode = test["ci"].to_numpy(float), test["rate"].to_numpy(float), test["mode"].to_numpy(object)
    return spec_predict(spec, ci, rate, mode, capacity=cap)


def _heldout(rows: pd.DataFrame, folds, fitter: Callable[[pd.DataFrame], Spec]) -> np.ndarray:
    pred = np.full(len(rows), _NAN)
    for tr, te in folds:
        spec = fitter(rows.iloc[tr].reset_index(drop=True))
        pred[te] = _predict_rows(spec, rows.iloc[te])
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


def extrapolation(parts: dict[str, tuple[pd.DataFrame, str, Callable, str]]) -> dict | None:
    """Errors at utilization >= 80 % of the chosen model and the baseline fitted at <= 70 % (None: no split)."""
    # parts: target -> (rows, target column, fitter of the chosen model, its name)
    out: dict = {"fit_max": EXTRAPOLATION_FIT_MAX, "test_min": EXTRAPOLATION_TEST_MIN}
    for target, (rows, col, fitter, name) in parts.items():
        split = extrapolation_split(rows) if has_capacity(rows) else None
        if split is None:
            return None
        train, test = rows[split[0]].reset_index(drop=True), rows[split[1]]
        y = test[col].to_numpy(float)
        out[target] = {**errors(y, _predict_rows(fitter(train), test)), "feature_set": name}
        base = _predict_rows(_base_fitter(train, col), test)
        out[target + "_baseline"] = {**errors(y, base), "feature_set": "baseline"}
    return out


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


def _fit_target(target: str, rows_t: pd.DataFrame, col: str, capacity: float | None) -> tuple:
    """One target's fit: every candidate feature set held out by the same folds, the best chosen; returns
    (baseline and physics specs, CV errors, held-out predictions, the choice, candidates offered)."""
    folds, protocol = cv_folds(rows_t)
    y = rows_t[col].to_numpy()
    base_pred = _heldout(rows_t, folds, lambda tr: _base_fitter(tr, col))
    sets, offered = _candidates(target, rows_t)
    measured_cap = has_capacity(rows_t)
    modes = set(rows_t["mode"])
    n_res = len(expand(RESIDUAL_FEATURES, modes))
    cands, preds, fitters = {}, {}, {}
    for name, (fs, residual) in sets.items():
        fitters[name] = _fitter(col, name, fs, residual, capacity, measured_cap)
        preds[name] = _heldout(rows_t, folds, fitters[name])
        cands[name] = {**errors(y, preds[name]), "n_features": len(expand(fs, modes)) + residual * n_res}
    pick = _choose(cands)
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
    cv["extrapolation"] = extrapolation(chosen)
    out["cv"] = cv
    return parse(jsonable(out), "fitted model")
