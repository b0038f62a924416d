#!/usr/bin/python
"""Ansible module: wait until the checkpoint store answers a signed S3 request, then create the buckets that
do not exist yet.

Runs on the controller (delegate_to: localhost) with the khaos venv's Python and uses
khaos_controller.infra.s3 (requests signed with AWS Signature V4), like the kafka role's modules.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_store_bucket
short_description: Wait for an S3 endpoint and make buckets exist
options:
  endpoint: {type: str, required: true, description: "S3 endpoint, http(s)://host:port."}
  access_key: {type: str, required: true, no_log: true, description: Access key.}
  secret_key: {type: str, required: true, no_log: true, description: Secret key.}
  buckets: {type: list, elements: str, default: [], description: Buckets that must exist (created if missing).}
  timeout: {type: float, default: 120, description: Seconds to wait for the endpoint to answer.}
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            access_key=dict(type="str", required=True, no_log=True),
            secret_key=dict(type="str", required=True, no_log=True),
            buckets=dict(type="list", elements="str", default=[]),
            timeout=dict(type="float", default=120.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        from khaos_controller.errors import KhaosError
        from khaos_controller.infra import s3
    except ImportError:
        module.fail_json(
            msg="khaos_controller is not importable: run the playbook from the khaos venv "
            "(ansible_python_interpreter of localhost must be that venv's python)"
        )
    try:
        store = s3.S3(p["endpoint"], p["access_key"], p["secret_key"])
        waited = s3.wait_ready(store, timeout=p["timeout"])
        created = [b for b in p["buckets"] if store.ensure_bucket(b, check_mode=module.check_mode)]
    except KhaosError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=bool(created), created=created, buckets=store.buckets(), waited_s=waited)


if __name__ == "__main__":
    main()
