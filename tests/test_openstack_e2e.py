"""End to end on the simulated cloud: provision.yml -> flink_cluster.yml -> the sample job -> a host
kill through the API (stop, then start) with inject_failure.yml -> the cluster re-forms and the job
recovers -> teardown.yml, and the simulator holds nothing afterwards. 1 JobManager + 1 TaskManager."""
from __future__ import annotations

import collections
import re
import time

import pytest

from khaos_controller import ansible, dist
from khaos_controller.flink import FlinkClient
from os_sim import Simulator
from test_openstack import no_leftovers, sim_inventory

pytestmark = pytest.mark.lab


def request_summary(sim: Simulator) -> dict[str, int]:
    """Requests by method and path, ids replaced by {id}."""
    ids = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27}|/[0-9a-f]{32}")
    return dict(collections.Counter(f"{r['method']} {ids.sub('/{id}', r['path'])}" for r in sim.cloud.log))


def test_provision_flink_host_kill_teardown(tmp_path, jar_built):
    sim = Simulator("tose2e")
    try:
        inv = sim_inventory(sim, tmp_path, "e2e", taskmanagers=1, extra={"flink_dist_archive": str(dist.dist_path())})
        ansible.run_playbook("provision", inv, base_dir=tmp_path)
        ansible.run_playbook("flink_cluster", inv, base_dir=tmp_path)
        jm, tm = sorted(sim.cloud.lab.hosts.values(), key=lambda h: h.name)
        client = FlinkClient(f"http://{jm.ip}:8081")
        assert client.overview()["taskmanagers"] == 1
        ansible.run_playbook("deploy_job", inv, base_dir=tmp_path,
                             extravars={"checkpoint_interval": "2s", "flink_job_rate": 500})
        [job_id] = client.running_jobs()
        wait_for_checkpoints(client, job_id, 2)
        before = client.checkpoints(job_id)["counts"]["completed"]
        old_tm = {t["id"] for t in client.taskmanagers()}

        kill = ansible.run_playbook("inject_failure", inv, base_dir=tmp_path,
                                    extravars={"chaos_mode": "host", "chaos_target": tm.name})
        [killed] = kill.data["chaos_kills"]
        assert killed["host"] == "khaos-e2e-tm-1" and killed["action"] == "stop" and killed["address"] == tm.ip
        assert killed["dead"] and killed["status"] == "SHUTOFF"
        actions = [r for r in sim.cloud.log if r["path"].endswith("/action")]
        assert len(actions) == 2  # os-stop, then os-start (the simulator rejects anything out of order)
        new_tm = {t["id"] for t in client.taskmanagers()}
        assert len(new_tm) == 1 and new_tm != old_tm  # a fresh TaskManager joined: the cluster re-formed
        assert client.wait_running(job_id, timeout=180) >= 0
        wait_for_checkpoints(client, job_id, before + 2)  # and the job checkpoints again
        assert client.failure_times(job_id)  # it did fail and restart

        gone = ansible.run_playbook("teardown", inv, base_dir=tmp_path)
        assert "server khaos-e2e-tm-1" in gone.data["openstack_deleted"]
        no_leftovers(sim)
        summary = request_summary(sim)
        print(f"\n{len(sim.cloud.log)} API requests:", summary)
        assert all("openstacksdk/" in r["agent"] for r in sim.cloud.log)
        assert summary["POST /compute/v2.1/servers"] == 2 and summary["DELETE /compute/v2.1/servers/{id}"] == 2
    finally:
        sim.close()


def wait_for_checkpoints(client: FlinkClient, job_id: str, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while client.checkpoints(job_id)["counts"]["completed"] < n:
        assert time.monotonic() < deadline, f"fewer than {n} checkpoints after {timeout:.0f} s"
        time.sleep(1)
