"""ansible-playbook of the venv on this machine, as the unit tests run it: the project's ansible.cfg and
roles, JSON results, a private local temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from khaos_controller import REPO_ROOT

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def playbook(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ansible-playbook ARGS from the repository (120 s at most); stdout and stderr captured."""
    env = os.environ | {
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
    }
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120
    )
