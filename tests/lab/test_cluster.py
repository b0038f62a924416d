"""A real Flink 2.3 cluster deployed by the project's playbooks onto lab hosts, and the sample job on it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.errors import KhaosError
from khaos_controller.flink import audit
from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.flink.probe import JobProbe
from khaos_controller.infra import ansible

pytestmark = pytest.mark.lab
JAR = REPO_ROOT / "build" / "jobs" / "iot-vehicles.jar"


def java_pids(lab) -> dict[str, list[int]]:
    out = {}
    for h in [lab.host(name) for name in lab.flink_hosts]:
        pids = subprocess.run(["ip", "netns", "pids", lab.netns(h)], capture_output=True, text=True).stdout.split()
        out[h.name] = [
            int(p)
            for p in pids
            if Path(f"/proc/{p}/comm").exists() and Path(f"/proc/{p}/comm").read_text().strip() == "java"
        ]
    return out


def test_cluster_is_up(cluster):
    assert cluster.first_run.changed() > 0
    ov = FlinkClient(cluster.rest_url).overview()
    assert ov["taskmanagers"] == 2 and ov["flink-version"] == "2.3.0"
    assert all(len(p) == 1 for p in java_pids(cluster).values())  # one supervised JVM per host


def test_second_run_changes_nothing(cluster):
    again = ansible.run_playbook("flink_cluster", cluster.inventory, base_dir=cluster.ansible_base)
    assert again.changed() == 0, again.stats


def cpus_allowed(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))


def test_jvms_pinned_to_the_cpus_given(cluster):
    """flink_taskmanager_cpus / flink_jobmanager_cpus restart the JVMs on those CPUs; empty lists free them."""
    jm_host = cluster.host(f"{cluster.name}-1").name
    pinned = {"flink_jobmanager_cpus": "0", "flink_taskmanager_cpus": "1"}
    try:
        run = ansible.run_playbook("flink_cluster", cluster.inventory, base_dir=cluster.ansible_base, extravars=pinned)
        assert run.changed() > 0
        for host, pids in java_pids(cluster).items():
            assert [cpus_allowed(p) for p in pids] == ["0" if host == jm_host else "1"], host
        assert FlinkClient(cluster.rest_url).overview()["taskmanagers"] == 2  # the cluster came back whole
    finally:
        ansible.run_playbook("flink_cluster", cluster.inventory, base_dir=cluster.ansible_base)
    with pytest.raises(KhaosError, match="flink_taskmanager_cpus 'one': each must be a CPU list"):
        ansible.run_playbook(
            "flink_cluster",
            cluster.inventory,
            base_dir=cluster.ansible_base,
            extravars={"flink_taskmanager_cpus": "one"},
        )
    free = {h: {cpus_allowed(p) for p in pids} for h, pids in java_pids(cluster).items()}
    assert all(c != {"0"} and c != {"1"} for c in free.values()), free


def test_job_checkpoints_savepoint_and_audit(cluster):
    ansible.run_playbook(
        "deploy_job",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={"checkpoint_interval": "2s", "flink_job_rate": 1000},
    )
    client = FlinkClient(cluster.rest_url)
    [job] = [j for j in client.get("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
    job_id = job["jid"]
    assert job["name"] == "iot-vehicles"
    assert client.checkpoint_config(job_id)["interval"] == 2000  # the variable reached the job
    probe = JobProbe(client, job_id)
    deadline = time.monotonic() + 90
    while (s := probe.sample()).checkpoints < 3 or s.backlog is None or s.latency_p99_ms is None:
        assert time.monotonic() < deadline, f"after 90 s: {s}"
        time.sleep(1)
    assert s.lag_ms is not None and s.emitted > 0  # the job's own gauges, over REST
    # deploying again with the same interval changes nothing; another interval is refused
    again = ansible.run_playbook(
        "deploy_job", cluster.inventory, base_dir=cluster.ansible_base, extravars={"checkpoint_interval": "2s"}
    )
    assert again.changed() == 0
    with pytest.raises(KhaosError, match="reconfigure"):
        ansible.run_playbook(
            "deploy_job", cluster.inventory, base_dir=cluster.ansible_base, extravars={"checkpoint_interval": "7s"}
        )
    location = client.stop_with_savepoint(job_id)
    assert Path(location.removeprefix("file:")).exists()
    deadline = time.monotonic() + 30  # the job ends right after its savepoint completes
    while client.job(job_id)["state"] != "FINISHED":
        assert time.monotonic() < deadline, client.job(job_id)["state"]
        time.sleep(0.5)
    result = audit.audit(cluster.shared_dir / "jobs" / "iot-vehicles" / "out")
    assert result.records > 1000
    assert result.min_id == 0 and result.lost == 0 and result.duplicated == 0, result


def test_killed_taskmanager_comes_back(cluster):
    client = FlinkClient(cluster.rest_url)
    before = {tm["id"] for tm in client.taskmanagers()}
    host = cluster.host(f"{cluster.name}-2")
    [pid] = java_pids(cluster)[host.name]
    subprocess.run(["kill", "-9", str(pid)], check=True)
    deadline = time.monotonic() + 60
    while True:
        tms = {tm["id"] for tm in client.taskmanagers()}
        if len(tms) == 2 and tms != before:
            break
        assert time.monotonic() < deadline, "the supervisor did not bring the TaskManager back"
        time.sleep(1)
    [new_pid] = java_pids(cluster)[host.name]
    assert new_pid != pid


def test_bad_job_input(cluster):
    with pytest.raises(KhaosError, match="jar /nonexistent.jar does not exist"):
        ansible.run_playbook(
            "deploy_job",
            cluster.inventory,
            base_dir=cluster.ansible_base,
            extravars={"flink_job_jar": "/nonexistent.jar"},
        )
    with pytest.raises(FlinkError, match="no-such-jar.jar does not exist"):
        FlinkClient(cluster.rest_url).run_jar("no-such-jar.jar")


@pytest.mark.last
def test_teardown_stops_every_jvm(cluster):
    ansible.run_playbook("teardown", cluster.inventory, base_dir=cluster.ansible_base)
    assert java_pids(cluster) == {h: [] for h in cluster.flink_hosts}
    with pytest.raises(FlinkError, match="unreachable"):
        FlinkClient(cluster.rest_url, timeout=3).overview()


def test_a_state_bootstrap_gives_a_job_its_whole_state_at_once(cluster):
    """profile/bootstrap.py writes 20,000 keys x 1,000 B into a savepoint on the cluster; the job started
    from it on RocksDB checkpoints all of it at once (it has touched at most a few thousand keys), and the
    audit still finds every record exactly once."""
    from khaos_controller.profile import bootstrap
    from khaos_controller.profile.ownjobs import OwnJobs

    client = FlinkClient(cluster.rest_url)
    size = bootstrap.StateSize(keys=20_000, state_bytes=1_000)
    t0 = time.monotonic()
    savepoint = bootstrap.write(client, str(JAR), size, OwnJobs(), "t", timeout_s=300)
    print(f"bootstrap of {size.total_bytes / 1e6:.0f} MB: {time.monotonic() - t0:.1f} s -> {savepoint}")
    assert savepoint.startswith("file:") and savepoint.endswith("/bootstrap-20000x1000-t")
    out = cluster.shared_dir / "jobs" / "boot-state" / "out"
    ansible.run_playbook(
        "deploy_job",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={
            "checkpoint_interval": "3s",
            "flink_job_name": "boot-state",
            "flink_job_args": ["--rate", "200", "--output", str(out), "--keys", "20000", "--state-bytes", "1000"],
            "flink_job_savepoint": savepoint,
            "flink_job_config": {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "false"},
            "flink_job_state_dir": str(cluster.ansible_base / "boot-state"),
        },
    )
    job_id = client.running_job("boot-state")
    deadline = time.monotonic() + 90
    while not (latest := (client.checkpoints(job_id).get("latest") or {}).get("completed")):
        assert time.monotonic() < deadline, "no checkpoint completed"
        time.sleep(1)
    assert latest["checkpointed_size"] > 0.9 * size.total_bytes, latest  # every key's payload, not a few
    location = client.stop_with_savepoint(job_id)
    deadline = time.monotonic() + 30
    while client.job(job_id)["state"] != "FINISHED":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    result = audit.audit(out)
    assert result.records > 0 and result.min_id == 0 and result.lost == 0 and result.duplicated == 0, (result, location)
