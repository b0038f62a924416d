"""Flink clusters on OpenStack through openstacksdk: provision, tear down, server actions, inventory.

Everything a cluster owns carries its name: the keypair, security group and server group are
`khaos-<cluster>` (security groups and floating IPs are described `khaos_cluster=<cluster>`),
servers are `khaos-<cluster>-jm-<i>` / `-tm-<i>` (Kafka brokers `-kafka-<i>`, when asked for) with
metadata khaos_cluster and khaos_role and the
tags `khaos`, `khaos_cluster=<cluster>` (Nova microversion 2.52+). Teardown finds them by those
marks, so it also cleans up after a provision that failed half-way.

SSH host keys: infra/openstack_keys.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import KhaosError

# server names; the bastion is khaos-<cluster>-bastion
ROLES = {"jobmanager": "jm", "taskmanager": "tm", "kafka": "kafka"}


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
                "address": (addrs["fixed"] or [None])[0],
                "public": (addrs["floating"] or [None])[0],
                "status": s.status,
            }
        )
    return rows
