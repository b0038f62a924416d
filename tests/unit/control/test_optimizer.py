"""Checkpoint-interval recommendation on models with a known answer."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from support import PROFILE as REAL
from support.models import hand_model as make_model
from support.models import rate_model

from khaos_controller.control import planner
from khaos_controller.control import planner as optimizer
from khaos_controller.control.cli import add_recommend
from khaos_controller.control.explain import explain
from khaos_controller.control.policy import Policy, candidate_intervals, measured_capacity
from khaos_controller.errors import KhaosError
from khaos_controller.model import fit as models
from khaos_controller.model import store
from khaos_controller.model.store import Spec
from khaos_controller.schema import MAX_LATENCY_MS, MAX_RECOVERY_S

_NAMES = {"dead_band": "dead_band_s", "step": "ci_step"}


def recommend(model, rate, current_ci, last_change_ts=None, now=None, breach_overrides_cooldown=True, **policy):
    """planner.recommend with the policy given as keywords (the old optimizer's signature)."""
    return optimizer.recommend(
        model,
        rate,
        current_ci,
        Policy(**{_NAMES.get(k, k): v for k, v in policy.items()}),
        last_change_ts=last_change_ts,
        now=now,
        breach_overrides_cooldown=breach_overrides_cooldown,
    )


# With the default make_model: latency <= 300 ms  <=> ci >= 5; recovery <= 50 s <=> ci <= 45.
LIMITS = dict(l_max_ms=300.0, r_max_s=50.0)


def test_picks_the_longest_feasible_interval():
    r = recommend(make_model(), rate=2000, current_ci=10, **LIMITS)
    assert r.best_ci_s == 45.0 and r.ci_s == 45.0
    assert r.action == "change" and r.feasible and not r.alert
    assert r.predicted_recovery_s == pytest.approx(50.0) and r.ratios["recovery"] == pytest.approx(1.0)
    assert r.longer_breaks == ["recovery"] and r.shorter_breaks == ["latency"]
    feasible = [c.ci_s for c in r.candidates if c.feasible]
    assert feasible == list(np.arange(5.0, 46.0))
    assert len(r.candidates) == 120


def test_longest_feasible_on_a_fitted_model():
    m = models.fit(models.load_results(REAL))
    r = recommend(m, rate=2000, current_ci=10, l_max_ms=200, r_max_s=20)
    ok = [c.ci_s for c in r.candidates if c.feasible]
    assert r.feasible and r.best_ci_s == max(ok)
    assert all(not c.feasible for c in r.candidates if c.ci_s > r.best_ci_s)


def test_no_feasible_interval_alerts_and_takes_the_least_expected_violation():
    # latency <= 150 needs ci >= 20, recovery <= 20 needs ci <= 15: impossible. At a 24 h MTBF a p99 over
    # L_max (3600 violation s/h) costs more than a recovery over R_max once a day: 20 s, recovery 25 s
    r = recommend(make_model(), rate=2000, current_ci=60, l_max_ms=150, r_max_s=20)
    assert not r.feasible and r.alert and r.action == "change"
    assert r.best_ci_s == 20.0 and r.best_violation_s_per_h == pytest.approx((25 + 5) / 24)
    assert r.best_violation_s_per_h == min(c.violation_s_per_h for c in r.candidates)
    assert r.current_violation_s_per_h == pytest.approx((65 + 45) / 24)
    assert "no interval in 1-120 s meets both limits; the least expected violation is at 20 s" in r.reason
    assert "breaks the recovery limit: 1.2 violation s/h against 4.6 violation s/h at the current 60 s" in r.reason
    assert "ALERT" in explain(r)


def test_a_tie_in_expected_violation_goes_to_the_shorter_interval_and_the_current_stays():
    # recovery limit broken everywhere by the same amount (flat recovery), latency fine everywhere: every
    # interval is expected to cost the same, so the one that replays the least wins, and the current
    # interval stays (nothing is gained by moving)
    m = make_model(lat=(10.0, 0.0), rec=(100.0, 0.0))
    r = recommend(m, rate=2000, current_ci=60, l_max_ms=300, r_max_s=50)
    assert r.alert and r.best_ci_s == 1.0
    assert r.action == "keep" and r.ci_s == 60.0 and "hysteresis" in r.action_reason


def test_dead_band_keeps_the_current_interval():
    r = recommend(make_model(), rate=2000, current_ci=42, dead_band=5, **LIMITS)
    assert r.action == "keep" and r.ci_s == 42.0 and r.best_ci_s == 45.0 and not r.alert
    assert "dead band" in r.reason
    r = recommend(make_model(), rate=2000, current_ci=39, dead_band=5, **LIMITS)
    assert r.action == "change" and r.ci_s == 45.0
    r = recommend(make_model(), rate=2000, current_ci=45, dead_band=0, **LIMITS)
    assert r.action == "keep"


def test_dead_band_does_not_keep_a_predicted_violation():
    r = recommend(make_model(), rate=2000, current_ci=48, dead_band=5, **LIMITS)  # 48 s: recovery 53 > 50
    assert r.action == "change" and r.ci_s == 45.0 and not r.alert
    assert "breaks the recovery limit" in r.reason


def test_cooldown_waits():
    r = recommend(make_model(), rate=2000, current_ci=20, last_change_ts=1000.0, cooldown_s=600, now=1100.0, **LIMITS)
    assert r.action == "wait" and r.ci_s == 20.0 and r.best_ci_s == 45.0
    assert not r.alert  # 20 s is inside both limits
    r = recommend(make_model(), rate=2000, current_ci=20, last_change_ts=1000.0, cooldown_s=600, now=1700.0, **LIMITS)
    assert r.action == "change" and r.ci_s == 45.0
    # a predicted breach that a feasible interval fixes overrides the cooldown ...
    r = recommend(make_model(), rate=2000, current_ci=90, last_change_ts=1000.0, cooldown_s=600, now=1100.0, **LIMITS)
    assert r.action == "change" and r.ci_s == 45.0 and not r.alert
    assert "inside the 600 s cooldown: the current interval breaks the recovery limit" in r.reason
    # ... but not after a failed attempt; and waiting on an interval that breaks a limit is not silent
    r = recommend(
        make_model(),
        rate=2000,
        current_ci=90,
        last_change_ts=1000.0,
        cooldown_s=600,
        now=1100.0,
        breach_overrides_cooldown=False,
        **LIMITS,
    )
    assert r.action == "wait" and r.alert and "recovery" in explain(r)


def test_young_daly():
    r = recommend(make_model(ckpt_s=0.5), rate=2000, current_ci=10, mtbf_h=24, **LIMITS)
    assert r.young_s == pytest.approx(math.sqrt(2 * 0.5 * 86400))  # 293.9 s
    assert r.daly_s == pytest.approx(math.sqrt(2 * 0.5 * 86400) - 0.5)
    y, d = optimizer.young_daly(2.0, 1.0)
    assert y == pytest.approx(120.0) and d == pytest.approx(118.0)
    assert optimizer.young_daly(None, 24) == (None, None)
    assert "Young/Daly suggest 294/293 s for a 24 h MTBF" in explain(r)


def test_explain_mentions_both_limits_and_the_binding_one():
    r = recommend(make_model(), rate=3000, current_ci=10, **LIMITS)
    text = explain(r)
    assert "At 3000 events/s a 45 s interval" in text
    assert "(limit 50 s)" in text and "(limit 300 ms)" in text
    assert "longer intervals would break the recovery limit" in text
    assert "Change the interval from 10 s to 45 s" in text


def test_explain_when_the_longest_interval_is_feasible():
    r = recommend(make_model(), rate=3000, current_ci=10, l_max_ms=300, r_max_s=500, slack_s_per_h=1e6)
    assert r.best_ci_s == 120.0
    assert "longest allowed interval" in explain(r)


# ---- the slack: overhead traded for expected violation seconds (Policy.slack_s_per_h) ------------------
# make_model: recovery = 5 + ci; feasible (L_max 300 ms, R_max 500 s): 5-120 s.


def test_rare_failures_take_the_longest_interval_within_the_slack():
    # MTBF 24 h: each second of recovery costs 1/24 violation s per hour; 2 s/h buys 48 s of recovery
    r = recommend(make_model(), rate=3000, current_ci=10, l_max_ms=300, r_max_s=500, mtbf_h=24, slack_s_per_h=2)
    assert r.best_ci_s == 53.0 and r.longest_feasible_s == 120.0  # recovery 58 s = 10 s (at 5 s) + 48 s
    text = explain(r)
    assert "intervals up to 120 s also meet both limits but would recover longer" in text
    assert "more than 2 violation s per hour more at a 24 h MTBF" in text


def test_frequent_failures_take_the_shortest_recovery():
    # failures every 36 s: a second of recovery costs 100 violation s per hour
    r = recommend(make_model(), rate=3000, current_ci=10, l_max_ms=300, r_max_s=500, mtbf_h=0.01, slack_s_per_h=2)
    assert r.best_ci_s == 5.0  # the shortest interval that keeps the latency limit
    assert r.shorter_breaks == ["latency"]


def test_the_slack_never_picks_an_infeasible_interval():
    # 0 slack: the least recovery among FEASIBLE intervals (2-4 s recover faster but break the latency)
    r = recommend(make_model(), rate=3000, current_ci=10, l_max_ms=300, r_max_s=500, mtbf_h=24, slack_s_per_h=0)
    assert r.best_ci_s == 5.0 and r.feasible and not r.alert


def test_candidate_grid_includes_ci_max():
    assert list(candidate_intervals(1, 10, 4)) == [1.0, 5.0, 9.0, 10.0]
    assert list(candidate_intervals(10, 12, 0.5)) == [10.0, 10.5, 11.0, 11.5, 12.0]


def one_line(e: Exception) -> str:
    text = str(e)
    assert "\n" not in text and len(text) < 400, text
    return text


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(l_max_ms=None), "--l-max: missing"),
        (dict(r_max_s=None), "--r-max: missing"),
        (dict(l_max_ms=float("nan")), "--l-max: nan is not a finite number"),
        (dict(rate=float("inf")), "rate must be a finite number > 0"),
        (dict(ci_min=60, ci_max=10), "inverted"),
        (dict(ci_min=10, ci_max=10), "inverted"),
        (dict(rate=0), "rate must be a finite number > 0"),
        (dict(rate=-5), "rate must be a finite number > 0"),
        (dict(step=0), "--step: 0 must be > 0"),
        (dict(l_max_ms=-1), "--l-max: -1 must be > 0"),
        (dict(current_ci=0), "current CI"),
    ],
)
def test_bad_input(kw, words):
    args = dict(rate=2000, current_ci=10, **LIMITS)
    args.update(kw)
    with pytest.raises(KhaosError) as e:
        recommend(make_model(), **args)
    assert words in one_line(e.value)


def test_unknown_model_file(tmp_path):
    with pytest.raises(KhaosError) as e:
        store.load(tmp_path / "nope.json")
    assert "does not exist" in one_line(e.value)


def test_extrapolation_is_noted():
    m = make_model()
    r = recommend(m, rate=50000, current_ci=10, **LIMITS)
    assert any("outside the profiled" in w for w in r.warnings)
    assert "Note: rate 50000" in explain(r)


def test_cli_recommend(tmp_path, capsys):
    path = store.save(make_model(), tmp_path / "m.json")
    parser = argparse.ArgumentParser(prog="khaos")
    add_recommend(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(
        ["recommend", "--model", str(path), "--rate", "3000", "--current-ci", "10", "--l-max", "300", "--r-max", "50"]
    )
    args.func(args)
    out = capsys.readouterr().out
    assert "a 45 s interval" in out and "action: change" in out
    args = parser.parse_args(
        [
            "recommend",
            "--model",
            str(path),
            "--rate",
            "3000",
            "--current-ci",
            "10",
            "--l-max",
            "300",
            "--r-max",
            "50",
            "--json",
        ]
    )
    args.func(args)
    d = json.loads(capsys.readouterr().out)
    assert d["ci_s"] == 45.0 and d["action"] == "change" and d["candidates"] == 120
    args = parser.parse_args(
        ["recommend", "--model", str(path), "--rate", "3000", "--current-ci", "10", "--r-max", "50"]
    )
    with pytest.raises(KhaosError) as e:
        args.func(args)
    assert "missing limit" in one_line(e.value)


def test_rate_above_capacity_alerts_without_numeric_noise(recwarn):
    m = make_model()
    m.recovery.physics = Spec.model_validate(
        {
            "name": "drain",
            "features": ["L0*rate/(cap-rate)"],
            "coef": [1.0],
            "intercept": 5.0,
            "constants": {"margin_s": 0.0, "downtime_s": {"*": 5.0}, "capacity": 10000.0},
        }
    )
    r = recommend(m, rate=12000, current_ci=10, **LIMITS)
    assert r.alert and not r.feasible and r.best_recovery_s == float("inf")
    assert r.best_ci_s == 1.0  # no interval recovers: the shortest replays the least input
    assert "none is predicted to recover at this rate" in r.reason
    assert "never recover" in explain(r)
    json.dumps(r.to_dict())  # inf becomes null, still valid JSON
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ---- the cost of a restart change (Policy.change_cost_s) ----------------------------------------------
# make_model: recovery = 5 + ci, so at 60 s recovery is 65 s (15 s over R_max 50); latency 100 + 1000/ci.


def test_a_restart_is_not_worth_a_small_expected_recovery_excess():
    # 600 s horizon, MTBF 24 h: 0.007 failures x (65 + 15 - 50) s = 0.2 violation s, less than a 2 s restart
    r = recommend(make_model(), 1000, 60, change_cost_s=2.0, horizon_s=600, mtbf_h=24, ci_max=120, **LIMITS)
    assert r.action == "keep" and r.ci_s == 60 and r.alert, r.reason
    assert "would save 0.2 violation s over the next 600 s" in r.reason and "2.0 s" in r.reason
    # failures every 36 s: worth 16.7 x (80 - 10) s; the shortest feasible interval recovers fastest
    r = recommend(make_model(), 1000, 60, change_cost_s=2.0, horizon_s=600, mtbf_h=0.01, ci_max=120, **LIMITS)
    assert r.action == "change" and r.ci_s == 5


def test_a_latency_breach_always_outweighs_a_restart():
    # at 2 s the p99 is 600 ms > 300 ms for the whole horizon: 600 violation s saved
    r = recommend(make_model(), 1000, 2, change_cost_s=5.0, horizon_s=600, mtbf_h=24, **LIMITS)
    assert r.action == "change" and r.ci_s == 45


def test_no_restart_for_a_breach_inside_the_model_error_nor_to_only_lengthen():
    # at 47 s: recovery 52 s, 4 % over R_max. Over 10 h at a 24 h MTBF (0.42 failures) the move to 45 s
    # saves 0.42 x 2 s of recovery; the 2 s excess counts only beyond a 10 % model error
    kw = dict(change_cost_s=1.0, horizon_s=36000, mtbf_h=24, **LIMITS)
    r = recommend(make_model(), 1000, 47, cv_recovery=0.1, **kw)
    assert r.action == "keep" and "would save 0.8 violation s" in r.reason, r.reason
    assert recommend(make_model(), 1000, 47, **kw).action == "change"  # without the error: 1.7 s saved
    # at 20 s both limits hold: lengthening to 45 s saves no violation second, so no restart for it
    r = recommend(make_model(), 1000, 20, change_cost_s=0.0, horizon_s=600, **LIMITS)
    assert r.action == "keep" and not r.alert
    # without a cost (paced changes) the same decision lengthens
    assert recommend(make_model(), 1000, 20, **LIMITS).action == "change"


def test_a_measured_capacity_model_predicts_with_the_jobs_own_capacity():
    m = rate_model()
    assert not measured_capacity(m)
    spec = m.recovery.physics
    spec.features = [*spec.features, "L0*rate/(cap-rate)"]
    spec.coef = [*spec.coef, 1.0]
    spec.constants.capacity, spec.constants.capacity_measured = 5000.0, True
    assert measured_capacity(m)
    # both pick the longest: compare there
    p = Policy(l_max_ms=MAX_LATENCY_MS, r_max_s=MAX_RECOVERY_S, slack_s_per_h=1e6)
    at_profiled = planner.recommend(m, 1500.0, 20.0, p)
    on_a_slower_cluster = planner.recommend(m, 1500.0, 20.0, p, capacity=2000.0)
    # 1500/s is 30 % of the profiled clusters' capacity but 75 % of this one's: a longer catch-up
    assert on_a_slower_cluster.ci_s == at_profiled.ci_s
    assert on_a_slower_cluster.predicted_recovery_s > at_profiled.predicted_recovery_s * 1.5
