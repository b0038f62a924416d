"""Runs last: the lab tests (module fixtures already torn down) left nothing behind."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from khaos_controller import lab as labmod

pytestmark = pytest.mark.lab


def test_no_test_lab_is_left_behind():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [ln for ln in netns.splitlines() if ln.startswith("khaos-t")] == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "khb-t" not in links
    assert [p.name for p in labmod.LAB_ROOT.glob("t*")] == []
    assert [p.name for p in labmod.INVENTORY_DIR.glob("t*.yml")] == []
    # no JVM left on a test lab host (a lab JVM runs in its host's PID and UTS namespaces)
    own_pidns = os.readlink("/proc/self/ns/pid")
    for pid in subprocess.run(["pgrep", "java"], capture_output=True, text=True).stdout.split():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == own_pidns:
                continue
        except FileNotFoundError:
            continue
        host = subprocess.run(["nsenter", "-t", pid, "-u", "hostname"], capture_output=True, text=True).stdout
        assert not host.startswith("t"), f"JVM {pid} survives on lab host {host.strip()}"
    # and no lab bind mount in the machine's own mount table
    assert str(labmod.LAB_ROOT) not in Path("/proc/self/mounts").read_text()
