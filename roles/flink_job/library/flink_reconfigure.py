#!/usr/bin/python
"""Ansible module: change a running job's checkpoint interval safely (khaos_controller.flink.deployment)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: flink_reconfigure
short_description: Stop with savepoint, resubmit with a new checkpoint interval, roll back on failure
options:
  rest_url: {type: str, required: true, description: JobManager REST URL.}
  record: {type: path, required: true, description: Deployment record written by the flink_job module.}
  checkpoint_interval: {type: str, description: "New interval, e.g. 10s (required unless reconcile)."}
  savepoint_dir: {type: str, description: Savepoint target directory (default the cluster's).}
  timeout: {type: int, default: 180, description: Seconds a savepoint or a resubmit may take.}
  reconcile: {type: bool, default: false, description: Only finish a change a crash left pending.}
  keep_savepoints: {type: int, default: 5, description: Savepoints of its changes a job keeps (older ones disposed through Flink).}
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rest_url=dict(type="str", required=True),
            record=dict(type="path", required=True),
            checkpoint_interval=dict(type="str"),
            savepoint_dir=dict(type="str"),
            timeout=dict(type="int", default=180),
            reconcile=dict(type="bool", default=False),
            keep_savepoints=dict(type="int", default=5),
        ),
        required_if=[("reconcile", False, ["checkpoint_interval"])],
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.flink import deployment
        from khaos_controller.flink.client import FlinkClient
    except ImportError:
        module.fail_json(msg="khaos_controller is not importable: run from the khaos venv")
    client = FlinkClient(p["rest_url"])
    try:
        result = deployment.reconcile(client, Path(p["record"]), timeout=p["timeout"])
        if not p["reconcile"]:
            changed_before = result["action"] != "none"
            result = deployment.reconfigure(
                client,
                Path(p["record"]),
                p["checkpoint_interval"],
                savepoint_dir=p["savepoint_dir"] or None,
                timeout=p["timeout"],
                keep_savepoints=p["keep_savepoints"],
            )
            result["changed"] = result["changed"] or changed_before
        else:
            result["changed"] = result["action"] != "none"
    except KhaosError as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
