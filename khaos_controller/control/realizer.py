"""Realize: how a decided interval reaches the job. Every realizer has the same interface (:class:`Realizer`):
the daemon hands it a step whose decision is a change and gets a :class:`~.step.Realization` back;
what is special to a realizer (its log and journal lines, its cooldown, a pacer thread, playbook runs a
killed daemon left) stays inside it.

* :class:`PaceRealizer` (realize.mode pace, the default) sets the interval the pacer triggers
  checkpoints at (control/pacer.py): no restart, no playbook, no cost.
* :class:`PlaybookRealizer` (realize.mode restart) runs playbooks/reconfigure.yml (stop-with-savepoint,
  resubmit, rollback) through ansible-runner: the only way the daemon restarts a job.
* :class:`AdvisorRealizer` (``khaos run --advisor``) changes nothing.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import KhaosError
from ..flink import deployment
from ..flink import record as deployment_record
from ..flink.client import FlinkClient
from ..flink.record import Record
from ..journal import Journal
from .config import Config
from .log import event
from .metrics import Metrics
from .pacer import Pacer
from .policy import PRIOR_CHANGE_COST_S, Policy
from .step import Advised, Failed, Paced, Realization, Restarted, Step, interval_in_force


def run_base(cfg: Config) -> Path:
    """The daemon's private directory for ansible-runner runs (0700, under the state dir; never a
    predictable path in /tmp that another local user could prepare)."""
    return cfg.state_dir / "runs" / cfg.job


class Realizer:
    """What every realizer does; the defaults are those of a realizer that never restarts the job.

    It keeps the cooldown's book: when the job was last changed (or a change was attempted), whether
    that attempt failed, and what the last restart changes cost (the seconds the job was down)."""

    kind = ""  # advisor, pace or restart: the planner's rules for it (policy.Policy.of)
    changes_job = False  # restarts the job (needs the inventory and the deployment record)
    paces = False  # triggers checkpoints below the job's own interval, which stays as the safety net

    def __init__(self) -> None:
        self.job = ""
        self.journal: Journal | None = None
        self.clock: Callable[[], float] = time.time
        self.last_change_ts: float | None = None
        self.failed_last = False  # a failed change waits out the cooldown, breach or not
        self.down_s: collections.deque[float] = collections.deque(maxlen=5)  # the last changes' costs

    def attach(self, job: str, journal: Journal, clock: Callable[[], float]) -> None:
        """The daemon's job name, journal and clock."""
        self.job, self.journal, self.clock = job, journal, clock

    def remember(self, record: Record) -> None:
        """At start: the cooldown and the change costs from the deployment record's history."""
        self.last_change_ts = last_change_ts(record)
        self.down_s.extend(down_times(record))

    def policy(self, cfg: Config, safety_net_s: float | None) -> Policy:
        """The planner's rules for this realizer (policy.Policy.of): a configured change cost, else the
        median measured one, else the prior."""
        costs = cfg.ci.change_cost_s
        if costs is None:
            costs = float(statistics.median(self.down_s)) if self.down_s else PRIOR_CHANGE_COST_S
        return Policy.of(cfg, self.kind, safety_net_s, costs)

    @property
    def paced_s(self) -> float | None:
        """The interval checkpoints are triggered at now (None: not pacing)."""
        return None

    def settle(self) -> None:
        """Before the daemon starts: let a change a killed daemon began finish."""

    def start(self) -> None:
        """Start background work (the pacer)."""

    def stop(self) -> None:
        """Stop background work; nothing is triggered after it returns."""

    def realize(self, step: Step) -> Realization:
        """Make the change ``step`` decided; never raises for a change that could not be made."""
        raise NotImplementedError

    def reconcile(self, target_ci_s: float) -> Realization:
        """Finish a change left pending in the deployment record; raise KhaosError if it could not."""
        raise NotImplementedError(f"realize {self.kind} never restarts the job")


class AdvisorRealizer(Realizer):
    """Never changes the job: the decision is journaled, logged and exported only."""

    kind = "advisor"

    def realize(self, step: Step) -> Realization:
        """Nothing to do but say so."""
        ci_s = step.decision.ci_s
        event(
            logging.INFO,
            "advice",
            job=self.job,
            from_s=step.decision.current_ci_s,
            to_s=ci_s,
            detail="--advisor: the job is not changed",
        )
        return Advised(status="advisor", target_ci_s=ci_s)


class PaceRealizer(Realizer):
    """Sets the pacer's interval: checkpoints are triggered over REST, the job keeps running. Free: a
    change starts no cooldown."""

    kind, paces = "pace", True

    def __init__(self, pacer: Pacer):
        super().__init__()
        self.pacer = pacer

    @property
    def paced_s(self) -> float | None:
        """The pacer's interval (None: the safety net alone)."""
        return self.pacer.interval_s

    def start(self) -> None:
        """The pacer's thread."""
        self.pacer.start()

    def stop(self) -> None:
        """Stop the pacer (a trigger in flight is awaited)."""
        self.pacer.stop()

    def realize(self, step: Step) -> Realization:
        """Pace at the target (at or above the safety net: the periodic checkpoints alone)."""
        ci_s, net = step.decision.ci_s, self.pacer.safety_net_s
        self.pacer.set_interval(None if net is not None and ci_s >= net else ci_s)
        r = Paced(
            status="ok",
            target_ci_s=ci_s,
            seconds=0.0,
            interval_s=interval_in_force(net, self.pacer.interval_s),
            safety_net_s=net,
        )
        fields = {k: v for k, v in r.journal().items() if k not in ("status", "target_ci_s")}
        event(logging.INFO, "paced", job=self.job, from_s=step.decision.current_ci_s, to_s=ci_s, **fields)
        return r


class PlaybookRealizer(Realizer):
    """Restarts the job with the new interval: playbooks/reconfigure.yml via ansible-runner. A change (or
    an attempt) starts the cooldown; its measured down time is the next change's cost."""

    kind, changes_job = "restart", True

    def __init__(self, cfg: Config, playbook: Callable[..., object] | None = None):
        super().__init__()
        self.cfg = cfg
        self.base_dir = run_base(cfg)
        self.playbook = playbook  # a stand-in for ansible.run_playbook (tests); None: the real one

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

    def settle(self) -> None:
        """Wait for reconfigure playbooks a killed daemon left running (up to their worst case)."""
        pids = orphan_runs(self.base_dir)
        if not pids:
            return
        limit = deployment.worst_case_s(self.cfg.file.reconfigure.timeout_s)
        event(
            logging.WARNING,
            "waiting_for_orphan_reconfigure",
            pids=",".join(map(str, pids)),
            max_wait_s=limit,
            detail="a reconfiguration started by a killed daemon is still running: letting it finish",
        )
        self.journal.write({"event": "orphan_wait", "job": self.job, "pids": pids})
        deadline = time.monotonic() + limit
        while pids and time.monotonic() < deadline:
            time.sleep(0.5)
            pids = orphan_runs(self.base_dir)
        if pids:
            raise KhaosError(
                f"a reconfigure playbook left by a killed daemon (pids {', '.join(map(str, pids))}) is "
                f"still running after {limit:.0f}s: inspect or stop it, then start the daemon again"
            )

    def realize(self, step: Step) -> Realization:
        """Run reconfigure.yml; the decision and its inputs are journaled first (a daemon killed while the
        playbook runs leaves them behind: the step's own line is written after the realization)."""
        ci_s, current = step.decision.ci_s, step.decision.current_ci_s
        job_id = step.observation.job_id
        event(logging.INFO, "reconfigure_started", job=self.job, job_id=job_id, from_s=current, to_s=ci_s)
        line = step.journal()
        self.journal.write(
            {
                "event": "reconfigure_started",
                "job": self.job,
                "iteration": step.iteration,
                "job_id": job_id,
                "from_ci_s": current,
                "target_ci_s": ci_s,
                **{k: line[k] for k in ("inputs", "forecast_rate", "plan_rate", "decision") if k in line},
            }
        )
        t0 = time.monotonic()
        try:
            r = self.change(ci_s)
        except KhaosError as e:
            # the playbook either left the job untouched (savepoint failed) or rolled it back; the failed
            # attempt starts the cooldown too, so a persistent failure is retried once per cooldown
            self.last_change_ts, self.failed_last = self.clock(), True
            event(logging.ERROR, "reconfigure_failed", job=self.job, to_s=ci_s, error=str(e))
            return Failed(status="failed", target_ci_s=ci_s, error=str(e), seconds=round(time.monotonic() - t0, 2))
        self.last_change_ts, self.failed_last = self.clock(), False
        if isinstance(r.down_s, (int, float)):
            self.down_s.append(float(r.down_s))
        fields = {k: v for k, v in r.journal().items() if k not in ("status", "target_ci_s") and v is not None}
        event(logging.INFO, "reconfigured", job=self.job, to_s=ci_s, **fields)
        return r

    def change(self, ci_s: float) -> Restarted:
        """Run reconfigure.yml for a change to ``ci_s``; raise KhaosError if it failed."""
        return self._run(self.extravars(ci_s), ci_s)

    def reconcile(self, target_ci_s: float) -> Realization:
        """Run reconfigure.yml in reconcile-only mode: finish the change pending in the record."""
        r = self._run({**self.extravars(0), "flink_job_reconcile_only": True}, target_ci_s)
        self.last_change_ts = self.clock()
        return r

    def _run(self, extravars: dict, target_ci_s: float) -> Restarted:
        from ..infra import ansible

        t0, started = time.monotonic(), time.time()
        # cancel=...: without a callback ansible-runner installs its own SIGTERM/SIGINT handlers that
        # SIGKILL the playbook; the daemon lets a running reconfiguration finish instead.
        (self.playbook or ansible.run_playbook)(
            "reconfigure",
            self.cfg.inventory,
            extravars=extravars,
            ident=f"reconfigure-{self.cfg.job}",
            base_dir=self.base_dir,
            cancel=lambda: False,
        )
        r = Restarted(status="ok", target_ci_s=target_ci_s, seconds=round(time.monotonic() - t0, 2))
        try:
            rec = deployment_record.load(self.cfg.record)
        except (KhaosError, ValueError):
            return r
        downs = down_times(rec)
        for kept in [h for h in rec.history if h.get("action") == "savepoint_kept"]:
            if kept.get("ts", 0) >= started:  # a disposal Flink refused: storage fills until it is mended
                event(
                    logging.WARNING, "ALERT", job=self.job, kind="savepoint_disposal_failed", detail=kept.get("error")
                )
        r.job_id, r.interval_s = rec.job_id, rec.checkpoint_interval_s
        r.savepoint, r.down_s = rec.last_savepoint, downs[-1] if downs else None
        return r


def for_config(cfg: Config, advisor: bool, client: FlinkClient, journal: Journal, metrics: Metrics) -> Realizer:
    """The realizer ``khaos run`` uses: --advisor, else realize.mode."""
    if advisor:
        return AdvisorRealizer()
    if cfg.file.realize.mode == "pace":
        return PaceRealizer(Pacer(client, cfg.job, journal, metrics, tick_s=cfg.file.realize.tick_s))
    return PlaybookRealizer(cfg)


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


def last_change_ts(record: Record) -> float | None:
    """When the deployment record last saw a change attempt (success, failure or reconciliation)."""
    ts = [
        h.get("ts")
        for h in record.history
        if h.get("action") in ("running", "savepoint_failed", "resubmit_failed") and h.get("ts")
    ]
    return max(ts) if ts else None


def down_times(record: Record) -> list[float]:
    """Seconds the job was down in each change of the record's history: from the stop's savepoint to
    the new job running with every task (the measured cost of a restart change, oldest first)."""
    out, stopped = [], None
    for h in record.history:
        if h.get("action") == "stopped_with_savepoint":
            stopped = h.get("ts")
        elif h.get("action") == "running" and stopped is not None and h.get("ts"):
            out.append(round(max(0.0, h["ts"] - stopped), 3))
            stopped = None
    return out
