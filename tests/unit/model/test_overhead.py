"""The overhead model: capacity lost with the checkpoint duty cycle, latency added, held out by deployment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.model import overhead


def profile(k=0.35, l0=90.0, a=60.0, noise=0.02, seed=3) -> pd.DataFrame:
    """Two failures per deployment, 5 intervals x 4 levels; full snapshots of 6 s over the store."""
    rng = np.random.default_rng(seed)
    rows = []
    for ci in (2, 5, 15, 45, 120):
        for u in (0.5, 0.65, 0.8, 0.85):
            ckpt = 6.0 * rng.uniform(0.9, 1.1)
            cap = 3500 * (1 - k * min(1, ckpt / ci)) * rng.normal(1, noise)
            rate = u * 3500
            lat = (l0 + a * min(1, ckpt / ci) / (1 - min(rate / cap, 0.99))) * rng.normal(1, noise)
            for mode in ("process", "host"):
                rows.append(
                    {
                        "trial": f"u-ci{ci}-u{u}-{mode}0",
                        "ci_s": ci,
                        "rate": rate,
                        "checkpoint_duration_ms": 1000 * ckpt,
                        "capacity_busy": cap,
                        "capacity_probe": 3500.0,
                        "latency_mean_ms": lat,
                    }
                )
    return pd.DataFrame(rows)


def test_the_constants_come_back_and_held_out_errors_beat_the_baselines():
    df = profile()
    rows = overhead.deployments(df)
    assert len(rows) == 20  # one row per deployment, not per failure
    m = overhead.fit(rows)
    assert m.k == pytest.approx(0.35, abs=0.03) and m.l0_ms == pytest.approx(90, abs=20)  # overloaded units weigh most
    cv = overhead.heldout(rows)
    assert cv["capacity"]["model"]["mape"] < 0.05 < cv["capacity"]["baseline"]["mape"]
    assert cv["latency"]["model"]["mape"] < 0.5 * cv["latency"]["baseline"]["mape"]
    lines = overhead.report(df)
    assert lines[0].startswith("overhead: capacity = cap_ref x (1 - 0.3") and "(20 deployments)" in lines[0]
    assert lines[1].startswith("capacity (overhead) held-out: MAPE ") and "baseline: MAPE" in lines[1]


def test_a_profile_without_a_capacity_probe_is_one_line():
    with pytest.raises(KhaosError, match="needs column\\(s\\) capacity_probe"):
        overhead.deployments(profile().drop(columns=["capacity_probe"]))
    with pytest.raises(KhaosError, match=">= 3 deployments, the profile has 2"):
        overhead.heldout(overhead.deployments(profile().head(4)))
