#!/usr/bin/python
"""Ansible module: wait until a Kafka cluster answers and every expected broker has registered.

Runs on the controller (delegate_to: localhost) with the khaos venv's Python and uses
khaos_controller.kafka.admin (confluent-kafka's admin client), like the topic module.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_health
short_description: Wait for a Kafka cluster's brokers (Metadata through the admin API)
options:
  bootstrap: {type: str, required: true, description: "Bootstrap address, host:port[,host:port...]."}
  brokers: {type: list, elements: int, required: true, description: Node ids that must be registered.}
  cluster_id: {type: str, description: The cluster id the brokers must report (a different one fails).}
  timeout: {type: float, default: 120, description: Seconds to wait.}
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bootstrap=dict(type="str", required=True),
            brokers=dict(type="list", elements="int", required=True),
            cluster_id=dict(type="str"),
            timeout=dict(type="float", default=120.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.kafka import admin as kafka
    except ImportError:
        module.fail_json(
            msg="khaos_controller is not importable: run the playbook from the khaos venv "
            "(ansible_python_interpreter of localhost must be that venv's python)"
        )
    try:
        facts = kafka.wait_brokers(p["bootstrap"], p["brokers"], timeout=p["timeout"], cluster_id=p["cluster_id"] or "")
    except KhaosError as e:
        module.fail_json(msg=str(e))
    module.exit_json(
        changed=False,
        cluster_id=facts["cluster_id"],
        controller_id=facts["controller_id"],
        brokers={str(k): v for k, v in facts["brokers"].items()},
        waited_s=facts["waited_s"],
    )


if __name__ == "__main__":
    main()
