"""The collector's capacity estimate (control/collector.py): rate over the busiest subtask's busy fraction,
held over a missed look, dropped when too old."""

from __future__ import annotations

import collections

import pytest
from support.daemon import FakeCollector


def _look(t: float, busy_ms: float, idle_ms: float, records: float) -> list[dict]:
    """busy_times() rows of a 2-vertex job: the source nearly idle, the window operator busy."""
    return [
        {
            "t": t,
            "vertex": "v1",
            "name": "Source",
            "subtask": 0,
            "busy_ms": 0.05 * busy_ms,
            "idle_ms": idle_ms + 0.95 * busy_ms,
            "backpressured_ms": 0.0,
            "records_in": 0.0,
            "records_out": records,
        },
        {
            "t": t,
            "vertex": "v2",
            "name": "Window",
            "subtask": 0,
            "busy_ms": busy_ms,
            "idle_ms": idle_ms,
            "backpressured_ms": 0.0,
            "records_in": records,
            "records_out": records,
        },
    ]


def test_the_capacity_is_the_rate_over_the_busiest_subtasks_busy_fraction():
    from khaos_controller.control.collector import with_capacity

    obs = FakeCollector(rate=1000.0).snapshot(30)
    # 10 s apart: the window operator was busy 4 of 10 s while the job read 1000 events/s -> 2500 events/s
    out = with_capacity(obs, [_look(100.0, 0.0, 0.0, 0.0), _look(110.0, 4000.0, 6000.0, 10_000.0)])
    assert out.capacity == pytest.approx(2500.0) and out.busy == pytest.approx(0.4)
    assert out.utilization == pytest.approx(0.4)
    # too short a window, a restart between the looks (counters went down), or no looks: no estimate
    short = with_capacity(
        FakeCollector(rate=1000.0).snapshot(30), [_look(100.0, 0, 0, 0), _look(104.0, 1600, 2400, 4000)]
    )
    assert short.capacity is None and short.utilization is None
    again = with_capacity(
        FakeCollector(rate=1000.0).snapshot(30), [_look(100.0, 9000, 1000, 10_000), _look(110.0, 10, 20, 30)]
    )
    assert again.capacity is None
    assert with_capacity(FakeCollector(rate=1000.0).snapshot(30), []).capacity is None
    idle = with_capacity(FakeCollector(rate=1000.0).snapshot(30), [_look(100, 0, 0, 0), _look(110, 500, 9500, 10_000)])
    assert idle.capacity is None  # busy 5 %: rate / busy says little


def test_a_step_without_a_fresh_capacity_keeps_the_last_estimate(monkeypatch):
    """One missed busy-time look must not send the planner back to the model's profiled capacity (in an
    evaluation that flipped the paced interval between 2 s and 46 s every third step)."""
    from khaos_controller.control import collector as col

    now = [1000.0]
    monkeypatch.setattr(col.time, "time", lambda: now[0])
    c = col.FlinkCollector(client=None, job="j")  # nothing is sampled: its state is planted below
    c._job_id, c._running_since, c._all_running, c._state = "a", 900.0, True, "RUNNING"

    def window(t_end: float) -> None:
        c._points = collections.deque(
            col.Point(t, "a", 1000.0, 1000.0, 100.0, 5.0, 0.0, 10.0, True, 0)
            for t in range(int(t_end) - 14, int(t_end) + 1)
        )

    # looks 10 s apart within the last 30 s (wider than the 15 s decision window): busy 40 % -> 2500 events/s
    window(1000.0)
    c._looks = collections.deque([_look(978.0, 0, 0, 0), _look(988.0, 4000.0, 6000.0, 10_000.0)])
    first = c.snapshot(15)
    assert first.capacity == pytest.approx(2500.0) and first.capacity_age_s is None
    # 20 s later no usable span (the looks since were missed): the last estimate, held, with its age
    now[0] = 1020.0
    window(1020.0)
    c._looks = collections.deque([_look(1019.0, 0, 0, 0)])
    held = c.snapshot(15)
    assert held.capacity == pytest.approx(2500.0) and held.capacity_age_s == 20.0
    assert held.utilization == pytest.approx(0.4) and held.busy is None
    # too old: no capacity (the model's profiled one is used)
    now[0] = 1000.0 + col.CAPACITY_HOLD_S + 1
    window(now[0])
    assert c.snapshot(15).capacity is None


@pytest.mark.parametrize("skew_s", [-600.0, 0.0, 600.0])
def test_uptime_is_measured_on_one_clock_whatever_the_jobmanagers_says(skew_s):
    from khaos_controller.control.collector import running_since

    now = 1_800_000_000.0
    jm = (now + skew_s) * 1000  # the JobManager's clock, 10 min off
    detail = {"now": jm, "timestamps": {"RUNNING": jm - 42_000}}
    assert running_since(detail, now) == pytest.approx(now - 42.0)
    assert running_since({"now": jm, "start-time": jm - 5_000}, now) == pytest.approx(now - 5.0)
    assert running_since({"timestamps": {"RUNNING": jm}}, now) is None  # no "now": no time to compare with
    assert running_since({"now": jm, "timestamps": {"RUNNING": jm + 3_000}}, now) == now  # never in the future
