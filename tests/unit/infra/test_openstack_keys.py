"""SSH host keys of OpenStack servers come from their console logs only (no cloud, no root): the
cloud-init key block is parsed strictly, pinned per server in the cluster's known_hosts, read again
only for a new server (or when forced), and a server without keys is waited for, then refused."""

from __future__ import annotations

import base64
import struct
from types import SimpleNamespace

import pytest
from support import one_line

from khaos_controller.errors import KhaosError
from khaos_controller.infra import openstack_keys as kos


def key(kind: str = "ssh-ed25519", seed: int = 1) -> str:
    blob = struct.pack(">I", len(kind)) + kind.encode() + struct.pack(">I", 32) + bytes([seed]) * 32
    return base64.b64encode(blob).decode()


def console(*keys: tuple[str, str], prefix: str = "") -> str:
    lines = ["[    6.7] cloud-init[455]: Generating public/private ed25519 key pair."]
    lines += ["ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----", "ec2: 256 SHA256:xyz root@h (ED25519)"]
    lines += ["ec2: -----END SSH HOST KEY FINGERPRINTS-----", f"{prefix}-----BEGIN SSH HOST KEY KEYS-----"]
    lines += [f"{prefix}{kind} {b64} root@h" for kind, b64 in keys]
    lines += [f"{prefix}-----END SSH HOST KEY KEYS-----", "Cloud-init v. 22.4.2 finished"]
    return "\r\n".join(lines) + "\r\n"


def test_the_last_complete_block_counts_and_every_key_is_checked():
    k1, k2 = ("ssh-ed25519", key(seed=1)), ("ssh-ed25519", key(seed=2))
    ecdsa = ("ecdsa-sha2-nistp256", key("ecdsa-sha2-nistp256"))
    assert kos.parse_host_keys(console(k1) + console(k2, ecdsa)) == [k2, ecdsa]  # a reboot: the newest boot
    assert kos.parse_host_keys(console(k1, prefix="[ 9.1] cloud-init[601]: ")) == [k1]  # prefixed lines
    assert kos.parse_host_keys(console(k1) + "-----BEGIN SSH HOST KEY KEYS-----\r\n") == [k1]  # still printing
    assert kos.parse_host_keys("[    0.0] Linux version 6.1\r\n") == []  # cloud-init not there yet
    # the type named must be the type inside the key; garbage and other lines are no keys
    wrong = ("ssh-rsa", key("ssh-ed25519"))
    assert kos.parse_host_keys(console(wrong, ("ssh-ed25519", "AAAA!!notbase64"), ("ssh-dss", key("ssh-dss")))) == []


def server(name: str, sid: str, *addrs: str, status: str = "ACTIVE"):
    return SimpleNamespace(
        name=name,
        id=sid,
        status=status,
        metadata={"khaos_cluster": "c"},
        addresses={"private": [{"addr": a, "version": 4} for a in addrs]},
    )


class Cloud:
    """What pin_host_keys asks openstacksdk: the servers and their console logs."""

    def __init__(self, *servers):
        self.servers, self.consoles, self.reads = list(servers), {}, []
        self.compute = SimpleNamespace(servers=lambda details=True: self.servers, get_server_console_output=self._out)

    def _out(self, s):
        self.reads.append(s.name)
        return {"output": self.consoles.get(s.id, "")}


def lines(path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines()]


def test_pinned_once_per_server_replaced_servers_pinned_again_teardown_forgets(tmp_path):
    kh = tmp_path / "kh"
    kh.write_text("10.0.0.9 ssh-ed25519 AAAAmine\n")  # a line of someone else stays
    jm, tm = server("khaos-c-jm-1", "a", "10.0.0.11"), server("khaos-c-tm-1", "b", "10.0.0.12", "10.0.0.200")
    c = Cloud(jm, tm)
    k1, k2, k3 = (("ssh-ed25519", key(seed=i)) for i in (1, 2, 3))
    c.consoles = {"a": console(k1), "b": console(k2)}
    assert kos.pin_host_keys(c, "c", kh) == {"pinned": ["khaos-c-jm-1", "khaos-c-tm-1"], "missing": [], "errors": {}}
    assert lines(kh) == [
        ["10.0.0.9", "ssh-ed25519", "AAAAmine"],
        ["10.0.0.11", *k1, "khaos:khaos-c-jm-1:a"],
        ["10.0.0.12,10.0.0.200", *k2, "khaos:khaos-c-tm-1:b"],  # every address, the floating one too
    ]
    assert kos.pin_host_keys(c, "c", kh)["pinned"] == [] and len(c.reads) == 2  # not read again
    # a replacement (a new server id) is read and pinned; its predecessor's line is gone
    c.servers[1] = server("khaos-c-tm-1", "b2", "10.0.0.12")
    c.consoles["b2"] = console(k3)
    assert kos.pin_host_keys(c, "c", kh)["pinned"] == ["khaos-c-tm-1"]
    assert lines(kh)[-1] == ["10.0.0.12", *k3, "khaos:khaos-c-tm-1:b2"] and len(lines(kh)) == 3
    # force: read again although pinned (a server that was started again)
    c.consoles["b2"] = console(k2)
    assert kos.pin_host_keys(c, "c", kh, names=["khaos-c-tm-1"], force=True)["pinned"] == ["khaos-c-tm-1"]
    assert lines(kh)[-1][1:3] == list(k2)
    assert kos.forget_host_keys(kh, "c") == ["khaos-c-jm-1", "khaos-c-tm-1"]
    assert lines(kh) == [["10.0.0.9", "ssh-ed25519", "AAAAmine"]]


def test_a_server_without_keys_is_waited_for_then_refused_in_one_line(tmp_path):
    kh = tmp_path / "kh"
    c = Cloud(server("khaos-c-tm-1", "b", "10.0.0.12"), server("khaos-c-tm-2", "x", "10.0.0.13", status="SHUTOFF"))
    c.consoles = {"b": "[    0.0] Linux version 6.1\r\n"}
    assert kos.pin_host_keys(c, "c", kh, strict=False) == {"pinned": [], "missing": ["khaos-c-tm-1"], "errors": {}}
    assert c.reads == ["khaos-c-tm-1"]  # a stopped server is not asked
    with pytest.raises(KhaosError) as e:
        kos.pin_host_keys(c, "c", kh, wait=0.3, poll=0.1)
    assert one_line(e.value).startswith(
        "openstack: server khaos-c-tm-1 printed no SSH host keys on its console log within 0 s"
    )
    assert len(c.reads) >= 3 and not kh.exists()  # polled until the deadline; nothing was pinned
    with pytest.raises(KhaosError, match="has no server 'khaos-c-tm-9'"):
        kos.pin_host_keys(c, "c", kh, names=["khaos-c-tm-9"])


def test_a_console_the_api_refuses_is_an_error_not_a_guess(tmp_path):
    from openstack import exceptions as exc

    c = Cloud(server("khaos-c-tm-1", "b", "10.0.0.12"))

    def forbidden(s):
        raise exc.HttpException(message="Policy doesn't allow os_compute_api:os-console-output", http_status=403)

    c.compute.get_server_console_output = forbidden
    with pytest.raises(KhaosError) as e:
        kos.pin_host_keys(c, "c", tmp_path / "kh", wait=60)  # no waiting for what will not come
    assert one_line(e.value).startswith("openstack: reading the console of server khaos-c-tm-1: ")
    assert "os-console-output" in str(e.value)
    # the inventory only reports it (a teardown must still work)
    got = kos.pin_host_keys(c, "c", tmp_path / "kh", strict=False)
    assert got["pinned"] == got["missing"] == [] and "os-console-output" in got["errors"]["khaos-c-tm-1"]
