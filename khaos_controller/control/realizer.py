"""Realize: how a decided interval reaches the job. A realizer is any callable ``(ci_s) -> dict`` that
changes the job's interval (or says it would) and raises KhaosError when it could not.

* :class:`PlaybookRealizer` runs playbooks/reconfigure.yml (stop-with-savepoint, resubmit, rollback)
  through ansible-runner: the only way the daemon changes a job.
* :class:`AdvisorRealizer` (``khaos run --advisor``) changes nothing.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from ..errors import KhaosError
from ..flink import deployment
from ..flink.client import FlinkClient
from .config import Config

RUN_BASE = Path(tempfile.gettempdir()) / "khaos-daemon"  # ansible-runner dirs of the daemon's playbook runs


class Realizer(Protocol):
    """Changes the job's checkpoint interval to ``ci_s``; returns what happened."""

    changes_job: bool

    def __call__(self, ci_s: float) -> dict:
        """Change the interval to ``ci_s``; raise KhaosError if it could not."""
        ...


class AdvisorRealizer:
    """Never changes the job: the decision is journaled, logged and exported only."""

    changes_job = False

    def __call__(self, ci_s: float) -> dict:
        """Nothing to do."""
        return {"status": "advisor", "target_ci_s": ci_s}


class PlaybookRealizer:
    """Changes the interval the only way the daemon may: playbooks/reconfigure.yml via ansible-runner."""

    changes_job = True

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.base_dir = RUN_BASE / cfg.job

    def extravars(self, ci_s: float) -> dict:
        """The playbook's variables for a change to ``ci_s``."""
        ev = {
            "checkpoint_interval": f"{ci_s:g}s",
            "flink_job_name": self.cfg.job,
            "flink_job_state_dir": str(self.cfg.state_dir),
            "flink_job_rest_url": FlinkClient(self.cfg.rest_url).url,
            "flink_job_reconfigure_timeout": math.ceil(self.cfg.reconfigure_timeout_s),
        }
        if self.cfg.savepoint_dir:
            ev["flink_job_savepoint_dir"] = self.cfg.savepoint_dir
        return ev

    def __call__(self, ci_s: float) -> dict:
        """Run reconfigure.yml; returns seconds taken, the new job id, interval and savepoint."""
        from ..infra import ansible

        t0 = time.monotonic()
        # cancel=...: without a callback ansible-runner installs its own SIGTERM/SIGINT handlers that
        # SIGKILL the playbook; the daemon lets a running reconfiguration finish instead.
        ansible.run_playbook(
            "reconfigure",
            self.cfg.inventory,
            extravars=self.extravars(ci_s),
            ident=f"reconfigure-{self.cfg.job}-{int(time.time())}",
            base_dir=self.base_dir,
            cancel=lambda: False,
        )
        out: dict[str, Any] = {"seconds": round(time.monotonic() - t0, 2)}
        try:
            rec = deployment.load(self.cfg.record)
            out.update(
                job_id=rec.get("job_id"),
                interval_s=rec.get("checkpoint_interval_s"),
                savepoint=rec.get("last_savepoint"),
            )
        except (KhaosError, ValueError):
            pass
        return out


def orphan_runs(base_dir: Path) -> list[int]:
    """Pids of playbook processes a previous (killed) daemon left running: ansible-runner puts
    AWX_ISOLATED_DATA_DIR (under our base_dir) in the environment of the playbook and its modules."""
    mark = f"AWX_ISOLATED_DATA_DIR={base_dir}/".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if mark in (d / "environ").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return sorted(pids)


def last_change_ts(record: dict) -> float | None:
    """When the deployment record last saw a change attempt (success, failure or reconciliation)."""
    ts = [
        h.get("ts")
        for h in record.get("history") or []
        if h.get("action") in ("running", "savepoint_failed", "resubmit_failed") and h.get("ts")
    ]
    return max(ts) if ts else None
