"""Paced checkpoints on the shared lab cluster (needs root; about 4 minutes).

The daemon runs with realize.mode pace on a job whose configured interval (the safety net) is 60 s.
A rate step (200 -> 1500 events/s) makes it pace the job below the safety net without a restart; the
checkpoints Flink completes then come at the paced interval. A TaskManager is SIGKILLed by
inject_failure.yml right after a paced checkpoint: the failover restores that checkpoint (the restored
id over REST is one the pacer triggered). Exactly-once output survives all of it.
"""

from __future__ import annotations

import itertools
import signal
import time

import pandas as pd
import pytest
import yaml
from test_daemon_lab import (
    cleanup,
    deploy,
    free_port,
    journal,
    log_tail,
    metric,
    running,
    start_daemon,
    stop_and_audit,
    wait_for,
    write_config,
)
from test_daemon_lab import env as daemon_env  # noqa: F401 - the module-scoped fixture, by this name

from khaos_controller.infra import ansible
from khaos_controller.profile import workload

pytestmark = pytest.mark.lab

LOW, HIGH, LOW_S = 200, 1500, 60
NET_S = 60  # the job's configured interval: the safety net


def paced(env, name: str) -> list[dict]:
    return [e for e in journal(env, name) if e["event"] == "checkpoint_trigger" and e["status"] == "completed"]


def completed(env, job_id: str) -> list[dict]:
    hist = env.client.checkpoints(job_id).get("history") or []
    return sorted((c for c in hist if c.get("status") == "COMPLETED"), key=lambda c: c["id"])


def test_pacing_follows_the_load_without_a_restart_and_a_failover_restores_a_paced_checkpoint(daemon_env):  # noqa: F811
    env, name = daemon_env, "pace1"
    trace = env.lab.shared_dir / "traces" / f"{name}.txt"
    trace.parent.mkdir(parents=True, exist_ok=True)
    workload.write_trace(pd.Series([float(LOW)] * LOW_S + [float(HIGH)] * 3600), trace)
    start_ms = int(time.time() * 1000)
    step_at = start_ms / 1000 + LOW_S
    deploy(env, name, start_ms, args=["--trace", str(trace)], interval=f"{NET_S}s")
    [job_id] = [j["jid"] for j in running(env.client, name)]
    port = free_port()
    cfg = write_config(env, name, port, realize="pace")
    raw = yaml.safe_load(cfg.read_text())
    raw["ci"] = {"min": 2, "max": NET_S, "step": 1, "slack_s_per_h": 1e6}  # the longest feasible: follows the load
    cfg.write_text(yaml.safe_dump(raw))
    proc = None
    try:
        proc = start_daemon(env, cfg)
        kw = dict(env=env, job=name, proc=proc)

        def changes():
            return [e for e in journal(env, name) if e["event"] == "decision" and "realize" in e]

        # after the step: paced below the safety net within 2 periods, the job never restarted
        def fast():
            return [e for e in changes() if e["ts"] > step_at and e["realize"]["interval_s"] <= 12]

        done = wait_for(fast, step_at + 2 * 15 + 30 - time.time(), "a paced interval at the high rate", **kw)[0]
        assert done["realize"]["status"] == "ok" and done["realize"]["safety_net_s"] == NET_S, done["realize"]
        assert done["ts"] - step_at <= 2 * 15 + 10, done["ts"] - step_at
        ci = done["realize"]["interval_s"]
        before = [e["realize"]["interval_s"] for e in changes() if e["ts"] < step_at]
        print(f"\npaced intervals: before the step {before}, after it {ci:g} s (safety net {NET_S} s)")

        # Flink completes checkpoints every ci seconds now (paced ones, and the periodic one per minute)
        def settled():
            cps = [c for c in completed(env, job_id) if c["trigger_timestamp"] / 1000 > done["ts"] + ci]
            return len(cps) >= 4 and cps

        cps = wait_for(settled, 5 * ci + 30, "4 checkpoints completed at the paced interval", **kw)
        gaps = [(b["trigger_timestamp"] - a["trigger_timestamp"]) / 1000 for a, b in itertools.pairwise(cps)]
        print(f"gaps between completed checkpoints: {[round(g, 1) for g in gaps]}")

        # each gap within 3 s of the paced interval in force over it (the forecast can overshoot at
        # the step, e.g. 6 s, and the next decision settle at 11 s); never the 60 s of the safety net
        def paced_at(t: float) -> float:
            return [e["realize"]["interval_s"] for e in changes() if e["ts"] <= t][-1]

        bounds = [
            max(paced_at(a["trigger_timestamp"] / 1000), paced_at(b["trigger_timestamp"] / 1000)) + 3
            for a, b in itertools.pairwise(cps)
        ]
        assert gaps and all(g <= bound for g, bound in zip(gaps, bounds)), (gaps, bounds)
        assert [j["jid"] for j in running(env.client, name)] == [job_id]
        assert env.client.job_metrics(job_id, ["numRestarts"]).get("numRestarts") == 0
        assert env.client.checkpoint_interval_ms(job_id) == NET_S * 1000  # untouched
        assert metric(port, "khaos_checkpoint_triggers_total") >= 4
        assert metric(port, "khaos_safety_net_interval_seconds") == NET_S

        # a failover right after a paced checkpoint, while no periodic one is near, restores the paced one
        def quiet_after_paced():
            ids = {e["checkpoint_id"] for e in paced(env, name)}
            cps = completed(env, job_id)
            periodic = [c["trigger_timestamp"] / 1000 for c in cps if c["id"] not in ids]
            last = cps[-1] if cps else None
            fresh = last is not None and last["id"] in ids and time.time() - last["latest_ack_timestamp"] / 1000 < 2
            return fresh and periodic and time.time() - periodic[-1] < NET_S - 25 and last["id"]

        last_id = wait_for(quiet_after_paced, 3 * NET_S, "a fresh paced checkpoint far from a periodic one", poll=0.2)
        killed_at = time.time()
        ansible.run_playbook(
            "inject_failure",
            env.inventory,
            base_dir=env.base,
            extravars={"chaos_mode": "process", "chaos_target": "sink", "chaos_job": name},
        )

        def restored():
            latest = env.client.checkpoints(job_id).get("latest") or {}
            r = latest.get("restored") or {}
            return r.get("restore_timestamp", 0) / 1000 > killed_at and r

        r = wait_for(restored, 120, "the failover's restore", **kw)
        ids = {e["checkpoint_id"] for e in paced(env, name)}
        print(
            f"TaskManager killed {time.time() - killed_at:.0f}s ago after paced checkpoint {last_id}; restored {r['id']}"
        )
        assert r["id"] in ids, (r, sorted(ids)[-5:])
        assert r["id"] >= last_id
        assert not r.get("is_savepoint")

        def all_running():
            return all(v["status"] == "RUNNING" for v in env.client.job(job_id)["vertices"])

        wait_for(all_running, 120, "every task running again", **kw)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_tail(env, name)
        assert journal(env, name)[-1]["event"] == "stop"
        result = stop_and_audit(env, name)
        print(f"audit: {result}")
        assert result.records > 0 and result.lost == 0 and result.duplicated == 0, result
    finally:
        cleanup(env, name, proc)
