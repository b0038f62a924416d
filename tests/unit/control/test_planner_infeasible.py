"""The planner where no interval meets both limits: the least expected violation, the order at or above
capacity, and the hysteresis that keeps a jittering rate from flapping the interval (pace mode: no dead
band, no cooldown)."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
import pytest
import yaml
from support.models import drain_model
from support.models import hand_model as make_model

from khaos_controller import REPO_ROOT
from khaos_controller.control import planner
from khaos_controller.control.cli import add_recommend
from khaos_controller.control.config import load_config
from khaos_controller.control.explain import explain
from khaos_controller.control.planner import recommend
from khaos_controller.control.policy import Policy
from khaos_controller.errors import KhaosError
from khaos_controller.model import fit, store
from khaos_controller.model.store import Spec

CAP = 5000.0  # drain_model's capacity, events/s
EVERY_4_MIN = 1 / 15  # mtbf_h: failures every 4 minutes, as in the regime evaluations
SAFETY_NET_S = 60.0


def pace_policy(tmp_path, model, limits: dict, ci: dict, mtbf_h: float = EVERY_4_MIN) -> Policy:
    """The daemon's rules in pace mode (Policy.of on a real config; safety net 60 s)."""
    raw = {
        "job": "tj",
        "flink": {"rest_url": "http://127.0.0.1:1"},
        "model": str(store.save(model, tmp_path / "model.json")),
        "limits": limits,
        "mtbf_h": mtbf_h,
        "ci": ci,
        "state_dir": str(tmp_path / "state"),
        "realize": {"mode": "pace"},
    }
    (tmp_path / "state").mkdir(exist_ok=True)
    path = tmp_path / "controller.yml"
    path.write_text(yaml.safe_dump(raw))
    return Policy.of(load_config(path), "pace", safety_net_s=SAFETY_NET_S)


def walk(seed: int, lo: float, hi: float, steps: int = 60) -> list[float]:
    """Loads (fractions of capacity) that move by up to +-3 % of capacity from step to step, within [lo, hi]."""
    rng = np.random.default_rng(seed)
    u = float(rng.uniform(lo, hi))
    out = []
    for _ in range(steps):
        u = float(np.clip(u + rng.uniform(-0.03, 0.03), lo, hi))
        out.append(u)
    return out


def drive(model, policy: Policy, loads: list[float], current: float) -> list[planner.Decision]:
    """One decision per load, each starting from the interval the previous one left in force."""
    out = []
    for k, u in enumerate(loads):
        d = recommend(model, u * CAP, current, policy, now=15.0 * k)
        out.append(d)
        current = d.ci_s
    return out


def changes(decisions: list[planner.Decision]) -> int:
    return sum(d.action == "change" for d in decisions)


def test_a_jittering_load_at_and_near_capacity_never_falls_to_the_safety_net(tmp_path):
    # the grey-box shapes: recovery drains the replay at the spare capacity, the p99 queues as u/(1-u),
    # both unbounded at capacity. With failures every 4 minutes the shortest interval has the least
    # expected violation at every load from 84 % up; at capacity every recovery is unbounded, where
    # the rule before fell back to the least overhead: the safety net
    m = drain_model(CAP, lat=(100.0, 100.0), queue_ms=20.0)
    p = pace_policy(tmp_path, m, {"latency_ms": 1000, "recovery_s": 45}, {"min": 2, "max": 120})
    assert (p.dead_band_s, p.cooldown_s, p.ci_max, p.hysteresis) == (0.0, 0.0, SAFETY_NET_S, 0.3)
    at_capacity = 0
    for seed in range(10):
        ds = drive(m, p, walk(seed, 0.84, 1.0), current=SAFETY_NET_S)  # the daemon starts on the safety net
        assert changes(ds) <= 2, [d.ci_s for d in ds]
        assert all(d.ci_s < SAFETY_NET_S for d in ds), [d.ci_s for d in ds]
        assert all(d.alert for d in ds if not d.feasible)
        at_capacity += sum(math.isinf(d.best_recovery_s) for d in ds)
    assert at_capacity > 0  # the walks reached capacity


def test_on_the_regime_fit_the_paced_interval_stays_off_the_safety_net():
    # the fit of the regime profile (the evaluations' job: capacity 4918 events/s) with the evaluations'
    # limits and failure rate: 20 walks over 84-100 % of capacity
    m = fit.fit(fit.load_results(REPO_ROOT / "examples" / "profile-regime-results.csv"))
    cap = m.recovery.physics.constants.capacity
    p = Policy(
        l_max_ms=1000, r_max_s=45, ci_min=2, ci_max=SAFETY_NET_S, dead_band_s=0, cooldown_s=0, mtbf_h=EVERY_4_MIN
    )
    held = []
    for seed in range(20):
        current = SAFETY_NET_S
        for k, u in enumerate(walk(seed, 0.84, 1.0)):
            d = recommend(m, u * cap, current, p, now=15.0 * k, capacity=cap)
            assert 2.0 <= d.ci_s <= 9.0, (seed, k, u, d.reason)
            if d.action == "keep" and not d.feasible and math.isfinite(d.current_violation_s_per_h):
                held.append(d.current_violation_s_per_h / d.best_violation_s_per_h)
            current = d.ci_s
    assert held and max(held) <= 1 / (1 - p.hysteresis) + 1e-9  # what the hysteresis may cost


def test_the_hysteresis_holds_the_interval_where_two_strategies_cross():
    # latency 100 + 1000/ci ms (<= 300 ms needs ci >= 5), failures every 4 minutes: below ~96.8 % load
    # keeping the p99 (5 s) costs the fewest violation s/h, above it breaking the p99 to recover faster
    # (1 s). A load jittering around the crossing flips the least expected violation back and forth
    m = drain_model(CAP)
    p = Policy(l_max_ms=300, r_max_s=45, ci_min=1, ci_max=SAFETY_NET_S, dead_band_s=0, cooldown_s=0, mtbf_h=EVERY_4_MIN)
    flaps = 0
    for seed in range(10):
        loads = walk(seed, 0.95, 0.985)
        ds = drive(m, p, loads, current=SAFETY_NET_S)
        assert changes(ds) <= 2 and {d.ci_s for d in ds} <= {1.0, 5.0}, [d.ci_s for d in ds]
        flaps = max(flaps, changes(drive(m, replace(p, hysteresis=0.0), loads, current=SAFETY_NET_S)))
    assert flaps > 10  # without it the interval follows every crossing


def test_the_infeasible_pick_has_the_least_expected_violation():
    m = drain_model(CAP)
    p = Policy(l_max_ms=300, r_max_s=45, ci_min=1, ci_max=SAFETY_NET_S, mtbf_h=EVERY_4_MIN)
    picks = {}
    for u in (0.84, 0.9, 0.95, 0.97, 0.99):
        d = recommend(m, u * CAP, 20.0, p)
        assert not d.feasible and d.alert
        assert d.best_violation_s_per_h == min(c.violation_s_per_h for c in d.candidates)
        picks[u] = d.best_ci_s
    # 90 %: 5 s, 2175 violation s/h (15 failures x (95 + 50) s), 1 s breaks the p99: 3600 + 15 x (59 + 14)
    assert picks == {0.84: 5.0, 0.9: 5.0, 0.95: 5.0, 0.97: 1.0, 0.99: 1.0}
    d = recommend(m, 0.9 * CAP, 20.0, p)
    assert d.best_violation_s_per_h == pytest.approx(2175.0)
    assert d.reason.startswith(
        "no interval in 1-60 s meets both limits; the least expected violation is at 5 s, which breaks the "
        "recovery limit: 2175.0 violation s/h against 6225.0 violation s/h at the current 20 s;"
    )
    text = explain(d)
    assert "ALERT: no interval in 1-60 s meets both limits" in text
    assert "the least expected violation at a 0.0666667 h MTBF, 2175.0 violation s per hour" in text


@pytest.mark.parametrize("load", [1.0, 1.3])
def test_at_or_above_capacity_the_shortest_interval_replays_least(load):
    m = drain_model(CAP)
    p = Policy(l_max_ms=300, r_max_s=45, ci_min=2, ci_max=SAFETY_NET_S, mtbf_h=EVERY_4_MIN)
    d = recommend(m, load * CAP, SAFETY_NET_S, p)
    assert all(math.isinf(c.recovery_s) for c in d.candidates)
    assert d.best_ci_s == 2.0 and d.action == "change" and d.alert
    assert "none is predicted to recover at this rate" in d.reason
    assert "replays the least input after a failure (2 s against 60 s at the current interval)" in d.reason
    assert recommend(m, load * CAP, SAFETY_NET_S, replace(p, ci_min=7.0)).best_ci_s == 7.0


def test_the_safety_net_only_when_it_beats_every_other_interval_by_the_hysteresis():
    # a recovery that falls with the interval (60 + 3000/ci s, over R_max 50 s everywhere): the longer,
    # the fewer violation s/h
    m = make_model()
    m.recovery.physics = Spec(name="t", features=["1/ci"], coef=[3000.0], intercept=60.0)
    p = Policy(l_max_ms=300, r_max_s=50, ci_min=5, ci_max=SAFETY_NET_S, mtbf_h=EVERY_4_MIN)
    d = recommend(m, 1000, 20.0, p)
    least = min(d.candidates, key=lambda c: c.violation_s_per_h)
    assert least.ci_s == SAFETY_NET_S  # 60 s is lowest, but only 1 % below 59 s
    assert d.best_ci_s == 59.0 and d.action == "change"
    assert "the least expected violation is at 59 s short of the longest 60 s" in d.reason
    # only 60 s keeps the p99 (100 + 1000/60 = 116.7 ms; 59 s: 116.9 ms): it is lower than every other by 3600 s/h
    d = recommend(m, 1000, 20.0, replace(p, l_max_ms=116.8))
    assert d.best_ci_s == SAFETY_NET_S and d.action == "change"


def test_the_hysteresis_keeps_the_interval_unless_the_move_cuts_the_expected_violation_enough():
    m = drain_model(CAP)
    p = Policy(l_max_ms=300, r_max_s=45, ci_min=1, ci_max=SAFETY_NET_S, dead_band_s=0, cooldown_s=0, mtbf_h=EVERY_4_MIN)
    # 90 % load: 5 s is best (2175 s/h); 6 s costs 2445 s/h (11 % more), 9 s 3255 s/h (33 % more)
    d = recommend(m, 0.9 * CAP, 6.0, p)
    assert d.best_ci_s == 5.0 and d.action == "keep" and d.ci_s == 6.0 and d.alert
    assert (
        d.action_reason == "moving to 5 s would cut the expected violation by 11 %, not more than the 30 % hysteresis"
    )
    assert d.current_violation_s_per_h == pytest.approx(2445.0)
    assert recommend(m, 0.9 * CAP, 6.0, replace(p, hysteresis=0.0)).action == "change"
    d = recommend(m, 0.9 * CAP, 9.0, p)
    assert d.action == "change" and d.ci_s == 5.0
    # an interval outside ci_min..ci_max is not held
    assert recommend(m, 0.9 * CAP, 61.0, replace(p, hysteresis=0.9)).action == "change"  # 87 % cut


def test_the_hysteresis_never_blocks_removing_a_predicted_breach():
    m = drain_model(CAP)
    p = Policy(l_max_ms=300, r_max_s=45, ci_min=1, ci_max=SAFETY_NET_S, dead_band_s=0, cooldown_s=0, mtbf_h=EVERY_4_MIN)
    # 90 %: nothing feasible, 6 s is held (above); 79 %: 5 s meets both limits (recovery 42.6 s, p99 300 ms)
    # and 6 s breaks R_max (46.4 s). The move cuts only 11 % of the expected violation, and is made
    ds = drive(m, p, [0.9, 0.79], current=6.0)
    assert [d.action for d in ds] == ["keep", "change"]
    assert ds[1].ci_s == 5.0 and ds[1].feasible and not ds[1].alert
    assert ds[1].best_violation_s_per_h > 0.7 * ds[1].current_violation_s_per_h
    # the same with any hysteresis, and for a breach of the latency limit
    assert recommend(m, 0.79 * CAP, 6.0, replace(p, hysteresis=0.9)).action == "change"
    d = recommend(make_model(), 1000, 4.0, replace(p, l_max_ms=300, r_max_s=50, hysteresis=0.9))  # p99 350 ms
    assert d.action == "change" and d.feasible and not d.alert


def test_recommend_takes_the_hysteresis_flag(tmp_path, capsys):
    path = store.save(drain_model(CAP), tmp_path / "m.json")
    parser = argparse.ArgumentParser(prog="khaos")
    add_recommend(parser.add_subparsers(dest="cmd", required=True))
    argv = ["recommend", "--model", str(path), "--rate", "4500", "--current-ci", "6", "--l-max", "300"]
    argv += ["--r-max", "45", "--mtbf-h", "0.0667", "--ci-max", "60", "--dead-band", "0"]
    for extra, action in (([], "keep"), (["--hysteresis", "0"], "change")):
        args = parser.parse_args(argv + extra)
        args.func(args)
        assert f"action: {action}" in capsys.readouterr().out


def test_the_upper_end_of_the_recovery_band_is_held_to_r_max_when_asked(tmp_path):
    """limits.recovery_bound: upper holds prediction x the band's upper ratio to R_max; point (the default)
    the prediction; upper with a model that has no band is one line at start."""
    m = drain_model(CAP, lat=(100.0, 100.0))
    with_band = m.model_copy(deep=True)
    with_band.cv.recovery.interval = store.Band(level=0.9, ratio_lo=0.8, ratio_hi=1.5, coverage=0.9)
    limits = {"latency_ms": 1000.0, "recovery_s": 60.0}
    rare = 1000.0  # failures so rare that the longest interval within the limit wins
    point = pace_policy(tmp_path, with_band, limits, {"min": 2, "max": 120}, rare)
    upper = pace_policy(tmp_path, with_band, {**limits, "recovery_bound": "upper"}, {"min": 2, "max": 120}, rare)
    assert (point.recovery_band, upper.recovery_band) == (1.0, 1.5)
    at = 0.5 * CAP
    d_point, d_upper = recommend(with_band, at, 30.0, point, now=0.0), recommend(with_band, at, 30.0, upper, now=0.0)
    assert d_upper.ci_s < d_point.ci_s, (d_point.ci_s, d_upper.ci_s)  # the bad case asks for less replay
    with pytest.raises(KhaosError, match="recovery_bound: upper needs a model with a recovery band"):
        pace_policy(tmp_path, m, {**limits, "recovery_bound": "upper"}, {"min": 2, "max": 120})
