"""One unit on one cluster: deploy the job (playbooks/deploy_job.yml), wait until it has caught up with its
input and learned its steady state, then for every failure mode and repetition inject a real failure
(playbooks/inject_failure.yml, worst case: just before the next checkpoint) and measure detection, restart
and recovery from the job sampler's series (measure.py). The unit ends with stop-with-savepoint and a sink
audit (0 lost, 0 duplicated after every failure); its rows go to the profiler and the journal."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..errors import KhaosError
from ..flink import audit
from ..flink.client import FlinkClient
from ..flink.sampler import JobSampler
from ..kafka import feed as kfeed
from ..kafka.latency import p99_between
from . import capacity, waves
from .clusters import Cluster
from .measure import await_recovery, checkpoint_columns, overloaded_row, restart_phases, series
from .recovery import steady_window

# Twice a second: REST serves metrics from a cache refreshed at most once a second
# (metrics.fetcher.update-interval) and only when asked, so a 1 Hz sampler triggers a refresh only
# every 1-2 s and misses some of the sink's per-second values; at 2 Hz nearly every second is seen,
# 1.5-3 s after it ended instead of up to 4 s.
SAMPLE_PERIOD_S = 0.5


@dataclass
class Unit:
    """One job deployment: an (interval, rate) pair and the failures injected into it."""

    index: int
    ci_s: float
    rate: float
    failures: list[tuple[str, int]]  # (mode, repetition)
    point: dict | None = None  # trace workloads: the failure point this unit replays
    utilization: float | None = None  # a utilization level: the rate comes from the cluster's capacity

    @property
    def ident(self) -> str:
        """u<index>-ci<interval>-r<rate>."""
        if self.utilization is not None:
            return f"u{self.index:02d}-ci{self.ci_s:g}-u{100 * self.utilization:g}"
        return f"u{self.index:02d}-ci{self.ci_s:g}-r{self.rate:g}"


@dataclass
class Deployment:
    """A unit's running job on its cluster, as its failures see it."""

    cluster: Cluster
    unit: Unit
    client: FlinkClient
    job_id: str
    sampler: JobSampler
    feed: kfeed.Feed | None = None


def run_unit(prof, cluster: Cluster, unit: Unit, feed: kfeed.Feed | None = None) -> None:
    """Deploy the unit's job, inject and measure its failures, stop it with a savepoint and audit its sink;
    the rows go to ``prof.rows`` and the journal (``unit_done``, which resume.py reads)."""
    exp, client = prof.exp, FlinkClient(cluster.rest_url)
    if unit.utilization is not None:
        unit = replace(unit, rate=capacity.unit_rate(unit.utilization, cluster.capacity))
    prof.own.clear(client, cluster.name)  # a previous unit's job that failed half-way; no foreign one
    out_dir = (cluster.shared_dir or Path("/srv/flink")) / "jobs" / unit.ident / "out"
    _deploy(prof, cluster, unit, _job_args(prof, unit, feed, out_dir), out_dir)
    job_id = client.running_job(exp.job.name)  # ours: the cluster ran no other job before the deploy
    prof.own.add(job_id)
    sampler = JobSampler(client, exp.job.name, SAMPLE_PERIOD_S).start()
    tracker = capacity.Tracker(client, job_id).start()  # busy time and checkpoints, for capacity
    dep = Deployment(cluster, unit, client, job_id, sampler, feed)
    try:
        rows = _failures(prof, dep)
    finally:
        sampler.stop()
        tracker.stop()
        _save_series(prof, dep, tracker)
    found = _stop_and_audit(prof, dep, out_dir)
    for r in rows:
        r.update(audit_records=found["records"], audit_lost=found["lost"], audit_duplicated=found["duplicated"])
    cs = exp.capacity or capacity.CapacitySpec(probe=False)
    capacity.annotate(
        rows, tracker, prof.params.baseline_s, exp.consecutive_s, cluster.capacity, cs.source, unit.utilization
    )
    with prof._lock:
        prof.rows.extend(rows)
    prof.journal.write("unit_done", cluster=cluster.name, unit=unit.ident, rows=rows)  # resume.py reads it


def _job_args(prof, unit: Unit, feed: kfeed.Feed | None, out_dir: Path) -> list[str]:
    """The job's arguments with the unit's placeholders filled in; a trace workload without Kafka gets the
    trace window written beside the output for the job to replay itself."""
    start_ms = int(time.time() * 1000)
    fill = {"rate": f"{unit.rate:g}", "output": str(out_dir), "start_ms": str(start_ms), "trace": ""}
    if feed is not None:
        fill.update(feed.fill(unit.ident))
    elif unit.point is not None:  # the job replays the trace window itself
        from . import workload

        fill["trace"] = str(out_dir.parent / "trace.txt")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        workload.write_trace(prof._window(unit), fill["trace"])
    return [a.format(**fill) for a in prof.exp.job.args]


def _deploy(prof, cluster: Cluster, unit: Unit, args: list[str], out_dir: Path) -> None:
    """Submit the unit's job at its checkpoint interval (playbooks/deploy_job.yml)."""
    exp = prof.exp
    prof.journal.write("deploy", cluster=cluster.name, unit=unit.ident, ci_s=unit.ci_s, rate=unit.rate, args=args)
    prof._playbook(
        cluster,
        "deploy_job",
        f"{unit.ident}-deploy",
        {
            "flink_job_name": exp.job.name,
            "flink_job_jar": str(exp.job.jar),
            "flink_job_args": args,
            "flink_job_entry_class": exp.job.entry_class,
            "flink_job_parallelism": exp.job.parallelism,
            "flink_job_checkpoint_interval": f"{unit.ci_s:g}s",
            "flink_job_output_dir": str(out_dir),
            "flink_job_config": exp.job.config,
            "flink_job_savepoint": cluster.savepoint or "",
            # its own deployment records (never those of a job a daemon controls), one directory per
            # cluster: units on other clusters deploy the same job name in parallel
            "flink_job_state_dir": str(prof.out.resolve() / "state" / cluster.name),
        },
    )


def _failures(prof, dep: Deployment) -> list[dict]:
    """One row per failure of the unit: injected and measured, or (a job that never catches up with its
    input) not injected and its steady columns measured."""
    exp, unit, rows = prof.exp, dep.unit, []
    # it starts behind its input (the replay, or a source that begins at --start): the warm-up
    # begins once it has caught up, so that the baseline is a steady state
    waited = waves.wait_caught_up(prof, dep.sampler, unit)  # None: it never does at this interval and rate
    if waited is not None:
        prof.journal.write("caught_up", cluster=dep.cluster.name, unit=unit.ident, waited_s=round(waited, 1))
    prof._sleep(exp.warmup_s)
    first = None  # every failure of the deployment is judged against the steady state before the first
    for k, (mode, rep) in enumerate(unit.failures):
        if waited is None:  # a failure would never recover: not injected, the steady columns measured
            rows.append(_overloaded(prof, dep, mode, rep))
            continue
        _wait_checkpoint_after_restart(prof, dep)
        if dep.feed is not None:
            dep.feed.check()  # the replay still runs: the backlog the job catches up on is real
        rows.append(_one_failure(prof, dep, mode, rep, k, first))
        first = first or rows[-1]["t_fail"]
        if k + 1 < len(unit.failures):
            prof._sleep(exp.settle_s)
    return rows


def _save_series(prof, dep: Deployment, tracker: capacity.Tracker) -> None:
    """The unit's sample series, busy-time series and (Kafka with an output topic) output latencies."""
    name = f"{dep.cluster.name}-{dep.unit.ident}"
    dep.sampler.frame().to_csv(prof.out / "series" / f"{name}.csv", index=False)
    tracker.frame().to_csv(prof.out / "series" / f"{name}-busy.csv", index=False)
    if dep.feed is not None and dep.feed.latency_rows(dep.unit.ident):
        latency = pd.DataFrame([vars(r) for r in dep.feed.latency_rows(dep.unit.ident)])
        latency.to_csv(prof.out / "series" / f"{name}-output-latency.csv", index=False)


def _stop_and_audit(prof, dep: Deployment, out_dir: Path) -> dict:
    """Stop the job with a savepoint, audit its output (records, lost, duplicated; None each without a file
    audit) and dispose of the savepoint."""
    location = dep.client.stop_with_savepoint(dep.job_id)
    if prof.audit:
        result = audit.audit(out_dir, dep.feed.partition_of if dep.feed is not None else None)
        found = {"records": result.records, "lost": result.lost, "duplicated": result.duplicated}
    else:  # no output directory to audit (a job Khaos did not write): said once, at the start
        found = {"records": None, "lost": None, "duplicated": None}
    prof.journal.write("audit", cluster=dep.cluster.name, unit=dep.unit.ident, savepoint=location, **found)
    prof.cleanup.unit_done(dep.cluster, dep.client, dep.unit.ident, location)
    return found


def _wait_checkpoint_after_restart(prof, dep: Deployment) -> None:
    """The before-checkpoint timing needs the checkpoint timer's phase: wait for a checkpoint
    completed after the last restart (bounded by two intervals + 30 s)."""
    client, job_id = dep.client, dep.job_id
    deadline = time.monotonic() + 2 * client.checkpoint_interval_ms(job_id) / 1000 + 30
    while time.monotonic() < deadline:
        failures = client.failure_times(job_id)
        latest = (client.checkpoints(job_id).get("latest") or {}).get("completed") or {}
        last_restart = failures[0] if failures else 0
        if latest.get("trigger_timestamp", 0) / 1000 > last_restart and client.all_tasks_running(job_id):
            return
        prof._sleep(1)


def _inject(prof, dep: Deployment, mode: str, rep: int, k: int) -> tuple[dict, list[dict], float]:
    """Kill the job's ``mode`` target (playbooks/inject_failure.yml); the chaos plan, the verified kills and
    the time of the first kill."""
    exp, unit = prof.exp, dep.unit
    res = prof._playbook(
        dep.cluster,
        "inject_failure",
        f"{unit.ident}-{mode}{rep}",
        {
            "chaos_mode": mode,
            "chaos_target": exp.target,
            "chaos_timing": exp.timing,
            "chaos_margin_s": exp.margin_s,
            "chaos_job": dep.job_id,
            "chaos_seed": exp.seed + 1000 * unit.index + k,
        },
    )
    plan, kills = res.data.get("chaos_plan", {}), res.data.get("chaos_kills", [])
    if not kills or not all(kill.get("dead") for kill in kills):
        raise KhaosError(f"the {mode} kill was not verified: {kills}")
    t_fail = min(float(kill["killed_at"]) for kill in kills)
    prof.journal.write("inject", cluster=dep.cluster.name, unit=unit.ident, mode=mode, plan=plan, kills=kills)
    return plan, kills, t_fail


def _detected(prof, dep: Deployment, t_fail: float) -> float | None:
    """Flink's own record of the failure: the exception history entry after ``t_fail`` (None within 60 s)."""
    t_detect = None
    deadline = time.monotonic() + 60
    while t_detect is None and time.monotonic() < deadline:
        new = [t for t in dep.client.failure_times(dep.job_id) if t >= t_fail - 0.5]
        t_detect = min(new) if new else None
        if t_detect is None:
            prof._sleep(0.5)
    return t_detect


def _one_failure(prof, dep: Deployment, mode: str, rep: int, k: int, first: float | None) -> dict:
    """Inject the ``k``-th failure of the unit and measure it into its results row."""
    exp, unit = prof.exp, dep.unit
    summary = dep.client.checkpoints(dep.job_id).get("summary", {})
    plan, kills, t_fail = _inject(prof, dep, mode, rep, k)
    t_detect = _detected(prof, dep, t_fail)
    # wait until recovered (K consecutive seconds in band) or timed out; the bands (and the steady-state
    # latency) from the window before the deployment's first failure: later windows hold catch-up tails
    window = steady_window(first or t_fail, prof.params)
    deadline = t_fail + exp.recovery_timeout_s + exp.consecutive_s + 5
    m = await_recovery(
        lambda: series(dep.sampler), t_fail, prof.params, deadline, prof._sleep, t_detect=t_detect, baseline=window
    )
    phases = restart_phases(dep.client, dep.job_id)
    row = {
        "trial": f"{unit.ident}-{mode}{rep}",
        "cluster": dep.cluster.name,
        "ci_s": unit.ci_s,
        "rate": unit.rate,
        "mode": mode,
        "rep": rep,
        "target": ",".join(plan.get("targets", [])),
        "killed_pids": ",".join(
            str(p) for kill in kills for p in ([kill["pid"]] if "pid" in kill else kill.get("pids", []))
        ),
        "t_fail": t_fail,
        "fire_late_s": t_fail - float(plan.get("fire_at", t_fail)),
        "since_checkpoint_s": (t_fail - plan["last_checkpoint_at"]) % unit.ci_s
        if plan.get("last_checkpoint_at")
        else None,
        "detect_s": m.detect_s,
        "running_s": m.running_s,
        **phases,
        "recovery_s": m.recovery_s,
        "recovered": m.recovered,
        "catchup_s": m.catchup_s,
        "pre_rate": m.pre_rate,
        "latency_p99_ms": m.pre_latency_p99_ms,
        "latency_mean_ms": m.pre_latency_mean_ms,
        "late_share": m.pre_late_share,
        "peak_lag_ms": m.peak_lag_ms,
        **checkpoint_columns(summary),
        "recovery_rule": m.rule,
        "recovery_signals": ",".join(m.signals),
        "lag_band_hi": m.band[m.signals[0]][1] if m.rule == "lag" else None,
        "peak_backlog": m.peak_backlog,
    }
    if dep.feed is not None and dep.feed.spec.output_topic:  # end-to-end latency read from the job's output topic
        # transactional output is readable once per checkpoint: the window holds two intervals at least
        p99 = p99_between(dep.feed.latency_rows(unit.ident), min(window[0], window[1] - 2 * unit.ci_s), window[1])
        row["output_latency_p99_ms"] = p99
        if row["latency_p99_ms"] is None or row["latency_p99_ms"] != row["latency_p99_ms"]:
            row["latency_p99_ms"] = p99  # a job without latency gauges: the latency a consumer sees
    prof.journal.write("measure", cluster=dep.cluster.name, unit=unit.ident, row=row)
    prof._progress(row)
    return row


def _overloaded(prof, dep: Deployment, mode: str, rep: int) -> dict:
    """The row of a failure not injected: the job never caught up with its input (measure.overloaded_row)."""
    t, df = time.time(), series(dep.sampler)
    summary = dep.client.checkpoints(dep.job_id).get("summary", {})
    steady = df[df["t"] >= t - prof.params.baseline_s]
    row = overloaded_row(dep.unit, dep.cluster.name, mode, rep, t, steady, summary, prof.exp.latency_limit_ms)
    prof.journal.write("measure", cluster=dep.cluster.name, unit=dep.unit.ident, row=row)
    prof._progress(row)
    return row
