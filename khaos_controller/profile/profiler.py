"""`khaos profile EXPERIMENT.yml`: break copies of a job in parallel and measure what it costs.

Each profiling cluster (a lab of its own, or an inventory) works through a queue of units; a
unit is one (checkpoint interval, rate): deploy the job (playbooks/deploy_job.yml), learn its
steady state, then for every failure mode and repetition inject a real failure
(playbooks/inject_failure.yml, worst case: just before the next checkpoint), sample the job
twice a second, and measure detection, restart and recovery (recovery.py). The unit ends
with stop-with-savepoint and a sink audit (0 lost, 0 duplicated after every failure).

A Kafka-fed job (the experiment's ``kafka`` section) runs in waves: the units of one workload (rate or
failure point), one per cluster, run at the same time, each reading its own fresh topic with its own
consumer group, and ONE replay (kafka/feed.py) writes the workload into all their topics, started before
the jobs. The labs get a Kafka host (playbooks/kafka.yml) that every cluster reaches. A job without
{output} in its arguments has no file audit (audit columns empty); recovery is then judged from the
standard Kafka source metrics (the lag band, recovery.py).

Playbooks run through ansible-runner's run_async, one private_data_dir and ident per run;
their results come from job events (set_stats). Ctrl-C cancels every run and removes the labs.

A cluster that runs jobs this run did not submit is refused before anything is done to it, and the
profiler cancels only its own jobs (ownjobs.py).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..errors import KhaosError
from ..flink import audit
from ..flink.client import FlinkClient
from ..flink.sampler import JobSampler
from ..infra import ansible
from ..infra import kafka as infra_kafka
from ..infra.inventory import cluster_facts
from ..infra.lab import Lab
from ..journal import Journal
from ..kafka import feed as kfeed
from ..kafka.latency import p99_between
from ..progress import Bar
from ..signals import on_stop
from . import bootstrap, capacity, results, resume, waves, words
from .cleanup import Cleanup
from .experiment import Experiment
from .measure import await_recovery, checkpoint_columns, overloaded_row, restart_phases, series
from .ownjobs import OwnJobs, check_clusters
from .recovery import RecoveryParams, steady_window

# Twice a second: REST serves metrics from a cache refreshed at most once a second
# (metrics.fetcher.update-interval) and only when asked, so a 1 Hz sampler triggers a refresh only
# every 1-2 s and misses some of the sink's per-second values; at 2 Hz nearly every second is seen,
# 1.5-3 s after it ended instead of up to 4 s.
SAMPLE_PERIOD_S = 0.5


class Cancelled(KhaosError):
    """The profile was cancelled (Ctrl-C or SIGTERM)."""


@dataclass
class Cluster:
    """One profiling cluster: a lab of its own or a given inventory."""

    name: str
    inventory: Path
    rest_url: str
    lab: Lab | None = None
    shared_dir: Path | None = None
    capacity: float | None = None  # events/s, from the saturation probe (profile/capacity.py)
    savepoint: str | None = None  # the state bootstrap every deployment starts from (profile/bootstrap.py)


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


class Profiler:
    """Runs an experiment: clusters in parallel, one unit at a time each, real failures, measured."""

    def __init__(self, exp: Experiment, out: Path | None = None, progress=True, keep=False, only=(), redo=()):
        self.exp = exp
        self.keep = keep  # keep the copies' Kafka topics and groups
        self.only = list(only)  # unit ident patterns (fnmatch): run only these units; [] = all
        self.bootstrap: str | None = None
        self.prefix = kfeed.run_prefix(exp.name)
        self.audit = any("{output}" in a for a in exp.job.args)  # the file audit needs the job's output dir
        self.out = Path(out or exp.output)
        self.progress = progress
        self.cancel = threading.Event()
        self.rows: list[dict] = []
        self.errors: list[str] = []
        self.clusters: list[Cluster] = []
        self.own = OwnJobs()  # the jobs this run submitted: the only ones it may cancel
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.journal: Journal | None = None
        self.bar: Bar | None = None
        self.fingerprint = resume.fingerprint(exp.path)
        done = resume.finished(self.out / "journal.jsonl", self.fingerprint)  # {unit: rows} done earlier
        self.reused = resume.kept(done, self.units(), list(redo))  # less those to measure again
        self._done = sum(len(rows) for rows in self.reused.values())
        self.params = RecoveryParams(
            baseline_s=max(10.0, exp.warmup_s - 5),
            consecutive_s=exp.consecutive_s,
            timeout_s=exp.recovery_timeout_s,
            rule=exp.recovery,
            lag_quantile=exp.lag_quantile,
            lag_tolerance=exp.lag_tolerance,
            lag_floor_s=exp.lag_floor_s,
            lag_throughput=exp.lag_throughput,
            latency_floor_ms=exp.latency_floor_ms,
            latency_limit_ms=exp.latency_limit_ms,
        )

    # ---- plan ----------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        """Every unit of the experiment, longest intervals first."""
        failures = [(m, r) for r in range(self.exp.repetitions) for m in self.exp.modes]
        # longest intervals first: they take longest, so they should not be the tail of the queue
        cis = sorted(self.exp.checkpoint_intervals, reverse=True)
        if self.exp.utilizations:  # each cluster turns a level into a rate (profile/capacity.py)
            grid = [(ci, u) for ci in cis for u in self.exp.utilizations]
            return [Unit(i, ci, 0.0, list(failures), utilization=u) for i, (ci, u) in enumerate(grid, 1)]
        points = self.exp.points or [None] * len(self.exp.rates)
        grid = [
            (ci, rate, pt)
            for ci in sorted(self.exp.checkpoint_intervals, reverse=True)
            for rate, pt in zip(self.exp.rates, points)
        ]
        return [Unit(i, ci, round(rate, 1), list(failures), pt) for i, (ci, rate, pt) in enumerate(grid, 1)]

    def pending(self) -> list[Unit]:
        """The units still to run: every unit (or those ``only`` names) but those a run of this experiment
        finished into this output."""
        return [u for u in resume.named(self.units(), self.only) if u.ident not in self.reused]

    def describe(self) -> str:
        """The plan in plain words."""
        return words.describe(self)

    def waves(self) -> list[list[Unit]]:
        """Kafka: units of one workload, at most one per cluster, run at once (waves.py)."""
        return waves.group(self.pending(), self.exp.cluster_count)

    # ---- run -----------------------------------------------------------------------------
    def run(self) -> pd.DataFrame:
        """Profile every unit; returns the results (one row per failure). Ctrl-C cancels and cleans up."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "series").mkdir(exist_ok=True)
        self.journal = Journal(self.out / "journal.jsonl", fsync=False)
        self.cleanup = Cleanup(self.journal)
        self.journal.write(
            "start", experiment=str(self.exp.path), experiment_sha256=self.fingerprint, failures=self.exp.failures
        )
        self.rows = [row for rows in self.reused.values() for row in rows]
        pending = self.pending()
        if not pending:
            self.journal.write("end", rows=len(self.rows), errors=[], cancelled=False, reused=len(self.reused))
            return self._write_results()
        if self.exp.kafka is not None and self.exp.kafka.bootstrap:  # a named broker must answer before labs start
            from ..kafka import admin

            admin.connect(self.exp.kafka.bootstrap)
        try:
            todo = sum(len(u.failures) for u in pending)
            with on_stop(self._on_signal), Bar(todo, "failures", quiet=not self.progress) as self.bar:
                if self.reused:
                    self._say(f"resuming: {len(self.reused)} finished units kept ({self._done} failures)")
                self._setup_clusters()
                if self.exp.job.bootstrap is not None:
                    self._bootstrap()
                if self.exp.capacity is not None and self.exp.capacity.probe:
                    kept = resume.probed(self.out / "journal.jsonl", self.fingerprint) if self.reused else {}
                    capacity.probe_all(self.exp, self.clusters, self.journal, self._say, self.own, kept)
                if not self.audit:
                    self.journal.write("audit_skipped", reason="the job's arguments have no {output}")
                    self._say("no file audit: the job's arguments have no {output} (audit columns stay empty)")
                if self.exp.kafka is not None:
                    waves.run(self)
                    if self.cancel.is_set():
                        raise Cancelled("profile cancelled: every run stopped, labs removed")
                    return self._write_results()
                work: queue.Queue[Unit] = queue.Queue()
                for u in pending:
                    work.put(u)
                workers = [threading.Thread(target=self._worker, args=(c, work), daemon=True) for c in self.clusters]
                for w in workers:
                    w.start()
                for w in workers:
                    while w.is_alive():
                        w.join(0.5)
                if self.cancel.is_set():
                    raise Cancelled("profile cancelled: every run stopped, labs removed")
                return self._write_results()
        finally:
            self._teardown()
            if self.cancel.is_set() and self.rows:
                self._write_results()  # the finished units' rows; a rerun resumes the rest
            self.journal.write(
                "end",
                rows=len(self.rows),
                errors=self.errors,
                cancelled=self.cancel.is_set(),
                peak_disk_bytes=self.cleanup.peak_bytes,
            )

    def _on_signal(self, _signum: int) -> None:
        if not self.cancel.is_set():
            self._say("khaos profile: cancelling every run and cleaning up ...")
        self.cancel.set()

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled")

    def _playbook(self, cluster: Cluster, playbook: str, ident: str, extravars: dict) -> ansible.PlaybookResult:
        run = ansible.run_playbook_async(
            playbook,
            cluster.inventory,
            extravars=extravars,
            ident=f"{ident}-{int(time.time() * 1000)}",
            base_dir=self.out / "ansible",
            cancel=self.cancel.is_set,
        )
        return self._await(*run)

    def _await(self, thread, runner) -> ansible.PlaybookResult:
        """The result of a run_playbook_async run, joined in short steps (a signal cancels it); Cancelled."""
        while thread.is_alive():
            thread.join(0.5)
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        return ansible.result_of(runner)

    def _setup_clusters(self) -> None:
        exp = self.exp
        kafka_inventory = None  # where playbooks/kafka.yml deploys the brokers
        if exp.inventories:  # static files or inventory plugins (OpenStack): read as Ansible sees them
            for i, inv in enumerate(exp.inventories, 1):
                facts = cluster_facts(inv)
                self.clusters.append(Cluster(f"c{i}", inv, facts.rest_url, shared_dir=facts.shared_dir))
            check_clusters(self.own, self.clusters, deployed=False)  # before flink_cluster.yml touches them
            if exp.kafka is not None and exp.kafka.bootstrap is None:
                inv = self._kafka_inventory()
                self.bootstrap = infra_kafka.inventory_bootstrap(inv)
                if (ansible.inventory_list(inv).get(infra_kafka.KAFKA_GROUP) or {}).get("hosts"):
                    kafka_inventory = inv  # brokers Khaos deploys (else a Kafka named by kafka_bootstrap only)
        else:
            for i in range(1, exp.clusters + 1):
                lab = Lab(f"{exp.lab_prefix}{i}")
                if lab.hosts:
                    raise KhaosError(f"lab {lab.name} is already up: `khaos lab down --name {lab.name}` first")
                brokers = 1 if i == 1 and exp.kafka is not None and exp.kafka.bootstrap is None else 0
                lab.up(hosts=exp.hosts, kafka=brokers, store=exp.store is not None)
                self.clusters.append(
                    Cluster(lab.name, lab.inventory, cluster_facts(lab.inventory).rest_url, lab, lab.shared_dir)
                )
                if brokers:
                    kafka_inventory, self.bootstrap = lab.inventory, lab.kafka_bootstrap
                elif exp.kafka is not None and exp.kafka.bootstrap is None:
                    lab.link(self.clusters[0].lab)  # the Flink hosts here reach the Kafka host of the first lab
                self.journal.write("lab_up", cluster=lab.name, hosts=exp.hosts, kafka=brokers)
        if exp.kafka is not None:
            self.bootstrap = exp.kafka.bootstrap or self.bootstrap
        self._say(
            f"deploying Flink on {len(self.clusters)} clusters in parallel"
            + (f" and Kafka ({self.bootstrap})" if kafka_inventory else "")
            + " ..."
        )
        plays = [("flink_cluster", c.inventory, f"{c.name}-cluster", c.name) for c in self.clusters]
        if exp.store is not None and not exp.inventories:
            plays += [("checkpoint_store", c.inventory, f"{c.name}-store", c.name) for c in self.clusters]
        if kafka_inventory is not None:
            plays.append(("kafka", kafka_inventory, "kafka", "kafka"))
        runs = [
            ansible.run_playbook_async(
                play,
                inv,
                extravars={"flink_cluster": exp.pinning, "checkpoint_store": exp.store}.get(play),
                ident=ident,
                base_dir=self.out / "ansible",
                cancel=self.cancel.is_set,
            )
            for play, inv, ident, _ in plays
        ]
        for (play, _, _, name), run in zip(plays, runs):
            self._await(*run)
            self.journal.write(f"{play}_ready", cluster=name)
        if exp.kafka is not None:
            from ..kafka import admin

            admin.connect(self.bootstrap, timeout=10)  # one line now if the broker cannot be reached
        check_clusters(self.own, self.clusters, deployed=True)
        self._say(
            f"clusters ready after {time.monotonic() - self._started:.0f}s: " + ", ".join(c.name for c in self.clusters)
        )

    def _bootstrap(self) -> None:
        """Write the state bootstrap on every cluster, one after the other (each writes its own)."""
        size = self.exp.job.bootstrap
        for c in self.clusters:
            t0 = time.monotonic()
            self._say(f"{c.name}: writing {size.keys:,} keys x {size.state_bytes:,} B of state into a savepoint ...")
            c.savepoint = bootstrap.write(
                FlinkClient(c.rest_url), str(self.exp.job.jar), size, self.own, self.prefix, sleep=self._sleep
            )
            took = time.monotonic() - t0
            self.journal.write("bootstrap", cluster=c.name, savepoint=c.savepoint, seconds=round(took, 1))
            self._say(f"{c.name}: state bootstrap {c.savepoint} in {took:.0f}s")

    def _kafka_inventory(self) -> Path:
        """The first inventory with a kafka_bootstrap or a kafka group (KhaosError when none has either)."""
        for inv in self.exp.inventories:
            try:
                infra_kafka.inventory_bootstrap(inv)
                return inv
            except KhaosError:
                continue
        raise KhaosError(
            "the experiment has a kafka section but no inventory names a Kafka cluster (group kafka or "
            "kafka_bootstrap): set kafka.bootstrap"
        )

    def _teardown(self) -> None:
        for c in self.clusters:
            if c.savepoint and c.lab is None:  # a lab's storage goes with the lab
                self.cleanup.unit_done(c, FlinkClient(c.rest_url), "bootstrap", c.savepoint)
            if c.lab is not None:
                c.lab.down(quiet=True)
                if self.journal:
                    self.journal.write("lab_down", cluster=c.name)

    def _worker(self, cluster: Cluster, work: queue.Queue) -> None:
        while not self.cancel.is_set():
            try:
                unit = work.get_nowait()
            except queue.Empty:
                return
            if not self._unit(cluster, unit):
                return

    def _unit(self, cluster: Cluster, unit: Unit, feed: kfeed.Feed | None = None) -> bool:
        """Run one unit; its error is recorded, not raised. False when cancelled."""
        try:
            self._run_unit(cluster, unit, feed)
        except Cancelled:
            return False
        except KhaosError as e:
            msg = f"{cluster.name} {unit.ident}: {e}"
            self.errors.append(msg)
            self.journal.write("error", cluster=cluster.name, unit=unit.ident, error=str(e))
            self._say(f"ERROR {msg}")
        return True

    def _window(self, unit: Unit):
        """A trace workload: the trace around the unit's failure point (reached after the warm-up); else None."""
        if unit.point is None:
            return None
        from . import workload

        return workload.trace_window(
            workload.load_trace(self.exp.trace),
            int(unit.point["t"]),
            before=int(self.exp.warmup_s) + 5,
            after=int(self.exp.recovery_timeout_s) * 3,
        )

    # ---- one unit ------------------------------------------------------------------------
    def _run_unit(self, cluster: Cluster, unit: Unit, feed: kfeed.Feed | None = None) -> None:
        exp, client = self.exp, FlinkClient(cluster.rest_url)
        if unit.utilization is not None:
            unit = replace(unit, rate=capacity.unit_rate(unit.utilization, cluster.capacity))
        self.own.clear(client, cluster.name)  # a previous unit's job that failed half-way; no foreign one
        out_dir = (cluster.shared_dir or Path("/srv/flink")) / "jobs" / unit.ident / "out"
        start_ms = int(time.time() * 1000)
        fill = {"rate": f"{unit.rate:g}", "output": str(out_dir), "start_ms": str(start_ms), "trace": ""}
        if feed is not None:
            fill.update(feed.fill(unit.ident))
        elif unit.point is not None:  # the job replays the trace window itself
            from . import workload

            fill["trace"] = str(out_dir.parent / "trace.txt")
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            workload.write_trace(self._window(unit), fill["trace"])
        args = [a.format(**fill) for a in exp.job.args]
        self.journal.write("deploy", cluster=cluster.name, unit=unit.ident, ci_s=unit.ci_s, rate=unit.rate, args=args)
        self._playbook(
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
                "flink_job_state_dir": str(self.out.resolve() / "state" / cluster.name),
            },
        )
        job_id = client.running_job(exp.job.name)  # ours: the cluster ran no other job before the deploy
        self.own.add(job_id)
        sampler = JobSampler(client, exp.job.name, SAMPLE_PERIOD_S).start()
        tracker = capacity.Tracker(client, job_id).start()  # busy time and checkpoints, for capacity
        rows = []
        try:
            # it starts behind its input (the replay, or a source that begins at --start): the warm-up
            # begins once it has caught up, so that the baseline is a steady state
            waited = waves.wait_caught_up(self, sampler, unit)  # None: it never does at this interval and rate
            if waited is not None:
                self.journal.write("caught_up", cluster=cluster.name, unit=unit.ident, waited_s=round(waited, 1))
            self._sleep(exp.warmup_s)
            first = None  # every failure of the deployment is judged against the steady state before the first
            for k, (mode, rep) in enumerate(unit.failures):
                if waited is None:  # a failure would never recover: not injected, the steady columns measured
                    rows.append(self._overloaded(cluster, unit, client, job_id, sampler, mode, rep))
                    continue
                self._wait_checkpoint_after_restart(client, job_id)
                if feed is not None:
                    feed.check()  # the replay still runs: the backlog the job catches up on is real
                rows.append(self._one_failure(cluster, unit, client, job_id, sampler, mode, rep, k, feed, first))
                first = first or rows[-1]["t_fail"]
                if k + 1 < len(unit.failures):
                    self._sleep(exp.settle_s)
        finally:
            sampler.stop()
            tracker.stop()
            sampler.frame().to_csv(self.out / "series" / f"{cluster.name}-{unit.ident}.csv", index=False)
            tracker.frame().to_csv(self.out / "series" / f"{cluster.name}-{unit.ident}-busy.csv", index=False)
            if feed is not None and feed.latency_rows(unit.ident):
                latency = pd.DataFrame([vars(r) for r in feed.latency_rows(unit.ident)])
                latency.to_csv(self.out / "series" / f"{cluster.name}-{unit.ident}-output-latency.csv", index=False)
        location = client.stop_with_savepoint(job_id)
        if self.audit:
            result = audit.audit(out_dir, feed.partition_of if feed is not None else None)
            found = {"records": result.records, "lost": result.lost, "duplicated": result.duplicated}
        else:  # no output directory to audit (a job Khaos did not write): said once, at the start
            found = {"records": None, "lost": None, "duplicated": None}
        self.journal.write("audit", cluster=cluster.name, unit=unit.ident, savepoint=location, **found)
        self.cleanup.unit_done(cluster, client, unit.ident, location)
        for r in rows:
            r.update(audit_records=found["records"], audit_lost=found["lost"], audit_duplicated=found["duplicated"])
        cs = exp.capacity or capacity.CapacitySpec(probe=False)
        capacity.annotate(
            rows, tracker, self.params.baseline_s, exp.consecutive_s, cluster.capacity, cs.source, unit.utilization
        )
        with self._lock:
            self.rows.extend(rows)
        self.journal.write("unit_done", cluster=cluster.name, unit=unit.ident, rows=rows)  # resume.py reads it

    def _wait_checkpoint_after_restart(self, client: FlinkClient, job_id: str) -> None:
        """The before-checkpoint timing needs the checkpoint timer's phase: wait for a checkpoint
        completed after the last restart (bounded by two intervals + 30 s)."""
        deadline = time.monotonic() + 2 * client.checkpoint_interval_ms(job_id) / 1000 + 30
        while time.monotonic() < deadline:
            failures = client.failure_times(job_id)
            latest = (client.checkpoints(job_id).get("latest") or {}).get("completed") or {}
            last_restart = failures[0] if failures else 0
            if latest.get("trigger_timestamp", 0) / 1000 > last_restart and client.all_tasks_running(job_id):
                return
            self._sleep(1)

    def _one_failure(self, cluster, unit, client, job_id, sampler, mode, rep, k, feed=None, first=None) -> dict:
        exp = self.exp
        summary = client.checkpoints(job_id).get("summary", {})
        res = self._playbook(
            cluster,
            "inject_failure",
            f"{unit.ident}-{mode}{rep}",
            {
                "chaos_mode": mode,
                "chaos_target": exp.target,
                "chaos_timing": exp.timing,
                "chaos_margin_s": exp.margin_s,
                "chaos_job": job_id,
                "chaos_seed": exp.seed + 1000 * unit.index + k,
            },
        )
        plan, kills = res.data.get("chaos_plan", {}), res.data.get("chaos_kills", [])
        if not kills or not all(kill.get("dead") for kill in kills):
            raise KhaosError(f"the {mode} kill was not verified: {kills}")
        t_fail = min(float(kill["killed_at"]) for kill in kills)
        self.journal.write("inject", cluster=cluster.name, unit=unit.ident, mode=mode, plan=plan, kills=kills)
        # Flink's own record of the failure: the exception history entry after t_fail
        t_detect = None
        deadline = time.monotonic() + 60
        while t_detect is None and time.monotonic() < deadline:
            new = [t for t in client.failure_times(job_id) if t >= t_fail - 0.5]
            t_detect = min(new) if new else None
            if t_detect is None:
                self._sleep(0.5)
        # wait until recovered (K consecutive seconds in band) or timed out; the bands (and the steady-state
        # latency) from the window before the deployment's first failure: later windows hold catch-up tails
        window = steady_window(first or t_fail, self.params)
        deadline = t_fail + exp.recovery_timeout_s + exp.consecutive_s + 5
        m = await_recovery(
            lambda: series(sampler), t_fail, self.params, deadline, self._sleep, t_detect=t_detect, baseline=window
        )
        phases = restart_phases(client, job_id)
        row = {
            "trial": f"{unit.ident}-{mode}{rep}",
            "cluster": cluster.name,
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
        if feed is not None and feed.spec.output_topic:  # end-to-end latency read from the job's output topic
            p99 = p99_between(feed.latency_rows(unit.ident), *window)
            row["output_latency_p99_ms"] = p99
            if row["latency_p99_ms"] is None or row["latency_p99_ms"] != row["latency_p99_ms"]:
                row["latency_p99_ms"] = p99  # a job without latency gauges: the latency a consumer sees
        self.journal.write("measure", cluster=cluster.name, unit=unit.ident, row=row)
        self._progress(row)
        return row

    def _overloaded(self, cluster, unit, client, job_id, sampler, mode, rep) -> dict:
        t, df = time.time(), series(sampler)
        summary = client.checkpoints(job_id).get("summary", {})
        steady = df[df["t"] >= t - self.params.baseline_s]
        row = overloaded_row(unit, cluster.name, mode, rep, t, steady, summary, self.exp.latency_limit_ms)
        self.journal.write("measure", cluster=cluster.name, unit=unit.ident, row=row)
        self._progress(row)
        return row

    # ---- output --------------------------------------------------------------------------
    def _progress(self, row: dict) -> None:
        with self._lock:
            self._done += 1
            done = self._done
        rec = f"{row['recovery_s']:.1f}s" if row["recovered"] else "not recovered"
        how = (
            "not injected: the job does not keep up with this rate at this interval"
            if row["recovery_rule"] == "overloaded"
            else f"recovery {rec} (detect {row['detect_s']:.1f}s, running {row['running_s']:.1f}s)"
        )
        self._say(
            f"{done}/{self.exp.failures} {row['cluster']} CI {row['ci_s']:g}s rate {row['rate']:g}/s "
            f"{row['mode']:<7}: {how} | {(time.monotonic() - self._started) / 60:.1f} min"
        )
        if self.bar is not None:
            self.bar.advance()

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.say(text)

    def _write_results(self) -> pd.DataFrame:
        return results.write(self.rows, self.out, self.exp.name)
