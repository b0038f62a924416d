"""The bastion's inventory (roles/khaos_controller/templates/inventory.yml.j2) writes operator values as
data: a path or host name with YAML syntax in it reads back as the same string, never as structure."""

from __future__ import annotations

import json

import jinja2
import yaml

from khaos_controller import REPO_ROOT

TEMPLATE = REPO_ROOT / "roles" / "khaos_controller" / "templates" / "inventory.yml.j2"


def render(**values) -> dict:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps  # ansible's to_json, without its options
    text = env.from_string(TEMPLATE.read_text()).render(ansible_managed="managed", **values)
    return yaml.safe_load(text)


def test_hostile_values_read_back_as_the_same_strings():
    evil_dir = "/srv/khaos: {x: 1}\n    ansible_become: true"
    host = "jm-1 # comment"
    inv = render(
        khaos_controller_state_dir=evil_dir,
        khaos_controller_user_home="/home/k'\"",
        khaos_controller_venv="/opt/v: [1]",
        flink_jobmanager_group="flink_jobmanager",
        groups={"flink_jobmanager": [host]},
        hostvars={host: {"ansible_host": "10.0.0.1\nansible_user: root"}},
    )
    assert inv["all"]["vars"] == {"khaos_state_dir": evil_dir, "ansible_remote_tmp": "/home/k'\"/.ansible/tmp"}
    [(name, hv)] = inv["all"]["children"]["flink_jobmanager"]["hosts"].items()
    assert name == host
    assert hv == {
        "ansible_host": "10.0.0.1\nansible_user: root",
        "ansible_connection": "local",
        "ansible_python_interpreter": "/opt/v: [1]/bin/python",
    }
