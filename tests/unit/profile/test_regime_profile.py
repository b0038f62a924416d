"""The committed profile of the state-heavy regime: what the README and docs/results/ print
about it is recomputed here from examples/profile-regime-results.csv (50 real failures, 2026-12-01)."""

from __future__ import annotations

import pandas as pd
import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.model import fit as model_fit

RESULTS = REPO_ROOT / "examples" / "profile-regime-results.csv"


@pytest.fixture(scope="module")
def profile():
    return pd.read_csv(RESULTS)


@pytest.fixture(scope="module")
def model():
    return model_fit.fit(model_fit.load_results(RESULTS))


def test_the_profile_covers_the_grid_with_both_modes_and_loses_nothing(profile):
    assert len(profile) == 50 and profile["recovered"].all()
    assert sorted(profile["ci_s"].unique()) == [2, 4, 7, 11, 16]
    assert sorted(profile["utilization_target"].unique()) == [0.45, 0.55, 0.65, 0.75, 0.85]
    per_unit = profile.groupby(["ci_s", "utilization_target"])["mode"].apply(sorted)
    assert len(per_unit) == 25 and all(m == ["host", "process"] for m in per_unit)
    assert (profile["audit_lost"] == 0).all() and (profile["audit_duplicated"] == 0).all()
    assert profile["capacity"].between(4900, 4930).all()  # probed per cluster


def test_the_trade_off_at_85_percent(profile):
    top = profile[profile["utilization_target"] == 0.85].groupby("ci_s")
    recovery, latency = top["recovery_s"].mean(), top["latency_p99_ms"].mean()
    assert recovery[16] / recovery[2] == pytest.approx(3.83, abs=0.01)  # README: 148.0 s vs 38.6 s
    assert latency[2] / latency[16] == pytest.approx(8.16, abs=0.01)  # README: 1371 ms vs 168 ms


def test_the_printed_model_errors(model):
    cv = model.cv
    assert cv.recovery.protocol.startswith("leave-one-(ci,utilization)-unit-out") and cv.recovery.folds == 25
    assert cv.recovery.physics.mape == pytest.approx(0.152, abs=5e-4)
    assert cv.recovery.baseline.mape == pytest.approx(0.439, abs=5e-4)
    assert cv.recovery.physics.mae == pytest.approx(5.96, abs=5e-3)
    assert cv.recovery.baseline.mae == pytest.approx(15.34, abs=5e-3)
    assert cv.latency.physics.mape == pytest.approx(0.584, abs=5e-4)
    assert cv.extrapolation.fit_max == 0.70 and cv.extrapolation.test_min == 0.80
    assert cv.extrapolation.recovery.mape == pytest.approx(0.181, abs=5e-4)
    assert cv.extrapolation.latency.mape == pytest.approx(0.551, abs=5e-4)
