"""The remote checkpoint store on a lab host of its own (`khaos lab up --store`): playbooks/checkpoint_store.yml
twice (the second run changes nothing), the sample job checkpointing to s3:// through Flink's S3 plugin, a
TaskManager kill restored from a checkpoint in the store, a savepoint there, checkpoint durations on a link
shaped with tc (40 Mbit/s) against the unshaped link, the store host killed under the job (its checkpoints
fail, it keeps running), a fresh store host (an empty disk) taking checkpoints again, and a final
stop-with-savepoint audited 0 lost / 0 duplicated. One lab (JobManager, 2 TaskManagers, the store) for the module."""

from __future__ import annotations

import os
import stat
import statistics
import subprocess
import time

import pytest
from support.labs import fresh_lab

from khaos_controller.flink import audit
from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible, s3
from khaos_controller.infra.inventory import cluster_facts
from khaos_controller.infra.lab_inventory import STORE_BUCKET

pytestmark = pytest.mark.lab
LAB = "tstore"
STORE = f"{LAB}-store"
KEYS, STATE_BYTES = 8000, 2000  # the job's keyed state: 8000 keys x 2000 bytes = 16 MB
SHAPED_MBIT = 40
JOB_CONFIG = {"execution.checkpointing.timeout": "20 s"}
PLAYBOOKS = ("flink_cluster", "checkpoint_store")


@pytest.fixture(scope="module")
def store_lab(tmp_path_factory):
    """The lab, Flink (flink_cluster.yml) and the store (checkpoint_store.yml) deployed side by side."""
    lab = fresh_lab(LAB, hosts=3, store=True)
    try:
        lab.ansible_base = tmp_path_factory.mktemp("ansible")
        t0 = time.monotonic()
        runs = {pb: ansible.run_playbook_async(pb, lab.inventory, base_dir=lab.ansible_base) for pb in PLAYBOOKS}
        for thread, _ in runs.values():
            thread.join()
        lab.first = {pb: ansible.result_of(runner) for pb, (_, runner) in runs.items()}
        print(f"flink_cluster.yml and checkpoint_store.yml side by side: {time.monotonic() - t0:.1f} s")
        lab.client = FlinkClient(cluster_facts(lab.inventory).rest_url)
        lab.store = s3.S3(lab.store_endpoint, **lab.store_keys())
        yield lab
    finally:
        lab.down(quiet=True)


def run(lab, playbook: str, **kw) -> tuple[ansible.PlaybookResult, float]:
    t0 = time.monotonic()
    result = ansible.run_playbook(playbook, lab.inventory, base_dir=lab.ansible_base, **kw)
    return result, time.monotonic() - t0


def on_host(lab, host: str, *cmd: str) -> str:
    netns = lab.netns(lab.host(host))
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, check=True).stdout


def history(lab) -> list[dict]:
    """The job's recent checkpoints, newest first (in progress too)."""
    return lab.client.checkpoints(lab.job_id)["history"]


def completed_after(lab, after_id: int, count: int, timeout: float) -> list[dict]:
    """Wait for ``count`` completed checkpoints newer than ``after_id``; those, oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        done = [h for h in history(lab) if h["id"] > after_id and h["status"] == "COMPLETED"]
        if len(done) >= count:
            return sorted(done, key=lambda h: h["id"])[:count]
        assert time.monotonic() < deadline, f"{len(done)} of {count} checkpoints after #{after_id}: {history(lab)[:3]}"
        time.sleep(0.5)


def test_inventory_points_flink_at_the_store(store_lab):
    facts = ansible.inventory_list(store_lab.inventory)
    assert facts["checkpoint_store"]["hosts"] == [STORE]
    hostvars = facts["_meta"]["hostvars"][f"{LAB}-1"]
    assert hostvars["flink_checkpoint_dir"] == f"s3://{STORE_BUCKET}/checkpoints"
    assert hostvars["flink_savepoint_dir"] == f"s3://{STORE_BUCKET}/savepoints"
    assert stat.S_IMODE(os.stat(store_lab.inventory).st_mode) == 0o600  # it holds the key pair


def test_store_role_second_run_changes_nothing(store_lab):
    first = store_lab.first["checkpoint_store"]
    assert first.changed(STORE) > 5 and store_lab.first["flink_cluster"].changed() > 0
    again, seconds = run(store_lab, "checkpoint_store")
    print(f"checkpoint_store.yml again: {seconds:.1f} s, changed={again.changed()}")
    assert again.changed() == 0, again.stats
    assert store_lab.store.buckets() == [STORE_BUCKET]
    listening = [ln.split()[3] for ln in on_host(store_lab, STORE, "ss", "-Hltn").splitlines()]
    port = f":{s3.DEFAULT_PORT}"
    assert [a for a in listening if a.endswith(port)] == [f"[::ffff:{store_lab.host(STORE).ip}]{port}"]  # private only
    root = store_lab.host_dir(store_lab.host(STORE)) / "root"
    assert stat.S_IMODE((root / "opt/s3proxy/etc/s3proxy.properties").stat().st_mode) == 0o640
    config = store_lab.host_dir(store_lab.host(f"{LAB}-1")) / "root/opt/flink/flink-2.3.0/conf/config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640 and "s3.secret-key" in config.read_text()
    assert (config.parent.parent / "plugins/s3-fs-hadoop/flink-s3-fs-hadoop-2.3.0.jar").is_file()


def test_job_checkpoints_to_the_store_and_a_killed_taskmanager_restores_from_it(store_lab):
    out = store_lab.shared_dir / "jobs" / "iot-vehicles" / "out"
    args = ["--rate", "1000", "--output", str(out), "--vehicles", str(KEYS), "--keys", str(KEYS)]
    extravars = {"flink_job_args": [*args, "--state-bytes", str(STATE_BYTES)], "flink_job_config": JOB_CONFIG}
    run(store_lab, "deploy_job", extravars={"checkpoint_interval": "3s", **extravars})
    store_lab.job_id = job_id = store_lab.client.running_job("iot-vehicles")
    latest = completed_after(store_lab, 0, 2, timeout=90)[-1]
    assert latest["external_path"] == f"s3://{STORE_BUCKET}/checkpoints/{job_id}/chk-{latest['id']}"
    keys = store_lab.store.objects(STORE_BUCKET, f"checkpoints/{job_id}/")
    assert f"checkpoints/{job_id}/chk-{latest['id']}/_metadata" in keys
    kill, _ = run(store_lab, "inject_failure", extravars={"chaos_target": "sink"})
    [killed] = kill.data["chaos_kills"]
    t0 = time.monotonic()
    while (stats := store_lab.client.checkpoints(job_id))["counts"]["restored"] < 1:
        assert time.monotonic() - t0 < 90, stats["counts"]
        time.sleep(0.5)
    store_lab.client.wait_running(job_id, timeout=90)
    restored = stats["latest"]["restored"]
    print(f"TaskManager on {killed['host']} killed; restored checkpoint {restored['external_path']}")
    assert restored["external_path"].startswith(f"s3://{STORE_BUCKET}/checkpoints/{job_id}/chk-")
    assert not restored["is_savepoint"]


def test_a_shaped_link_slows_checkpoints_down(store_lab):
    unshaped = completed_after(store_lab, history(store_lab)[0]["id"], 3, timeout=60)
    speeds = {"upload_mbit": SHAPED_MBIT, "download_mbit": SHAPED_MBIT}
    link = {f"checkpoint_store_link_{k}": v for k, v in speeds.items()}
    shaped_run, seconds = run(store_lab, "checkpoint_store", tags="checkpoint_store_link", extravars=link)
    again, _ = run(store_lab, "checkpoint_store", tags="checkpoint_store_link", extravars=link)
    assert (shaped_run.changed(), again.changed()) == (1, 0)
    assert f"rate {SHAPED_MBIT}Mbit" in on_host(store_lab, STORE, "tc", "qdisc", "show", "dev", "ifb-ckpt")
    shaped = completed_after(store_lab, history(store_lab)[0]["id"], 2, timeout=90)
    unshape, _ = run(store_lab, "checkpoint_store", tags="checkpoint_store_link")
    assert unshape.changed() == 1 and "tbf" not in on_host(store_lab, STORE, "tc", "qdisc", "show")
    size_mb = statistics.median(h["checkpointed_size"] for h in shaped) / 1e6
    fast = statistics.median(h["end_to_end_duration"] for h in unshaped) / 1000
    slow = statistics.median(h["end_to_end_duration"] for h in shaped) / 1000
    print(
        f"checkpoint of {size_mb:.1f} MB: unshaped {fast:.2f} s ({[h['end_to_end_duration'] for h in unshaped]} ms), "
        f"link at {SHAPED_MBIT} Mbit/s {slow:.2f} s ({[h['end_to_end_duration'] for h in shaped]} ms; "
        f"{size_mb * 8 / slow:.1f} Mbit/s); shaping applied in {seconds:.1f} s"
    )
    assert size_mb > 10
    # the shaped link's upload takes at least what its rate allows; the unshaped one beat that bound (its
    # duration on a loaded machine, two lanes of tests, is not a fixed fraction of the shaped one)
    bound = 0.8 * size_mb * 8 / SHAPED_MBIT
    assert slow >= bound > fast


def test_a_savepoint_goes_to_the_store(store_lab):
    client = store_lab.client
    answer = client.request("POST", f"/jobs/{store_lab.job_id}/savepoints", json={"cancel-job": False})
    location = client.await_savepoint(store_lab.job_id, answer["request-id"], timeout=60)
    assert location.startswith(f"s3://{STORE_BUCKET}/savepoints/savepoint-")
    key = location.removeprefix(f"s3://{STORE_BUCKET}/") + "/_metadata"
    assert key in store_lab.store.objects(STORE_BUCKET, "savepoints/")


def test_a_dead_store_fails_checkpoints_and_a_fresh_one_takes_them_again(store_lab):
    client, job_id = store_lab.client, store_lab.job_id
    before, failures = client.checkpoints(job_id)["counts"], len(client.failure_times(job_id))
    dead = store_lab.kill(STORE)
    assert dead["dead"]
    t0 = time.monotonic()
    while (counts := client.checkpoints(job_id)["counts"])["failed"] <= before["failed"]:
        assert time.monotonic() - t0 < 120, counts
        time.sleep(1)
    print(
        f"store host killed: failed checkpoints {before['failed']} -> {counts['failed']} in {time.monotonic() - t0:.0f} s"
    )
    assert client.all_tasks_running(job_id) and len(client.failure_times(job_id)) == failures  # no restart
    last = history(store_lab)[0]["id"]
    store_lab.restore(STORE)
    again, seconds = run(store_lab, "checkpoint_store")
    print(f"fresh store host: checkpoint_store.yml {seconds:.1f} s, changed={again.changed()}")
    assert again.changed(STORE) > 5
    assert store_lab.store.objects(STORE_BUCKET, "savepoints/") == {}  # a new disk: the savepoint is gone
    t0 = time.monotonic()
    [new] = completed_after(store_lab, last, 1, timeout=120)
    print(f"first checkpoint on the fresh store: #{new['id']} {time.monotonic() - t0:.1f} s after its playbook")
    assert f"checkpoints/{job_id}/chk-{new['id']}/_metadata" in store_lab.store.objects(STORE_BUCKET, "checkpoints/")
    assert len(client.failure_times(job_id)) == failures


def test_stop_with_savepoint_and_audit(store_lab):
    client, job_id = store_lab.client, store_lab.job_id
    location = client.stop_with_savepoint(job_id, timeout=120)
    assert location.startswith(f"s3://{STORE_BUCKET}/savepoints/")
    assert location.removeprefix(f"s3://{STORE_BUCKET}/") + "/_metadata" in store_lab.store.objects(
        STORE_BUCKET, "savepoints/"
    )
    deadline = time.monotonic() + 30
    while client.job(job_id)["state"] != "FINISHED":
        assert time.monotonic() < deadline, client.job(job_id)["state"]
        time.sleep(0.5)
    result = audit.audit(store_lab.shared_dir / "jobs" / "iot-vehicles" / "out")
    print(
        f"stop-with-savepoint {location}; audit: {result.records} records, lost {result.lost}, dup {result.duplicated}"
    )
    assert result.records > 10_000 and result.min_id == 0
    assert (result.lost, result.duplicated) == (0, 0)
