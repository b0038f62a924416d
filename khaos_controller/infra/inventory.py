"""What the controller needs to know of a cluster, read from its Ansible inventory (any kind: a static
file, a directory, or an inventory plugin such as the OpenStack one), as Ansible itself sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KhaosError
from . import ansible

DEFAULT_REST_PORT = 8081  # the flink role's flink_rest_port default
JOBMANAGER_GROUP = "flink_jobmanager"


@dataclass
class ClusterFacts:
    """The JobManager's REST URL, every host's address and the cluster's shared directory."""

    inventory: Path
    jobmanager: str
    rest_url: str
    addresses: dict[str, str]  # inventory host -> address (ansible_host)
    groups: dict[str, list[str]]
    hostvars: dict = field(default_factory=dict)  # the JobManager's variables
    shared_dir: Path | None = None  # khaos_shared_dir: storage every host sees (the lab's share)


def cluster_facts(inventory: str | Path) -> ClusterFacts:
    """Read the inventory with ansible-inventory; KhaosError if it has no JobManager."""
    data = ansible.inventory_list(inventory)
    jm = (data.get(JOBMANAGER_GROUP, {}).get("hosts") or [None])[0]
    if jm is None:
        raise KhaosError(f"inventory {inventory}: no host in group {JOBMANAGER_GROUP}")
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hv = hostvars.get(jm, {})
    groups = {g: list(v.get("hosts", [])) for g, v in data.items() if isinstance(v, dict) and g != "_meta"}
    shared = hv.get("khaos_shared_dir")
    return ClusterFacts(
        inventory=Path(inventory),
        jobmanager=jm,
        rest_url=f"http://{hv.get('ansible_host', jm)}:{hv.get('flink_rest_port', DEFAULT_REST_PORT)}",
        addresses={n: v.get("ansible_host", n) for n, v in hostvars.items()},
        groups=groups,
        hostvars=hv,
        shared_dir=Path(shared) if shared else None,
    )
