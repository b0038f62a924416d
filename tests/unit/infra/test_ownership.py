"""Root never follows a link a service user planted: the hand-over module's walk, and the roles' file tasks
(tests/lab/test_symlink_attack.py runs the attack itself on lab hosts)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import yaml

from khaos_controller import REPO_ROOT

ROLES = REPO_ROOT / "roles"
FOREIGN = 54321  # an owner nothing here has: in check mode every entry the walk reaches is reported


def _handover():
    spec = importlib.util.spec_from_file_location(
        "khaos_handover", ROLES / "khaos_controller" / "library" / "khaos_handover.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


handover = _handover()


def test_handover_walks_the_tree_and_never_follows_a_link(tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret").write_text("x")
    top = tmp_path / "state"
    (top / "runs" / "job").mkdir(parents=True)
    (top / "job.json").write_text("{}")
    (top / "runs" / "job" / "out").write_text("")
    (top / "dirlink").symlink_to(outside)
    (top / "filelink").symlink_to(outside / "secret")
    os.link(outside / "secret", top / "hardlink")  # a second name of a file elsewhere: left alone
    handed = handover.handover(str(top), FOREIGN, FOREIGN, check=True)
    assert sorted(handed) == sorted(f"{top}{p}" for p in ("", "/job.json", "/runs", "/runs/job", "/runs/job/out"))


@pytest.mark.parametrize("where", ["top", "parent"])
def test_handover_refuses_a_link_anywhere_in_the_path_of_a_top_directory(tmp_path, where):
    real = tmp_path / "real" / "state"
    real.mkdir(parents=True)
    if where == "top":
        (tmp_path / "state").symlink_to(real)
        path = tmp_path / "state"
    else:
        (tmp_path / "link").symlink_to(tmp_path / "real")
        path = tmp_path / "link" / "state"
    with pytest.raises(handover.Refused, match="is a link or not a directory"):
        handover.handover(str(path), FOREIGN, FOREIGN, check=True)
    with pytest.raises(handover.Refused, match="not a plain absolute path"):
        handover.handover("relative/state", FOREIGN, FOREIGN, check=True)


def _tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if "name" in node:
            yield node
        for key in ("block", "rescue", "always"):
            yield from _tasks(node.get(key, []))


ROLE_TASKS = sorted(ROLES.glob("*/tasks/*.yml")) + sorted(ROLES.glob("*/handlers/*.yml"))
SERVICE_USERS = ("{{ flink_user }}", "{{ kafka_user }}", "{{ khaos_controller_user }}", "{{ checkpoint_store_user }}")


@pytest.mark.parametrize("path", ROLE_TASKS, ids=lambda p: str(p.relative_to(ROLES)))
def test_roles_follow_no_link_into_a_service_users_directory(path):
    """No recursive file task (it follows links in trees a user may own); every directory given to a
    service user is made with follow: false; no become to a service user (the ctl scripts and commands
    drop to it with setpriv instead, so root runs nothing from that user's directories)."""
    for task in _tasks(yaml.safe_load(path.read_text())):
        args = task.get("ansible.builtin.file") or {}
        assert not args.get("recurse"), f"{path}: {task['name']}: recurse"
        if args.get("owner") in SERVICE_USERS:
            assert args.get("follow") is False, f"{path}: {task['name']}: no follow: false"
        assert "become_user" not in task, f"{path}: {task['name']}: become_user"
