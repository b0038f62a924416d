"""`khaos run CONFIG`: the runtime controller daemon.

A collector thread samples the job every ``loop.sample_s`` (collector.py). Every ``loop.period_s``
the loop runs one step::

    collect (the window) -> plan (forecast the rate, predict at the current interval, decide with the
    planner's rules and the cooldown) -> realize (a change: playbooks/reconfigure.yml; --advisor:
    nothing) -> publish (the listeners: journal, Prometheus metrics, log)

SIGTERM/SIGINT let the step in flight finish (a running reconfigure playbook is never interrupted),
then the daemon exits 0. On start, a change a killed daemon left pending in the deployment record is
finished first. docs/daemon.md has it all.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import KhaosError
from ..flink import deployment
from ..flink.client import FlinkClient, FlinkError
from ..journal import Journal
from ..model import store
from ..model.predict import predict
from ..signals import name as signal_name
from ..signals import on_stop
from . import log
from .collector import FlinkCollector, Observation
from .config import Config, load_config
from .forecast import forecast
from .metrics import Metrics, MetricsServer
from .planner import Policy, explain, recommend
from .realizer import AdvisorRealizer, PlaybookRealizer, Realizer, last_change_ts, orphan_runs

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
        self.client = client or FlinkClient(cfg.rest_url, timeout=cfg.rest_timeout_s)
        self.collector = collector
        self.realizer: Realizer = realizer or (AdvisorRealizer() if advisor else PlaybookRealizer(cfg))
        self.clock = clock
        self.metrics = Metrics({"flink_job": cfg.job})
        self.metrics.set("khaos_latency_limit_milliseconds", cfg.l_max_ms)
        self.metrics.set("khaos_recovery_limit_seconds", cfg.r_max_s)
        self.metrics.set("khaos_up", 0)
        self.journal = Journal(cfg.journal)
        self.listeners: list[Callable[[dict, Observation], None]] = [self._metrics, self._journal, self._log]
        self.server: MetricsServer | None = None
        self.stopping = threading.Event()
        self.last_change_ts: float | None = None
        self.last_attempt_failed = False  # a failed reconfiguration waits out the cooldown, breach or not
        self.iteration = 0
        self._lock_fh = None
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
    def _take_lock(self) -> None:
        lock = self.cfg.state_dir / f".{self.cfg.job}.daemon.lock"
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock, "a+")  # noqa: SIM115 - held (with its flock) for the daemon's life
        except OSError as e:
            raise KhaosError(f"{self.cfg.path}: state_dir: cannot create {lock}: {e.strerror or e}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            other = fh.read().strip() or "?"
            fh.close()
            raise KhaosError(
                f"another khaos daemon (pid {other}) already controls job {self.cfg.job!r} ({lock})"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh

    def _wait_orphans(self) -> None:
        base = getattr(self.realizer, "base_dir", None)
        if base is None:
            return
        pids = orphan_runs(base)
        if not pids:
            return
        limit = 2 * self.cfg.reconfigure_timeout_s + 60
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

    def reconcile(self) -> dict | None:
        """Finish a change a killed daemon left pending in the record (reconfigure.yml reconciles first)."""
        path = self.cfg.record
        if not path.exists():
            return None
        try:
            record = deployment.load(path)
        except ValueError as e:
            raise KhaosError(f"deployment record {path} is not valid JSON: {e}") from None
        self.last_change_ts = last_change_ts(record)
        pending = record.get("pending")
        if not pending:
            return None
        target = float(pending.get("new_s") or pending.get("old_s"))
        if not self.realizer.changes_job:
            event(
                logging.ERROR,
                "pending_change",
                record=str(path),
                target_s=target,
                detail="a change is pending and --advisor never changes the job: run without --advisor to finish it",
            )
            self.journal.write({"event": "pending_change", "job": self.cfg.job, "pending": pending, "advisor": True})
            return None
        event(
            logging.WARNING, "reconcile_started", record=str(path), target_s=target, savepoint=pending.get("savepoint")
        )
        self.journal.write(
            {"event": "reconcile_started", "job": self.cfg.job, "pending": pending, "target_ci_s": target}
        )
        try:
            result = self.realizer(target)
        except KhaosError as e:
            self.journal.write({"event": "reconcile", "job": self.cfg.job, "status": "failed", "error": str(e)})
            raise KhaosError(f"finishing the change pending in {path} failed: {e}") from None
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
        self._take_lock()
        if self.realizer.changes_job:
            if not self.cfg.inventory.exists():
                raise KhaosError(f"{self.cfg.path}: inventory: {self.cfg.inventory} does not exist")
            self._wait_orphans()
        self.journal.write(
            {
                "event": "start",
                "job": self.cfg.job,
                "pid": os.getpid(),
                "advisor": self.advisor,
                "config": str(self.cfg.path),
                "model": str(self.cfg.model_path),
                "model_data_hash": self.cfg.model.data_hash,
                "limits": {"latency_ms": self.cfg.l_max_ms, "recovery_s": self.cfg.r_max_s},
            }
        )
        self.reconcile()
        self._check_job()
        if self.realizer.changes_job and not self.cfg.record.exists():
            raise KhaosError(
                f"{self.cfg.path}: state_dir: no deployment record {self.cfg.record}: reconfigure.yml "
                f"needs the record deploy_job.yml writes (or run with --advisor)"
            )
        if self.cfg.metrics_port is not None:
            self.server = MetricsServer(self.metrics, self.cfg.metrics_host, self.cfg.metrics_port).start()
            event(logging.INFO, "metrics", url=f"http://{self.server.host}:{self.server.port}/metrics")
        if self.collector is None:
            self.collector = FlinkCollector(
                self.client, self.cfg.job, self.cfg.sample_s, keep_s=max(self.cfg.window_s, self.cfg.sample_s * 2)
            )
        self.collector.start()
        event(
            logging.INFO,
            "started",
            job=self.cfg.job,
            advisor=self.advisor,
            period_s=self.cfg.period_s,
            window_s=self.cfg.window_s,
            l_max_ms=self.cfg.l_max_ms,
            r_max_s=self.cfg.r_max_s,
            journal=str(self.cfg.journal),
        )

    def close(self) -> None:
        """Stop sampling and serving; release the lock."""
        if self.collector is not None:
            self.collector.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

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
        if obs.uptime_s < cfg.min_uptime_s:
            return f"job up for {obs.uptime_s:.0f} s, less than min_uptime_s {cfg.min_uptime_s:g}"
        need = max(2, int(0.5 * cfg.window_s / cfg.sample_s))
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
        step = max(1, round(self.cfg.forecast_step_s / self.cfg.sample_s))
        fc = (
            forecast(pd.Series(obs.rates, dtype=float), self.cfg.forecast_horizon_s / self.cfg.sample_s, step_s=step)
            + shift
        )
        return max(fc, 0.0), max(demand, fc, MIN_RATE)

    def plan(self, obs: Observation, now: float) -> dict:
        """The decision on ``obs`` as a journal entry (``decision``: change, keep or wait, with why)."""
        cfg = self.cfg
        entry: dict[str, Any] = {
            "event": "decision",
            "job": cfg.job,
            "iteration": self.iteration,
            "advisor": self.advisor,
            "inputs": obs.inputs(),
            "limits": {"latency_ms": cfg.l_max_ms, "recovery_s": cfg.r_max_s},
            "last_change_ts": self.last_change_ts,
            "cooldown_s": cfg.cooldown_s,
        }
        alert = False
        if obs.jobs_running > 1:
            alert = True
            entry["warning"] = f"{obs.jobs_running} jobs named {cfg.job!r} run; deciding on the newest"
        why = self._wait_reason(obs)
        if why:
            entry["decision"] = {
                "action": "wait",
                "ci_s": obs.ci_s,
                "current_ci_s": obs.ci_s,
                "alert": alert,
                "reason": why,
            }
            return entry
        try:
            fc, rate = self.plan_rate(obs)
            lat, rec_s = predict(cfg.model, rate, obs.ci_s, cfg.mode)
            d = recommend(
                cfg.model,
                rate,
                obs.ci_s,
                Policy.of(cfg),
                last_change_ts=self.last_change_ts,
                now=now,
                breach_overrides_cooldown=not self.last_attempt_failed,
            )
        except KhaosError as e:
            entry["decision"] = {
                "action": "wait",
                "ci_s": obs.ci_s,
                "current_ci_s": obs.ci_s,
                "alert": True,
                "reason": f"cannot evaluate: {e}",
            }
            return entry
        entry["forecast_rate"], entry["plan_rate"] = fc, rate
        entry["predicted_at_current"] = {"ci_s": obs.ci_s, "latency_ms": lat, "recovery_s": rec_s}
        entry["decision"] = {
            "action": d.action,
            "ci_s": d.ci_s,
            "current_ci_s": obs.ci_s,
            "best_ci_s": d.best_ci_s,
            "alert": alert or d.alert,
            "feasible": d.feasible,
            "reason": d.reason,
            "predicted_latency_ms": d.predicted_latency_ms,
            "predicted_recovery_s": d.predicted_recovery_s,
            "ratios": d.ratios,
            "warnings": d.warnings,
            "young_s": d.young_s,
            "daly_s": d.daly_s,
        }
        entry["explain"] = explain(d)
        return entry

    def realize(self, ci_s: float, obs: Observation, entry: dict) -> dict:
        """Apply a change through the realizer; returns what happened (status ok, failed or advisor)."""
        if not self.realizer.changes_job:
            event(
                logging.INFO,
                "advice",
                job=self.cfg.job,
                from_s=obs.ci_s,
                to_s=ci_s,
                detail="--advisor: the job is not changed",
            )
            return self.realizer(ci_s)
        event(logging.INFO, "reconfigure_started", job=self.cfg.job, job_id=obs.job_id, from_s=obs.ci_s, to_s=ci_s)
        # the decision and its inputs go to the journal before the playbook: a daemon killed while it
        # runs leaves them behind (the `decision` line is written after the realization)
        self.journal.write(
            {
                "event": "reconfigure_started",
                "job": self.cfg.job,
                "iteration": self.iteration,
                "job_id": obs.job_id,
                "from_ci_s": obs.ci_s,
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
        obs = self.collector.snapshot(self.cfg.window_s)  # collect
        entry = self.plan(obs, now)  # plan
        d = entry["decision"]
        if d["action"] == "change":
            entry["realize"] = self.realize(d["ci_s"], obs, entry)  # realize
        entry["decision_ts"] = now
        entry["loop_seconds"] = round(time.monotonic() - t0, 3)
        for listener in self.listeners:  # publish
            listener(entry, obs)
        return entry

    # ---- listeners --------------------------------------------------------------------------------
    def _metrics(self, entry: dict, obs: Observation) -> None:
        m, d, r = self.metrics, entry["decision"], entry.get("realize") or {}
        m.set("khaos_up", 1 if (obs.job_id and obs.all_running and not obs.error) else 0)
        m.set(
            "khaos_checkpoint_interval_seconds",
            (r.get("interval_s") or r.get("target_ci_s")) if r.get("status") == "ok" else obs.ci_s,
        )
        m.set("khaos_job_uptime_seconds", obs.uptime_s)
        m.set("khaos_latency_p99_milliseconds", obs.latency_p99_ms)
        m.set("khaos_input_rate", obs.demand_rate)
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

    def _journal(self, entry: dict, obs: Observation) -> None:
        self.journal.write({k: v for k, v in entry.items() if k != "decision_ts"})

    def _log(self, entry: dict, obs: Observation) -> None:
        d = entry["decision"]
        fields = {
            "iteration": self.iteration,
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
            event(
                logging.WARNING,
                "ALERT",
                job=self.cfg.job,
                detail=entry.get("explain") or entry.get("warning") or d["reason"],
            )

    # ---- the loop ---------------------------------------------------------------------------------
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
                    event(logging.ERROR, "step_failed", error=str(e))
                if once:
                    break
                next_at = max(next_at + self.cfg.period_s, time.monotonic())
            return 0
        finally:
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


def run(config: str | Path, advisor: bool = False, once: bool = False, check: bool = False) -> int:
    """`khaos run`: load the config, then run the daemon until a signal (or one step with ``once``)."""
    cfg = load_config(config)
    if check:
        print(
            f"{cfg.path}: ok: job {cfg.job!r} on {cfg.rest_url}, limits {cfg.l_max_ms:g} ms / {cfg.r_max_s:g} s, "
            f"CI {cfg.ci_min:g}-{cfg.ci_max:g} s, model {cfg.model_path} ({cfg.model.data_hash[:19]})"
        )
        return 0
    log.setup(cfg.log_level, cfg.log_format)
    d = Daemon(cfg, advisor=advisor)
    with on_stop(d.on_signal):
        return d.run(once=once)
