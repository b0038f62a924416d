"""Lab helpers for integration tests: test labs are named t<something> (the session check looks for those)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from khaos_controller.infra import lab as labmod

TEST_LAB_PREFIX = "t"
# Test labs have fixed names: two lab test sessions on one machine would take each other's labs.
SESSION_LOCK = Path("/run/lock/khaos-lab-tests.lock")


@contextmanager
def lab_session():
    """Hold the machine's lab test lock (waiting for another session to end), then remove the test labs
    an interrupted session left: while the lock is held, no other session owns a test lab. Yields a
    function that lists what the session left behind (not what could not be removed at its start)."""
    SESSION_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with SESSION_LOCK.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the lab test session holding {SESSION_LOCK} ...", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        for name in stale_test_labs():
            labmod.Lab(name).down(quiet=True)
        before = set(leftovers())
        yield lambda: [x for x in leftovers() if x not in before]


def stale_test_labs() -> list[str]:
    """Names of the test labs on this machine (by their dirs and their hosts' namespaces)."""
    names = {p.name for p in labmod.LAB_ROOT.glob(f"{TEST_LAB_PREFIX}*") if p.is_dir()}
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (ln.split()[0] for ln in netns.splitlines() if ln.startswith(f"khaos-{TEST_LAB_PREFIX}")):
        names.add(ns.removeprefix("khaos-").rsplit("-", 1)[0])
    return sorted(names)


def fresh_lab(name: str, hosts: int = 3, kafka: int = 0, store: bool = False) -> labmod.Lab:
    """A new lab called ``name`` with ``kafka`` Kafka hosts (and with ``store`` the checkpoint store's host)
    besides (a leftover of an interrupted run is removed first)."""
    assert name.startswith(TEST_LAB_PREFIX), name
    labmod.Lab(name).down(quiet=True)
    lab = labmod.Lab(name)
    lab.up(hosts=hosts, kafka=kafka, store=store)
    return lab


def on_host(
    lab: labmod.Lab, host: str, command: str, check: bool = True, stdin: str | None = None, timeout: float = 120
):
    """Run a shell command as root on a lab host over real SSH (the lab's key and pinned host key), inside
    the host's own namespaces (its private /opt, /srv, /tmp and its processes); ``stdin`` feeds it."""
    ssh = lab.dir / "ssh"
    proc = subprocess.run(
        [
            "ssh",
            "-i",
            str(lab.key_file),
            "-o",
            f"UserKnownHostsFile={ssh / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"root@{lab.host(host).ip}",
            command,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert not check or proc.returncode == 0, f"{host}: {command[:200]}: {proc.stderr.strip()[-2000:]}"
    return proc


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
