"""Bad input gets one clear line and touches nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import one_line

from khaos_controller.errors import KhaosError
from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.infra import ansible
from khaos_controller.infra import lab as labmod

GOOD_GROUPS = """
all:
  children:
    flink:
      children:
        flink_jobmanager: {hosts: {jm: {ansible_host: 127.0.0.1}}}
        flink_taskmanager: {hosts: {tm: {ansible_host: 127.0.0.1}}}
"""


def test_inventory_that_does_not_exist(tmp_path):
    with pytest.raises(KhaosError) as e:
        ansible.run_playbook("flink_cluster", tmp_path / "nope.yml", base_dir=tmp_path)
    assert "does not exist" in one_line(e.value)


def test_inventory_without_a_jobmanager(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  children:\n    flink:\n      hosts:\n        a: {ansible_host: 127.0.0.1}\n")
    with pytest.raises(KhaosError) as e:
        ansible.run_playbook("flink_cluster", inv, base_dir=tmp_path)
    assert "needs exactly one host in group 'flink_jobmanager'" in one_line(e.value)


def test_missing_dist_archive(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(GOOD_GROUPS)
    with pytest.raises(KhaosError) as e:
        ansible.run_playbook(
            "flink_cluster", inv, base_dir=tmp_path, extravars={"flink_dist_archive": str(tmp_path / "flink.tgz")}
        )
    assert "does not exist on the controller" in one_line(e.value)


def test_corrupt_dist_archive(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(GOOD_GROUPS)
    archive = tmp_path / "flink.tgz"
    archive.write_bytes(b"not a tarball")
    (tmp_path / "flink.tgz.sha512").write_text("0" * 128 + "  flink.tgz\n")
    with pytest.raises(KhaosError) as e:
        ansible.run_playbook("flink_cluster", inv, base_dir=tmp_path, extravars={"flink_dist_archive": str(archive)})
    assert "does not match" in one_line(e.value)


def test_flink_rest_unreachable():
    with pytest.raises(FlinkError) as e:
        FlinkClient("http://127.0.0.1:9", timeout=2).overview()
    assert one_line(e.value) == "Flink REST at http://127.0.0.1:9 is unreachable (connection refused)"


def test_unknown_jar_file():
    with pytest.raises(FlinkError) as e:
        FlinkClient("127.0.0.1:9").upload_jar("/nonexistent/job.jar")
    assert "does not exist" in one_line(e.value)


def test_lab_needs_root(monkeypatch):
    monkeypatch.setattr(labmod.os, "geteuid", lambda: 1000)
    with pytest.raises(KhaosError) as e:
        labmod.Lab("tx").up()
    assert "needs root" in one_line(e.value)


def test_cli_prints_one_line_and_exits_1():
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "lab", "kill", "--name", "tnolab", "tnolab-1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "khaos: error: unknown lab host 'tnolab-1' in lab 'tnolab' (hosts: none)"
    ]
