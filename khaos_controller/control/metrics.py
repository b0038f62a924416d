"""The daemon's Prometheus metrics (prometheus_client), served on /metrics.

One private registry per daemon; every series carries the label ``flink_job``. A gauge set to None
has no sample (an unknown value is not a fake 0).
"""

from __future__ import annotations

import os

os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")  # no *_created series beside counters

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import KhaosError

prometheus_client.disable_created_metrics()

# name -> (type, help, extra label names)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "khaos_up": ("gauge", "1 when the last sample reached Flink and found the job running with every task, else 0", ()),
    "khaos_checkpoint_interval_seconds": ("gauge", "checkpoint interval in force on the running job", ()),
    "khaos_input_rate": ("gauge", "input (arrival) rate averaged over the decision window, events/s", ()),
    "khaos_forecast_rate": ("gauge", "input rate forecast over the horizon, events/s", ()),
    "khaos_capacity_events_per_second": (
        "gauge",
        "events/s the job could read on its cluster: window rate / the busiest subtask's busy fraction",
        (),
    ),
    "khaos_utilization_ratio": ("gauge", "input (arrival) rate / estimated capacity", ()),
    "khaos_latency_p99_milliseconds": ("gauge", "measured p99 end-to-end latency averaged over the window", ()),
    "khaos_predicted_latency_milliseconds": (
        "gauge",
        "model-predicted p99 latency at the current interval and planned rate",
        (),
    ),
    "khaos_predicted_recovery_seconds": (
        "gauge",
        "model-predicted recovery time at the current interval and planned rate",
        (),
    ),
    "khaos_recommended_checkpoint_interval_seconds": (
        "gauge",
        "interval the last decision wants to run (the best feasible one)",
        (),
    ),
    "khaos_job_uptime_seconds": ("gauge", "seconds since the job last came (back) up", ()),
    "khaos_latency_limit_milliseconds": ("gauge", "the configured p99 latency limit L_max", ()),
    "khaos_recovery_limit_seconds": ("gauge", "the configured recovery time limit R_max", ()),
    "khaos_last_decision_timestamp_seconds": ("gauge", "epoch time of the last decision", ()),
    "khaos_loop_duration_seconds": ("gauge", "duration of the last loop iteration, realization included", ()),
    "khaos_decisions_total": ("counter", "decisions taken, by action (change, keep, wait)", ("action",)),
    "khaos_reconfigurations_total": ("counter", "successful checkpoint interval changes made by this daemon", ()),
    "khaos_reconfiguration_failures_total": (
        "counter",
        "reconfigure playbook runs that failed (the job was left or rolled back)",
        (),
    ),
    "khaos_reconciliations_total": (
        "counter",
        "pending changes left by a killed daemon that were finished on start",
        (),
    ),
    "khaos_job_problem_seconds": (
        "gauge",
        "seconds the job has been gone, duplicated or not fully running (0: fine)",
        (),
    ),
    "khaos_job_alerts_total": ("counter", "steps that found the job gone, duplicated or stuck, by kind", ("kind",)),
    "khaos_reconciliation_failures_total": (
        "counter",
        "pending changes that could not be finished (retried every step)",
        (),
    ),
    "khaos_checkpoint_triggers_total": (
        "counter",
        "paced checkpoints triggered over REST, by result (completed, failed)",
        ("result",),
    ),
    "khaos_paced_interval_seconds": ("gauge", "interval the pacer triggers checkpoints at (no sample: not pacing)", ()),
    "khaos_safety_net_interval_seconds": (
        "gauge",
        "the job's configured (periodic) interval, in force when the pacer does not trigger sooner",
        (),
    ),
    "khaos_alerts_total": (
        "counter",
        "decisions whose running interval is predicted to break a limit (incl. no feasible interval)",
        (),
    ),
}


class Metrics:
    """The daemon's metrics in a registry of their own: ``set`` gauges, ``inc`` counters, ``get`` either."""

    def __init__(self, labels: dict[str, str] | None = None):
        self.labels = dict(labels or {})
        self.registry = CollectorRegistry(auto_describe=True)
        self._families = {}
        for name, (kind, text, extra) in METRICS.items():
            cls = Counter if kind == "counter" else Gauge
            base = name.removesuffix("_total") if kind == "counter" else name
            self._families[name] = cls(base, text, [*self.labels, *extra], registry=self.registry)
            if not extra and kind == "counter":
                self._families[name].labels(**self.labels)  # counters start at 0
        for action in ("change", "keep", "wait"):
            self._families["khaos_decisions_total"].labels(**self.labels, action=action)
        for result in ("completed", "failed"):
            self._families["khaos_checkpoint_triggers_total"].labels(**self.labels, result=result)

    def _child(self, name: str, labels: dict):
        return self._families[name].labels(**self.labels, **labels)

    def set(self, name: str, value: float | None, **labels) -> None:
        """Set gauge ``name``; None removes its sample."""
        if METRICS[name][0] != "gauge":
            raise KhaosError(f"{name} is not a gauge")
        if value is None:
            try:
                self._families[name].remove(*{**self.labels, **labels}.values())
            except KeyError:
                pass
        else:
            self._child(name, labels).set(float(value))

    def inc(self, name: str, n: float = 1.0, **labels) -> None:
        """Add ``n`` to counter ``name``."""
        if METRICS[name][0] != "counter":
            raise KhaosError(f"{name} is not a counter")
        self._child(name, labels).inc(n)

    def get(self, name: str, **labels) -> float | None:
        """The current value of a series (None: no sample)."""
        return self.registry.get_sample_value(name, {**self.labels, **labels})

    def render(self) -> str:
        """The text exposition format."""
        return prometheus_client.generate_latest(self.registry).decode()


class MetricsServer:
    """GET /metrics on host:port in a daemon thread (port 0: any free port, see .port)."""

    def __init__(self, metrics: Metrics, host: str, port: int):
        self.metrics, self.host, self.port = metrics, host, port
        self._server = None

    def start(self) -> MetricsServer:
        """Listen and serve in the background."""
        try:
            self._server, _thread = prometheus_client.start_http_server(
                self.port, addr=self.host, registry=self.metrics.registry
            )
        except OSError as e:
            raise KhaosError(f"cannot serve metrics on {self.host}:{self.port}: {e.strerror or e}") from None
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
