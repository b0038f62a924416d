"""Changing the checkpoint interval of a live job on real lab hosts, and its failure paths."""

from __future__ import annotations

import json
import time

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.flink import audit, deployment
from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.flink.record import Pending, load, save
from khaos_controller.infra import ansible

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def job(cluster):
    ansible.run_playbook(
        "deploy_job",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={"checkpoint_interval": "10s", "flink_job_rate": 1500, "flink_job_name": "rc"},
    )
    client = FlinkClient(cluster.rest_url)
    record = cluster.dir / "state" / "rc.json"
    assert json.loads(record.read_text())["name"] == "rc"
    yield client, record
    cluster.cancel_jobs()


def reconfigure(cluster, interval: str, **extra):
    """playbooks/reconfigure.yml on job rc."""
    return ansible.run_playbook(
        "reconfigure",
        cluster.inventory,
        base_dir=cluster.ansible_base,
        extravars={"checkpoint_interval": interval, "flink_job_name": "rc", **extra},
    )


def running(client, name="rc"):
    return [j for j in client.get("/jobs/overview")["jobs"] if j["name"] == name and j["state"] == "RUNNING"]


def test_reconfigure_playbook_changes_the_interval(cluster, job):
    client, record = job
    [before] = running(client)
    reconfigure(cluster, "3s")
    [after] = running(client)
    assert after["jid"] != before["jid"]
    assert client.checkpoint_interval_ms(after["jid"]) == 3000
    rec = load(record)
    assert rec.job_id == after["jid"] and rec.pending is None and rec.last_savepoint
    # the same interval again: nothing to do
    again = reconfigure(cluster, "3s")
    assert again.changed() == 0 and running(client)[0]["jid"] == after["jid"]


def test_failed_savepoint_leaves_the_job_running(cluster, job):
    client, _record = job
    [before] = running(client)
    with pytest.raises(KhaosError, match="savepoint failed, job .* left RUNNING on interval 3s"):
        reconfigure(cluster, "7s", flink_job_savepoint_dir="nofs:///nowhere")
    [after] = running(client)
    assert after["jid"] == before["jid"] and client.checkpoint_interval_ms(after["jid"]) == 3000


class FailingNewInterval(FlinkClient):
    """A real client whose first submission with the new interval is refused (a forced failure)."""

    def __init__(self, url, refuse):
        super().__init__(url)
        self.refuse, self.refused = refuse, 0

    def run_jar(self, jar_id, **kw):
        if kw.get("config", {}).get("execution.checkpointing.interval") == self.refuse and not self.refused:
            self.refused += 1
            raise FlinkError("forced failure of the resubmit", status=400)  # a clear refusal
        return super().run_jar(jar_id, **kw)


def test_failed_resubmit_rolls_back_to_the_old_interval(cluster, job):
    _, record = job
    client = FailingNewInterval(cluster.rest_url, refuse="9s")
    with pytest.raises(KhaosError, match="rolled back: job .* runs on 3s"):
        deployment.reconfigure(client, record, "9s")
    assert client.refused == 1
    [after] = running(client)
    assert client.checkpoint_interval_ms(after["jid"]) == 3000
    rec = load(record)
    assert rec.pending is None and [h["action"] for h in rec.history][-2:] == ["resubmit_failed", "running"]


def test_crash_mid_change_is_reconciled_to_exactly_one_job(cluster, job):
    client, record = job
    [before] = running(client)
    # the controller dies right after recording the savepoint: the job is stopped, a change pending
    location = client.stop_with_savepoint(before["jid"])
    rec = load(record)
    rec.pending = Pending.new(savepoint=location, old_s=3.0, new_s=5.0, stopped_job=before["jid"], ts=time.time())
    save(record, rec)
    assert running(client) == []
    reconfigure(cluster, "5s")
    [after] = running(client)
    assert client.checkpoint_interval_ms(after["jid"]) == 5000
    assert load(record).pending is None
    # every change went through savepoints: the sink saw each record exactly once
    client.stop_with_savepoint(after["jid"])
    result = audit.audit(cluster.shared_dir / "jobs" / "rc" / "out")
    assert result.records > 0 and result.lost == 0 and result.duplicated == 0, result
