"""Model features: the feature sets tried for each target and the design matrix they make.

Recovery: the job restarts ``L0 = since_checkpoint + downtime`` seconds behind; ``L0*rate`` is the
backlog in records, ``L0*rate/(cap-rate)`` the time to drain it (``= L0 * u/(1-u)`` with the utilization
``u = rate / cap``), ``state_gb`` the state it restores first. Latency: checkpoint overhead per second ~
cost / CI, the cost growing with the rate, queueing growing as ``u/(1-u)``. docs/models.md has the reasons.

Where the profile measured each cluster's capacity (column ``capacity``, profile/capacity.py), training
uses each row's own capacity, and a prediction uses the capacity it is given (the production cluster's,
estimated online) or, without one, the profiled clusters' median (``constants.capacity``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..errors import KhaosError
from .store import REFERENCE_MODE, Constants

MODES = "<modes>"  # placeholder in a feature set: one indicator per non-reference mode seen

RECOVERY_SETS: dict[str, list[str]] = {
    "drain": ["L0", "L0*rate/(cap-rate)", MODES],
    "backlog": ["L0", "L0*rate", MODES],
    "ci+rate": ["ci", "rate", MODES],
}
# With a measured capacity: the grey-box law, recovery = detect + restart (intercept, per mode) + restore
# (state_gb) + catch-up (L0 * u/(1-u)), and variants; model/greybox.py adds the learned residual.
GREYBOX_SETS: dict[str, list[str]] = {
    "greybox": ["L0*rate/(cap-rate)", "state_gb", MODES],
    "greybox+L0": ["L0", "L0*rate/(cap-rate)", "state_gb", MODES],
    "drain-only": ["L0*rate/(cap-rate)", MODES],
}
# Latency with a measured capacity: queueing u/(1-u), checkpoint time share ckpt/ci, and the backlog a
# checkpoint's pause leaves, drained at the spare capacity: ckpt/ci * 1/(1-u).
LATENCY_CAPACITY_SETS: dict[str, list[str]] = {
    "queue+ckpt": ["u/(1-u)", "ckpt/ci"],
    "queue+pause": ["u/(1-u)", "ckpt/ci/(1-u)"],
    "queue+pause+state": ["u/(1-u)", "ckpt/ci/(1-u)", "state_gb"],
    "queue+interval": ["u/(1-u)", "1/ci", "1/ci/(1-u)"],
}
LATENCY_SETS: dict[str, list[str]] = {
    "overhead": ["rate", "1/ci"],
    "overhead*rate": ["rate", "1/ci", "rate/ci"],
    "ckpt-cost": ["rate", "ckpt/ci"],
}
BASELINE_FEATURES = ["rate", "ci"]
# Capacity grid for the drain feature, as multiples of the highest profiled rate (geometric, 1.05x..50x).
CAPACITY_FACTORS = tuple(float(x) for x in np.geomspace(1.05, 50.0, 60))


def expand(feature_set: list[str], modes: Iterable[str]) -> list[str]:
    """The feature names of a set, with MODES replaced by one ``mode=<m>`` per non-reference mode."""
    out: list[str] = []
    for f in feature_set:
        if f == MODES:
            out += [f"mode={m}" for m in sorted(modes) if m != REFERENCE_MODE]
        else:
            out.append(f)
    return out


def l0_hat(ci, mode, c: Constants) -> np.ndarray:
    """Seconds of input behind at restart, as predicted from the CI: (ci - margin) + downtime(mode)."""
    down = c.downtime_s
    d = np.array([down.get(m, down["*"]) for m in mode], dtype=float)
    return np.maximum(ci - c.margin_s, 0.0) + d


def ckpt_hat(ci, rate, c: Constants) -> np.ndarray:
    """Predicted checkpoint duration (s) from the fitted checkpoint-cost line."""
    k = c.ckpt_model
    return k.intercept + k.rate * rate + k.ci * ci


def state_hat(ci, rate, c: Constants) -> np.ndarray:
    """Predicted checkpointed state (GB) from the fitted state-size line."""
    k = c.state_model
    if k is None:
        return np.zeros(np.shape(ci))
    return k.intercept + k.rate * np.asarray(rate, float) + k.ci * np.asarray(ci, float)


def measured(train: pd.DataFrame) -> dict:
    """Observed per-row L0 (age of the restored checkpoint, else since_checkpoint, + running), checkpoint
    duration, state size and capacity of training rows."""
    since = train["since_s"].to_numpy(float)
    if "age_s" in train:
        age = train["age_s"].to_numpy(float)
        since = np.where(np.isfinite(age), age, since)
    n = len(train)
    return {
        "L0": since + train["running_s"].to_numpy(float),
        "ckpt": train["ckpt_s"].to_numpy(float),
        "state": train["state_gb"].to_numpy(float) if "state_gb" in train else np.full(n, np.nan),
        "cap": train["cap"].to_numpy(float) if "cap" in train else np.full(n, np.nan),
    }


def catchup_s(behind_s, rate, capacity):
    """The catch-up law, the one definition Khaos uses: seconds to drain ``behind_s`` seconds of input
    arriving at ``rate`` with ``capacity`` (events/s), ``behind_s x rate / (capacity - rate)`` =
    ``behind_s x u / (1 - u)``; inf at or above capacity. Scalars or arrays."""
    behind_s, rate, capacity = (np.asarray(x, dtype=float) for x in (behind_s, rate, capacity))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rate < capacity, behind_s * rate / np.where(rate < capacity, capacity - rate, 1.0), np.inf)


def _or(observed: dict | None, key: str, estimate: np.ndarray) -> np.ndarray:
    """The observed values of ``key`` where finite, else the estimate."""
    if observed is None:
        return estimate
    return np.where(np.isfinite(observed[key]), observed[key], estimate)


def columns(
    features: list[str], ci, rate, mode, c: Constants, observed: dict | None = None, capacity=None
) -> np.ndarray:
    """Design matrix. ``observed`` (training rows, :func:`measured`) supplies the measured L0, checkpoint
    duration, state size and capacity; without it (prediction) they are estimated from (ci, rate, mode)
    and ``capacity`` (events/s; default: the model's ``constants.capacity``)."""
    ci = np.asarray(ci, dtype=float)
    rate = np.asarray(rate, dtype=float)
    mode = np.asarray(mode, dtype=object)
    l0 = ckpt = None
    base_cap = capacity if capacity is not None else (c.capacity if c.capacity is not None else np.inf)
    cap = _or(observed, "cap", np.broadcast_to(np.asarray(base_cap, dtype=float), rate.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = rate / cap
        spare = np.where(u < 1, 1.0 / np.where(u < 1, 1.0 - u, 1.0), np.inf)  # 1/(1-u), inf at or over capacity
    cols = []
    for f in features:
        if f.startswith("L0") and l0 is None:
            l0 = _or(observed, "L0", l0_hat(ci, mode, c))
        if f.startswith("ckpt/ci") and ckpt is None:
            ckpt = _or(observed, "ckpt", ckpt_hat(ci, rate, c))
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
            cols.append(catchup_s(l0, rate, cap))
        elif f == "ckpt/ci":
            cols.append(ckpt / ci)
        elif f == "ckpt/ci/(1-u)":
            cols.append(ckpt / ci * spare)
        elif f == "u/(1-u)":
            cols.append(np.where(u < 1, u * spare, np.inf))
        elif f == "u":
            cols.append(u)
        elif f == "1/ci/(1-u)":
            cols.append(spare / ci)
        elif f == "state_gb":
            cols.append(_or(observed, "state", state_hat(ci, rate, c)))
        elif f.startswith("mode="):
            cols.append((mode == f[5:]).astype(float))
        else:
            raise KhaosError(f"model uses unknown feature {f!r} (written by a newer khaos?)")
    return np.column_stack(cols) if cols else np.empty((len(ci), 0))
