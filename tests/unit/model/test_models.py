"""Latency / recovery models: synthetic profiles from a known physical law, plus a real profile."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from support import PROFILE, one_line

from khaos_controller.errors import KhaosError
from khaos_controller.model import fit as model_fit
from khaos_controller.model import predict as model_predict
from khaos_controller.model import report, store

REAL = PROFILE

# The law behind the synthetic profiles (docs/recovery.md "The physics the numbers should follow").
CAP = 8000.0  # records/s the job can process
MARGIN = 2.0  # the profiler kills this long before the next checkpoint
DOWN = {"process": 4.0, "host": 7.0}  # failure -> tasks running again
SETTLE = 3.0  # constant part of the measured recovery (band re-entry, smoothing)


def true_recovery(ci, rate, mode):
    l0 = np.maximum(np.asarray(ci, float) - MARGIN, 0) + DOWN[mode]
    return DOWN[mode] + SETTLE + l0 * rate / (CAP - rate)


def true_latency(ci, rate):
    return 80.0 + 0.01 * np.asarray(rate, float) + 400.0 / np.asarray(ci, float)


def synth(
    rates=(1000, 2000, 3000, 4000, 5000), cis=(5, 10, 20, 40, 60), modes=("process", "host"), reps=1, noise=0.05, seed=0
) -> pd.DataFrame:
    """A results.csv-like frame: one row per failure, multiplicative noise on every measurement."""
    rng = np.random.default_rng(seed)
    rows = []
    for ci in cis:
        for rate in rates:
            for mode in modes:
                for rep in range(reps):
                    jit = lambda: 1.0 + noise * rng.standard_normal()  # noqa: E731
                    running = DOWN[mode] * jit()
                    rows.append(
                        dict(
                            trial=f"c{ci}-r{rate}-{mode}{rep}",
                            cluster="kp1",
                            ci_s=float(ci),
                            rate=float(rate),
                            mode=mode,
                            rep=rep,
                            t_fail=1.7e9 + len(rows),
                            since_checkpoint_s=ci - MARGIN,
                            detect_s=1.2,
                            running_s=running,
                            recovery_s=float(true_recovery(ci, rate, mode)) * jit(),
                            recovered=True,
                            latency_p99_ms=float(true_latency(ci, rate)) * jit(),
                            checkpoint_duration_ms=(50 + 0.02 * rate) * jit(),
                            checkpoint_size_bytes=1e6,
                        )
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def synth_model():
    return model_fit.fit(synth())


# ------------------------------------------------------------------------------------ accuracy


def test_physics_beats_baseline_on_held_out_synthetic_failures(synth_model):
    cv = synth_model.cv
    assert cv.recovery.protocol.startswith("leave-one-(ci,rate)-unit-out")
    assert cv.recovery.folds == 25
    for target in ("recovery", "latency"):
        assert getattr(cv, target).physics.mape < getattr(cv, target).baseline.mape, target
        assert getattr(cv, target).physics.mae < getattr(cv, target).baseline.mae, target
    assert cv.recovery.physics.mape < 0.10
    assert cv.recovery.physics.feature_set == "drain"
    # non-negative coefficients where the physics says so
    assert all(b >= 0 for b in synth_model.recovery.physics.coef)
    assert all(b >= 0 for b in synth_model.latency.physics.coef)


def test_physics_extrapolates_to_an_unprofiled_rate(synth_model):
    rate = 6000.0  # profiled: 1000..5000; the drain time grows 1/(cap - rate), not linearly
    cis = np.array([5.0, 10, 20, 40, 60])
    truth = np.array([true_recovery(c, rate, "process") for c in cis])
    phys = np.array([model_predict.predict(synth_model, rate, c)[1] for c in cis])
    base = np.array([model_predict.predict(synth_model, rate, c, which="baseline")[1] for c in cis])
    err_p = np.mean(np.abs(phys - truth) / truth)
    err_b = np.mean(np.abs(base - truth) / truth)
    assert err_p < err_b / 2
    assert err_p < 0.25
    assert any("outside the profiled" in w for w in model_predict.extrapolation_warnings(synth_model, rate))
    assert model_predict.extrapolation_warnings(synth_model, 3000.0, 20.0) == []


def test_capacity_estimate_is_near_the_truth(synth_model):
    cap = synth_model.recovery.physics.constants.capacity
    assert 0.8 * CAP < cap < 1.25 * CAP


def test_host_failures_cost_more(synth_model):
    _, rp = model_predict.predict(synth_model, 3000, 20, "process")
    _, rh = model_predict.predict(synth_model, 3000, 20, "host")
    assert rh > rp


def test_rows_not_recovered_are_dropped_and_counted():
    df = synth()
    df.loc[:2, "recovered"] = False
    df.loc[:2, "recovery_s"] = np.nan
    df.loc[3, "recovery_s"] = 0.0
    m = model_fit.fit(df)
    assert m.rows.input == len(df)
    assert m.rows.recovery_used == len(df) - 4
    assert m.rows.recovery_dropped == {
        "not recovered within the profile's timeout": 3,
        "recovery_s missing or not positive": 1,
    }
    assert m.rows.latency_used == len(df)  # pre-failure latency is valid for every failure


def test_no_55s_filter_short_recoveries_are_used():
    df = synth(rates=(500, 1000), cis=(2.5, 5))  # every recovery well below the prototype's 55 s
    assert (df["recovery_s"] < 55).all()
    assert model_fit.fit(df).rows.recovery_used == len(df)


def test_real_profile_fits(tmp_path):
    df = model_fit.load_results(REAL)
    m = model_fit.fit(df, sources=[str(REAL)])
    assert m.rows.recovery_used == 7
    assert m.rows.recovery_dropped == {"not recovered within the profile's timeout": 1}
    assert m.ranges.ci_s == (4.0, 12.0) and m.ranges.rate == (1000.0, 3000.0)
    cv = m.cv.recovery
    assert cv.folds == 4  # four (ci, rate) units
    assert np.isfinite(cv.physics.mape) and np.isfinite(cv.baseline.mape)
    assert cv.physics.mape <= cv.baseline.mape
    lat, rec = model_predict.predict(m, 2000, 8)
    assert 0 < lat < 1000 and 0 < rec < 60
    text = report.format_report(m)
    assert "MAPE baseline" in text and "dropped: 1 not recovered" in text


# ----------------------------------------------------------------------------------- model file


def test_model_file_round_trip(tmp_path, synth_model):
    path = store.save(synth_model, tmp_path / "m" / "model.json")
    loaded = store.load(path)
    assert loaded.schema_version == store.SCHEMA_VERSION
    assert loaded.data_hash.startswith("sha256:") and loaded.data_hash == synth_model.data_hash
    for key in ("created", "rows", "ranges", "cv", "checkpoint_duration_s"):
        assert key in loaded.to_dict()
    for target in ("latency", "recovery"):
        for fam in ("baseline", "physics"):
            spec = getattr(loaded.target(target), fam)
            assert len(spec.features) == len(spec.coef) and spec.intercept is not None
    for rate, ci, mode in ((1500, 7, "process"), (4500, 50, "host"), (6000, 120, "process")):
        assert model_predict.predict(loaded, rate, ci, mode) == pytest.approx(
            model_predict.predict(synth_model, rate, ci, mode)
        )
    json.loads(path.read_text())  # plain JSON (no NaN/Infinity tokens)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_data_hash_ignores_row_order_and_sees_changes():
    df = synth()
    h = model_fit.fit(df).data_hash
    assert model_fit.fit(df.sample(frac=1.0, random_state=3)).data_hash == h
    df2 = df.copy()
    df2.loc[0, "recovery_s"] += 1.0
    assert model_fit.fit(df2).data_hash != h


def test_compare_keeps_the_better_model(synth_model, tmp_path):
    worse = synth_model.model_copy(deep=True)
    worse.cv.recovery.physics.mape = synth_model.cv.recovery.physics.mape + 0.05
    assert store.compare(worse, synth_model) is True
    assert store.compare(synth_model, worse) is False
    assert store.compare(synth_model, synth_model) is True  # not worse = equal is fine
    assert store.compare(None, synth_model) is True
    p = store.save(synth_model, tmp_path / "a.json")
    assert store.compare(store.load(p), worse) is False


def test_plot_writes_a_png(tmp_path, synth_model):
    out = report.plot(synth_model, tmp_path / "fit.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------- errors


def test_missing_model_file(tmp_path):
    with pytest.raises(KhaosError) as e:
        store.load(tmp_path / "nope.json")
    assert "does not exist" in one_line(e.value, 400)


def test_wrong_schema_version(tmp_path, synth_model):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({**synth_model.to_dict(), "schema_version": 99}))
    with pytest.raises(KhaosError) as e:
        store.load(p)
    assert "schema version 99" in one_line(e.value, 400)


def test_not_a_model_file(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(KhaosError) as e:
        store.load(p)
    assert "not a khaos model" in one_line(e.value, 400)
    p.write_text("{broken")
    with pytest.raises(KhaosError) as e:
        store.load(p)
    assert "not valid JSON" in one_line(e.value, 400)


def test_too_few_recovered_rows():
    df = synth(rates=(1000, 2000), cis=(5, 10), modes=("process",))  # 4 rows
    df.loc[0, "recovered"] = False
    with pytest.raises(KhaosError) as e:
        model_fit.fit(df)
    msg = one_line(e.value, 400)
    assert "too few recovered failures" in msg and "3 of 4" in msg and "not recovered" in msg


def test_missing_columns(tmp_path):
    p = tmp_path / "r.csv"
    synth().drop(columns=["recovery_s", "latency_p99_ms"]).to_csv(p, index=False)
    with pytest.raises(KhaosError) as e:
        model_fit.load_results(p)
    assert "recovery_s, latency_p99_ms" in one_line(e.value, 400)
    with pytest.raises(KhaosError) as e:
        model_fit.fit(synth().drop(columns=["mode"]))
    assert "mode" in one_line(e.value, 400)
    with pytest.raises(KhaosError) as e:
        model_fit.load_results(tmp_path / "missing.csv")
    assert "does not exist" in one_line(e.value, 400)


def test_unprofiled_mode_and_bad_inputs(synth_model):
    proc_only = model_fit.fit(synth(modes=("process",)))
    with pytest.raises(KhaosError) as e:
        model_predict.predict(proc_only, 2000, 10, "host")
    assert "not profiled" in one_line(e.value, 400)
    with pytest.raises(KhaosError):
        model_predict.predict(synth_model, 0, 10)
    with pytest.raises(KhaosError):
        model_predict.predict(synth_model, 1000, 0)


def test_rate_above_capacity_never_recovers(synth_model):
    _, rec = model_predict.predict(synth_model, 20 * CAP, 10)
    assert rec == float("inf")
    assert any("never to catch up" in w for w in model_predict.extrapolation_warnings(synth_model, 20 * CAP))


# ------------------------------------------------------------------------------------------- CLI


def test_cli_fit(tmp_path, capsys):
    res = tmp_path / "results.csv"
    synth().to_csv(res, index=False)
    parser = argparse.ArgumentParser(prog="khaos")
    from khaos_controller.model import cli

    cli.add_cli(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["fit", str(res), "--plot", str(tmp_path / "p.png")])
    args.func(args)
    out = capsys.readouterr().out
    assert "recovery (s)" in out and "latency (ms)" in out and "MAPE physics" in out
    m = store.load(tmp_path / "model.json")
    assert m.sources == [str(res)]
    assert (tmp_path / "p.png").exists()
