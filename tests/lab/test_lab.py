"""The lab itself: hosts over real SSH, kill, restore, and nothing left behind."""

from __future__ import annotations

import socket
import subprocess

import pytest
from support.labs import fresh_lab

from khaos_controller.errors import KhaosError
from khaos_controller.infra import ansible
from khaos_controller.infra import lab as labmod

pytestmark = pytest.mark.lab


def netns_of(lab_name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"khaos-{lab_name}-")]


def test_up_kill_restore_down(tmp_path):
    lab = fresh_lab("tlab", hosts=3)
    extra = []
    try:
        assert lab.inventory.exists()
        assert ansible.ping(lab.inventory, base_dir=tmp_path) == {"tlab-1": True, "tlab-2": True, "tlab-3": True}
        # every host has its own hostname, PID 1 and private /tmp
        host = lab.host("tlab-2")
        out = subprocess.run(["ip", "netns", "exec", lab.netns(host), "ssh", "-V"], capture_output=True, text=True)
        assert out.returncode == 0
        lab.kill("tlab-2")
        assert [r["state"] for r in lab.status()] == ["up", "down", "up"]
        reach = ansible.ping(lab.inventory, base_dir=tmp_path)
        assert reach == {"tlab-1": True, "tlab-2": False, "tlab-3": True}
        lab.restore("tlab-2")
        assert ansible.ping(lab.inventory, base_dir=tmp_path) == {"tlab-1": True, "tlab-2": True, "tlab-3": True}
        # a second address on a host's link: the next free one of .100-.199, reachable like the first
        subnet = lab.gateway.rsplit(".", 1)[0]
        extra += [lab.add_address(lab.host("tlab-3")), lab.add_address(lab.host("tlab-2"))]
        assert extra == [f"{subnet}.100", f"{subnet}.101"]
        for address in extra:
            with socket.create_connection((address, 22), timeout=5) as conn:
                assert conn.recv(4) == b"SSH-"
    finally:
        lab.down(quiet=True)
    assert netns_of("tlab") == []
    assert not lab.dir.exists() and not lab.inventory.exists()
    machine = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    machine += subprocess.run(["ip", "neigh"], capture_output=True, text=True).stdout
    assert not [a for a in extra if f"{a} " in machine or f"{a}/" in machine]


def test_half_failed_up_leaves_nothing(monkeypatch):
    calls = []

    def fail_second(self, h, timeout):
        calls.append(h.name)
        if len(calls) == 2:
            raise KhaosError("injected failure")

    monkeypatch.setattr(labmod.Lab, "_wait_ssh", fail_second)
    lab = labmod.Lab("thalf")
    lab.down(quiet=True)
    with pytest.raises(KhaosError, match="injected"):
        lab.up(hosts=3)
    assert netns_of("thalf") == []
    assert "khb-thalf" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert not labmod.Lab("thalf").dir.exists()


def test_bad_lab_input():
    with pytest.raises(KhaosError, match="invalid"):
        labmod.Lab("Bad_Name")
    lab = labmod.Lab("tnone")
    with pytest.raises(KhaosError, match="unknown lab host"):
        lab.kill("tnone-9")
    with pytest.raises(KhaosError, match="--hosts must be"):
        lab.up(hosts=1)
