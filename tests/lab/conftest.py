"""Integration tests on real lab hosts (root): one shared Flink cluster (tests/conftest.py holds the
machine's lab lock and checks that nothing is left behind)."""

from __future__ import annotations

import time

import pytest
from support.labs import fresh_lab

from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible, bastion
from khaos_controller.infra.inventory import cluster_facts

SHARED = "tcluster"  # JobManager tcluster-1, TaskManagers -2 and -3, bastion -4 (group khaos_controller)


class SharedCluster:
    """The session's lab (its attributes pass through) with its bastion inventory and cluster facts."""

    def __init__(self, lab, inventory, base, first_run):
        self.lab, self.inventory, self.ansible_base, self.first_run = lab, inventory, base, first_run
        self.rest_url = cluster_facts(inventory).rest_url
        self.bastion = f"{lab.name}-4"
        self.flink_hosts = [h for h in lab.hosts if h != self.bastion]

    def __getattr__(self, name):
        return getattr(self.lab, name)

    def cancel_jobs(self) -> None:
        """Cancel every job left running (a test's own jobs; the next module gets free slots)."""
        client = FlinkClient(self.rest_url, timeout=5)
        for job_id in client.running_jobs():
            client.cancel(job_id)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A Flink cluster on 4 lab hosts (JobManager, 2 TaskManagers, a bastion) deployed by
    playbooks/flink_cluster.yml, shared by every test that only needs some cluster. Tests leave it
    as they found it: their jobs stopped or cancelled, the cluster running (the teardown test is last)."""
    lab = fresh_lab(SHARED, hosts=4)
    base = tmp_path_factory.mktemp("ansible")
    try:
        inventory = bastion.lab_inventory(lab)
        t0 = time.monotonic()
        first = ansible.run_playbook("flink_cluster", inventory, base_dir=base)
        shared = SharedCluster(lab, inventory, base, first)
        shared.deploy_seconds = time.monotonic() - t0
        yield shared
    finally:
        lab.down(quiet=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``last`` (the shared cluster's teardown) run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
