"""The daemon's decision loop without Flink (control/daemon.py): steps on a fake collector with a fake
restart playbook (support/daemon.py): keep, change, cooldown, alerts, journal lines, forecasts, a promoted
model, the cost of a restart, the measured capacity."""

from __future__ import annotations

import json
import os
import time

import pytest
from support.daemon import FakeCollector, FakePlaybook, journal, make_daemon
from support.models import BACKLOG_COEF, rate_model

from khaos_controller.control import policy
from khaos_controller.model import store


def test_low_rate_keeps_the_current_interval(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20))
    e = d.step()
    assert e.decision.action == "keep" and e.decision.ci_s == 20 and not e.decision.alert
    assert d.calls == []
    assert e.plan.at_current.recovery_s < 25


def test_rising_rate_shortens_the_interval(tmp_path, model_file):
    col = FakeCollector(rate=300, ci_s=20)
    d = make_daemon(tmp_path, model_file, collector=col)
    assert d.step().decision.action == "keep"
    col.rate = 1500
    e = d.step()
    assert e.decision.action == "change"
    assert e.decision.ci_s == 11.0 and e.realization.status == "ok"
    assert d.calls == [11.0]
    assert e.plan.at_current.recovery_s > 25 and e.decision.predicted_recovery_s <= 25
    v = e.decision.violation_s_per_h  # the recovery excess at 20 s counts; 11 s has none
    assert v["current"] > v["best"] > 0
    assert d.metrics.get("khaos_reconfigurations_total") == 1
    assert d.metrics.get("khaos_recommended_checkpoint_interval_seconds") == 11
    # the journal says the reconfiguration started before its result
    events = [x["event"] for x in journal(d)]
    assert events == ["decision", "reconfigure_started", "decision"]


def test_backlog_growth_counts_as_input(tmp_path, model_file):
    # the job reads only 300/s but its backlog grows by 1200/s: 1500/s arrive
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20, backlog=1200))
    e = d.step()
    assert e.observation.demand_rate == pytest.approx(1500) and e.decision.action == "change"


def test_advisor_never_realizes(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, advisor=True, collector=FakeCollector(rate=1500, ci_s=20))
    for _ in range(3):
        e = d.step()
        assert e.decision.action == "change" and e.realization.journal() == {"status": "advisor", "target_ci_s": 11.0}
    assert d.calls == [] and d.metrics.get("khaos_reconfigurations_total") == 0
    assert "reconfigure_started" not in [x["event"] for x in journal(d)]


def test_cooldown_after_a_change(tmp_path, model_file):
    col = FakeCollector(rate=1500, ci_s=20)
    d = make_daemon(tmp_path, model_file, collector=col)
    assert d.step().decision.action == "change"
    col.ci_s, col.rate = 11.0, 300  # the rate fell: a longer interval would do, but the last change was just now
    e = d.step()
    assert e.decision.action == "wait" and "cooldown" in e.decision.reason
    assert not e.decision.alert and d.calls == [11.0]
    col.rate = 3000  # now 11 s breaks R_max: a breach that a feasible interval fixes does not wait
    e = d.step()
    assert e.decision.action == "change" and "inside the 600 s cooldown" in e.decision.reason
    assert len(d.calls) == 2 and d.calls[1] < 11.0


def test_cooldown_survives_a_restart_via_the_record(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=11))  # 20 s would do
    d.cfg.record.parent.mkdir(parents=True)
    d.cfg.record.write_text(
        json.dumps(
            {
                "name": "tj",
                "pending": None,
                "history": [
                    {"ts": time.time() - 100, "action": "deployed"},
                    {"ts": time.time() - 60, "action": "running"},
                ],
            }
        )
    )
    assert d.reconcile() is None and d.realizer.last_change_ts == pytest.approx(time.time() - 60, abs=2)
    e = d.step()
    assert e.decision.action == "wait" and d.calls == []


def test_no_decision_before_min_uptime_or_without_samples(tmp_path, model_file):
    col = FakeCollector(rate=1500, ci_s=20, uptime_s=5)
    d = make_daemon(tmp_path, model_file, collector=col)
    e = d.step()
    assert e.decision.action == "wait" and "min_uptime_s 10" in e.decision.reason
    col.uptime_s, col.samples = 100, 2
    assert "rate samples in the window" in d.step().decision.reason
    col.job_id = None
    assert "no running job named 'tj'" in d.step().decision.reason
    assert d.metrics.get("khaos_up") == 0 and d.calls == []
    assert d.metrics.get("khaos_decisions_total", action="wait") == 3


def test_both_limits_unmeetable_alerts(tmp_path, model_file):
    # recovery <= 5 s is impossible at any interval: the least bad one is chosen, and it alerts
    d = make_daemon(
        tmp_path, model_file, collector=FakeCollector(rate=300, ci_s=20), limits={"latency_ms": 1000, "recovery_s": 5}
    )
    e = d.step()
    assert e.decision.alert and not e.decision.feasible and e.decision.action == "change"
    assert e.decision.ci_s == 2 and "ALERT" in e.explain
    assert d.metrics.get("khaos_alerts_total") == 1


def test_failed_reconfiguration_is_counted_and_cools_down(tmp_path, model_file):
    d = make_daemon(
        tmp_path,
        model_file,
        collector=FakeCollector(rate=1500, ci_s=20),
        realize=FakePlaybook(fail="reconfigure.yml: savepoint failed"),
    )
    e = d.step()
    assert e.realization.status == "failed" and "savepoint failed" in e.realization.error
    assert d.metrics.get("khaos_reconfiguration_failures_total") == 1
    assert d.metrics.get("khaos_reconfigurations_total") == 0
    e = d.step()  # the current interval still breaks R_max, but a failed attempt waits out the cooldown
    assert e.decision.action == "wait" and e.decision.alert and len(d.calls) == 1


def test_journal_lines_are_json_with_inputs_and_decision(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=1500, ci_s=20))
    d.step()
    d.collector.uptime_s = 0
    d.step()
    lines = d.cfg.journal.read_text().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    decisions = [e for e in entries if e["event"] == "decision"]
    for e in decisions:
        assert {"ts", "time", "job", "iteration", "inputs", "decision", "limits"} <= set(e)
        assert {"rate_mean", "demand_rate", "ci_s", "uptime_s", "samples", "latency_p99_ms", "lag_ms"} <= set(
            e["inputs"]
        )
        assert {"action", "ci_s", "current_ci_s", "alert", "reason"} <= set(e["decision"])
    first = decisions[0]
    assert first["inputs"]["rate_mean"] == 1500 and first["plan_rate"] >= 1500
    assert first["predicted_at_current"]["ci_s"] == 20 and first["decision"]["best_ci_s"] == 11


def test_forecast_of_a_rising_rate_is_planned_for(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file, loop={"forecast_step_s": 2})
    obs = FakeCollector(rate=300).snapshot(10)
    obs.rates = [300.0] * 5 + [600, 800, 1000, 1200, 1400]
    obs.rate_mean = obs.demand_rate = sum(obs.rates) / 10
    fc, plan = d.plan_rate(obs)
    assert fc > 1200 > obs.rate_mean and plan == fc
    obs.rates = obs.rates[::-1]  # falling: plan for the window mean, not the lower forecast
    fc, plan = d.plan_rate(obs)
    assert fc < obs.rate_mean and plan == obs.rate_mean


def test_a_job_that_is_gone_or_stuck_is_alerted(tmp_path, model_file):
    col = FakeCollector(rate=300, ci_s=20, job_id=None)
    d = make_daemon(tmp_path, model_file, collector=col, loop={"stuck_s": 30})
    e = d.step()
    assert e.job_alerts == ["gone"] and e.decision.alert
    assert d.metrics.get("khaos_job_alerts_total", kind="gone") == 1
    col.job_id = "j1"
    assert d.step().job_alerts == [] and d.metrics.get("khaos_job_problem_seconds") == 0
    col.down = True  # the job runs but not every task: stuck once it lasts stuck_s
    col.t = time.time()
    assert d.step().job_alerts == []
    col.t += 31
    e = d.step()
    assert e.job_alerts == ["stuck"] and d.metrics.get("khaos_job_alerts_total", kind="stuck") == 1
    alerts = [x for x in journal(d) if x["event"] == "job_alert"]
    assert [a["kind"] for a in alerts] == ["gone", "stuck"] and alerts[1]["since_s"] >= 31


def test_a_promoted_model_is_used_at_the_next_decision(tmp_path, model_file):
    import shutil

    own = tmp_path / "model.json"
    shutil.copy(model_file, own)
    d = make_daemon(tmp_path, own, collector=FakeCollector(rate=1500, ci_s=20), advisor=True)
    assert d.step().decision.ci_s == 11.0
    # a model whose backlog term is 4x steeper: the same rate needs a shorter interval
    steeper = store.load(own)
    spec = steeper.recovery.physics
    spec.coef[spec.features.index("L0*rate")] = 4 * BACKLOG_COEF
    steeper.data_hash = "sha256:steeper"
    store.save(steeper, own)
    os.utime(own, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a new mtime even on a coarse clock
    e = d.step()
    assert e.decision.ci_s < 11.0
    # a broken file is reported and the last good model stays in use
    own.write_text("{not json")
    os.utime(own, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert d.step().decision.ci_s == e.decision.ci_s
    events = [x["event"] for x in journal(d)]
    assert events.count("model_reloaded") == 1 and events.count("model_reload_failed") == 1
    reloaded = next(x for x in journal(d) if x["event"] == "model_reloaded")
    assert reloaded["model_data_hash"] == "sha256:steeper"


def test_restart_changes_are_weighed_against_their_measured_down_time(tmp_path, model_file):
    col = FakeCollector(rate=1500, ci_s=20)
    d = make_daemon(tmp_path, model_file, collector=col, mtbf_h=24)
    assert d.policy(20).change_cost_s == policy.PRIOR_CHANGE_COST_S
    e = d.step()  # 20 s breaks R_max at 1500/s, but a failure within the next 600 s is unlikely
    assert e.decision.action == "keep" and e.decision.alert, e.decision
    assert "not more than a restart costs (5.0 s)" in e.decision.reason and d.calls == []
    # the record's history tells what the changes cost so far: down 0.4 s and 0.6 s
    d.cfg.record.parent.mkdir(parents=True, exist_ok=True)
    d.cfg.record.write_text(
        json.dumps(
            {
                "name": "tj",
                "job_id": "j1",
                "pending": None,
                "history": [
                    {"ts": 100.0, "action": "stopped_with_savepoint"},
                    {"ts": 100.4, "action": "running"},
                    {"ts": 200.0, "action": "stopped_with_savepoint"},
                    {"ts": 200.6, "action": "running"},
                ],
            }
        )
    )
    d.reconcile(at_start=True)
    assert d.policy(20).change_cost_s == 0.5
    d.cfg.file.ci.change_cost_s = 0.0  # a configured cost wins over the measured one
    assert d.policy(20).change_cost_s == 0.0


def test_the_daemon_plans_with_the_capacity_it_measures(tmp_path):
    m = rate_model()
    spec = m.recovery.physics
    spec.features, spec.coef = [*spec.features, "L0*rate/(cap-rate)"], [*spec.coef, 1.0]
    spec.constants.capacity, spec.constants.capacity_measured = 5000.0, True
    model_path = store.save(m, tmp_path / "greybox.json")
    col = FakeCollector(rate=1500, ci_s=20)
    d = make_daemon(tmp_path, model_path, collector=col, advisor=True)
    profiled = d.step()
    col.capacity = 2000.0  # this cluster is slower than the profiling clusters
    own = d.step()
    assert profiled.plan.capacity_used is None and own.plan.capacity_used == 2000.0
    assert own.observation.utilization == pytest.approx(0.75)
    assert own.plan.at_current.recovery_s > 1.5 * profiled.plan.at_current.recovery_s
    assert d.metrics.get("khaos_capacity_events_per_second") == 2000.0
    assert d.metrics.get("khaos_utilization_ratio") == pytest.approx(0.75)
