#!/usr/bin/python
"""Ansible module: run a jar on a Flink session cluster and wait until every task runs.

Runs on the controller (delegate_to: localhost) with the khaos venv's Python, and uses
khaos_controller.flink.client, the same REST client the controller daemon uses.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: flink_job
short_description: Submit a Flink job (jar) over REST and wait until it runs
options:
  rest_url: {type: str, required: true, description: JobManager REST URL.}
  name: {type: str, required: true, description: Job name; a running job of that name means nothing to do.}
  jar: {type: path, description: Jar on the controller (required with state=running).}
  entry_class: {type: str, description: Main class (default from the jar manifest).}
  args: {type: list, elements: str, default: [], description: Program arguments.}
  checkpoint_interval: {type: str, description: "execution.checkpointing.interval for this job, e.g. 10s."}
  parallelism: {type: int, description: Job parallelism.}
  savepoint: {type: str, description: Savepoint to start from.}
  config: {type: dict, default: {}, description: More per-job Flink settings (flinkConfiguration).}
  wait_timeout: {type: int, default: 120, description: Seconds to wait for every task to run.}
  state: {type: str, default: running, choices: [running, absent], description: absent cancels the job.}
  record: {type: path, description: "Deployment record written after a submit (jar, args, settings, job id): what reconfigure.yml resubmits."}
"""

import os
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rest_url=dict(type="str", required=True),
            name=dict(type="str", required=True),
            jar=dict(type="path"),
            entry_class=dict(type="str"),
            args=dict(type="list", elements="str", default=[]),
            checkpoint_interval=dict(type="str"),
            parallelism=dict(type="int"),
            savepoint=dict(type="str"),
            config=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=120),
            state=dict(type="str", default="running", choices=["running", "absent"]),
            record=dict(type="path"),
        ),
        required_if=[("state", "running", ["jar"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.flink import deployment
        from khaos_controller.flink.client import FlinkClient
    except ImportError:
        module.fail_json(
            msg="khaos_controller is not importable: run the playbook from the khaos venv "
            "(ansible_python_interpreter of localhost must be that venv's python)"
        )
    ci = p["checkpoint_interval"]
    try:
        ci_s = deployment.seconds(ci) if ci is not None else None
    except KhaosError:
        ci_s = None
    if ci is not None and not ci_s:
        module.fail_json(msg=f"checkpoint_interval {ci!r} is not a positive duration like 10s, 500ms or 2min")
    if p["state"] == "running" and not os.path.isfile(p["jar"]):
        module.fail_json(msg=f"jar {p['jar']} does not exist on the controller (build the sample job with `make job`)")
    client = FlinkClient(p["rest_url"])
    try:
        running = [
            j
            for j in client.get("/jobs/overview")["jobs"]
            if j["name"] == p["name"] and j["state"] not in ("FINISHED", "CANCELED", "FAILED")
        ]
        if p["state"] == "absent":
            if running and not module.check_mode:
                for j in running:
                    client.cancel(j["jid"])
            module.exit_json(changed=bool(running), job_ids=[j["jid"] for j in running])
        if running:
            job_id = running[0]["jid"]
            interval_ms = client.checkpoint_interval_ms(job_id)
            want_ms = ci_s * 1000 if ci else interval_ms
            if abs(interval_ms - want_ms) > 1:
                module.fail_json(
                    msg=f"job {p['name']} ({job_id}) already runs with checkpoint interval "
                    f"{interval_ms / 1000:g}s, not {ci}: use playbooks/reconfigure.yml to change it",
                    job_id=job_id,
                )
            module.exit_json(changed=False, job_id=job_id, checkpoint_interval_ms=interval_ms)
        if module.check_mode:
            module.exit_json(changed=True)
        _submit(module, client, ci_s)
    except KhaosError as e:  # FlinkError included
        module.fail_json(msg=str(e))


def _submit(module, client, ci_s):
    """Submit the job (its record first, when one is kept: deployment.deploy), after finishing a change a
    crash left pending in that record; exits the module."""
    from khaos_controller.flink import deployment
    from khaos_controller.flink import record as deployment_record

    p = module.params
    record = deployment_record.new_record(
        p["name"],
        p["rest_url"],
        p["jar"],
        p["args"],
        entry_class=p["entry_class"],
        parallelism=p["parallelism"],
        config=p["config"],
        interval_s=ci_s,
    )
    path = Path(p["record"]) if p["record"] else None
    pending = deployment_record.load(path).pending if path is not None and path.exists() else None
    if pending and pending.phase:
        deployment.reconcile(client, path, timeout=p["wait_timeout"])  # finish what a crash left first
        if client.live_jobs(p["name"]):
            module.exit_json(changed=True, job_id=client.live_jobs(p["name"])[0]["jid"], reconciled=True)
    t0 = time.monotonic()
    if path is not None:
        result = deployment.deploy(client, path, record, p["savepoint"], p["wait_timeout"])
    else:
        result = {
            "job_id": deployment.launch(client, record, 0, ci_s, p["savepoint"], p["wait_timeout"]),
            "jar_id": record.jar_id,
        }
    module.exit_json(
        changed=True,
        job_id=result["job_id"],
        jar_id=result["jar_id"],
        running_after_s=round(time.monotonic() - t0, 2),
        checkpoint_interval_ms=client.checkpoint_interval_ms(result["job_id"]),
    )


if __name__ == "__main__":
    main()
