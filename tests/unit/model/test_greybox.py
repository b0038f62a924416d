"""The grey-box recovery model: a profile with measured capacities, from a known law, fitted and checked."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pandas as pd
import pytest
from support import DATA, PROFILE

from khaos_controller import REPO_ROOT
from khaos_controller.model import cv as model_cv
from khaos_controller.model import fit as model_fit
from khaos_controller.model import predict as model_predict
from khaos_controller.model import store
from khaos_controller.model.features import GREYBOX_SETS, LATENCY_CAPACITY_SETS
from khaos_controller.model.greybox import RESIDUAL_SUFFIX

CIS = (5.0, 10.0, 15.0, 20.0, 30.0)
LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9)  # utilization levels: the extrapolation fits <= 0.7, tests >= 0.8
CLUSTERS = {"kp1": 5000.0, "kp2": 4000.0}  # probed capacity, events/s
MARGIN = 2.0  # the profiler kills this long before the next checkpoint
DOWN = {"process": 4.0, "host": 7.0}  # failure -> tasks running again, s


def state_gb(ci, rate):
    """Checkpointed state, GB: grows with the rate and a little with the interval."""
    return 0.2 + 3e-4 * rate + 0.01 * ci


def true_recovery(l0, u, st, mode):
    """The law: detect + restart (3 s, + 2 s for a host) + restore (4 s/GB) + catch-up L0 * u/(1-u)."""
    return 3.0 + 2.0 * (mode == "host") + 4.0 * st + l0 * u / (1.0 - u)


def synth(noise=0.03, seed=0, factor=None) -> pd.DataFrame:
    """A results frame with the columns the profiler writes; ``factor(u)`` multiplies every recovery."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (ci, level) in enumerate((c, u) for c in CIS for u in LEVELS):
        cluster = list(CLUSTERS)[i % 2]  # units alternate between the two clusters
        probed = CLUSTERS[cluster]
        rate = float(round(level * probed))
        for mode in ("process", "host"):
            for rep in range(2):
                jit = lambda s=noise: 1.0 + s * rng.standard_normal()  # noqa: E731
                cap = probed * jit(0.02)  # busy-time estimate of this failure's window
                u = rate / cap
                running = DOWN[mode] * jit()
                age = ci - MARGIN + 0.3 * jit()  # restored checkpoint: triggered a little before it completed
                st = state_gb(ci, rate) * jit()
                rec = true_recovery(age + running, u, st, mode) * (factor(u) if factor else 1.0)
                ckpt = (0.2 + 0.5 * st) * jit()
                lat = 40.0 + 25.0 * u / (1 - u) + 300.0 * ckpt / ci / (1 - u)
                rows.append(
                    dict(
                        trial=f"u{i:02d}-ci{ci:g}-u{100 * level:g}-{mode}{rep}",
                        cluster=cluster,
                        ci_s=ci,
                        rate=rate,
                        mode=mode,
                        rep=rep,
                        t_fail=1.7e9 + len(rows),
                        since_checkpoint_s=ci - MARGIN,
                        detect_s=1.0,
                        running_s=running,
                        recovery_s=rec * jit(),
                        recovered=True,
                        latency_p99_ms=lat * jit(),
                        checkpoint_duration_ms=1000.0 * ckpt,
                        checkpoint_size_bytes=st * 1e9,
                        capacity_busy=cap,
                        busy_max=u,
                        bottleneck="Sink: out#0",
                        capacity_probe=probed,
                        utilization_target=level,
                        capacity=cap,
                        utilization=u,
                        restored_checkpoint_id=rep + 1,
                        restored_checkpoint_age_s=age,
                    )
                )
    return pd.DataFrame(rows)


def is_greybox(name: str) -> bool:
    return name.removesuffix(RESIDUAL_SUFFIX) in GREYBOX_SETS


@pytest.fixture(scope="module")
def frame():
    return synth()


@pytest.fixture(scope="module")
def model(frame):
    return model_fit.fit(frame)


# ------------------------------------------------------------------------------------ accuracy


def test_fit_chooses_a_greybox_model_with_low_heldout_error(model, frame):
    cv = model.cv.recovery
    assert cv.protocol == "leave-one-(ci,utilization)-unit-out, 25 folds"
    assert is_greybox(cv.physics.feature_set), cv.physics.feature_set
    assert model.recovery.physics.name == cv.physics.feature_set
    assert all(is_greybox(n) or n in ("drain", "backlog", "ci+rate") for n in cv.candidates)
    assert cv.physics.mape < 0.10
    assert cv.physics.mape < cv.baseline.mape / 5
    assert model.cv.latency.physics.feature_set in LATENCY_CAPACITY_SETS
    assert model.cv.latency.physics.mape < 0.10 < model.cv.latency.baseline.mape
    c = model.recovery.physics.constants
    assert c.capacity_measured and c.capacity == pytest.approx(frame["capacity"].median())
    assert model.ranges.utilization == pytest.approx((frame["utilization"].min(), frame["utilization"].max()))
    assert model.ranges.capacity == pytest.approx((frame["capacity"].min(), frame["capacity"].max()))


def test_fitted_at_low_utilization_it_predicts_high_utilization(model):
    x = model.cv.extrapolation
    assert (x.fit_max, x.test_min) == (0.7, 0.8)
    assert x.recovery.n == x.latency.n == 5 * 2 * 2 * 2  # levels 0.8, 0.9 x 5 CIs x 2 modes x 2 repetitions
    assert x.recovery.mape < 0.20 and x.latency.mape < 0.20
    assert x.recovery.mape < x.recovery_baseline.mape / 4
    assert x.recovery.feature_set == model.cv.recovery.physics.feature_set


def test_a_capacity_changes_the_prediction(model):
    lat, rec = model_predict.predict(model, 3000, 10, "process")
    lat_small, rec_small = model_predict.predict(model, 3000, 10, "process", capacity=3500)
    assert rec_small > 1.5 * rec and lat_small > lat  # 86 % instead of 63 % utilization
    assert model_predict.predict(model, 3000, 10, "process", capacity=3000)[1] == float("inf")
    assert model_predict.extrapolation_warnings(model, 3000, 10) == []
    (w,) = model_predict.extrapolation_warnings(model, 3000, 10, capacity=20000)
    assert "utilization 15 %" in w and "outside the profiled" in w


def test_model_file_round_trip(tmp_path, model):
    loaded = store.load(store.save(model, tmp_path / "model.json"))
    assert loaded.schema_version == 2 and loaded == model
    assert loaded.recovery.physics.constants.state_model is not None
    for rate, ci, mode, cap in ((2000, 8, "process", None), (3500, 25, "host", 4200), (1200, 5, "host", 5000)):
        assert model_predict.predict(loaded, rate, ci, mode, capacity=cap) == pytest.approx(
            model_predict.predict(model, rate, ci, mode, capacity=cap)
        )


def test_a_version_1_model_file_still_loads():
    v1 = store.load(DATA / "model-v1.json")
    assert v1.schema_version == 1 and v1.ranges.utilization is None and v1.cv.extrapolation is None
    refit = model_fit.fit(model_fit.load_results(PROFILE))  # the results it was fitted from, no capacity columns
    assert refit.data_hash == v1.data_hash
    for target in ("recovery", "latency"):
        for fam in ("baseline", "physics"):
            old, new = getattr(v1.target(target), fam), getattr(refit.target(target), fam)
            # the same fit up to the last bit of a float (BLAS may sum in another order)
            assert (old.features, old.coef, old.intercept) == (
                new.features,
                pytest.approx(new.coef),
                pytest.approx(new.intercept),
            )
    assert model_predict.predict(v1, 2000, 8) == model_predict.predict(v1, 2000, 8, capacity=2500)


# ---------------------------------------------------------------------------------- residual


def test_a_residual_is_kept_when_it_lowers_the_heldout_error():
    m = model_fit.fit(synth(factor=lambda u: np.exp(0.8 * u)))  # a slowdown with load the law does not have
    cands = m.cv.recovery.candidates
    pick = m.cv.recovery.physics.feature_set
    assert pick.endswith(RESIDUAL_SUFFIX) and is_greybox(pick)
    assert cands[pick].mape < cands[pick.removesuffix(RESIDUAL_SUFFIX)].mape
    spec = m.recovery.physics
    assert spec.name == pick and spec.residual is not None and spec.residual.features[0] == "u"


def test_a_residual_that_raises_the_heldout_error_is_dropped(monkeypatch, frame):
    real = model_fit.fit_residual

    def harmful(spec, train, target):  # the fitted residual, then 50 % too high
        out = real(spec, train, target)
        res = out.residual.model_copy(update={"intercept": out.residual.intercept + np.log(1.5)})
        return out.model_copy(update={"residual": res})

    monkeypatch.setattr(model_fit, "fit_residual", harmful)
    m = model_fit.fit(frame)
    cands = m.cv.recovery.candidates
    with_res = [n for n in cands if n.endswith(RESIDUAL_SUFFIX)]
    assert len(with_res) == len(GREYBOX_SETS)
    assert all(cands[n].mape > cands[n.removesuffix(RESIDUAL_SUFFIX)].mape for n in with_res)
    assert not m.cv.recovery.physics.feature_set.endswith(RESIDUAL_SUFFIX)
    assert m.recovery.physics.residual is None


def test_choose_prefers_the_set_without_residual_on_a_tie():
    e = {"mae": 1.0, "n": 10}
    tie = {"greybox": {**e, "mape": 0.05, "n_features": 3}, "greybox+residual": {**e, "mape": 0.05, "n_features": 6}}
    assert model_cv.choose(tie) == "greybox"
    tie["greybox+residual"]["mape"] = 0.049
    assert model_cv.choose(tie) == "greybox+residual"


# ----------------------------------------------------------------------- without a capacity


def test_results_without_capacity_columns_fit_as_before():
    m = model_fit.fit(model_fit.load_results(REPO_ROOT / "examples/profile-lab-results.csv"))
    assert m.cv.extrapolation is None and m.ranges.utilization is None and m.ranges.capacity is None
    assert set(m.cv.recovery.candidates) == {"drain", "backlog", "ci+rate"}
    assert m.cv.recovery.protocol.startswith("leave-one-(ci,rate)-unit-out")
    assert not m.recovery.physics.constants.capacity_measured


def test_a_capacity_missing_on_some_rows_is_not_used(frame):
    part = frame.copy()
    part.loc[3, "capacity"] = np.nan
    m = model_fit.fit(part)
    assert not any(is_greybox(n) for n in m.cv.recovery.candidates)
    assert m.cv.recovery.protocol.startswith("leave-one-(ci,utilization)-unit-out")  # still whole deployments
    assert not m.recovery.physics.constants.capacity_measured


# ----------------------------------------------------------------------------------------- CLI


def test_cli_fit_prints_the_heldout_and_extrapolation_errors(tmp_path, capsys, frame):
    from khaos_controller.model import cli

    res = tmp_path / "results.csv"
    frame.to_csv(res, index=False)
    parser = argparse.ArgumentParser(prog="khaos")
    cli.add_cli(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["fit", str(res), "--plot", str(tmp_path / "fit.png")])
    args.func(args)
    out = capsys.readouterr().out
    assert "MAPE baseline" in out and "MAPE physics" in out
    assert "extrapolation (fitted at utilization <= 70 %, predicting >= 80 %" in out
    assert "each cluster's measured capacity" in out and re.search(r"utilization \d+-\d+ %", out)
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert store.load(tmp_path / "model.json").cv.extrapolation is not None
