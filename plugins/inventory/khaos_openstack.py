"""Ansible inventory plugin: the servers of one Khaos cluster on OpenStack, grouped by metadata.

Servers with metadata khaos_cluster=<cluster> land in flink_jobmanager / flink_taskmanager
(by khaos_role) under flink: the groups the lab inventory uses; Kafka brokers in kafka; a bastion
server provision.yml created lands in bastion. Option `groups` renames them (the variables of
roles/khaos_defaults, e.g. {kafka_group: brokers}); the plugin sets those variables too, so the
playbooks and the controller use the same names. Each host's ansible_host is its first fixed IPv4 address (the bastion's:
its floating IP), reached through the bastion (ProxyJump) when there is one.
Host keys are never trusted on first use: each ACTIVE server's SSH host keys are read from its
console log (what cloud-init printed) and pinned in the cluster's known_hosts before any SSH, which
then runs with StrictHostKeyChecking=yes (also the jump through the bastion).
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
  bastion: {description: "user@host of your own bastion: private servers are reached through it (ssh -W, i.e. ProxyJump)", type: str, default: ""}
  bastion_key: {description: Private key for the bastion (empty - ssh's default keys), type: str, default: ""}
  bastion_known_hosts: {description: "known_hosts holding the host key of your own bastion (option bastion)", type: str, default: ~/.ssh/known_hosts}
  bastion_user: {description: User on the bastion server provision.yml created (used when bastion is empty), type: str, default: debian}
  known_hosts: {description: "known_hosts file of the cluster: the servers' host keys, pinned from their console logs", type: str, default: ""}
  groups: {description: "Group names: the variables of roles/khaos_defaults (flink_hosts, flink_jobmanager_group, flink_taskmanager_group, kafka_group); unset ones keep their defaults", type: dict, default: {}}
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.display import Display

display = Display()


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
            from khaos_controller.infra import openstack_keys
            from khaos_controller.infra.inventory import GroupNames
        except ImportError as e:
            raise AnsibleParserError(
                f"khaos_openstack: khaos_controller is not importable ({e}): use the khaos venv"
            ) from None
        cloud, cluster = self.get_option("cloud"), self.get_option("cluster")
        clouds_yaml = self.get_option("clouds_yaml")
        if clouds_yaml:
            clouds_yaml = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(clouds_yaml))
        known_hosts = os.path.expanduser(
            self.get_option("known_hosts") or f"~/.cache/khaos/openstack/{cluster}.known_hosts"
        )
        os.makedirs(os.path.dirname(known_hosts), mode=0o700, exist_ok=True)
        try:
            conn = kos.connect(cloud, clouds_yaml or None)
            # servers pinned already (same id) are not asked again; provision.yml and the chaos role
            # wait for keys that are not printed yet, here a server without them is only reported
            servers = kos.cluster_servers(conn, cluster)
            keys = openstack_keys.pin_host_keys(conn, cluster, known_hosts, strict=False, servers=servers)
            rows = kos.inventory(conn, cluster, servers)
        except KhaosError as e:
            raise AnsibleParserError(f"khaos_openstack: {e}") from None
        for name in keys["missing"]:
            display.warning(
                f"khaos_openstack: server {name} has printed no SSH host keys on its console log yet: "
                "nothing is pinned for it, so SSH to it is refused (StrictHostKeyChecking=yes)"
            )
        for name, why in keys["errors"].items():  # e.g. a policy that forbids console logs: teardown still works
            display.warning(f"khaos_openstack: {why}: nothing is pinned for {name}, so SSH to it is refused")
        # only the keys pinned from the consoles count (no ~/.ssh/known_hosts, no global file, no TOFU)
        pinned = f"-o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
        ssh_args = f"{pinned} -o ServerAliveInterval=1 -o ServerAliveCountMax=3 -o ConnectTimeout=5"
        direct = ssh_args
        own = [r["public"] for r in rows if r["role"] == "bastion" and r["public"]]
        bastion = self.get_option("bastion") or (f"{self.get_option('bastion_user')}@{own[0]}" if own else "")
        if bastion:  # ProxyJump, spelled out so the jump checks host keys as strictly and uses the key
            key = self.get_option("bastion_key")
            if self.get_option("bastion"):  # your own bastion: its key is in your known_hosts, not in a console
                mine = os.path.expanduser(self.get_option("bastion_known_hosts"))
                checks = f"-o UserKnownHostsFile={mine} -o StrictHostKeyChecking=yes"
            else:  # the bastion provision.yml created: pinned from its console like every server
                checks = pinned
            jump = f"ssh -W %h:%p {checks} -o ConnectTimeout=5 {'-i ' + os.path.expanduser(key) + ' ' if key else ''}{bastion}"
            ssh_args += f' -o ProxyCommand="{jump}"'
        names = GroupNames.of(self.get_option("groups"))
        group_of = {"jobmanager": names.jobmanager, "taskmanager": names.taskmanager, "kafka": names.kafka}
        group_of["bastion"] = "bastion"
        inventory.add_group(names.flink)
        for group in (names.jobmanager, names.taskmanager):
            inventory.add_group(group)
            inventory.add_child(names.flink, group)
        inventory.add_group(names.kafka)
        inventory.add_group("bastion")
        for var, value in (
            *names.variables().items(),
            ("khaos_openstack_cluster", cluster),
            ("openstack_cluster", cluster),
            ("openstack_cloud", cloud or ""),
            ("openstack_clouds_yaml", clouds_yaml or ""),
            ("khaos_known_hosts", known_hosts),
            ("ansible_ssh_common_args", ssh_args),
            # as a variable it beats ANSIBLE_HOST_KEY_CHECKING=False, which ansible-runner sets when the
            # environment has none; without it Ansible puts StrictHostKeyChecking=no before the args above
            ("ansible_host_key_checking", True),
        ):
            inventory.set_variable("all", var, value)
        for row in rows:
            if row["role"] not in group_of or not row["address"]:
                continue
            inventory.add_host(row["name"], group=group_of[row["role"]])
            inventory.set_variable(row["name"], "ansible_host", row["address"])
            if row["role"] == "bastion" and row["public"]:  # reached directly, at its floating IP
                inventory.set_variable(row["name"], "ansible_host", row["public"])
                inventory.set_variable(row["name"], "ansible_ssh_common_args", direct)
            inventory.set_variable(row["name"], "openstack_id", row["id"])
            inventory.set_variable(row["name"], "openstack_status", row["status"])
