"""Ansible inventory plugin: the servers of one Khaos cluster on OpenStack, grouped by metadata.

Servers with metadata khaos_cluster=<cluster> land in flink_jobmanager / flink_taskmanager
(by khaos_role) under flink: the groups the lab inventory uses; a bastion server provision.yml
created lands in bastion. Each host's ansible_host is its first fixed IPv4 address (the bastion's:
its floating IP), reached through the bastion (ProxyJump) when there is one.
Uses khaos_controller.infra.openstack (openstacksdk); the openstack.cloud collection is not needed.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: khaos_openstack
short_description: Servers of a Khaos cluster on OpenStack, grouped like the lab inventory
description: Lists the servers whose metadata khaos_cluster is the cluster, through openstacksdk.
options:
  plugin: {description: Token that marks this file as ours, required: true, choices: [khaos_openstack]}
  cloud: {description: Entry of clouds.yaml (default OS_CLOUD), type: str, env: [{name: OS_CLOUD}]}
  clouds_yaml: {description: clouds.yaml to read (default the standard places), type: str, default: ""}
  cluster: {description: Cluster name (servers khaos-<cluster>-*), type: str, default: khaos}
  bastion: {description: "user@host of the bastion: private servers are reached through it (ssh -W, i.e. ProxyJump)", type: str, default: ""}
  bastion_key: {description: Private key for the bastion (empty - ssh's default keys), type: str, default: ""}
  bastion_user: {description: User on the bastion server provision.yml created (used when bastion is empty), type: str, default: debian}
  known_hosts: {description: known_hosts file of the cluster (new host keys are accepted once), type: str, default: ""}
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin


class InventoryModule(BaseInventoryPlugin):
    NAME = "khaos_openstack"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("openstack.yml", "openstack.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            from khaos_controller.errors import KhaosError
            from khaos_controller.infra import openstack as kos
        except ImportError as e:
            raise AnsibleParserError(
                f"khaos_openstack: khaos_controller is not importable ({e}): use the khaos venv"
            ) from None
        cloud, cluster = self.get_option("cloud"), self.get_option("cluster")
        clouds_yaml = self.get_option("clouds_yaml")
        if clouds_yaml:
            clouds_yaml = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(clouds_yaml))
        try:
            rows = kos.inventory(kos.connect(cloud, clouds_yaml or None), cluster)
        except KhaosError as e:
            raise AnsibleParserError(f"khaos_openstack: {e}") from None
        known_hosts = os.path.expanduser(
            self.get_option("known_hosts") or f"~/.cache/khaos/openstack/{cluster}.known_hosts"
        )
        os.makedirs(os.path.dirname(known_hosts), exist_ok=True)
        ssh_args = (
            f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new "
            "-o ServerAliveInterval=1 -o ServerAliveCountMax=3 -o ConnectTimeout=5"
        )
        direct = ssh_args
        own = [r["public"] for r in rows if r["role"] == "bastion" and r["public"]]
        bastion = self.get_option("bastion") or (f"{self.get_option('bastion_user')}@{own[0]}" if own else "")
        if bastion:  # ProxyJump, spelled out so the jump uses the same host keys and key
            key = self.get_option("bastion_key")
            jump = (
                f"ssh -W %h:%p -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new "
                f"-o ConnectTimeout=5 {'-i ' + os.path.expanduser(key) + ' ' if key else ''}{bastion}"
            )
            ssh_args += f' -o ProxyCommand="{jump}"'
        inventory.add_group("flink")
        for group in ("flink_jobmanager", "flink_taskmanager"):
            inventory.add_group(group)
            inventory.add_child("flink", group)
        inventory.add_group("bastion")
        for var, value in (
            ("khaos_openstack_cluster", cluster),
            ("openstack_cluster", cluster),
            ("openstack_cloud", cloud or ""),
            ("openstack_clouds_yaml", clouds_yaml or ""),
            ("khaos_known_hosts", known_hosts),
            ("ansible_ssh_common_args", ssh_args),
        ):
            inventory.set_variable("all", var, value)
        for row in rows:
            if not row["group"] or not row["address"]:
                continue
            inventory.add_host(row["name"], group=row["group"])
            inventory.set_variable(row["name"], "ansible_host", row["address"])
            if row["role"] == "bastion" and row["public"]:  # reached directly, at its floating IP
                inventory.set_variable(row["name"], "ansible_host", row["public"])
                inventory.set_variable(row["name"], "ansible_ssh_common_args", direct)
            inventory.set_variable(row["name"], "openstack_id", row["id"])
            inventory.set_variable(row["name"], "openstack_status", row["status"])
