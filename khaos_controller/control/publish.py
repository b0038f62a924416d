"""Publish: the listeners of a daemon step. Each gets the step (step.py: the observation it was decided on,
the plan, the decision and what the realizer did); the daemon calls them in turn after every step."""

from __future__ import annotations

import logging
import math

from ..journal import Journal as JournalFile
from .log import event
from .metrics import Metrics as Registry
from .step import Step


class Metrics:
    """Updates the Prometheus gauges and counters from a step."""

    def __init__(self, metrics: Registry):
        self.m = metrics

    def __call__(self, step: Step) -> None:
        """Set the gauges, count the decision, the change and the alert."""
        m, obs, d, r = self.m, step.observation, step.decision, step.realization
        m.set("khaos_up", 1 if (obs.job_id and obs.all_running and not obs.error) else 0)
        m.set("khaos_checkpoint_interval_seconds", step.interval_after_s())
        m.set("khaos_job_uptime_seconds", obs.uptime_s)
        m.set("khaos_latency_p99_milliseconds", obs.latency_p99_ms)
        m.set("khaos_input_rate", obs.demand_rate)
        m.set("khaos_capacity_events_per_second", obs.capacity)
        m.set("khaos_utilization_ratio", obs.utilization)
        if step.plan is not None:
            lat, rec = step.plan.at_current.latency_ms, step.plan.at_current.recovery_s
            m.set("khaos_forecast_rate", step.plan.forecast_rate)
            m.set("khaos_predicted_latency_milliseconds", lat if math.isfinite(lat) else None)
            m.set("khaos_predicted_recovery_seconds", rec if math.isfinite(rec) else math.inf)
            m.set("khaos_recommended_checkpoint_interval_seconds", d.best_ci_s)
        if r is not None and r.status == "ok":
            m.inc("khaos_reconfigurations_total")
        elif r is not None and r.status == "failed":
            m.inc("khaos_reconfiguration_failures_total")
        m.inc("khaos_decisions_total", action=d.action)
        if d.alert:
            m.inc("khaos_alerts_total")
        m.set("khaos_last_decision_timestamp_seconds", step.ts)
        m.set("khaos_loop_duration_seconds", step.loop_seconds)


class Journal:
    """Appends the step to the decision journal."""

    def __init__(self, journal: JournalFile):
        self.journal = journal

    def __call__(self, step: Step) -> None:
        """One `decision` line."""
        self.journal.write(step.journal())


class Log:
    """Logs the decision (and an ALERT line when the interval that runs breaks a limit)."""

    def __init__(self, job: str):
        self.job = job

    def __call__(self, step: Step) -> None:
        """One `decision` event, plus `ALERT` on an alert."""
        d, obs = step.decision, step.observation
        fields = {
            "iteration": step.iteration,
            "action": d.action,
            "ci_s": d.ci_s,
            "current_ci_s": d.current_ci_s,
            "rate": obs.demand_rate,
            "plan_rate": step.plan.plan_rate if step.plan is not None else None,
            "latency_p99_ms": obs.latency_p99_ms,
            "alert": d.alert,
            "reason": d.reason,
        }
        if step.realization is not None:
            fields["realize"] = step.realization.status
        event(logging.WARNING if d.alert else logging.INFO, "decision", **fields)
        if d.alert:
            detail = step.explain or step.warning or d.reason
            event(logging.WARNING, "ALERT", job=self.job, detail=detail)
