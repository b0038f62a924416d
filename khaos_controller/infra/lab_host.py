"""One lab host's plumbing, and the `ip` commands the lab runs (infra/lab.py).

A host is a network namespace on the lab's bridge (a private /24 that exists only on this
machine) plus its own PID, mount and UTS namespaces with tini as PID 1 and its own sshd
(own host key, key auth only). /tmp, /opt, /srv and /var/tmp are private to the host;
/etc/hosts lists every lab host.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import KhaosError

if TYPE_CHECKING:
    from .lab import Lab

_PRIVATE_DIRS = ("tmp", "opt", "srv", "var/tmp")


@dataclass
class Host:
    """One lab host."""

    name: str
    index: int
    ip: str
    mac: str
    alive: bool = False
    pid: int = 0  # the `unshare` process (parent of the host's PID 1)
    role: str = ""  # "kafka": a Kafka broker; "store": the checkpoint store; "": a Flink host (the first: JobManager)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; KhaosError with its output if it fails (unless not ``check``)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise KhaosError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def require_root() -> None:
    """KhaosError unless we are root and have the lab's tools."""
    if os.geteuid() != 0:
        raise KhaosError("the lab needs root (network namespaces, bridges): run as root, e.g. with sudo")
    missing = [t for t in ("ip", "unshare", "tini", "ssh-keygen") if not shutil.which(t)]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("sshd")
    if missing:
        raise KhaosError(
            f"the lab needs {', '.join(missing)}: run `make deps` (Debian packages openssh-server, tini, iproute2)"
        )


# ---- boot ---------------------------------------------------------------------------------
def boot(lab: Lab, h: Host) -> None:
    """Start the host: its private dirs, host key and sshd files, its namespace on the lab's bridge, then
    its PID 1 (tini + sshd). Marks it alive; the caller saves the lab's state."""
    _write_files(lab, h)
    _plug(lab, h)
    h.alive, h.pid = True, _start(lab, h)


def _write_files(lab: Lab, h: Host) -> None:
    hd = lab.host_dir(h)
    for sub in _PRIVATE_DIRS:
        (hd / "root" / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(hd / "root" / "tmp", 0o1777)
    os.chmod(hd / "root" / "var/tmp", 0o1777)
    key = hd / "ssh_host_ed25519_key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.name, "-f", str(key))
    (hd / "sshd_config").write_text(_SSHD_CONFIG.format(key=key, auth=lab.dir / "ssh" / "authorized_keys"))
    binds = "".join(f"mount --bind {hd / 'root' / sub} /{sub}\n" for sub in _PRIVATE_DIRS)
    (hd / "boot.sh").write_text(
        _BOOT.format(binds=binds, hosts=lab.dir / "etc_hosts", name=h.name, config=hd / "sshd_config")
    )


def _plug(lab: Lab, h: Host) -> None:
    """The host's namespace with eth0 (its address and MAC), its veth peer on the lab's bridge."""
    ns, veth, peer = lab.netns(h), lab.veth(h), f"khp{lab.octet}-{h.index}"
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    run("ip", "link", "set", peer, "netns", ns)
    run("ip", "-n", ns, "link", "set", peer, "name", "eth0")
    run("ip", "-n", ns, "link", "set", "eth0", "address", h.mac)
    run("ip", "-n", ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
    run("ip", "-n", ns, "link", "set", "eth0", "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ns, "route", "add", "default", "via", lab.gateway)
    run("ip", "link", "set", veth, "master", lab.bridge, "up")
    run("ip", "neigh", "flush", "to", h.ip, check=False)  # a stale entry of a dead host stalls the new one


def _start(lab: Lab, h: Host) -> int:
    """The host's PID 1 in new PID, mount and UTS namespaces; returns the pid of its `unshare` parent."""
    hd = lab.host_dir(h)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    log = open(hd / "host.log", "ab")  # noqa: SIM115 - handed to the host process, closed below
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.netns(h),
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--uts",
            "--kill-child=SIGKILL",
            "--",
            "/bin/sh",
            str(hd / "boot.sh"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    return proc.pid


def wait_ssh(h: Host, timeout: float, log_file: Path) -> None:
    """Until the host's sshd greets; KhaosError after ``timeout`` s with the last line of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((h.ip, 22), timeout=1) as s:
                s.settimeout(1)
                if s.recv(16).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.02)
    log = log_file.read_text(errors="replace").strip().splitlines()
    raise KhaosError(
        f"lab host {h.name} ({h.ip}): sshd not ready after {timeout:.0f}s" + (f": {log[-1]}" if log else "")
    )


# ---- teardown -----------------------------------------------------------------------------
def tear_down(lab: Lab, h: Host) -> None:
    """The host's processes, namespace, veth and disk are gone."""
    ns = lab.netns(h)
    kill_netns(ns)
    run("ip", "netns", "delete", ns, check=False)
    run("ip", "link", "delete", lab.veth(h), check=False)
    shutil.rmtree(lab.host_dir(h), ignore_errors=True)


def netns_pids(ns: str) -> list[int]:
    """The processes in a network namespace (none if it is gone)."""
    proc = run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def kill_netns(ns: str) -> None:
    """SIGKILL every process in the namespace and wait (bounded) until they are gone."""
    for _ in range(50):
        pids = netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:  # reap our own children (the `unshare` parents)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    raise KhaosError(f"processes in {ns} survived SIGKILL: {netns_pids(ns)}")


def links(prefix: str) -> list[str]:
    """Names of this machine's network links that start with ``prefix``."""
    out = run("ip", "-o", "link", "show", check=False).stdout
    names = re.findall(r"^\d+: ([^:@]+)", out, re.M)
    return [n for n in names if n.startswith(prefix)]


_SSHD_CONFIG = """\
ListenAddress 0.0.0.0
HostKey {key}
AuthorizedKeysFile {auth}
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
StrictModes no
PrintMotd no
MaxStartups 100:30:200
MaxSessions=100
Subsystem sftp /usr/lib/openssh/sftp-server
"""

_BOOT = """\
# PID 1 of a lab host: private dirs, own /etc/hosts and hostname, then tini + sshd.
set -e
{binds}mount --bind {hosts} /etc/hosts
# a fresh host's root has no shell start-up files: the machine's own (pyenv, locks in /root) stay out
for f in /root/.bashrc /root/.profile /root/.bash_profile; do
  if [ -e "$f" ]; then mount --bind /dev/null "$f"; fi
done
hostname {name}
exec tini -- /usr/sbin/sshd -D -e -f {config}
"""
