"""Predict p99 latency and recovery time of a job from (input rate, checkpoint interval, failure mode).

Input: one or more profile results (``results.csv`` / ``.parquet`` written by ``khaos profile``, one row
per injected failure; docs/profiling.md lists the columns). Output: a versioned JSON model file.

Two model families are fitted and cross-validated side by side (docs/models.md has the reasons):

* ``baseline``: the original Khaos prototype's two OLS regressions, ``latency ~ rate + CI`` and
  ``recovery ~ rate + CI`` (scikit-learn ``LinearRegression``), without its hard-coded 55 s filter.
* ``physics``: non-negative linear models (``LinearRegression(positive=True)``) on physical features.
  Recovery = detection + restart + catch-up, where the job restarts ``L0 = since_checkpoint +
  downtime`` seconds behind and drains that backlog (``L0 * rate`` records) at ``capacity - rate``
  records/s. Latency grows with the rate and with the checkpoint overhead ``~ 1/CI``. A few feature
  sets per target are tried; the one with the lowest cross-validated MAPE is kept.

Cross-validation holds out whole ``(ci_s, rate)`` units (all failures of one profiled deployment), so
no held-out failure has a sibling from the same deployment in the training fold.

Public API: :func:`load_results`, :func:`fit`, :func:`save_model`, :func:`load_model`, :func:`predict`,
:func:`extrapolation_warnings`, :func:`compare`, :func:`plot`, :func:`format_report`, :func:`add_cli`.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import KhaosError

SCHEMA = "khaos-model"
SCHEMA_VERSION = 1
MIN_RECOVERED_ROWS = 4      # below this a 3-4 parameter model is not a fit but an interpolation
MIN_LATENCY_ROWS = 4
REQUIRED_COLUMNS = ("ci_s", "rate", "mode", "recovered", "recovery_s", "latency_p99_ms")
OPTIONAL_COLUMNS = ("since_checkpoint_s", "running_s", "checkpoint_duration_ms")
REFERENCE_MODE = "process"  # the mode without an indicator column; others get "mode=<m>"
MODES = "<modes>"           # placeholder in a feature set: one indicator per non-reference mode seen

# Candidate physical feature sets. Recovery: L0 = seconds of input behind at restart
# (since_checkpoint + downtime); L0*rate = backlog in records; L0*rate/(cap-rate) = drain time.
RECOVERY_SETS: dict[str, list[str]] = {
    "drain": ["L0", "L0*rate/(cap-rate)", MODES],
    "backlog": ["L0", "L0*rate", MODES],
    "ci+rate": ["ci", "rate", MODES],
}
# Latency: checkpoint overhead per second ~ cost/CI; the cost grows with the rate (state, alignment).
LATENCY_SETS: dict[str, list[str]] = {
    "overhead": ["rate", "1/ci"],
    "overhead*rate": ["rate", "1/ci", "rate/ci"],
    "ckpt-cost": ["rate", "ckpt/ci"],
}
BASELINE_FEATURES = ["rate", "ci"]
# Capacity grid for the drain feature, as multiples of the highest profiled rate (geometric, 1.05x..50x).
CAPACITY_FACTORS = tuple(float(x) for x in np.geomspace(1.05, 50.0, 60))

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
            raise KhaosError(f"results file {p} does not exist")
        try:
            df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's file
            raise KhaosError(f"cannot read results file {p}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise KhaosError(f"results file {p} lacks column(s) {', '.join(missing)} (is it a khaos profile results.csv?)")
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
    d = pd.DataFrame({
        "ci": _num(df, "ci_s"), "rate": _num(df, "rate"),
        "mode": df["mode"].astype(str).str.strip().str.lower(),
        "recovered": [_as_bool(v) for v in df["recovered"]],
        "recovery_s": _num(df, "recovery_s"), "latency_ms": _num(df, "latency_p99_ms"),
        "since_s": _num(df, "since_checkpoint_s"), "running_s": _num(df, "running_s"),
        "ckpt_s": _num(df, "checkpoint_duration_ms") / 1000.0,
    })
    base_ok = np.isfinite(d["ci"]) & (d["ci"] > 0) & np.isfinite(d["rate"]) & (d["rate"] > 0) \
        & d["mode"].ne("") & d["mode"].ne("nan")
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
    rows = {"input": int(len(d)), "recovery_used": int(rec_ok.sum()), "recovery_dropped": rec_drop,
            "latency_used": int(lat_ok.sum()), "latency_dropped": lat_drop}
    used = rec_ok | lat_ok
    return d[rec_ok].reset_index(drop=True), d[lat_ok].reset_index(drop=True), {**rows, "_used": used, "_clean": d}


def data_hash(clean: pd.DataFrame, used: pd.Series) -> str:
    """sha256 over the rows used (the fitted columns, one JSON line each, lines sorted): order-independent."""
    cols = ["ci", "rate", "mode", "recovered", "recovery_s", "latency_ms", "since_s", "running_s", "ckpt_s"]
    lines = []
    for rec in clean.loc[used, cols].to_dict("records"):
        rec = {k: (None if isinstance(v, float) and not math.isfinite(v) else
                   (round(v, 9) if isinstance(v, float) else (bool(v) if isinstance(v, (bool, np.bool_)) else v)))
               for k, v in rec.items()}
        lines.append(json.dumps(rec, sort_keys=True))
    return "sha256:" + hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- features

def _expand(feature_set: list[str], modes: Iterable[str]) -> list[str]:
    out: list[str] = []
    for f in feature_set:
        if f == MODES:
            out += [f"mode={m}" for m in sorted(modes) if m != REFERENCE_MODE]
        else:
            out.append(f)
    return out


def _l0_hat(ci, mode, c: dict) -> np.ndarray:
    """Seconds of input behind at restart, as predicted from the CI: (ci - margin) + downtime(mode)."""
    down = c["downtime_s"]
    d = np.array([down.get(m, down["*"]) for m in mode], dtype=float)
    return np.maximum(ci - c["margin_s"], 0.0) + d


def _ckpt_hat(ci, rate, c: dict) -> np.ndarray:
    k = c["ckpt_model"]
    return k["intercept"] + k["rate"] * rate + k["ci"] * ci


def _measured(train: pd.DataFrame) -> dict:
    """Observed per-row L0 (since_checkpoint + running) and checkpoint duration of training rows."""
    return {"L0": train["since_s"].to_numpy(float) + train["running_s"].to_numpy(float),
            "ckpt": train["ckpt_s"].to_numpy(float)}


def _columns(features: list[str], ci, rate, mode, c: dict, measured: dict | None = None) -> np.ndarray:
    """Design matrix. ``measured`` (training rows, :func:`_measured`) supplies the observed L0 and
    checkpoint duration; without it (prediction) they are estimated from (ci, rate, mode)."""
    ci = np.asarray(ci, dtype=float)
    rate = np.asarray(rate, dtype=float)
    mode = np.asarray(mode, dtype=object)
    l0 = ckpt = None
    cols = []
    for f in features:
        if f.startswith("L0") and l0 is None:
            l0 = _l0_hat(ci, mode, c)
            if measured is not None:
                l0 = np.where(np.isfinite(measured["L0"]), measured["L0"], l0)
        if f == "ckpt/ci" and ckpt is None:
            ckpt = _ckpt_hat(ci, rate, c)
            if measured is not None:
                ckpt = np.where(np.isfinite(measured["ckpt"]), measured["ckpt"], ckpt)
        if f == "rate":
            cols.append(rate)
        elif f == "ci":
            cols.append(ci)
        elif f == "1/ci":
            cols.append(1.0 / ci)
        elif f == "rate/ci":
            cols.append(rate / ci)
        elif f == "L0":
            cols.append(l0)
        elif f == "L0*rate":
            cols.append(l0 * rate)
        elif f == "L0*rate/(cap-rate)":
            spare = c["capacity"] - rate
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(np.where(spare > 0, l0 * rate / np.where(spare > 0, spare, 1.0), np.inf))
        elif f == "ckpt/ci":
            cols.append(ckpt / ci)
        elif f.startswith("mode="):
            cols.append((mode == f[5:]).astype(float))
        else:
            raise KhaosError(f"model uses unknown feature {f!r} (written by a newer khaos?)")
    return np.column_stack(cols) if cols else np.empty((len(ci), 0))


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


def _constants(train: pd.DataFrame, capacity: float | None) -> dict:
    margin = train["ci"] - train["since_s"]
    margin = float(np.nanmedian(margin)) if np.isfinite(margin).any() else 0.0
    down: dict[str, float] = {}
    rs = train["running_s"]
    overall = float(np.nanmean(rs)) if np.isfinite(rs).any() else 0.0
    for m, g in train.groupby("mode"):
        v = g["running_s"]
        down[str(m)] = float(np.nanmean(v)) if np.isfinite(v).any() else overall
    down["*"] = overall
    return {"margin_s": max(margin, 0.0), "downtime_s": down, "capacity": capacity}


def _ckpt_model(rows: pd.DataFrame) -> dict:
    ok = np.isfinite(rows["ckpt_s"])
    if ok.sum() >= 2:
        coef, icpt = _linreg(rows.loc[ok, ["rate", "ci"]].to_numpy(), rows.loc[ok, "ckpt_s"].to_numpy(), True)
        return {"intercept": max(icpt, 0.0), "rate": float(coef[0]), "ci": float(coef[1])}
    mean = float(rows.loc[ok, "ckpt_s"].mean()) if ok.any() else 0.0
    return {"intercept": mean, "rate": 0.0, "ci": 0.0}


def _fit_spec(train: pd.DataFrame, target: str, name: str, feature_set: list[str], positive: bool,
              capacity: float | None = None) -> dict:
    """Fit one model on ``train`` (target column ``target``); returns a self-contained spec."""
    y = train[target].to_numpy(dtype=float)
    modes = sorted(set(train["mode"]))
    feats = _expand(feature_set, modes)
    c = _constants(train, capacity)
    if "ckpt/ci" in feats:
        c["ckpt_model"] = _ckpt_model(train)
    caps = [None]
    if any("cap" in f for f in feats):
        top = float(train["rate"].max())
        caps = [capacity] if capacity else [top * k for k in CAPACITY_FACTORS]
    ci, rate, mode = train["ci"].to_numpy(float), train["rate"].to_numpy(float), train["mode"].to_numpy(object)
    meas = _measured(train)
    cap = caps[0]
    if len(caps) > 1:
        def sse_at(k: float) -> float:
            c["capacity"] = k
            X = _columns(feats, ci, rate, mode, c, measured=meas)
            return _nnls_sse(X, y) if np.isfinite(X).all() else math.inf
        sses = [sse_at(k) for k in caps]
        j = int(np.argmin(sses))  # first minimum: on a flat curve the smaller, more cautious capacity
        cap = caps[j]
        if 0 < j < len(caps) - 1:  # refine between the grid neighbours (log scale)
            from scipy.optimize import minimize_scalar
            r = minimize_scalar(lambda lk: sse_at(math.exp(lk)), method="bounded",
                                bounds=(math.log(caps[j - 1]), math.log(caps[j + 1])), options={"xatol": 1e-3})
            if r.success and r.fun <= sses[j]:
                cap = float(math.exp(r.x))
        c["capacity_at_grid_edge"] = j == len(caps) - 1
    c["capacity"] = cap
    X = _columns(feats, ci, rate, mode, c, measured=meas)
    if not np.isfinite(X).all():
        raise KhaosError(f"no usable capacity for the '{name}' model: a profiled rate exceeds the capacity")
    coef, icpt = _linreg(X, y, positive)
    if cap is None:
        c.pop("capacity")
    return {"name": name, "features": feats, "coef": [float(x) for x in coef], "intercept": icpt,
            "positive": positive, "constants": c}


def _predict_spec(spec: dict, ci, rate, mode) -> np.ndarray:
    c = dict(spec.get("constants", {}))
    c.setdefault("margin_s", 0.0)
    c.setdefault("downtime_s", {"*": 0.0})
    c.setdefault("capacity", math.inf)
    ci = np.atleast_1d(np.asarray(ci, dtype=float))
    n = len(ci)
    rate = np.broadcast_to(np.asarray(rate, dtype=float), (n,)) if np.ndim(rate) == 0 else np.asarray(rate, float)
    mode = np.broadcast_to(np.asarray(mode, dtype=object), (n,)) if np.ndim(mode) == 0 else np.asarray(mode, object)
    X = _columns(spec["features"], ci, rate, mode, c)
    out = np.full(n, float(spec["intercept"]))
    for j, b in enumerate(spec["coef"]):
        if b != 0.0:  # a zero coefficient on an infinite feature contributes nothing, not NaN
            out = out + b * X[:, j]
    return out


# ------------------------------------------------------------------------------------ validation

def cv_folds(rows: pd.DataFrame) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Folds holding out whole (ci, rate) units; leave-one-row-out when there are fewer than 3 units."""
    units = rows["ci"].round(6).astype(str) + "@" + rows["rate"].round(6).astype(str)
    labels = sorted(set(units))
    idx = np.arange(len(rows))
    if len(labels) >= 3:
        if len(labels) <= 30:
            return ([(idx[units.to_numpy() != u], idx[units.to_numpy() == u]) for u in labels],
                    f"leave-one-(ci,rate)-unit-out, {len(labels)} folds")
        from sklearn.model_selection import GroupKFold
        folds = [(tr, te) for tr, te in GroupKFold(n_splits=10).split(idx, groups=units)]
        return folds, f"10-fold grouped by (ci,rate) unit ({len(labels)} units)"
    return [(np.delete(idx, i), idx[i:i + 1]) for i in idx], f"leave-one-row-out ({len(labels)} unit(s) only), {len(idx)} folds"


def _heldout(rows: pd.DataFrame, folds, fitter: Callable[[pd.DataFrame], dict]) -> np.ndarray:
    pred = np.full(len(rows), _NAN)
    for tr, te in folds:
        spec = fitter(rows.iloc[tr].reset_index(drop=True))
        test = rows.iloc[te]
        pred[te] = _predict_spec(spec, test["ci"].to_numpy(float), test["rate"].to_numpy(float),
                                 test["mode"].to_numpy(object))
    return pred


def errors(observed, predicted) -> dict:
    """MAPE (fraction) and MAE of held-out predictions."""
    o = np.asarray(observed, float)
    p = np.asarray(predicted, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ape = np.abs(p - o) / np.abs(o)
    return {"mape": float(np.mean(ape)) if len(o) else _NAN,
            "mae": float(np.mean(np.abs(p - o))) if len(o) else _NAN, "n": int(len(o))}


def _choose(cands: dict[str, dict]) -> str:
    """Lowest CV MAPE; ties (within 1e-9) -> fewer features, then lower MAE."""
    def key(name):
        e = cands[name]
        m = e["mape"] if math.isfinite(e["mape"]) else math.inf
        a = e["mae"] if math.isfinite(e["mae"]) else math.inf
        return (round(m, 9), e["n_features"], a)
    return min(cands, key=key)


# ------------------------------------------------------------------------------------------- fit

def fit(results: pd.DataFrame, capacity: float | None = None, sources: Sequence[str] = ()) -> dict:
    """Fit baseline and physics models for latency and recovery; returns the model dict (see docs/models.md)."""
    rec, lat, rows = _prepare(results)
    used, clean = rows.pop("_used"), rows.pop("_clean")
    if len(rec) < MIN_RECOVERED_ROWS:
        why = "; ".join(f"{n} {w}" for w, n in rows["recovery_dropped"].items()) or "none dropped"
        raise KhaosError(f"too few recovered failures to fit: {len(rec)} of {rows['input']} rows usable "
                         f"(need >= {MIN_RECOVERED_ROWS}; dropped: {why})")
    if len(lat) < MIN_LATENCY_ROWS:
        raise KhaosError(f"too few rows with a latency_p99_ms to fit: {len(lat)} (need >= {MIN_LATENCY_ROWS})")
    if capacity is not None and capacity <= float(rec["rate"].max()):
        raise KhaosError(f"--capacity {capacity:g} is not above the highest profiled rate {rec['rate'].max():g}")

    out: dict = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "data_hash": data_hash(clean, used), "sources": [str(s) for s in sources], "rows": rows}
    allrows = clean[used]
    out["ranges"] = {"ci_s": [float(allrows["ci"].min()), float(allrows["ci"].max())],
                     "rate": [float(allrows["rate"].min()), float(allrows["rate"].max())],
                     "modes": sorted(set(rec["mode"]))}
    ck = clean.loc[used, "ckpt_s"]
    ck = ck[np.isfinite(ck)]
    out["checkpoint_duration_s"] = ({"mean": float(ck.mean()), "min": float(ck.min()), "max": float(ck.max()),
                                     "n": int(len(ck))} if len(ck) else None)

    cv: dict = {}
    heldout: dict = {}
    for target, rows_t, col, sets in (("recovery", rec, "recovery_s", RECOVERY_SETS),
                                      ("latency", lat, "latency_ms", LATENCY_SETS)):
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
            cands[name] = {**errors(y, preds[name]), "n_features": len(_expand(fs, set(rows_t["mode"])))}
        pick = _choose(cands)
        out[target] = {"baseline": _fit_spec(rows_t, col, "baseline", BASELINE_FEATURES, positive=False),
                       "physics": _fit_spec(rows_t, col, pick, sets[pick], True, capacity)}
        cv[target] = {"protocol": protocol, "folds": len(folds), "baseline": errors(y, base_pred),
                      "physics": {**errors(y, preds[pick]), "feature_set": pick}, "candidates": cands}
        heldout[target] = [{"ci_s": float(r.ci), "rate": float(r.rate), "mode": r.mode, "observed": float(o),
                            "baseline": float(b), "physics": float(p)}
                           for r, o, b, p in zip(rows_t.itertuples(), y, base_pred, preds[pick])]
    cv["heldout"] = heldout
    cv["note"] = ("physics feature sets were chosen by this CV error among "
                  f"{len(RECOVERY_SETS)} (recovery) / {len(LATENCY_SETS)} (latency) candidates, "
                  "so its number is slightly optimistic")
    out["cv"] = cv
    return out


# ----------------------------------------------------------------------------------------- files

def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None  # JSON has no inf/NaN
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def save_model(model: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(model), indent=1) + "\n")
    tmp.replace(path)  # never a half-written model for a reader (the runtime loop)
    return path


def load_model(path: str | Path) -> dict:
    """Read and check a model file; KhaosError with one line if it is missing or not usable."""
    path = Path(path)
    if not path.is_file():
        raise KhaosError(f"model file {path} does not exist (make one with: khaos fit RESULTS --out {path})")
    try:
        model = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KhaosError(f"model file {path} is not valid JSON: {e}") from None
    return check_model(model, str(path))


def check_model(model, where: str = "model") -> dict:
    if not isinstance(model, dict) or model.get("schema") != SCHEMA:
        raise KhaosError(f"{where} is not a khaos model file (schema {SCHEMA!r} expected)")
    v = model.get("schema_version")
    if v != SCHEMA_VERSION:
        raise KhaosError(f"{where} has schema version {v}, this khaos reads version {SCHEMA_VERSION}: refit it with khaos fit")
    for target in ("latency", "recovery"):
        for fam in ("baseline", "physics"):
            spec = (model.get(target) or {}).get(fam)
            if not isinstance(spec, dict) or not {"features", "coef", "intercept"} <= set(spec):
                raise KhaosError(f"{where} lacks the {fam} {target} model")
            if len(spec["features"]) != len(spec["coef"]):
                raise KhaosError(f"{where}: {fam} {target} model has {len(spec['coef'])} coefficients "
                                 f"for {len(spec['features'])} features")
            c = spec.get("constants") or {}
            if c.get("capacity", 0) is None and any("cap" in f for f in spec["features"]):
                raise KhaosError(f"{where}: {fam} {target} model lacks its capacity")
    return model


# ------------------------------------------------------------------------------------------ use

def unprofiled(model: dict, mode: str) -> str | None:
    """None if the model profiled failure mode ``mode``, else "'x' was not profiled; the model knows ..."."""
    seen = model.get("ranges", {}).get("modes") or [REFERENCE_MODE]
    return None if mode in seen else f"{mode!r} was not profiled; the model knows {', '.join(seen)}"


def recovery_mape(model: dict | None) -> float | None:
    """Cross-validated recovery MAPE of the model's physics fit (None if it has none)."""
    v = ((((model or {}).get("cv") or {}).get("recovery") or {}).get("physics") or {}).get("mape")
    return None if v is None or not math.isfinite(v) else float(v)


def predict(model: dict, rate: float, ci: float, mode: str = REFERENCE_MODE,
            which: str = "physics") -> tuple[float, float]:
    """Predicted (p99 latency in ms, recovery time in s) at ``rate`` events/s and a ``ci`` s interval.

    ``which`` is ``physics`` (the chosen model) or ``baseline``. Recovery is for a failure just before
    a checkpoint (the profiled worst case); ``inf`` means the job is predicted never to catch up
    (rate at or above the estimated capacity). Arrays of ``ci`` give arrays back.
    """
    if which not in ("physics", "baseline"):
        raise KhaosError(f"unknown model family {which!r} (physics or baseline)")
    mode = str(mode).strip().lower()
    missing = unprofiled(model, mode)
    if which == "physics" and missing:
        raise KhaosError(f"failure mode {missing}")
    scalar = np.ndim(ci) == 0
    if not np.all(np.asarray(ci, float) > 0):
        raise KhaosError("checkpoint interval must be > 0 s")
    if not (np.isfinite(rate) and rate > 0):
        raise KhaosError(f"rate must be > 0 events/s, got {rate}")
    lat = _predict_spec(model["latency"][which], ci, rate, mode)
    rec = _predict_spec(model["recovery"][which], ci, rate, mode)
    if scalar:
        return float(lat[0]), float(rec[0])
    return lat, rec


def extrapolation_warnings(model: dict, rate: float, ci: float | None = None) -> list[str]:
    """Plain-words notes when a prediction leaves the profiled ranges."""
    out = []
    r = model.get("ranges", {})
    lo, hi = r.get("rate", [None, None])
    if lo is not None and not (lo <= rate <= hi):
        out.append(f"rate {rate:g} events/s is outside the profiled {lo:g}-{hi:g} events/s")
    if ci is not None:
        lo, hi = r.get("ci_s", [None, None])
        if lo is not None and not (lo <= ci <= hi):
            out.append(f"interval {ci:g} s is outside the profiled {lo:g}-{hi:g} s")
    cap = model["recovery"]["physics"].get("constants", {}).get("capacity")
    if cap and rate >= cap:
        out.append(f"rate {rate:g} events/s is at or above the estimated capacity {cap:.0f} events/s: "
                   "the job is predicted never to catch up")
    return out


def compare(old_model: dict | str | Path | None, new_model: dict | str | Path) -> bool:
    """True if ``new_model`` should replace ``old_model``: its CV recovery MAPE is not worse.

    Either may be a model dict or a path. No old model (None or a missing file) -> True.
    """
    new = load_model(new_model) if isinstance(new_model, (str, Path)) else check_model(new_model)
    if old_model is None or (isinstance(old_model, (str, Path)) and not Path(old_model).exists()):
        return True
    old = load_model(old_model) if isinstance(old_model, (str, Path)) else check_model(old_model)

    def mape(m):
        v = recovery_mape(m)
        return math.inf if v is None else v
    return mape(new) <= mape(old)


# ------------------------------------------------------------------------------------- reporting

def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _num_s(x, digits=2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _formula(spec: dict) -> str:
    parts = [f"{spec['intercept']:.4g}"] + [f"{b:.4g}*{f}" for f, b in zip(spec["features"], spec["coef"])]
    s = " + ".join(parts).replace("+ -", "- ")
    cap = (spec.get("constants") or {}).get("capacity")
    if cap and any("cap" in f for f in spec["features"]):
        s += f"  (cap={cap:.0f}/s" + (", at the grid's upper edge: not identifiable from these data)"
                                      if spec["constants"].get("capacity_at_grid_edge") else ")")
    return s


def format_report(model: dict) -> str:
    """The side-by-side CV table and the fitted formulas, as printed by ``khaos fit``."""
    r = model["rows"]
    drop = lambda d: ", ".join(f"{n} {w}" for w, n in d.items()) or "none"  # noqa: E731
    lines = [f"rows: {r['input']} read; recovery model uses {r['recovery_used']} "
             f"(dropped: {drop(r['recovery_dropped'])}); latency model uses {r['latency_used']} "
             f"(dropped: {drop(r['latency_dropped'])})",
             f"ranges: CI {model['ranges']['ci_s'][0]:g}-{model['ranges']['ci_s'][1]:g} s, rate "
             f"{model['ranges']['rate'][0]:g}-{model['ranges']['rate'][1]:g} events/s, modes "
             f"{', '.join(model['ranges']['modes'])}"]
    cv = model["cv"]
    lines.append(f"held-out error ({cv['recovery']['protocol']} for recovery; {cv['latency']['protocol']} for latency)")
    lines.append(f"  {'':<14}{'MAPE baseline':>14}{'MAPE physics':>14}{'MAE baseline':>14}{'MAE physics':>14}")
    for target, unit in (("recovery", "s"), ("latency", "ms")):
        b, p = cv[target]["baseline"], cv[target]["physics"]
        lines.append(f"  {target + ' (' + unit + ')':<14}{_pct(b['mape']):>14}{_pct(p['mape']):>14}"
                     f"{_num_s(b['mae']):>14}{_num_s(p['mae']):>14}")
    for target in ("recovery", "latency"):
        cands = ", ".join(f"{k} {_pct(v['mape'])}" for k, v in cv[target]["candidates"].items())
        lines.append(f"  {target} physics candidates (CV MAPE): {cands}; chose {cv[target]['physics']['feature_set']}")
    for target in ("recovery", "latency"):
        for fam in ("baseline", "physics"):
            lines.append(f"{fam} {target} = {_formula(model[target][fam])}")
    c = model["recovery"]["physics"].get("constants", {})
    if "margin_s" in c:
        d = ", ".join(f"{k} {v:.2f} s" for k, v in c["downtime_s"].items() if k != "*")
        lines.append(f"  L0 = (CI - {c['margin_s']:.2f} s) + downtime ({d})")
    lines.append(f"data {model['data_hash'][:19]}..., created {model['created']}")
    return "\n".join(lines)


def plot(model: dict, path: str | Path) -> Path:
    """Held-out predicted vs observed, baseline and physics, one panel per target (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (target, unit) in zip(axes, (("recovery", "s"), ("latency", "ms"))):
        rows = model["cv"]["heldout"][target]
        obs = np.array([r["observed"] for r in rows], float)
        allv = [obs]
        for fam, marker, color in (("baseline", "o", "tab:orange"), ("physics", "s", "tab:blue")):
            pred = np.array([np.nan if r[fam] is None else r[fam] for r in rows], float)
            allv.append(pred[np.isfinite(pred)])
            e = model["cv"][target][fam]
            ax.scatter(obs, pred, marker=marker, color=color, alpha=0.8,
                       label=f"{fam} (MAPE {_pct(e['mape'])}, MAE {_num_s(e['mae'])} {unit})")
        vals = np.concatenate(allv)
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="perfect")
        ax.set_xlabel(f"observed {target} ({unit})")
        ax.set_ylabel(f"held-out prediction ({unit})")
        ax.set_title(f"{target}: {model['cv'][target]['protocol']}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"khaos model, {model['rows']['recovery_used']} recovered failures "
                 f"({model['data_hash'][7:19]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- CLI

def _cli_fit(args) -> None:
    df = load_results(args.results)
    model = fit(df, capacity=args.capacity, sources=args.results)
    out = Path(args.out) if args.out else Path(args.results[0]).with_name("model.json")
    save_model(model, out)
    print(format_report(model))
    print(f"model: {out}")
    if args.plot:
        print(f"plot: {plot(model, args.plot)}")


def add_cli(subparsers) -> None:
    """Register ``khaos fit`` on the ``khaos`` sub-command parser."""
    p = subparsers.add_parser("fit", help="fit latency and recovery models from profile results, with CV errors")
    p.add_argument("results", nargs="+", help="profile results.csv or .parquet (several are concatenated)")
    p.add_argument("--out", help="model file to write (default: model.json beside the first results file)")
    p.add_argument("--plot", help="also write a predicted-vs-observed PNG here")
    p.add_argument("--capacity", type=float,
                   help="the job's maximum throughput in events/s, if known (default: estimated from the data)")
    p.set_defaults(func=_cli_fit)
