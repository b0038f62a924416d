"""Capacity from busy time (the Flink autoscaler's rate / busy fraction), the tracker's windows and the
restored checkpoint, utilization levels in experiment files (pure logic: the numbers are given)."""

from __future__ import annotations

import math

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.profile import capacity, experiment


def look(t: float, busy: dict[tuple[str, int], float], uptime: float | None = None) -> list[dict]:
    """A busy_times() answer: cumulative busy ms per (vertex, subtask) at t; the rest of the uptime idle."""
    up = (t if uptime is None else uptime) * 1000
    return [
        {
            "t": t,
            "vertex": v,
            "name": f"op-{v}",
            "subtask": s,
            "busy_ms": b,
            "idle_ms": up - b,
            "backpressured_ms": 0.0,
            "records_in": b / 4.0,  # 4 ms per record while busy: 250 records/s per subtask
            "records_out": None,
        }
        for (v, s), b in busy.items()
    ]


def test_capacity_is_rate_over_the_busiest_subtask():
    before = look(100.0, {("a", 0): 10_000, ("b", 0): 40_000, ("b", 1): 30_000})
    after = look(110.0, {("a", 0): 11_000, ("b", 0): 47_000, ("b", 1): 35_000})  # busy 0.1, 0.7, 0.5
    e = capacity.busy_capacity(before, after, rate=350.0)
    assert e.busy == pytest.approx(0.7)
    assert e.capacity == pytest.approx(500.0)
    assert e.bottleneck == "op-b#0" and e.window_s == 10.0
    assert e.true_rate == pytest.approx(250.0)  # 1750 records in 7 s busy


def test_no_capacity_across_a_restart_or_from_an_idle_job():
    before = look(100.0, {("a", 0): 50_000})
    restarted = look(110.0, {("a", 0): 2_000}, uptime=5)  # a new attempt: counters started again
    assert capacity.busy_capacity(before, restarted, 100.0) is None
    idle = capacity.busy_capacity(before, look(110.0, {("a", 0): 50_100}), 100.0)
    assert idle.busy == pytest.approx(0.01) and idle.capacity is None  # below MIN_BUSY: says nothing
    assert capacity.busy_capacity(before, look(110.0, {("a", 0): 51_000}), 0.0) is None
    assert capacity.busy_capacity([], before, 100.0) is None


def tracker_with(looks, checkpoints=None, restores=None) -> capacity.Tracker:
    tr = capacity.Tracker(client=None, job_id="j")
    tr.looks = looks
    tr.checkpoints = checkpoints or {}
    tr.restores = restores or []
    return tr


def test_tracker_window_and_restored_checkpoint_age():
    looks = [look(float(t), {("v", 0): 600.0 * t}) for t in range(0, 62, 2)]  # busy 0.6 throughout
    looks += [look(float(t), {("v", 0): 1000.0 * (t - 62)}, uptime=t - 62) for t in range(64, 100, 2)]
    tr = tracker_with(
        looks,
        checkpoints={7: {"trigger_s": 55.0}, 8: {"trigger_s": 58.5}},
        restores=[(10.0, 3), (63.0, 8)],
    )
    e = tr.estimate(20.0, 60.0, 300.0)
    assert e.capacity == pytest.approx(500.0) and e.window_s == 40.0
    assert tr.estimate(30.0, 95.0, 300.0) is not None  # the longest span of one attempt inside the window
    assert tr.restored_after(60.0) == (8, 58.5)
    assert tr.restored_after(90.0) is None

    rows = [
        {"t_fail": 60.0, "rate": 300.0, "pre_rate": 310.0, "recovered": True, "recovery_s": 20.0},
        {"t_fail": 95.0, "rate": 300.0, "pre_rate": float("nan"), "recovered": True, "recovery_s": 5.0},
    ]
    capacity.annotate(rows, tr, window_s=30.0, consecutive_s=8.0, probed=480.0, level=0.6)
    first, second = rows
    assert first["capacity_busy"] == pytest.approx(310 / 0.6)  # the measured pre-failure rate
    assert first["capacity"] == first["capacity_busy"] and first["capacity_probe"] == 480.0
    assert first["utilization"] == pytest.approx(300 / (310 / 0.6))
    assert first["restored_checkpoint_age_s"] == pytest.approx(1.5) and first["utilization_target"] == 0.6
    # the second failure's window starts after the first one's recovery + K: only [88, 95) is steady
    assert second["capacity_busy"] is None and second["capacity"] == 480.0  # falls back to the probe
    assert second["utilization"] == pytest.approx(300 / 480)

    rows = [{"t_fail": 60.0, "rate": 300.0, "pre_rate": 300.0, "recovered": False, "recovery_s": math.nan}]
    capacity.annotate(rows, tr, window_s=30.0, consecutive_s=8.0, probed=480.0, source="probe")
    assert rows[0]["capacity"] == 480.0 and rows[0]["capacity_busy"] == pytest.approx(500.0)


def test_unit_rate_needs_a_probed_capacity():
    assert capacity.unit_rate(0.85, 480.0) == 408.0
    with pytest.raises(KhaosError, match="probed capacity"):
        capacity.unit_rate(0.5, None)


REGIME = """
job:
  jar: build/jobs/iot-vehicles.jar
  config: {state.backend.type: rocksdb, execution.checkpointing.incremental: false}
checkpoint_intervals: [3, 10, 30]
workload: {utilizations: [0.5, 0.7, 0.85]}
failures: {modes: [process, host], margin_s: 1}
capacity: {probe_rate: 3000}
"""


def test_utilization_levels_make_units_per_cluster_capacity(tmp_path, jar_built):
    p = tmp_path / "regime.yml"
    p.write_text(REGIME)
    exp = experiment.load(p)
    assert exp.failures == 18 and exp.rates == [] and exp.utilizations == [0.5, 0.7, 0.85]
    assert exp.job.config == {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "false"}
    assert exp.capacity.probe_rate == 3000 and exp.capacity.source == "busy"
    from khaos_controller.profile.profiler import Profiler

    prof = Profiler(exp, out=tmp_path / "out", progress=False)
    units = prof.units()
    assert [u.ident for u in units[:3]] == ["u01-ci30-u50", "u02-ci30-u70", "u03-ci30-u85"]
    assert "utilization levels" in prof.describe() and "saturation probe at 3000" in prof.describe()

    for bad, why in (
        (REGIME.replace("workload: {", "workload: {rates: [5], "), "give one of rates, trace and utilizations"),
        (REGIME.replace("[0.5, 0.7, 0.85]", "[0.5, 0]"), "workload.utilizations.1"),
        (REGIME.replace("{probe_rate: 3000}", "{probe: false}"), "needs the capacity probe"),
        (REGIME.replace("{probe_rate: 3000}", "{source: guess}"), "capacity.source"),
    ):
        p.write_text(bad)
        with pytest.raises(KhaosError, match=why):
            experiment.load(p)
