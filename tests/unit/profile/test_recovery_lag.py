"""The lag rule of profile/recovery.py (any Kafka-fed job, standard metrics) on synthetic series with a known
answer: back inside the pre-failure lag band, and the records in network buffers drained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.profile.recovery import RecoveryParams, lag_band, measure

T0 = 1_800_000_000.0
LAG = RecoveryParams(baseline_s=50, consecutive_s=6, timeout_s=120, rule="lag")


def kafka_job(rate=2000.0, l0_records=30_000, drain=4000.0, buffered_s=0.0, noise=300, seed=1, down=5.0):
    """A Kafka-fed job sampled twice a second: pendingRecords (backlog) 0..noise in steady state; killed at
    t_fail = T0 + 60, down for ``down`` s, then ``l0_records`` behind, draining at ``drain`` records/s. The
    sink's records-in rate (throughput) runs at rate + drain while the source catches up and ``buffered_s``
    longer (records in network buffers), then back at the rate. Truth: recovery at the later of the two."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, 150, 0.5)
    tf = T0 + 60.0
    t_run = tf + down
    t_src = t_run + (l0_records - 2 * rate) / drain  # backlog down to the 1 s floor
    rows = []
    for x in t:
        if tf <= x < t_run:
            rows.append({"t": x, "all_running": False})
            continue
        backlog = float(rng.integers(0, noise))
        thr = rate * (1 + rng.normal(0, 0.03))
        if x >= t_run:
            backlog = max(backlog, l0_records - (x - t_run) * drain)
            if x < t_src + buffered_s:
                thr = rate + drain
        rows.append({"t": x, "all_running": True, "backlog": backlog, "rate_in": rate, "throughput": thr})
    df = pd.DataFrame(rows)
    df["restarts"] = (df["t"] >= tf + 1).astype(int)
    return df, tf, t_run, t_src


def test_back_inside_the_lag_band_is_recovered():
    df, tf, _run, t_src = kafka_job()
    m = measure(df, tf, LAG)
    assert m.recovered and m.rule == "lag" and m.signals == ("backlog", "throughput")
    assert m.band["backlog"] == (0.0, 2000.0)  # the 1 s floor at 2000/s is above 1.5 x p95 of the noise
    assert abs(m.recovery_s - (t_src - tf)) <= 0.5, (m.recovery_s, t_src - tf)
    assert m.peak_lag_ms == pytest.approx(m.peak_backlog / 2000 * 1000)  # the backlog's age at the input rate
    assert m.peak_backlog == pytest.approx(30_000, rel=0.01)


def test_records_still_in_network_buffers_delay_recovery():
    df, tf, _run, t_src = kafka_job(buffered_s=6.0)
    m = measure(df, tf, LAG)
    assert abs(m.recovery_s - (t_src + 6.0 - tf)) <= 0.6, m.recovery_s
    alone = measure(df, tf, RecoveryParams(**{**LAG.__dict__, "lag_throughput": False}))
    assert alone.signals == ("backlog",) and abs(alone.recovery_s - (t_src - tf)) <= 0.5  # 6 s early


def test_the_band_is_the_baselines_high_water_mark_or_the_floor():
    base = pd.DataFrame({"backlog": [0.0] * 10 + [5000.0] * 10 + [1000.0] * 80, "lag_ms": np.nan})
    sig, hi = lag_band(base, 2000.0, LAG)
    assert sig == "backlog" and hi == pytest.approx(5000 * 1.5)  # p95 = 5000 (10 % of the samples)
    sig, hi = lag_band(base.assign(backlog=0.0), 2000.0, LAG)
    assert hi == 2000.0  # one second of input
    sig, hi = lag_band(base.assign(backlog=0.0), 10.0, LAG)
    assert hi == 100.0  # ... never below 100 records
    only_ms = pd.DataFrame({"backlog": np.nan, "lag_ms": [50.0] * 100})
    assert lag_band(only_ms, 2000.0, LAG) == ("lag_ms", 1000.0)


def test_without_a_lag_signal_it_says_so_in_one_line():
    df, tf, _run, _src = kafka_job()
    with pytest.raises(KhaosError) as e:
        measure(df.drop(columns=["backlog"]), tf, LAG)
    assert "neither backlog (pendingRecords) nor lag_ms" in str(e.value) and "\n" not in str(e.value)


def test_a_job_that_never_catches_up_is_not_recovered():
    df, tf, _run, _src = kafka_job(drain=50.0)
    m = measure(df, tf, LAG)
    assert not m.recovered and np.isnan(m.recovery_s)
