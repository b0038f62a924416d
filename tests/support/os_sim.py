"""A small local OpenStack API for tests: Keystone v3, Nova, Glance (images), Neutron.

Only what the openstack role uses, with the JSON shapes openstacksdk expects (version
discovery documents, microversions, error bodies). Booting a server boots a REAL lab host
(khaos_controller.infra.lab: netns + sshd) at the server's port address; stop kills it, start and
a hard reboot boot a fresh one at the same address, delete removes it. Security group rules
are stored, not enforced. Every request is logged (method, path, server action, microversion, user agent).
A server's console log (os-getConsoleOutput) holds one cloud-init boot per boot, each with the SSH
host key block of the lab host of that boot (a fresh host = a new key); `Cloud.console_faults` makes a
console hold its keys back ("hold") or print a key sshd does not have ("forge"), for tests.

    python tests/support/os_sim.py --lab sim --port 5000   # writes ./clouds.yaml; Ctrl-C / SIGTERM removes everything
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from khaos_controller.infra.lab import Lab

USER, PASSWORD, PROJECT = "khaos", "s3cret", "khaos"
COMPUTE_VERSION = "2.96"


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _id() -> str:
    return str(uuid.uuid4())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cloud:
    """The simulated cloud's state; one lab holds its servers."""

    def __init__(self, lab_name: str, quota_instances: int = 10):
        Lab(lab_name).down(quiet=True)  # leftovers of an interrupted run
        self.lab = Lab(lab_name)
        self.lab.create()
        self.lock = threading.RLock()
        self.log: list[dict] = []
        self.quota_instances = quota_instances
        self.project_id = uuid.uuid4().hex
        self.flavors = {
            f["id"]: f
            for f in (
                {"id": "1", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20},
                {"id": "2", "name": "m1.medium", "vcpus": 2, "ram": 4096, "disk": 40},
            )
        }
        img = _id()
        self.images = {
            img: {
                "id": img,
                "name": "debian-12",
                "status": "active",
                "visibility": "public",
                "disk_format": "qcow2",
                "container_format": "bare",
                "min_disk": 0,
                "min_ram": 0,
                "tags": [],
                "created_at": _now(),
                "updated_at": _now(),
            }
        }
        net, sub = _id(), _id()
        cidr = f"{self.lab.gateway.rsplit('.', 1)[0]}.0/24"
        self.networks = {
            net: {
                "id": net,
                "name": "private",
                "status": "ACTIVE",
                "subnets": [sub],
                "admin_state_up": True,
                "shared": False,
                "project_id": self.project_id,
            }
        }
        self.subnets = {
            sub: {
                "id": sub,
                "name": "private-subnet",
                "network_id": net,
                "cidr": cidr,
                "ip_version": 4,
                "gateway_ip": self.lab.gateway,
                "project_id": self.project_id,
            }
        }
        ext, ext_sub = _id(), _id()  # floating IPs: .200-.249 of the lab subnet, added to the server's eth0
        self.networks[ext] = {
            "id": ext,
            "name": "public",
            "status": "ACTIVE",
            "subnets": [ext_sub],
            "admin_state_up": True,
            "shared": True,
            "router:external": True,
            "project_id": self.project_id,
        }
        self.subnets[ext_sub] = {
            "id": ext_sub,
            "name": "public-subnet",
            "network_id": ext,
            "cidr": cidr,
            "ip_version": 4,
            "gateway_ip": self.lab.gateway,
            "project_id": self.project_id,
        }
        self.floatingips: dict[str, dict] = {}
        # server name -> "hold" (cloud-init has not printed the host keys yet) or "forge" (the console
        # prints a key the server's sshd does not have); read at request time
        self.console_faults: dict[str, str] = {}
        self._forged: dict[str, str] = {}
        self.servers: dict[str, dict] = {}
        self.keypairs: dict[str, dict] = {}
        self.server_groups: dict[str, dict] = {}
        self.ports: dict[str, dict] = {}
        self.security_groups: dict[str, dict] = {}

    def close(self) -> None:
        self.lab.down(quiet=True)

    def leftovers(self) -> dict[str, list[str]]:
        """What a teardown must remove (the default security group is not created by anyone)."""
        return {
            "servers": [s["name"] for s in self.servers.values()],
            "ports": [p["id"] for p in self.ports.values()],
            "keypairs": list(self.keypairs),
            "server_groups": [g["name"] for g in self.server_groups.values()],
            "security_groups": [g["name"] for g in self.security_groups.values() if g["name"] != "default"],
            "floating_ips": [f["floating_ip_address"] for f in self.floatingips.values()],
            "lab_hosts": list(self.lab.hosts),
        }

    # ---- servers ------------------------------------------------------------------------
    def create_server(self, body: dict, hints: dict) -> dict:
        s = body.get("server") or {}
        if not s.get("name"):
            raise ApiError(400, "badRequest", "Invalid input for field/attribute server. Value: name is required")
        if s.get("flavorRef") not in self.flavors:
            raise ApiError(400, "badRequest", f"Flavor {s.get('flavorRef')} could not be found.")
        if s.get("imageRef") not in self.images:
            raise ApiError(400, "badRequest", f"Invalid image identifier or image {s.get('imageRef')} not found.")
        nets = [n.get("uuid") for n in s.get("networks") or []]
        if len(nets) != 1 or nets[0] not in self.networks:
            raise ApiError(400, "badRequest", f"Network {nets} could not be found (one network per server here).")
        if s.get("key_name") and s["key_name"] not in self.keypairs:
            raise ApiError(400, "badRequest", f"Invalid key_name provided: {s['key_name']}.")
        group = hints.get("group")
        if group and group not in self.server_groups:
            raise ApiError(400, "badRequest", f"Invalid server group {group}.")
        if len(self.servers) + 1 > self.quota_instances:
            raise ApiError(
                403,
                "forbidden",
                f"Quota exceeded for instances: Requested 1, but already used "
                f"{len(self.servers)} of {self.quota_instances} instances",
            )
        sid = _id()
        host_name = s["name"] if s["name"] not in self.lab.hosts else f"{s['name']}-{sid[:4]}"
        if s.get("key_name"):
            self._authorize(self.keypairs[s["key_name"]]["public_key"])
        host = self.lab.add_host(host_name)
        port = self._port(nets[0], host.ip, host.mac, device_id=sid)
        server = {
            "id": sid,
            "name": s["name"],
            "status": "ACTIVE",
            "metadata": dict(s.get("metadata") or {}),
            "tags": list(s.get("tags") or []),
            "key_name": s.get("key_name"),
            "flavor": {k: self.flavors[s["flavorRef"]][k] for k in ("vcpus", "ram", "disk")}
            | {"original_name": self.flavors[s["flavorRef"]]["name"], "ephemeral": 0, "swap": 0, "extra_specs": {}},
            "image": {"id": s["imageRef"], "links": []},
            "addresses": {
                self.networks[nets[0]]["name"]: [
                    {"addr": host.ip, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": host.mac}
                ]
            },
            "security_groups": [{"name": g.get("name")} for g in s.get("security_groups") or [{"name": "default"}]],
            "tenant_id": self.project_id,
            "user_id": USER,
            "created": _now(),
            "updated": _now(),
            "hostId": "sim",
            "OS-EXT-STS:vm_state": "active",
            "OS-EXT-STS:power_state": 1,
            "OS-EXT-STS:task_state": None,
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 0,
            "accessIPv4": "",
            "accessIPv6": "",
            "links": [],
            "locked": False,
            "description": None,
            "_lab_host": host_name,
            "_port": port["id"],
            "_group": group,
            "_boots": [],
        }
        self._booted(server)
        self.servers[sid] = server
        if group:
            self.server_groups[group]["members"].append(sid)
        return server

    def _authorize(self, public_key: str) -> None:
        """What cloud-init does with the keypair: the lab's sshd reads one authorized_keys for all hosts."""
        path = self.lab.dir / "ssh" / "authorized_keys"
        if public_key.strip() not in path.read_text():
            with path.open("a") as f:
                f.write(public_key.strip() + "\n")

    def _port(self, net: str, ip: str, mac: str, device_id: str) -> dict:
        pid = _id()
        port = {
            "id": pid,
            "name": "",
            "network_id": net,
            "mac_address": mac,
            "device_id": device_id,
            "device_owner": "compute:nova",
            "status": "ACTIVE",
            "admin_state_up": True,
            "fixed_ips": [{"subnet_id": self.networks[net]["subnets"][0], "ip_address": ip}],
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "security_groups": [],
        }
        self.ports[pid] = port
        return port

    def create_floatingip(self, body: dict) -> dict:
        f = body.get("floatingip", {})
        net = self.networks.get(f.get("floating_network_id"))
        if not net or not net.get("router:external"):
            raise ApiError(404, "ExternalNetworkNotFound", f"External network {f.get('floating_network_id')} not found")
        used = {x["floating_ip_address"] for x in self.floatingips.values()}
        prefix = self.lab.gateway.rsplit(".", 1)[0]
        address = next(f"{prefix}.{i}" for i in range(200, 250) if f"{prefix}.{i}" not in used)
        port = self.ports.get(f.get("port_id"))
        fid = _id()
        self.floatingips[fid] = {
            "id": fid,
            "floating_ip_address": address,
            "floating_network_id": net["id"],
            "port_id": port and port["id"],
            "fixed_ip_address": port and port["fixed_ips"][0]["ip_address"],
            "description": f.get("description", ""),
            "status": "ACTIVE",
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "router_id": None,
        }
        if port:
            self._attach_floating(self.servers[port["device_id"]])
        return self.floatingips[fid]

    def _attach_floating(self, server: dict) -> None:
        """The server's floating IPs: on its eth0 (sshd listens on every address) and in its addresses."""
        fips = [f for f in self.floatingips.values() if f["port_id"] == server["_port"]]
        net = next(iter(server["addresses"]))
        server["addresses"][net] = [a for a in server["addresses"][net] if a["OS-EXT-IPS:type"] == "fixed"]
        host = self.lab.host(server["_lab_host"])
        for f in fips:
            self.lab.add_address(host, f["floating_ip_address"])
            server["addresses"][net].append(
                {
                    "addr": f["floating_ip_address"],
                    "version": 4,
                    "OS-EXT-IPS:type": "floating",
                    "OS-EXT-IPS-MAC:mac_addr": host.mac,
                }
            )

    def server(self, sid: str) -> dict:
        if sid not in self.servers:
            raise ApiError(404, "itemNotFound", f"Instance {sid} could not be found.")
        return self.servers[sid]

    def delete_server(self, sid: str) -> None:
        s = self.server(sid)
        self.lab.remove_host(s["_lab_host"])
        self.ports.pop(s["_port"], None)
        for f in self.floatingips.values():  # Neutron disassociates, the floating IP itself stays
            if f["port_id"] == s["_port"]:
                f.update(port_id=None, fixed_ip_address=None)
        if s["_group"] in self.server_groups:
            self.server_groups[s["_group"]]["members"].remove(sid)
        del self.servers[sid]

    def action(self, sid: str, body: dict) -> dict | None:
        s = self.server(sid)
        if "os-stop" in body:
            if s["status"] != "ACTIVE":
                raise ApiError(
                    409, "conflictingRequest", f"Cannot 'stop' instance {sid} while it is in vm_state stopped"
                )
            self.lab.kill(s["_lab_host"])
            s.update({"status": "SHUTOFF", "OS-EXT-STS:vm_state": "stopped", "OS-EXT-STS:power_state": 4})
        elif "os-start" in body:
            if s["status"] != "SHUTOFF":
                raise ApiError(
                    409, "conflictingRequest", f"Cannot 'start' instance {sid} while it is in vm_state active"
                )
            self.lab.restore(s["_lab_host"])
            self._booted(s)
            self._attach_floating(s)
            s.update({"status": "ACTIVE", "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1})
        elif "reboot" in body and (body["reboot"] or {}).get("type") == "HARD":
            self.lab.kill(s["_lab_host"])
            self.lab.restore(s["_lab_host"])
            self._booted(s)
            self._attach_floating(s)
            s.update({"status": "ACTIVE", "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1})
        elif "os-getConsoleOutput" in body:
            length = (body["os-getConsoleOutput"] or {}).get("length")
            lines = self.console(s).splitlines(keepends=True)
            if length is not None and int(length) >= 0:
                lines = lines[-int(length) :] if int(length) else []
            return {"output": "".join(lines)}
        else:
            raise ApiError(400, "badRequest", f"unsupported action {sorted(body)}")
        s["updated"] = _now()
        return None

    # ---- the console log: what cloud-init prints at each boot --------------------------------
    def _booted(self, server: dict) -> None:
        """A boot of the server's lab host: its console gets that boot's output, with the host's key."""
        pub = self.lab.host_dir(self.lab.host(server["_lab_host"])) / "ssh_host_ed25519_key.pub"
        kind, key = pub.read_text().split()[:2]
        server["_boots"].append({"at": datetime.now(UTC), "key": f"{kind} {key}"})

    def host_key(self, server: dict) -> str:
        """The key (type base64) the server's sshd presents now."""
        return server["_boots"][-1]["key"]

    def console_key(self, server: dict) -> str:
        """The key (type base64) the console log of the server's current boot prints."""
        fault = self.console_faults.get(server["name"])
        return self._forged_key(server["id"]) if fault == "forge" else self.host_key(server)

    def _forged_key(self, sid: str) -> str:
        if sid not in self._forged:
            with tempfile.TemporaryDirectory() as d:
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/k"], check=True)
                self._forged[sid] = " ".join(Path(d, "k.pub").read_text().split()[:2])
        return self._forged[sid]

    def console(self, server: dict) -> str:
        """The console log: every boot, the last one as console_faults says."""
        fault = self.console_faults.get(server["name"])
        out = []
        for i, boot in enumerate(server["_boots"]):
            last = i == len(server["_boots"]) - 1
            key = self._forged_key(server["id"]) if last and fault == "forge" else boot["key"]
            out.append(_boot_log(server["name"], boot["at"], key, keys=not (last and fault == "hold")))
        return "".join(out)


def _boot_log(name: str, at: datetime, key: str, keys: bool = True) -> str:
    """One boot on a serial console, as a Debian cloud image prints it: kernel, cloud-init, and (once
    cloud-init's final stage ran) the host key fingerprints via logger and the keys themselves."""
    kind, b64 = key.split()
    stamp, day = at.strftime("%a, %d %b %Y %H:%M:%S +0000"), at.strftime("%b %d %H:%M:%S")
    fp = base64.b64encode(hashlib.sha256(base64.b64decode(b64)).digest()).decode().rstrip("=")
    lines = [
        "[    0.000000] Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-cloud-amd64 root=LABEL=root ro console=ttyS0",
        "[    2.418823] EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.",
        f"[    4.902211] cloud-init[412]: Cloud-init v. 22.4.2 running 'init-local' at {stamp}. Up 4.85 seconds.",
        f"[    6.150042] cloud-init[455]: Cloud-init v. 22.4.2 running 'init' at {stamp}. Up 6.11 seconds.",
        "[    6.201337] cloud-init[455]: ci-info: ++++++++++++++++++++++Net device info+++++++++++++++++++++++",
        "[    6.733310] cloud-init[455]: Generating public/private ed25519 key pair.",
    ]
    if keys:
        lines += [
            f"<14>{day} ec2: ",
            f"<14>{day} ec2: #############################################################",
            f"<14>{day} ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
            f"<14>{day} ec2: 256 SHA256:{fp} root@{name} ({kind.removeprefix('ssh-').upper()})",
            f"<14>{day} ec2: -----END SSH HOST KEY FINGERPRINTS-----",
            f"<14>{day} ec2: #############################################################",
            "-----BEGIN SSH HOST KEY KEYS-----",
            f"{kind} {b64} root@{name}",
            "-----END SSH HOST KEY KEYS-----",
            f"[    9.870456] cloud-init[601]: Cloud-init v. 22.4.2 finished at {stamp}. "
            "Datasource DataSourceOpenStackLocal [net,ver=2].  Up 9.84 seconds",
        ]
    return "".join(f"{ln}\r\n" for ln in lines)


def _public(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


class Handler(BaseHTTPRequestHandler):
    cloud: Cloud
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # the request log is in cloud.log
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        status, payload, headers = 500, {}, {}
        try:
            with self.cloud.lock:
                status, payload, *rest = self._route(method, path, query, body)
                headers = rest[0] if rest else {}
        except ApiError as e:
            status = e.status
            payload = (
                {"NeutronError": {"type": e.kind, "message": e.message, "detail": ""}}
                if path.startswith("/network")
                else {e.kind: {"code": e.status, "message": e.message}}
            )
        except Exception as e:  # noqa: BLE001 - a simulator bug must show up as a 500 in the log
            status, payload = 500, {"computeFault": {"code": 500, "message": f"simulator: {e!r}"}}
        self.cloud.log.append(
            {
                "t": time.time(),
                "method": method,
                "path": url.path,
                "query": url.query,
                "action": next(iter(body), None) if path.endswith("/action") and isinstance(body, dict) else None,
                "status": status,
                "microversion": self.headers.get("OpenStack-API-Version"),
                "agent": self.headers.get("User-Agent", ""),
            }
        )
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if path.startswith("/compute"):
            self.send_header("OpenStack-API-Version", f"compute {COMPUTE_VERSION}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    # ---- routing ------------------------------------------------------------------------
    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _route(self, method: str, path: str, q: dict, body: dict) -> tuple:
        c, base = self.cloud, self._base()
        m = lambda pattern: re.fullmatch(pattern, path)  # noqa: E731
        # Keystone
        v3 = {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
        }
        if path == "/identity" and method == "GET":
            return 300, {"versions": {"values": [v3]}}
        if path == "/identity/v3" and method == "GET":
            return 200, {"version": v3}
        if path == "/identity/v3/auth/tokens" and method == "POST":
            return self._token(body)
        discovery = method == "GET" and path in ("/compute", "/compute/v2.1", "/image", "/network")
        if not path.startswith("/identity") and not discovery and self.headers.get("X-Auth-Token") not in _TOKENS:
            raise ApiError(401, "unauthorized", "The request you have made requires authentication.")
        # Nova
        compute = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": COMPUTE_VERSION,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}],
        }
        if path == "/compute" and method == "GET":
            return 200, {"versions": [compute]}
        if path == "/compute/v2.1" and method == "GET":
            return 200, {"version": compute}
        if path.startswith("/compute/v2.1/"):
            return self._compute(method, path.removeprefix("/compute/v2.1"), q, body)
        # Glance
        if path == "/image" and method == "GET":
            return 300, {
                "versions": [
                    {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
                ]
            }
        if m(r"/image/v2/images") and method == "GET":
            return 200, {"images": _filter(c.images.values(), q)}
        if (r := m(r"/image/v2/images/([^/]+)")) and method == "GET":
            if r[1] not in c.images:
                raise ApiError(404, "itemNotFound", f"No image found with ID {r[1]}")
            return 200, c.images[r[1]]
        # Neutron
        if path == "/network" and method == "GET":
            return 200, {
                "versions": [
                    {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}/network/v2.0/"}]}
                ]
            }
        if path.startswith("/network/v2.0/"):
            return self._network(method, path.removeprefix("/network/v2.0"), q, body)
        raise ApiError(404, "itemNotFound", f"simulator: no route {method} {path}")

    def _token(self, body: dict) -> tuple:
        auth = body.get("auth", {})
        pw = auth.get("identity", {}).get("password", {}).get("user", {})
        if pw.get("name") != USER or pw.get("password") != PASSWORD:
            raise ApiError(401, "unauthorized", "The request you have made requires authentication.")
        token = uuid.uuid4().hex
        _TOKENS.add(token)
        base, c = self._base(), self.cloud
        domain = {"id": "default", "name": "Default"}
        catalog = [
            {
                "type": kind,
                "name": name,
                "id": uuid.uuid4().hex,
                "endpoints": [
                    {
                        "id": uuid.uuid4().hex,
                        "interface": "public",
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": f"{base}/{url}",
                    }
                ],
            }
            for kind, name, url in (
                ("identity", "keystone", "identity"),
                ("compute", "nova", "compute/v2.1"),
                ("image", "glance", "image"),
                ("network", "neutron", "network"),
            )
        ]
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        return (
            201,
            {
                "token": {
                    "methods": ["password"],
                    "expires_at": expires,
                    "issued_at": _now(),
                    "audit_ids": [uuid.uuid4().hex],
                    "user": {"id": USER, "name": USER, "domain": domain, "password_expires_at": None},
                    "project": {"id": c.project_id, "name": PROJECT, "domain": domain},
                    "roles": [{"id": "member", "name": "member"}],
                    "catalog": catalog,
                }
            },
            {"X-Subject-Token": token},
        )

    def _compute(self, method: str, path: str, q: dict, body: dict) -> tuple:
        c = self.cloud
        m = lambda pattern: re.fullmatch(pattern, path)  # noqa: E731
        if path in ("/flavors", "/flavors/detail") and method == "GET":
            return 200, {
                "flavors": [
                    f
                    | {
                        "links": [],
                        "OS-FLV-EXT-DATA:ephemeral": 0,
                        "swap": 0,
                        "rxtx_factor": 1.0,
                        "os-flavor-access:is_public": True,
                        "description": None,
                        "extra_specs": {},
                    }
                    for f in _filter(c.flavors.values(), q)
                ]
            }
        if (r := m(r"/flavors/([^/]+)")) and method == "GET":
            if r[1] not in c.flavors:
                raise ApiError(404, "itemNotFound", f"Flavor {r[1]} could not be found.")
            return 200, {"flavor": c.flavors[r[1]] | {"links": [], "swap": 0, "OS-FLV-EXT-DATA:ephemeral": 0}}
        if path == "/os-keypairs" and method == "GET":
            return 200, {"keypairs": [{"keypair": k} for k in c.keypairs.values()]}
        if path == "/os-keypairs" and method == "POST":
            kp = body.get("keypair", {})
            if kp.get("name") in c.keypairs:
                raise ApiError(409, "conflictingRequest", f"Key pair '{kp['name']}' already exists.")
            if not kp.get("public_key"):
                raise ApiError(400, "badRequest", "this simulator only imports public keys")
            c.keypairs[kp["name"]] = {
                "name": kp["name"],
                "public_key": kp["public_key"],
                "type": kp.get("type", "ssh"),
                "fingerprint": uuid.uuid4().hex,
                "user_id": USER,
                "created_at": _now(),
                "id": 1,
            }
            return 200, {"keypair": c.keypairs[kp["name"]]}
        if r := m(r"/os-keypairs/([^/]+)"):
            return _show_or_delete(
                method, c.keypairs, r[1], "keypair", 202, f"Keypair {r[1]} not found for user {USER}"
            )
        if path == "/os-server-groups" and method == "GET":
            return 200, {"server_groups": [_public(g) for g in c.server_groups.values()]}
        if path == "/os-server-groups" and method == "POST":
            g = body.get("server_group", {})
            if g.get("policy") not in ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"):
                raise ApiError(400, "badRequest", f"Invalid input for field/attribute policy: {g.get('policy')!r}")
            gid = _id()
            c.server_groups[gid] = {
                "id": gid,
                "name": g.get("name"),
                "policy": g["policy"],
                "rules": {},
                "members": [],
                "project_id": c.project_id,
                "user_id": USER,
            }
            return 200, {"server_group": c.server_groups[gid]}
        if r := m(r"/os-server-groups/([^/]+)"):
            return _show_or_delete(
                method, c.server_groups, r[1], "server_group", 204, f"Server group {r[1]} could not be found."
            )
        if path in ("/servers", "/servers/detail") and method == "GET":
            name = q.pop("name", None)
            servers = [s for s in c.servers.values() if not name or re.search(name, s["name"])]
            return 200, {"servers": [_public(s) for s in servers]}
        if path == "/servers" and method == "POST":
            s = c.create_server(body, body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {})
            return 202, {
                "server": {
                    "id": s["id"],
                    "links": [],
                    "OS-DCF:diskConfig": "MANUAL",
                    "security_groups": s["security_groups"],
                    "adminPass": uuid.uuid4().hex[:12],
                }
            }
        if (r := m(r"/servers/([^/]+)/action")) and method == "POST":
            out = c.action(r[1], body)
            return (202, None) if out is None else (200, out)
        if r := m(r"/servers/([^/]+)"):
            if method == "DELETE":
                c.delete_server(r[1])
                return 204, None
            return 200, {"server": _public(c.server(r[1]))}
        raise ApiError(404, "itemNotFound", f"simulator: no compute route {method} {path}")

    def _network(self, method: str, path: str, q: dict, body: dict) -> tuple:
        c = self.cloud
        m = lambda pattern: re.fullmatch(pattern, path)  # noqa: E731
        tables = {
            "networks": (c.networks, "network"),
            "subnets": (c.subnets, "subnet"),
            "ports": (c.ports, "port"),
            "security-groups": (c.security_groups, "security_group"),
            "floatingips": (c.floatingips, "floatingip"),
        }
        if path == "/security-groups" and method == "POST":
            g = body.get("security_group", {})
            gid = _id()
            egress = [self._rule(gid, {"direction": "egress", "ethertype": eth}) for eth in ("IPv4", "IPv6")]
            c.security_groups[gid] = {
                "id": gid,
                "name": g.get("name", ""),
                "description": g.get("description", ""),
                "security_group_rules": egress,
                "project_id": c.project_id,
                "tenant_id": c.project_id,
                "tags": [],
                "stateful": True,
            }
            return 201, {"security_group": c.security_groups[gid]}
        if path == "/floatingips" and method == "POST":
            return 201, {"floatingip": c.create_floatingip(body)}
        if path == "/security-group-rules" and method == "POST":
            rule = body.get("security_group_rule", {})
            g = c.security_groups.get(rule.get("security_group_id"))
            if g is None:
                raise ApiError(
                    404, "SecurityGroupNotFound", f"Security group {rule.get('security_group_id')} does not exist"
                )
            new = self._rule(g["id"], rule)
            g["security_group_rules"].append(new)
            return 201, {"security_group_rule": new}
        if (r := m(r"/(networks|subnets|ports|security-groups|floatingips)")) and method == "GET":
            table, kind = tables[r[1]]
            return 200, {kind + "s": _filter(table.values(), q)}
        if r := m(r"/(networks|subnets|ports|security-groups|floatingips)/([^/]+)"):
            table, kind = tables[r[1]]
            if r[2] not in table:
                raise ApiError(404, f"{kind.title().replace('_', '')}NotFound", f"{kind} {r[2]} could not be found.")
            if method == "DELETE":
                if kind == "port" and table[r[2]]["device_id"] in c.servers:
                    raise ApiError(409, "PortInUse", f"port {r[2]} is in use by a server")
                del table[r[2]]
                return 204, None
            return 200, {kind: table[r[2]]}
        raise ApiError(404, "HTTPNotFound", f"simulator: no network route {method} {path}")

    def _rule(self, gid: str, rule: dict) -> dict:
        return {
            "id": _id(),
            "security_group_id": gid,
            "direction": rule.get("direction", "ingress"),
            "ethertype": rule.get("ethertype", "IPv4"),
            "protocol": rule.get("protocol"),
            "port_range_min": rule.get("port_range_min"),
            "port_range_max": rule.get("port_range_max"),
            "remote_ip_prefix": rule.get("remote_ip_prefix"),
            "remote_group_id": rule.get("remote_group_id"),
            "description": rule.get("description", ""),
            "project_id": self.cloud.project_id,
        }


def _show_or_delete(method: str, table: dict, key: str, kind: str, deleted: int, missing: str) -> tuple:
    if key not in table:
        raise ApiError(404, "itemNotFound", missing)
    if method == "DELETE":
        del table[key]
        return deleted, None
    return 200, {kind: table[key]}


_TOKENS: set[str] = set()
_FILTER_IGNORED = {"limit", "marker", "fields", "sort_key", "sort_dir", "all_projects", "all_tenants"}


def _filter(items, q: dict) -> list[dict]:
    """List filters: exact match on each given field (Neutron and Glance style)."""
    wanted = {k: v for k, v in q.items() if k not in _FILTER_IGNORED}
    return [dict(i) for i in items if all(str(i.get(k)) == v for k, v in wanted.items())]


class Simulator:
    """The API on 127.0.0.1:<port> in a thread; `clouds_yaml(path)` writes a matching clouds.yaml."""

    def __init__(self, lab_name: str, port: int = 0, quota_instances: int = 10):
        self.cloud = Cloud(lab_name, quota_instances)
        handler = type("BoundHandler", (Handler,), {"cloud": self.cloud})
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except BaseException:
            self.cloud.close()
            raise
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def clouds_yaml(self, path, cloud: str = "sim") -> None:
        path.write_text(
            json.dumps(
                {
                    "clouds": {
                        cloud: {
                            "auth": {
                                "auth_url": f"{self.url}/identity",
                                "username": USER,
                                "password": PASSWORD,
                                "project_name": PROJECT,
                                "user_domain_name": "Default",
                                "project_domain_name": "Default",
                            },
                            "region_name": "RegionOne",
                            "identity_api_version": 3,
                        }
                    }
                },
                indent=1,
            )
        )

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.cloud.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default="sim")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--quota", type=int, default=10)
    args = ap.parse_args()
    sim = Simulator(args.lab, args.port, args.quota)
    sim.clouds_yaml(Path("clouds.yaml"))
    print(
        f"OpenStack simulator on {sim.url}, servers boot in lab {args.lab}; ./clouds.yaml written (cloud 'sim')",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sim.close()
    print(f"lab {args.lab} removed with every server")
