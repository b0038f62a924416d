"""A profiling cluster's capacity, measured: the sustainable throughput of a job config on a cluster.

Two measurements, both recorded (docs/profiling.md, "Capacity and utilization"):

* **busy time** (what the Flink autoscaler does): Flink counts, per subtask, the milliseconds it was busy
  (``accumulateBusyTimeMs``: neither idle nor back-pressured). Over a steady-state window the job reads
  ``rate`` records/s and the bottleneck subtask is busy a fraction ``b`` of the time, so the job could read
  at most ``rate / b`` records/s: the capacity. :class:`Tracker` looks at every subtask every few seconds
  during a unit; :func:`busy_capacity` turns two looks into an :class:`Estimate`, :func:`annotate` puts one
  per failure (its pre-failure window) into the results: ``capacity``, ``utilization = rate / capacity``.
  The same two REST reads work on any running job, so a daemon can estimate utilization online.
* **saturation probe** (a ramp taken to its end): before the units, each cluster runs the job once with an
  input rate far above its capacity (:func:`probe`); what reaches the sink per second is the sustainable
  throughput (``capacity_probe``). An experiment can give utilization levels instead of rates: a unit's
  rate is then ``level x`` its cluster's probed capacity (:func:`unit_rate`).

The tracker also keeps the checkpoint history, so each failure gets the age of the checkpoint Flink
actually restored (``restored_checkpoint_age_s``): the part of the backlog ``rate x (age + downtime)``
that the checkpoint interval decides.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd
from pydantic import Field

from ..errors import KhaosError
from ..flink.client import FlinkClient
from ..flink.probe import busy_times
from ..schema import Section
from .ownjobs import OwnJobs

MIN_BUSY = 0.02  # below this busy fraction rate / busy says nothing (timer resolution, idle jobs)
TRACK_PERIOD_S = 2.0
MIN_WINDOW_S = 8.0  # a shorter window of looks gives no estimate


class CapacitySection(Section):
    """The experiment's ``capacity`` section: the saturation probe run once per cluster before the units."""

    probe: bool = Field(True, description="run the saturation probe once per cluster before the units")
    probe_rate: float = Field(
        20000, ge=1, le=1_000_000, description="input rate of the probe, events/s: far above the capacity"
    )
    probe_ci_s: float | None = Field(
        None, ge=1, le=3600, description="checkpoint interval of the probe, s (default: the median interval)"
    )
    warmup_s: float = Field(25, ge=5, le=3600, description="probe: seconds of saturation before measuring")
    measure_s: float = Field(40, ge=5, le=3600, description="probe: seconds of sink throughput measured")
    source: str = Field(
        "busy",
        pattern="^(busy|probe)$",
        description="which estimate the `capacity` column (and utilization) uses: busy (per failure, "
        "the autoscaler's rate / busy fraction) or probe (per cluster)",
    )


@dataclass
class CapacitySpec:
    """The capacity section, checked."""

    probe: bool = True
    probe_rate: float = 20000.0
    probe_ci_s: float | None = None
    warmup_s: float = 25.0
    measure_s: float = 40.0
    source: str = "busy"

    @classmethod
    def of(cls, s: CapacitySection | None) -> CapacitySpec:
        """From the file's section (None: the defaults)."""
        return cls(**s.model_dump()) if s is not None else cls()


# ---------------------------------------------------------------------------------------------- busy time


@dataclass
class Estimate:
    """Capacity from busy time over one window."""

    capacity: float | None  # events/s the job could read: rate / busy (None: busy too small or no window)
    busy: float  # busy fraction of the bottleneck subtask
    bottleneck: str  # "<vertex name>#<subtask>"
    window_s: float
    rate: float  # the job's input rate over the window, events/s
    true_rate: float | None = None  # records/s the bottleneck subtask processes while busy (autoscaler's)


def _key(row: dict) -> tuple[str, int]:
    return row["vertex"], int(row["subtask"])


def busy_capacity(before: list[dict], after: list[dict], rate: float) -> Estimate | None:
    """Capacity from two looks (:func:`~khaos_controller.flink.probe.busy_times`) of one attempt, at input
    ``rate`` events/s over the window: ``rate / b`` with ``b`` the largest busy fraction of any subtask.
    None when the looks do not pair (another attempt: a counter went down) or span no time."""
    if not before or not after or not (rate and math.isfinite(rate) and rate > 0):
        return None
    b0 = {_key(r): r for r in before}
    best: tuple[float, dict, dict] | None = None
    for r1 in after:
        r0 = b0.get(_key(r1))
        if r0 is None or r0["busy_ms"] is None or r1["busy_ms"] is None:
            continue
        dt = r1["t"] - r0["t"]
        if dt <= 0:
            return None
        spent = [(r1[f] or 0) - (r0[f] or 0) for f in ("busy_ms", "idle_ms", "backpressured_ms")]
        if min(spent) < 0:  # counters went down: a restart between the looks
            return None
        # Flink's own elapsed time of the subtask (busy + idle + back-pressured), not our clock: the REST
        # cache serves each TaskManager's values up to a second late
        total = sum(spent) if sum(spent) > 0 else 1000.0 * dt
        busy = spent[0] / total
        if best is None or busy > best[0]:
            best = (busy, r0, r1)
    if best is None:
        return None
    busy, r0, r1 = best
    busy = min(busy, 1.0)
    dt = r1["t"] - r0["t"]
    true_rate = None
    if r0.get("records_in") is not None and r1.get("records_in") is not None and r1["busy_ms"] > r0["busy_ms"]:
        true_rate = 1000.0 * (r1["records_in"] - r0["records_in"]) / (r1["busy_ms"] - r0["busy_ms"])
    return Estimate(
        capacity=rate / busy if busy >= MIN_BUSY else None,
        busy=busy,
        bottleneck=f"{r1['name']}#{r1['subtask']}",
        window_s=dt,
        rate=rate,
        true_rate=true_rate,
    )


def span_capacity(looks: list[list[dict]], rate: float) -> Estimate | None:
    """Busy-time capacity over the longest span of one attempt in ``looks`` (oldest first): the earliest
    look that pairs with the last one, at least MIN_WINDOW_S before it; None without one."""
    for first in looks[:-1]:
        if looks[-1][0]["t"] - first[0]["t"] < MIN_WINDOW_S:
            return None
        e = busy_capacity(first, looks[-1], rate)
        if e is not None:
            return e
    return None


@dataclass
class Tracker:
    """Looks at a job's busy time and checkpoint history every ``period`` s in a thread (one per unit)."""

    client: FlinkClient
    job_id: str
    period: float = TRACK_PERIOD_S
    looks: list[list[dict]] = field(default_factory=list)  # busy_times() per tick
    checkpoints: dict[int, dict] = field(default_factory=dict)  # id -> trigger time, size, duration
    restores: list[tuple[float, int]] = field(default_factory=list)  # (seen at, restored checkpoint id)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Tracker:
        """Look in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name=f"capacity-{self.job_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop looking (waits for the look in flight)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.client.timeout * 4 + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.look()
            self._stop.wait(self.period)

    def look(self) -> None:
        """One look (never raises: a REST problem is a missing look)."""
        try:
            rows = busy_times(self.client, self.job_id)
            if rows and all(r["busy_ms"] is not None for r in rows):
                self.looks.append(rows)
        except KhaosError:
            pass
        try:
            ck = self.client.checkpoints(self.job_id)
        except KhaosError:
            return
        for h in ck.get("history") or []:
            if h.get("status") == "COMPLETED" and "id" in h:
                self.checkpoints[int(h["id"])] = {
                    "trigger_s": h.get("trigger_timestamp", 0) / 1000,
                    "duration_ms": h.get("end_to_end_duration"),
                    "size_bytes": h.get("state_size") or h.get("checkpointed_size"),
                }
        restored = (ck.get("latest") or {}).get("restored") or {}
        if "id" in restored and (not self.restores or self.restores[-1][1] != int(restored["id"])):
            self.restores.append((time.time(), int(restored["id"])))

    def estimate(self, t0: float, t1: float, rate: float) -> Estimate | None:
        """Busy-time capacity over the longest span of one attempt's looks inside [t0, t1]."""
        return span_capacity([rows for rows in self.looks if t0 <= rows[0]["t"] <= t1], rate)

    def restored_after(self, t_fail: float) -> tuple[int, float] | None:
        """(id, trigger time) of the checkpoint Flink restored after a failure at ``t_fail``."""
        for seen, cid in self.restores:
            if seen >= t_fail and cid in self.checkpoints:
                return cid, self.checkpoints[cid]["trigger_s"]
        return None

    def frame(self) -> pd.DataFrame:
        """Every look, one row per subtask (for series/<cluster>-<unit>-busy.csv)."""
        return pd.DataFrame([r for rows in self.looks for r in rows])


def annotate(
    rows: list[dict],
    tracker: Tracker,
    window_s: float,
    consecutive_s: float,
    probed: float | None,
    source: str = "busy",
    level: float | None = None,
) -> None:
    """Add capacity, utilization and the restored checkpoint's age to a unit's failure rows (in place).

    Each failure's window is ``[t_fail - window_s, t_fail)``, starting no earlier than the previous
    failure's recovery + ``consecutive_s`` (its catch-up is not steady state). ``probed``: the cluster's
    probed capacity; ``source``: which of the two is ``capacity``; ``level``: the unit's utilization level."""
    earliest = 0.0
    for row in sorted(rows, key=lambda r: r["t_fail"]):
        t_fail = float(row["t_fail"])
        rate = row.get("pre_rate")
        rate = float(rate) if rate is not None and math.isfinite(float(rate)) and rate > 0 else float(row["rate"])
        est = tracker.estimate(max(t_fail - window_s, earliest), t_fail, rate)
        row["capacity_busy"] = est.capacity if est else None
        row["busy_max"] = est.busy if est else None
        row["bottleneck"] = est.bottleneck if est else None
        row["capacity_probe"] = probed
        row["utilization_target"] = level
        cap = row["capacity_busy"] if source == "busy" else probed
        cap = cap if cap is not None else (probed if source == "busy" else row["capacity_busy"])
        row["capacity"] = cap
        row["utilization"] = float(row["rate"]) / cap if cap else None
        restored = tracker.restored_after(t_fail)
        row["restored_checkpoint_id"] = restored[0] if restored else None
        row["restored_checkpoint_age_s"] = t_fail - restored[1] if restored else None
        rec = row.get("recovery_s")
        if row.get("recovered") and rec is not None and math.isfinite(float(rec)):
            earliest = t_fail + float(rec) + consecutive_s
        else:
            earliest = math.inf  # not recovered: nothing after it in this unit is steady state


# ------------------------------------------------------------------------------------- saturation probe


@dataclass
class Probe:
    """What the saturation probe of one cluster measured."""

    cluster: str
    capacity: float  # median sink records/s while saturated
    busy_capacity: float | None  # rate / busy over the same window (busy ~ 1 when saturated)
    rate_in: float  # median source records/s while saturated
    p10: float  # 10th and 90th percentile of the per-second throughput
    p90: float
    seconds: float
    ci_s: float

    def as_dict(self) -> dict:
        """The probe as a dict (journal)."""
        return asdict(self)


def probe(
    cluster: str,
    client: FlinkClient,
    own: OwnJobs,
    jar: str,
    args: list[str],
    spec: CapacitySpec,
    ci_s: float,
    parallelism: int,
    config: dict | None = None,
    job_name: str = "iot-vehicles",
    sleep: Callable[[float], None] = time.sleep,
    savepoint: str | None = None,
) -> Probe:
    """Run the job at ``spec.probe_rate`` (``args`` filled in already), let it saturate for
    ``spec.warmup_s``, then take the per-second sink throughput for ``spec.measure_s``; cancel it.
    KhaosError when the job keeps up with the probe rate (the rate is not above the capacity), or when
    the cluster runs a job the profile run did not submit (``own``; nothing is done to it then)."""
    from ..flink.sampler import JobSampler

    own.clear(client, cluster)
    jar_id = client.upload_jar(jar)
    cfg = {**(config or {}), "execution.checkpointing.interval": f"{ci_s:g}s"}
    job_id = client.run_jar(jar_id, args, parallelism=parallelism, config=cfg, savepoint=savepoint)
    own.add(job_id)
    sampler = JobSampler(client, job_name, 0.5)
    try:
        client.wait_running(job_id, timeout=120)
        sleep(spec.warmup_s)
        before = busy_times(client, job_id)
        sampler.start()
        sleep(spec.measure_s)
        sampler.stop()
        after = busy_times(client, job_id)
    finally:
        sampler.stop()
        try:
            client.cancel(job_id)
        except KhaosError:
            pass
    df = sampler.frame()
    df = df[df["all_running"] == True]  # noqa: E712 - a column of objects
    thr = pd.to_numeric(df["throughput"], errors="coerce").dropna()
    rin = pd.to_numeric(df["rate_in"], errors="coerce").dropna()
    if thr.empty:
        raise KhaosError(f"capacity probe on {cluster}: no sink throughput was read in {spec.measure_s:g} s")
    capacity, rate_in = float(thr.median()), float(rin.median()) if not rin.empty else math.nan
    if capacity >= 0.9 * spec.probe_rate:
        raise KhaosError(
            f"capacity probe on {cluster}: the job kept up with {spec.probe_rate:g} events/s "
            f"({capacity:.0f}/s reached the sink): raise capacity.probe_rate above its capacity"
        )
    est = busy_capacity(before, after, capacity)  # saturated: the source reads what reaches the sink
    return Probe(
        cluster=cluster,
        capacity=capacity,
        busy_capacity=est.capacity if est else None,
        rate_in=rate_in,
        p10=float(thr.quantile(0.1)),
        p90=float(thr.quantile(0.9)),
        seconds=spec.measure_s,
        ci_s=ci_s,
    )


def unit_rate(level: float, capacity: float) -> float:
    """The input rate of a unit at utilization ``level`` on a cluster of ``capacity`` events/s."""
    if not (capacity and math.isfinite(capacity) and capacity > 0):
        raise KhaosError("a utilization level needs the cluster's probed capacity (capacity.probe: true)")
    return float(max(1, round(level * capacity)))


def probe_all(exp, clusters: list, journal, say: Callable[[str], None], own: OwnJobs, kept=None) -> None:
    """The saturation probe on every cluster at once (threads); sets each cluster's ``capacity``.

    ``exp`` is the :class:`~.experiment.Experiment`, ``clusters`` the profiler's clusters (``name``,
    ``rest_url``, ``shared_dir``), ``own`` the jobs the profile run submitted, ``kept`` {cluster: capacity}
    an earlier run of the same experiment probed (a resumed profile): those clusters are probed all the
    same, as the warm-up a fresh cluster needs before its first unit (JIT, caches, the store), but keep
    the capacity their units' rates came from. A cluster whose probe fails raises KhaosError after all
    have ended."""
    kept = kept or {}
    spec = exp.capacity
    cis = sorted(exp.checkpoint_intervals)
    ci_s = spec.probe_ci_s or cis[len(cis) // 2]
    results: dict[str, Probe | KhaosError] = {}

    def one(c) -> None:
        out = f"{c.shared_dir or '/srv/flink'}/jobs/capacity-probe-{int(time.time())}/out"
        fill = {"rate": f"{spec.probe_rate:g}", "output": out, "start_ms": str(int(time.time() * 1000)), "trace": ""}
        args = [a.format(**fill) for a in exp.job.args]
        config = {**exp.job.config, "pipeline.name": exp.job.name}
        try:
            results[c.name] = probe(
                c.name,
                FlinkClient(c.rest_url),
                own,
                str(exp.job.jar),
                args,
                spec,
                ci_s,
                exp.job.parallelism,
                config,
                exp.job.name,
                savepoint=c.savepoint,
            )
        except KhaosError as e:
            results[c.name] = e

    say(f"capacity probe: {spec.probe_rate:g} events/s for {spec.warmup_s + spec.measure_s:g} s on every cluster ...")
    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clusters:
        r = results.get(c.name)
        if isinstance(r, Probe) and c.name in kept:
            c.capacity = kept[c.name]
            journal.write("capacity_kept", cluster=c.name, capacity=c.capacity, probed_now=r.capacity)
            say(
                f"capacity of {c.name}: {c.capacity:.0f} events/s as the run this one resumes probed ({r.capacity:.0f} now)"
            )
        elif isinstance(r, Probe):
            c.capacity = r.capacity
            journal.write("capacity_probe", **r.as_dict())
            say(
                f"capacity of {c.name}: {r.capacity:.0f} events/s at the sink (p10-p90 {r.p10:.0f}-{r.p90:.0f}; "
                f"busy time says {r.busy_capacity or float('nan'):.0f}) at CI {r.ci_s:g}s"
            )
    failed = [f"{name}: {r}" for name, r in results.items() if isinstance(r, KhaosError)]
    if failed:
        raise KhaosError("; ".join(failed))


def describe(exp) -> str:
    """The capacity plan in plain words."""
    spec = exp.capacity
    cis = sorted(exp.checkpoint_intervals)
    if not spec.probe:
        return f"busy time only (column capacity: {spec.source})"
    return (
        f"saturation probe at {spec.probe_rate:g} events/s, CI {spec.probe_ci_s or cis[len(cis) // 2]:g}s, "
        f"{spec.warmup_s:g}+{spec.measure_s:g} s per cluster; busy time per failure; column capacity: {spec.source}"
    )
