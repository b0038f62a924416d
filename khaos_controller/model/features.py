"""Model features: the feature sets tried for each target and the design matrix they make.

Recovery: the job restarts ``L0 = since_checkpoint + downtime`` seconds behind; ``L0*rate`` is the
backlog in records, ``L0*rate/(cap-rate)`` the time to drain it. Latency: checkpoint overhead per
second ~ cost / CI, the cost growing with the rate. docs/models.md has the reasons.
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


def measured(train: pd.DataFrame) -> dict:
    """Observed per-row L0 (since_checkpoint + running) and checkpoint duration of training rows."""
    return {
        "L0": train["since_s"].to_numpy(float) + train["running_s"].to_numpy(float),
        "ckpt": train["ckpt_s"].to_numpy(float),
    }


def columns(features: list[str], ci, rate, mode, c: Constants, observed: dict | None = None) -> np.ndarray:
    """Design matrix. ``observed`` (training rows, :func:`measured`) supplies the measured L0 and
    checkpoint duration; without it (prediction) they are estimated from (ci, rate, mode)."""
    ci = np.asarray(ci, dtype=float)
    rate = np.asarray(rate, dtype=float)
    mode = np.asarray(mode, dtype=object)
    l0 = ckpt = None
    cols = []
    for f in features:
        if f.startswith("L0") and l0 is None:
            l0 = l0_hat(ci, mode, c)
            if observed is not None:
                l0 = np.where(np.isfinite(observed["L0"]), observed["L0"], l0)
        if f == "ckpt/ci" and ckpt is None:
            ckpt = ckpt_hat(ci, rate, c)
            if observed is not None:
                ckpt = np.where(np.isfinite(observed["ckpt"]), observed["ckpt"], ckpt)
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
            cap = c.capacity if c.capacity is not None else np.inf
            spare = cap - rate
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(np.where(spare > 0, l0 * rate / np.where(spare > 0, spare, 1.0), np.inf))
        elif f == "ckpt/ci":
            cols.append(ckpt / ci)
        elif f.startswith("mode="):
            cols.append((mode == f[5:]).astype(float))
        else:
            raise KhaosError(f"model uses unknown feature {f!r} (written by a newer khaos?)")
    return np.column_stack(cols) if cols else np.empty((len(ci), 0))
