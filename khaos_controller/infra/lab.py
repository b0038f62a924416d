"""The local lab: test hosts on this machine, reached by Ansible over real SSH.

A host is a network namespace on the lab's bridge (a private /24 that exists only on this
machine) plus its own PID, mount and UTS namespaces with tini as PID 1 and its own sshd
(own host key, key auth only). /tmp, /opt, /srv and /var/tmp are private to the host;
/etc/hosts lists every lab host. The lab's `shared/` directory is visible at the same path
on every host: it plays the NFS share that holds checkpoints, savepoints and sink output.

One lab = one Flink cluster: the first host is the JobManager, the others TaskManagers; with
``kafka`` hosts (`khaos lab up --kafka`) the lab also has Kafka brokers, hosts of their own in group
kafka (the inventory's kafka_bootstrap names them); with ``store`` (`khaos lab up --store`) a host in group
checkpoint_store runs the remote checkpoint store and Flink checkpoints to it (docs/checkpoint-store.md).
Several labs (distinct names) run side by side, each on its own bridge and subnet.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .. import REPO_ROOT
from ..errors import KhaosError
from ..jsonio import write_atomic, write_json
from .kafka import DEFAULT_PORT as KAFKA_PORT
from .s3 import DEFAULT_PORT as STORE_PORT

LAB_ROOT = Path(os.environ.get("KHAOS_LAB_ROOT", "/var/lib/khaos/lab"))
INVENTORY_DIR = REPO_ROOT / "inventories" / "local"
SUBNET_PREFIX = "10.213"  # 10.213.<n>.0/24 per lab, never routed off this machine
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_PRIVATE_DIRS = ("tmp", "opt", "srv", "var/tmp")
_RULE_ALLOW, _RULE_BLOCK = 20000, 20001  # policy rule priorities of Lab.link (before main, 32766)


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


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
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


class Lab:
    """A named lab; its state lives in LAB_ROOT/<name>/state.json."""

    def __init__(self, name: str = "khaos"):
        if not _NAME_RE.match(name):
            raise KhaosError(f"lab name {name!r} is invalid: 1-8 lowercase letters/digits, starting with a letter")
        self.name = name
        self.dir = LAB_ROOT / name
        self.state_file = self.dir / "state.json"
        self.inventory = INVENTORY_DIR / f"{name}.yml"
        self.octet: int | None = None
        self.hosts: dict[str, Host] = {}
        if self.state_file.exists():
            state = json.loads(self.state_file.read_text())
            self.octet = state["octet"]
            self.hosts = {h["name"]: Host(**h) for h in state["hosts"]}

    # ---- naming -----------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        """The lab's bridge."""
        return f"khb-{self.name}"

    @property
    def gateway(self) -> str:
        """The bridge's address (the hosts' gateway)."""
        return f"{SUBNET_PREFIX}.{self.octet}.1"

    @property
    def shared_dir(self) -> Path:
        """The directory every host sees at the same path (the lab's NFS share)."""
        return self.dir / "shared"

    @property
    def key_file(self) -> Path:
        """The lab's SSH key."""
        return self.dir / "ssh" / "id_ed25519"

    @property
    def subnet(self) -> str:
        """The lab's /24."""
        return f"{SUBNET_PREFIX}.{self.octet}.0/24"

    def netns(self, host: Host) -> str:
        """The host's network namespace."""
        return f"khaos-{self.name}-{host.index}"

    def veth(self, host: Host) -> str:
        """The host's end of its veth pair, on the bridge."""
        return f"khv{self.octet}-{host.index}"

    def host_dir(self, host: Host) -> Path:
        """The host's private directories."""
        return self.dir / "hosts" / host.name

    def host(self, name: str) -> Host:
        """A host by name (KhaosError if unknown)."""
        if name not in self.hosts:
            known = ", ".join(self.hosts) or "none"
            raise KhaosError(f"unknown lab host {name!r} in lab {self.name!r} (hosts: {known})")
        return self.hosts[name]

    def save(self) -> None:
        """Write the lab's state file (atomically)."""
        state = {"name": self.name, "octet": self.octet, "hosts": [asdict(h) for h in self.hosts.values()]}
        write_json(self.state_file, state, durable=False)

    # ---- lifecycle --------------------------------------------------------------------
    def up(self, hosts: int = 3, ready_timeout: float = 15.0, kafka: int = 0, store: bool = False) -> None:
        """Create the bridge and `hosts` Flink hosts plus `kafka` Kafka hosts (NAME-kafka1, ...) and, with
        ``store``, the checkpoint store's host (NAME-store); write the inventory; a half-failed up is undone."""
        if hosts < 2 or hosts > 40:  # before root: a bad argument is said first
            raise KhaosError(f"--hosts must be between 2 and 40 (1 JobManager + TaskManagers), got {hosts}")
        if kafka < 0 or kafka > 5:
            raise KhaosError(f"--kafka must be between 0 and 5 (Kafka broker hosts), got {kafka}")
        require_root()
        if self.state_file.exists():
            raise KhaosError(f"lab {self.name!r} is already up (`khaos lab down --name {self.name}` first)")
        try:
            self._network_up(
                [f"{self.name}-{i}" for i in range(1, hosts + 1)],
                kafka=[f"{self.name}-kafka{i}" for i in range(1, kafka + 1)],
                store=[f"{self.name}-store"] if store else [],
            )
            for h in self.hosts.values():
                self._boot(h)
            for h in self.hosts.values():
                self._wait_ssh(h, ready_timeout)
            self._write_known_hosts()
            self.write_inventory()
        except BaseException:
            self.down(quiet=True)
            raise

    def _network_up(self, names: list[str], kafka: list[str] = (), store: list[str] = ()) -> None:
        """State, key pair, shared dirs and the bridge; hosts `names`, `kafka` and `store` are planned, not booted."""
        with _subnet_lock():  # two khaos processes creating labs at once must not pick the same subnet
            self.octet = self._free_octet()
            self.hosts = {}
            for name in names:
                self._plan_host(name)
            for name, role in [*((n, "kafka") for n in kafka), *((n, "store") for n in store)]:
                self._plan_host(name).role = role
            self.save()
        for sub in ("ssh", "hosts", "shared/checkpoints", "shared/savepoints", "shared/jobs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"khaos-lab-{self.name}", "-f", str(self.key_file))
        (self.dir / "ssh" / "authorized_keys").write_text(Path(f"{self.key_file}.pub").read_text())
        self._write_etc_hosts()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def _plan_host(self, name: str) -> Host:
        i = max((h.index for h in self.hosts.values()), default=0) + 1
        h = Host(
            name=name, index=i, ip=f"{SUBNET_PREFIX}.{self.octet}.{10 + i}", mac=f"02:6b:68:{self.octet:02x}:00:{i:02x}"
        )
        self.hosts[name] = h
        return h

    def _write_etc_hosts(self) -> None:
        # rewritten in place: running hosts see it through their bind mount
        (self.dir / "etc_hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"{h.ip} {h.name}\n" for h in self.hosts.values())
        )

    # ---- one host at a time (the OpenStack simulator boots servers as lab hosts) ------
    def create(self) -> None:
        """The lab's network, key pair and shared dirs without any host; undone if it fails."""
        require_root()
        if self.state_file.exists():
            raise KhaosError(f"lab {self.name!r} is already up (`khaos lab down --name {self.name}` first)")
        try:
            self._network_up([])
        except BaseException:
            self.down(quiet=True)
            raise

    def add_host(self, name: str, ready_timeout: float = 15.0) -> Host:
        """Boot one more host at the next free address."""
        require_root()
        if name in self.hosts:
            raise KhaosError(f"lab host {name!r} exists already in lab {self.name!r}")
        h = self._plan_host(name)
        self._write_etc_hosts()
        self._boot(h)
        self._wait_ssh(h, ready_timeout)
        self._write_known_hosts()
        return h

    def add_address(self, h: Host, ip: str = "") -> str:
        """One more address on the host's eth0, returned: ``ip`` (the simulator's floating IPs) or the first
        free one of .100-.199 of the lab's subnet. It lives in the host's network namespace, so it goes with
        the host (remove_host, restore, down)."""
        require_root()
        ip = ip or self._free_extra_address()
        _run("ip", "-n", self.netns(h), "addr", "replace", f"{ip}/24", "dev", "eth0")
        _run("ip", "neigh", "flush", "to", ip, check=False)
        return ip

    def _free_extra_address(self) -> str:
        prefix = self.gateway.rsplit(".", 1)[0]
        used = {h.ip for h in self.hosts.values()}
        for h in self.hosts.values():
            out = _run("ip", "-n", self.netns(h), "-4", "-o", "addr", "show", "dev", "eth0", check=False).stdout
            used |= set(re.findall(r"inet (\S+)/", out))
        for last in range(100, 200):
            if f"{prefix}.{last}" not in used:
                return f"{prefix}.{last}"
        raise KhaosError(f"lab {self.name}: no free extra address left in {prefix}.100-199")

    def remove_host(self, name: str) -> None:
        """The host and its disk are gone; its address stays unused."""
        require_root()
        h = self.host(name)
        _kill_netns(self.netns(h))
        _run("ip", "netns", "delete", self.netns(h), check=False)
        _run("ip", "link", "delete", self.veth(h), check=False)
        shutil.rmtree(self.host_dir(h), ignore_errors=True)
        del self.hosts[name]
        self.save()
        self._write_known_hosts()

    def link(self, other: Lab) -> None:
        """Let this lab's hosts and ``other``'s reach each other through this machine (Flink hosts here, the
        Kafka broker there): both bridges forward, but only to the other lab's subnet (policy rules; anything
        else arriving on them is refused, so nothing is routed off this machine). Undone by :meth:`down`."""
        require_root()
        if self.octet is None or other.octet is None or other.name == self.name:
            raise KhaosError(f"lab link {self.name} - {other.name}: both labs must be up and distinct")
        rules = _run("ip", "-4", "rule", "list").stdout
        for a, b in ((self, other), (other, self)):
            if f"to {b.subnet} iif {a.bridge} " not in rules:
                _run(
                    "ip",
                    "-4",
                    "rule",
                    "add",
                    "iif",
                    a.bridge,
                    "to",
                    b.subnet,
                    "lookup",
                    "main",
                    "pref",
                    str(_RULE_ALLOW),
                )
            if f"iif {a.bridge} prohibit" not in rules:
                _run("ip", "-4", "rule", "add", "iif", a.bridge, "prohibit", "pref", str(_RULE_BLOCK))
            Path(f"/proc/sys/net/ipv4/conf/{a.bridge}/forwarding").write_text("1\n")

    def _unlink(self) -> None:
        """Drop the policy rules of :meth:`link` that name this lab's bridge or subnet."""
        if self.octet is None:
            return
        for line in _run("ip", "-4", "rule", "list", check=False).stdout.splitlines():
            pref, _, spec = line.partition(":")
            spec = spec.replace("[detached]", " ").split()
            text = " ".join(spec)
            if pref.strip() in (str(_RULE_ALLOW), str(_RULE_BLOCK)) and (
                f"iif {self.bridge}" in text or f"to {self.subnet}" in text
            ):
                _run("ip", "-4", "rule", "del", "pref", pref.strip(), *spec, check=False)

    def down(self, quiet: bool = False) -> None:
        """Remove every trace of the lab: processes, namespaces, links, dirs, inventory."""
        require_root()
        self._unlink()
        for ns in _run("ip", "netns", "list", check=False).stdout.split("\n"):
            ns = ns.split(" ")[0]
            if ns.startswith(f"khaos-{self.name}-"):
                _kill_netns(ns)
                _run("ip", "netns", "delete", ns, check=False)
        if self.octet is not None:
            for link in _links(f"khv{self.octet}-"):
                _run("ip", "link", "delete", link, check=False)
        _run("ip", "link", "delete", self.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.inventory.unlink(missing_ok=True)
        self.hosts, self.octet = {}, None
        if not quiet:
            print(f"lab {self.name}: down")

    def kill(self, name: str) -> dict:
        """The host dies: every process SIGKILLed, its link down (unreachable). Returns what died."""
        require_root()
        h = self.host(name)
        pids = _netns_pids(self.netns(h))
        killed_at = time.time()
        _kill_netns(self.netns(h))
        _run("ip", "link", "set", self.veth(h), "down", check=False)
        h.alive, h.pid = False, 0
        self.save()
        return {
            "host": name,
            "address": h.ip,
            "killed_at": killed_at,
            "pids": pids,
            "dead": _netns_pids(self.netns(h)) == [],
        }

    def restore(self, name: str, ready_timeout: float = 15.0) -> None:
        """A fresh replacement host (new disk, new host key) at the same address."""
        require_root()
        h = self.host(name)
        ns = self.netns(h)
        _kill_netns(ns)
        _run("ip", "netns", "delete", ns, check=False)
        _run("ip", "link", "delete", self.veth(h), check=False)
        shutil.rmtree(self.host_dir(h), ignore_errors=True)
        self._boot(h)
        self._wait_ssh(h, ready_timeout)
        self._write_known_hosts()

    def status(self) -> list[dict]:
        """Every host with its address, role and state."""
        rows = []
        for h in self.hosts.values():
            running = h.alive and _netns_pids(self.netns(h)) != []
            rows.append(
                {
                    "host": h.name,
                    "ip": h.ip,
                    "role": h.role or ("jobmanager" if h.index == 1 else "taskmanager"),
                    "state": "up" if running else "down",
                    "pids": len(_netns_pids(self.netns(h))),
                }
            )
        return rows

    # ---- internals --------------------------------------------------------------------
    def _free_octet(self) -> int:
        used = set()
        for state in LAB_ROOT.glob("*/state.json"):
            try:
                used.add(json.loads(state.read_text())["octet"])
            except (ValueError, KeyError):
                continue
        used |= {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", _run("ip", "-4", "addr").stdout)}
        for octet in range(0, 250):
            if octet not in used:
                return octet
        raise KhaosError("no free lab subnet left in 10.213.0.0/16")

    def _boot(self, h: Host) -> None:
        ns, veth, peer = self.netns(h), self.veth(h), f"khp{self.octet}-{h.index}"
        hd = self.host_dir(h)
        for sub in _PRIVATE_DIRS:
            (hd / "root" / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(hd / "root" / "tmp", 0o1777)
        os.chmod(hd / "root" / "var/tmp", 0o1777)
        key = hd / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.name, "-f", str(key))
        (hd / "sshd_config").write_text(_SSHD_CONFIG.format(key=key, auth=self.dir / "ssh" / "authorized_keys"))
        binds = "".join(f"mount --bind {hd / 'root' / sub} /{sub}\n" for sub in _PRIVATE_DIRS)
        (hd / "boot.sh").write_text(
            _BOOT.format(binds=binds, hosts=self.dir / "etc_hosts", name=h.name, config=hd / "sshd_config")
        )
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", ns)
        _run("ip", "-n", ns, "link", "set", peer, "name", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "address", h.mac)
        _run("ip", "-n", ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "route", "add", "default", "via", self.gateway)
        _run("ip", "link", "set", veth, "master", self.bridge, "up")
        _run("ip", "neigh", "flush", "to", h.ip, check=False)  # a stale entry of a dead host stalls the new one
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = open(hd / "host.log", "ab")  # noqa: SIM115 - handed to the host process, closed below
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
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
        h.alive, h.pid = True, proc.pid
        self.save()

    def _wait_ssh(self, h: Host, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((h.ip, 22), timeout=1) as s:
                    s.settimeout(1)
                    if s.recv(16).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        log = (self.host_dir(h) / "host.log").read_text(errors="replace").strip().splitlines()
        raise KhaosError(
            f"lab host {h.name} ({h.ip}): sshd not ready after {timeout:.0f}s" + (f": {log[-1]}" if log else "")
        )

    def _write_known_hosts(self) -> None:
        lines = []
        for h in self.hosts.values():
            pub = self.host_dir(h) / "ssh_host_ed25519_key.pub"
            if pub.exists():
                kind, key = pub.read_text().split()[:2]
                lines.append(f"{h.ip},{h.name} {kind} {key}\n")
        (self.dir / "ssh" / "known_hosts").write_text("".join(lines))

    @property
    def store_endpoint(self) -> str:
        """The checkpoint store's S3 endpoint (http://host:port; '' without a store host)."""
        return next((f"http://{h.ip}:{STORE_PORT}" for h in self.hosts.values() if h.role == "store"), "")

    def store_keys(self) -> dict[str, str]:
        """The store's key pair, made once per lab and kept in the lab's dir (0600; removed with the lab)."""
        path = self.dir / "store-keys.json"
        if not path.exists():
            write_json(path, {"access_key": f"khaos-{self.name}", "secret_key": secrets.token_urlsafe(24)}, mode=0o600)
        return json.loads(path.read_text())

    @property
    def kafka_bootstrap(self) -> str:
        """The Kafka brokers' bootstrap address (host:port, comma separated; '' without Kafka hosts)."""
        return ",".join(f"{h.ip}:{KAFKA_PORT}" for h in self.hosts.values() if h.role == "kafka")

    def write_inventory(self) -> Path:
        """Write inventories/local/<name>.yml for the lab's hosts (infra/lab_inventory.py renders it)."""
        from .lab_inventory import render

        INVENTORY_DIR.mkdir(parents=True, exist_ok=True)
        text = f"# Generated by `khaos lab up --name {self.name}`; removed by `khaos lab down`.\n"
        write_atomic(self.inventory, text + yaml.safe_dump(render(self), sort_keys=False), durable=False, mode=0o600)
        return self.inventory


@contextmanager
def _subnet_lock():
    """Held while a lab picks its subnet and writes its state file (which marks the subnet taken)."""
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    with (LAB_ROOT / ".subnets.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def all_labs() -> list[str]:
    """Names of the labs that are up."""
    return sorted(p.parent.name for p in LAB_ROOT.glob("*/state.json"))


def _netns_pids(ns: str) -> list[int]:
    proc = _run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _kill_netns(ns: str) -> None:
    """SIGKILL every process in the namespace and wait (bounded) until they are gone."""
    for _ in range(50):
        pids = _netns_pids(ns)
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
    raise KhaosError(f"processes in {ns} survived SIGKILL: {_netns_pids(ns)}")


def _links(prefix: str) -> list[str]:
    out = _run("ip", "-o", "link", "show", check=False).stdout
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
