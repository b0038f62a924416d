#!/usr/bin/python
"""Ansible module: create (present) or remove (absent) a Khaos cluster on OpenStack.

Runs on the controller with the khaos venv's Python and uses khaos_controller.infra.openstack
(openstacksdk): one implementation of provision and teardown for playbooks and tests.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: openstack_cluster
short_description: Keypair, security group, server group and Flink servers of one cluster
options:
  cloud: {type: str, description: Entry of clouds.yaml (default OS_CLOUD).}
  clouds_yaml: {type: path, description: "clouds.yaml to read (default OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack)."}
  cluster: {type: str, required: true, description: Cluster name; every resource is named khaos-<cluster>.}
  state: {type: str, default: present, choices: [present, absent], description: absent removes what the cluster owns.}
  image: {type: str, description: Image name or id (state=present).}
  flavor: {type: str, description: Flavor name or id (state=present).}
  network: {type: str, description: Network name or id (state=present).}
  public_key: {type: str, description: SSH public key of the keypair (state=present).}
  taskmanagers: {type: int, default: 2, description: TaskManager servers (one JobManager server always).}
  kafka_brokers: {type: int, default: 0, description: Kafka broker servers (group kafka).}
  kafka_port: {type: int, default: 9092, description: Kafka client port opened to ssh_cidr (with kafka_brokers).}
  ssh_cidr: {type: str, default: "", description: Where SSH and Flink REST may come from (the bastion; not with bastion=true).}
  bastion: {type: bool, default: false, description: Also a bastion server with the only floating IP; the cluster admits SSH and REST from it.}
  floating_network: {type: str, default: "", description: External network of the bastion's floating IP (bastion=true).}
  admin_cidr: {type: str, default: "", description: Where SSH to the bastion may come from (bastion=true).}
  rest_port: {type: int, default: 8081, description: Flink REST port opened to ssh_cidr.}
  server_group_policy: {type: str, default: anti-affinity, description: Nova server group policy.}
  timeout: {type: int, default: 600, description: Seconds to wait for servers to boot or go.}
  known_hosts: {type: path, description: "known_hosts of the cluster: each server's SSH host keys are read from its console log and pinned there (state=present); absent forgets them."}
  host_key_timeout: {type: int, default: 300, description: Seconds to wait for a server to print its host keys on its console (cloud-init); then it fails.}
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cloud=dict(type="str"),
            clouds_yaml=dict(type="path"),
            cluster=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            image=dict(type="str"),
            flavor=dict(type="str"),
            network=dict(type="str"),
            public_key=dict(type="str", no_log=False),
            taskmanagers=dict(type="int", default=2),
            kafka_brokers=dict(type="int", default=0),
            kafka_port=dict(type="int", default=9092),
            ssh_cidr=dict(type="str", default=""),
            bastion=dict(type="bool", default=False),
            floating_network=dict(type="str", default=""),
            admin_cidr=dict(type="str", default=""),
            rest_port=dict(type="int", default=8081),
            server_group_policy=dict(type="str", default="anti-affinity"),
            timeout=dict(type="int", default=600),
            known_hosts=dict(type="path"),
            host_key_timeout=dict(type="int", default=300),
        ),
        required_if=[("state", "present", ["image", "flavor", "network", "public_key"])],
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.infra import openstack as kos
        from khaos_controller.infra import openstack_keys
    except ImportError:
        module.fail_json(msg="khaos_controller is not importable: run from the khaos venv")
    try:
        conn = kos.connect(p["cloud"], p["clouds_yaml"])
        if p["state"] == "absent":
            gone = kos.teardown(conn, p["cluster"], wait=p["timeout"])
            forgotten = openstack_keys.forget_host_keys(p["known_hosts"], p["cluster"]) if p["known_hosts"] else []
            module.exit_json(**gone, forgotten=forgotten)
        spec = kos.ClusterSpec(
            name=p["cluster"],
            image=p["image"],
            flavor=p["flavor"],
            network=p["network"],
            public_key=p["public_key"],
            taskmanagers=p["taskmanagers"],
            kafka_brokers=p["kafka_brokers"],
            kafka_port=p["kafka_port"],
            ssh_cidr=p["ssh_cidr"],
            rest_port=p["rest_port"],
            server_group_policy=p["server_group_policy"],
            boot_timeout=p["timeout"],
            bastion=p["bastion"],
            floating_network=p["floating_network"],
            admin_cidr=p["admin_cidr"],
        )
        result = kos.provision(conn, spec)
        # never trust on first use: the keys each server printed on its console, before any SSH
        keys = (
            openstack_keys.pin_host_keys(conn, p["cluster"], p["known_hosts"], wait=p["host_key_timeout"])
            if p["known_hosts"]
            else {"pinned": []}
        )
        result.update(pinned=keys["pinned"], changed=result["changed"] or bool(keys["pinned"]))
        module.exit_json(**result)
    except KhaosError as e:
        module.fail_json(msg=str(e))


if __name__ == "__main__":
    main()
