"""The listeners of a daemon step (control/publish.py), each on its own: the steps are the golden journal
lines of test_step_journal.py (the job's health between steps: test_health.py)."""

from __future__ import annotations

import pytest
from support.daemon import FakeCollector
from support.steps import SCENARIOS, golden, same

from khaos_controller.control import publish
from khaos_controller.control.collector import Observation
from khaos_controller.control.metrics import Metrics
from khaos_controller.control.step import Step
from khaos_controller.journal import Journal, read


def as_step(line: dict, obs: Observation | None = None) -> Step:
    """A journaled decision line as the step the daemon hands its listeners (decided on ``obs``)."""
    step = Step.read(line)
    if obs is not None:
        step.observation = obs
    return step


def steps(name: str) -> list[dict]:
    return [e for e in golden(name) if e["event"] == "decision"]


# the interval each step leaves in force: the realized one after a change, else the current one
IN_FORCE = {
    "advisor": [20, 20, 20, 20],  # an advisor realizes nothing
    "pace": [20, 11.0, 11.0, 20.0, 11.0],
    "restart": [20, 11.0, 11.0, 5.0],
    "restart-failed": [20, 20.0],  # the failed change left the job on 20 s
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_metrics_of_each_step(name):
    m = Metrics({"flink_job": "tj"})
    listener = publish.Metrics(m)
    obs = FakeCollector(rate=300, ci_s=20).snapshot(10)
    for line, in_force in zip(steps(name), IN_FORCE[name], strict=True):
        listener(as_step(line, obs))
        assert m.get("khaos_checkpoint_interval_seconds") == in_force, line["decision"]
        assert m.get("khaos_last_decision_timestamp_seconds") == line["ts"]
        assert m.get("khaos_loop_duration_seconds") == line["loop_seconds"]
        if "plan_rate" in line:  # an evaluated step: the prediction at the current interval, the best one
            assert m.get("khaos_forecast_rate") == line["forecast_rate"]
            assert m.get("khaos_predicted_recovery_seconds") == line["predicted_at_current"]["recovery_s"]
            assert m.get("khaos_recommended_checkpoint_interval_seconds") == line["decision"]["best_ci_s"]
    lines = steps(name)
    realized = [(e.get("realize") or {}).get("status") for e in lines]
    assert m.get("khaos_reconfigurations_total") == realized.count("ok")
    assert m.get("khaos_reconfiguration_failures_total") == realized.count("failed")
    assert m.get("khaos_alerts_total") == sum(e["decision"]["alert"] for e in lines)
    for action in ("change", "keep", "wait"):
        n = sum(e["decision"]["action"] == action for e in lines)
        assert (m.get("khaos_decisions_total", action=action) or 0) == n
    assert m.get("khaos_up") == 1 and m.get("khaos_input_rate") == 300.0 and m.get("khaos_job_uptime_seconds") == 3600


def test_the_metrics_say_down_when_the_job_is_gone():
    m = Metrics({"flink_job": "tj"})
    obs = FakeCollector(job_id=None).snapshot(10)
    publish.Metrics(m)(as_step(steps("advisor")[-1], obs))
    assert m.get("khaos_up") == 0 and m.get("khaos_decisions_total", action="wait") == 1


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_journal_listener_writes_the_step_as_journaled(name, tmp_path, frozen):
    j = Journal(tmp_path / "j.jsonl", fsync=False)
    listener = publish.Journal(j)
    for line in steps(name):  # the step read back is the step written: the same line
        listener(as_step(line))
    got = read(tmp_path / "j.jsonl")
    assert len(got) == len(steps(name))
    for g, w in zip(got, steps(name)):
        same(g, w)
        assert "decision_ts" not in g


def test_the_log_listener_says_each_decision_and_alerts(logs):
    listener = publish.Log("tj")
    obs = FakeCollector(rate=300).snapshot(10)
    keep, change = steps("restart")[:2]
    listener(as_step(keep, obs))
    assert logs == [
        (
            "INFO",
            "decision",
            {
                "iteration": 1,
                "action": "keep",
                "ci_s": 20.0,
                "current_ci_s": 20,
                "rate": 300.0,
                "plan_rate": 300.0,
                "latency_p99_ms": 120.0,
                "alert": False,
                "reason": "the current 20 s interval is already the best candidate",
            },
        )
    ]
    logs.clear()
    listener(as_step(change, obs))
    assert [x[:2] for x in logs] == [("INFO", "decision")] and logs[0][2]["realize"] == "ok"
    logs.clear()
    failed, _waiting = steps("restart-failed")
    listener(as_step(failed, obs))  # the failed change alerts, with the explanation
    assert [x[:2] for x in logs] == [("WARNING", "decision"), ("WARNING", "ALERT")]
    assert logs[0][2]["realize"] == "failed" and logs[1][2] == {"job": "tj", "detail": failed["explain"]}
    logs.clear()
    gone = steps("advisor")[-1]  # a wait has no explanation: the alert says its reason
    listener(as_step(gone, FakeCollector(job_id=None).snapshot(10)))
    assert logs[1] == ("WARNING", "ALERT", {"job": "tj", "detail": gone["decision"]["reason"]})
    logs.clear()
    duplicate = steps("pace")[-1]  # two jobs of the name: the explanation comes first
    listener(as_step(duplicate, obs))
    assert logs[-1][2]["detail"] == duplicate["explain"]
