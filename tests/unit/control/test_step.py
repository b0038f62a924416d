"""The step record (control/step.py): journal lines back to typed steps and out again, the one rule for
the interval in force, and realizers behind one interface."""

from __future__ import annotations

import re

import pytest
from support.steps import SCENARIOS, golden, same

from khaos_controller import REPO_ROOT
from khaos_controller.control import step
from khaos_controller.control.step import Advised, Failed, Paced, Realization, Restarted, Step


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_journaled_step_reads_back_as_the_same_line(name):
    for line in golden(name):
        if line["event"] != "decision":
            continue
        s = Step.read(line)
        same(s.journal(), {k: v for k, v in line.items() if k not in ("ts", "time")})
        assert (s.ts, s.time) == (line["ts"], line["time"])


def test_each_realization_reads_back_as_its_kind():
    adv, paced, restarted, failed = (
        golden("advisor")[1]["realize"],
        golden("pace")[1]["realize"],
        golden("restart")[4]["realize"],
        golden("restart-failed")[1]["realize"],
    )
    assert Realization.read(adv) == Advised(status="advisor", target_ci_s=11.0)
    assert Realization.read(paced) == Paced(
        status="ok", target_ci_s=11.0, seconds=0.0, interval_s=11.0, safety_net_s=20.0
    )
    r = Realization.read(restarted)
    assert isinstance(r, Restarted) and (r.job_id, r.interval_s, r.savepoint, r.down_s) == (
        "j2",
        11.0,
        "file:///sp/savepoint-2",
        0.4,
    )
    assert Realization.read(failed) == Failed(
        status="failed", target_ci_s=11.0, seconds=0.0, error="reconfigure.yml: savepoint failed"
    )
    assert not Realization.read(failed).ok and not Realization.read(adv).ok and r.ok


def test_a_line_of_an_older_journal_reads_with_what_it_has():
    s = Step.read({"event": "decision", "ts": 5.0, "decision": {"action": "keep"}, "realize": {"status": "ok"}})
    assert s.decision.action == "keep" and s.plan is None and s.observation.demand_rate is None
    assert isinstance(s.realization, Restarted) and s.realization.ok and s.realization.savepoint is None


@pytest.mark.parametrize(
    "job_s, paced_s, in_force",
    [
        (20.0, None, 20.0),  # not pacing: the job's own interval
        (20.0, 8.0, 8.0),  # paced below the safety net
        (20.0, 30.0, 20.0),  # paced above it: the periodic checkpoints come first
        (None, 8.0, 8.0),  # the job's own interval unknown (not sampled while it was down)
        (float("nan"), 8.0, 8.0),
        (None, None, None),
    ],
)
def test_the_interval_in_force(job_s, paced_s, in_force):
    assert step.interval_in_force(job_s, paced_s) == in_force


def test_the_interval_in_force_over_time():
    t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    own = [60.0, 60.0, None, 60.0, 11.0, 11.0]  # down at 2 s; a restart change to 11 s in force from 4 s
    changes = [(1.0, 8.0), (3.0, None), (3.5, None)]  # paced at 8 s from 1 s; back to the net at 3 s
    assert step.timeline(t, own, changes) == [60.0, 8.0, 8.0, 60.0, 11.0, 11.0]
    assert step.timeline(t[::-1], own[::-1], changes) == [11.0, 11.0, 60.0, 8.0, 8.0, 60.0]  # any order


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_paced_changes_of_a_journal(name):
    got = step.paced_changes(step.read(golden(name)))
    want = {"advisor": [], "restart-failed": [], "restart": [None, None], "pace": [11.0, None, 11.0]}[name]
    assert [paced for _, paced in got] == want


def test_one_rule_for_the_interval_in_force_and_no_realizer_kinds_in_the_loop():
    package = REPO_ROOT / "khaos_controller"
    defs = [
        (p.relative_to(REPO_ROOT), m.group(0))
        for p in package.rglob("*.py")
        for m in re.finditer(r"def (\w*in_force\w*|effective_s)\(", p.read_text())
    ]
    assert defs == [(package.relative_to(REPO_ROOT) / "control/step.py", "def interval_in_force(")]
    loop = (package / "control/daemon.py").read_text()
    assert not re.search(r"\.kind\s*(==|!=|in\b)|isinstance\(|getattr\(self\.realizer", loop)  # named, never asked
