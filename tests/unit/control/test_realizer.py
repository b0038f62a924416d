"""The restart realizer's pieces (control/realizer.py): the playbook's extra vars, orphaned playbook runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from support.daemon import write_config

from khaos_controller.control import config as daemon_config
from khaos_controller.control import realizer


def test_orphaned_playbook_processes_are_found(tmp_path):
    base = tmp_path / "runs"
    env = {**os.environ, "AWX_ISOLATED_DATA_DIR": f"{base}/reconfigure-x/artifacts/reconfigure-x"}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        deadline = time.monotonic() + 5
        while proc.pid not in realizer.orphan_runs(base) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert realizer.orphan_runs(base) == [proc.pid]
        assert realizer.orphan_runs(tmp_path / "other") == []
    finally:
        proc.kill()
        proc.wait()


def test_playbook_extravars(tmp_path, model_file):
    cfg = daemon_config.load_config(
        write_config(tmp_path, model_file, reconfigure={"timeout_s": 90, "savepoint_dir": "file:///sp"})
    )
    ev = realizer.PlaybookRealizer(cfg).extravars(11.0)
    assert ev == {
        "checkpoint_interval": "11s",
        "flink_job_name": "tj",
        "flink_job_state_dir": str(tmp_path / "state"),
        "flink_job_rest_url": "http://127.0.0.1:1",
        "flink_job_reconfigure_timeout": 90,
        "flink_job_keep_savepoints": 5,
        "flink_job_savepoint_dir": "file:///sp",
    }
    assert realizer.PlaybookRealizer(cfg).extravars(2.5)["checkpoint_interval"] == "2.5s"
