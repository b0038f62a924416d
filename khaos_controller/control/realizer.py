"""Realize: how a decided interval reaches the job. A realizer is any callable ``(ci_s) -> dict`` that
changes the job's interval (or says it would) and raises KhaosError when it could not.

* :class:`PaceRealizer` (realize.mode pace, the default) sets the interval the pacer triggers
  checkpoints at (control/pacer.py): no restart, no playbook, no cost.
* :class:`PlaybookRealizer` (realize.mode restart) runs playbooks/reconfigure.yml (stop-with-savepoint,
  resubmit, rollback) through ansible-runner: the only way the daemon restarts a job.
* :class:`AdvisorRealizer` (``khaos run --advisor``) changes nothing.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

from ..errors import KhaosError
from ..flink import deployment
from ..flink.client import FlinkClient
from .config import Config
from .pacer import Pacer


def run_base(cfg: Config) -> Path:
    """The daemon's private directory for ansible-runner runs (0700, under the state dir; never a
    predictable path in /tmp that another local user could prepare)."""
    return cfg.state_dir / "runs" / cfg.job


class Realizer(Protocol):
    """Changes the job's checkpoint interval to ``ci_s``; returns what happened."""

    kind: str  # advisor, pace or restart
    changes_job: bool  # restarts the job (needs the inventory and the deployment record)

    def __call__(self, ci_s: float) -> dict:
        """Change the interval to ``ci_s``; raise KhaosError if it could not."""
        ...

    def reconcile(self) -> dict:
        """Finish a change left pending in the deployment record; raise KhaosError if it could not."""
        ...


class AdvisorRealizer:
    """Never changes the job: the decision is journaled, logged and exported only."""

    kind, changes_job = "advisor", False

    def __call__(self, ci_s: float) -> dict:
        """Nothing to do."""
        return {"status": "advisor", "target_ci_s": ci_s}

    def reconcile(self) -> dict:
        """Nothing to do (an advisor never touches the job)."""
        return {"status": "advisor"}


class PaceRealizer:
    """Sets the pacer's interval: checkpoints are triggered over REST, the job keeps running."""

    kind, changes_job = "pace", False

    def __init__(self, pacer: Pacer):
        self.pacer = pacer

    def __call__(self, ci_s: float) -> dict:
        """Pace at ``ci_s`` (at or above the safety net: the periodic checkpoints alone)."""
        net = self.pacer.safety_net_s
        self.pacer.set_interval(None if net is not None and ci_s >= net else ci_s)
        return {"seconds": 0.0, "interval_s": self.pacer.effective_s(net), "safety_net_s": net}

    def reconcile(self) -> dict:
        """Nothing to finish: pacing never leaves a change pending."""
        return {"status": "pace"}


class PlaybookRealizer:
    """Restarts the job with the new interval: playbooks/reconfigure.yml via ansible-runner."""

    kind, changes_job = "restart", True

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.base_dir = run_base(cfg)

    def extravars(self, ci_s: float) -> dict:
        """The playbook's variables for a change to ``ci_s``."""
        ev = {
            "checkpoint_interval": f"{ci_s:g}s",
            "flink_job_name": self.cfg.job,
            "flink_job_state_dir": str(self.cfg.state_dir),
            "flink_job_rest_url": FlinkClient(self.cfg.rest_url).url,
            "flink_job_reconfigure_timeout": math.ceil(self.cfg.file.reconfigure.timeout_s),
            "flink_job_keep_savepoints": self.cfg.file.retention.savepoints,
        }
        if self.cfg.file.reconfigure.savepoint_dir:
            ev["flink_job_savepoint_dir"] = self.cfg.file.reconfigure.savepoint_dir
        return ev

    def __call__(self, ci_s: float) -> dict:
        """Run reconfigure.yml; returns seconds taken, the new job id, interval and savepoint."""
        return self._run(self.extravars(ci_s))

    def reconcile(self) -> dict:
        """Run reconfigure.yml in reconcile-only mode: finish a change left pending in the record."""
        return self._run({**self.extravars(0), "flink_job_reconcile_only": True})

    def _run(self, extravars: dict) -> dict:
        from ..infra import ansible

        t0 = time.monotonic()
        # cancel=...: without a callback ansible-runner installs its own SIGTERM/SIGINT handlers that
        # SIGKILL the playbook; the daemon lets a running reconfiguration finish instead.
        ansible.run_playbook(
            "reconfigure",
            self.cfg.inventory,
            extravars=extravars,
            ident=f"reconfigure-{self.cfg.job}",
            base_dir=self.base_dir,
            cancel=lambda: False,
        )
        out: dict[str, Any] = {"seconds": round(time.monotonic() - t0, 2)}
        try:
            rec = deployment.load(self.cfg.record)
            downs = down_times(rec)
            out.update(
                job_id=rec.get("job_id"),
                interval_s=rec.get("checkpoint_interval_s"),
                savepoint=rec.get("last_savepoint"),
                down_s=downs[-1] if downs else None,
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


def down_times(record: dict) -> list[float]:
    """Seconds the job was down in each change of the record's history: from the stop's savepoint to
    the new job running with every task (the measured cost of a restart change, oldest first)."""
    out, stopped = [], None
    for h in record.get("history") or []:
        if h.get("action") == "stopped_with_savepoint":
            stopped = h.get("ts")
        elif h.get("action") == "running" and stopped is not None and h.get("ts"):
            out.append(round(max(0.0, h["ts"] - stopped), 3))
            stopped = None
    return out
