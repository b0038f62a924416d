"""What checkpoints cost the running job: the capacity they take and the latency they add, per deployment.

One row per profiled deployment (its failures share the steady window before the first one):

* duty cycle ``d = min(1, C / ci)``: the share of time a checkpoint of duration C (s) is in flight at
  interval ci; full snapshots of a large state over a slow link run back to back at short intervals.
* capacity: ``cap(ci) = cap_ref x (1 - k d)``: a snapshot competes with processing for the task's core
  (RocksDB's upload runs beside the task thread), so the steady true processing rate (busy time) falls
  with the duty cycle. ``cap_ref`` is the profile's one reference capacity per cluster (the probe at the
  longest interval). ``k`` is fitted through the origin.
* latency: the mean per-second p99 over the steady window ``L = L0 + a x d / (1 - u_eff)``,
  ``u_eff = rate / cap(ci)``: the pause a checkpoint leaves, drained at the spare capacity.
* baselines: the capacity's mean over the training rows; latency by least squares on (ci, rate), the
  original Khaos model's features.

Errors are held out by deployment (leave one out): MAPE and MAE of the capacity and of the latency,
beside the baselines'. ``khaos fit`` stores the fit in the model (:func:`for_model`, ``Model.overhead``) where
the profile's capacity column is its reference capacity: the recovery fit and every prediction then use the
capacity at the interval, ``cap(ci)``, in the catch-up law (model/predict.py ``capacity_at``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import KhaosError
from .greybox import has_capacity

COLUMNS = {  # results.csv column -> name here
    "ci_s": "ci",
    "rate": "rate",
    "checkpoint_duration_ms": "ckpt_ms",
    "capacity_busy": "cap",
    "capacity_probe": "cap_ref",
    "latency_mean_ms": "lat",
}


@dataclass(frozen=True)
class Overhead:
    """The fitted constants."""

    k: float  # capacity lost at a duty cycle of 1, as a fraction of cap_ref
    l0_ms: float
    a_ms: float

    def capacity(self, ci, ckpt_s, cap_ref):
        """Steady capacity at interval ``ci`` with checkpoints of ``ckpt_s``."""
        return np.asarray(cap_ref, float) * (1 - self.k * duty(ci, ckpt_s))

    def latency_ms(self, ci, ckpt_s, rate, cap_ref):
        """Mean per-second p99 in the steady state."""
        return self.l0_ms + self.a_ms * _latency_feature(ci, ckpt_s, rate, self.capacity(ci, ckpt_s, cap_ref))


def duty(ci, ckpt_s) -> np.ndarray:
    """Share of time a checkpoint is in flight: min(1, duration / interval)."""
    return np.minimum(1.0, np.asarray(ckpt_s, float) / np.asarray(ci, float))


def _latency_feature(ci, ckpt_s, rate, cap) -> np.ndarray:
    u = np.minimum(np.asarray(rate, float) / np.asarray(cap, float), 0.99)
    return duty(ci, ckpt_s) / (1 - u)


def deployments(results: pd.DataFrame) -> pd.DataFrame:
    """One row per deployment (unit) with finite values, from its first failure's row (the later ones'
    windows follow a catch-up); KhaosError when a column is missing."""
    missing = [c for c in COLUMNS if c not in results.columns]
    if missing:
        raise KhaosError(f"the overhead model needs column(s) {', '.join(missing)} (a profile with a capacity probe)")
    if "t_fail" in results:  # each deployment's first failure: its window is the steady state before any
        results = results.sort_values("t_fail", kind="stable")
    key = results["trial"].astype(str).str.rsplit("-", n=1).str[0] if "trial" in results else results.index
    d = results[list(COLUMNS)].rename(columns=COLUMNS).apply(pd.to_numeric, errors="coerce")
    if "recovery_rule" in results:  # a job that never caught up has a capacity but no steady latency
        d.loc[results["recovery_rule"].astype(str).eq("overloaded").to_numpy(), "lat"] = np.nan
    d = d.groupby(key.to_numpy()).first()
    d["ckpt_s"] = d.pop("ckpt_ms") / 1000.0
    ok = np.isfinite(d.drop(columns="lat")).all(axis=1) & (d["ci"] > 0) & (d["cap"] > 0) & (d["cap_ref"] > 0)
    return d[ok].reset_index(drop=True)


def fit(rows: pd.DataFrame) -> Overhead:
    """k through the origin on the capacity lost, then L0 and a by least squares."""
    x = duty(rows["ci"], rows["ckpt_s"])
    lost = 1 - rows["cap"].to_numpy(float) / rows["cap_ref"].to_numpy(float)
    k = float(np.clip(np.dot(x, lost) / np.dot(x, x), 0.0, 0.99)) if np.dot(x, x) > 0 else 0.0
    partial = Overhead(k, 0.0, 0.0)
    steady = rows[np.isfinite(rows["lat"])]  # overloaded deployments: capacity only
    f = _latency_feature(
        steady["ci"],
        steady["ckpt_s"],
        steady["rate"],
        partial.capacity(steady["ci"], steady["ckpt_s"], steady["cap_ref"]),
    )
    X = np.column_stack([np.ones(len(f)), f])
    (l0, a), *_ = np.linalg.lstsq(X, steady["lat"].to_numpy(float), rcond=None)
    return Overhead(k, float(l0), float(max(a, 0.0)))


def _errors(obs, pred) -> dict:
    obs, pred = np.asarray(obs, float), np.asarray(pred, float)
    keep = np.isfinite(obs)  # no steady latency in an overloaded deployment
    obs, pred = obs[keep], pred[keep]
    return {"mape": float(np.mean(np.abs(pred - obs) / np.abs(obs))), "mae": float(np.mean(np.abs(pred - obs)))}


def heldout(rows: pd.DataFrame) -> dict:
    """Leave-one-deployment-out errors of the model and the baselines: {capacity: {...}, latency: {...}}."""
    if len(rows) < 3:
        raise KhaosError(f"the overhead model needs >= 3 deployments, the profile has {len(rows)}")
    cap, cap_base, lat, lat_base = (np.zeros(len(rows)) for _ in range(4))
    for i in range(len(rows)):
        train, test = rows.drop(index=rows.index[i]), rows.iloc[[i]]
        m = fit(train)
        cap[i] = m.capacity(test["ci"], test["ckpt_s"], test["cap_ref"])[0]
        lat[i] = m.latency_ms(test["ci"], test["ckpt_s"], test["rate"], test["cap_ref"])[0]
        cap_base[i] = train["cap"].mean()
        steady = train[np.isfinite(train["lat"])]  # overloaded deployments have no steady latency
        X = np.column_stack([np.ones(len(steady)), steady["ci"], steady["rate"]])
        coef, *_ = np.linalg.lstsq(X, steady["lat"].to_numpy(float), rcond=None)
        lat_base[i] = coef[0] + coef[1] * test["ci"].iloc[0] + coef[2] * test["rate"].iloc[0]
    return {
        "capacity": {"model": _errors(rows["cap"], cap), "baseline": _errors(rows["cap"], cap_base)},
        "latency": {"model": _errors(rows["lat"], lat), "baseline": _errors(rows["lat"], lat_base)},
        "n": len(rows),
    }


def report(results: pd.DataFrame) -> list[str]:
    """The lines `khaos fit --overhead` prints: the fitted constants and the held-out errors."""
    rows = deployments(results)
    m, cv = fit(rows), heldout(rows)
    lines = [
        f"overhead: capacity = cap_ref x (1 - {m.k:.3f} x min(1, C/ci)); "
        f"mean p99 = {m.l0_ms:.0f} + {m.a_ms:.0f} x min(1, C/ci) / (1 - u_eff) ms ({cv['n']} deployments)"
    ]
    for what, unit in (("capacity", "events/s"), ("latency", "ms")):
        e, b = cv[what]["model"], cv[what]["baseline"]
        lines.append(
            f"{what} (overhead) held-out: MAPE {100 * e['mape']:.1f} %, MAE {e['mae']:.0f} {unit} "
            f"(baseline: MAPE {100 * b['mape']:.1f} %, MAE {b['mae']:.0f} {unit})"
        )
    return lines


def for_model(results: pd.DataFrame) -> dict | None:
    """The fields of a model's OverheadFit (model/store.py) from a profile's results; None where the profile
    has no capacity probe or steady latency per deployment, fewer than 3 deployments, no checkpoint duration,
    or a capacity column that is not the probed reference (its capacities already carry the overhead)."""
    if "capacity" not in results or "capacity_probe" not in results:
        return None
    cap, ref = (pd.to_numeric(results[c], errors="coerce") for c in ("capacity", "capacity_probe"))
    if not np.allclose(cap, ref, rtol=1e-6, equal_nan=True):
        return None
    try:
        rows = deployments(results)
    except KhaosError:
        return None
    if len(rows) < 3 or not rows["ckpt_s"].mean() > 0:
        return None
    m = fit(rows)
    return {
        "k": m.k,
        "checkpoint_s": float(rows["ckpt_s"].mean()),
        "capacity_ref": float(rows["cap_ref"].median()),
        "l0_ms": max(0.0, m.l0_ms),
        "a_ms": m.a_ms,
        "deployments": len(rows),
    }


def shrink(rows: pd.DataFrame, ov: dict) -> pd.DataFrame:
    """Fit rows (model/fit.py: columns ci, rate, ckpt_s, cap = the reference capacity) with ``cap`` and ``u``
    at their interval: cap x (1 - k min(1, C/ci)), C the row's checkpoint duration (else the mean)."""
    out = rows.copy()
    ck = out["ckpt_s"].where(np.isfinite(out["ckpt_s"]) & (out["ckpt_s"] > 0), ov["checkpoint_s"])
    out["cap"] = out["cap"] * (1 - ov["k"] * duty(out["ci"], ck))
    out["u"] = out["rate"] / out["cap"]
    return out


def applied(results: pd.DataFrame, rec: pd.DataFrame, lat: pd.DataFrame):
    """(rec, lat, overhead) with the rows' capacity at their interval where the profile measured what
    checkpoints cost (model/fit.py asks); the rows as given and None where it did not, or where the
    shrunk capacity would fall to a row's rate (the overhead model would then contradict a recovery)."""
    ov = for_model(results) if "cap" in rec and "cap" in lat else None
    if ov is None:
        return rec, lat, None
    shrunk = [shrink(t, ov) for t in (rec, lat)]
    if not all(has_capacity(t) for t in shrunk):
        return rec, lat, None
    return shrunk[0], shrunk[1], ov
