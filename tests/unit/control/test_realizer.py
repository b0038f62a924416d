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


def test_a_savepoint_flink_would_not_dispose_of_is_an_alert(tmp_path, model_file, caplog):
    import json
    import logging

    cfg = daemon_config.load_config(write_config(tmp_path, model_file))
    cfg.record.parent.mkdir(parents=True, exist_ok=True)

    def playbook(name, inventory, **kw):  # the change ran; one old savepoint could not be disposed of
        history = [
            {"ts": time.time() - 3600, "action": "savepoint_kept", "savepoint": "s3://b/old", "error": "earlier"},
            {"ts": time.time(), "action": "savepoint_kept", "savepoint": "s3://b/sp-1", "error": "Access Denied"},
        ]
        cfg.record.write_text(json.dumps({"name": "tj", "job_id": "j2", "history": history}))

    r = realizer.PlaybookRealizer(cfg)
    r.playbook = playbook
    with caplog.at_level(logging.WARNING, logger="khaos"):
        r.change(11.0)
    alerts = [rec for rec in caplog.records if rec.getMessage() == "ALERT"]
    assert len(alerts) == 1 and "Access Denied" in str(alerts[0].__dict__)  # this change's refusal only
