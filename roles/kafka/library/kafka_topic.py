#!/usr/bin/python
"""Ansible module: create, update or delete Kafka topics through the admin API.

Runs on the controller (delegate_to: localhost) with the khaos venv's Python and uses
khaos_controller.kafka.admin (confluent-kafka's admin client): no JVM starts per topic, and the
comparison with what the broker has is exact. Idempotent: a topic that is already so is unchanged.
One topic (name, partitions, ...) or a list of them (topics: the role's kafka_topics) per call; a list
is one task, so a failure is one line (the first topic that cannot be made so), not "items failed".
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kafka_topic
short_description: Kafka topics with their partitions, replication and configs
options:
  bootstrap: {type: str, required: true, description: "Bootstrap address, host:port[,host:port...]."}
  name: {type: str, description: Topic name (or give topics).}
  partitions: {type: int, description: "Partitions (default: the broker's num.partitions); more than it has are added, fewer fail."}
  replication: {type: int, description: "Replication factor (default: the broker's default.replication.factor); a change fails."}
  retention_ms: {type: int, description: "retention.ms of the topic (-1: keep forever)."}
  config: {type: dict, default: {}, description: "More topic configs, e.g. {cleanup.policy: compact}."}
  state: {type: str, default: present, choices: [present, absent], description: absent deletes the topic.}
  topics:
    type: list
    elements: dict
    description: "Several topics at once, each {name, partitions, replication, retention_ms, config, state}."
  timeout: {type: float, default: 30, description: Seconds to wait for the cluster and for each change.}
"""

from ansible.module_utils.basic import AnsibleModule

_FIELDS = ("name", "partitions", "replication", "retention_ms", "config")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bootstrap=dict(type="str", required=True),
            name=dict(type="str"),
            partitions=dict(type="int"),
            replication=dict(type="int"),
            retention_ms=dict(type="int"),
            config=dict(type="dict", default={}),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            topics=dict(type="list", elements="dict"),
            timeout=dict(type="float", default=30.0),
        ),
        mutually_exclusive=[("name", "topics")],
        required_one_of=[("name", "topics")],
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
    entries = p["topics"] if p["topics"] is not None else [{k: p[k] for k in (*_FIELDS, "state")}]
    results = []
    try:
        wanted = []
        for entry in entries:  # every entry is checked before the cluster is touched
            spec = kafka.TopicSpec.of(entry)
            state = entry.get("state") or "present"
            if state not in ("present", "absent"):
                raise KhaosError(f"kafka topic {spec.name}: state {state!r} is not present or absent")
            wanted.append((spec, state))
        if wanted:
            client = kafka.admin(p["bootstrap"], timeout=min(p["timeout"], 10.0))
        for spec, state in wanted:
            if state == "absent":
                done = kafka.delete_topic(client, spec.name, check_mode=module.check_mode, timeout=p["timeout"])
            else:
                done = kafka.ensure_topic(client, spec, check_mode=module.check_mode, timeout=p["timeout"])
            results.append({"topic": spec.name, "state": state, "config": spec.config, **done})
    except KhaosError as e:
        module.fail_json(msg=str(e), topics=results)
    module.exit_json(changed=any(r["changed"] for r in results), topics=results)


if __name__ == "__main__":
    main()
