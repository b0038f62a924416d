"""The inventory of a lab (inventories/local/<name>.yml): its Flink hosts, and its Kafka brokers and
checkpoint store when it has them, with the SSH settings that reach them (infra/lab.py writes it)."""

from __future__ import annotations

from . import dist
from .inventory import GroupNames

STORE_BUCKET = "khaos"  # the bucket of a lab's checkpoint store: s3://khaos/checkpoints, s3://khaos/savepoints


def _group(hosts) -> dict:
    return {"hosts": {h.name: {"ansible_host": h.ip} for h in hosts}}


def render(lab) -> dict:
    """The lab's inventory as a dict (hosts without a role: the first is the JobManager)."""
    hosts = [h for h in lab.hosts.values() if not h.role]
    brokers = [h for h in lab.hosts.values() if h.role == "kafka"]
    stores = [h for h in lab.hosts.values() if h.role == "store"]
    ssh_args = (
        f"-o UserKnownHostsFile={lab.dir / 'ssh' / 'known_hosts'} -o StrictHostKeyChecking=yes "
        "-o ServerAliveInterval=1 -o ServerAliveCountMax=3 -o ConnectTimeout=5"
    )
    variables = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab.key_file),
        "ansible_ssh_common_args": ssh_args,
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_remote_tmp": "/tmp/.ansible/tmp",
        "khaos_lab_name": lab.name,
        "khaos_shared_dir": str(lab.shared_dir),
        "khaos_state_dir": str(lab.dir / "state"),
        "flink_dist_archive": str(dist.dist_path()),
        "flink_checkpoint_dir": f"file://{lab.shared_dir}/checkpoints",
        "flink_savepoint_dir": f"file://{lab.shared_dir}/savepoints",
    }
    names = GroupNames.of()  # a lab names its groups as the roles do by default
    flink = {names.jobmanager: _group(hosts[:1]), names.taskmanager: _group(hosts[1:])}
    children = {names.flink: {"children": flink}}
    if brokers:  # a lab without Kafka hosts keeps the inventory it always had
        variables["kafka_bootstrap"] = lab.kafka_bootstrap
        variables["kafka_dist_archive"] = str(dist.kafka_dist_path())
        children[names.kafka] = _group(brokers)
    if stores:
        variables.update(store_vars(lab.store_keys()))
        children[names.checkpoint_store] = _group(stores)
    return {"all": {"vars": variables, "children": children}}


def store_vars(keys: dict[str, str]) -> dict:
    """The store's archive, key pair and bucket, and Flink's checkpoints and savepoints in that bucket."""
    return {
        "checkpoint_store_dist_archive": str(dist.s3proxy_dist_path()),
        "checkpoint_store_access_key": keys["access_key"],
        "checkpoint_store_secret_key": keys["secret_key"],
        "checkpoint_store_buckets": [STORE_BUCKET],
        "flink_s3_plugin_jar": str(dist.flink_s3_plugin_path()),
        "flink_s3_access_key": "{{ checkpoint_store_access_key }}",
        "flink_s3_secret_key": "{{ checkpoint_store_secret_key }}",
        "flink_checkpoint_dir": f"s3://{STORE_BUCKET}/checkpoints",
        "flink_savepoint_dir": f"s3://{STORE_BUCKET}/savepoints",
    }
