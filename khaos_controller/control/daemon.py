"""`khaos run CONFIG`: the runtime controller daemon.

A collector thread samples the job every ``loop.sample_s`` (collector.py). Every ``loop.period_s``
the loop runs one step::

    collect (the window) -> plan (forecast the rate, predict at the current interval, decide with the
    planner's rules and the cooldown) -> realize (pace: the pacer's interval; restart:
    playbooks/reconfigure.yml; --advisor: nothing) -> publish (the listeners: journal, metrics, log)

With realize.mode pace a pacer thread (pacer.py) triggers checkpoints at the chosen interval; the job's
configured interval is the safety net, so the candidates stop there and a move costs nothing (no
dead band, no cooldown).

SIGTERM/SIGINT let the step in flight finish (a running reconfigure playbook is never interrupted),
then the daemon exits 0. On start, a change a killed daemon left pending in the deployment record is
finished first. docs/daemon.md has it all.
"""

from __future__ import annotations

import collections
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import KhaosError
from ..flink import deployment
from ..flink.client import FlinkClient, FlinkError
from ..flink.lock import JobLock
from ..journal import Journal
from ..model import store
from ..model.predict import predict
from ..signals import name as signal_name
from ..signals import on_stop
from . import log, publish
from .collector import FlinkCollector, Observation
from .config import Config
from .forecast import forecast
from .health import Health
from .metrics import Metrics, MetricsServer
from .pacer import Pacer
from .planner import PRIOR_CHANGE_COST_S, Policy, explain, measured_capacity, recommend
from .realizer import (
    AdvisorRealizer,
    PaceRealizer,
    PlaybookRealizer,
    Realizer,
    down_times,
    last_change_ts,
    orphan_runs,
)

MIN_RATE = 1.0  # events/s: an idle job is planned for as if it had 1 event/s (the model needs rate > 0)
event = log.event


class Daemon:
    """One daemon for one job: lock, reconcile, then collect -> plan -> realize -> publish every period."""

    def __init__(
        self,
        cfg: Config,
        advisor: bool = False,
        collector=None,
        realizer: Realizer | None = None,
        client: FlinkClient | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg, self.advisor = cfg, advisor
        self.client = client or FlinkClient(cfg.rest_url, timeout=cfg.file.flink.timeout_s)
        self.collector = collector
        self.clock = clock
        self.metrics = Metrics({"flink_job": cfg.job})
        self.metrics.set("khaos_latency_limit_milliseconds", cfg.limits.latency_ms)
        self.metrics.set("khaos_recovery_limit_seconds", cfg.limits.recovery_s)
        self.metrics.set("khaos_up", 0)
        keep = cfg.file.retention
        self.journal = Journal(cfg.journal, max_bytes=int(keep.journal_mb * 2**20), keep=keep.journal_files)
        self.pacer: Pacer | None = None
        if realizer is None and advisor:
            realizer = AdvisorRealizer()
        elif realizer is None and cfg.file.realize.mode == "pace":
            self.pacer = Pacer(self.client, cfg.job, self.journal, self.metrics, tick_s=cfg.file.realize.tick_s)
            realizer = PaceRealizer(self.pacer)
        elif realizer is None:
            realizer = PlaybookRealizer(cfg)
        elif isinstance(realizer, PaceRealizer):
            self.pacer = realizer.pacer
        self.realizer: Realizer = realizer
        self.health = Health(cfg.job, cfg.loop.stuck_s, self.metrics, self.journal)
        self.listeners: list[Callable[[dict, Observation], None]] = [
            publish.Metrics(self.metrics),
            publish.Journal(self.journal),
            publish.Log(cfg.job),
        ]
        self.server: MetricsServer | None = None
        self.stopping = threading.Event()
        self.last_change_ts: float | None = None
        self.last_attempt_failed = False  # a failed reconfiguration waits out the cooldown, breach or not
        self.down_s: collections.deque[float] = collections.deque(maxlen=5)  # measured costs of the last changes
        self.iteration = 0
        self.lock = JobLock(cfg.state_dir, cfg.job, "daemon")
        self._model_mtime = self._mtime(cfg.model_path)

    # ---- signals ----------------------------------------------------------------------------------
    def on_signal(self, signum: int) -> None:
        """SIGTERM/SIGINT: finish the step in flight, then stop."""
        if self.stopping.is_set():
            event(
                logging.WARNING,
                "still_finishing",
                signal=signal_name(signum),
                detail="the step in flight (a reconfiguration is never interrupted) finishes, then the daemon exits",
            )
        else:
            event(
                logging.INFO,
                "stopping",
                signal=signal_name(signum),
                detail="finishing the step in flight, then exiting",
            )
        self.stopping.set()

    # ---- start ------------------------------------------------------------------------------------
    def _wait_orphans(self) -> None:
        base = getattr(self.realizer, "base_dir", None)
        if base is None:
            return
        pids = orphan_runs(base)
        if not pids:
            return
        limit = deployment.worst_case_s(self.cfg.file.reconfigure.timeout_s)
        event(
            logging.WARNING,
            "waiting_for_orphan_reconfigure",
            pids=",".join(map(str, pids)),
            max_wait_s=limit,
            detail="a reconfiguration started by a killed daemon is still running: letting it finish",
        )
        self.journal.write({"event": "orphan_wait", "job": self.cfg.job, "pids": pids})
        deadline = time.monotonic() + limit
        while pids and time.monotonic() < deadline:
            time.sleep(0.5)
            pids = orphan_runs(base)
        if pids:
            raise KhaosError(
                f"a reconfigure playbook left by a killed daemon (pids {', '.join(map(str, pids))}) is "
                f"still running after {limit:.0f}s: inspect or stop it, then start the daemon again"
            )

    def reconcile(self, at_start: bool = True) -> dict | None:
        """Finish a change left pending in the record (a killed daemon, a failed or unclear change): at
        start, and again on every step. At start a failure stops the daemon; later it is an alert."""
        path = self.cfg.record
        if not path.exists():
            return None
        record = deployment.load(path)
        if at_start:
            self.last_change_ts = last_change_ts(record)
            self.down_s.extend(down_times(record))
        pending = record.get("pending")
        if not pending:
            return None
        target = float(pending.get("new_s") or pending.get("old_s") or 0)
        if not self.realizer.changes_job:
            event(
                logging.ERROR,
                "pending_change",
                record=str(path),
                target_s=target,
                detail=f"a restart change is pending and realize {self.realizer.kind} never restarts the job: "
                "run with realize.mode restart (and without --advisor) to finish it",
            )
            self.journal.write(
                {"event": "pending_change", "job": self.cfg.job, "pending": pending, "realize": self.realizer.kind}
            )
            return None
        event(
            logging.WARNING, "reconcile_started", record=str(path), target_s=target, savepoint=pending.get("savepoint")
        )
        self.journal.write(
            {"event": "reconcile_started", "job": self.cfg.job, "pending": pending, "target_ci_s": target}
        )
        try:
            result = self.realizer.reconcile()
        except KhaosError as e:
            self.journal.write({"event": "reconcile", "job": self.cfg.job, "status": "failed", "error": str(e)})
            self.metrics.inc("khaos_reconciliation_failures_total")
            if at_start:
                raise KhaosError(f"finishing the change pending in {path} failed: {e}") from None
            event(logging.WARNING, "ALERT", job=self.cfg.job, kind="reconcile_failed", detail=str(e))
            return {"status": "failed", "error": str(e)}
        self.metrics.inc("khaos_reconciliations_total")
        self.last_change_ts = self.clock()
        self.journal.write({"event": "reconcile", "job": self.cfg.job, "status": "ok", "target_ci_s": target, **result})
        event(logging.INFO, "reconciled", target_s=target, **{k: v for k, v in result.items() if v is not None})
        return result

    def _check_job(self) -> None:
        try:
            jobs = self.client.live_jobs(self.cfg.job)
        except FlinkError as e:
            raise KhaosError(f"{self.cfg.path}: flink.rest_url: {e}") from None
        if len(jobs) == 1:
            return
        if len(jobs) > 1:
            raise KhaosError(
                f"{self.cfg.path}: job: {len(jobs)} jobs named {self.cfg.job!r} run on {self.client.url} "
                f"({', '.join(j['jid'] for j in jobs)}): the daemon controls exactly one"
            )
        hint = ""
        try:
            done = [j for j in self.client.get("/jobs/overview")["jobs"] if j["name"] == self.cfg.job]
            if done:
                last = max(done, key=lambda j: j.get("end-time", 0))
                sp = ((self.client.checkpoints(last["jid"]).get("latest") or {}).get("savepoint") or {}).get(
                    "external_path"
                )
                hint = f"; the last one ({last['jid']}) is {last['state']}" + (f" with savepoint {sp}" if sp else "")
        except (FlinkError, KeyError, ValueError):
            pass
        raise KhaosError(
            f"{self.cfg.path}: job: no running job named {self.cfg.job!r} on {self.client.url} and no "
            f"change pending in {self.cfg.record}{hint}: deploy it first (playbooks/deploy_job.yml)"
        )

    def start(self) -> None:
        """Lock, wait for an orphaned reconfiguration, reconcile, check the job; then serve and sample."""
        try:
            self.lock.acquire()
        except KhaosError as e:
            raise KhaosError(f"{self.cfg.path}: state_dir: {e}") from None
        if self.realizer.changes_job:
            if self.cfg.inventory is None or not self.cfg.inventory.exists():
                raise KhaosError(f"{self.cfg.path}: inventory: {self.cfg.inventory or 'missing'} does not exist")
            self._wait_orphans()
        self.journal.write(
            {
                "event": "start",
                "job": self.cfg.job,
                "pid": os.getpid(),
                "advisor": self.advisor,
                "realize": self.realizer.kind,
                "config": str(self.cfg.path),
                "model": str(self.cfg.model_path),
                "model_data_hash": self.cfg.model.data_hash,
                "limits": {"latency_ms": self.cfg.limits.latency_ms, "recovery_s": self.cfg.limits.recovery_s},
            }
        )
        self.reconcile()
        self._check_job()
        if self.realizer.changes_job and not self.cfg.record.exists():
            raise KhaosError(
                f"{self.cfg.path}: state_dir: no deployment record {self.cfg.record}: reconfigure.yml "
                f"needs the record deploy_job.yml writes (or run with --advisor)"
            )
        if self.cfg.file.metrics is not None:
            self.server = MetricsServer(self.metrics, self.cfg.file.metrics.host, self.cfg.file.metrics.port).start()
            event(logging.INFO, "metrics", url=f"http://{self.server.host}:{self.server.port}/metrics")
        if self.collector is None:
            self.collector = FlinkCollector(
                self.client,
                self.cfg.job,
                self.cfg.loop.sample_s,
                keep_s=max(self.cfg.loop.window_s, self.cfg.loop.sample_s * 2),
            )
        self.collector.start()
        if self.pacer is not None:
            self.pacer.start()
        event(
            logging.INFO,
            "started",
            job=self.cfg.job,
            advisor=self.advisor,
            realize=self.realizer.kind,
            period_s=self.cfg.loop.period_s,
            window_s=self.cfg.loop.window_s,
            l_max_ms=self.cfg.limits.latency_ms,
            r_max_s=self.cfg.limits.recovery_s,
            journal=str(self.cfg.journal),
        )

    def close(self) -> None:
        """Stop pacing, sampling and serving; release the lock."""
        if self.pacer is not None:
            self.pacer.stop()
        if self.collector is not None:
            self.collector.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.lock.release()

    # ---- the model --------------------------------------------------------------------------------
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
            model = store.load(self.cfg.model_path)
            missing = model.unprofiled(self.cfg.mode)
            if missing:
                raise KhaosError(f"mode {missing}")
        except KhaosError as e:
            event(
                logging.ERROR,
                "model_reload_failed",
                path=str(self.cfg.model_path),
                error=str(e),
                detail="the current model stays in use",
            )
            self.journal.write({"event": "model_reload_failed", "job": self.cfg.job, "error": str(e)})
            return
        self.cfg.model = model
        event(logging.INFO, "model_reloaded", path=str(self.cfg.model_path), data_hash=model.data_hash)
        self.journal.write(
            {
                "event": "model_reloaded",
                "job": self.cfg.job,
                "model": str(self.cfg.model_path),
                "model_data_hash": model.data_hash,
            }
        )

    # ---- one step: collect -> plan -> realize -> publish ------------------------------------------
    def _wait_reason(self, obs: Observation) -> str | None:
        cfg = self.cfg
        if obs.job_id is None:
            return f"no running job named {cfg.job!r}" + (f" ({obs.error})" if obs.error else "")
        if obs.error:
            return f"the last sample failed: {obs.error}"
        if not obs.all_running:
            return f"job {obs.job_id} is {obs.state} but not every task runs"
        if obs.uptime_s < cfg.loop.min_uptime_s:
            return f"job up for {obs.uptime_s:.0f} s, less than min_uptime_s {cfg.loop.min_uptime_s:g}"
        need = max(2, int(0.5 * cfg.loop.window_s / cfg.loop.sample_s))
        if obs.samples < need:
            return f"{obs.samples} rate samples in the window, need {need}"
        if obs.ci_s is None or obs.ci_s <= 0:
            return "checkpointing is disabled on the job (no interval in force)"
        return None

    def plan_rate(self, obs: Observation) -> tuple[float, float]:
        """(forecast, rate to plan for). The plan is max(window mean, forecast): a rising rate is met
        before it arrives, a falling one only once it has fallen (never lengthen the interval early)."""
        import pandas as pd

        demand = obs.demand_rate if obs.demand_rate is not None else obs.rate_mean
        shift = demand - obs.rate_mean  # the backlog growth also applies to the forecast
        step = max(1, round(self.cfg.loop.forecast_step_s / self.cfg.loop.sample_s))
        fc = (
            forecast(
                pd.Series(obs.rates, dtype=float),
                self.cfg.loop.forecast_horizon_s / self.cfg.loop.sample_s,
                step_s=step,
            )
            + shift
        )
        return max(fc, 0.0), max(demand, fc, MIN_RATE)

    def policy(self, safety_net_s: float | None) -> Policy:
        """The planner's rules for this daemon's realizer (planner.Policy.of)."""
        costs = self.cfg.ci.change_cost_s
        if costs is None:
            costs = float(statistics.median(self.down_s)) if self.down_s else PRIOR_CHANGE_COST_S
        return Policy.of(self.cfg, self.realizer.kind, safety_net_s, costs)

    def plan(self, obs: Observation, now: float) -> dict:
        """The decision on ``obs`` as a journal entry (``decision``: change, keep or wait, with why)."""
        cfg = self.cfg
        entry: dict[str, Any] = {
            "event": "decision",
            "job": cfg.job,
            "iteration": self.iteration,
            "advisor": self.advisor,
            "inputs": obs.inputs(),
            "limits": {"latency_ms": cfg.limits.latency_ms, "recovery_s": cfg.limits.recovery_s},
            "last_change_ts": self.last_change_ts,
            "cooldown_s": cfg.ci.cooldown_s,
        }
        alert = False
        if obs.jobs_running > 1:
            alert = True
            entry["warning"] = f"{obs.jobs_running} jobs named {cfg.job!r} run; deciding on the newest"
        current = self.pacer.effective_s(obs.ci_s) if self.pacer is not None else obs.ci_s
        if self.pacer is not None:
            entry["safety_net_s"] = obs.ci_s
        why = self._wait_reason(obs)
        if why:
            entry["decision"] = {
                "action": "wait",
                "ci_s": current,
                "current_ci_s": current,
                "alert": alert,
                "reason": why,
            }
            return entry
        try:
            fc, rate = self.plan_rate(obs)
            # the job's capacity on this cluster (busy time) where the model knows capacity (collector.py)
            cap = obs.capacity if obs.capacity and measured_capacity(cfg.model) else None
            lat, rec_s = predict(cfg.model, rate, current, cfg.mode, capacity=cap)
            d = recommend(
                cfg.model,
                rate,
                current,
                self.policy(obs.ci_s),
                last_change_ts=self.last_change_ts,
                now=now,
                breach_overrides_cooldown=not self.last_attempt_failed,
                capacity=cap,
            )
            entry["capacity_used"] = cap
        except KhaosError as e:
            entry["decision"] = {
                "action": "wait",
                "ci_s": current,
                "current_ci_s": current,
                "alert": True,
                "reason": f"cannot evaluate: {e}",
            }
            return entry
        entry["forecast_rate"], entry["plan_rate"] = fc, rate
        entry["predicted_at_current"] = {"ci_s": current, "latency_ms": lat, "recovery_s": rec_s}
        entry["decision"] = {
            "action": d.action,
            "ci_s": d.ci_s,
            "current_ci_s": current,
            "best_ci_s": d.best_ci_s,
            "alert": alert or d.alert,
            "feasible": d.feasible,
            "reason": d.reason,
            "predicted_latency_ms": d.predicted_latency_ms,
            "predicted_recovery_s": d.predicted_recovery_s,
            "ratios": d.ratios,
            # expected violation s/h (planner rules 3-5; null: unbounded recovery)
            "violation_s_per_h": {"best": d.best_violation_s_per_h, "current": d.current_violation_s_per_h},
            "warnings": d.warnings,
            "young_s": d.young_s,
            "daly_s": d.daly_s,
        }
        entry["explain"] = explain(d)
        return entry

    def realize(self, ci_s: float, obs: Observation, entry: dict) -> dict:
        """Apply a change through the realizer; returns what happened (status ok, failed or advisor)."""
        current = entry["decision"].get("current_ci_s")
        if self.realizer.kind == "advisor":
            event(
                logging.INFO,
                "advice",
                job=self.cfg.job,
                from_s=current,
                to_s=ci_s,
                detail="--advisor: the job is not changed",
            )
            return self.realizer(ci_s)
        if self.realizer.kind == "pace":  # free: no cooldown starts
            result = self.realizer(ci_s)
            event(logging.INFO, "paced", job=self.cfg.job, from_s=current, to_s=ci_s, **result)
            return {"status": "ok", "target_ci_s": ci_s, **result}
        event(logging.INFO, "reconfigure_started", job=self.cfg.job, job_id=obs.job_id, from_s=current, to_s=ci_s)
        # the decision and its inputs go to the journal before the playbook: a daemon killed while it
        # runs leaves them behind (the `decision` line is written after the realization)
        self.journal.write(
            {
                "event": "reconfigure_started",
                "job": self.cfg.job,
                "iteration": self.iteration,
                "job_id": obs.job_id,
                "from_ci_s": current,
                "target_ci_s": ci_s,
                **{k: entry[k] for k in ("inputs", "forecast_rate", "plan_rate", "decision") if k in entry},
            }
        )
        t0 = time.monotonic()
        try:
            result = self.realizer(ci_s)
        except KhaosError as e:
            # the playbook either left the job untouched (savepoint failed) or rolled it back; the failed
            # attempt starts the cooldown too, so a persistent failure is retried once per cooldown
            self.last_change_ts, self.last_attempt_failed = self.clock(), True
            event(logging.ERROR, "reconfigure_failed", job=self.cfg.job, to_s=ci_s, error=str(e))
            return {
                "status": "failed",
                "target_ci_s": ci_s,
                "error": str(e),
                "seconds": round(time.monotonic() - t0, 2),
            }
        self.last_change_ts, self.last_attempt_failed = self.clock(), False
        if isinstance(result.get("down_s"), (int, float)):
            self.down_s.append(float(result["down_s"]))
        event(
            logging.INFO,
            "reconfigured",
            job=self.cfg.job,
            to_s=ci_s,
            **{k: v for k, v in result.items() if v is not None},
        )
        return {"status": "ok", "target_ci_s": ci_s, **result}

    def step(self) -> dict:
        """One iteration. Never raises for a problem of the job or of Flink (that is a `wait` with the
        reason); returns the journal entry."""
        t0 = time.monotonic()
        self.iteration += 1
        now = self.clock()
        self.reload_model()
        if self.realizer.changes_job:
            self.reconcile(at_start=False)  # a change left pending (by us or anyone) is finished first
        obs = self.collector.snapshot(self.cfg.loop.window_s)  # collect
        alerts = self.health.check(obs)
        entry = self.plan(obs, now)  # plan
        if alerts:
            entry["job_alerts"] = alerts
            entry["decision"]["alert"] = True
        d = entry["decision"]
        if d["action"] == "change":
            entry["realize"] = self.realize(d["ci_s"], obs, entry)  # realize
            if entry["realize"].get("status") == "failed":
                d["alert"] = True  # the job may be down until the next step reconciles it
        entry["decision_ts"] = now
        entry["loop_seconds"] = round(time.monotonic() - t0, 3)
        for listener in self.listeners:  # publish
            listener(entry, obs)
        return entry

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self, once: bool = False) -> int:
        """Start, then decide every period_s (the first time once a window is collected) until a signal."""
        try:
            self.start()
            if self.stopping.is_set():
                return 0
            next_at = time.monotonic() + self.cfg.loop.window_s
            while not self.stopping.is_set():
                if self.stopping.wait(max(0.0, next_at - time.monotonic())):
                    break
                try:
                    self.step()
                except KhaosError as e:  # e.g. the journal became unwritable: say so, keep going
                    event(logging.ERROR, "step_failed", error=str(e))
                if once:
                    break
                next_at = max(next_at + self.cfg.loop.period_s, time.monotonic())
            return 0
        finally:
            if self.pacer is not None:
                self.pacer.stop()  # the stop line is the journal's last: no trigger after it
            try:
                self.journal.write(
                    {
                        "event": "stop",
                        "job": self.cfg.job,
                        "iterations": self.iteration,
                        "reconfigurations": self.metrics.get("khaos_reconfigurations_total"),
                    }
                )
            except KhaosError:
                pass
            self.close()
            event(logging.INFO, "stopped", job=self.cfg.job, iterations=self.iteration)


def run(cfg: Config, advisor: bool = False, once: bool = False) -> int:
    """`khaos run`: run the daemon on a checked config until a signal (or one step with ``once``)."""
    log.setup(cfg.file.log.level, cfg.file.log.format)
    d = Daemon(cfg, advisor=advisor)
    with on_stop(d.on_signal):
        return d.run(once=once)
