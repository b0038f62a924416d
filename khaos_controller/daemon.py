"""`khaos run CONFIG`: the runtime controller daemon.

Every second a collector thread samples the job (input rate, p99 latency, lag, backlog, the checkpoint
interval in force, uptime) into a rolling window. Every `loop.period_s` the loop

    collect (the window) -> forecast the rate over the horizon -> predict latency/recovery at the
    current interval -> decide (optimizer.recommend, with the cooldown since the last change) ->
    realize (playbooks/reconfigure.yml through ansible-runner; --advisor: journal and log only)

and writes every decision with its inputs to a JSON-lines journal, logs it (key=value or JSON) and
serves the state as Prometheus text on /metrics. SIGTERM/SIGINT let the step in flight finish (a
running reconfigure playbook is never interrupted), then the daemon exits 0. On start, a change a
killed daemon left pending in the deployment record is finished first. docs/daemon.md has it all.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as _dt
import fcntl
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

from . import deployment, models, optimizer
from .config import field_error as _err, read_mapping
from .errors import KhaosError
from .flink import FlinkClient, FlinkError

log = logging.getLogger("khaos.daemon")

DEFAULT_STATE_DIR = "/var/lib/khaos/state"   # the flink_job role's default (khaos_state_dir)
RUN_BASE = Path(tempfile.gettempdir()) / "khaos-daemon"  # ansible-runner dirs of the daemon's playbook runs
MIN_RATE = 1.0  # events/s: an idle job is planned for as if it had 1 event/s (the model needs rate > 0)


# ============================================================================================ config

@dataclass
class Config:
    path: Path
    job: str
    rest_url: str
    inventory: Path
    model_path: Path
    model: dict
    l_max_ms: float
    r_max_s: float
    ci_min: float = 1.0
    ci_max: float = 120.0
    ci_step: float = 1.0
    dead_band_s: float = 5.0
    cooldown_s: float = 600.0
    period_s: float = 300.0
    window_s: float = 300.0
    forecast_horizon_s: float = 300.0
    forecast_step_s: float = 60.0
    min_uptime_s: float = 600.0
    sample_s: float = 1.0
    mtbf_h: float = 24.0
    mode: str = models.REFERENCE_MODE
    journal: Path = Path("khaos-journal.jsonl")
    metrics_host: str | None = "127.0.0.1"
    metrics_port: int | None = 9790
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    rest_timeout_s: float = 10.0
    reconfigure_timeout_s: float = 180.0
    savepoint_dir: str | None = None
    log_level: str = "info"
    log_format: str = "kv"

    @property
    def record(self) -> Path:
        """The deployment record written by deploy_job.yml and read/updated by reconfigure.yml."""
        return self.state_dir / f"{self.job}.json"


_SCHEMA: dict[str, Any] = {
    "job": None, "inventory": None, "model": None, "mode": None, "mtbf_h": None, "journal": None,
    "state_dir": None,
    "flink": {"rest_url", "timeout_s"},
    "limits": {"latency_ms", "recovery_s"},
    "ci": {"min", "max", "step", "dead_band_s", "cooldown_s"},
    "loop": {"period_s", "window_s", "forecast_horizon_s", "forecast_step_s", "min_uptime_s", "sample_s"},
    "metrics": {"host", "port"},
    "reconfigure": {"timeout_s", "savepoint_dir"},
    "log": {"level", "format"},
}


def _section(path: Path, raw: dict, name: str) -> dict:
    sec = raw.get(name)
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise _err(path, name, f"must be a mapping of {', '.join(sorted(_SCHEMA[name]))}")
    unknown = sorted(set(sec) - _SCHEMA[name])
    if unknown:
        raise _err(path, f"{name}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_SCHEMA[name]))})")
    return sec


def _num(path: Path, where: str, value, default=None, *, gt: float | None = None, ge: float | None = None,
         required: str | None = None, integer: bool = False) -> float:
    if value is None:
        if required:
            raise _err(path, where, f"missing ({required})")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise _err(path, where, f"{value!r} is not a {'whole ' if integer else ''}number")
    if not math.isfinite(value):
        raise _err(path, where, f"{value!r} is not a finite number")
    if gt is not None and not value > gt:
        raise _err(path, where, f"{value:g} must be > {gt:g}")
    if ge is not None and not value >= ge:
        raise _err(path, where, f"{value:g} must be >= {ge:g}")
    return value


def _str(path: Path, where: str, value, required: str | None = None) -> str | None:
    if value is None:
        if required:
            raise _err(path, where, f"missing ({required})")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _err(path, where, f"{value!r} is not a non-empty string")
    return value.strip()


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else Path(os.path.normpath(base / q))


def _inventory_state_dir(inventory: Path) -> str | None:
    """khaos_state_dir of the inventory's all.vars (the lab writes it), if readable."""
    try:
        inv = yaml.safe_load(inventory.read_text())
        value = ((inv or {}).get("all") or {}).get("vars", {}).get("khaos_state_dir")
        return str(value) if value else None
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def load_config(path: str | Path) -> Config:
    """Read and validate a daemon config; every problem is one line `FILE: field: problem`."""
    path, raw = read_mapping(path, "config")
    unknown = sorted(set(raw) - set(_SCHEMA))
    if unknown:
        raise _err(path, unknown[0], f"unknown field (known: {', '.join(sorted(_SCHEMA))})")
    base = path.resolve().parent

    job = _str(path, "job", raw.get("job"), required="the name of the Flink job to control")
    flink = _section(path, raw, "flink")
    rest_url = _str(path, "flink.rest_url", flink.get("rest_url"),
                    required="the JobManager REST URL, e.g. http://10.213.0.11:8081")
    rest_timeout = _num(path, "flink.timeout_s", flink.get("timeout_s"), 10.0, gt=0)
    inventory = _resolve(base, _str(path, "inventory", raw.get("inventory"),
                                    required="the Ansible inventory reconfigure.yml runs on"))

    limits = raw.get("limits")
    if limits is None:
        raise _err(path, "limits", "missing: both limits are required, e.g. limits: {latency_ms: 1000, recovery_s: 60}")
    limits = _section(path, raw, "limits")
    l_max = _num(path, "limits.latency_ms", limits.get("latency_ms"), gt=0, required="the p99 latency limit L_max in ms")
    r_max = _num(path, "limits.recovery_s", limits.get("recovery_s"), gt=0, required="the recovery time limit R_max in s")

    ci = _section(path, raw, "ci")
    ci_min = _num(path, "ci.min", ci.get("min"), 1.0, ge=0.01)
    ci_max = _num(path, "ci.max", ci.get("max"), 120.0, gt=0)
    if ci_min >= ci_max:
        raise _err(path, "ci", f"min {ci_min:g} >= max {ci_max:g}: the interval range is empty or inverted")
    ci_step = _num(path, "ci.step", ci.get("step"), 1.0, gt=0)
    if (ci_max - ci_min) / ci_step > 100_000:
        raise _err(path, "ci.step", f"{ci_step:g} s gives more than 100000 candidates in {ci_min:g}-{ci_max:g} s")
    dead_band = _num(path, "ci.dead_band_s", ci.get("dead_band_s"), 5.0, ge=0)
    cooldown = _num(path, "ci.cooldown_s", ci.get("cooldown_s"), 600.0, ge=0)

    loop = _section(path, raw, "loop")
    sample_s = _num(path, "loop.sample_s", loop.get("sample_s"), 1.0, ge=0.2)
    period = _num(path, "loop.period_s", loop.get("period_s"), 300.0, ge=sample_s)
    window = _num(path, "loop.window_s", loop.get("window_s"), 300.0, ge=2 * sample_s)
    horizon = _num(path, "loop.forecast_horizon_s", loop.get("forecast_horizon_s"), period, gt=0)
    fstep = _num(path, "loop.forecast_step_s", loop.get("forecast_step_s"), 60.0, ge=sample_s)
    min_up = _num(path, "loop.min_uptime_s", loop.get("min_uptime_s"), 600.0, ge=0)

    mtbf = _num(path, "mtbf_h", raw.get("mtbf_h"), 24.0, gt=0)
    mode = (_str(path, "mode", raw.get("mode")) or models.REFERENCE_MODE).lower()

    model_path = _resolve(base, _str(path, "model", raw.get("model"), required="the model file written by khaos fit"))
    try:
        model = models.load_model(model_path)
    except KhaosError as e:
        raise _err(path, "model", str(e)) from None
    missing = models.unprofiled(model, mode)
    if missing:
        raise _err(path, "mode", missing)

    state = _str(path, "state_dir", raw.get("state_dir"))
    state_dir = _resolve(base, state) if state else Path(_inventory_state_dir(inventory) or DEFAULT_STATE_DIR)
    journal = _str(path, "journal", raw.get("journal"))
    journal_path = _resolve(base, journal) if journal else state_dir / f"{job}.journal.jsonl"

    if "metrics" in raw and raw["metrics"] in (None, False):
        m_host, m_port = None, None
    else:
        met = _section(path, raw, "metrics")
        m_host = _str(path, "metrics.host", met.get("host")) or "127.0.0.1"
        m_port = int(_num(path, "metrics.port", met.get("port"), 9790, ge=0, integer=True))
        if m_port > 65535:
            raise _err(path, "metrics.port", f"{m_port} is not a TCP port (0..65535; 0 = any free port)")

    rc = _section(path, raw, "reconfigure")
    rc_timeout = _num(path, "reconfigure.timeout_s", rc.get("timeout_s"), 180.0, gt=0)
    sp_dir = _str(path, "reconfigure.savepoint_dir", rc.get("savepoint_dir"))

    lg = _section(path, raw, "log")
    level = (_str(path, "log.level", lg.get("level")) or "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise _err(path, "log.level", f"{level!r} is not one of debug, info, warning, error")
    fmt = (_str(path, "log.format", lg.get("format")) or "kv").lower()
    if fmt not in ("kv", "json"):
        raise _err(path, "log.format", f"{fmt!r} is not kv or json")

    return Config(path=path, job=job, rest_url=rest_url, inventory=inventory, model_path=model_path, model=model,
                  l_max_ms=float(l_max), r_max_s=float(r_max), ci_min=float(ci_min), ci_max=float(ci_max),
                  ci_step=float(ci_step), dead_band_s=float(dead_band), cooldown_s=float(cooldown),
                  period_s=float(period), window_s=float(window), forecast_horizon_s=float(horizon),
                  forecast_step_s=float(fstep), min_uptime_s=float(min_up), sample_s=float(sample_s),
                  mtbf_h=float(mtbf), mode=mode, journal=journal_path, metrics_host=m_host, metrics_port=m_port,
                  state_dir=state_dir, rest_timeout_s=float(rest_timeout), reconfigure_timeout_s=float(rc_timeout),
                  savepoint_dir=sp_dir, log_level=level, log_format=fmt)


# ============================================================================================ logging

class _Formatter(logging.Formatter):
    """`TIME level=INFO event=decision key=value ...` or one JSON object per line."""

    def __init__(self, fmt: str = "kv"):
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds")
        fields = getattr(record, "kv", None) or {}
        if self.fmt == "json":
            return json.dumps({"ts": ts, "level": record.levelname.lower(), "event": record.getMessage(),
                               **_jsonable(fields)}, allow_nan=False)
        parts = [ts, f"level={record.levelname.lower()}", f"event={record.getMessage()}"]
        for k, v in fields.items():
            if isinstance(v, float):
                v = f"{v:.6g}"
            v = str(v)
            if not v or any(c in v for c in ' "=\n\t'):
                v = json.dumps(v)
            parts.append(f"{k}={v}")
        return " ".join(parts)


def _log(level: int, event: str, **fields) -> None:
    log.log(level, event, extra={"kv": fields})


def setup_logging(level: str = "info", fmt: str = "kv") -> None:
    """Structured logs of the `khaos` logger on stderr (replaces an earlier setup_logging handler)."""
    logger = logging.getLogger("khaos")
    for h in list(logger.handlers):
        if getattr(h, "_khaos_daemon", False):
            logger.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_Formatter(fmt))
    h._khaos_daemon = True  # type: ignore[attr-defined]
    logger.addHandler(h)
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False


def _jsonable(x):
    return models._jsonable(x)


# ============================================================================================ collect

@dataclass
class Point:
    """One sample of the job (rates in events/s, times in ms unless _s)."""
    t: float
    job_id: str
    rate: float | None
    throughput: float | None
    latency_p99_ms: float | None
    lag_ms: float | None
    backlog: float | None
    ci_s: float | None
    all_running: bool
    restarts: int


@dataclass
class Observation:
    """What the loop decides on: the job now and the window of samples since its last (re)start."""
    t: float
    job_id: str | None
    jobs_running: int               # running jobs of that name (1 expected)
    state: str                      # Flink job state, or NONE
    all_running: bool
    ci_s: float | None              # checkpoint interval in force
    uptime_s: float                 # seconds since the job last came (back) up with every task running
    window_s: float
    samples: int                    # samples in the window with a rate
    rates: list[float] = field(default_factory=list)
    rate_mean: float | None = None  # events/s read by the sources
    demand_rate: float | None = None  # events/s arriving: rate_mean + backlog growth (= rate_mean without a backlog gauge)
    throughput: float | None = None
    latency_p99_ms: float | None = None  # mean of the per-second p99 over the window
    latency_p99_max_ms: float | None = None
    lag_ms: float | None = None
    backlog: float | None = None
    restarts: int = 0
    error: str | None = None        # the last REST error, if the last sample failed

    def inputs(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("rates")
        return d


class FlinkCollector:
    """Samples the job named `job` every `sample_s` seconds in a thread; `snapshot()` summarises the window.

    The running job of that name is looked up on every sample (a reconfiguration replaces it by a new
    job id). The window restarts when the job id changes, and only samples taken since the job last
    came up (every task RUNNING, no new restart) count.
    """

    def __init__(self, client: FlinkClient, job: str, sample_s: float = 1.0, keep_s: float = 300.0):
        self.client, self.job, self.sample_s, self.keep_s = client, job, sample_s, keep_s
        self._points: collections.deque[Point] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe = None
        self._job_id: str | None = None
        self._ci_s: float | None = None
        self._running_since: float | None = None
        self._restarts = 0
        self._state = "NONE"
        self._all_running = False
        self._jobs_running = 0
        self._error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="khaos-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.client.timeout + 5)

    def _run(self) -> None:
        t0 = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception as e:  # noqa: BLE001 - a sampler must not die; the loop sees the error
                with self._lock:
                    self._error, self._all_running = f"{type(e).__name__}: {e}", False
            # paced on the monotonic clock; a slow REST call skips ticks instead of bunching them
            tick = max(tick + 1, int((time.monotonic() - t0) / self.sample_s))
            self._stop.wait(max(0.0, t0 + tick * self.sample_s - time.monotonic()))

    def _lookup(self) -> list[dict]:
        return self.client.live_jobs(self.job)

    def sample_once(self) -> None:
        from .probe import JobProbe
        try:
            jobs = self._lookup()
        except FlinkError as e:
            with self._lock:
                self._error, self._all_running, self._state = str(e), False, "UNKNOWN"
            return
        if not jobs:
            with self._lock:
                self._jobs_running, self._job_id, self._state, self._all_running = 0, None, "NONE", False
                self._running_since, self._error = None, None
                self._points.clear()
            return
        job = max(jobs, key=lambda j: j.get("start-time", 0))  # several: the newest (the loop alerts)
        now = time.time()
        if job["jid"] != self._job_id:
            probe = JobProbe(self.client, job["jid"])
            try:
                ci_s = self.client.checkpoint_interval_ms(job["jid"]) / 1000.0
                stamps = self.client.job(job["jid"]).get("timestamps", {})
            except FlinkError as e:
                with self._lock:
                    self._error, self._all_running = str(e), False
                return
            with self._lock:
                self._job_id, self._probe, self._ci_s = job["jid"], probe, ci_s
                self._points.clear()
                self._restarts = -1  # unknown until the first sample
                running_ms = stamps.get("RUNNING") or job.get("start-time") or 0
                self._running_since = running_ms / 1000.0 if running_ms > 0 else None
        try:
            s = self._probe.sample()
        except FlinkError as e:
            with self._lock:
                self._error, self._all_running, self._state = str(e), False, "UNKNOWN"
            return
        with self._lock:
            self._jobs_running, self._state, self._all_running, self._error = len(jobs), s.state, s.all_running, None
            if not s.all_running or (self._restarts >= 0 and s.restarts > self._restarts):
                self._running_since = None  # (re)starting: the window starts again once every task runs
            elif self._running_since is None:
                self._running_since = now
            self._restarts = s.restarts
            if s.all_running and self._running_since is not None:
                self._points.append(Point(t=s.t, job_id=self._job_id, rate=s.rate, throughput=s.throughput,
                                          latency_p99_ms=s.latency_p99_ms, lag_ms=s.lag_ms, backlog=s.backlog,
                                          ci_s=self._ci_s, all_running=True, restarts=s.restarts))
            while self._points and self._points[0].t < now - self.keep_s - self.sample_s:
                self._points.popleft()

    def snapshot(self, window_s: float) -> Observation:
        now = time.time()
        with self._lock:
            since = max(now - window_s, self._running_since or now)
            pts = [p for p in self._points if p.t >= since]
            uptime = now - self._running_since if self._running_since is not None and self._all_running else 0.0
            obs = Observation(t=now, job_id=self._job_id, jobs_running=self._jobs_running, state=self._state,
                              all_running=self._all_running, ci_s=self._ci_s, uptime_s=max(0.0, uptime),
                              window_s=window_s, samples=0, restarts=max(self._restarts, 0), error=self._error)
        return summarise(obs, pts)


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def summarise(obs: Observation, pts: list[Point]) -> Observation:
    """Fill the window statistics of `obs` from its points. The demand (arrival) rate is the mean source
    rate plus the backlog's growth over the window: a job that cannot keep up reads less than arrives."""
    rated = [p for p in pts if p.rate is not None]
    obs.samples = len(rated)
    obs.rates = [p.rate for p in rated]
    obs.rate_mean = _mean(obs.rates)
    obs.demand_rate = obs.rate_mean
    with_backlog = [p for p in rated if p.backlog is not None]
    if obs.rate_mean is not None and len(with_backlog) >= 2 and with_backlog[-1].t > with_backlog[0].t:
        growth = (with_backlog[-1].backlog - with_backlog[0].backlog) / (with_backlog[-1].t - with_backlog[0].t)
        obs.demand_rate = max(0.0, obs.rate_mean + growth)
    obs.throughput = _mean([p.throughput for p in pts])
    lat = [p.latency_p99_ms for p in pts if p.latency_p99_ms is not None]
    obs.latency_p99_ms = _mean(lat)
    obs.latency_p99_max_ms = max(lat) if lat else None
    obs.lag_ms = _mean([p.lag_ms for p in pts])
    obs.backlog = pts[-1].backlog if pts else None
    return obs


# ============================================================================================ metrics

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "khaos_up": ("gauge", "1 when the last sample reached Flink and found the job running with every task, else 0"),
    "khaos_checkpoint_interval_seconds": ("gauge", "checkpoint interval in force on the running job"),
    "khaos_input_rate": ("gauge", "input (arrival) rate averaged over the decision window, events/s"),
    "khaos_forecast_rate": ("gauge", "input rate forecast over the horizon, events/s"),
    "khaos_latency_p99_milliseconds": ("gauge", "measured p99 end-to-end latency averaged over the window"),
    "khaos_predicted_latency_milliseconds": ("gauge", "model-predicted p99 latency at the current interval and planned rate"),
    "khaos_predicted_recovery_seconds": ("gauge", "model-predicted recovery time at the current interval and planned rate"),
    "khaos_recommended_checkpoint_interval_seconds": ("gauge", "interval the last decision wants to run (the best feasible one)"),
    "khaos_job_uptime_seconds": ("gauge", "seconds since the job last came (back) up"),
    "khaos_latency_limit_milliseconds": ("gauge", "the configured p99 latency limit L_max"),
    "khaos_recovery_limit_seconds": ("gauge", "the configured recovery time limit R_max"),
    "khaos_last_decision_timestamp_seconds": ("gauge", "epoch time of the last decision"),
    "khaos_loop_duration_seconds": ("gauge", "duration of the last loop iteration, realization included"),
    "khaos_decisions_total": ("counter", "decisions taken, by action (change, keep, wait)"),
    "khaos_reconfigurations_total": ("counter", "successful checkpoint interval changes made by this daemon"),
    "khaos_reconfiguration_failures_total": ("counter", "reconfigure playbook runs that failed (the job was left or rolled back)"),
    "khaos_reconciliations_total": ("counter", "pending changes left by a killed daemon that were finished on start"),
    "khaos_alerts_total": ("counter", "decisions whose running interval is predicted to break a limit (incl. no feasible interval)"),
}


def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v)) if abs(v) < 1e15 else repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """A tiny thread-safe registry rendered in the Prometheus text exposition format 0.0.4."""

    def __init__(self, labels: dict[str, str] | None = None):
        self.labels = dict(labels or {})
        self._values: dict[str, dict[tuple, float]] = {name: {} for name in METRICS}
        self._lock = threading.Lock()
        for name, (kind, _) in METRICS.items():
            if kind == "counter" and name != "khaos_decisions_total":
                self._values[name][()] = 0.0
        for action in ("change", "keep", "wait"):
            self._values["khaos_decisions_total"][(("action", action),)] = 0.0

    def set(self, name: str, value: float | None, **labels) -> None:
        assert METRICS[name][0] == "gauge", name
        with self._lock:
            key = tuple(sorted(labels.items()))
            if value is None:
                self._values[name].pop(key, None)
            else:
                self._values[name][key] = float(value)

    def inc(self, name: str, n: float = 1.0, **labels) -> None:
        assert METRICS[name][0] == "counter", name
        with self._lock:
            key = tuple(sorted(labels.items()))
            self._values[name][key] = self._values[name].get(key, 0.0) + n

    def get(self, name: str, **labels) -> float | None:
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())))

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, (kind, text) in METRICS.items():
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                for key, value in sorted(self._values[name].items()):
                    labels = {**self.labels, **dict(key)}
                    lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                    lines.append(f"{name}{{{lab}}} {_fmt_value(value)}" if lab else f"{name} {_fmt_value(value)}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """GET /metrics on host:port in a daemon thread (port 0: any free port, see .port)."""

    def __init__(self, metrics: Metrics, host: str, port: int):
        registry = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                if self.path.split("?")[0] == "/metrics":
                    body, ctype, code = registry.render().encode(), "text/plain; version=0.0.4; charset=utf-8", 200
                elif self.path == "/":
                    body, ctype, code = b"khaos daemon: metrics on /metrics\n", "text/plain; charset=utf-8", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain; charset=utf-8", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # no access log on stderr
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise KhaosError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="khaos-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ============================================================================================ journal

class Journal:
    """Append-only JSON lines; each line is written, flushed and fsynced before the step goes on."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KhaosError(f"journal {self.path}: cannot create its directory: {e.strerror or e}") from None
        self._lock = threading.Lock()

    def write(self, entry: dict) -> dict:
        entry = {"ts": round(time.time(), 3), **entry}
        entry.setdefault("time", _dt.datetime.fromtimestamp(entry["ts"], _dt.timezone.utc)
                         .isoformat(timespec="seconds").replace("+00:00", "Z"))
        line = json.dumps(_jsonable(entry), allow_nan=False, default=str)
        with self._lock:
            try:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as e:
                raise KhaosError(f"journal {self.path}: cannot append: {e.strerror or e}") from None
        return entry


# ============================================================================================ realize

class PlaybookRealizer:
    """Changes the interval the only way the daemon may: playbooks/reconfigure.yml via ansible-runner."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.base_dir = RUN_BASE / cfg.job

    def extravars(self, ci_s: float) -> dict:
        ev = {"checkpoint_interval": f"{ci_s:g}s", "flink_job_name": self.cfg.job,
              "flink_job_state_dir": str(self.cfg.state_dir), "flink_job_rest_url": FlinkClient(self.cfg.rest_url).url,
              "flink_job_reconfigure_timeout": int(math.ceil(self.cfg.reconfigure_timeout_s))}
        if self.cfg.savepoint_dir:
            ev["flink_job_savepoint_dir"] = self.cfg.savepoint_dir
        return ev

    def __call__(self, ci_s: float) -> dict:
        from . import ansible
        t0 = time.monotonic()
        # cancel=...: without a callback ansible-runner installs its own SIGTERM/SIGINT handlers that
        # SIGKILL the playbook; the daemon lets a running reconfiguration finish instead.
        ansible.run_playbook("reconfigure", self.cfg.inventory, extravars=self.extravars(ci_s),
                             ident=f"reconfigure-{self.cfg.job}-{int(time.time())}", base_dir=self.base_dir,
                             cancel=lambda: False)
        out: dict[str, Any] = {"seconds": round(time.monotonic() - t0, 2)}
        try:
            rec = deployment.load(self.cfg.record)
            out.update(job_id=rec.get("job_id"), interval_s=rec.get("checkpoint_interval_s"),
                       savepoint=rec.get("last_savepoint"))
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


# ============================================================================================ daemon

def _last_change_ts(record: dict) -> float | None:
    """When the record last saw a change attempt (success, failure or reconciliation)."""
    ts = [h.get("ts") for h in record.get("history") or []
          if h.get("action") in ("running", "savepoint_failed", "resubmit_failed") and h.get("ts")]
    return max(ts) if ts else None


class Daemon:
    def __init__(self, cfg: Config, advisor: bool = False, collector=None,
                 realize: Callable[[float], dict] | None = None, client: FlinkClient | None = None,
                 clock: Callable[[], float] = time.time):
        self.cfg, self.advisor = cfg, advisor
        self.client = client or FlinkClient(cfg.rest_url, timeout=cfg.rest_timeout_s)
        self.collector = collector
        self.realize = realize or PlaybookRealizer(cfg)
        self.clock = clock
        self.metrics = Metrics({"flink_job": cfg.job})
        self.metrics.set("khaos_latency_limit_milliseconds", cfg.l_max_ms)
        self.metrics.set("khaos_recovery_limit_seconds", cfg.r_max_s)
        self.metrics.set("khaos_up", 0)
        self.journal = Journal(cfg.journal)
        self.server: MetricsServer | None = None
        self.stopping = threading.Event()
        self.last_change_ts: float | None = None
        self.last_attempt_failed = False  # a failed reconfiguration waits out the cooldown, breach or not
        self.iteration = 0
        self._lock_fh = None
        self._model_mtime = self._mtime(cfg.model_path)

    # ---- signals ------------------------------------------------------------------------------
    def install_signals(self) -> None:
        def handler(signum, _frame):
            name = signal.Signals(signum).name
            if self.stopping.is_set():
                _log(logging.WARNING, "still_finishing", signal=name,
                     detail="the step in flight (a reconfiguration is never interrupted) finishes, then the daemon exits")
            else:
                _log(logging.INFO, "stopping", signal=name, detail="finishing the step in flight, then exiting")
            self.stopping.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ---- start ----------------------------------------------------------------------------------
    def _take_lock(self) -> None:
        lock = self.cfg.state_dir / f".{self.cfg.job}.daemon.lock"
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock, "a+")
        except OSError as e:
            raise KhaosError(f"{self.cfg.path}: state_dir: cannot create {lock}: {e.strerror or e}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            other = fh.read().strip() or "?"
            fh.close()
            raise KhaosError(f"another khaos daemon (pid {other}) already controls job {self.cfg.job!r} ({lock})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh

    def _wait_orphans(self) -> None:
        base = getattr(self.realize, "base_dir", None)
        if base is None:
            return
        pids = orphan_runs(base)
        if not pids:
            return
        limit = 2 * self.cfg.reconfigure_timeout_s + 60
        _log(logging.WARNING, "waiting_for_orphan_reconfigure", pids=",".join(map(str, pids)), max_wait_s=limit,
             detail="a reconfiguration started by a killed daemon is still running: letting it finish")
        self.journal.write({"event": "orphan_wait", "job": self.cfg.job, "pids": pids})
        deadline = time.monotonic() + limit
        while pids and time.monotonic() < deadline:
            time.sleep(0.5)
            pids = orphan_runs(base)
        if pids:
            raise KhaosError(f"a reconfigure playbook left by a killed daemon (pids {', '.join(map(str, pids))}) is "
                             f"still running after {limit:.0f}s: inspect or stop it, then start the daemon again")

    def reconcile(self) -> dict | None:
        """Finish a change a killed daemon left pending in the record (reconfigure.yml reconciles first)."""
        path = self.cfg.record
        if not path.exists():
            return None
        try:
            record = deployment.load(path)
        except ValueError as e:
            raise KhaosError(f"deployment record {path} is not valid JSON: {e}") from None
        self.last_change_ts = _last_change_ts(record)
        pending = record.get("pending")
        if not pending:
            return None
        target = float(pending.get("new_s") or pending.get("old_s"))
        if self.advisor:
            _log(logging.ERROR, "pending_change", record=str(path), target_s=target,
                 detail="a change is pending and --advisor never changes the job: run without --advisor to finish it")
            self.journal.write({"event": "pending_change", "job": self.cfg.job, "pending": pending, "advisor": True})
            return None
        _log(logging.WARNING, "reconcile_started", record=str(path), target_s=target, savepoint=pending.get("savepoint"))
        self.journal.write({"event": "reconcile_started", "job": self.cfg.job, "pending": pending, "target_ci_s": target})
        try:
            result = self.realize(target)
        except KhaosError as e:
            self.journal.write({"event": "reconcile", "job": self.cfg.job, "status": "failed", "error": str(e)})
            raise KhaosError(f"finishing the change pending in {path} failed: {e}") from None
        self.metrics.inc("khaos_reconciliations_total")
        self.last_change_ts = self.clock()
        self.journal.write({"event": "reconcile", "job": self.cfg.job, "status": "ok", "target_ci_s": target, **result})
        _log(logging.INFO, "reconciled", target_s=target, **{k: v for k, v in result.items() if v is not None})
        return result

    def _check_job(self) -> None:
        try:
            jobs = self.client.live_jobs(self.cfg.job)
        except FlinkError as e:
            raise KhaosError(f"{self.cfg.path}: flink.rest_url: {e}") from None
        if len(jobs) == 1:
            return
        if len(jobs) > 1:
            raise KhaosError(f"{self.cfg.path}: job: {len(jobs)} jobs named {self.cfg.job!r} run on {self.client.url} "
                             f"({', '.join(j['jid'] for j in jobs)}): the daemon controls exactly one")
        hint = ""
        try:
            done = [j for j in self.client.get("/jobs/overview")["jobs"] if j["name"] == self.cfg.job]
            if done:
                last = max(done, key=lambda j: j.get("end-time", 0))
                sp = ((self.client.checkpoints(last["jid"]).get("latest") or {}).get("savepoint") or {}).get("external_path")
                hint = f"; the last one ({last['jid']}) is {last['state']}" + (f" with savepoint {sp}" if sp else "")
        except (FlinkError, KeyError, ValueError):
            pass
        raise KhaosError(f"{self.cfg.path}: job: no running job named {self.cfg.job!r} on {self.client.url} and no "
                         f"change pending in {self.cfg.record}{hint}: deploy it first (playbooks/deploy_job.yml)")

    def start(self) -> None:
        """Lock, wait for an orphaned reconfiguration, reconcile, check the job; then serve and sample."""
        self._take_lock()
        if not self.advisor:
            if not self.cfg.inventory.exists():
                raise KhaosError(f"{self.cfg.path}: inventory: {self.cfg.inventory} does not exist")
            self._wait_orphans()
        self.journal.write({"event": "start", "job": self.cfg.job, "pid": os.getpid(), "advisor": self.advisor,
                            "config": str(self.cfg.path), "model": str(self.cfg.model_path),
                            "model_data_hash": self.cfg.model.get("data_hash"),
                            "limits": {"latency_ms": self.cfg.l_max_ms, "recovery_s": self.cfg.r_max_s}})
        self.reconcile()
        self._check_job()
        if not self.advisor and not self.cfg.record.exists():
            raise KhaosError(f"{self.cfg.path}: state_dir: no deployment record {self.cfg.record}: reconfigure.yml "
                             f"needs the record deploy_job.yml writes (or run with --advisor)")
        if self.cfg.metrics_port is not None:
            self.server = MetricsServer(self.metrics, self.cfg.metrics_host, self.cfg.metrics_port).start()
            _log(logging.INFO, "metrics", url=f"http://{self.server.host}:{self.server.port}/metrics")
        if self.collector is None:
            self.collector = FlinkCollector(self.client, self.cfg.job, self.cfg.sample_s,
                                            keep_s=max(self.cfg.window_s, self.cfg.sample_s * 2))
        self.collector.start()
        _log(logging.INFO, "started", job=self.cfg.job, advisor=self.advisor, period_s=self.cfg.period_s,
             window_s=self.cfg.window_s, l_max_ms=self.cfg.l_max_ms, r_max_s=self.cfg.r_max_s,
             journal=str(self.cfg.journal))

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    # ---- one iteration ----------------------------------------------------------------------------
    def _wait_reason(self, obs: Observation) -> str | None:
        cfg = self.cfg
        if obs.job_id is None:
            return f"no running job named {cfg.job!r}" + (f" ({obs.error})" if obs.error else "")
        if obs.error:
            return f"the last sample failed: {obs.error}"
        if not obs.all_running:
            return f"job {obs.job_id} is {obs.state} but not every task runs"
        if obs.uptime_s < cfg.min_uptime_s:
            return f"job up for {obs.uptime_s:.0f} s, less than min_uptime_s {cfg.min_uptime_s:g}"
        need = max(2, int(0.5 * cfg.window_s / cfg.sample_s))
        if obs.samples < need:
            return f"{obs.samples} rate samples in the window, need {need}"
        if obs.ci_s is None or obs.ci_s <= 0:
            return "checkpointing is disabled on the job (no interval in force)"
        return None

    @staticmethod
    def _mtime(path: Path) -> int | None:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return None

    def reload_model(self) -> None:
        """Take a model file that changed since it was read (`khaos promote` swaps it atomically);
        a file that does not load or lacks the mode is reported and the current model kept."""
        mtime = self._mtime(self.cfg.model_path)
        if mtime is None or mtime == self._model_mtime:
            return
        self._model_mtime = mtime
        try:
            model = models.load_model(self.cfg.model_path)
            missing = models.unprofiled(model, self.cfg.mode)
            if missing:
                raise KhaosError(f"mode {missing}")
        except KhaosError as e:
            _log(logging.ERROR, "model_reload_failed", path=str(self.cfg.model_path), error=str(e),
                 detail="the current model stays in use")
            self.journal.write({"event": "model_reload_failed", "job": self.cfg.job, "error": str(e)})
            return
        self.cfg.model = model
        _log(logging.INFO, "model_reloaded", path=str(self.cfg.model_path), data_hash=model.get("data_hash"))
        self.journal.write({"event": "model_reloaded", "job": self.cfg.job, "model": str(self.cfg.model_path),
                            "model_data_hash": model.get("data_hash")})

    def plan_rate(self, obs: Observation) -> tuple[float, float]:
        """(forecast, rate to plan for). The plan is max(window mean, forecast): a rising rate is met
        before it arrives, a falling one only once it has fallen (never lengthen the interval early)."""
        from . import workload
        import pandas as pd
        demand = obs.demand_rate if obs.demand_rate is not None else obs.rate_mean
        shift = demand - obs.rate_mean  # the backlog growth also applies to the forecast
        step = max(1, int(round(self.cfg.forecast_step_s / self.cfg.sample_s)))
        fc = workload.forecast(pd.Series(obs.rates, dtype=float), self.cfg.forecast_horizon_s / self.cfg.sample_s,
                               step_s=step) + shift
        return max(fc, 0.0), max(demand, fc, MIN_RATE)

    def step(self) -> dict:
        """Collect -> forecast -> evaluate -> decide -> realize; journal and metrics. Never raises for a
        problem of the job or of Flink (that is a `wait` with the reason); returns the journal entry."""
        t0 = time.monotonic()
        cfg, m = self.cfg, self.metrics
        self.iteration += 1
        now = self.clock()
        self.reload_model()
        obs = self.collector.snapshot(cfg.window_s)
        m.set("khaos_up", 1 if (obs.job_id and obs.all_running and not obs.error) else 0)
        m.set("khaos_checkpoint_interval_seconds", obs.ci_s)
        m.set("khaos_job_uptime_seconds", obs.uptime_s)
        m.set("khaos_latency_p99_milliseconds", obs.latency_p99_ms)
        m.set("khaos_input_rate", obs.demand_rate)
        entry: dict[str, Any] = {"event": "decision", "job": cfg.job, "iteration": self.iteration,
                                 "advisor": self.advisor, "inputs": obs.inputs(),
                                 "limits": {"latency_ms": cfg.l_max_ms, "recovery_s": cfg.r_max_s},
                                 "last_change_ts": self.last_change_ts, "cooldown_s": cfg.cooldown_s}
        alert = False
        why = self._wait_reason(obs)
        if obs.jobs_running > 1:
            alert = True
            entry["warning"] = f"{obs.jobs_running} jobs named {cfg.job!r} run; deciding on the newest"
        if why:
            entry["decision"] = {"action": "wait", "ci_s": obs.ci_s, "current_ci_s": obs.ci_s, "alert": alert,
                                 "reason": why}
        else:
            try:
                fc, plan = self.plan_rate(obs)
                lat, rec_s = models.predict(cfg.model, plan, obs.ci_s, cfg.mode)
                rec = optimizer.recommend(cfg.model, rate=plan, current_ci=obs.ci_s, l_max_ms=cfg.l_max_ms,
                                          r_max_s=cfg.r_max_s, ci_min=cfg.ci_min, ci_max=cfg.ci_max,
                                          step=cfg.ci_step, dead_band=cfg.dead_band_s, mtbf_h=cfg.mtbf_h,
                                          mode=cfg.mode, last_change_ts=self.last_change_ts,
                                          cooldown_s=cfg.cooldown_s, now=now,
                                          breach_overrides_cooldown=not self.last_attempt_failed)
            except KhaosError as e:
                entry["decision"] = {"action": "wait", "ci_s": obs.ci_s, "current_ci_s": obs.ci_s, "alert": True,
                                     "reason": f"cannot evaluate: {e}"}
                alert = True
            else:
                alert = alert or rec.alert
                entry["forecast_rate"], entry["plan_rate"] = fc, plan
                entry["predicted_at_current"] = {"ci_s": obs.ci_s, "latency_ms": lat, "recovery_s": rec_s}
                entry["decision"] = {
                    "action": rec.action, "ci_s": rec.ci_s, "current_ci_s": obs.ci_s, "best_ci_s": rec.best_ci_s,
                    "alert": rec.alert, "feasible": rec.feasible, "reason": rec.reason,
                    "predicted_latency_ms": rec.predicted_latency_ms, "predicted_recovery_s": rec.predicted_recovery_s,
                    "ratios": rec.ratios, "warnings": rec.warnings, "young_s": rec.young_s, "daly_s": rec.daly_s}
                entry["explain"] = optimizer.explain(rec)
                m.set("khaos_forecast_rate", fc)
                m.set("khaos_predicted_latency_milliseconds", lat if math.isfinite(lat) else None)
                m.set("khaos_predicted_recovery_seconds", rec_s if math.isfinite(rec_s) else math.inf)
                m.set("khaos_recommended_checkpoint_interval_seconds", rec.best_ci_s)
                if rec.action == "change":
                    entry["realize"] = self._realize(rec.ci_s, obs, entry)
        d = entry["decision"]
        entry["decision"]["alert"] = alert
        m.inc("khaos_decisions_total", action=d["action"])
        if alert:
            m.inc("khaos_alerts_total")
        m.set("khaos_last_decision_timestamp_seconds", now)
        entry["loop_seconds"] = round(time.monotonic() - t0, 3)
        m.set("khaos_loop_duration_seconds", entry["loop_seconds"])
        self.journal.write(entry)
        fields = {"iteration": self.iteration, "action": d["action"], "ci_s": d.get("ci_s"),
                  "current_ci_s": d.get("current_ci_s"), "rate": obs.demand_rate, "plan_rate": entry.get("plan_rate"),
                  "latency_p99_ms": obs.latency_p99_ms, "alert": alert, "reason": d["reason"]}
        if "realize" in entry:
            fields["realize"] = entry["realize"].get("status")
        _log(logging.WARNING if alert else logging.INFO, "decision", **fields)
        if alert:
            _log(logging.WARNING, "ALERT", job=cfg.job, detail=entry.get("explain") or entry.get("warning") or d["reason"])
        return entry

    def _realize(self, ci_s: float, obs: Observation, entry: dict) -> dict:
        if self.advisor:
            _log(logging.INFO, "advice", job=self.cfg.job, from_s=obs.ci_s, to_s=ci_s,
                 detail="--advisor: the job is not changed")
            return {"status": "advisor", "target_ci_s": ci_s}
        _log(logging.INFO, "reconfigure_started", job=self.cfg.job, job_id=obs.job_id, from_s=obs.ci_s, to_s=ci_s)
        # the decision and its inputs go to the journal before the playbook: a daemon killed while it
        # runs leaves them behind (the `decision` line is written after the realization)
        self.journal.write({"event": "reconfigure_started", "job": self.cfg.job, "iteration": self.iteration,
                            "job_id": obs.job_id, "from_ci_s": obs.ci_s, "target_ci_s": ci_s,
                            **{k: entry[k] for k in ("inputs", "forecast_rate", "plan_rate", "decision") if k in entry}})
        t0 = time.monotonic()
        try:
            result = self.realize(ci_s)
        except KhaosError as e:
            # the playbook either left the job untouched (savepoint failed) or rolled it back; the failed
            # attempt starts the cooldown too, so a persistent failure is retried once per cooldown
            self.last_change_ts, self.last_attempt_failed = self.clock(), True
            self.metrics.inc("khaos_reconfiguration_failures_total")
            _log(logging.ERROR, "reconfigure_failed", job=self.cfg.job, to_s=ci_s, error=str(e))
            return {"status": "failed", "target_ci_s": ci_s, "error": str(e), "seconds": round(time.monotonic() - t0, 2)}
        self.last_change_ts, self.last_attempt_failed = self.clock(), False
        self.metrics.inc("khaos_reconfigurations_total")
        self.metrics.set("khaos_checkpoint_interval_seconds", result.get("interval_s") or ci_s)
        _log(logging.INFO, "reconfigured", job=self.cfg.job, to_s=ci_s,
             **{k: v for k, v in result.items() if v is not None})
        return {"status": "ok", "target_ci_s": ci_s, **result}

    # ---- the loop -----------------------------------------------------------------------------------
    def run(self, once: bool = False) -> int:
        """Start, then decide every period_s (the first time once a window is collected) until a signal."""
        try:
            self.start()
            if self.stopping.is_set():
                return 0
            next_at = time.monotonic() + self.cfg.window_s
            while not self.stopping.is_set():
                if self.stopping.wait(max(0.0, next_at - time.monotonic())):
                    break
                try:
                    self.step()
                except KhaosError as e:  # e.g. the journal became unwritable: say so, keep going
                    _log(logging.ERROR, "step_failed", error=str(e))
                if once:
                    break
                next_at = max(next_at + self.cfg.period_s, time.monotonic())
            return 0
        finally:
            try:
                self.journal.write({"event": "stop", "job": self.cfg.job, "iterations": self.iteration,
                                    "reconfigurations": self.metrics.get("khaos_reconfigurations_total")})
            except KhaosError:
                pass
            self.close()
            _log(logging.INFO, "stopped", job=self.cfg.job, iterations=self.iteration)


def run(config: str | Path, advisor: bool = False, once: bool = False, check: bool = False) -> int:
    cfg = load_config(config)
    if check:
        print(f"{cfg.path}: ok: job {cfg.job!r} on {cfg.rest_url}, limits {cfg.l_max_ms:g} ms / {cfg.r_max_s:g} s, "
              f"CI {cfg.ci_min:g}-{cfg.ci_max:g} s, model {cfg.model_path} ({cfg.model.get('data_hash', '?')[:19]})")
        return 0
    setup_logging(cfg.log_level, cfg.log_format)
    d = Daemon(cfg, advisor=advisor)
    d.install_signals()
    return d.run(once=once)


# ============================================================================================ CLI

def _cli_run(args) -> None:
    rc = run(args.config, advisor=args.advisor, once=args.once, check=args.check)
    if rc:
        sys.exit(rc)


def add_cli(subparsers) -> None:
    """Register ``khaos run CONFIG [--advisor] [--once]`` on the ``khaos`` sub-command parser."""
    p = subparsers.add_parser("run", help="run the runtime controller: keep a job's checkpoint interval inside "
                                          "its latency and recovery limits")
    p.add_argument("config", help="daemon config (YAML), e.g. examples/controller.yml")
    p.add_argument("--advisor", action="store_true", help="recommend only: journal, log and export, never change the job")
    p.add_argument("--once", action="store_true", help="one iteration (collect one window, decide, act), then exit")
    p.add_argument("--check", action="store_true", help="check the config and the model, print one line and exit")
    p.set_defaults(func=_cli_run)


def main(argv: list[str] | None = None) -> int:
    """`python -m khaos_controller.daemon CONFIG [--advisor] [--once]` (same as `khaos run`)."""
    parser = argparse.ArgumentParser(prog="khaos")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_cli(sub)
    args = parser.parse_args(["run", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args.config, advisor=args.advisor, once=args.once, check=args.check)
    except KhaosError as e:
        print(f"khaos: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
