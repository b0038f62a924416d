"""Integration tests on real lab hosts (root): one shared Flink cluster, and nothing left behind."""

from __future__ import annotations

import os
import time

import pytest
from support.labs import fresh_lab, leftovers

from khaos_controller.infra import ansible


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After every lab test (and every fixture's teardown): no test lab, JVM, namespace or mount remains."""
    yield
    if os.geteuid() == 0:
        assert leftovers() == []


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A lab of 3 hosts with a Flink cluster deployed by playbooks/flink_cluster.yml, shared by the tests
    that only need some cluster (each cleans up its own jobs)."""
    lab = fresh_lab("tcluster")
    base = tmp_path_factory.mktemp("ansible")
    try:
        t0 = time.monotonic()
        first = ansible.run_playbook("flink_cluster", lab.inventory, base_dir=base)
        lab.deploy_seconds = time.monotonic() - t0
        lab.first_run = first
        lab.ansible_base = base
        lab.rest_url = f"http://{lab.host(f'{lab.name}-1').ip}:8081"
        yield lab
    finally:
        lab.down(quiet=True)
