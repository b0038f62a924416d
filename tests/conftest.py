"""Shared fixtures. Lab tests need root; they build real hosts and a real Flink cluster."""
from __future__ import annotations

import os
import time

import pytest

from khaos_controller import ansible, lab as labmod

TEST_LAB_PREFIX = "t"  # test labs are named t<something>: test_zz_cleanup checks none survive


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "lab" in item.keywords and os.geteuid() != 0:
            item.add_marker(pytest.mark.xfail(reason="lab tests need root", run=False, strict=True))


def one_line(e: Exception, limit: int = 600) -> str:
    """The text of a user-facing error: one line, not a stack trace."""
    text = str(e)
    assert "\n" not in text and len(text) < limit, text
    return text


def fresh_lab(name: str, hosts: int = 3) -> labmod.Lab:
    stale = labmod.Lab(name)
    stale.down(quiet=True)  # leftovers of an earlier, interrupted run
    lab = labmod.Lab(name)
    lab.up(hosts=hosts)
    return lab


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A lab of 3 hosts with a Flink cluster deployed by playbooks/flink_cluster.yml."""
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


@pytest.fixture
def jar_built():
    from khaos_controller import REPO_ROOT
    jar = REPO_ROOT / "build" / "jobs" / "iot-vehicles.jar"
    assert jar.exists(), "build the sample job first: make job"
    return jar
