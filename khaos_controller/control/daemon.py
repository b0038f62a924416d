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

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import KhaosError
from ..flink import record as deployment_record
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
from .explain import explain
from .forecast import forecast
from .health import Health
from .metrics import Metrics, MetricsServer
from .planner import recommend
from .policy import Policy, measured_capacity
from .realizer import Realizer, for_config
from .step import Choice, Failed, Plan, Prediction, Realization, Step, interval_in_force

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
        self.realizer: Realizer = realizer or for_config(cfg, advisor, self.client, self.journal, self.metrics)
        self.realizer.attach(cfg.job, self.journal, clock)
        self.health = Health(cfg.job, cfg.loop.stuck_s, self.metrics, self.journal)
        self.listeners: list[Callable[[Step], None]] = [
            publish.Metrics(self.metrics),
            publish.Journal(self.journal),
            publish.Log(cfg.job),
        ]
        self.server: MetricsServer | None = None
        self.stopping = threading.Event()
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
    def reconcile(self, at_start: bool = True) -> Realization | None:
        """Finish a change left pending in the record (a killed daemon, a failed or unclear change): at
        start, and again on every step. At start a failure stops the daemon; later it is an alert."""
        path = self.cfg.record
        if not path.exists():
            return None
        record = deployment_record.load(path)
        if at_start:
            self.realizer.remember(record)
        pending = record.pending
        if not pending:
            return None
        target = float(pending.new_s or pending.old_s or 0)
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
                {
                    "event": "pending_change",
                    "job": self.cfg.job,
                    "pending": pending.to_dict(),
                    "realize": self.realizer.kind,
                }
            )
            return None
        event(logging.WARNING, "reconcile_started", record=str(path), target_s=target, savepoint=pending.savepoint)
        self.journal.write(
            {"event": "reconcile_started", "job": self.cfg.job, "pending": pending.to_dict(), "target_ci_s": target}
        )
        try:
            result = self.realizer.reconcile(target)
        except KhaosError as e:
            self.journal.write({"event": "reconcile", "job": self.cfg.job, "status": "failed", "error": str(e)})
            self.metrics.inc("khaos_reconciliation_failures_total")
            if at_start:
                raise KhaosError(f"finishing the change pending in {path} failed: {e}") from None
            event(logging.WARNING, "ALERT", job=self.cfg.job, kind="reconcile_failed", detail=str(e))
            return Failed(status="failed", target_ci_s=target, error=str(e))
        self.metrics.inc("khaos_reconciliations_total")
        done = result.journal()
        self.journal.write({"event": "reconcile", "job": self.cfg.job, **done})
        fields = {k: v for k, v in done.items() if k not in ("status", "target_ci_s") and v is not None}
        event(logging.INFO, "reconciled", target_s=target, **fields)
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
        if self.realizer.changes_job and (self.cfg.inventory is None or not self.cfg.inventory.exists()):
            raise KhaosError(f"{self.cfg.path}: inventory: {self.cfg.inventory or 'missing'} does not exist")
        self.realizer.settle()
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
        self.realizer.start()
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
        self.realizer.stop()
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
        """The planner's rules for this daemon's realizer (policy.Policy.of)."""
        return self.realizer.policy(self.cfg, safety_net_s)

    def plan(self, obs: Observation, now: float) -> Step:
        """The step's decision on ``obs``: change, keep or wait, with why."""
        cfg, paces = self.cfg, self.realizer.paces
        current = interval_in_force(obs.ci_s, self.realizer.paced_s)
        warning = f"{obs.jobs_running} jobs named {cfg.job!r} run; deciding on the newest"
        decision, plan, why = self.decide(obs, now, current, alert=obs.jobs_running > 1)
        return Step(
            job=cfg.job,
            iteration=self.iteration,
            advisor=self.advisor,
            observation=obs,
            limits={"latency_ms": cfg.limits.latency_ms, "recovery_s": cfg.limits.recovery_s},
            last_change_ts=self.realizer.last_change_ts,
            cooldown_s=cfg.ci.cooldown_s,
            decision=decision,
            warning=warning if obs.jobs_running > 1 else None,
            pacing=paces,
            safety_net_s=obs.ci_s if paces else None,
            plan=plan,
            explain=why,
        )

    def decide(self, obs: Observation, now: float, current: float | None, alert: bool) -> tuple:
        """(decision, plan, explanation) at the interval in force ``current``; a wait has no plan when the
        job, its samples or the model cannot be planned with."""
        cfg = self.cfg
        why = self._wait_reason(obs)
        if why:
            return Choice("wait", current, current, alert, why), None, None
        try:
            fc, rate = self.plan_rate(obs)
            # the job's capacity on this cluster (busy time) where the model knows capacity (collector.py)
            cap = obs.capacity if obs.capacity and measured_capacity(cfg.model) else None
            lat, rec_s = predict(cfg.model, rate, current, cfg.mode, capacity=cap, measured_at_ci=current)
            d = recommend(
                cfg.model,
                rate,
                current,
                self.policy(obs.ci_s),
                last_change_ts=self.realizer.last_change_ts,
                now=now,
                breach_overrides_cooldown=not self.realizer.failed_last,
                capacity=cap,
            )
        except KhaosError as e:
            return Choice("wait", current, current, True, f"cannot evaluate: {e}"), None, None
        return Choice.of(d, current, alert), Plan(cap, fc, rate, Prediction(current, lat, rec_s)), explain(d)

    def step(self) -> Step:
        """One iteration. Never raises for a problem of the job or of Flink (that is a `wait` with the
        reason); returns the step as the listeners got it."""
        t0 = time.monotonic()
        self.iteration += 1
        now = self.clock()
        self.reload_model()
        unfinished = None  # a change left pending (by us or anyone) is finished first
        if self.realizer.changes_job:
            r = self.reconcile(at_start=False)
            unfinished = r if r is not None and r.status == "failed" else None
        obs = self.collector.snapshot(self.cfg.loop.window_s)  # collect
        alerts = self.health.check(obs)
        step = self.plan(obs, now)  # plan
        if alerts:
            step.job_alerts = alerts
            step.decision.alert = True
        if unfinished is not None:
            step.decision.alert = True  # the job may be down or doubled until the pending change is finished
        if step.decision.action == "change":
            # no new change on top of one still pending: the failed reconciliation is this step's outcome
            step.realization = unfinished or self.realizer.realize(step)  # realize
            if step.realization.status == "failed":
                step.decision.alert = True  # the job may be down until the next step reconciles it
        step.ts = now
        step.loop_seconds = round(time.monotonic() - t0, 3)
        for listener in self.listeners:  # publish
            listener(step)
        return step

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
                except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
                    # an answer of a shape nobody expected (a proxy's page, another Flink version): an
                    # alert, never the end of the daemon; the next step asks again
                    why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                    event(logging.ERROR, "step_failed", error=f"an answer of an unexpected shape ({why})")
                if once:
                    break
                next_at = max(next_at + self.cfg.loop.period_s, time.monotonic())
            return 0
        finally:
            self.realizer.stop()  # the stop line is the journal's last: no trigger after it
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
