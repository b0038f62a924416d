"""End to end on the simulated cloud: provision.yml -> a one-failure profile (`khaos profile` on the
OpenStack inventory: flink_cluster.yml, the sample job, a host kill through the API - stop, then start -
recovery measured, sink audited) -> teardown.yml, and the simulator holds nothing afterwards.
1 JobManager + 1 TaskManager. The started server is a fresh host with a NEW SSH host key: the chaos role
pins it from the server's console log, and the roles re-join it with StrictHostKeyChecking=yes."""

from __future__ import annotations

import collections
import json
import re

import pytest
from support.os_sim import Simulator
from test_openstack import address, known_hosts, no_leftovers, server, sim_inventory

from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible, dist
from khaos_controller.profile import experiment
from khaos_controller.profile.profiler import Profiler

pytestmark = pytest.mark.lab


def request_summary(sim: Simulator) -> dict[str, int]:
    """Requests by method and path, ids replaced by {id}."""
    ids = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27}|/[0-9a-f]{32}")
    return dict(collections.Counter(f"{r['method']} {ids.sub('/{id}', r['path'])}" for r in sim.cloud.log))


EXPERIMENT = """
name: openstack-e2e
job: {{jar: {jar}, name: iot-vehicles, parallelism: 2}}
checkpoint_intervals: [2]
workload: {{rates: [500]}}
failures: {{modes: [host], target: sink, timing: before_checkpoint, margin_s: 1, seed: 3}}
clusters: {{inventories: [{inventory}]}}
measurement: {{warmup_s: 10, settle_s: 5, recovery_timeout_s: 180, consecutive_s: 5}}
output: {out}
"""


def test_provision_profile_with_host_kill_teardown(tmp_path, jar_built):
    sim = Simulator("tose2e")
    try:
        inv = sim_inventory(sim, tmp_path, "e2e", taskmanagers=1, extra={"flink_dist_archive": str(dist.dist_path())})
        ansible.run_playbook("provision", inv, base_dir=tmp_path)
        tm = server(sim, "khaos-e2e-tm-1")
        first_key = known_hosts(tmp_path)[address(tm)]
        assert first_key == sim.cloud.host_key(tm)  # pinned from the console before any SSH
        (tmp_path / "exp.yml").write_text(EXPERIMENT.format(jar=jar_built, inventory=inv, out=tmp_path / "out"))
        # the profiler deploys Flink (flink_cluster.yml), the job, kills the sink's host through the API
        # (inject_failure.yml: os-stop, then os-start and the roles re-join it), measures recovery, audits the sink
        df = Profiler(experiment.load(tmp_path / "exp.yml")).run()
        [row] = df.to_dict("records")
        assert row["mode"] == "host" and row["recovered"] and row["recovery_s"] > 0, row
        assert row["audit_lost"] == 0 and row["audit_duplicated"] == 0 and row["audit_records"] > 0, row
        [inject] = [
            json.loads(ln)
            for ln in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()
            if json.loads(ln)["event"] == "inject"
        ]
        [killed] = inject["kills"]
        assert killed["host"] == "khaos-e2e-tm-1" and killed["action"] == "stop" and killed["dead"]
        actions = [r["action"] for r in sim.cloud.log if r["path"].endswith("/action")]
        # os-stop, then os-start (the simulator refuses them out of order); the consoles read: both servers
        # at provision, the started one by the chaos role (nothing is accepted on first contact)
        assert [a for a in actions if a != "os-getConsoleOutput"] == ["os-stop", "os-start"]
        assert actions.count("os-getConsoleOutput") == 3
        assert sim.cloud.host_key(tm) != first_key  # a fresh host, reached with its NEW key, pinned
        assert known_hosts(tmp_path)[address(tm)] == sim.cloud.host_key(tm)
        jm = next(h for h in sim.cloud.lab.hosts.values() if h.name.endswith("-jm-1"))
        assert FlinkClient(f"http://{jm.ip}:8081").overview()["taskmanagers"] == 1  # the cluster re-formed

        gone = ansible.run_playbook("teardown", inv, base_dir=tmp_path)
        assert "server khaos-e2e-tm-1" in gone.data["openstack_deleted"]
        no_leftovers(sim)
        summary = request_summary(sim)
        print(f"\n{len(sim.cloud.log)} API requests:", summary)
        print(
            f"recovery {row['recovery_s']:.1f} s, detect {row['detect_s']:.1f} s, audit {row['audit_records']} records"
        )
        assert all("openstacksdk/" in r["agent"] for r in sim.cloud.log)
        assert summary["POST /compute/v2.1/servers"] == 2 and summary["DELETE /compute/v2.1/servers/{id}"] == 2
    finally:
        sim.close()
