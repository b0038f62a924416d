"""The pacer's rules (control/pacer.py) and the daemon in realize.mode pace, on a scripted REST double;
tests/lab/test_pacer_lab.py runs the pacer against a real Flink cluster."""

from __future__ import annotations

import json

import pytest
from support.daemon import Clock, FakeCollector, ScriptedFlink, write_config

from khaos_controller.control import config as daemon_config
from khaos_controller.control import daemon
from khaos_controller.control.metrics import Metrics
from khaos_controller.control.pacer import Pacer
from khaos_controller.control.realizer import PaceRealizer
from khaos_controller.control.step import interval_in_force


def pacer(interval=10.0, **config):
    clock = Clock()
    flink = ScriptedFlink(clock)
    flink.config.update(config)
    # the checkpoint found at start completed 3 s ago by Flink's clock
    flink.latest.update(trigger_timestamp=(clock() - 3.4) * 1000, latest_ack_timestamp=(clock() - 3.0) * 1000)
    p = Pacer(flink, "tj", metrics=Metrics({"flink_job": "tj"}), clock=clock, wall=clock)
    p.set_interval(interval)
    return p, flink, clock


def test_triggers_when_the_last_completed_checkpoint_is_one_interval_old():
    p, flink, clock = pacer(10.0)
    assert p.tick() is None and flink.triggers == []  # 3.4 s since the last trigger
    clock.t += 6.5
    assert p.tick() is None  # 9.9 s
    clock.t += 0.2
    assert p.tick()["status"] == "completed"  # 10.1 s
    assert flink.triggers == [clock()]
    assert p.metrics.get("khaos_checkpoint_triggers_total", result="completed") == 1
    assert p.safety_net_s == 60.0 and p.metrics.get("khaos_safety_net_interval_seconds") == 60.0
    clock.t += 9.9
    assert p.tick() is None  # measured from the paced checkpoint
    clock.t += 0.2
    assert p.tick()["checkpoint_id"] == 102


def test_the_next_check_comes_when_a_checkpoint_falls_due_not_a_tick_later():
    p, flink, clock = pacer(2.0)
    p.tick_s = 0.5
    p.tick()  # 3.4 s since the last trigger: due, triggered now
    t0 = clock()
    assert flink.triggers == [t0]
    clock.t = t0 + 0.25  # the paced checkpoint completed; the next is due 2 s after its trigger
    assert p.next_check_s() == 0.5
    clock.t = t0 + 1.75
    assert p.next_check_s() == pytest.approx(0.25)  # check again at 2.0 s, not at 2.25
    clock.t = t0 + 1.999
    assert p.next_check_s() == 0.02  # almost due: look again soon, but never in a busy loop
    clock.t = t0 + 2.0
    flink.in_progress = 1  # due, but a periodic checkpoint is in flight: nothing now, a whole tick to wait
    assert p.tick() is None and p.next_check_s() == 0.5
    flink.in_progress = 0
    assert p.tick()["status"] == "completed" and flink.triggers[-1] - flink.triggers[0] == pytest.approx(2.0)
    p.set_interval(None)
    assert p.next_check_s() == 0.5  # not pacing: the tick


def test_a_periodic_checkpoint_restarts_the_count():
    p, flink, clock = pacer(10.0)
    p.tick()
    clock.t += 5
    flink.latest = {"id": 8, "end_to_end_duration": 500}  # completed since the last tick
    p.tick()
    clock.t += 9.0
    assert p.tick() is None  # 9 s after it (9.5 s after its trigger)
    clock.t += 0.6
    assert p.tick() is not None


def test_waits_for_a_checkpoint_in_flight_and_the_min_pause():
    p, flink, clock = pacer(5.0, min_pause=4000)
    p.tick()
    clock.t += 2
    flink.in_progress = 1
    assert p.tick() is None and flink.triggers == []
    flink.in_progress = 0
    flink.latest = {"id": 8, "end_to_end_duration": 4800}  # long checkpoint: triggered 4.8 s ago
    p.tick()
    clock.t += 0.5  # 5.3 s since its trigger, 0.5 s since it completed: min pause holds it back
    assert p.tick() is None
    clock.t += 3.6
    assert p.tick() is not None


def test_no_paced_trigger_at_or_above_the_safety_net_or_when_not_pacing():
    p, flink, clock = pacer(60.0)
    clock.t += 100
    assert p.tick() is None and flink.triggers == []
    p.set_interval(None)
    assert p.tick() is None and p.metrics.get("khaos_paced_interval_seconds") is None
    assert interval_in_force(60.0, p.interval_s) == 60.0
    p.set_interval(5.0)
    assert interval_in_force(60.0, p.interval_s) == 5.0


def test_two_jobs_of_that_name_or_none_trigger_nothing():
    p, flink, clock = pacer(1.0)
    flink.jobs.append({"jid": "j2", "name": "tj", "state": "RUNNING"})
    clock.t += 100
    assert p.tick() is None
    flink.jobs = []
    clock.t += 100
    assert p.tick() is None and flink.triggers == []


def test_a_failed_trigger_is_counted_journaled_and_retried_later(tmp_path):
    from khaos_controller.journal import Journal

    p, flink, clock = pacer(2.0)
    p.journal = Journal(tmp_path / "j.jsonl")
    flink.fail = "checkpoint of job j1 failed: tasks not running"
    clock.t += 10
    e = p.tick()
    assert e["status"] == "failed" and "tasks not running" in e["error"]
    assert p.metrics.get("khaos_checkpoint_triggers_total", result="failed") == 1
    clock.t += 1
    assert p.tick() is None  # backs off min(interval, 5 s)
    flink.fail = None
    clock.t += 1.1
    assert p.tick()["status"] == "completed"
    lines = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines] == ["failed", "completed"]
    assert all(x["event"] == "checkpoint_trigger" and x["interval_s"] == 2.0 for x in lines)


def test_daemon_in_pace_mode_moves_freely_below_the_safety_net(tmp_path, model_file):
    clock = Clock()
    flink = ScriptedFlink(clock)
    flink.config["interval"] = 20_000
    p = Pacer(flink, "tj", clock=clock, wall=clock)
    path = write_config(tmp_path, model_file, inventory=..., realize={"mode": "pace"})
    cfg = daemon_config.load_config(path, require_inventory=True)  # pace needs no inventory
    col = FakeCollector(rate=300, ci_s=20)
    d = daemon.Daemon(cfg, collector=col, realizer=PaceRealizer(p))
    p.metrics = d.metrics
    p.tick()  # learns the safety net
    e = d.step()
    assert e.safety_net_s == 20 and e.decision.current_ci_s == 20
    col.rate = 1500
    e = d.step()
    assert e.decision.action == "change" and e.decision.ci_s == 11.0
    assert e.realization.journal() == {
        "status": "ok",
        "target_ci_s": 11.0,
        "seconds": 0.0,
        "interval_s": 11.0,
        "safety_net_s": 20.0,
    }
    assert p.interval_s == 11.0 and d.metrics.get("khaos_checkpoint_interval_seconds") == 11.0
    col.rate = 1400  # no cooldown, no dead band: the next step follows the load at once
    e = d.step()
    assert e.decision.current_ci_s == 11.0 and e.decision.ci_s >= 11.0
    col.rate = 300  # the load falls: back to the safety net, where the pacer stops triggering
    e = d.step()
    assert e.decision.ci_s == 20 and p.interval_s is None
    assert d.metrics.get("khaos_paced_interval_seconds") is None
