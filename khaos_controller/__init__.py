"""Khaos: keep a Flink job inside its recovery-time and latency SLOs by tuning its checkpoint interval."""

import os
from pathlib import Path

__version__ = "0.1.0"
# The project tree (playbooks/, roles/, ansible.cfg): the source checkout, or KHAOS_HOME where the
# package is installed from a wheel (the bastion; see roles/khaos_controller).
REPO_ROOT = Path(os.environ.get("KHAOS_HOME") or Path(__file__).resolve().parent.parent)
