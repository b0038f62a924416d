"""The job's health between steps (control/health.py): gone, duplicate and stuck jobs become alerts."""

from __future__ import annotations

import json

import pytest

from khaos_controller.control.collector import Observation
from khaos_controller.control.health import Health
from khaos_controller.control.metrics import Metrics
from khaos_controller.journal import Journal


def look(t: float, jobs: int = 1, all_running: bool = True, error: str | None = None) -> Observation:
    return Observation(
        t=t,
        job_id="j1" if jobs else None,
        jobs_running=jobs,
        state="RUNNING" if jobs else "NONE",
        all_running=all_running and jobs > 0,
        ci_s=20.0,
        uptime_s=100.0,
        window_s=10.0,
        samples=10,
        error=error,
    )


@pytest.fixture
def health(tmp_path):
    m = Metrics({"flink_job": "tj"})
    return Health("tj", 30.0, m, Journal(tmp_path / "j.jsonl", fsync=False)), m, tmp_path / "j.jsonl"


def test_a_healthy_job_raises_nothing(health):
    h, m, path = health
    assert h.check(look(100.0)) == [] and m.get("khaos_job_problem_seconds") == 0
    assert not path.exists()


def test_gone_and_duplicate_alert_at_once_and_on_every_step(health):
    h, m, path = health
    assert h.check(look(100.0, jobs=0)) == ["gone"]
    assert h.check(look(105.0, jobs=0)) == ["gone"]
    assert m.get("khaos_job_alerts_total", kind="gone") == 2 and m.get("khaos_job_problem_seconds") == 5.0
    assert h.check(look(110.0, jobs=2)) == ["duplicate"]  # the problem goes on: its age too
    assert m.get("khaos_job_alerts_total", kind="duplicate") == 1
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["event"], x["kind"], x["since_s"], x["job_id"]) for x in lines] == [
        ("job_alert", "gone", 0.0, None),
        ("job_alert", "gone", 5.0, None),
        ("job_alert", "duplicate", 10.0, "j1"),
    ]
    assert lines[0]["detail"] == "no job named 'tj' runs" and lines[2]["detail"] == "2 jobs named 'tj' run"
    assert h.check(look(115.0)) == [] and m.get("khaos_job_problem_seconds") == 0 and h.since is None


def test_a_job_that_does_not_run_every_task_is_stuck_after_stuck_s(health):
    h, m, path = health
    assert h.check(look(100.0, all_running=False)) == []
    assert h.check(look(129.0, all_running=False)) == [] and m.get("khaos_job_problem_seconds") == 29.0
    assert h.check(look(130.0, all_running=False)) == ["stuck"]
    [line] = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["kind"] == "stuck" and line["since_s"] == 30.0
    assert line["detail"] == "job j1 has not run every task for 30 s (state RUNNING)"
    assert h.check(look(131.0)) == [] and h.check(look(140.0, all_running=False)) == []  # a new problem


def test_an_unanswered_sample_says_nothing_about_the_job(health):
    h, m, _ = health
    h.check(look(100.0, jobs=0))
    assert h.check(look(101.0, jobs=0, error="Flink REST at x is unreachable")) == []
    assert h.since is None and m.get("khaos_job_problem_seconds") == 0


def test_a_stuck_job_alerts_on_every_step_while_it_lasts(health):
    h, m, path = health
    assert h.check(look(100.0, all_running=False)) == []
    assert h.check(look(130.0, all_running=False)) == ["stuck"]
    assert h.check(look(145.0, all_running=False)) == ["stuck"]
    assert m.get("khaos_job_alerts_total", kind="stuck") == 2 and m.get("khaos_job_problem_seconds") == 45.0
    assert not m.get("khaos_job_alerts_total", kind="down")  # not yet stuck is no alert of its own
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["kind"], x["since_s"]) for x in lines] == [("stuck", 30.0), ("stuck", 45.0)]
    assert lines[1]["detail"] == "job j1 has not run every task for 45 s (state RUNNING)"


def test_with_stuck_s_0_a_job_not_running_every_task_is_stuck_at_once(tmp_path):
    m = Metrics({"flink_job": "tj"})
    h = Health("tj", 0.0, m, Journal(tmp_path / "j.jsonl", fsync=False))
    assert h.check(look(100.0, all_running=False)) == ["stuck"]
    [line] = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert line["since_s"] == 0.0 and line["detail"] == "job j1 has not run every task for 0 s (state RUNNING)"


def test_a_clock_that_steps_back_never_makes_a_problem_negative(health):
    h, m, path = health
    assert h.check(look(100.0, jobs=0)) == ["gone"]
    assert h.check(look(90.0, jobs=0)) == ["gone"] and m.get("khaos_job_problem_seconds") == 0
    assert [json.loads(x)["since_s"] for x in path.read_text().splitlines()] == [0.0, 0.0]


def test_a_known_job_whose_flink_stops_answering_becomes_stuck(health):
    """Only a sample without a job says nothing: the collector keeps a known job's id on a REST error and
    marks it not running every task, state UNKNOWN."""
    h, m, path = health
    unanswered = look(100.0, all_running=False, error="Flink REST at x is unreachable")
    unanswered.state = "UNKNOWN"
    assert h.check(unanswered) == [] and h.since == 100.0
    unanswered.t = 130.0
    assert h.check(unanswered) == ["stuck"] and m.get("khaos_job_alerts_total", kind="stuck") == 1
    [line] = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["job_id"] == "j1" and line["detail"].endswith("(state UNKNOWN)")


def test_each_alert_is_logged_as_one_warning(health, logs):
    h, _, _ = health
    assert h.check(look(100.0)) == [] and logs == []
    h.check(look(100.0, jobs=2))
    assert logs == [("WARNING", "ALERT", {"job": "tj", "kind": "duplicate", "detail": "2 jobs named 'tj' run"})]
    logs.clear()
    h.check(look(105.0))
    h.check(look(110.0, all_running=False))  # not every task runs, for less than stuck_s: nothing to say
    assert logs == []
