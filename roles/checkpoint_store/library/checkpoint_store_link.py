#!/usr/bin/python
"""Ansible module: shape a host's network interface with tc, to emulate the link between a cluster and its
remote checkpoint store (runs on the store host, as root).

Download (what the host sends) is a tbf qdisc at the interface's root; upload (what it receives) cannot be
queued on the interface itself, so its ingress is redirected (u32 match-all, mirred) to an ifb device whose
root is a tbf qdisc; a delay is a netem qdisc under the root tbf (or the root itself without a rate). The
module owns the interface's root and ingress qdiscs (handles c0de: and ffff:) and the ifb device; it reads
what is in place (tc -j) and changes only what differs, so a second run changes nothing. Rates of 0 and a
delay of 0 remove its qdiscs and the ifb device. The loopback interface is never shaped.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_store_link
short_description: Shape a network interface's upload and download rate (tbf, ifb) and delay (netem)
options:
  address: {type: str, default: "", description: "The interface is the one holding this address (when device is '')."}
  device: {type: str, default: "", description: The interface to shape (never lo).}
  ifb: {type: str, default: ifb-ckpt, description: The ifb device that carries the shaped ingress.}
  upload_mbit: {type: float, default: 0, description: "Rate of what the host receives, Mbit/s (0: unshaped)."}
  download_mbit: {type: float, default: 0, description: "Rate of what the host sends, Mbit/s (0: unshaped)."}
  delay_ms: {type: float, default: 0, description: "Delay of every packet the host sends, ms (netem; 0: none)."}
"""

import json
import socket

from ansible.module_utils.basic import AnsibleModule

ROOT, NETEM = "c0de:", "c0df:"  # handles of the qdiscs this module adds (hex)


class Tc:
    """tc and ip on this host; in check mode the changes are only listed."""

    def __init__(self, module):
        self.module, self.actions = module, []

    def read(self, *args):
        rc, out, err = self.module.run_command(list(args))
        if rc != 0:
            self.module.fail_json(msg=f"`{' '.join(args)}` failed: {(err or out).strip()}")
        return out

    def json(self, *args):
        out = self.read(*args).strip()
        return json.loads(out) if out else []

    def change(self, *args):
        self.actions.append(" ".join(args))
        if not self.module.check_mode:
            self.read(*args)


def find_device(tc: Tc, address: str) -> str:
    """The interface that holds ``address`` (a name is resolved first)."""
    try:
        wanted = socket.getaddrinfo(address, None)[0][4][0] if address else ""
    except OSError:
        wanted = address
    for link in tc.json("ip", "-j", "addr", "show"):
        if any(a.get("local") == wanted for a in link.get("addr_info", [])):
            return link["ifname"]
    tc.module.fail_json(msg=f"no interface holds the address {address!r}: set checkpoint_store_link_device")


def tbf(rate_bits: int) -> list[str]:
    """A tbf qdisc of ``rate_bits``/s: a burst of 10 ms of traffic (at least 32 KB), 100 ms of queue."""
    return ["tbf", "rate", f"{rate_bits}bit", "burst", str(max(32768, rate_bits // 800)), "latency", "100ms"]


def _rate(q) -> int:
    return int(q.get("options", {}).get("rate", 0)) * 8  # tc -j gives bytes/s


def _delay_ms(q) -> float:
    delay = q.get("options", {}).get("delay", 0)
    delay = delay.get("delay", 0) if isinstance(delay, dict) else delay
    return round(float(delay) * 1000, 3)  # tc -j gives seconds


def egress_now(tc: Tc, dev: str):
    """(rate bits/s, delay ms) of the root qdiscs this module put on ``dev``; None when they are not its."""
    qdiscs = tc.json("tc", "-j", "qdisc", "show", "dev", dev)
    root = next((q for q in qdiscs if q.get("root")), None)
    if root is None or root.get("handle") != ROOT:
        return None
    if root.get("kind") == "netem":
        return 0, _delay_ms(root)
    netem = next((q for q in qdiscs if q.get("kind") == "netem" and q.get("handle") == NETEM), None)
    return _rate(root), _delay_ms(netem) if netem else 0.0


def ingress_now(tc: Tc, dev: str, ifb: str):
    """(ingress qdisc present, its redirect to ``ifb`` present, rate of ``ifb``'s root tbf or None)."""
    qdiscs = tc.json("tc", "-j", "qdisc", "show", "dev", dev)
    has_ingress = any(q.get("kind") == "ingress" for q in qdiscs)
    filters = tc.json("tc", "-j", "filter", "show", "dev", dev, "ingress") if has_ingress else []
    actions = [a for f in filters for a in f.get("options", {}).get("actions", [])]
    redirect = any(a.get("kind") == "mirred" and a.get("to_dev") == ifb for a in actions)
    links = {link["ifname"] for link in tc.json("ip", "-j", "link", "show")}
    rate = None
    if ifb in links:
        root = next((q for q in tc.json("tc", "-j", "qdisc", "show", "dev", ifb) if q.get("root")), None)
        rate = _rate(root) if root and root.get("handle") == ROOT and root.get("kind") == "tbf" else None
    return has_ingress, redirect, rate, ifb in links


def close(a: float, b: float) -> bool:
    return abs(a - b) <= max(1.0, 0.01 * max(a, b))


def shape_egress(tc: Tc, dev: str, rate_bits: int, delay_ms: float) -> None:
    now = egress_now(tc, dev)
    want = (rate_bits, delay_ms) if rate_bits or delay_ms else None
    if now is not None and want is not None and close(now[0], want[0]) and close(now[1], want[1]):
        return
    if now is None and want is None:
        return
    if now is not None:
        tc.change("tc", "qdisc", "del", "dev", dev, "root")
    if want is None:
        return
    netem = ["netem", "delay", f"{delay_ms:g}ms", "limit", "100000"]
    if rate_bits:
        tc.change("tc", "qdisc", "add", "dev", dev, "root", "handle", ROOT, *tbf(rate_bits))
        if delay_ms:
            tc.change("tc", "qdisc", "add", "dev", dev, "parent", f"{ROOT}1", "handle", NETEM, *netem)
    else:
        tc.change("tc", "qdisc", "add", "dev", dev, "root", "handle", ROOT, *netem)


def shape_ingress(tc: Tc, dev: str, ifb: str, rate_bits: int) -> None:
    has_ingress, redirect, rate, ifb_exists = ingress_now(tc, dev, ifb)
    if not rate_bits:
        if redirect:
            tc.change("tc", "qdisc", "del", "dev", dev, "ingress")
        if ifb_exists:
            tc.change("ip", "link", "del", ifb)
        return
    if not ifb_exists:
        tc.change("ip", "link", "add", ifb, "type", "ifb")
        tc.change("ip", "link", "set", ifb, "up")
    if rate is None or not close(rate, rate_bits):
        if rate is not None:
            tc.change("tc", "qdisc", "del", "dev", ifb, "root")
        tc.change("tc", "qdisc", "add", "dev", ifb, "root", "handle", ROOT, *tbf(rate_bits))
    if not has_ingress:
        tc.change("tc", "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress")
    if not redirect:
        match_all = ["u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb]
        tc.change("tc", "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1", *match_all)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            address=dict(type="str", default=""),
            device=dict(type="str", default=""),
            ifb=dict(type="str", default="ifb-ckpt"),
            upload_mbit=dict(type="float", default=0.0),
            download_mbit=dict(type="float", default=0.0),
            delay_ms=dict(type="float", default=0.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if min(p["upload_mbit"], p["download_mbit"], p["delay_ms"]) < 0:
        module.fail_json(msg="upload_mbit, download_mbit and delay_ms must be 0 or more")
    tc = Tc(module)
    dev = p["device"] or find_device(tc, p["address"])
    if dev == "lo":
        module.fail_json(msg="the loopback interface is never shaped: the store must listen on a real interface")
    shape_egress(tc, dev, int(p["download_mbit"] * 1e6), p["delay_ms"])
    shape_ingress(tc, dev, p["ifb"], int(p["upload_mbit"] * 1e6))
    module.exit_json(
        changed=bool(tc.actions),
        actions=tc.actions,
        device=dev,
        upload_mbit=p["upload_mbit"],
        download_mbit=p["download_mbit"],
        delay_ms=p["delay_ms"],
    )


if __name__ == "__main__":
    main()
