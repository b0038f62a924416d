"""Publish: the listeners of a daemon step. Each gets the step's journal entry and the observation it
was decided on; the daemon calls them in turn after every step."""

from __future__ import annotations

import logging
import math

from ..journal import Journal as JournalFile
from .collector import Observation
from .log import event
from .metrics import Metrics as Registry


class Metrics:
    """Updates the Prometheus gauges and counters from a step."""

    def __init__(self, metrics: Registry):
        self.m = metrics

    def __call__(self, entry: dict, obs: Observation) -> None:
        """Set the gauges, count the decision, the change and the alert."""
        m, d, r = self.m, entry["decision"], entry.get("realize") or {}
        m.set("khaos_up", 1 if (obs.job_id and obs.all_running and not obs.error) else 0)
        in_force = (r.get("interval_s") or r.get("target_ci_s")) if r.get("status") == "ok" else d["current_ci_s"]
        m.set("khaos_checkpoint_interval_seconds", in_force)
        m.set("khaos_job_uptime_seconds", obs.uptime_s)
        m.set("khaos_latency_p99_milliseconds", obs.latency_p99_ms)
        m.set("khaos_input_rate", obs.demand_rate)
        m.set("khaos_capacity_events_per_second", obs.capacity)
        m.set("khaos_utilization_ratio", obs.utilization)
        if "plan_rate" in entry:
            lat, rec = entry["predicted_at_current"]["latency_ms"], entry["predicted_at_current"]["recovery_s"]
            m.set("khaos_forecast_rate", entry["forecast_rate"])
            m.set("khaos_predicted_latency_milliseconds", lat if math.isfinite(lat) else None)
            m.set("khaos_predicted_recovery_seconds", rec if math.isfinite(rec) else math.inf)
            m.set("khaos_recommended_checkpoint_interval_seconds", d["best_ci_s"])
        if r.get("status") == "ok":
            m.inc("khaos_reconfigurations_total")
        elif r.get("status") == "failed":
            m.inc("khaos_reconfiguration_failures_total")
        m.inc("khaos_decisions_total", action=d["action"])
        if d["alert"]:
            m.inc("khaos_alerts_total")
        m.set("khaos_last_decision_timestamp_seconds", entry["decision_ts"])
        m.set("khaos_loop_duration_seconds", entry["loop_seconds"])


class Journal:
    """Appends the step's entry to the decision journal."""

    def __init__(self, journal: JournalFile):
        self.journal = journal

    def __call__(self, entry: dict, obs: Observation) -> None:
        """One `decision` line."""
        self.journal.write({k: v for k, v in entry.items() if k != "decision_ts"})


class Log:
    """Logs the decision (and an ALERT line when the interval that runs breaks a limit)."""

    def __init__(self, job: str):
        self.job = job

    def __call__(self, entry: dict, obs: Observation) -> None:
        """One `decision` event, plus `ALERT` on an alert."""
        d = entry["decision"]
        fields = {
            "iteration": entry.get("iteration"),
            "action": d["action"],
            "ci_s": d.get("ci_s"),
            "current_ci_s": d.get("current_ci_s"),
            "rate": obs.demand_rate,
            "plan_rate": entry.get("plan_rate"),
            "latency_p99_ms": obs.latency_p99_ms,
            "alert": d["alert"],
            "reason": d["reason"],
        }
        if "realize" in entry:
            fields["realize"] = entry["realize"].get("status")
        event(logging.WARNING if d["alert"] else logging.INFO, "decision", **fields)
        if d["alert"]:
            detail = entry.get("explain") or entry.get("warning") or d["reason"]
            event(logging.WARNING, "ALERT", job=self.job, detail=detail)
