"""Recovery measurement on synthetic per-second series with a known ground truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from support import DATA

from khaos_controller.errors import KhaosError
from khaos_controller.profile.recovery import (
    RecoveryParams,
    expected_catchup_s,
    expected_peak_lag_s,
    measure,
    steady_band,
    steady_window,
)
from khaos_controller.profile.remeasure import measure_all, remeasure

T0 = 1_700_000_000.0
LAB_U01 = DATA / "lab-u01"  # one real unit: a process and a host kill


def synth(
    failures=({"at": 300.3},),
    n=600,
    rate=1000.0,
    cap=2000.0,
    noise=0.03,
    seed=0,
    jitter=0.0,
    drop=0.0,
    latency=True,
    ckpt_spikes=False,
):
    """A job sampled once per second; returns (series, truths).

    Each failure {at, since_ckpt=8, detect=1.5, down=5}: at `at` data stops (throughput, rate_in 0;
    lag ramps up), at at+detect the tasks are seen failing (all_running False, restarts+1, gauges NaN),
    at at+down they run again: the source rewound to the checkpoint is L0 = since_ckpt + down seconds
    behind and drains (cap - rate)/rate s of lag per s while the sink runs at `cap`. Truth: recovered
    when the lag reaches 0, t_rec = t_run + L0 * rate / (cap - rate).
    """
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) + (rng.uniform(-jitter, jitter, n) if jitter else 0.0)
    truths = []
    for f in failures:
        tf = T0 + f["at"]
        down = f.get("down", 5.0)
        l0 = f.get("since_ckpt", 8.0) + down
        drain = (cap - rate) / rate
        t_run = tf + down
        truths.append(
            dict(
                t_fail=tf,
                t_det=tf + f.get("detect", 1.5),
                t_run=t_run,
                l0=l0,
                drain=drain,
                t_rec=t_run + l0 / drain if drain > 0 else math.inf,
            )
        )
    rows = []
    for ti in t:
        past = [x for x in truths if x["t_fail"] <= ti]
        thr = rate * (1 + noise * rng.standard_normal())
        lag = abs(rng.normal(0, 40.0))
        lat = 80 + abs(rng.normal(0, 15.0)) + (150 + rng.uniform(0, 40) if ckpt_spikes and int(ti) % 10 == 0 else 0)
        row = dict(
            t=ti,
            all_running=True,
            restarts=sum(x["t_det"] <= ti for x in truths),
            rate_in=thr,
            throughput=thr,
            lag_ms=lag,
            latency_p99_ms=lat,
            backlog=lag / 1000 * rate,
        )
        if past:
            x = past[-1]
            if ti < x["t_det"]:  # failed, not noticed yet: nothing flows, the lag grows
                row.update(throughput=0.0, rate_in=0.0, lag_ms=(ti - x["t_fail"]) * 1000, latency_p99_ms=np.nan)
            elif ti < x["t_run"]:  # restarting: no tasks, no gauges
                row.update(
                    all_running=False, throughput=0.0, rate_in=0.0, lag_ms=np.nan, latency_p99_ms=np.nan, backlog=np.nan
                )
            else:
                left = x["l0"] - (ti - x["t_run"]) * x["drain"]
                if left > 0:  # catching up
                    row.update(
                        throughput=cap * (1 + noise * rng.standard_normal()),
                        rate_in=cap,
                        lag_ms=left * 1000 + lag,
                        latency_p99_ms=left * 1000 + lat,
                        backlog=left * rate,
                    )
        rows.append(row)
    df = pd.DataFrame(rows)
    if drop:
        keep = rng.uniform(size=len(df)) >= drop
        keep[:5] = True
        df = df[keep]
    if not latency:
        df = df.drop(columns=["latency_p99_ms"])
    return df.reset_index(drop=True), truths


def truth_s(x):
    return x["t_rec"] - x["t_fail"]


def test_recovery_matches_ground_truth():
    df, [x] = synth()
    m = measure(df, x["t_fail"])
    assert m.recovered
    assert m.signals == ("lag_ms", "throughput", "latency_p99_ms")
    assert abs(m.recovery_s - truth_s(x)) <= 1.5, (m.recovery_s, truth_s(x))
    assert m.recovery_s >= m.running_s and m.catchup_s == pytest.approx(m.recovery_s - m.running_s)
    assert m.pre_rate == pytest.approx(1000, rel=0.02)
    assert m.peak_lag_ms == pytest.approx(x["l0"] * 1000, abs=1100)  # first sample after restart
    assert m.caught_up_records == pytest.approx(x["l0"] * 1000, rel=0.15)  # = backlog at restart
    assert m.restarts_delta == 1
    assert m.baseline_samples == 120 and m.baseline_s_used == pytest.approx(120, abs=1)
    assert 80 < m.pre_latency_p99_ms < 200
    d = m.as_dict()
    assert (
        d["band_lag_ms_lo"] == 0 and d["band_lag_ms_hi"] >= 500 and d["signals"] == "lag_ms,throughput,latency_p99_ms"
    )


def test_detect_and_running_from_series_and_from_timestamps():
    df, [x] = synth([{"at": 300.3, "detect": 1.5, "down": 5.0}])
    m = measure(df, x["t_fail"])
    # sampled once per second: the first sample at/after the true instant
    assert 1.5 <= m.detect_s < 2.5 and 5.0 <= m.running_s < 6.0
    m2 = measure(df, x["t_fail"], t_detect=x["t_fail"] + 1.37, t_running=x["t_fail"] + 4.9)
    assert m2.detect_s == pytest.approx(1.37) and m2.running_s == pytest.approx(4.9)
    assert m2.recovery_s == pytest.approx(m.recovery_s, abs=1.0)
    # exact detection from the exception history, before the sampler saw anything: running comes
    # from the series, after the tasks were seen down
    m3 = measure(df, x["t_fail"], t_detect=x["t_fail"] + 0.4)
    assert m3.detect_s == pytest.approx(0.4) and m3.running_s == pytest.approx(m.running_s)


def test_detection_by_restart_counter_only():
    df, [x] = synth()
    df = df.drop(columns=["all_running"])
    m = measure(df, x["t_fail"])
    assert 1.5 <= m.detect_s < 2.5 and math.isnan(m.running_s)
    assert m.recovered and abs(m.recovery_s - truth_s(x)) <= 1.5
    # a restart faster than the sampling period: never seen not running, only the counter moves
    quick, [y] = synth([{"at": 300.3, "detect": 0.8, "down": 0.9}])
    assert not (quick["all_running"] == False).any()  # noqa: E712
    q = measure(quick, y["t_fail"])
    assert q.detect_s == pytest.approx(1.7) and q.running_s == q.detect_s and q.restarts_delta == 1
    assert abs(q.recovery_s - truth_s(y)) <= 1.5


def test_never_recovers():
    df, [x] = synth(cap=900.0)  # less capacity than input: the lag only grows
    m = measure(df, x["t_fail"])
    assert not m.recovered and math.isnan(m.recovery_s) and math.isnan(m.catchup_s)
    assert m.running_s == pytest.approx(5.7, abs=0.5) and m.peak_lag_ms > 30_000


def test_timeout_and_series_end():
    df, [x] = synth(cap=1100.0)  # catch-up takes l0 * 10 = 130 s
    assert measure(df, x["t_fail"]).recovered
    assert not measure(df, x["t_fail"], RecoveryParams(timeout_s=60)).recovered
    cut = df[df["t"] < x["t_fail"] + 100]
    assert not measure(cut, x["t_fail"]).recovered
    # recovered at the very end but the K-second run is incomplete: not recovered
    end = df[df["t"] < x["t_rec"] + 5]
    assert not measure(end, x["t_fail"]).recovered


def test_tasks_never_running_again():
    df, [x] = synth()
    df.loc[df["t"] > x["t_det"], "all_running"] = False
    m = measure(df, x["t_fail"])
    assert not m.recovered and math.isnan(m.running_s) and m.detect_s < 2.5


def test_short_in_band_pass_during_catch_up_does_not_end_recovery():
    df, [x] = synth()
    blip = (df["t"] > x["t_run"] + 3) & (df["t"] < x["t_run"] + 9)  # 5 samples that look normal
    df.loc[blip, ["lag_ms", "latency_p99_ms", "throughput"]] = [10.0, 90.0, 1000.0]
    m = measure(df, x["t_fail"])
    assert abs(m.recovery_s - truth_s(x)) <= 1.5
    early = measure(df, x["t_fail"], RecoveryParams(consecutive_s=4))
    assert early.recovery_s < truth_s(x) - 5  # K is what protects against it


def test_baseline_outliers_do_not_widen_the_band():
    df, [x] = synth()
    base = df.index[(df["t"] < x["t_fail"]) & (df["t"] > x["t_fail"] - 100)]
    df.loc[base[10], "lag_ms"] = 9000.0  # one hiccup before the failure
    df.loc[base[40], "latency_p99_ms"] = 8000.0
    band = steady_band(df, x["t_fail"])
    assert band["lag_ms"][1] < 1000 and band["latency_p99_ms"][1] < 400
    assert abs(measure(df, x["t_fail"]).recovery_s - truth_s(x)) <= 1.5
    # mean/std is dragged by the hiccup: the band admits lag of seconds
    assert steady_band(df, x["t_fail"], RecoveryParams(robust=False, cover_quantile=0))["lag_ms"][1] > 2000


def test_steady_noise_and_checkpoint_spikes_no_false_failure():
    df, [x] = synth(noise=0.06, ckpt_spikes=True, seed=3)
    m = measure(df, x["t_fail"])
    assert m.recovered and abs(m.recovery_s - truth_s(x)) <= 1.5 and 1.5 <= m.detect_s < 2.5
    # nothing happens at all: no detection, "recovered" at once
    calm, _ = synth(failures=(), noise=0.06, ckpt_spikes=True, seed=4)
    q = measure(calm, T0 + 300.3)
    assert math.isnan(q.detect_s) and math.isnan(q.running_s)
    assert q.recovered and q.recovery_s < 2 and q.restarts_delta == 0
    for seed in range(5):  # noise alone never breaks a whole 10 s run for long
        calm, _ = synth(failures=(), noise=0.06, ckpt_spikes=True, seed=seed)
        assert measure(calm, T0 + 300.3).recovery_s < 2


def test_jitter_and_gaps():
    df, [x] = synth(jitter=0.15, drop=0.08, seed=7)
    m = measure(df, x["t_fail"])
    assert m.recovered and abs(m.recovery_s - truth_s(x)) <= 2.0


def test_missing_latency_and_lag_columns():
    df, [x] = synth(latency=False)
    m = measure(df, x["t_fail"])
    assert m.signals == ("lag_ms", "throughput") and math.isnan(m.pre_latency_p99_ms)
    assert abs(m.recovery_s - truth_s(x)) <= 1.5
    only_thr = df.drop(columns=["lag_ms", "backlog"])  # any job: standard counters only
    m2 = measure(only_thr, x["t_fail"])
    assert m2.signals == ("throughput",) and abs(m2.recovery_s - truth_s(x)) <= 1.5
    assert math.isnan(m2.peak_lag_ms)
    df_nan = df.assign(lag_ms=np.nan)  # present but all NaN: same as missing
    assert measure(df_nan, x["t_fail"]).signals == ("throughput",)
    with pytest.raises(KhaosError, match="neither lag_ms nor throughput"):
        measure(df.drop(columns=["lag_ms", "throughput"]), x["t_fail"])


def test_lag_catches_a_slow_catch_up_that_throughput_misses():
    df, [x] = synth(cap=1080.0, n=900)  # catch-up excess within the 10 % throughput band
    assert abs(measure(df, x["t_fail"]).recovery_s - truth_s(x)) <= 2.0
    blind = measure(df.drop(columns=["lag_ms", "latency_p99_ms", "backlog"]), x["t_fail"])
    assert blind.recovery_s < truth_s(x) / 2  # known limit of throughput-only jobs (docs/recovery.md)


def test_too_short_baseline():
    df, [x] = synth()
    with pytest.raises(KhaosError, match="samples in the baseline window"):
        measure(df[df["t"] > x["t_fail"] - 6], x["t_fail"])
    with pytest.raises(KhaosError):
        steady_band(df, x["t_fail"], baseline=(x["t_fail"] - 5, x["t_fail"]))
    with pytest.raises(KhaosError, match="'t'"):
        measure(df.drop(columns=["t"]), x["t_fail"])


@pytest.mark.parametrize("since, down", [(8.0, 5.0), (20.0, 5.0), (8.0, 15.0)])
def test_larger_downtime_times_rate_gives_larger_recovery(since, down):
    results = {}
    for rate in (600.0, 1000.0, 1400.0):
        df, [x] = synth([{"at": 300.3, "since_ckpt": since, "down": down}], rate=rate, n=700)
        m = measure(df, x["t_fail"])
        physics = down + expected_catchup_s(expected_peak_lag_s(30, since, down), rate, 2000.0)
        assert abs(m.recovery_s - physics) <= 1.5, (rate, m.recovery_s, physics)
        results[rate] = m.recovery_s
    assert results[600.0] < results[1000.0] < results[1400.0]


def test_more_lag_to_replay_gives_larger_recovery():
    r = [
        measure(*(lambda d, xs: (d, xs[0]["t_fail"]))(*synth([{"at": 300.3, "since_ckpt": s, "down": d}]))).recovery_s
        for s, d in [(2, 3), (8, 5), (20, 5), (20, 15)]
    ]
    assert r == sorted(r) and r[-1] - r[0] > 40


def test_physics_helpers():
    assert expected_peak_lag_s(30, None, 5) == 35  # worst case: a whole interval to replay
    assert expected_peak_lag_s(30, 12, 5) == 17
    assert expected_catchup_s(17, 1000, 2000) == 17
    assert expected_catchup_s(10, 1000, 1000) == math.inf
    with pytest.raises(KhaosError):
        expected_peak_lag_s(30, -1, 5)


def test_measure_all_two_failures_close_together():
    fails = [{"at": 300.3}, {"at": 360.3}]  # first recovers at ~318: 42 s of clean samples before the second
    df, xs = synth(fails)
    out = measure_all(df, [{"t_fail": x["t_fail"], "copy": "ci30"} for x in xs])
    assert list(out["copy"]) == ["ci30", "ci30"] and out["error"].isna().all()
    assert out["recovered"].all()
    for (_, row), x in zip(out.iterrows(), xs):
        assert abs(row["recovery_s"] - truth_s(x)) <= 1.5
    assert out["baseline_s_used"][0] == pytest.approx(120, abs=1)
    assert 38 <= out["baseline_s_used"][1] <= 43 and not out["baseline_reused"].any()
    # measured alone, the second failure's default baseline would swallow the first failure
    alone = measure(df, xs[1]["t_fail"])
    assert alone.band["throughput"][1] > 1500 or alone.band["lag_ms"][1] > 2000


def test_measure_all_second_failure_during_first_recovery():
    fails = [{"at": 300.3}, {"at": 312.3}]  # second strikes while the first still catches up
    df, xs = synth(fails)
    out = measure_all(df, [{"t_fail": xs[1]["t_fail"], "t_running": xs[1]["t_run"]}, {"t_fail": xs[0]["t_fail"]}])
    assert list(out["t_fail"]) == [xs[0]["t_fail"], xs[1]["t_fail"]]  # sorted
    assert not out["recovered"][0] and out["recovered"][1]
    assert out["baseline_reused"][1] and out["baseline_s_used"][1] == pytest.approx(120, abs=1)
    assert out["running_s"][1] == pytest.approx(5.0)
    assert abs(out["recovery_s"][1] - truth_s(xs[1])) <= 1.5


def test_measure_all_reports_errors_per_failure():
    df, xs = synth([{"at": 700.3}], n=900)
    out = measure_all(df, [{"t_fail": T0 + 3.3}, {"t_fail": xs[0]["t_fail"]}])
    assert "baseline window" in out["error"][0] and not out["recovered"][0]
    assert pd.isna(out["error"][1]) and out["recovered"][1]
    # an unmeasurable failure is assumed over only after timeout_s: the next baseline starts there
    assert out["baseline_s_used"][1] == pytest.approx(700 - 3 - 600, abs=1)


def test_single_stray_sample_is_smoothed_but_a_long_hole_breaks_the_run():
    df, [x] = synth()
    after = df.index[df["t"] > x["t_rec"] + 1]
    spiky = df.copy()
    spiky.loc[after[3], "latency_p99_ms"] = 5000.0  # one GC pause right after catching up
    assert abs(measure(spiky, x["t_fail"]).recovery_s - truth_s(x)) <= 1.5
    assert measure(spiky, x["t_fail"], RecoveryParams(smooth_samples=1)).recovery_s > truth_s(x) + 3
    holey = df.drop(index=after[2:10])  # 8 s without samples: normality there is unknown
    assert measure(holey, x["t_fail"]).recovery_s > truth_s(x) + 8
    assert abs(measure(df.drop(index=after[2:5]), x["t_fail"]).recovery_s - truth_s(x)) <= 1.5  # 4 s hole


def test_one_stray_second_served_twice_by_the_rest_cache_does_not_break_a_run():
    df, [x] = synth()
    after = df.index[df["t"] > x["t_rec"] + 1]
    cached = df.copy()
    cached.loc[after[3:5], "throughput"] = 1500.0  # one odd second (checkpoint), served to two samples
    assert abs(measure(cached, x["t_fail"]).recovery_s - truth_s(x)) <= 1.5
    twice = df.copy()
    twice.loc[after[3], "throughput"] = 1500.0  # two different odd seconds are a real excursion
    twice.loc[after[4], "throughput"] = 1600.0
    assert measure(twice, x["t_fail"]).recovery_s > truth_s(x) + 3


def test_catch_up_and_frozen_metrics_are_still_judged_per_sample():
    df, [x] = synth(cap=20000.0)  # the synthetic catch-up is over within the first running second
    run = df.index[df["t"] >= x["t_run"]]
    frozen = df.copy()
    # the first running samples show the frozen pre-failure values, then one catch-up second served twice
    frozen.loc[run[0:3], ["throughput", "lag_ms", "latency_p99_ms", "backlog"]] = [1000.0, 0.0, 80.0, 0.0]
    frozen.loc[run[3:5], ["throughput", "lag_ms", "latency_p99_ms", "backlog"]] = [3000.0, 4000.0, 4000.0, 4000.0]
    m = measure(frozen, x["t_fail"])
    assert m.recovery_s >= frozen.loc[run[4], "t"] - x["t_fail"]  # not at the frozen samples
    assert measure(df, x["t_fail"]).recovery_s < frozen.loc[run[2], "t"] - x["t_fail"]  # they made the difference


def test_remeasure_reproduces_a_real_profile_and_drops_a_cache_artifact():
    results = pd.read_csv(LAB_U01 / "results.csv")
    params = RecoveryParams(baseline_s=20.0, consecutive_s=8.0, timeout_s=120.0)  # examples/experiment-lab.yml
    out = remeasure(results, LAB_U01 / "series", params)
    assert list(out["trial"]) == list(results["trial"]) and out["recovered"].all()
    proc = out["mode"] == "process"
    # the process kill is measured exactly as the profiler did
    assert out.loc[proc, "recovery_s"].item() == pytest.approx(results.loc[proc, "recovery_s"].item(), abs=1e-6)
    assert out.loc[proc, "running_s"].item() == pytest.approx(results.loc[proc, "running_s"].item(), abs=1e-6)
    # the host kill: caught up (latency and throughput normal) 9.8 s after the failure; the profiler's
    # 17.8 s came from one checkpoint second (sink count 1128 vs a 904-1104 band) served to two samples
    host = out.loc[~proc].iloc[0]
    assert results.loc[~proc, "recovery_s"].item() > 17
    assert host["recovery_s"] == pytest.approx(9.77, abs=0.05) and host["running_s"] < host["recovery_s"]
    assert host["detect_s"] == pytest.approx(results.loc[~proc, "detect_s"].item())


def test_remeasure_errors_name_the_trial(tmp_path):
    results = pd.read_csv(LAB_U01 / "results.csv")
    with pytest.raises(KhaosError, match="no series .* for trial u01-ci12-r1000-host0"):
        remeasure(results, tmp_path)
    with pytest.raises(KhaosError, match="lack column"):
        remeasure(results.drop(columns=["detect_s"]), LAB_U01 / "series")
    with pytest.raises(KhaosError, match="trial u01-ci12-r1000-host0: only 0 samples in the baseline"):
        remeasure(results.assign(t_fail=results["t_fail"] + 1e6), LAB_U01 / "series")


def test_a_run_never_starts_on_a_sample_that_shows_the_catch_up():
    df, [x] = synth(cap=20000.0)  # the synthetic catch-up is over within the first running second
    run = df.index[df["t"] >= x["t_run"]]
    seen = df.copy()
    # as in the real profiles: the first running sample has no records at the sink yet (count 0,
    # latency 0), the next one reports the catch-up second; the rolling median alone would call it normal
    seen.loc[run[0], ["throughput", "latency_p99_ms", "lag_ms", "backlog"]] = [0.0, 0.0, 0.0, 0.0]
    seen.loc[run[1], ["throughput", "latency_p99_ms", "lag_ms", "backlog"]] = [15000.0, 10000.0, 0.0, 0.0]
    m = measure(seen, x["t_fail"])
    assert m.recovery_s == pytest.approx(seen.loc[run[2], "t"] - x["t_fail"])


def rest_sampled(df, x, hz=2.0, phase=0.0, seed=0, cache_s=1.0):
    """``df`` (synth without jitter: row i is the second [T0+i, T0+i+1)) as a REST sampler sees it.

    Samples every 1/hz s from T0 + phase. REST serves values fetched up to ``cache_s`` earlier, at f;
    the sink's per-second gauges then describe the second before f (``sink_second`` = floor(f) - 1),
    the source's lag is the one at f. Seconds without tasks running publish nothing (sink_second NaN).
    ``running_since`` is Flink's exact RUNNING time of the current attempts."""
    rng = np.random.default_rng(seed)
    by_sec = df.set_index(np.floor(df["t"]).astype(int))
    rows = []
    for u in np.arange(T0 + 5 + phase, df["t"].iloc[-1] - 2, 1 / hz):
        f = u - rng.uniform(0, cache_s)
        now, at_f, sec = by_sec.loc[int(u)], by_sec.loc[int(f)], int(f) - 1
        row = dict(
            t=u,
            all_running=now["all_running"],
            restarts=now["restarts"],
            running_since=(x["t_run"] if u >= x["t_run"] else T0 - 50) if now["all_running"] else np.nan,
            rate_in=at_f["rate_in"],
            lag_ms=at_f["lag_ms"],
            backlog=at_f["backlog"],
            sink_second=np.nan,
            throughput=np.nan,
            latency_p99_ms=np.nan,
        )
        if now["all_running"] and by_sec.loc[sec, "all_running"] and not (x["t_fail"] <= sec + 1 and sec < x["t_run"]):
            row.update(
                sink_second=float(sec),
                throughput=by_sec.loc[sec, "throughput"],
                latency_p99_ms=by_sec.loc[sec, "latency_p99_ms"],
            )
        rows.append(row)
    return pd.DataFrame(rows)


def test_sink_values_are_placed_on_the_second_they_describe():
    """With sink_second the end of recovery is the start of the first normal second: within 1 s of
    the truth whatever the sampling phase and cache age; on sample times it was 1-3 s late and jittered."""
    base, [x] = synth(noise=0.01)
    first_normal = math.ceil(x["t_rec"]) - x["t_fail"]  # the first whole second after the catch-up
    on_seconds, on_samples = [], []
    for seed in range(8):
        df = rest_sampled(base, x, phase=seed / 8, seed=seed)
        m = measure(df, x["t_fail"], RecoveryParams(consecutive_s=6))
        assert m.recovered and m.running_s == pytest.approx(x["t_run"] - x["t_fail"])  # Flink's own time
        on_seconds.append(m.recovery_s)
        old = measure(df.drop(columns=["sink_second", "running_since"]), x["t_fail"], RecoveryParams(consecutive_s=6))
        on_samples.append(old.recovery_s)
    assert all(r == pytest.approx(first_normal) for r in on_seconds), (on_seconds, first_normal)
    assert min(on_samples) > first_normal + 1 and max(on_samples) - min(on_samples) >= 0.5, on_samples


def test_stale_and_pre_restart_sink_seconds_are_not_evidence_of_recovery():
    base, [x] = synth(noise=0.01)
    df = rest_sampled(base, x, seed=1)
    truth = measure(df, x["t_fail"], RecoveryParams(consecutive_s=6)).recovery_s
    # right after the restart REST still serves the last pre-failure second (frozen, in band) ...
    run = df.index[df["t"] >= x["t_run"]]
    frozen = df.copy()
    frozen.loc[run[:6], ["sink_second", "throughput", "latency_p99_ms", "lag_ms"]] = [
        math.floor(x["t_fail"]) - 1,
        1000.0,
        80.0,
        0.0,
    ]
    assert measure(frozen, x["t_fail"], RecoveryParams(consecutive_s=6)).recovery_s == pytest.approx(truth)
    # ... and a sink second reported long after it ended (no records reached the sink since) is dropped
    stale = df.copy()
    later = df.index[df["t"] > x["t_fail"] + truth + 2][:16]  # 8 s: longer than max_gap_s
    stale.loc[later, "sink_second"] = stale.loc[later, "t"].map(math.floor) - 10
    assert measure(stale, x["t_fail"], RecoveryParams(consecutive_s=6)).recovery_s > truth + 3


def test_tasks_seen_down_break_a_run_of_seconds():
    base, [x] = synth(noise=0.01)
    df = rest_sampled(base, x, seed=2)
    p = RecoveryParams(consecutive_s=6)
    truth = measure(df, x["t_fail"], p).recovery_s
    blip = df.copy()
    i = df.index[df["t"] > x["t_fail"] + truth + 2][0]
    blip.loc[i, ["all_running", "sink_second"]] = [False, np.nan]  # a task restarted within the run
    assert measure(blip, x["t_fail"], p).recovery_s > truth + 2


def test_every_failure_of_a_unit_is_judged_against_the_steady_state_before_the_first(tmp_path):
    """After the source's lag is gone, the records in flight still drain for a few seconds (latency up,
    sink above the input rate). A second failure whose own baseline held that tail would learn wide bands
    and end its recovery early; the unit's first window gives both failures the same, true end."""
    xs_at = ({"at": 200.3}, {"at": 236.3})  # the second 10 s after the first's tail (the profiler's settle_s)
    df, xs = synth(failures=xs_at, n=400)
    tail_s = 8
    for x in xs:  # the in-flight tail after each catch-up: latency 2-3 s, sink at capacity
        tail = (df["t"] >= x["t_rec"]) & (df["t"] < x["t_rec"] + tail_s)
        df.loc[tail, "latency_p99_ms"] = 3000.0 - 125 * (df.loc[tail, "t"] - x["t_rec"])
        df.loc[tail, "throughput"] = 2000.0
    df.to_csv(tmp_path / "c1-u01.csv", index=False)
    results = pd.DataFrame(
        [
            {
                "trial": f"u01-process{k}",
                "cluster": "c1",
                "mode": "process",
                "rep": k,
                "t_fail": x["t_fail"],
                "detect_s": x["t_det"] - x["t_fail"],
            }
            for k, x in enumerate(xs)
        ]
    )
    p = RecoveryParams(baseline_s=20.0, consecutive_s=8.0, timeout_s=120.0)
    out = remeasure(results, tmp_path, p)
    for x, rec in zip(xs, out["recovery_s"]):
        assert rec == pytest.approx(truth_s(x) + tail_s, abs=1.5)
    # the second failure's own window (it holds the first's tail) would have ended it before its tail
    own = measure(df, xs[1]["t_fail"], p, t_detect=xs[1]["t_det"])
    assert own.recovery_s < truth_s(xs[1]) + tail_s - 3
    assert steady_window(xs[0]["t_fail"], p) == (xs[0]["t_fail"] - 20.0, xs[0]["t_fail"])


def test_a_failure_is_measured_once_even_when_the_wait_ends_after_its_deadline():
    from khaos_controller.profile.measure import await_recovery

    df, (truth,) = synth()
    naps = []
    m = await_recovery(lambda: df, truth["t_fail"], RecoveryParams(), deadline=0.0, sleep=naps.append)
    assert naps == [2] and m.recovered  # one look, after the deadline: the series shows the recovery
    assert m.recovery_s == pytest.approx(truth_s(truth), abs=1.5)
    with pytest.raises(KhaosError, match="no usable samples around the failure at .*: only 0 samples"):
        await_recovery(lambda: df[df["t"] > truth["t_fail"]], truth["t_fail"], RecoveryParams(), 0.0, naps.append)


def test_the_steady_latency_statistics_count_each_second_once():
    from khaos_controller.profile.recovery import steady_latency

    # the sampler sees each second twice; one second (the checkpoint's) is slow
    base = pd.DataFrame(
        {
            "latency_p99_ms": [100.0, 100.0, 700.0, 700.0, 100.0, 100.0, float("nan")],
            "sink_second": [1, 1, 2, 2, 3, 3, 4],
        }
    )
    mean, late = steady_latency(base, 500.0)
    assert mean == pytest.approx(300.0) and late == pytest.approx(1 / 3)
    assert np.isnan(steady_latency(base, None)[1]) and np.isnan(steady_latency(base.iloc[6:], 500.0)[0])
