"""Collect: what the daemon decides on. A :class:`~khaos_controller.flink.sampler.JobSampler` follows the
job by name every ``sample_s``; this keeps the window of samples since the job last came up and
summarises it into an :class:`Observation`.

Every ``LOOK_S`` it also reads every subtask's busy time (flink/probe.busy_times): over the window the job
could read at most ``rate / busy`` events/s, ``busy`` the busiest subtask's busy fraction (the Flink
autoscaler's true processing rate; profile/capacity.py, the same estimate the profiler records). So the
observation carries the job's capacity on THIS cluster and its utilization, which a model fitted on
profiling clusters of another capacity needs."""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field

from ..errors import KhaosError
from ..flink.client import FlinkClient, FlinkError
from ..flink.probe import busy_times
from ..flink.sampler import JobSampler
from ..profile.capacity import span_capacity

LOOK_S = 5.0  # busy-time looks, s (one REST call per vertex)
# Below this busy fraction rate / busy is mostly noise (a job at 2 % busy gave 27k-137k events/s within a
# minute in the demo): no estimate, the model's profiled capacity is used.
ONLINE_MIN_BUSY = 0.10
# Busy-time looks of at least this many seconds back make the estimate (the decision window may be shorter:
# with 3 looks in 15 s, one missed look under load left no span of 8 s, and the decision fell back to the
# model's profiled capacity, 2.5x off, every third step of an evaluation).
CAPACITY_WINDOW_S = 30.0
# A step without a fresh estimate keeps the last one for this long (same job name), rather than the model's.
CAPACITY_HOLD_S = 120.0


@dataclass
class Point:
    """One sample of the job (rates in events/s, times in ms unless _s)."""

    t: float
    job_id: str
    rate_in: float | None
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
    jobs_running: int  # running jobs of that name (1 expected)
    state: str  # Flink job state, or NONE
    all_running: bool
    ci_s: float | None  # checkpoint interval in force
    uptime_s: float  # seconds since the job last came (back) up with every task running
    window_s: float
    samples: int  # samples in the window with a rate
    rates: list[float] = field(default_factory=list)
    rate_mean: float | None = None  # events/s read by the sources
    demand_rate: float | None = (
        None  # events/s arriving: rate_mean + backlog growth (= rate_mean without a backlog gauge)
    )
    throughput: float | None = None
    latency_p99_ms: float | None = None  # mean of the per-second p99 over the window
    latency_p99_max_ms: float | None = None
    lag_ms: float | None = None
    backlog: float | None = None
    restarts: int = 0
    error: str | None = None  # the last REST error, if the last sample failed
    capacity: float | None = None  # events/s the job could read on this cluster: rate / busiest busy fraction
    busy: float | None = None  # the busiest subtask's busy fraction over the window
    utilization: float | None = None  # demand rate / capacity
    capacity_age_s: float | None = None  # set when the capacity is the last estimate, held: its age

    def inputs(self) -> dict:
        """The observation as the journal records it (without the raw rates)."""
        d = dataclasses.asdict(self)
        d.pop("rates")
        return d


def running_since(detail: dict, now: float) -> float | None:
    """When the job last became RUNNING, on OUR clock (``now``: our time of the answer): Flink's
    timestamps are the JobManager's clock, so only its difference to the answer's own ``now`` is used
    (a JobManager clock minutes off must not make the job look up for minutes, or not yet up). None
    when Flink gives no time."""
    running_ms = detail.get("timestamps", {}).get("RUNNING") or detail.get("start-time") or 0
    jm_now_ms = detail.get("now") or 0
    if not (running_ms > 0 and jm_now_ms > 0):
        return None
    return now - max(0.0, jm_now_ms - running_ms) / 1000.0


class FlinkCollector:
    """Samples the job named `job` every `sample_s` seconds in a thread; `snapshot()` summarises the window.

    The window restarts when the job id changes (a reconfiguration replaces the job), and only samples
    taken since the job last came up (every task RUNNING, no new restart) count.
    """

    def __init__(self, client: FlinkClient, job: str, sample_s: float = 1.0, keep_s: float = 300.0):
        self.client, self.job, self.sample_s, self.keep_s = client, job, sample_s, keep_s
        self.sampler = JobSampler(client, job, sample_s, on_row=self._on_row, keep=False, name="khaos-collector")
        self._points: collections.deque[Point] = collections.deque()
        self._lock = threading.Lock()
        self._job_id: str | None = None
        self._ci_s: float | None = None
        self._running_since: float | None = None
        self._restarts = 0
        self._state = "NONE"
        self._all_running = False
        self._jobs_running = 0
        self._error: str | None = None
        self._looks: collections.deque[list[dict]] = collections.deque()  # busy_times() of this attempt
        self._last_look = 0.0
        self._estimate: tuple[float, float] | None = None  # (when, capacity) of the last online estimate

    def start(self) -> None:
        """Start sampling in the background."""
        self.sampler.start()

    def stop(self) -> None:
        """Stop sampling."""
        self.sampler.stop()

    def sample_once(self) -> None:
        """Take one sample now (tests and the first look)."""
        self.sampler.once()

    def _on_row(self, row: dict) -> None:
        now = time.time()
        if row["error"] is not None:
            with self._lock:
                self._error, self._all_running, self._state = row["error"], False, "UNKNOWN"
            return
        if row["job_id"] is None:
            with self._lock:
                self._jobs_running, self._job_id, self._state, self._all_running = 0, None, "NONE", False
                self._running_since, self._error = None, None
                self._points.clear()
                self._looks.clear()
            return
        if row["job_id"] != self._job_id:
            try:  # when the job's state last became RUNNING
                detail = self.client.job(row["job_id"])
            except FlinkError as e:
                with self._lock:
                    self._error, self._all_running = str(e), False
                return
            with self._lock:
                self._job_id, self._ci_s = row["job_id"], row["ci_s"]
                self._points.clear()
                self._looks.clear()
                self._restarts = -1  # unknown until the first sample
                self._running_since = running_since(detail, now)
        with self._lock:
            self._jobs_running, self._state, self._error = row["jobs_running"], row["state"], None
            self._all_running = bool(row["all_running"])
            restarts = int(row["restarts"] or 0)
            if not self._all_running or (self._restarts >= 0 and restarts > self._restarts):
                self._running_since = None  # (re)starting: the window starts again once every task runs
                self._looks.clear()
            elif self._running_since is None:
                self._running_since = now
            self._restarts = restarts
            if self._all_running and self._running_since is not None:
                self._points.append(
                    Point(
                        t=row["t"],
                        job_id=self._job_id,
                        rate_in=row["rate_in"],
                        throughput=row["throughput"],
                        latency_p99_ms=row["latency_p99_ms"],
                        lag_ms=row["lag_ms"],
                        backlog=row["backlog"],
                        ci_s=self._ci_s,
                        all_running=True,
                        restarts=restarts,
                    )
                )
            while self._points and self._points[0].t < now - self.keep_s - self.sample_s:
                self._points.popleft()
            look = self._all_running and self._running_since is not None and now - self._last_look >= LOOK_S
            job_id = self._job_id
        if look:
            self._look(job_id, now)

    def _look(self, job_id: str, now: float) -> None:
        """One busy-time look (a REST problem is a missing look, not an error)."""
        self._last_look = now
        try:
            rows = busy_times(self.client, job_id)
        except KhaosError:
            return
        if not rows or any(r["busy_ms"] is None for r in rows):
            return
        with self._lock:
            if job_id != self._job_id:
                return
            self._looks.append(rows)
            while self._looks and self._looks[0][0]["t"] < now - self.keep_s - LOOK_S:
                self._looks.popleft()

    def snapshot(self, window_s: float) -> Observation:
        """The job now and its samples of the last ``window_s`` seconds since it came up."""
        now = time.time()
        with self._lock:
            up = self._running_since or now
            since = max(now - window_s, up)
            pts = [p for p in self._points if p.t >= since]
            looks = [rows for rows in self._looks if rows[0]["t"] >= max(now - max(window_s, CAPACITY_WINDOW_S), up)]
            uptime = now - self._running_since if self._running_since is not None and self._all_running else 0.0
            obs = Observation(
                t=now,
                job_id=self._job_id,
                jobs_running=self._jobs_running,
                state=self._state,
                all_running=self._all_running,
                ci_s=self._ci_s,
                uptime_s=max(0.0, uptime),
                window_s=window_s,
                samples=0,
                restarts=max(self._restarts, 0),
                error=self._error,
            )
        obs = with_capacity(summarise(obs, pts), looks)
        if obs.capacity is not None:
            self._estimate = (now, obs.capacity)
        elif self._estimate is not None and now - self._estimate[0] <= CAPACITY_HOLD_S and obs.rate_mean:
            obs.capacity, obs.capacity_age_s = self._estimate[1], round(now - self._estimate[0], 1)
            obs.utilization = (obs.demand_rate or obs.rate_mean) / obs.capacity
        return obs


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def with_capacity(obs: Observation, looks: list[list[dict]]) -> Observation:
    """Fill the capacity, busy fraction and utilization of ``obs`` from the window's busy-time looks (the
    longest span of one attempt: profile/capacity.span_capacity, as the profiler estimates it); left None
    without one, or when the busiest subtask was busy less than ONLINE_MIN_BUSY (the capacity is then far
    above the rate, and rate / busy mostly noise)."""
    e = span_capacity(looks, obs.rate_mean) if obs.rate_mean else None
    if e is None or e.capacity is None or e.busy < ONLINE_MIN_BUSY:
        return obs
    obs.capacity, obs.busy = e.capacity, e.busy
    obs.utilization = (obs.demand_rate or obs.rate_mean) / e.capacity
    return obs


def summarise(obs: Observation, pts: list[Point]) -> Observation:
    """Fill the window statistics of `obs` from its points. The demand (arrival) rate is the mean source
    rate plus the backlog's growth over the window: a job that cannot keep up reads less than arrives."""
    rated = [p for p in pts if p.rate_in is not None]
    obs.samples = len(rated)
    obs.rates = [p.rate_in for p in rated]
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
