"""The overhead model: capacity lost with the checkpoint duty cycle, latency added, held out by deployment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.models import costly_profile as costly

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


def test_the_fit_keeps_the_overhead_and_the_catch_up_law_uses_the_capacity_at_each_interval():
    from khaos_controller.model import fit as model_fit
    from khaos_controller.model.predict import capacity_at, predict

    m = model_fit.fit(costly())
    assert m.overhead is not None and m.overhead.k == pytest.approx(0.35, abs=0.03)
    assert m.overhead.capacity_ref == 3500.0 and m.overhead.deployments == 20
    # 55 % of the reference is 85 % of what the job has at 2 s (3500 x 0.65): the law sees the difference
    short, long = (predict(m, 0.55 * 3500, ci, "process")[1] for ci in (2.0, 120.0))
    u2 = 0.55 / 0.65
    assert short == pytest.approx(8 + 10 * u2 / (1 - u2), rel=0.2)
    assert short > 2 * predict(m, 0.3 * 3500, 2.0, "process")[1]
    assert np.isfinite(long)
    # above what 2 s leaves (3500 x 0.65 = 2275/s) a 2 s interval never catches up; 120 s does
    assert predict(m, 2500.0, 2.0, "process")[1] == np.inf and np.isfinite(predict(m, 2500.0, 120.0, "process")[1])
    # an online capacity measured at 2 s is the reference x 0.65: turned back, then shrunk per interval
    at = capacity_at(m, [2.0, 120.0], capacity=0.65 * 3500, measured_at_ci=2.0)
    assert at[0] == pytest.approx(0.65 * 3500, rel=0.05) and at[1] == pytest.approx(3500 * (1 - 0.35 * 0.05), rel=0.05)


def test_a_profile_whose_capacity_column_is_not_the_reference_gets_no_overhead():
    df = costly()
    df["capacity"] = df["capacity_busy"]  # capacities measured at the interval already carry the overhead
    assert overhead.for_model(df) is None
    assert overhead.for_model(df.drop(columns=["capacity_probe"])) is None
    assert overhead.for_model(costly().head(4)) is None  # 2 deployments


def test_with_the_overhead_the_short_intervals_recovery_near_capacity_is_not_under_predicted():
    from khaos_controller.control.planner import recommend
    from khaos_controller.control.policy import Policy
    from khaos_controller.model import fit as model_fit
    from khaos_controller.model.predict import predict

    aware = model_fit.fit(costly())
    blind = model_fit.fit(costly().assign(capacity=lambda d: d["capacity"] * 1.01))  # not the reference: no overhead
    assert blind.overhead is None
    u = 0.62 / 0.65  # 62 % of the reference is 95 % of what a 2 s interval leaves
    truth = 8 + 10 * u / (1 - u)
    assert predict(aware, 0.62 * 3500, 2.0, "process")[1] == pytest.approx(truth, rel=0.25)
    assert predict(blind, 0.62 * 3500, 2.0, "process")[1] < truth / 2
    assert aware.cv.recovery.physics.mape < 0.5 * blind.cv.recovery.physics.mape
    p = Policy(l_max_ms=1000, r_max_s=120, ci_min=2, ci_max=120, dead_band_s=0, cooldown_s=0)
    low, high = (recommend(aware, level * 3500, 60.0, p).best_ci_s for level in (0.3, 0.6))
    assert low >= 2 * high and high > 2 * 6.0  # never the intervals a 6 s checkpoint keeps busy


def test_a_deployment_is_read_from_its_first_failure_whose_window_is_steady():
    df = profile().assign(t_fail=lambda d: 1e9 + d.index.to_numpy(float))
    df.loc[df["trial"].str.endswith("host0"), "t_fail"] += 1e6  # the host kill came second in each unit
    df.loc[df["trial"].str.endswith("host0"), "capacity_busy"] = 1.0  # measured in a catch-up's tail
    df = df.iloc[::-1].reset_index(drop=True)  # the results file's order is not the failures' order
    assert (overhead.deployments(df)["cap"] > 1000).all()


def test_above_every_intervals_capacity_the_planner_keeps_the_most_capacity_not_the_shortest_replay():
    from khaos_controller.control.planner import recommend
    from khaos_controller.control.policy import Policy
    from khaos_controller.model import fit as model_fit

    m = model_fit.fit(costly())
    p = Policy(l_max_ms=1000, r_max_s=120, ci_min=2, ci_max=120, dead_band_s=0, cooldown_s=0, mtbf_h=1 / 15)
    d = recommend(m, 1.05 * 3500, 60.0, p)  # above the reference: no interval ever catches up
    assert d.best_recovery_s == float("inf")
    assert d.ci_s == 120.0  # the backlog grows by rate - cap(ci) a second: least where checkpoints cost least
    blind = model_fit.fit(costly().assign(capacity=lambda df: df["capacity"] * 1.01))  # no overhead model
    assert recommend(blind, 1.05 * 3535, 60.0, p).ci_s == 2.0  # without one: the shortest replay, as before
