"""The runtime daemon against the shared lab cluster (needs root; about 8 minutes).
The lab has 4 hosts: JobManager, 2 TaskManagers and a bastion (group khaos_controller).

1. A rate step (a --trace that goes from 200 to 1500 events/s) makes the daemon (realize.mode restart)
   shorten the interval of a job running on 20 s, through reconfigure.yml, exactly once; exactly-once
   output survives.
2. The daemon is SIGKILLed while a reconfiguration is in flight (after the savepoint is recorded):
   alone (its playbook goes on as an orphan) or with the whole controller (the playbook dies too).
   Started again with --once, it leaves exactly one job of that name, on the target interval.
3. playbooks/controller.yml installs the daemon on the bastion (no systemd there): the systemd units it
   would use are rendered and checked, the daemon runs under the role's launcher, paces a job at a high
   rate below its safety net from the bastion (the default realizer: no restart), is restarted after a
   SIGKILL, and a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from support.labs import on_host
from support.models import rate_model

from khaos_controller import REPO_ROOT
from khaos_controller.control import realizer
from khaos_controller.flink import audit
from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible
from khaos_controller.model import store
from khaos_controller.profile import workload

pytestmark = pytest.mark.lab

LOW, HIGH = 200, 1500  # events/s; rate_model (R_max 25 s): 20 s is fine up to ~680/s, at HIGH only <= 11 s
LOW_S = 60  # seconds of LOW at the start of the trace, then HIGH for an hour
PERIOD, WINDOW, MIN_UP = 15, 10, 20  # MIN_UP: keep the start-up catch-up out of the window


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    """The shared cluster (its 4th host is the bastion) and a model whose recovery grows with the rate."""
    tmp = tmp_path_factory.mktemp("daemon-lab")
    model = store.save(rate_model(), tmp / "model.json")
    yield SimpleNamespace(
        lab=cluster.lab,
        base=tmp / "ansible",
        tmp=tmp,
        model=model,
        client=FlinkClient(cluster.rest_url),
        inventory=cluster.inventory,
    )
    cluster.cancel_jobs()


# ------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(env, job: str, port: int, realize: str = "restart") -> Path:
    cfg = {
        "job": job,
        "flink": {"rest_url": env.client.url},
        "inventory": str(env.lab.inventory),
        "model": str(env.model),
        "limits": {"latency_ms": 1000, "recovery_s": 25},
        "mtbf_h": 0.01,  # failures every 36 s: the recovery excess at HIGH outweighs a restart's cost
        # slack 1e6: the longest feasible interval, which moves with the rate (the slack rule would take
        # the fastest recovery at any rate with failures every 36 s: tests/unit/control/test_optimizer.py)
        "ci": {"min": 2, "max": 20, "step": 1, "dead_band_s": 3, "cooldown_s": 600, "slack_s_per_h": 1e6},
        "loop": {"period_s": PERIOD, "window_s": WINDOW, "min_uptime_s": MIN_UP, "forecast_step_s": 2},
        "realize": {"mode": realize},
        "state_dir": str(env.lab.dir / "state"),
        "journal": str(env.tmp / f"{job}.journal.jsonl"),
        "metrics": {"host": "127.0.0.1", "port": port},
    }
    path = env.tmp / f"{job}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_daemon(env, cfg: Path, *flags: str) -> subprocess.Popen:
    log = open(env.tmp / f"{cfg.stem}.log", "ab")  # noqa: SIM115 - the daemon's stdout
    return subprocess.Popen(
        [sys.executable, "-m", "khaos_controller.cli", "run", str(cfg), *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )


def log_tail(env, job: str, n: int = 15) -> str:
    p = env.tmp / f"{job}.log"
    return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""


def journal(env, job: str) -> list[dict]:
    return read_journal(env.tmp / f"{job}.journal.jsonl")


def wait_for(pred, timeout: float, what: str, env=None, job=None, proc=None, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited {proc.returncode} while waiting for {what}:\n{log_tail(env, job)}")
        time.sleep(poll)
    pytest.fail(f"no {what} after {timeout:.0f}s" + (f":\n{log_tail(env, job)}" if env else ""))


def running(client: FlinkClient, name: str) -> list[dict]:
    return [
        j
        for j in client.get("/jobs/overview")["jobs"]
        if j["name"] == name and j["state"] not in ("FINISHED", "CANCELED", "FAILED")
    ]


def metric(port: int, name: str) -> float:
    return metric_at("127.0.0.1", name, port)


def runs(env, name: str) -> Path:
    """The daemon's private ansible-runner directory for job `name` (under its state dir)."""
    return env.lab.dir / "state" / "runs" / name


def module_pids(env, name: str) -> list[int]:
    """The daemon's flink_reconfigure module processes for job `name`."""
    pids = []
    for pid in realizer.orphan_runs(runs(env, name)):
        try:
            if b"flink_reconfigure" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def deploy(
    env, name: str, start_ms: int, args: list[str] | None = None, rate: int | None = None, interval: str = "20s"
) -> None:
    out = env.lab.shared_dir / "jobs" / name / "out"
    ev = {"checkpoint_interval": interval, "flink_job_name": name, "flink_job_start_ms": start_ms}
    if args is not None:
        ev["flink_job_args"] = [*args, "--output", str(out), "--start", str(start_ms)]
    if rate is not None:
        ev["flink_job_rate"] = rate
    ansible.run_playbook("deploy_job", env.lab.inventory, base_dir=env.base, extravars=ev)


def stop_and_audit(env, name: str):
    jobs = running(env.client, name)
    for j in jobs:
        env.client.stop_with_savepoint(j["jid"])
    return audit.audit(env.lab.shared_dir / "jobs" / name / "out")


def cleanup(env, name: str, *procs) -> None:
    """Kill what this test started (by pid) and cancel its jobs: the next test gets free slots."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
    for pid in realizer.orphan_runs(runs(env, name)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        for j in running(env.client, name):
            env.client.cancel(j["jid"])
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
        pass
    shutil.rmtree(runs(env, name), ignore_errors=True)  # ansible-runner artifacts of the daemon


# ------------------------------------------------------------------------------------------ tests


def test_rate_step_shortens_the_interval_once(env):
    name = "dmn1"
    trace = env.lab.shared_dir / "traces" / f"{name}.txt"
    trace.parent.mkdir(parents=True, exist_ok=True)
    workload.write_trace(pd.Series([float(LOW)] * LOW_S + [float(HIGH)] * 3600), trace)
    start_ms = int(time.time() * 1000)
    step_at = start_ms / 1000 + LOW_S
    deploy(env, name, start_ms, args=["--trace", str(trace)])
    port = free_port()
    proc = None
    try:
        proc = start_daemon(env, write_config(env, name, port))
        kw = dict(env=env, job=name, proc=proc)

        # before the step: the daemon decides, and keeps 20 s
        def kept():
            return [e for e in journal(env, name) if e["event"] == "decision" and e["decision"]["action"] == "keep"]

        keep = wait_for(kept, step_at - time.time() + 5, "keep decision at the low rate", **kw)[0]
        assert keep["ts"] < step_at and keep["decision"]["ci_s"] == 20
        assert keep["inputs"]["demand_rate"] == pytest.approx(LOW, rel=0.25)

        # after the step: a change is decided within 2 loop periods ...
        def started():
            return [e for e in journal(env, name) if e["event"] == "reconfigure_started"]

        first = wait_for(started, step_at + 2 * PERIOD + 10 - time.time(), "reconfigure_started", **kw)[0]
        assert first["ts"] <= step_at + 2 * PERIOD + 5, first["ts"] - step_at

        # ... and realized by reconfigure.yml
        def realized():
            return [e for e in journal(env, name) if e["event"] == "decision" and "realize" in e]

        done = wait_for(realized, 180, "the realized change", **kw)[0]
        assert done["realize"]["status"] == "ok", done["realize"]
        # running on the new interval 2 periods after the step, plus what a reconfiguration takes
        assert done["ts"] - step_at <= 2 * PERIOD + 60, done["ts"] - step_at
        new_ci = done["decision"]["ci_s"]
        assert new_ci < 20 and done["inputs"]["demand_rate"] > LOW * 1.5
        [job] = running(env.client, name)
        assert job["jid"] == done["realize"]["job_id"]
        assert env.client.checkpoint_interval_ms(job["jid"]) == round(new_ci * 1000)
        assert metric(port, "khaos_reconfigurations_total") == 1
        assert metric(port, "khaos_reconfiguration_failures_total") == 0
        assert metric(port, "khaos_up") in (0, 1)
        print(
            f"\nrate step at +{LOW_S}s: change decided {first['ts'] - step_at:+.1f}s after it "
            f"(window mean {done['inputs']['demand_rate']:.0f}/s, forecast {done['forecast_rate']:.0f}/s), "
            f"20 s -> {new_ci:g} s running {done['ts'] - step_at:+.1f}s after the step "
            f"(reconfigure.yml {done['realize']['seconds']:.1f}s); {done['explain']}"
        )

        # SIGTERM: exit 0; no second change happened (cooldown)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_tail(env, name)
        entries = journal(env, name)
        assert [e["event"] for e in entries].count("reconfigure_started") == 1
        assert entries[-1]["event"] == "stop" and entries[-1]["reconfigurations"] == 1

        result = stop_and_audit(env, name)
        print(f"audit: {result}")
        assert result.records > 0 and result.lost == 0 and result.duplicated == 0, result
    finally:
        cleanup(env, name, proc)


@pytest.mark.parametrize("crash", ["daemon", "controller"])
def test_killed_mid_reconfiguration_leaves_exactly_one_job(env, crash):
    """`daemon`: only the daemon dies, its playbook finishes as an orphan and the new daemon waits for it.
    `controller`: the playbook dies too (the controller host crashed): the new daemon reconciles."""
    name = {"daemon": "dmk1", "controller": "dmk2"}[crash]
    record = env.lab.dir / "state" / f"{name}.json"
    deploy(env, name, int(time.time() * 1000), rate=HIGH)
    cfg = write_config(env, name, free_port())
    proc = proc2 = None
    try:
        proc = start_daemon(env, cfg)
        kw = dict(env=env, job=name, proc=proc)
        wait_for(
            lambda: [e for e in journal(env, name) if e["event"] == "reconfigure_started"],
            90,
            "reconfigure_started",
            poll=0.05,
            **kw,
        )
        if crash == "daemon":
            # kill it once the flink_reconfigure module runs (the savepoint is being taken)
            wait_for(lambda: module_pids(env, name), 60, "the flink_reconfigure module", poll=0.05, **kw)
        else:
            # kill it once the savepoint is recorded: the old job is stopped, the new one not yet there
            wait_for(
                lambda: (json.loads(record.read_text()).get("pending") or {}).get("savepoint"),
                120,
                "a pending change with its savepoint in the record",
                poll=0.02,
                **kw,
            )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        orphans = realizer.orphan_runs(runs(env, name))
        assert orphans, "the reconfigure playbook was already gone"
        if crash == "controller":
            for pid in orphans:
                os.kill(pid, signal.SIGKILL)
            assert json.loads(record.read_text())["pending"], "the change finished before the crash"
        else:
            # hold the orphaned playbook until the new daemon has seen it (else it may finish first)
            for pid in orphans:
                os.kill(pid, signal.SIGSTOP)
        print(f"\n{crash} killed mid-reconfiguration; orphaned playbook processes: {orphans}")

        t0 = time.monotonic()
        proc2 = start_daemon(env, cfg, "--once")
        if crash == "daemon":
            try:
                wait_for(
                    lambda: [e for e in journal(env, name) if e["event"] == "orphan_wait"],
                    60,
                    "orphan_wait",
                    env=env,
                    job=name,
                    proc=proc2,
                    poll=0.1,
                )
            finally:
                for pid in orphans:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
        assert proc2.wait(timeout=300) == 0, log_tail(env, name)
        jobs = running(env.client, name)
        assert len(jobs) == 1, jobs
        rec = json.loads(record.read_text())
        assert rec["pending"] is None and rec["job_id"] == jobs[0]["jid"]
        ci_ms = env.client.checkpoint_interval_ms(jobs[0]["jid"])
        entries = journal(env, name)
        restart = max(i for i, e in enumerate(entries) if e["event"] == "start")
        restart -= entries[restart - 1]["event"] == "orphan_wait"  # written before the start line
        events = [e["event"] for e in entries[restart:]]
        print(f"restart with --once took {time.monotonic() - t0:.1f}s: {events}; job {jobs[0]['jid']} on {ci_ms} ms")
        # on the interval of the last change the journal started: the interrupted one, finished by the
        # reconcile, or a later one the --once step decided (a predicted breach overrides the cooldown)
        target = [e for e in entries if e["event"] == "reconfigure_started"][-1]["target_ci_s"]
        assert ci_ms == round(target * 1000)
        if crash == "controller":
            assert "reconcile_started" in events and "reconcile" in events
        else:
            assert events[0] == "orphan_wait" and "reconcile_started" not in events  # the orphan finished it
        assert events[-2:] == ["decision", "stop"]

        result = stop_and_audit(env, name)
        assert result.records > 0 and result.lost == 0 and result.duplicated == 0, result
    finally:
        cleanup(env, name, proc, proc2)


# ------------------------------------------------------------------------------------------ the bastion

BASTION = "tcluster-4"  # the shared cluster's bastion (tests/lab/conftest.py)


def on_bastion(env, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command on the bastion over real SSH (the lab's key and pinned host key)."""
    return on_host(env.lab, BASTION, command, check=check)


def bastion_file(env, path: str) -> Path:
    """A file of the bastion's private /opt, read from the machine."""
    return env.lab.host_dir(env.lab.host(BASTION)) / "root" / path.lstrip("/")


def controller_playbook(env, name: str, **over):
    ev = {
        "khaos_controller_model": str(env.model),
        "khaos_controller_job": name,
        "khaos_controller_reprofile_experiment": str(REPO_ROOT / "examples" / "experiment-lab.yml"),
        "khaos_controller_config": {
            "limits": {"latency_ms": 1000, "recovery_s": 25},
            "ci": {"min": 2, "max": 20, "step": 1, "dead_band_s": 3, "cooldown_s": 600, "slack_s_per_h": 1e6},
            "loop": {"period_s": PERIOD, "window_s": WINDOW, "min_uptime_s": MIN_UP, "forecast_step_s": 2},
            "metrics": {"host": "0.0.0.0", "port": 9790},
        },
        **over,
    }
    return ansible.run_playbook("controller", env.inventory, base_dir=env.base, extravars=ev)


def test_controller_role_runs_the_daemon_on_the_bastion(env):
    name = "dmb1"
    ctl = f"/opt/khaos/bin/khaos-{name}-ctl"
    journal_file = bastion_file(env, f"/opt/khaos/log/{name}.journal.jsonl")
    bastion_ip = env.lab.host(BASTION).ip
    deploy(env, name, int(time.time() * 1000), rate=HIGH)
    [job_id] = [j["jid"] for j in running(env.client, name)]
    try:
        # 1. systemd flavour, not started: the units are rendered (a lab host has no systemd to run them)
        t0 = time.monotonic()
        first = controller_playbook(env, name, khaos_controller_supervisor="systemd", khaos_controller_start=False)
        install_s = time.monotonic() - t0
        unit = bastion_file(env, f"/opt/khaos/systemd/khaos-{name}.service").read_text()
        assert f"ExecStart=/opt/khaos/venv/bin/khaos run /opt/khaos/etc/{name}.yml\n" in unit
        for line in (
            "Restart=on-failure",
            "KillMode=mixed",
            "TimeoutStopSec=900",  # 4 x reconfigure.timeout_s (180) + 180: the longest change
            "Environment=KHAOS_HOME=/opt/khaos/app",
            "User=root",  # the lab's choice (group_vars/khaos_controller.yml); elsewhere khaos
            "Group=root",
            "Environment=HOME=/opt/khaos/home",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectSystem=strict",
            f"ReadWritePaths={env.lab.dir}/state /opt/khaos/log /opt/khaos/home",
        ):
            assert f"\n{line}\n" in unit, line
        timer = bastion_file(env, f"/opt/khaos/systemd/khaos-{name}-reprofile.timer").read_text()
        assert "OnCalendar=Sun *-*-* 03:00:00" in timer and "Persistent=true" in timer
        svc = bastion_file(env, f"/opt/khaos/systemd/khaos-{name}-reprofile.service").read_text()
        assert f"ExecStart=/opt/khaos/bin/khaos-{name}-reprofile" in svc and "Type=oneshot" in svc
        script = bastion_file(env, f"/opt/khaos/bin/khaos-{name}-reprofile").read_text()
        assert f'khaos" promote "$out/model.json" --to {env.lab.dir}/state/models/{name}.json' in script
        assert not journal_file.exists(), "start=false started the daemon"
        # the venv's own khaos checks the rendered config
        check = on_bastion(
            env, f"KHAOS_HOME=/opt/khaos/app /opt/khaos/venv/bin/khaos run --check /opt/khaos/etc/{name}.yml"
        )
        assert f"/opt/khaos/etc/{name}.yml: ok: job '{name}'" in check.stdout

        # 2. no systemd: the launcher runs the daemon; the role waits for /metrics
        controller_playbook(env, name)
        cron = bastion_file(env, f"/opt/khaos/cron.d/khaos-{name}-reprofile").read_text()
        assert f"0 3 * * 0 root /opt/khaos/bin/khaos-{name}-reprofile" in cron
        assert on_bastion(env, f"{ctl} status").stdout.strip() == "running"
        assert metric_at(bastion_ip, "khaos_reconfigurations_total") == 0

        # 3. from the bastion the daemon paces the job at HIGH below its 20 s safety net (the default
        #    realizer): checkpoints are triggered over REST, the job is not restarted
        def realized():
            return [e for e in read_journal(journal_file) if e["event"] == "decision" and "realize" in e]

        done = wait_for(realized, 180, "a change realized from the bastion")[0]
        assert done["realize"]["status"] == "ok", done["realize"]
        assert done["realize"]["safety_net_s"] == 20 and done["realize"]["interval_s"] == done["decision"]["ci_s"] < 20
        [job] = running(env.client, name)
        assert job["jid"] == job_id  # not restarted
        assert env.client.checkpoint_interval_ms(job["jid"]) == 20000  # the safety net is untouched
        paced = wait_for(
            lambda: [e for e in read_journal(journal_file) if e.get("event") == "checkpoint_trigger"],
            60,
            "a paced checkpoint",
        )[0]
        assert paced["status"] == "completed" and paced["job_id"] == job_id, paced
        assert metric_at(bastion_ip, "khaos_reconfigurations_total") == 1
        assert metric_at(bastion_ip, "khaos_paced_interval_seconds") == done["decision"]["ci_s"]

        # 4. Restart=on-failure: a SIGKILLed daemon is started again by the launcher
        old_pid = on_bastion(env, f"cat /opt/khaos/run/{name}.pid").stdout.strip()
        on_bastion(env, f"kill -KILL {old_pid}")
        wait_for(
            lambda: on_bastion(env, f"cat /opt/khaos/run/{name}.pid", check=False).stdout.strip() not in ("", old_pid),
            30,
            "a new daemon pid",
        )
        wait_for(lambda: _served(bastion_ip), 60, "/metrics of the restarted daemon")
        starts = [e for e in read_journal(journal_file) if e["event"] == "start"]
        assert len(starts) == 2

        # 5. a second run changes nothing and leaves the daemon alone
        again = controller_playbook(env, name)
        assert again.changed() == 0, again.stats
        assert len([e for e in read_journal(journal_file) if e["event"] == "start"]) == 2

        # 6. stop: SIGTERM to the daemon only, clean exit, the launcher does not restart it
        assert on_bastion(env, f"{ctl} stop").stdout.strip() == "stopped"
        assert read_journal(journal_file)[-1]["event"] == "stop"
        assert on_bastion(env, f"{ctl} status", check=False).returncode == 3

        # 7. an unprivileged daemon: nobody:nogroup (the machine has them; a lab host shares its /etc/passwd).
        #    The launcher drops to it; it owns what the daemon writes; root's venv, app and config stay root's
        unprivileged = {"khaos_controller_user": "nobody", "khaos_controller_user_group": "nogroup"}
        controller_playbook(env, name, **unprivileged)  # the role waited for /metrics
        pid = on_bastion(env, f"cat /opt/khaos/run/{name}.pid").stdout.strip()
        assert on_bastion(env, f"ps -o user= -p {pid}").stdout.strip() == "nobody"
        state = env.lab.dir / "state"
        owners = {
            path: on_bastion(env, f"stat -c %U:%G {path}").stdout.strip()
            for path in (
                state,
                state / f"{name}.json",  # written by deploy_job.yml as root: handed over
                state / "models" / f"{name}.json",
                f"/opt/khaos/log/{name}.journal.jsonl",
                "/opt/khaos/home",
                f"/opt/khaos/run/{name}.pid",
                f"/opt/khaos/etc/{name}.yml",
                "/opt/khaos/venv/bin/khaos",
                "/opt/khaos/app/playbooks/reconfigure.yml",
                ctl,
            )
        }
        assert list(owners.values()) == 6 * ["nobody:nogroup"] + ["root:nogroup"] + 3 * ["root:root"], owners
        nobody = (
            "setpriv --reuid=nobody --regid=nogroup --init-groups --no-new-privs -- env -i HOME=/opt/khaos/home "
            "PATH=/opt/khaos/venv/bin:/usr/bin:/bin KHAOS_HOME=/opt/khaos/app ANSIBLE_CONFIG=/opt/khaos/app/ansible.cfg"
        )
        for path in (
            "/opt/khaos/app/playbooks/reconfigure.yml",
            "/opt/khaos/venv/bin/khaos",
            f"/opt/khaos/etc/{name}.yml",
        ):
            assert on_bastion(env, f"{nobody} sh -c 'echo x >> {path}'", check=False).returncode != 0, path
        # what the daemon runs, run as it: reconfigure.yml (a reconcile) reads and locks the record
        reconcile = on_bastion(
            env,
            f"cd /opt/khaos/app && {nobody} ansible-playbook -i /opt/khaos/etc/{name}.inventory.yml "
            f"playbooks/reconfigure.yml -e flink_job_name={name} -e flink_job_reconcile_only=true",
            check=False,
        )
        assert reconcile.returncode == 0, reconcile.stdout[-3000:]
        assert controller_playbook(env, name, **unprivileged).changed() == 0  # idempotent as nobody too
        assert on_bastion(env, f"{ctl} stop").stdout.strip() == "stopped"  # root's ctl acts as nobody
        assert on_bastion(env, f"{ctl} status", check=False).returncode == 3
        print(
            f"\ncontroller.yml first install {install_s:.0f}s ({first.changed()} changes); paced from the bastion "
            f"{done['decision']['current_ci_s']:g}s -> {done['decision']['ci_s']:g}s (checkpoint {paced['checkpoint_id']} "
            f"in {paced['seconds']:.1f}s); restarted after SIGKILL; second run changed=0"
        )

        result = stop_and_audit(env, name)
        assert result.records > 0 and result.lost == 0 and result.duplicated == 0, result
    finally:
        on_bastion(env, f"test -x {ctl} && {ctl} stop", check=False)
        cleanup(env, name)
        give_back(env.lab.dir / "state")  # step 7 handed the lab's state dir to nobody


def give_back(path: Path) -> None:
    """Everything under path to root again (the tests after this one run their daemons as root)."""
    for top, dirs, files in os.walk(path):
        for entry in (top, *(os.path.join(top, n) for n in dirs + files)):
            os.lchown(entry, 0, 0)


def read_journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _served(ip: str) -> bool:
    try:
        return metric_at(ip, "khaos_up") in (0, 1)
    except OSError:
        return False


def metric_at(host: str, name: str, port: int = 9790) -> float:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert m, f"{name} not exposed"
    return float(m.group(1))
