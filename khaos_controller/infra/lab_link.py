"""The link between two labs (`Lab.link`): the hosts of one reach the other's through this machine.

Both bridges forward, but only to the other lab's subnet: a policy rule sends that traffic to the main
table and the next one refuses anything else arriving on the bridge, so nothing is routed off this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import KhaosError
from .lab_host import require_root, run

if TYPE_CHECKING:
    from .lab import Lab

RULE_ALLOW, RULE_BLOCK = 20000, 20001  # policy rule priorities (before main, 32766)


def link(lab: Lab, other: Lab) -> None:
    """Let the hosts of ``lab`` and ``other`` reach each other (both up, distinct); kept if already there."""
    require_root()
    if lab.octet is None or other.octet is None or other.name == lab.name:
        raise KhaosError(f"lab link {lab.name} - {other.name}: both labs must be up and distinct")
    rules = run("ip", "-4", "rule", "list").stdout
    for a, b in ((lab, other), (other, lab)):
        if f"to {b.subnet} iif {a.bridge} " not in rules:
            run("ip", "-4", "rule", "add", "iif", a.bridge, "to", b.subnet, "lookup", "main", "pref", str(RULE_ALLOW))
        if f"iif {a.bridge} prohibit" not in rules:
            run("ip", "-4", "rule", "add", "iif", a.bridge, "prohibit", "pref", str(RULE_BLOCK))
        Path(f"/proc/sys/net/ipv4/conf/{a.bridge}/forwarding").write_text("1\n")


def unlink(lab: Lab) -> None:
    """Drop the policy rules of :func:`link` that name this lab's bridge or subnet."""
    if lab.octet is None:
        return
    for line in run("ip", "-4", "rule", "list", check=False).stdout.splitlines():
        pref, _, spec = line.partition(":")
        spec = spec.replace("[detached]", " ").split()
        text = " ".join(spec)
        if pref.strip() in (str(RULE_ALLOW), str(RULE_BLOCK)) and (
            f"iif {lab.bridge}" in text or f"to {lab.subnet}" in text
        ):
            run("ip", "-4", "rule", "del", "pref", pref.strip(), *spec, check=False)
