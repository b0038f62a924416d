"""Prediction intervals: conformal ratio bands, their held-out coverage, and the line `khaos fit` prints,
recomputed from the model's own held-out predictions of a committed profile."""

from __future__ import annotations

import re

import numpy as np
import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.model import conformal, fit, report


def test_the_band_takes_the_finite_sample_ranks():
    r = np.arange(1, 20) / 10  # 19 ratios 0.1 .. 1.9: ranks floor(20 x 0.05) = 1 and ceil(20 x 0.95) = 19
    assert conformal.bounds(r, 0.9) == (0.1, 1.9)
    assert conformal.bounds(r[:10], 0.9) is None  # 10 ratios cannot bound 90 % (rank 11 > 10)
    assert conformal.ratios([10, 20, np.nan, 5], [5, 0, 4, 5]).tolist() == [2.0, 1.0]


def test_held_out_coverage_is_near_the_level_on_multiplicative_noise():
    rng = np.random.default_rng(7)
    pred = rng.uniform(5, 500, 600)
    obs = pred * rng.lognormal(0, 0.3, 600)
    folds = [(None, np.arange(i, 600, 20)) for i in range(20)]
    band = conformal.interval(obs, pred, folds)
    assert 0.86 <= band["coverage"] <= 0.94, band
    assert band["ratio_lo"] == pytest.approx(np.exp(-1.645 * 0.3), rel=0.12)
    assert band["ratio_hi"] == pytest.approx(np.exp(1.645 * 0.3), rel=0.12)


@pytest.fixture(scope="module")
def regime_model():
    return fit.fit(fit.load_results(REPO_ROOT / "examples" / "profile-regime-results.csv"))


def test_fit_prints_the_held_out_line_the_model_file_backs(regime_model):
    lines = [ln for ln in report.format_report(regime_model).splitlines() if ln.startswith("recovery held-out:")]
    assert len(lines) == 1
    m = re.match(
        r"recovery held-out: MAPE ([\d.]+) %, MAE ([\d.]+) s, 90 % interval coverage (\d+) % "
        r"\(x([\d.]+) \.\. x([\d.]+)\) \(baseline: MAPE ([\d.]+) %, MAE ([\d.]+) s\)$",
        lines[0],
    )
    assert m, lines[0]
    mape, mae, cover, lo, hi, base_mape, base_mae = map(float, m.groups())
    rows = regime_model.cv.heldout["recovery"]
    obs = np.array([r.observed for r in rows])
    phys, base = np.array([r.physics for r in rows]), np.array([r.baseline for r in rows])
    assert mape == pytest.approx(100 * np.mean(np.abs(phys - obs) / obs), abs=0.05)
    assert mae == pytest.approx(np.mean(np.abs(phys - obs)), abs=0.005)
    assert base_mape == pytest.approx(100 * np.mean(np.abs(base - obs) / obs), abs=0.05)
    assert base_mae == pytest.approx(np.mean(np.abs(base - obs)), abs=0.005)
    assert (lo, hi) == pytest.approx(conformal.bounds(obs / phys), abs=0.005)
    folds, _ = fit.cv_folds(fit.usable(fit.load_results(REPO_ROOT / "examples" / "profile-regime-results.csv"))[0])
    assert cover == pytest.approx(100 * conformal.coverage(obs, phys, folds), abs=0.5)
    assert 85 <= cover <= 95  # the band is calibrated on this profile (92 % when written)
