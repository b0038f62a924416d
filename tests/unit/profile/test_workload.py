"""Workload module: traces, failure points, forecast, and the arithmetic of record_rate (no Flink)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from khaos_controller.control.forecast import forecast
from khaos_controller.errors import KhaosError
from khaos_controller.flink.client import FlinkError
from khaos_controller.profile import workload


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and len(text) < 600, text
    return text


def multi_day(days: int = 3, day_s: int = 20_000) -> pd.Series:
    """Several compressed days, each with its own seed (and so its own bursts and noise)."""
    parts = [workload.synthetic_day(day_s, 200, 5000, seed=d) for d in range(days)]
    return pd.Series(np.concatenate([p.to_numpy() for p in parts]), name="rate")


# ---- failure points ---------------------------------------------------------------------
def test_failure_points_span_the_range_and_keep_their_distance():
    rates = multi_day()
    fp = workload.failure_points(rates, count=12, window=300, min_distance=1800)
    assert list(fp.columns) == ["t", "target_rate", "avg_rate"]
    assert len(fp) == 12
    assert fp["t"].is_monotonic_increasing
    assert (np.diff(fp["t"]) >= 1800).all()
    avg = rates.rolling(300).mean()
    assert np.allclose(fp["avg_rate"], avg.iloc[fp["t"]].to_numpy())
    lo, hi = avg.min(), avg.max()
    targets = np.linspace(lo, hi, 12)
    assert np.allclose(sorted(fp["target_rate"]), targets)
    spacing = targets[1] - targets[0]
    # the extremes are covered: a point within half a target spacing of the min and of the max
    assert (fp["avg_rate"] - lo).abs().min() <= spacing / 2
    assert (fp["avg_rate"] - hi).abs().min() <= spacing / 2
    # and every target has a point close to it
    for target, got in zip(fp["target_rate"], fp["avg_rate"]):
        assert abs(got - target) <= spacing / 2


def test_failure_points_return_what_fits():
    rates = multi_day(days=1, day_s=5000)
    fp = workload.failure_points(rates, count=12, window=300, min_distance=1800)
    assert 1 <= len(fp) < 12
    assert (np.diff(fp["t"]) >= 1800).all()
    assert (fp["t"] >= 299).all()  # never before the first full window


def test_failure_points_without_min_distance_are_distinct():
    fp = workload.failure_points(workload.step_trace([1, 2, 3], 10), count=5, window=1, min_distance=0)
    assert len(fp) == 5 and fp["t"].is_unique


def test_failure_points_series_shorter_than_window():
    with pytest.raises(KhaosError) as e:
        workload.failure_points(pd.Series(np.ones(100)), window=300)
    assert "shorter than the 300 s averaging window" in one_line(e)


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"count": 0}, "count"),
        ({"window": 0}, "window"),
        ({"min_distance": -1}, "min_distance"),
        ({"count": 2.5}, "count"),
    ],
)
def test_failure_points_bad_parameters(kw, word):
    with pytest.raises(KhaosError) as e:
        workload.failure_points(pd.Series(np.ones(1000)), **kw)
    assert word in one_line(e)


# ---- trace files ------------------------------------------------------------------------
def test_trace_round_trip(tmp_path):
    s = pd.Series([0.4, 0.5, 1.5, 2.49, 1000.0, -3.0])
    path = tmp_path / "trace.txt"
    assert workload.write_trace(s, path) == 6
    assert path.read_text() == "0\n1\n2\n2\n1000\n0\n"
    back = workload.load_trace(path)
    assert back.tolist() == [0, 1, 2, 2, 1000, 0]
    assert list(back.index) == list(range(6))


def test_window_round_trip(tmp_path):
    rates = multi_day(days=1, day_s=4000)
    win = workload.trace_window(rates, center=100, before=1200, after=1200)
    assert win.index[0] == 0 and len(win) == 1300  # clipped at the start
    win = workload.trace_window(rates, center=2000, before=1200, after=1200)
    assert win.index[0] == 800 and len(win) == 2400
    workload.write_trace(win, tmp_path / "w.txt")
    back = workload.load_trace(tmp_path / "w.txt")
    assert np.abs(back.to_numpy() - win.to_numpy()).max() <= 0.5
    with pytest.raises(KhaosError):
        workload.trace_window(rates, center=4000, before=1, after=1)


def test_load_recorded_csv_fills_gaps_with_the_next_rate(tmp_path):
    path = tmp_path / "rec.csv"
    path.write_text("t,rate\n1000,10.0\n1001,20.0\n1004,30.0\n1005,40.0\n")
    s = workload.load_trace(path)
    assert s.tolist() == [10, 20, 30, 30, 30, 40]
    assert s.attrs["t0"] == 1000


def test_load_trace_skips_blank_and_comment_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# recorded\n5\n\n7.5\n")
    assert workload.load_trace(path).tolist() == [5.0, 7.5]


@pytest.mark.parametrize(
    "text, words",
    [
        ("1\n2\nabc\n4\n", ["line 3", "not a number"]),
        ("1\n\n-5\n", ["line 3", "negative"]),
        ("1\nnan\n", ["line 2", "not a number"]),
        ("t,rate\n10,1\n10,2\n", ["line 3", "does not increase"]),
        ("t,rate\n10,1\n11,x\n", ["line 3", "not a number"]),
        ("\n# nothing\n", ["no values"]),
    ],
)
def test_load_trace_errors(tmp_path, text, words):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(KhaosError) as e:
        workload.load_trace(path)
    msg = one_line(e)
    for w in words:
        assert w in msg


def test_load_trace_missing_file(tmp_path):
    with pytest.raises(KhaosError) as e:
        workload.load_trace(tmp_path / "nope.txt")
    assert "does not exist" in one_line(e)


def test_write_trace_refuses_nothing_to_replay(tmp_path):
    with pytest.raises(KhaosError):
        workload.write_trace(pd.Series([0.0, 0.2]), tmp_path / "z.txt")
    with pytest.raises(KhaosError):
        workload.write_trace(pd.Series([1.0, np.nan]), tmp_path / "z.txt")


# ---- synthetic traces -------------------------------------------------------------------
def test_step_trace_shape():
    s = workload.step_trace([100, 500, 250], 60)
    assert len(s) == 180
    assert s.iloc[0] == 100 and s.iloc[59] == 100 and s.iloc[60] == 500 and s.iloc[179] == 250
    assert list(s.index) == list(range(180))
    for bad in ([], [-1.0]):
        with pytest.raises(KhaosError):
            workload.step_trace(bad, 60)
    with pytest.raises(KhaosError):
        workload.step_trace([1.0], 0)


def test_synthetic_day_is_deterministic_and_day_shaped():
    a = workload.synthetic_day(3600, 0, 1000, seed=7)
    b = workload.synthetic_day(3600, 0, 1000, seed=7)
    c = workload.synthetic_day(3600, 0, 1000, seed=8)
    assert a.equals(b) and not a.equals(c)
    assert len(a) == 3600 and (a >= 0).all()
    smooth = a.rolling(300, center=True).median()
    assert smooth.iloc[1800] > 800 and smooth.iloc[200] < 200 and smooth.iloc[3400] < 200
    with pytest.raises(KhaosError):
        workload.synthetic_day(100, 10, 5, seed=1)


# ---- forecast ---------------------------------------------------------------------------
def test_forecast_follows_a_linear_ramp():
    ramp = pd.Series(10.0 * np.arange(3600))
    got = forecast(ramp, horizon_s=300)
    truth = 10.0 * np.arange(3600, 3900).mean()
    assert ramp.iloc[-60:].mean() < got
    assert abs(got - truth) / truth < 0.05
    flat = forecast(pd.Series(np.full(3600, 500.0)), horizon_s=600)
    assert flat == pytest.approx(500.0)


def test_forecast_is_clipped():
    up = pd.Series([0.0] * 60 + [500.0] * 60 + [1000.0] * 60)
    assert forecast(up, horizon_s=3600) == 2000.0
    down = pd.Series([1000.0] * 60 + [500.0] * 60 + [0.0] * 60)
    assert forecast(down, horizon_s=3600) == 0.0
    assert forecast(pd.Series([3.0, 5.0]), horizon_s=60) == 4.0  # under one step: the mean
    assert forecast(pd.Series([0.0] * 60 + [1000.0] * 60), horizon_s=600) == 500.0  # two blocks: no trend yet
    with pytest.raises(KhaosError):
        forecast(pd.Series([1.0]), horizon_s=0)


# ---- record_rate (arithmetic only, fake client and fake clock) --------------------------
class FakeClock:
    """Stands in for the time module: sleep advances the clock instantly."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def time(self):
        return 1_700_000_000.0 + self.now

    def sleep(self, s):
        self.now += s


class FakeFlink:
    """Same methods as FlinkClient; `readings` is one value per sample: a number, None (metric
    missing) or "error" (REST failure)."""

    def __init__(self, readings, names=("Source__Replay.emitted", "numRecordsOut"), vertex="Source: Replay"):
        self.readings, self.names, self.vertex = list(readings), list(names), vertex
        self.asked: list[str] = []

    def job(self, job_id):
        return {"vertices": [{"id": "v1", "name": self.vertex}, {"id": "v2", "name": "Sink: out"}]}

    def vertex_metric_names(self, job_id, vid):
        return self.names

    def vertex_metrics(self, job_id, vid, names, agg="sum"):
        assert agg == "sum" and vid == "v1"
        self.asked.extend(names)
        value = self.readings.pop(0)
        if value == "error":
            raise FlinkError("Flink REST GET /jobs: HTTP 503: busy")
        return {} if value is None else {names[0]: float(value)}

    def get(self, path, **kw):
        raise AssertionError("not needed")


def read_rows(path):
    return pd.read_csv(path)


def test_record_rate_counter_deltas_resets_and_gaps(tmp_path, monkeypatch):
    monkeypatch.setattr(workload, "time", FakeClock())
    # samples at ticks 0..7: baseline, +100, +150, restart (reset to 30), +100, missing, error, 400
    fake = FakeFlink([0, 100, 250, 30, 130, None, "error", 400])
    seen = []
    out = tmp_path / "rate.csv"
    rows = workload.record_rate(fake, "job", out, seconds=7, progress=lambda i, n: seen.append((i, n)))
    df = read_rows(out)
    assert rows == 5 == len(df)
    assert list(df.columns) == ["t", "rate"]
    # the last row covers three seconds (two samples lost): (400 - 130) / 3
    assert df["rate"].tolist() == pytest.approx([100, 150, 30, 100, 90])
    assert df["t"].tolist() == [1_700_000_000 + i for i in (1, 2, 3, 4, 7)]
    assert set(fake.asked) == {"Source__Replay.emitted"}  # the job's own counter is preferred
    assert seen[-1] == (7, 7)
    # the gap comes back as three seconds of the rate measured over it
    assert workload.load_trace(out).tolist() == pytest.approx([100, 150, 30, 100, 90, 90, 90])


def test_record_rate_falls_back_to_num_records_out(tmp_path, monkeypatch):
    monkeypatch.setattr(workload, "time", FakeClock())
    fake = FakeFlink([5, 15, 35], names=["numRecordsOut", "numRecordsIn"], vertex="Custom reader")
    rows = workload.record_rate(fake, "job", tmp_path / "r.csv", seconds=2, source="reader")
    assert rows == 2 and set(fake.asked) == {"numRecordsOut"}
    assert read_rows(tmp_path / "r.csv")["rate"].tolist() == [10, 20]


def test_record_rate_without_a_source_vertex(tmp_path, monkeypatch):
    monkeypatch.setattr(workload, "time", FakeClock())
    with pytest.raises(KhaosError) as e:
        workload.record_rate(FakeFlink([], vertex="Map"), "job", tmp_path / "r.csv", seconds=2)
    assert "no vertex whose name starts with 'Source'" in one_line(e)
