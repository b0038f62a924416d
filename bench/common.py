"""What the lab benchmarks share: the header line, and a fresh lab with a Flink cluster on it."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from khaos_controller.infra import ansible
from khaos_controller.infra.lab import Lab


def header(name: str) -> None:
    """The first output line: benchmark, time, machine, cores, Python."""
    print(
        f"# bench/{name}  {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()} "
        f"{os.cpu_count()} cores  Python {platform.python_version()}",
        flush=True,
    )


def cluster_lab(name: str, hosts: int, ansible_dir: Path) -> Lab:
    """Lab ``name`` (a leftover of an interrupted run removed first) with playbooks/flink_cluster.yml run
    on it. The caller takes it down (``lab.down(quiet=True)``) in a finally."""
    Lab(name).down(quiet=True)
    lab = Lab(name)
    lab.up(hosts=hosts)
    ansible.run_playbook("flink_cluster", lab.inventory, base_dir=ansible_dir)
    return lab
