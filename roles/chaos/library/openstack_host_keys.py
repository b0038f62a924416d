#!/usr/bin/python
"""Ansible module: pin the SSH host keys servers of a Khaos cluster printed on their console logs.

A server that came back (started again, hard-rebooted or replaced by a new one) may have new host
keys: they are read from its console log through the API (what cloud-init printed), never accepted
on first contact. Uses khaos_controller.infra.openstack_keys.pin_host_keys.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: openstack_host_keys
short_description: Pin servers' SSH host keys from their console logs into the cluster's known_hosts
options:
  cloud: {type: str, description: Entry of clouds.yaml (default OS_CLOUD).}
  clouds_yaml: {type: path, description: clouds.yaml to read (default the standard places).}
  cluster: {type: str, required: true, description: Cluster name.}
  names: {type: list, elements: str, required: true, description: Server names (inventory host names).}
  known_hosts: {type: path, required: true, description: The cluster's known_hosts (khaos_known_hosts of the inventory).}
  timeout: {type: int, default: 300, description: Seconds to wait for the keys on the consoles; then it fails.}
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cloud=dict(type="str"),
            clouds_yaml=dict(type="path"),
            cluster=dict(type="str", required=True),
            names=dict(type="list", elements="str", required=True),
            known_hosts=dict(type="path", required=True),
            timeout=dict(type="int", default=300),
        )
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.infra import openstack as kos
        from khaos_controller.infra.openstack_keys import pin_host_keys
    except ImportError:
        module.fail_json(msg="khaos_controller is not importable: run from the khaos venv")
    try:
        conn = kos.connect(p["cloud"], p["clouds_yaml"])
        # force: a server that was started again may print keys other than the pinned ones
        keys = pin_host_keys(conn, p["cluster"], p["known_hosts"], names=p["names"], wait=p["timeout"], force=True)
    except KhaosError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=bool(keys["pinned"]), pinned=keys["pinned"])


if __name__ == "__main__":
    main()
