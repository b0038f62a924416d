"""The local lab: test hosts on this machine, reached by Ansible over real SSH.

Each host has its own network namespace on the lab's bridge, its own sshd and private dirs
(infra/lab_host.py). The lab's `shared/` directory is visible at the same path on every host:
it plays the NFS share that holds checkpoints, savepoints and sink output.

One lab = one Flink cluster: the first host is the JobManager, the others TaskManagers; with
``kafka`` hosts (`khaos lab up --kafka`) the lab also has Kafka brokers, hosts of their own in group
kafka (the inventory's kafka_bootstrap names them); with ``store`` (`khaos lab up --store`) a host in group
checkpoint_store runs the remote checkpoint store and Flink checkpoints to it (docs/checkpoint-store.md).
Several labs (distinct names) run side by side, each on its own bridge and subnet; two of them can be
linked (infra/lab_link.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import yaml

from .. import REPO_ROOT
from ..errors import KhaosError
from ..jsonio import write_atomic, write_json
from . import lab_host, lab_link
from .kafka import DEFAULT_PORT as KAFKA_PORT
from .lab_host import Host, kill_netns, links, netns_pids, require_root, run
from .s3 import DEFAULT_PORT as STORE_PORT

LAB_ROOT = Path(os.environ.get("KHAOS_LAB_ROOT", "/var/lib/khaos/lab"))
INVENTORY_DIR = REPO_ROOT / "inventories" / "local"
SUBNET_PREFIX = "10.213"  # 10.213.<n>.0/24 per lab, never routed off this machine
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


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
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"khaos-lab-{self.name}", "-f", str(self.key_file))
        (self.dir / "ssh" / "authorized_keys").write_text(Path(f"{self.key_file}.pub").read_text())
        self._write_etc_hosts()
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

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
        run("ip", "-n", self.netns(h), "addr", "replace", f"{ip}/24", "dev", "eth0")
        run("ip", "neigh", "flush", "to", ip, check=False)
        return ip

    def _free_extra_address(self) -> str:
        prefix = self.gateway.rsplit(".", 1)[0]
        used = {h.ip for h in self.hosts.values()}
        for h in self.hosts.values():
            out = run("ip", "-n", self.netns(h), "-4", "-o", "addr", "show", "dev", "eth0", check=False).stdout
            used |= set(re.findall(r"inet (\S+)/", out))
        for last in range(100, 200):
            if f"{prefix}.{last}" not in used:
                return f"{prefix}.{last}"
        raise KhaosError(f"lab {self.name}: no free extra address left in {prefix}.100-199")

    def remove_host(self, name: str) -> None:
        """The host and its disk are gone; its address stays unused."""
        require_root()
        lab_host.tear_down(self, self.host(name))
        del self.hosts[name]
        self.save()
        self._write_known_hosts()

    def link(self, other: Lab) -> None:
        """Let this lab's hosts and ``other``'s reach each other through this machine (Flink hosts here, the
        Kafka broker there); nothing is routed off this machine (infra/lab_link.py). Undone by :meth:`down`."""
        lab_link.link(self, other)

    def down(self, quiet: bool = False) -> None:
        """Remove every trace of the lab: processes, namespaces, links, dirs, inventory."""
        require_root()
        lab_link.unlink(self)
        for ns in run("ip", "netns", "list", check=False).stdout.split("\n"):
            ns = ns.split(" ")[0]
            if ns.startswith(f"khaos-{self.name}-"):
                kill_netns(ns)
                run("ip", "netns", "delete", ns, check=False)
        if self.octet is not None:
            for link in links(f"khv{self.octet}-"):
                run("ip", "link", "delete", link, check=False)
        run("ip", "link", "delete", self.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.inventory.unlink(missing_ok=True)
        self.hosts, self.octet = {}, None
        if not quiet:
            print(f"lab {self.name}: down")

    def kill(self, name: str) -> dict:
        """The host dies: every process SIGKILLed, its link down (unreachable). Returns what died."""
        require_root()
        h = self.host(name)
        pids = netns_pids(self.netns(h))
        killed_at = time.time()
        kill_netns(self.netns(h))
        run("ip", "link", "set", self.veth(h), "down", check=False)
        h.alive, h.pid = False, 0
        self.save()
        return {
            "host": name,
            "address": h.ip,
            "killed_at": killed_at,
            "pids": pids,
            "dead": netns_pids(self.netns(h)) == [],
        }

    def restore(self, name: str, ready_timeout: float = 15.0) -> None:
        """A fresh replacement host (new disk, new host key) at the same address."""
        require_root()
        h = self.host(name)
        lab_host.tear_down(self, h)
        self._boot(h)
        self._wait_ssh(h, ready_timeout)
        self._write_known_hosts()

    def status(self) -> list[dict]:
        """Every host with its address, role and state."""
        rows = []
        for h in self.hosts.values():
            running = h.alive and netns_pids(self.netns(h)) != []
            rows.append(
                {
                    "host": h.name,
                    "ip": h.ip,
                    "role": h.role or ("jobmanager" if h.index == 1 else "taskmanager"),
                    "state": "up" if running else "down",
                    "pids": len(netns_pids(self.netns(h))),
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
        used |= {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", run("ip", "-4", "addr").stdout)}
        for octet in range(0, 250):
            if octet not in used:
                return octet
        raise KhaosError("no free lab subnet left in 10.213.0.0/16")

    def _boot(self, h: Host) -> None:
        lab_host.boot(self, h)
        self.save()

    def _wait_ssh(self, h: Host, timeout: float) -> None:
        lab_host.wait_ssh(h, timeout, self.host_dir(h) / "host.log")

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
