"""The job's health between decisions: gone, duplicated, down and stuck become alerts.

Every step the daemon hands its observation to :class:`Health`. A problem is alerted (journal
``job_alert``, counter ``khaos_job_alerts_total{kind}``, log ALERT) on every step while it lasts:
``gone`` (no live job of the name) and ``duplicate`` (more than one) at once, ``stuck`` once the job
has not run every task for ``loop.stuck_s``. ``khaos_job_problem_seconds`` says how long it has lasted.
"""

from __future__ import annotations

import logging

from ..journal import Journal
from .collector import Observation
from .log import event
from .metrics import Metrics


class Health:
    """Turns observations into job alerts (see the module docstring)."""

    def __init__(self, job: str, stuck_s: float, metrics: Metrics, journal: Journal):
        self.job, self.stuck_s, self.metrics, self.journal = job, stuck_s, metrics, journal
        self.since: float | None = None  # when the current problem started

    def check(self, obs: Observation) -> list[str]:
        """The alerts of this observation (empty when the job is fine)."""
        if obs.job_id is None and obs.error:
            kind = None  # Flink did not answer: the sample says nothing about the job
        elif obs.jobs_running == 0:
            kind = "gone"
        elif obs.jobs_running > 1:
            kind = "duplicate"
        elif not obs.all_running:
            kind = "down"
        else:
            kind = None
        if kind is None:
            self.since = None
            self.metrics.set("khaos_job_problem_seconds", 0)
            return []
        self.since = self.since if self.since is not None else obs.t
        lasted = max(0.0, obs.t - self.since)
        self.metrics.set("khaos_job_problem_seconds", lasted)
        if kind == "down":
            if lasted < self.stuck_s:
                return []
            kind = "stuck"
        self.metrics.inc("khaos_job_alerts_total", kind=kind)
        detail = {
            "gone": f"no job named {self.job!r} runs",
            "duplicate": f"{obs.jobs_running} jobs named {self.job!r} run",
            "stuck": f"job {obs.job_id} has not run every task for {lasted:.0f} s (state {obs.state})",
        }[kind]
        self.journal.write(
            {
                "event": "job_alert",
                "job": self.job,
                "kind": kind,
                "since_s": round(lasted, 1),
                "job_id": obs.job_id,
                "detail": detail,
            }
        )
        event(logging.WARNING, "ALERT", job=self.job, kind=kind, detail=detail)
        return [kind]
