"""Flink clusters on OpenStack through openstacksdk: provision, tear down, server actions, inventory.

Everything a cluster owns carries its name: the keypair, security group and server group are
`khaos-<cluster>` (security groups and floating IPs are described `khaos_cluster=<cluster>`),
servers are `khaos-<cluster>-jm-<i>` / `-tm-<i>` (Kafka brokers `-kafka-<i>`, when asked for) with
metadata khaos_cluster and khaos_role and the
tags `khaos`, `khaos_cluster=<cluster>` (Nova microversion 2.52+). Teardown finds them by those
marks, so it also cleans up after a provision that failed half-way.

SSH host keys are never trusted on first use: each server's keys are read from its console log
(cloud-init prints them between ``-----BEGIN SSH HOST KEY KEYS-----`` and ``-----END SSH HOST KEY
KEYS-----``) through the authenticated API and pinned in the cluster's known_hosts (`pin_host_keys`);
SSH then runs with StrictHostKeyChecking=yes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import KhaosError

# server names; the bastion is khaos-<cluster>-bastion
ROLES = {"jobmanager": "jm", "taskmanager": "tm", "kafka": "kafka"}
GROUPS = {"jobmanager": "flink_jobmanager", "taskmanager": "flink_taskmanager", "kafka": "kafka", "bastion": "bastion"}


@dataclass
class ClusterSpec:
    """What a cluster on OpenStack consists of."""

    name: str
    image: str
    flavor: str
    network: str
    public_key: str
    taskmanagers: int = 2
    ssh_cidr: str = "0.0.0.0/0"  # the bastion's address: SSH and Flink REST come from there
    rest_port: int = 8081
    kafka_brokers: int = 0  # Kafka broker servers (group kafka; 3 for a quorum that survives one loss)
    kafka_port: int = 9092  # opened to the bastion too (the topic module and the jobs' producers use it)
    server_group_policy: str = "anti-affinity"
    boot_timeout: int = 600
    bastion: bool = False  # also a bastion server with a floating IP (the only one) on floating_network
    floating_network: str = ""
    admin_cidr: str = ""  # where SSH to that bastion may come from


def one_line(e: Exception) -> str:
    """An SDK error as one line: the API's own message, not the URL and traceback."""
    from openstack import exceptions as exc

    if isinstance(e, exc.HttpException) and e.details:
        text = f"{e.status_code}: {e.details}" if e.status_code else str(e.details)
    else:
        text = str(e)
    return " ".join(text.split())[:400]


def _api(what: str, fn, *args, **kw):
    from openstack import exceptions as exc

    try:
        return fn(*args, **kw)
    except exc.SDKException as e:
        raise KhaosError(f"openstack: {what}: {one_line(e)}") from None


def connect(cloud: str | None, config_file: str | None = None):
    """A connection for the named cloud of clouds.yaml (OS_CLOUD when no name is given)."""
    import openstack
    from openstack import exceptions as exc
    from openstack.config import loader

    cloud = cloud or os.environ.get("OS_CLOUD")
    if not cloud:
        raise KhaosError("openstack: no cloud named: set OS_CLOUD or openstack_cloud to an entry of clouds.yaml")
    files = (
        [config_file]
        if config_file
        else ([os.environ["OS_CLIENT_CONFIG_FILE"]] if os.environ.get("OS_CLIENT_CONFIG_FILE") else loader.CONFIG_FILES)
    )
    if not any(Path(f).is_file() for f in files):
        raise KhaosError(f"openstack: no clouds.yaml (looked for {', '.join(map(str, files))})")
    try:
        config = loader.OpenStackConfig(config_files=[f for f in files if Path(f).is_file()])
        return openstack.connection.Connection(config=config.get_one(cloud=cloud))
    except exc.SDKException as e:  # ConfigException: unknown cloud, bad file
        raise KhaosError(f"openstack: clouds.yaml: {one_line(e)}") from None


def server_name(cluster: str, role: str, i: int) -> str:
    """The server name of a cluster's role and index."""
    return f"khaos-{cluster}-{ROLES[role]}-{i}"


def cluster_servers(conn, cluster: str) -> list:
    """The servers of a cluster (by metadata)."""
    servers = _api("listing servers", lambda: list(conn.compute.servers(details=True)))
    return sorted((s for s in servers if (s.metadata or {}).get("khaos_cluster") == cluster), key=lambda s: s.name)


def _lookup(what: str, finder, name: str):
    """The resource of that name or id, or None."""
    from openstack import exceptions as exc

    try:
        return finder(name, ignore_missing=False)
    except exc.NotFoundException:
        return None
    except exc.SDKException as e:
        raise KhaosError(f"openstack: looking up {what} {name!r}: {one_line(e)}") from None


def _find(what: str, finder, name: str):
    found = _lookup(what, finder, name)
    if found is None:
        raise KhaosError(f"openstack: unknown {what} {name!r}")
    return found


def provision(conn, spec: ClusterSpec) -> dict:
    """Create what is missing; returns {'changed', 'created': [...], 'servers': [...]}."""
    needed = ["image", "flavor", "network", "public_key"] + (
        ["floating_network", "admin_cidr"] if spec.bastion else ["ssh_cidr"]
    )
    for field in needed:
        if not str(getattr(spec, field)).strip():
            raise KhaosError(f"openstack: no {field} given")
    image = _find("image", conn.image.find_image, spec.image)
    flavor = _find("flavor", conn.compute.find_flavor, spec.flavor)
    network = _find("network", conn.network.find_network, spec.network)
    public = _find("network", conn.network.find_network, spec.floating_network) if spec.bastion else None
    prefix, created = f"khaos-{spec.name}", []
    if not _lookup("keypair", conn.compute.find_keypair, prefix):
        _api("creating the keypair", conn.compute.create_keypair, name=prefix, public_key=spec.public_key)
        created.append(f"keypair {prefix}")
    group = _groups(conn, spec, prefix, created)
    _servers(conn, spec, prefix, group, (image, flavor, network), created)
    if spec.bastion and not _floating_ips(conn, spec.name):
        _bastion_ip(conn, spec, prefix, public, created)
    return {"changed": bool(created), "created": created, "servers": inventory(conn, spec.name)}


def _groups(conn, spec: ClusterSpec, prefix: str, created: list):
    """The security groups (SSH and REST from the bastion or ssh_cidr; everything inside the group) and
    the server group (anti-affinity by default); returns the server group."""
    if spec.bastion:  # SSH to the bastion from admin_cidr; to the cluster from the bastion only
        bastion_sg = _security_group(
            conn, f"{prefix}-bastion", spec.name, created, lambda g: [(22, 22, {"remote_ip_prefix": spec.admin_cidr})]
        )
        source = {"remote_group_id": bastion_sg.id}
    else:
        source = {"remote_ip_prefix": spec.ssh_cidr}
    _security_group(
        conn,
        prefix,
        spec.name,
        created,
        lambda g: (
            [(22, 22, source), (spec.rest_port, spec.rest_port, source), (1, 65535, {"remote_group_id": g.id})]
            + ([(spec.kafka_port, spec.kafka_port, source)] if spec.kafka_brokers else [])
        ),
    )  # Flink RPC, blob and data ports, the Kafka controller port: inside the group only
    group = next(
        (g for g in _api("listing server groups", lambda: list(conn.compute.server_groups())) if g.name == prefix), None
    )
    if group is None:
        group = _api(
            "creating the server group", conn.compute.create_server_group, name=prefix, policy=spec.server_group_policy
        )
        created.append(f"server group {prefix}")
    return group


def _servers(conn, spec: ClusterSpec, prefix: str, group, boot: tuple, created: list) -> None:
    """Create the servers that are missing (``boot``: image, flavor, network) and wait until they are up."""
    image, flavor, network = boot
    wanted = [
        (server_name(spec.name, role, i), role, prefix, {"group": group.id})
        for role, count in (("jobmanager", 1), ("taskmanager", spec.taskmanagers), ("kafka", spec.kafka_brokers))
        for i in range(1, count + 1)
    ]
    if spec.bastion:
        wanted.append((f"{prefix}-bastion", "bastion", f"{prefix}-bastion", {}))
    have = {s.name for s in cluster_servers(conn, spec.name)}
    booting = []
    for name, role, sg_name, hints in wanted:
        if name in have:
            continue
        booting.append(
            _api(
                f"creating server {name}",
                conn.compute.create_server,
                name=name,
                image_id=image.id,
                flavor_id=flavor.id,
                networks=[{"uuid": network.id}],
                key_name=prefix,
                security_groups=[{"name": sg_name}],
                metadata={"khaos_cluster": spec.name, "khaos_role": role},
                tags=["khaos", f"khaos_cluster={spec.name}"],
                scheduler_hints=hints,
            )
        )
        created.append(f"server {name}")
    for s in booting:
        _api(f"waiting for server {s.name}", conn.compute.wait_for_server, s, wait=spec.boot_timeout)


def _bastion_ip(conn, spec: ClusterSpec, prefix: str, public, created: list) -> None:
    """A floating IP on the bastion's port, from the floating network ``public``."""
    [bastion] = [s for s in cluster_servers(conn, spec.name) if s.name == f"{prefix}-bastion"]
    [port] = _api("listing the bastion's port", lambda: list(conn.network.ports(device_id=bastion.id)))
    ip = _api(
        "creating the bastion's floating IP",
        conn.network.create_ip,
        floating_network_id=public.id,
        port_id=port.id,
        description=f"khaos_cluster={spec.name}",
    )
    created.append(f"floating IP {ip.floating_ip_address}")


def _security_group(conn, name: str, cluster: str, created: list, rules):
    """The group `name`, created with ingress TCP rules(group) = [(from, to, {remote}), ...] if missing."""
    sg = _lookup("security group", conn.network.find_security_group, name)
    if sg is None:
        sg = _api(
            "creating the security group",
            conn.network.create_security_group,
            name=name,
            description=f"khaos_cluster={cluster}",
        )
        for low, high, remote in rules(sg):
            _api(
                "adding a security group rule",
                conn.network.create_security_group_rule,
                security_group_id=sg.id,
                direction="ingress",
                ethertype="IPv4",
                protocol="tcp",
                port_range_min=low,
                port_range_max=high,
                **remote,
            )
        created.append(f"security group {name}")
    return sg


def _floating_ips(conn, cluster: str) -> list:
    return [
        ip
        for ip in _api("listing floating IPs", lambda: list(conn.network.ips()))
        if ip.description == f"khaos_cluster={cluster}"
    ]


def teardown(conn, cluster: str, wait: int = 600) -> dict:
    """Remove everything the cluster owns (what exists of it); returns what was deleted."""
    prefix, deleted = f"khaos-{cluster}", []
    servers = cluster_servers(conn, cluster)
    for s in servers:
        _api(f"deleting server {s.name}", conn.compute.delete_server, s)
        deleted.append(f"server {s.name}")
    for s in servers:
        _api(f"waiting for server {s.name} to go", conn.compute.wait_for_delete, s, wait=wait)
    for port in _api("listing ports", lambda: list(conn.network.ports())):
        if port.device_id in {s.id for s in servers} or port.name.startswith(prefix):
            _api(f"deleting port {port.id}", conn.network.delete_port, port, ignore_missing=True)
            deleted.append(f"port {port.id}")
    for ip in _floating_ips(conn, cluster):
        _api(f"deleting floating IP {ip.floating_ip_address}", conn.network.delete_ip, ip)
        deleted.append(f"floating IP {ip.floating_ip_address}")
    for g in _api("listing server groups", lambda: list(conn.compute.server_groups())):
        if g.name == prefix:
            _api("deleting the server group", conn.compute.delete_server_group, g)
            deleted.append(f"server group {prefix}")
    for sg in _api("listing security groups", lambda: list(conn.network.security_groups())):
        if sg.name == prefix or sg.description == f"khaos_cluster={cluster}":
            _api("deleting the security group", conn.network.delete_security_group, sg)
            deleted.append(f"security group {sg.name}")
    if _lookup("keypair", conn.compute.find_keypair, prefix):
        _api("deleting the keypair", conn.compute.delete_keypair, prefix)
        deleted.append(f"keypair {prefix}")
    return {"changed": bool(deleted), "deleted": deleted}


def server_action(conn, cluster: str, name: str, action: str, wait: int = 600) -> dict:
    """stop | start | reboot_hard | replace one server of the cluster; waits for the result."""
    [server] = [s for s in cluster_servers(conn, cluster) if s.name == name] or [None]
    if server is None:
        raise KhaosError(f"openstack: cluster {cluster!r} has no server {name!r}")
    if action == "stop":
        _api(f"stopping {name}", conn.compute.stop_server, server)
        _api(f"waiting for {name} to stop", conn.compute.wait_for_server, server, status="SHUTOFF", wait=wait)
    elif action == "start":
        _api(f"starting {name}", conn.compute.start_server, server)
        _api(f"waiting for {name} to start", conn.compute.wait_for_server, server, wait=wait)
    elif action == "reboot_hard":
        _api(f"rebooting {name}", conn.compute.reboot_server, server, "HARD")
        _api(f"waiting for {name} to reboot", conn.compute.wait_for_server, server, wait=wait)
    elif action == "replace":
        group = server.scheduler_hints or {}
        fresh = dict(
            name=name,
            image_id=server.image.id,
            flavor_id=_flavor_id(conn, server),
            networks=[{"uuid": _network_id(conn, server)}],
            key_name=server.key_name,
            security_groups=[{"name": g["name"]} for g in server.security_groups or []],
            metadata=dict(server.metadata),
            tags=list(server.tags or []),
            scheduler_hints=group or _group_hint(conn, cluster),
        )
        _api(f"deleting {name}", conn.compute.delete_server, server)
        _api(f"waiting for {name} to go", conn.compute.wait_for_delete, server, wait=wait)
        new = _api(f"creating {name} again", conn.compute.create_server, **fresh)
        _api(f"waiting for the new {name}", conn.compute.wait_for_server, new, wait=wait)
    else:
        raise KhaosError(f"openstack: unknown server action {action!r} (stop, start, reboot_hard, replace)")
    return next(h for h in inventory(conn, cluster) if h["name"] == name)


def _flavor_id(conn, server) -> str:
    # since microversion 2.47 a server shows its flavor's name, not its id
    return _find("flavor", conn.compute.find_flavor, server.flavor.get("original_name") or server.flavor.get("name")).id


def _network_id(conn, server) -> str:
    return _find("network", conn.network.find_network, next(iter(server.addresses))).id


def _group_hint(conn, cluster: str) -> dict:
    groups = [
        g
        for g in _api("listing server groups", lambda: list(conn.compute.server_groups()))
        if g.name == f"khaos-{cluster}"
    ]
    return {"group": groups[0].id} if groups else {}


def inventory(conn, cluster: str, servers: list | None = None) -> list[dict]:
    """One row per server: name, role, group, address (first fixed IPv4), public (floating IPv4), status.
    ``servers``: the cluster's servers when the caller has listed them already."""
    rows = []
    for s in cluster_servers(conn, cluster) if servers is None else servers:
        addrs = {
            kind: [
                a["addr"]
                for net in (s.addresses or {}).values()
                for a in net
                if a.get("version") == 4 and a.get("OS-EXT-IPS:type", "fixed") == kind
            ]
            for kind in ("fixed", "floating")
        }
        role = s.metadata.get("khaos_role", "")
        rows.append(
            {
                "name": s.name,
                "id": s.id,
                "role": role,
                "group": GROUPS.get(role, ""),
                "address": (addrs["fixed"] or [None])[0],
                "public": (addrs["floating"] or [None])[0],
                "status": s.status,
            }
        )
    return rows


# ---- SSH host keys from the console log ---------------------------------------------------------------
HOST_KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
HOST_KEYS_END = "-----END SSH HOST KEY KEYS-----"
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_KEY = re.compile(r"(?:^|\s)(" + "|".join(map(re.escape, HOST_KEY_TYPES)) + r")\s+([A-Za-z0-9+/]+={0,3})(?=\s|$)")
TAG = "khaos:"  # known_hosts comment of a pinned key: khaos:<server name>:<server id>


def parse_host_keys(console: str) -> list[tuple[str, str]]:
    """The host keys of the LAST complete key block in a console log, as [(type, base64)]; [] when there
    is none (yet). Lines may carry a prefix (a timestamp, ``cloud-init[123]:``); each key is checked:
    valid base64 whose embedded type is the type named before it."""
    blocks, block = [], None
    for line in console.replace("\r", "").split("\n"):
        if HOST_KEYS_BEGIN in line:
            block = []
        elif HOST_KEYS_END in line:
            if block is not None:
                blocks.append(block)
            block = None
        elif block is not None and (m := _KEY.search(line)) and _key_ok(m[1], m[2]) and (m[1], m[2]) not in block:
            block.append((m[1], m[2]))
    return next((b for b in reversed(blocks) if b), [])


def _key_ok(kind: str, b64: str) -> bool:
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(blob) < 4:
        return False
    (n,) = struct.unpack(">I", blob[:4])
    return blob[4 : 4 + n] == kind.encode()


def _console(conn, server) -> str:
    """The server's console log ('' when the API has none for it yet: 404/409)."""
    from openstack import exceptions as exc

    try:
        out = conn.compute.get_server_console_output(server)
    except exc.HttpException as e:
        if e.status_code in (404, 409):  # not ready / no console (yet)
            return ""
        raise KhaosError(f"openstack: reading the console of server {server.name}: {one_line(e)}") from None
    except exc.SDKException as e:
        raise KhaosError(f"openstack: reading the console of server {server.name}: {one_line(e)}") from None
    return str((out or {}).get("output") or "")


def host_keys(conn, server) -> list[tuple[str, str]]:
    """The SSH host keys ``server`` printed on its console log, [(type, base64)]; [] when none (yet)."""
    return parse_host_keys(_console(conn, server))


def _no_keys(name: str, wait: float) -> str:
    return (
        f"openstack: server {name} printed no SSH host keys on its console log within {wait:.0f} s "
        f"(cloud-init prints them between {HOST_KEYS_BEGIN} and {HOST_KEYS_END}): "
        "its host key is not trusted on first use, so it cannot be reached"
    )


def _addresses(server) -> list[str]:
    return [
        a["addr"] for net in (server.addresses or {}).values() for a in net if a.get("version") == 4 and a.get("addr")
    ]


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _entries(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _tag(line: str) -> str:
    """The khaos:<name>:<id> tag of a known_hosts line ('' for lines we did not write)."""
    parts = line.split()
    return parts[3] if len(parts) >= 4 and parts[3].startswith(TAG) else ""


def _write(path: Path, lines: list[str]) -> None:
    """Replace the file as a whole (readers see the old or the new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write("".join(f"{ln}\n" for ln in lines))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pinned(known_hosts: str | Path, server) -> bool:
    """Whether known_hosts holds keys of exactly this server (its id) for every address it has now."""
    lines = [ln for ln in _entries(Path(known_hosts).expanduser()) if _tag(ln) == f"{TAG}{server.name}:{server.id}"]
    hosts = {h for ln in lines for h in ln.split()[0].split(",")}
    return bool(lines) and set(_addresses(server)) <= hosts


def write_host_keys(known_hosts: str | Path, server, keys: list[tuple[str, str]]) -> None:
    """Pin ``keys`` for every address of ``server``: its earlier lines (by name) and any line for those
    addresses are replaced; other lines stay."""
    path, addrs = Path(known_hosts).expanduser(), _addresses(server)
    with _locked(path):
        keep = [
            ln
            for ln in _entries(path)
            if not _tag(ln).startswith(f"{TAG}{server.name}:")
            and not (ln.split() and set(ln.split()[0].split(",")) & set(addrs))
        ]
        tag = f"{TAG}{server.name}:{server.id}"
        _write(path, keep + [f"{','.join(addrs)} {kind} {b64} {tag}" for kind, b64 in keys])


def forget_host_keys(known_hosts: str | Path, cluster: str) -> list[str]:
    """Remove the pinned keys of the cluster's servers (teardown); returns the server names forgotten."""
    path = Path(known_hosts).expanduser()
    if not path.exists():
        return []
    ours = re.compile(rf"{TAG}khaos-{re.escape(cluster)}-(?:(?:{'|'.join(ROLES.values())})-\d+|bastion):")
    with _locked(path):
        lines = _entries(path)
        gone = sorted({_tag(ln).split(":")[1] for ln in lines if ours.match(_tag(ln))})
        if gone:
            _write(path, [ln for ln in lines if not ours.match(_tag(ln))])
    return gone


def pin_host_keys(
    conn,
    cluster: str,
    known_hosts: str | Path,
    names: list[str] | None = None,
    wait: float = 0.0,
    force: bool = False,
    strict: bool = True,
    poll: float = 3.0,
    servers: list | None = None,
) -> dict:
    """Read the SSH host keys of the cluster's ACTIVE servers (or of ``names``) from their console logs
    and pin them in ``known_hosts``. A server whose keys are pinned already (same server id, every
    address) is not asked again unless ``force`` (a restarted server: its keys may be new). Servers
    whose console has no keys are waited for, ``wait`` seconds at most (all together); then ``strict``
    raises one KhaosError line, else they are listed under "missing" (and a console the API would not
    give under "errors", {name: message}). Returns {"pinned", "missing", "errors"}.
    ``servers``: the cluster's servers when the caller has listed them already."""
    servers = [
        s for s in (cluster_servers(conn, cluster) if servers is None else servers) if names is None or s.name in names
    ]
    if names is not None:
        unknown = sorted(set(names) - {s.name for s in servers})
        if unknown:
            raise KhaosError(f"openstack: cluster {cluster!r} has no server {', '.join(map(repr, unknown))}")
    todo = [
        s
        for s in servers
        if _addresses(s) and (names is not None or s.status == "ACTIVE") and (force or not pinned(known_hosts, s))
    ]
    done, errors, deadline = [], {}, time.monotonic() + wait
    while todo:
        for s in list(todo):
            try:
                keys = host_keys(conn, s)
            except KhaosError as e:  # the API refused (policy, server error): strict says so, else reported
                if strict:
                    raise
                errors[s.name], keys = str(e), []
                todo.remove(s)
            if keys:
                write_host_keys(known_hosts, s, keys)
                done.append(s.name)
                todo.remove(s)
        if not todo or time.monotonic() >= deadline:
            break
        time.sleep(min(poll, max(0.1, deadline - time.monotonic())))
    if todo and strict:
        raise KhaosError(_no_keys(todo[0].name, wait))
    return {"pinned": sorted(done), "missing": sorted(s.name for s in todo), "errors": errors}
