"""A job name is data, never a template: a job named like a Jinja lookup is deployed with deploy_job.yml and
its interval is changed through reconfigure.yml exactly as the daemon's restart realizer does, and the
lookup never runs (no marker file appears anywhere the controller, ansible-runner or a lab host writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.models import rate_model

from khaos_controller import REPO_ROOT
from khaos_controller.control import config as daemon_config
from khaos_controller.control.realizer import PlaybookRealizer
from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible
from khaos_controller.model import store

pytestmark = pytest.mark.lab

MARKER = "khaos-pwned"
NAME = "x{{ lookup('pipe','touch " + MARKER + "') }}"


def markers(cluster, extra: list[Path]) -> list[Path]:
    """Every marker file where the lookup could have run: the controller's working directory, the repo
    (ansible-runner's project dir; a pipe lookup runs in the playbook's directory), the runner
    directories, $HOME, / and the lab's host directories."""
    flat = [Path.cwd(), Path.home(), Path("/"), Path("/tmp")]
    found = [d / MARKER for d in flat if (d / MARKER).exists()]
    for d in [REPO_ROOT, cluster.ansible_base, cluster.dir, *extra]:
        for root, dirs, files in os.walk(d):
            dirs[:] = [x for x in dirs if x not in (".git", ".venv", "node_modules")]
            found += [Path(root) / MARKER] if MARKER in files else []
    return sorted(set(found))


def live(client: FlinkClient, name: str) -> list[dict]:
    return [j for j in client.get("/jobs/overview")["jobs"] if j["name"] == name and j["state"] == "RUNNING"]


def daemon_config_file(cluster, tmp_path: Path) -> Path:
    """A restart-mode daemon config for the job, as an operator would write it."""
    model = store.save(rate_model(), tmp_path / "model.json")
    cfg = {
        "job": NAME,
        "flink": {"rest_url": cluster.rest_url},
        "inventory": str(cluster.inventory),
        "model": str(model),
        "limits": {"latency_ms": 1000, "recovery_s": 30},
        "state_dir": str(cluster.dir / "state"),
        "journal": str(tmp_path / "journal.jsonl"),
        "metrics": None,
        "realize": {"mode": "restart"},
    }
    path = tmp_path / "controller.yml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def test_a_job_named_like_a_lookup_stays_literal_through_deploy_and_restart_change(cluster, tmp_path):
    client = FlinkClient(cluster.rest_url)
    before = markers(cluster, [])
    assert not before, f"stale markers from an earlier run: {before}"
    try:
        ansible.run_playbook(
            "deploy_job",
            cluster.inventory,
            base_dir=cluster.ansible_base,
            extravars={"checkpoint_interval": "10s", "flink_job_rate": 500, "flink_job_name": NAME},
        )
        cfg = daemon_config.load_config(daemon_config_file(cluster, tmp_path), require_inventory=True)
        realizer = PlaybookRealizer(cfg)
        seen = markers(cluster, [realizer.base_dir, tmp_path])
        assert not seen, f"deploy_job.yml ran the job name's lookup: {seen}"
        [first] = live(client, NAME)
        assert client.checkpoint_interval_ms(first["jid"]) == 10_000
        check = subprocess.run(
            [sys.executable, "-m", "khaos_controller.cli", "run", "--check", str(cfg.path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert check.returncode == 0 and f"1 live job(s) named {NAME!r}" in check.stdout, check

        out = realizer.change(4.0)  # what the daemon's restart realizer runs for a change to 4 s

        seen = markers(cluster, [realizer.base_dir, tmp_path])
        assert not seen, f"reconfigure.yml ran the job name's lookup: {seen}"
        [second] = live(client, NAME)
        assert second["jid"] != first["jid"] and out.job_id == second["jid"]
        assert client.checkpoint_interval_ms(second["jid"]) == 4000
        record = json.loads(cfg.record.read_text())
        assert record["name"] == NAME and record["job_id"] == second["jid"] and record["pending"] is None
    finally:
        cluster.cancel_jobs()
