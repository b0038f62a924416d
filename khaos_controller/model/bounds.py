"""What no model of a profile can beat: bounds on the recovery MAPE that come from the measurements
themselves (the noise of single failures), computed before anyone tunes a model against a target.

- ``monotone_mape``: the least MAPE of ANY prediction that, per (interval, failure mode), does not fall
  as the load rises (physics: more load never speeds a catch-up), fitted to the very failures it is
  scored on. The exact optimum (a weighted-L1 isotonic fit; its values are measured values), by a small
  dynamic programme over the utilization levels.
- ``mode_blind_mape``: the least MAPE of a prediction that gives both failure modes of a unit one
  value (per unit, the best single value for its pair).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import numeric, recovered


def _recovered(results: pd.DataFrame) -> pd.DataFrame:
    df = results.assign(recovery_s=numeric(results, "recovery_s"))
    return df[recovered(results) & (df["recovery_s"] > 0)]


def _level(df: pd.DataFrame) -> pd.Series:
    return df["utilization_target"] if "utilization_target" in df else df["rate"]


def _monotone_cost(levels: list[np.ndarray]) -> float:
    """Least sum of |y - f| / y over non-decreasing f, one value per level (levels in rising load)."""
    candidates = np.unique(np.concatenate(levels))
    best = np.zeros(len(candidates))
    for y in levels:
        cost = np.abs(y[:, None] - candidates[None, :]) / y[:, None]
        best = cost.sum(axis=0) + np.minimum.accumulate(best)
    return float(best.min())


def monotone_mape(results: pd.DataFrame) -> tuple[float, int]:
    """(MAPE %, failures) of the best load-monotone fit per (interval, mode) to the recovered failures."""
    df = _recovered(results).assign(level=lambda d: _level(d))
    total, n = 0.0, 0
    for _key, group in df.groupby(["ci_s", "mode"]):
        levels = [g["recovery_s"].to_numpy(float) for _u, g in group.groupby("level", sort=True)]
        total += _monotone_cost(levels)
        n += len(group)
    return (100 * total / n if n else float("nan")), n


def mode_blind_mape(results: pd.DataFrame) -> tuple[float, int]:
    """(MAPE %, failures) of the best single value per unit for units with both modes recovered."""
    df = _recovered(results).assign(level=lambda d: _level(d))
    total, n = 0.0, 0
    for _key, unit in df.groupby(["ci_s", "level"]):
        if unit["mode"].nunique() < 2:
            continue
        total += _monotone_cost([unit["recovery_s"].to_numpy(float)])
        n += len(unit)
    return (100 * total / n if n else float("nan")), n


def line(results: pd.DataFrame) -> str:
    """What `khaos fit` prints: the floors of the recovery MAPE these measurements allow."""
    mono, n = monotone_mape(results)
    blind, pairs = mode_blind_mape(results)
    return (
        f"recovery floor (from the data, in-sample): MAPE >= {mono:.1f} % for any model rising with the load "
        f"({n} failures), >= {blind:.1f} % for one blind to the failure mode ({pairs} failures in pairs)"
    )
