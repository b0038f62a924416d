"""A change of interval can never duplicate or strand a job, on the shared lab cluster.

Each case puts a fault-injecting proxy (tests/support/proxy.py) between Khaos and the real JobManager
(or fills the disk, or runs two changes at once) while ``deployment.reconfigure`` changes the interval
of one job, then lets ``deployment.reconcile`` finish whatever was left pending. After every case
exactly one job of that name runs with every task, and the sink audit of its committed output shows
0 lost and 0 duplicated; at the end the job is stopped with a savepoint and audited once more.

  A  garbage JSON from Flink right after the stop was accepted
  B  REST errors while the new job is looked up and awaited
  C  the savepoint's status never answers within the timeout
  D  the state dir fills up right after the stop
  F  the job submission reaches Flink but its answer is lost
  G  two changes at once
  H  the job's jar is gone from the cluster and from disk (refused before the stop)
  P  the profiler pointed at a cluster that runs a job it did not submit refuses it in one line and
     leaves the job running
  S  a stop-with-savepoint slower than 3x the change's timeout whose answer is lost, with the
     JobManager's clock 5 s ahead of ours, and 5 s behind with the trigger forgotten by Flink: reconcile,
     run again and again as the daemon would, waits it out and restores the job from that savepoint
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.proxy import FaultProxy, Rule

from khaos_controller.errors import KhaosError
from khaos_controller.flink import audit, deployment
from khaos_controller.flink.client import FlinkClient
from khaos_controller.flink.record import load, save
from khaos_controller.infra import ansible

JOB = "hard"
STOP = r"^/jobs/[0-9a-f]{32}/stop$"
SAVEPOINT_STATUS = r"^/jobs/[0-9a-f]{32}/savepoints/"
JOB_DETAIL = r"^/jobs/[0-9a-f]{32}$"
RUN = r"^/jars/.+/run$"


@pytest.fixture(scope="module")
def env(cluster):
    ansible.run_playbook(
        "deploy_job",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={"checkpoint_interval": "4s", "flink_job_rate": 800, "flink_job_name": JOB},
    )
    proxy = FaultProxy(FlinkClient(cluster.rest_url).url)
    direct = FlinkClient(cluster.rest_url)
    faulty = FlinkClient(proxy.url, timeout=2)
    faulty.run_timeout = 3
    try:
        yield cluster, direct, faulty, proxy, cluster.dir / "state" / f"{JOB}.json"
    finally:
        proxy.close()
        cluster.cancel_jobs()


def exactly_one(cluster, client: FlinkClient, timeout: float = 90, name: str = JOB) -> str:
    """Wait until exactly one job of the name runs every task; check its committed output."""
    deadline = time.monotonic() + timeout
    while True:
        live = client.live_jobs(name)
        if len(live) == 1 and client.all_tasks_running(live[0]["jid"]):
            break
        assert len(live) <= 1, f"{len(live)} jobs named {name} run: {live}"
        assert time.monotonic() < deadline, f"no single running job after {timeout}s: {live}"
        time.sleep(1)
    time.sleep(9)  # two checkpoints: the output is committed past the change
    result = audit.audit(cluster.shared_dir / "jobs" / name / "out")
    assert result.lost == 0 and result.duplicated == 0 and result.records > 0, result
    return live[0]["jid"]


def interval_s(client: FlinkClient, name: str = JOB) -> float:
    [job] = client.live_jobs(name)
    return client.checkpoint_interval_ms(job["jid"]) / 1000


def reconcile(client, record) -> dict:
    return deployment.reconcile(client, record, timeout=60)


def test_h_a_resubmit_that_cannot_happen_is_refused_before_the_stop(env):
    cluster, direct, _faulty, _proxy, record = env
    before = exactly_one(cluster, direct)
    rec = load(record)
    direct.request("DELETE", f"/jars/{rec.jar_id}")  # the JobManager lost its jars (e.g. it restarted)
    save(record, replace(rec, jar="/nonexistent/job.jar"))
    try:
        with pytest.raises(KhaosError, match="a resubmit is impossible, nothing was changed"):
            deployment.reconfigure(direct, record, "5s", timeout=60)
    finally:
        save(record, replace(load(record), jar=rec.jar))
    assert exactly_one(cluster, direct) == before and interval_s(direct) == 4.0
    assert load(record).pending is None


def test_a_garbage_after_the_stop_is_finished_by_reconcile(env):
    cluster, direct, faulty, proxy, record = env
    proxy.add(Rule("POST", STOP, "garbage_after"))
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(faulty, record, "5s", timeout=30)
    assert load(record).pending.phase == "stopping"
    proxy.clear()
    result = reconcile(direct, record)
    assert result["action"] in ("restored", "adopted"), result
    exactly_one(cluster, direct)
    assert interval_s(direct) == 5.0 and load(record).pending is None


def test_b_rest_errors_while_the_new_job_comes_up(env):
    cluster, direct, faulty, proxy, record = env
    # the job-detail calls come after the stop: the lookup of the new job's id and the wait for it
    proxy.add(Rule("GET", JOB_DETAIL, "error", times=3), Rule("GET", JOB_DETAIL, "garbage", times=1))
    result = deployment.reconfigure(faulty, record, "6s", timeout=60)
    proxy.clear()
    assert result["changed"] and result["new_s"] == 6.0
    assert exactly_one(cluster, direct) == result["job_id"] and interval_s(direct) == 6.0


def test_c_a_savepoint_status_that_never_answers(env):
    cluster, direct, faulty, proxy, record = env
    proxy.add(Rule("GET", SAVEPOINT_STATUS, "hang", times=None, delay=3))
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(faulty, record, "7s", timeout=8)
    pending = load(record).pending
    assert pending.phase == "stopping" and pending.trigger
    proxy.clear()
    result = reconcile(direct, record)
    assert result["action"] in ("restored", "adopted"), result
    exactly_one(cluster, direct)
    assert interval_s(direct) == 7.0


def test_d_a_full_disk_after_the_stop(env, tmp_path):
    cluster, direct, faulty, proxy, record = env
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        moved = small / record.name
        shutil.copy(record, moved)

        def fill():  # right after Flink accepted the stop: the state dir is full from here on
            with open(small / "filler", "wb") as fh:
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
                except OSError:
                    pass

        proxy.add(Rule("POST", STOP, "after", hook=fill))
        with pytest.raises(KhaosError, match="the record could not be written"):
            deployment.reconfigure(faulty, moved, "8s", timeout=60)
        proxy.clear()
        jid = exactly_one(cluster, direct)  # the job did not stay down for the disk's sake
        assert interval_s(direct) == 8.0
        (small / "filler").unlink()
        result = reconcile(direct, moved)  # with room again, the record catches up
        assert result["action"] == "adopted" and result["job_id"] == jid
        shutil.copy(moved, record)
    finally:
        subprocess.run(["umount", str(small)], check=False)
    assert load(record).job_id == jid and load(record).pending is None


def test_f_a_lost_answer_to_the_submission_starts_one_job(env):
    cluster, direct, faulty, proxy, record = env
    proxy.add(Rule("POST", RUN, "lose", delay=5))
    result = deployment.reconfigure(faulty, record, "9s", timeout=60, keep_savepoints=3)  # retention from here on
    proxy.clear()
    assert proxy.rules == [] and result["new_s"] == 9.0
    assert exactly_one(cluster, direct) == result["job_id"]


def test_g_two_changes_at_once(env):
    cluster, direct, faulty, proxy, record = env
    proxy.add(Rule("POST", STOP, "hang", delay=1.5))  # keeps the first change inside its lock a while
    outcome = {}

    def first():
        outcome["first"] = deployment.reconfigure(faulty, record, "10s", timeout=60)

    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.7)
    with pytest.raises(KhaosError, match="already controls job"):
        deployment.reconfigure(direct, record, "11s", timeout=60)
    t.join(120)
    proxy.clear()
    assert outcome["first"]["new_s"] == 10.0
    assert exactly_one(cluster, direct) == outcome["first"]["job_id"] and interval_s(direct) == 10.0


def test_the_end_one_job_stopped_with_a_savepoint_nothing_lost(env):
    cluster, direct, _faulty, _proxy, record = env
    jid = exactly_one(cluster, direct)
    location = direct.stop_with_savepoint(jid, timeout=60)
    assert Path(location.removeprefix("file:")).exists() and direct.live_jobs(JOB) == []
    result = audit.audit(cluster.shared_dir / "jobs" / JOB / "out")
    assert result.lost == 0 and result.duplicated == 0 and result.records > 10_000, result
    rec = load(record)
    history = [h["action"] for h in rec.history]
    assert history.count("running") >= 5  # A, B, C, D (adopted), F, G
    # retention: the record keeps (and the disk holds) only the newest savepoints of its changes
    made = {h["savepoint"] for h in rec.history if h.get("action") == "running" and h.get("savepoint")}
    on_disk = {sp for sp in made if Path(sp.removeprefix("file:").removeprefix("//")).exists()}
    assert len(made) >= 5 and rec.keep_savepoints == 3
    assert set(rec.savepoints) == on_disk and len(on_disk) == 3


# ---- P: the profiler never touches a job it did not submit --------------------------------------------

EXPERIMENT = """
name: foreign
job: {{jar: {jar}, name: iot-vehicles, parallelism: 2}}
checkpoint_intervals: [4]
workload: {{rates: [500]}}
failures: {{modes: [process], target: sink}}
clusters: {{inventories: [{inventory}]}}
output: {out}
"""


def test_p_the_profiler_refuses_a_cluster_running_a_foreign_job(cluster, tmp_path):
    ansible.run_playbook(  # "production": a job the profiler did not submit
        "deploy_job",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={"checkpoint_interval": "5s", "flink_job_rate": 100, "flink_job_name": "prod"},
    )
    direct = FlinkClient(cluster.rest_url)
    [prod] = direct.live_jobs("prod")
    assert direct.running_jobs() == [prod["jid"]]  # the only job on the cluster
    try:
        jar = Path(load(cluster.dir / "state" / "prod.json").jar)
        exp = tmp_path / "exp.yml"
        exp.write_text(EXPERIMENT.format(jar=jar, inventory=cluster.inventory, out=tmp_path / "out"))
        t0 = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "khaos_controller.cli", "profile", str(exp)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        took = time.monotonic() - t0
        assert run.returncode == 1, run
        assert run.stderr.strip().splitlines()[-1] == (
            f"khaos: error: cluster c1 ({direct.url}) runs jobs the profiler did not submit: {prod['jid']} "
            "(prod); profile only clusters of its own (nothing was done to it)"
        ), run.stderr
        assert "Traceback" not in run.stderr
        events = [json.loads(ln)["event"] for ln in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()]
        assert events == ["start", "end"], events  # refused before flink_cluster.yml and any job
        after = direct.job(prod["jid"])
        assert after["state"] == "RUNNING" and [j["jid"] for j in direct.live_jobs("prod")] == [prod["jid"]]
        print(f"\nprofiler refused the cluster in {took:.1f}s; job {prod['jid']} still RUNNING")
    finally:
        direct.cancel(prod["jid"])  # the test's stand-in for production


# ---- S: a slow stop whose answer is lost, the JobManager's clock off ----------------------------------

SLOW = "slowstop"
STOP_TIMEOUT_S = 4  # the change's timeout (reconfigure's and reconcile's)
SAVEPOINT_SLEEP_MS = 14_000  # every savepoint of the job takes this long: 3.5 x the timeout


@pytest.fixture(scope="module")
def slow(cluster):
    """A job whose savepoints take SAVEPOINT_SLEEP_MS (the sample job's --savepoint-sleep-ms test knob)."""
    out = cluster.shared_dir / "jobs" / SLOW / "out"
    args = ["--rate", "500", "--output", str(out), "--start", str(int(time.time() * 1000))]
    ansible.run_playbook(
        "deploy_job",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={
            "checkpoint_interval": "3s",
            "flink_job_name": SLOW,
            "flink_job_args": [*args, "--savepoint-sleep-ms", str(SAVEPOINT_SLEEP_MS)],
        },
    )
    direct = FlinkClient(cluster.rest_url)
    proxy = FaultProxy(direct.url)
    try:
        yield cluster, direct, FlinkClient(proxy.url, timeout=2), proxy, cluster.dir / "state" / f"{SLOW}.json"
    finally:
        proxy.close()
        for job in direct.live_jobs(SLOW):  # a test job: its output was audited already
            direct.cancel(job["jid"])


def reconcile_until_settled(client: FlinkClient, record: Path, limit_s: float = 120) -> list:
    """Reconcile again and again, as the daemon does on every step, until nothing is pending: every
    outcome (a result, or the error's text)."""
    outcomes, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            outcomes.append(deployment.reconcile(client, record, timeout=STOP_TIMEOUT_S))
        except KhaosError as e:
            outcomes.append(str(e))
        if load(record).pending is None:
            break
    return outcomes


@pytest.mark.parametrize("shift_s, forgotten", [(5, False), (-5, True)], ids=["clock+5s", "clock-5s-forgotten"])
def test_s_a_slow_stop_whose_answer_is_lost_is_waited_out(slow, shift_s, forgotten):
    cluster, direct, faulty, proxy, record = slow
    old = exactly_one(cluster, direct, name=SLOW)
    new_s = load(record).checkpoint_interval_s + 1
    rules = [Rule("POST", STOP, "lose", delay=3)]  # the stop reaches Flink, its answer never comes back
    if forgotten:  # Flink no longer knows the trigger (as after a JobManager restart)
        rules.append(Rule("GET", SAVEPOINT_STATUS, "error", times=None, status=404))
    proxy.add(*rules, Rule("GET", ".", "shift", times=None, shift_ms=shift_s * 1000))
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(faulty, record, f"{new_s:g}s", timeout=STOP_TIMEOUT_S)
    pending = load(record).pending
    outcomes = reconcile_until_settled(faulty, record)
    proxy.clear()
    final = outcomes[-1]
    if not (isinstance(final, dict) and final.get("action") == "restored"):
        time.sleep(SAVEPOINT_SLEEP_MS / 1000 + 5)  # what the stop left behind
        pytest.fail(
            f"reconcile ended with {final} (pending {load(record).pending}); then job {old} is "
            f"{direct.job(old)['state']} and {len(direct.live_jobs(SLOW))} jobs named {SLOW} run; {outcomes}"
        )
    assert any("is not over after" in o for o in outcomes if isinstance(o, str)), outcomes  # waited, not dropped
    jid = exactly_one(cluster, direct, name=SLOW)
    rec = load(record)
    savepoint = rec.last_savepoint
    assert jid == final["job_id"] == rec.job_id != old and rec.pending is None
    assert direct.job(old)["state"] == "FINISHED"
    assert direct.checkpoints(old)["latest"]["savepoint"]["external_path"] == savepoint  # the stop's savepoint
    restored = direct.checkpoints(jid)["latest"]["restored"]
    assert restored["external_path"] == savepoint and restored["is_savepoint"]
    assert interval_s(direct, SLOW) == new_s
    assert pending.trigger and pending.checkpoint_id >= 0 and pending.phase == "stopping"
    # Flink remembers the trigger: the same stop request again is answered with its id and starts nothing
    savepoints = [h["id"] for h in direct.checkpoints(old)["history"] if h["is_savepoint"]]
    assert savepoints and min(savepoints) > pending.checkpoint_id
    assert direct.trigger_stop(old, pending.trigger) == pending.trigger
    time.sleep(1)
    assert [h["id"] for h in direct.checkpoints(old)["history"] if h["is_savepoint"]] == savepoints
    print(f"\n{len(outcomes)} reconciles: " + " | ".join(str(o)[:160] for o in outcomes))


# ---- the runner directories: no local user can prepare them -------------------------------------------


def test_run_dirs_are_private_and_unpredictable(tmp_path):
    base = tmp_path / "runs"
    a, b = ansible.run_dir(base, "reconfigure-x"), ansible.run_dir(base, "reconfigure-x")
    assert a != b and a.parent == b.parent == base
    assert (os.stat(base).st_mode & 0o777) == 0o700 and (os.stat(a).st_mode & 0o777) == 0o700
    # the old attack: a directory someone else prepared (with env/envvars injecting ANSIBLE_CONFIG)
    foreign = tmp_path / "foreign"
    (foreign / "reconfigure-x" / "env").mkdir(parents=True)
    (foreign / "reconfigure-x" / "env" / "envvars").write_text("ANSIBLE_CONFIG: /tmp/evil.cfg\n")
    os.chown(foreign, 65534, 65534)
    with pytest.raises(KhaosError, match="belongs to uid 65534"):
        ansible.run_dir(foreign, "reconfigure-x")
    link = tmp_path / "link"
    link.symlink_to(base)
    with pytest.raises(KhaosError, match="not a plain directory"):
        ansible.run_dir(link, "reconfigure-x")
