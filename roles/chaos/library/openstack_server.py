#!/usr/bin/python
"""Ansible module: stop, start, hard-reboot or replace one server of a Khaos cluster (at a given time)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: openstack_server
short_description: A server action through the OpenStack API, waiting for its result
options:
  cloud: {type: str, description: Entry of clouds.yaml (default OS_CLOUD).}
  clouds_yaml: {type: path, description: clouds.yaml to read (default the standard places).}
  cluster: {type: str, required: true, description: Cluster name.}
  name: {type: str, required: true, description: Server name (the inventory host name).}
  action: {type: str, required: true, choices: [stop, start, reboot_hard, replace], description: What to do.}
  at: {type: float, description: Epoch seconds to wait for before acting (the chaos plan's fire time).}
  timeout: {type: int, default: 600, description: Seconds to wait for the server's new state.}
"""

import time

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cloud=dict(type="str"),
            clouds_yaml=dict(type="path"),
            cluster=dict(type="str", required=True),
            name=dict(type="str", required=True),
            action=dict(type="str", required=True, choices=["stop", "start", "reboot_hard", "replace"]),
            at=dict(type="float"),
            timeout=dict(type="int", default=600),
        )
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.infra import openstack as kos
    except ImportError:
        module.fail_json(msg="khaos_controller is not importable: run from the khaos venv")
    try:
        conn = kos.connect(p["cloud"], p["clouds_yaml"])
        if p["at"]:
            time.sleep(max(0.0, p["at"] - time.time()))
        acted_at = time.time()
        server = kos.server_action(conn, p["cluster"], p["name"], p["action"], wait=p["timeout"])
    except KhaosError as e:
        module.fail_json(msg=str(e))
    # dead: the API confirmed it (a stopped server reached SHUTOFF; a hard reboot completed)
    kill = {
        "host": p["name"],
        "address": server["address"],
        "killed_at": acted_at,
        "action": p["action"],
        "status": server["status"],
        "done_at": time.time(),
        "dead": server["status"] == "SHUTOFF" if p["action"] == "stop" else True,
    }
    module.exit_json(changed=True, server=server, kill=kill)


if __name__ == "__main__":
    main()
