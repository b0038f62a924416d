"""Bounds on the recovery MAPE from the measurements: exact on small hand-made profiles."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.model import bounds


def profile(rows: list[tuple[float, float, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"ci_s": c, "utilization_target": u, "mode": m, "recovery_s": r, "recovered": True} for c, u, m, r in rows]
    )


def test_a_profile_that_rises_with_the_load_has_no_floor():
    df = profile([(2, 0.5, "process", 10), (2, 0.65, "process", 20), (2, 0.8, "process", 40)])
    assert bounds.monotone_mape(df) == (0.0, 3)


def test_a_recovery_that_falls_with_the_load_costs_its_least_relative_gap():
    # 100 s at 80 %, 50 s at 85 %: the best non-decreasing fit keeps 50 for both, 50 % off on one of two
    df = profile([(45, 0.8, "process", 100), (45, 0.85, "process", 50), (45, 0.8, "host", 7)])
    mape, n = bounds.monotone_mape(df)
    assert n == 3 and mape == pytest.approx(100 * 0.5 / 3)


def test_the_mode_blind_floor_is_half_of_one_minus_the_pair_ratio():
    df = profile([(2, 0.5, "process", 30), (2, 0.5, "host", 120), (2, 0.65, "process", 50)])
    mape, n = bounds.mode_blind_mape(df)
    assert n == 2 and mape == pytest.approx(100 * (1 - 30 / 120) / 2)


def test_the_monotone_floor_is_the_brute_force_optimum_on_the_committed_profile():
    df = pd.read_csv(REPO_ROOT / "examples" / "profile-costly-results.csv")
    df = df[df["recovered"].astype(str) == "True"]
    total = 0.0
    for _key, g in df.groupby(["ci_s", "mode"]):
        g = g.sort_values("utilization_target")
        y = g["recovery_s"].to_numpy(float)
        fits = (f for f in itertools.product(sorted(set(y)), repeat=len(y)) if all(np.diff(f) >= 0))
        total += min(np.sum(np.abs(y - np.array(f)) / y) for f in fits)
    assert bounds.monotone_mape(df) == pytest.approx((100 * total / len(df), len(df)))
    assert bounds.monotone_mape(df)[0] > 10  # the recovery target is below what the data allow
