"""The playbooks and roles without a lab: every verb playbook's preflight, the tag fix, the one home of
the shared cluster facts (roles/khaos_defaults). Runs ansible-playbook on localhost only; touches no host."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from support.playbook import playbook

from khaos_controller import REPO_ROOT as REPO

PLAYBOOKS = REPO / "playbooks"
ROLES = REPO / "roles"

# playbook -> the groups its preflight demands (group, exactly/at_least)
NEEDS = {
    "checkpoint_store": [("checkpoint_store", "exactly")],
    "controller": [("khaos_controller", "at_least"), ("flink_jobmanager", "exactly")],
    "deploy_job": [("flink_jobmanager", "exactly")],
    "flink_cluster": [("flink_jobmanager", "exactly"), ("flink_taskmanager", "at_least")],
    "inject_failure": [("flink_jobmanager", "exactly"), ("flink_taskmanager", "at_least")],
    "kafka": [("kafka", "at_least")],
    "reconfigure": [("flink_jobmanager", "exactly")],
    "provision": [],
    "teardown": [],
}
VERBS = sorted(p.stem for p in PLAYBOOKS.glob("*.yml") if p.stem != "preflight")

GOOD_INVENTORY = """\
[flink_jobmanager]
jm ansible_connection=local ansible_host=127.0.0.1
[flink_taskmanager]
tm ansible_connection=local ansible_host=127.0.0.1
[flink:children]
flink_jobmanager
flink_taskmanager
[khaos_controller]
bastion ansible_connection=local
[kafka]
broker ansible_connection=local ansible_host=127.0.0.1
[checkpoint_store]
store ansible_connection=local ansible_host=127.0.0.1
"""


def fatal_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("fatal:")]


def test_every_verb_playbook_is_known():
    assert sorted(NEEDS) == VERBS


@pytest.mark.parametrize("verb", sorted(NEEDS))
def test_preflight_is_imported_first_with_the_groups_it_needs(verb):
    plays = yaml.safe_load((PLAYBOOKS / f"{verb}.yml").read_text())
    first = plays[0]
    assert first.get("ansible.builtin.import_playbook") == "preflight.yml", f"{verb}.yml: preflight is not first"
    groups = (first.get("vars") or {}).get("khaos_preflight_groups", [])
    kinds = [("exactly" if "exactly" in g else "at_least") for g in groups]
    # the group names come from the shared defaults (flink_jobmanager_group, ...), never spelled out here
    assert [g["group"] for g in groups] == [f"{{{{ {name}_group }}}}" for name, _ in NEEDS[verb]]
    assert kinds == [k for _, k in NEEDS[verb]]


@pytest.mark.parametrize("verb", [v for v in sorted(NEEDS) if NEEDS[v]])
def test_preflight_fails_in_one_line_without_the_group(verb, tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text("localhost ansible_connection=local\n")
    proc = playbook(["-i", str(inv), str(PLAYBOOKS / f"{verb}.yml"), "--check"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    [fatal] = fatal_lines(out)
    msg = json.loads(fatal.split("=>", 1)[1])["msg"]
    group, kind = NEEDS[verb][0]
    assert f"needs {kind.replace('_', ' ')} one host in group '{group}'" in msg and "has 0" in msg, msg
    assert str(inv) in msg and "\n" not in msg
    # nothing after the preflight ran
    assert re.findall(r"^PLAY \[(.*?)\]", out, re.M) == ["Preflight - Ansible version and inventory groups"], out


def test_preflight_counts_the_jobmanagers(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text("[flink_jobmanager]\njm1 ansible_connection=local\njm2 ansible_connection=local\n")
    proc = playbook(["-i", str(inv), str(PLAYBOOKS / "deploy_job.yml"), "--check"], tmp_path)
    [fatal] = fatal_lines(proc.stdout)
    assert "needs exactly one host in group 'flink_jobmanager' (the JobManager) and has 2" in fatal


def test_preflight_follows_a_renamed_group(tmp_path):
    """-e flink_jobmanager_group=... moves the check and the play together."""
    inv = tmp_path / "hosts.ini"
    inv.write_text("[flink_jobmanager]\njm ansible_connection=local\n")
    proc = playbook(
        ["-i", str(inv), str(PLAYBOOKS / "reconfigure.yml"), "--check", "-e", "flink_jobmanager_group=jobmanagers"],
        tmp_path,
    )
    assert "group 'jobmanagers'" in fatal_lines(proc.stdout)[0]
    listed = playbook(
        [
            "-i",
            str(inv),
            str(PLAYBOOKS / "reconfigure.yml"),
            "--list-hosts",
            "-e",
            "flink_jobmanager_group=flink_jobmanager",
        ],
        tmp_path,
    )
    assert "play #2 (flink_jobmanager)" in listed.stdout and "      jm" in listed.stdout, listed.stdout


def test_every_preflight_passes_on_a_complete_inventory(tmp_path):
    """Only the preflight plays of all 7 playbooks (with the vars each passes), on an inventory with every group."""
    inv = tmp_path / "hosts.ini"
    inv.write_text(GOOD_INVENTORY)
    plays = []
    for verb in VERBS:
        first = dict(yaml.safe_load((PLAYBOOKS / f"{verb}.yml").read_text())[0])
        first["ansible.builtin.import_playbook"] = str(PLAYBOOKS / "preflight.yml")
        first["name"] = f"{verb}: {first['name']}"
        plays.append(first)
    pb = tmp_path / "preflights.yml"
    pb.write_text(yaml.safe_dump(plays))
    proc = playbook(["-i", str(inv), str(pb)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("TASK [Check the inventory groups]") == len(VERBS)
    assert "failed=0" in proc.stdout and "fatal:" not in proc.stdout


CONTROLLER_TASKS = [
    "Check that a model is given",
    "Create the venv",
    "Write the daemon config",
    "Install the control script (no systemd)",
    "Install the re-profile cron entry (no systemd)",
    "Start the daemon (control script)",
    "Stop the daemon (control script)",
    "Wait for khaos_up on /metrics",
]


def test_tag_khaos_controller_selects_every_task_of_the_role(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text(GOOD_INVENTORY)
    proc = playbook(
        ["-i", str(inv), str(PLAYBOOKS / "controller.yml"), "--tags", "khaos_controller", "--list-tasks"], tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in CONTROLLER_TASKS:
        assert re.search(rf"khaos_controller : {re.escape(name)}\s+TAGS: \[.*khaos_controller", proc.stdout), name
    # the role's own tags do it, not only the playbook's: the role in a play with no tags of its own
    pb = tmp_path / "bare.yml"
    pb.write_text("- name: Bare\n  hosts: khaos_controller\n  gather_facts: false\n  roles: [khaos_controller]\n")
    bare = playbook(["-i", str(inv), str(pb), "--tags", "khaos_controller", "--list-tasks"], tmp_path)
    assert bare.returncode == 0, bare.stdout + bare.stderr
    for name in [*CONTROLLER_TASKS, "Restart the daemon if anything changed"]:
        assert re.search(rf"khaos_controller : {re.escape(name)}\s+TAGS: \[khaos_controller\]", bare.stdout), name


def _tasks(node):
    """Every task-like mapping in a parsed playbook or task file (blocks included)."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            if key in node:
                yield from _tasks(node[key])


def test_no_tagged_dynamic_include_without_apply():
    """A tagged include_tasks/include_role without apply.tags: --tags runs the include and skips what it includes."""
    bad = []
    for path in sorted(list(PLAYBOOKS.glob("*.yml")) + list(ROLES.glob("*/tasks/*.yml"))):
        for task in _tasks(yaml.safe_load(path.read_text())):
            for key in (
                "ansible.builtin.include_tasks",
                "ansible.builtin.include_role",
                "include_tasks",
                "include_role",
            ):
                if key in task and task.get("tags"):
                    args = task[key] if isinstance(task[key], dict) else {}
                    if not (args.get("apply") or task.get("apply") or {}).get("tags"):
                        bad.append(f"{path.relative_to(REPO)}: {task.get('name')}")
    assert not bad, bad


# Re-derivations of the shared facts that must live only in roles/khaos_defaults.
FORBIDDEN = [
    r"default\(\s*'flink_jobmanager'\s*\)",  # the JobManager group fallback
    r"groups\[\s*'flink_jobmanager'\s*\]",  # the JobManager group spelled out
    r"groups\[[^\]]*\]\s*\|\s*first",  # the JobManager host derived again
    r"default\(\s*8081\s*\)",
    r"\b8081\b",  # the REST port
    r"http://\{\{",  # the REST URL template
    r"default\(\s*'/var/lib/khaos/state'\s*\)",  # the state dir fallback
    r"default\(\s*'/srv/flink'\s*\)",  # the shared dir fallback
]


def test_shared_facts_live_in_one_place():
    shared = ROLES / "khaos_defaults" / "defaults" / "main.yml"
    facts = yaml.safe_load(shared.read_text())
    for name in (
        "flink_hosts",
        "flink_jobmanager_group",
        "flink_taskmanager_group",
        "khaos_controller_group",
        "flink_rest_port",
        "khaos_state_dir",
        "khaos_shared_dir",
        "khaos_jobmanager_host",
        "khaos_rest_url",
        "checkpoint_store_group",
        "checkpoint_store_port",
        "checkpoint_store_endpoint",
    ):
        assert name in facts, name
    files = [
        p
        for p in (
            list(ROLES.glob("*/defaults/*.yml"))
            + list(ROLES.glob("*/vars/*.yml"))
            + list(ROLES.glob("*/tasks/*.yml"))
            + list(ROLES.glob("*/templates/*.j2"))
            + list(PLAYBOOKS.glob("*.yml"))
        )
        if p != shared
    ]
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in sorted(files)
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if not line.lstrip().startswith("#") and any(re.search(rx, line) for rx in FORBIDDEN)
    ]
    assert not hits, "\n".join(hits)
    # and no other role defines them again
    for path in ROLES.glob("*/defaults/*.yml"):
        if path != shared:
            again = set(yaml.safe_load(path.read_text()) or {}) & set(facts)
            assert not again, f"{path.relative_to(REPO)} redefines {sorted(again)}"


@pytest.mark.parametrize(
    "role", ["chaos", "checkpoint_store", "flink", "flink_job", "kafka", "khaos_controller", "openstack"]
)
def test_roles_depend_on_the_shared_defaults(role):
    meta = yaml.safe_load((ROLES / role / "meta" / "main.yml").read_text())
    deps = [d["role"] if isinstance(d, dict) else d for d in meta.get("dependencies") or []]
    assert deps == ["khaos_defaults"]


def test_ansible_cfg_points_at_existing_dirs():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    for key in ("roles_path", "library", "inventory_plugins"):
        if cfg.has_option("defaults", key):
            for part in cfg.get("defaults", key).split(":"):
                assert (REPO / part).is_dir(), f"ansible.cfg {key} = {part}: no such directory"


def test_playbooks_check_host_keys_whatever_ansible_runner_defaults_to(tmp_path):
    """ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False when it is unset, which puts
    StrictHostKeyChecking=no before the inventory's own ssh options; every run must turn it back on."""
    from khaos_controller.infra import ansible

    assert ansible._env()["ANSIBLE_HOST_KEY_CHECKING"] == "True"


# ----------------------------------------------------------------------------- nothing is templated

LOOKUP = "x{{ lookup('pipe', 'touch %s') }}"
PROBE_PLAY = """\
- name: Show what the extra vars became
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish them
      ansible.builtin.set_stats:
        data: {name: "{{ probe_name }}", deep: "{{ probe_deep.args[1] }}", rate: "{{ probe_rate }}"}
"""


def test_literal_marks_every_string_at_any_depth_and_leaves_the_rest():
    from khaos_controller.infra.ansible import literal

    value = {"name": "x{{ 1 }}", "args": ["--rate", 5, {"k": "v", "n": None}], "t": ("a",), "on": True, "f": 1.5}
    before = repr(value)
    assert literal(value) == {
        "name": {"__ansible_unsafe": "x{{ 1 }}"},
        "args": [{"__ansible_unsafe": "--rate"}, 5, {"k": {"__ansible_unsafe": "v"}, "n": None}],
        "t": [{"__ansible_unsafe": "a"}],
        "on": True,
        "f": 1.5,
    }
    assert repr(value) == before  # the caller's dict is not changed
    assert literal(7) == 7 and literal(None) is None and literal("") == {"__ansible_unsafe": ""}


def _probe(tmp_path: Path) -> tuple[Path, Path, dict]:
    play, inv = tmp_path / "probe.yml", tmp_path / "hosts.ini"
    play.write_text(PROBE_PLAY)
    inv.write_text("localhost ansible_connection=local\n")
    marker = tmp_path / "pwned"
    extravars = {
        "probe_name": LOOKUP % marker,
        "probe_deep": {"args": ["--name", LOOKUP % marker]},
        "probe_rate": 1500,
    }
    return play, inv, extravars


def test_extra_vars_reach_a_play_literally_and_their_lookups_never_run(tmp_path):
    from khaos_controller.infra import ansible

    play, inv, extravars = _probe(tmp_path)
    result = ansible.run_playbook(str(play), inv, extravars=extravars, base_dir=tmp_path / "runs")
    marker = tmp_path / "pwned"
    assert result.data == {"name": LOOKUP % marker, "deep": LOOKUP % marker, "rate": 1500}
    assert not marker.exists()


def test_ansible_templates_plain_extra_vars_which_is_why_they_are_marked(tmp_path):
    """The reason for literal(): ansible-runner passes its extra vars as ``-e @env/extravars``, and Ansible
    (2.19: a file given with -e @ is trusted as templates) runs a lookup in a plain string value."""
    import ansible_runner

    from khaos_controller.infra import ansible

    play, inv, extravars = _probe(tmp_path)
    runner = ansible_runner.run(
        private_data_dir=str(ansible.run_dir(tmp_path / "runs", "plain")),
        playbook=str(play),
        inventory=str(inv),
        extravars=extravars,
        quiet=True,
        envvars=ansible._env(),
    )
    marker = tmp_path / "pwned"
    assert runner.rc == 0 and marker.exists()  # the lookup ran
    assert ansible.result_of(runner).data["name"] == "x"


def test_the_controller_role_refuses_a_job_name_it_cannot_put_in_a_unit_or_a_script(tmp_path):
    from khaos_controller.errors import KhaosError
    from khaos_controller.infra import ansible

    inv = tmp_path / "hosts.ini"
    inv.write_text(GOOD_INVENTORY)
    marker = tmp_path / "pwned"
    with pytest.raises(KhaosError) as e:
        ansible.run_playbook(
            "controller",
            inv,
            extravars={
                "khaos_controller_job": f"a;touch {marker}",
                "khaos_controller_model": str(tmp_path / "model.json"),
                "ansible_python_interpreter": sys.executable,
            },
            base_dir=tmp_path / "runs",
        )
    assert "Check that the job name" in str(e.value) and "letters, digits" in str(e.value)
    assert not marker.exists()


def test_what_a_module_returns_is_never_templated(tmp_path):
    """flink_job / flink_reconfigure return what Flink answered (a job's name is whoever submitted it):
    registered, set as a fact and shown, a module's result stays text."""
    from khaos_controller.infra import ansible

    marker = tmp_path / "pwned"
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "flink_echo.py").write_text(
        "from ansible.module_utils.basic import AnsibleModule\n"
        "m = AnsibleModule(argument_spec={})\n"
        f"m.exit_json(changed=False, name={LOOKUP % marker!r}, jobs=[{{'name': {LOOKUP % marker!r}}}])\n"
    )
    play = tmp_path / "module.yml"
    play.write_text(
        "- name: A module's answer\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Ask\n      flink_echo: {}\n      register: answer\n"
        '    - name: Keep it\n      ansible.builtin.set_fact:\n        kept: "{{ answer.jobs[0].name }}"\n'
        '    - name: Show it\n      ansible.builtin.debug:\n        msg: "{{ answer.name }} {{ kept }}"\n'
        '    - name: Publish it\n      ansible.builtin.set_stats:\n        data: {name: "{{ kept }}"}\n'
    )
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    result = ansible.run_playbook(str(play), inv, base_dir=tmp_path / "runs")
    assert result.data == {"name": LOOKUP % marker} and not marker.exists()
