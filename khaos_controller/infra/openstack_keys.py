"""SSH host keys of OpenStack servers, never trusted on first use.

Each server's keys are read from its console log (cloud-init prints them between ``-----BEGIN SSH HOST
KEY KEYS-----`` and ``-----END SSH HOST KEY KEYS-----``) through the authenticated API and pinned in the
cluster's known_hosts (`pin_host_keys`); SSH then runs with StrictHostKeyChecking=yes.
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
from pathlib import Path

from ..errors import KhaosError
from .openstack import ROLES, cluster_servers, one_line

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
