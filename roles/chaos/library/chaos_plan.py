#!/usr/bin/python
"""Ansible module: plan a failure (targets and fire time) with khaos_controller.chaos.plan.

Runs on the controller with the khaos venv's Python (delegate_to: localhost).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: chaos_plan
short_description: Decide which hosts or processes to kill and when
options:
  mode: {type: str, required: true, choices: [process, host], description: Kill a JVM or a whole host.}
  component: {type: str, default: taskmanager, choices: [taskmanager, jobmanager, kafka], description: Which JVM.}
  target: {type: str, required: true, description: "Host name(s), group:NAME, random or sink."}
  count: {type: int, default: 1, description: Hosts to pick with target=random.}
  seed: {type: int, description: Seed of the random pick.}
  timing: {type: str, default: now, choices: [now, before_checkpoint], description: When to fire.}
  margin_s: {type: float, default: 3.0, description: Seconds before the next checkpoint (before_checkpoint).}
  max_hosts: {type: int, default: 1, description: Refuse to kill more hosts than this.}
  allow_jobmanager: {type: bool, default: false, description: Allow killing the JobManager.}
  groups: {type: dict, required: true, description: Inventory groups (the groups variable).}
  group_names: {type: dict, default: {}, description: "The groups' variables of roles/khaos_defaults ({flink_jobmanager_group: NAME, ...}); unset ones keep their defaults."}
  addresses: {type: dict, required: true, description: Inventory host -> address.}
  rest_url: {type: str, description: JobManager REST URL (needed for sink and before_checkpoint).}
  job: {type: str, description: Job name or id (default the only running job).}
  lead_s: {type: float, default: 2.0, description: Least time between planning and firing.}
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", required=True, choices=["process", "host"]),
            component=dict(type="str", default="taskmanager", choices=["taskmanager", "jobmanager", "kafka"]),
            target=dict(type="str", required=True),
            count=dict(type="int", default=1),
            seed=dict(type="int"),
            timing=dict(type="str", default="now", choices=["now", "before_checkpoint"]),
            margin_s=dict(type="float", default=3.0),
            max_hosts=dict(type="int", default=1),
            allow_jobmanager=dict(type="bool", default=False),
            groups=dict(type="dict", required=True),
            group_names=dict(type="dict", default={}),
            addresses=dict(type="dict", required=True),
            rest_url=dict(type="str"),
            job=dict(type="str"),
            lead_s=dict(type="float", default=2.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        from khaos_controller.chaos.plan import make_plan
        from khaos_controller.errors import KhaosError
        from khaos_controller.flink.client import FlinkClient
        from khaos_controller.infra.inventory import GroupNames, Groups
    except ImportError:
        module.fail_json(msg="khaos_controller is not importable: run from the khaos venv")
    try:
        client = FlinkClient(p["rest_url"]) if p["rest_url"] else None
        plan = make_plan(
            p["mode"],
            p["component"],
            p["target"],
            Groups(p["groups"], GroupNames.of(p["group_names"])),
            p["addresses"],
            timing=p["timing"],
            margin_s=p["margin_s"],
            count=p["count"],
            seed=p["seed"],
            max_hosts=p["max_hosts"],
            allow_jobmanager=p["allow_jobmanager"],
            client=client,
            job=p["job"],
            lead_s=p["lead_s"],
        )
    except KhaosError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=False, plan=plan.as_dict(), description=plan.describe())


if __name__ == "__main__":
    main()
