"""Inventory groups are named once (roles/khaos_defaults); an inventory that renames them is followed by
the controller (cluster facts, Kafka bootstrap, chaos plans) and the playbooks alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.playbook import playbook

from khaos_controller import REPO_ROOT
from khaos_controller.chaos.plan import make_plan
from khaos_controller.errors import KhaosError
from khaos_controller.infra.inventory import GROUP_VARIABLES, GroupNames, cluster_facts
from khaos_controller.infra.kafka import inventory_bootstrap

RENAMED = """
[masters]
jm ansible_connection=local ansible_host=10.0.0.1
[workers]
tm1 ansible_connection=local ansible_host=10.0.0.2
tm2 ansible_connection=local ansible_host=10.0.0.3
[brokers]
k1 ansible_connection=local ansible_host=10.0.0.9
[fl:children]
masters
workers
[all:vars]
flink_hosts=fl
flink_jobmanager_group=masters
flink_taskmanager_group=workers
kafka_group=brokers
"""


@pytest.fixture
def renamed(tmp_path) -> Path:
    inv = tmp_path / "hosts.ini"
    inv.write_text(RENAMED)
    return inv


def test_the_default_names_are_the_shared_role_defaults():
    defaults = yaml.safe_load((REPO_ROOT / "roles/khaos_defaults/defaults/main.yml").read_text())
    names = GroupNames.of()
    assert names.variables() == {var: defaults[var] for var in GROUP_VARIABLES.values()}
    assert (names.jobmanager, names.kafka) == ("flink_jobmanager", "kafka")
    assert GroupNames.of({"kafka_group": "brokers"}).kafka == "brokers"


def test_the_controller_follows_renamed_groups(renamed):
    facts = cluster_facts(renamed)
    assert (facts.jobmanager, facts.rest_url) == ("jm", "http://10.0.0.1:8081")
    assert facts.groups.names == GroupNames.of(
        {"flink_hosts": "fl", "flink_jobmanager_group": "masters", "flink_taskmanager_group": "workers"}
        | {"kafka_group": "brokers"}
    )
    assert inventory_bootstrap(renamed) == "10.0.0.9:9092"
    picks = {
        make_plan("process", "taskmanager", "random", facts.groups, facts.addresses, seed=s).targets[0]
        for s in range(9)
    }
    assert picks == {"tm1", "tm2"}
    assert make_plan("process", "kafka", "random", facts.groups, facts.addresses).targets == ["k1"]
    with pytest.raises(KhaosError, match="refusing to kill the JobManager"):
        make_plan("host", "taskmanager", "jm", facts.groups, facts.addresses)
    with pytest.raises(KhaosError, match=r"k1 runs no TaskManager"):
        make_plan("process", "taskmanager", "k1", facts.groups, facts.addresses)


def test_a_missing_renamed_group_is_named_in_the_error(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text("[flink_jobmanager]\njm ansible_connection=local\n[all:vars]\nflink_jobmanager_group=masters\n")
    with pytest.raises(KhaosError, match="no host in group masters"):
        cluster_facts(inv)


@pytest.mark.parametrize(("component", "pool"), [("taskmanager", {"tm1", "tm2"}), ("kafka", {"k1"})])
def test_the_chaos_playbook_follows_renamed_groups(renamed, tmp_path, component, pool):
    """inject_failure.yml's preflight and plan (a dry run) pick from the renamed groups."""
    args = ["-e", "chaos_mode=process", "-e", "chaos_target=random", "-e", f"chaos_component={component}"]
    proc = playbook(
        ["-i", str(renamed), "playbooks/inject_failure.yml", *args, "-e", "chaos_dry_run=true", "-v"], tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    plans = [json.loads(line.split("=>", 1)[1]) for line in proc.stdout.splitlines() if '"plan": {' in line]
    assert plans and set(plans[0]["plan"]["targets"]) <= pool, plans
