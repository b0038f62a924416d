"""`khaos profile EXPERIMENT.yml`: break copies of a job in parallel and measure what it costs.

Each profiling cluster (a lab of its own, or an inventory) works through a queue of units; a
unit is one (checkpoint interval, rate): deploy the job (playbooks/deploy_job.yml), learn its
steady state, then for every failure mode and repetition inject a real failure
(playbooks/inject_failure.yml, worst case: just before the next checkpoint), sample the job
twice a second, and measure detection, restart and recovery (recovery.py). The unit ends
with stop-with-savepoint and a sink audit (0 lost, 0 duplicated after every failure). One unit's
run is unit.py; bringing the clusters up and down is clusters.py.

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
from pathlib import Path

import pandas as pd

from ..errors import KhaosError
from ..infra import ansible
from ..journal import Journal
from ..kafka import feed as kfeed
from ..progress import Bar
from ..signals import on_stop
from . import capacity, results, resume, waves, words
from .cleanup import Cleanup
from .clusters import Cluster, bring_up, teardown, write_bootstraps
from .experiment import Experiment
from .ownjobs import OwnJobs
from .recovery import RecoveryParams
from .unit import Unit, run_unit


class Cancelled(KhaosError):
    """The profile was cancelled (Ctrl-C or SIGTERM)."""


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
                    write_bootstraps(self)
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
            teardown(self)
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
        bring_up(self)  # clusters.py

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
            run_unit(self, cluster, unit, feed)  # unit.py
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
