"""Lab helpers for integration tests: test labs are named t<something> (the session check looks for those)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from khaos_controller.infra import lab as labmod

TEST_LAB_PREFIX = "t"


def fresh_lab(name: str, hosts: int = 3, kafka: int = 0) -> labmod.Lab:
    """A new lab called ``name`` with ``kafka`` Kafka hosts besides (a leftover of an interrupted run is removed first)."""
    assert name.startswith(TEST_LAB_PREFIX), name
    labmod.Lab(name).down(quiet=True)
    lab = labmod.Lab(name)
    lab.up(hosts=hosts, kafka=kafka)
    return lab


def leftovers() -> list[str]:
    """What test labs left on this machine: namespaces, links, dirs, inventories, JVMs, mounts."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {ln.split()[0]}" for ln in netns.splitlines() if ln.startswith(f"khaos-{TEST_LAB_PREFIX}")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines() if f"khb-{TEST_LAB_PREFIX}" in ln]
    found += [f"lab dir {p}" for p in labmod.LAB_ROOT.glob(f"{TEST_LAB_PREFIX}*")]
    found += [f"inventory {p}" for p in labmod.INVENTORY_DIR.glob(f"{TEST_LAB_PREFIX}*.yml")]
    own_pidns = os.readlink("/proc/self/ns/pid")
    for pid in subprocess.run(["pgrep", "java"], capture_output=True, text=True).stdout.split():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == own_pidns:
                continue
        except FileNotFoundError:
            continue
        host = subprocess.run(["nsenter", "-t", pid, "-u", "hostname"], capture_output=True, text=True).stdout
        if host.startswith(TEST_LAB_PREFIX):
            found.append(f"JVM {pid} on lab host {host.strip()}")
    if str(labmod.LAB_ROOT) in Path("/proc/self/mounts").read_text():
        found.append("a lab bind mount in the machine's mount table")
    return found
