"""The journal lines a daemon step writes, per realizer (advisor, pace, restart), against golden files.

Each scenario drives real daemon steps on a fake collector with every clock frozen; the restart
scenarios run the real restart realizer with the playbook run replaced by one that writes the deployment
record as reconfigure.yml does. The golden files (tests/support/data/steps/) are journals of these
scenarios: every key and value of every line must come out the same. They are also read back through
every consumer of the journal (test_steps_read_back)."""

from __future__ import annotations

import json

import pytest
from support.daemon import Clock, FakeCollector, ScriptedFlink, write_config
from support.steps import SCENARIOS, STEPS, T, golden, same

from khaos_controller import journal
from khaos_controller.control import config as daemon_config
from khaos_controller.control import daemon
from khaos_controller.errors import KhaosError


class Playbook:
    """Stands in for ansible.run_playbook("reconfigure", ...): writes the deployment record as the
    playbook's flink_reconfigure module does (stopped with a savepoint 0.4 s before the new job runs)."""

    def __init__(self, record, fail: str | None = None):
        self.record, self.fail, self.runs = record, fail, []

    def __call__(self, name, inventory, extravars=None, **kw):
        assert name == "reconfigure"
        self.runs.append(extravars)
        if self.fail:
            raise KhaosError(self.fail)
        rec = json.loads(self.record.read_text()) if self.record.exists() else {"name": "tj", "history": []}
        gen = rec.get("generation", 0) + 1
        new_s = (rec.get("pending") or {}).get("new_s") or float(extravars["checkpoint_interval"].rstrip("s"))
        sp = f"file:///sp/savepoint-{gen}"
        rec["history"] += [
            {"ts": T - 10 + gen, "action": "stopped_with_savepoint", "savepoint": sp},
            {"ts": T - 10 + gen + 0.4, "action": "running", "job_id": f"j{gen}", "interval_s": new_s},
        ]
        rec.update(job_id=f"j{gen}", generation=gen, checkpoint_interval_s=new_s, last_savepoint=sp, pending=None)
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps(rec))


def scenario(name, tmp_path, model_file, monkeypatch, clock) -> list[dict]:
    """Run one scenario's steps; returns the journal they wrote."""
    from khaos_controller.infra import ansible

    col = FakeCollector(rate=300, ci_s=20)
    if name == "advisor":
        cfg = daemon_config.load_config(write_config(tmp_path, model_file))
        d = daemon.Daemon(cfg, advisor=True, collector=col, clock=clock)
        rates = [(300, {}), (1500, {}), (1500, {"uptime_s": 5}), (1500, {"job_id": None})]
    elif name == "pace":
        cfg = daemon_config.load_config(write_config(tmp_path, model_file, realize={"mode": "pace"}))
        flink = ScriptedFlink(Clock(T))
        flink.config["interval"] = 20_000  # the job's own interval: the safety net
        d = daemon.Daemon(cfg, collector=col, client=flink, clock=clock)
        d.realizer.pacer.tick()  # learns the safety net
        rates = [(300, {}), (1500, {}), (1400, {}), (300, {}), (1500, {"jobs": 2})]
    else:
        cfg = daemon_config.load_config(write_config(tmp_path, model_file, realize={"mode": "restart"}))
        play = Playbook(cfg.record, fail="reconfigure.yml: savepoint failed" if name == "restart-failed" else None)
        monkeypatch.setattr(ansible, "run_playbook", play)
        d = daemon.Daemon(cfg, collector=col, clock=clock)
        if name == "restart":  # a change a killed daemon left pending is finished by the first step
            cfg.record.parent.mkdir(parents=True, exist_ok=True)
            cfg.record.write_text(json.dumps({"name": "tj", "pending": {"old_s": 20.0, "new_s": 20.0}, "history": []}))
            rates = [(300, {}), (1500, {}), (300, {"ci_s": 11.0}), (3000, {"ci_s": 11.0})]
        else:
            rates = [(1500, {}), (1500, {})]
    for rate, over in rates:
        col.rate = rate
        for k, v in over.items():
            setattr(col, k, v)
        d.step()
    return journal.read(cfg.journal)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_step_writes_the_golden_journal_lines(name, tmp_path, model_file, monkeypatch, frozen):
    got = scenario(name, tmp_path, model_file, monkeypatch, frozen)
    want = golden(name)
    assert [e["event"] for e in got] == [e["event"] for e in want]
    for i, (g, w) in enumerate(zip(got, want)):
        same(g, w, f"{name} line {i + 1} ({w['event']})")


def test_the_golden_journals_cover_every_kind_of_step():
    """What the scenarios are there for: each realizer's change, a wait, a job alert, a failure, a
    reconciliation, the cooldown and its override by a breach."""
    adv, rst, failed = golden("advisor"), golden("restart"), golden("restart-failed")
    decisions = {n: [e for e in golden(n) if e["event"] == "decision"] for n in SCENARIOS}
    assert [e["decision"]["action"] for e in decisions["advisor"]] == ["keep", "change", "wait", "wait"]
    assert decisions["advisor"][1]["realize"] == {"status": "advisor", "target_ci_s": 11.0}
    assert [e["kind"] for e in adv if e["event"] == "job_alert"] == ["gone"]
    paced = [e["realize"] for e in decisions["pace"] if "realize" in e]
    assert all(set(r) == {"status", "target_ci_s", "seconds", "interval_s", "safety_net_s"} for r in paced)
    assert [r["interval_s"] for r in paced] == [11.0, 20.0, 11.0]  # back at the safety net, then paced again
    assert all("safety_net_s" in e for e in decisions["pace"])
    assert decisions["pace"][-1]["warning"] == "2 jobs named 'tj' run; deciding on the newest"
    assert decisions["pace"][-1]["job_alerts"] == ["duplicate"]
    assert [e["event"] for e in rst][:2] == ["reconcile_started", "reconcile"]
    assert [e["decision"]["action"] for e in decisions["restart"]] == ["keep", "change", "wait", "change"]
    assert "cooldown" in decisions["restart"][3]["decision"]["reason"]
    restarted = decisions["restart"][1]["realize"]
    assert set(restarted) == {"status", "target_ci_s", "seconds", "job_id", "interval_s", "savepoint", "down_s"}
    assert [e["event"] for e in rst].count("reconfigure_started") == 2
    assert decisions["restart-failed"][0]["realize"]["status"] == "failed"
    assert decisions["restart-failed"][1]["decision"]["action"] == "wait"
    assert decisions["restart-failed"][1]["decision"]["alert"] and [e["event"] for e in failed].count("decision") == 2


def _change(frm, to, rate, status="ok") -> dict:
    return {
        "copy": "khaos-x",
        "t": 100.0,
        "from_ci_s": frm,
        "to_ci_s": to,
        "seconds": 0.0,
        "status": status,
        "rate": rate,
    }


@pytest.mark.parametrize(
    "name, changes",
    [
        ("advisor", []),
        ("pace", [_change(20, 11.0, 1500.0), _change(11.0, 20.0, 300.0), _change(20, 11.0, 1500.0)]),
        ("restart", [_change(20, 11.0, 1500.0), _change(11.0, 5.0, 3000.0)]),
        ("restart-failed", [_change(20, 11.0, 1500.0, "failed")]),
    ],
)
def test_steps_read_back(name, changes):
    """The golden journals, written before the step record existed, give the evaluation the same
    reconfigurations (summary.json's `reconfigurations`) as they did then."""
    from khaos_controller.evaluate.score import reconfigurations

    got = reconfigurations(STEPS / f"{name}.jsonl", T - 100, "khaos-x")
    same(got, changes)
