"""What the controller needs to know of a cluster, read from its Ansible inventory (any kind: a static
file, a directory, or an inventory plugin such as the OpenStack one), as Ansible itself sees it.

The inventory groups Khaos uses are named once, by roles/khaos_defaults (``flink_jobmanager_group``,
``kafka_group``, ...); an inventory that sets one of those variables renames the group for the playbooks
and the controller alike (:func:`names_in`). The lab's inventory, the OpenStack plugin and the chaos plan
name their groups through :class:`GroupNames`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .. import REPO_ROOT
from ..errors import KhaosError
from . import ansible

DEFAULT_REST_PORT = 8081  # the flink role's flink_rest_port default
# each group -> the variable of roles/khaos_defaults that names it
GROUP_VARIABLES = {
    "flink": "flink_hosts",
    "jobmanager": "flink_jobmanager_group",
    "taskmanager": "flink_taskmanager_group",
    "kafka": "kafka_group",
    "checkpoint_store": "checkpoint_store_group",
    "controller": "khaos_controller_group",
}


@functools.cache
def _role_defaults() -> dict:
    return yaml.safe_load((REPO_ROOT / "roles/khaos_defaults/defaults/main.yml").read_text())


@dataclass(frozen=True)
class GroupNames:
    """The names of the inventory groups Khaos uses (see GROUP_VARIABLES)."""

    flink: str
    jobmanager: str
    taskmanager: str
    kafka: str
    checkpoint_store: str
    controller: str

    @classmethod
    def of(cls, variables: dict | None = None) -> GroupNames:
        """roles/khaos_defaults' names, overridden by ``variables`` ({"kafka_group": "brokers", ...})."""
        given = {**_role_defaults(), **(variables or {})}
        return cls(**{f.name: str(given[GROUP_VARIABLES[f.name]]) for f in fields(cls)})

    def variables(self) -> dict[str, str]:
        """{variable: name}: what an inventory sets so that the playbooks use these names."""
        return {var: getattr(self, group) for group, var in GROUP_VARIABLES.items()}


class Groups(dict):
    """An inventory's groups (name -> hosts) that know the names of Khaos' groups in it."""

    def __init__(self, hosts: dict[str, list[str]], names: GroupNames | None = None):
        super().__init__(hosts)
        self.names = names or GroupNames.of()


def names_in(data: dict) -> GroupNames:
    """The group names an inventory (`ansible-inventory --list`) sets, the defaults elsewhere."""
    found: dict = {}
    for hostvars in data.get("_meta", {}).get("hostvars", {}).values():
        for var in GROUP_VARIABLES.values():
            if var in hostvars:
                found.setdefault(var, hostvars[var])
    return GroupNames.of(found)


def group_hosts(data: dict, group: str) -> list[str]:
    """The hosts of one of Khaos' groups ("jobmanager", "kafka", ...) in `ansible-inventory --list`."""
    name = getattr(names_in(data), group)
    return list((data.get(name) or {}).get("hosts") or [])


@dataclass
class ClusterFacts:
    """The JobManager's REST URL, every host's address and the cluster's shared directory."""

    inventory: Path
    jobmanager: str
    rest_url: str
    addresses: dict[str, str]  # inventory host -> address (ansible_host)
    groups: Groups  # every group -> its hosts; .names: Khaos' groups in this inventory
    hostvars: dict = field(default_factory=dict)  # the JobManager's variables
    shared_dir: Path | None = None  # khaos_shared_dir: storage every host sees (the lab's share)


def cluster_facts(inventory: str | Path) -> ClusterFacts:
    """Read the inventory with ansible-inventory; KhaosError if it has no JobManager."""
    data = ansible.inventory_list(inventory)
    names = names_in(data)
    hosts = {g: list(v.get("hosts", [])) for g, v in data.items() if isinstance(v, dict) and g != "_meta"}
    jm = (hosts.get(names.jobmanager) or [None])[0]
    if jm is None:
        raise KhaosError(f"inventory {inventory}: no host in group {names.jobmanager}")
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hv = hostvars.get(jm, {})
    shared = hv.get("khaos_shared_dir")
    return ClusterFacts(
        inventory=Path(inventory),
        jobmanager=jm,
        rest_url=f"http://{hv.get('ansible_host', jm)}:{hv.get('flink_rest_port', DEFAULT_REST_PORT)}",
        addresses={n: v.get("ansible_host", n) for n, v in hostvars.items()},
        groups=Groups(hosts, names),
        hostvars=hv,
        shared_dir=Path(shared) if shared else None,
    )
