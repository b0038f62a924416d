"""One daemon step as a typed record: observation -> plan -> decision -> realization.

The daemon fills a :class:`Step` (daemon.py), the realizer adds its :class:`Realization` (realizer.py),
and every reader takes the record, never a nested dict: the listeners (publish.py: metrics, journal, log),
the evaluation's scoring (evaluate/score.py) and the demo. The journal holds a step as one ``decision``
line (:meth:`Step.journal`); :func:`read` turns the lines of a journal back into steps.

:func:`interval_in_force` is the one rule for which interval checkpoints come at: the job's own
(periodic) interval, or a paced one when it is shorter."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .collector import Observation


def interval_in_force(job_s: float | None, paced_s: float | None) -> float | None:
    """The interval checkpoints come at: the job's own interval ``job_s`` (its periodic checkpoints, the
    safety net under pacing), or ``paced_s`` when that is shorter; None for an unknown one."""
    if paced_s is None or job_s is None or job_s != job_s:  # NaN: the job's own is unknown
        return job_s if paced_s is None else paced_s
    return min(paced_s, job_s)


def timeline(t: Sequence[float], job_s: Sequence[float | None], changes: Iterable[tuple]) -> list[float | None]:
    """The interval in force at each time ``t[i]``, the job's own interval being ``job_s[i]``; ``changes``
    are (time, paced interval or None) of the realized changes, each in force from its time on."""
    held = sorted(changes, key=lambda c: c[0])
    times = [c[0] for c in held]
    out = []
    for ti, own in zip(t, job_s):
        k = bisect.bisect_right(times, ti)
        out.append(interval_in_force(own, held[k - 1][1] if k else None))
    return out


def _read(cls, d: dict | None):
    """A dataclass from a journal mapping: unknown keys dropped; a missing key takes the field's default, or
    None for a field without one (a journal written before the field existed)."""
    d = d or {}
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kw[f.name] = d[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kw[f.name] = None
    return cls(**kw)


# ------------------------------------------------------------------------------------------ realizations


@dataclass
class Realization:
    """What a realizer did with a change (the step's ``realize``): ``status`` ok, failed or advisor."""

    status: str
    target_ci_s: float
    seconds: float | None = None  # how long the change took

    def journal(self) -> dict:
        """The ``realize`` mapping of the step's journal line."""
        return {"status": self.status, "target_ci_s": self.target_ci_s}

    @property
    def ok(self) -> bool:
        """The change is in force."""
        return self.status == "ok"

    def leaves(self, job_s: float | None, paced_s: float | None) -> tuple[float | None, float | None]:
        """(the job's own interval, the paced interval) after this realization, from the ones before."""
        return job_s, paced_s

    def summary(self) -> str:
        """How the change was made, in words."""
        return self.status

    @staticmethod
    def read(d: dict) -> Realization:
        """A journaled ``realize`` mapping back as its kind (only a paced change has a safety net)."""
        if d.get("status") == "advisor":
            return _read(Advised, d)
        if "safety_net_s" in d:
            return _read(Paced, d)
        if d.get("status") == "failed":
            return _read(Failed, d)
        return _read(Restarted, d)


@dataclass
class Advised(Realization):
    """``--advisor``: the change is journaled, logged and exported, the job left alone."""


@dataclass
class Paced(Realization):
    """Checkpoints are triggered at the target over REST; the job's own interval stays as the safety net."""

    seconds: float = 0.0
    interval_s: float | None = None  # in force: the target, or the safety net when that is shorter
    safety_net_s: float | None = None

    def journal(self) -> dict:
        """status, target, seconds, the interval in force and the safety net."""
        return {
            **super().journal(),
            "seconds": self.seconds,
            "interval_s": self.interval_s,
            "safety_net_s": self.safety_net_s,
        }

    @property
    def paced_s(self) -> float | None:
        """The interval the pacer triggers at (None: at or above the safety net, which alone is in force)."""
        net = self.safety_net_s
        return None if net is not None and self.target_ci_s >= net else self.target_ci_s

    def leaves(self, job_s, paced_s):
        """The job keeps its own interval (the safety net); the pacer takes the target."""
        return (self.safety_net_s if self.safety_net_s is not None else job_s), self.paced_s

    def summary(self) -> str:
        """How the change was made, in words."""
        return f"paced every {self.interval_s:g} s over REST, no restart; safety net {self.safety_net_s:g} s"


@dataclass
class Restarted(Realization):
    """reconfigure.yml stopped the job with a savepoint and resubmitted it with the target interval."""

    job_id: str | None = None
    interval_s: float | None = None  # the new job's interval, as the deployment record has it
    savepoint: str | None = None
    down_s: float | None = None  # from the stop's savepoint to every task of the new job running

    def journal(self) -> dict:
        """status, target, seconds and what the deployment record says of the new job."""
        return {
            **super().journal(),
            "seconds": self.seconds,
            "job_id": self.job_id,
            "interval_s": self.interval_s,
            "savepoint": self.savepoint,
            "down_s": self.down_s,
        }

    def leaves(self, job_s, paced_s):
        """The new job's own interval; nothing paced."""
        return (self.interval_s if self.interval_s is not None else self.target_ci_s), None

    def summary(self) -> str:
        """How the change was made, in words."""
        return f"reconfigure.yml {self.seconds:.1f} s, savepoint {self.savepoint}"


@dataclass
class Failed(Realization):
    """The change could not be made (the job was left as it was, or rolled back)."""

    error: str = ""

    def journal(self) -> dict:
        """status, target, the error and how long the attempt took."""
        return {**super().journal(), "error": self.error, "seconds": self.seconds}


# ------------------------------------------------------------------------------------------ the step


@dataclass
class Prediction:
    """What the model predicts at one interval."""

    ci_s: float | None
    latency_ms: float
    recovery_s: float


@dataclass
class Plan:
    """The rate a step planned for and the prediction at the interval in force (absent on an early wait)."""

    capacity_used: float | None  # the job's measured capacity, when the model predicts with it
    forecast_rate: float
    plan_rate: float
    at_current: Prediction


@dataclass
class Choice:
    """The decision: ``change``, ``keep`` or ``wait``, the interval to run and why. The planner's figures
    (``best_ci_s`` ... ``daly_s``) are None on a wait decided before the planner ran."""

    action: str
    ci_s: float | None
    current_ci_s: float | None  # the interval in force when the step began
    alert: bool
    reason: str
    best_ci_s: float | None = None
    feasible: bool | None = None
    predicted_latency_ms: float | None = None
    predicted_recovery_s: float | None = None
    ratios: dict | None = None
    violation_s_per_h: dict | None = None  # expected violation s/h at the best and the current interval
    warnings: list[str] | None = None
    young_s: float | None = None
    daly_s: float | None = None

    @classmethod
    def of(cls, d, current_ci_s: float | None, alert: bool) -> Choice:
        """From the planner's :class:`~.planner.Decision`."""
        return cls(
            action=d.action,
            ci_s=d.ci_s,
            current_ci_s=current_ci_s,
            alert=alert or d.alert,
            reason=d.reason,
            best_ci_s=d.best_ci_s,
            feasible=d.feasible,
            predicted_latency_ms=d.predicted_latency_ms,
            predicted_recovery_s=d.predicted_recovery_s,
            ratios=d.ratios,
            # planner rules 3-5; None: an unbounded recovery
            violation_s_per_h={"best": d.best_violation_s_per_h, "current": d.current_violation_s_per_h},
            warnings=d.warnings,
            young_s=d.young_s,
            daly_s=d.daly_s,
        )

    def journal(self) -> dict:
        """The ``decision`` mapping of the journal line."""
        if self.feasible is None:
            return {
                "action": self.action,
                "ci_s": self.ci_s,
                "current_ci_s": self.current_ci_s,
                "alert": self.alert,
                "reason": self.reason,
            }
        return {
            "action": self.action,
            "ci_s": self.ci_s,
            "current_ci_s": self.current_ci_s,
            "best_ci_s": self.best_ci_s,
            "alert": self.alert,
            "feasible": self.feasible,
            "reason": self.reason,
            "predicted_latency_ms": self.predicted_latency_ms,
            "predicted_recovery_s": self.predicted_recovery_s,
            "ratios": self.ratios,
            "violation_s_per_h": self.violation_s_per_h,
            "warnings": self.warnings,
            "young_s": self.young_s,
            "daly_s": self.daly_s,
        }


@dataclass
class Step:
    """One step of the daemon (see the module docstring). ``ts`` is when it was decided (read back from a
    journal: when its line was written, which is the step's length later)."""

    job: str
    iteration: int
    advisor: bool
    observation: Observation
    limits: dict  # latency_ms, recovery_s
    last_change_ts: float | None  # the cooldown's start
    cooldown_s: float
    decision: Choice
    warning: str | None = None  # more than one job of the name runs
    safety_net_s: float | None = None  # the job's own interval under pacing (journaled only when pacing)
    pacing: bool = False
    plan: Plan | None = None
    explain: str | None = None  # the decision in sentences (the planner's explain)
    job_alerts: list[str] = field(default_factory=list)
    realization: Realization | None = None
    loop_seconds: float | None = None
    ts: float | None = None
    time: str | None = None

    def interval_after_s(self) -> float | None:
        """The interval in force once the step is realized (its start's when nothing changed)."""
        r = self.realization
        if r is None or not r.ok:
            return self.decision.current_ci_s
        return interval_in_force(*r.leaves(self.decision.current_ci_s, None))

    def journal(self) -> dict[str, Any]:
        """The step's ``decision`` journal line (the journal adds ``ts`` and ``time``)."""
        out: dict[str, Any] = {
            "event": "decision",
            "job": self.job,
            "iteration": self.iteration,
            "advisor": self.advisor,
            "inputs": self.observation.inputs(),
            "limits": self.limits,
            "last_change_ts": self.last_change_ts,
            "cooldown_s": self.cooldown_s,
        }
        if self.warning is not None:
            out["warning"] = self.warning
        if self.pacing:
            out["safety_net_s"] = self.safety_net_s
        if self.plan is not None:
            out["capacity_used"] = self.plan.capacity_used
            out["forecast_rate"], out["plan_rate"] = self.plan.forecast_rate, self.plan.plan_rate
            out["predicted_at_current"] = dataclasses.asdict(self.plan.at_current)
        out["decision"] = self.decision.journal()
        if self.explain is not None:
            out["explain"] = self.explain
        if self.job_alerts:
            out["job_alerts"] = list(self.job_alerts)
        if self.realization is not None:
            out["realize"] = self.realization.journal()
        out["loop_seconds"] = self.loop_seconds
        return out

    @classmethod
    def read(cls, line: dict) -> Step:
        """A journaled ``decision`` line back as a step."""
        plan = None
        if "plan_rate" in line:
            plan = Plan(
                capacity_used=line.get("capacity_used"),
                forecast_rate=line.get("forecast_rate"),
                plan_rate=line["plan_rate"],
                at_current=_read(Prediction, line.get("predicted_at_current")),
            )
        realize = line.get("realize")
        return cls(
            job=line.get("job"),
            iteration=line.get("iteration"),
            advisor=line.get("advisor"),
            observation=_read(Observation, line.get("inputs")),
            limits=line.get("limits"),
            last_change_ts=line.get("last_change_ts"),
            cooldown_s=line.get("cooldown_s"),
            decision=_read(Choice, line.get("decision")),
            warning=line.get("warning"),
            safety_net_s=line.get("safety_net_s"),
            pacing="safety_net_s" in line,
            plan=plan,
            explain=line.get("explain"),
            job_alerts=list(line.get("job_alerts") or []),
            realization=Realization.read(realize) if realize is not None else None,
            loop_seconds=line.get("loop_seconds"),
            ts=line.get("ts"),
            time=line.get("time"),
        )


def read(entries: Iterable[dict]) -> list[Step]:
    """The steps among a journal's entries (its ``decision`` lines), oldest first."""
    return [Step.read(e) for e in entries if e.get("event") == "decision"]


def changes(steps: Iterable[Step]) -> list[Step]:
    """The steps whose change was realized (in force), oldest first."""
    return [s for s in steps if s.realization is not None and s.realization.ok]


def paced_changes(steps: Iterable[Step]) -> list[tuple[float, float | None]]:
    """(time, paced interval after it) of every realized change: the changes :func:`timeline` takes."""
    out = []
    for s in changes(steps):
        _, paced = s.realization.leaves(None, None)
        out.append((s.ts, paced))
    return out
