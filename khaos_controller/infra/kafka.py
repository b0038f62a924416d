"""Where a cluster's Kafka is, as its Ansible inventory says: the bootstrap address (the inventory's
``kafka_bootstrap``, the lab writes it; else the brokers' group, as roles/khaos_defaults derives it). The
admin API itself is kafka/admin.py."""

from __future__ import annotations

from pathlib import Path

from ..errors import KhaosError

DEFAULT_PORT = 9092  # the kafka role's kafka_port (roles/khaos_defaults)


def inventory_bootstrap(inventory: str | Path) -> str:
    """A cluster's bootstrap address from its inventory: ``kafka_bootstrap`` (the lab inventory sets it), else
    ``<address>:<kafka_port>`` of every host of the brokers' group (kafka_group), the address being the one the broker advertises and
    listens on (``kafka_advertised_address``, else ``ansible_host``), as roles/khaos_defaults derives it.
    KhaosError when the inventory has neither."""
    from ..kafka.admin import check_bootstrap
    from . import ansible
    from .inventory import group_hosts, names_in

    data = ansible.inventory_list(inventory)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    brokers = group_hosts(data, "kafka")
    for hv in hostvars.values():
        if hv.get("kafka_bootstrap"):
            return check_bootstrap(hv["kafka_bootstrap"])
    if not brokers:
        raise KhaosError(f"inventory {inventory}: no kafka_bootstrap and no host in group {names_in(data).kafka}")

    def address(host: str) -> str:
        v = hostvars.get(host, {})
        return f"{v.get('kafka_advertised_address') or v.get('ansible_host', host)}:{v.get('kafka_port', DEFAULT_PORT)}"

    return check_bootstrap(",".join(address(h) for h in brokers))
