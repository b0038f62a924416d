"""Plan: the checkpoint interval (CI) that keeps predicted latency <= L_max and recovery <= R_max.

Rules (docs/models.md, "Optimizer"):

* Candidates: ``ci_min, ci_min + step, ...`` up to ``ci_max`` (``ci_max`` itself is always included).
  Each gets a predicted p99 latency and recovery time from :func:`khaos_controller.model.predict.predict`.
* Feasible: ``latency / L_max <= 1`` and ``recovery / R_max <= 1``. Among feasible candidates the
  LONGEST interval wins (least checkpoint overhead) whose expected violation seconds per hour exceed
  the feasible minimum by at most ``slack_s_per_h``: failures per hour (from the MTBF) x the predicted
  recovery, since the output is late while a job recovers. Frequent failures thus favour short
  intervals, rare ones the least overhead. Candidates are distinct, so there is no tie.
* None feasible: the least expected violation s/h wins, the same quantity with every term (failures
  per hour x (recovery + its excess over R_max), + 3600 when the p99 is over L_max), with ``alert=True``
  and a reason naming the limits it breaks and its expected violation against the current interval's.
  The order is total: a bounded recovery first; then fewer violation s/h; then, and at or above
  capacity, the shorter interval (less to replay). The longest candidate (in pace mode the safety net)
  only when it beats every other by the hysteresis. Hysteresis: the current interval stays unless the
  best cuts its expected violation by more than the fraction ``hysteresis`` (a p99 breach both have left
  out) or is ahead by a bounded recovery or a shorter replay; never against a move to a feasible
  candidate, nor for a current outside ci_min..ci_max; it needs no dead band or cooldown (pace).
  :mod:`.ranking` has these rules.
* Dead band: ``|best - current| < dead_band`` -> action ``keep``, unless the current interval is
  predicted to break a limit while ``best`` keeps both (then the move is made: a dead band must not
  keep a known violation).
* Cooldown: a change within ``cooldown_s`` of ``last_change_ts`` -> action ``wait``, unless the
  current interval is predicted to break a limit while ``best`` keeps both and
  ``breach_overrides_cooldown`` (the daemon passes False after a failed attempt, so a failing
  reconfiguration is still retried only once per cooldown).
* Cost (restart changes only: ``change_cost_s`` set): a change survives the rules above only when the
  violation seconds it is expected to save over ``horizon_s`` exceed what a restart costs. Expected
  violation seconds at an interval = (horizon / MTBF) x (recovery + its excess over R_max) + horizon if
  the p99 is predicted over L_max; a limit counts as broken only beyond the model's own held-out error
  (``cv_recovery``, ``cv_latency``). Otherwise ``keep``. Paced changes cost nothing: no gate.
* ``alert`` is True whenever the interval that will run (``ci_s``) is predicted to break a limit.
* Young (1974) ``sqrt(2 C M)`` and Daly (2006) ``sqrt(2 C M) - C`` are reported beside the choice,
  with ``C`` = the profiled mean checkpoint duration and ``M`` = the MTBF setting.

The rules' settings are a :class:`~.policy.Policy` (the daemon config's limits, ci, mtbf_h and mode
keys; their defaults and bounds are that schema's, config.py). :func:`recommend` asks the model
(:mod:`.policy`) and applies the rules (:func:`decide`: no model, no clock) into a :class:`Decision`;
:mod:`.explain` words it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from ..jsonio import jsonable
from ..model.store import REFERENCE_MODE, Model
from ..schema import finite
from .explain import reason
from .policy import Policy, candidate_at, candidates, checkpoint_cost, notes
from .ranking import Candidate, breaks, held, select, violation_s

ACTIONS = ("change", "keep", "wait")


@dataclass
class Decision:
    """What to run next and why. ``predicted_*``/``ratios``/``alert`` describe ``ci_s`` (the interval
    that will run); ``best_*`` describe the optimum, which differs from ``ci_s`` on keep/wait."""

    ci_s: float  # interval to run after this decision
    action: str  # change | keep | wait
    feasible: bool  # some candidate meets both limits
    alert: bool  # ci_s is predicted to break a limit
    reason: str  # one line: why this action (and any alert)
    predicted_latency_ms: float  # at ci_s
    predicted_recovery_s: float  # at ci_s
    ratios: dict  # {"latency": lat/L_max, "recovery": rec/R_max} at ci_s
    young_s: float | None
    daly_s: float | None
    candidates: list[Candidate]
    best_ci_s: float = math.nan
    best_latency_ms: float = math.nan
    best_recovery_s: float = math.nan
    best_ratios: dict = field(default_factory=dict)
    best_violation_s_per_h: float = math.nan  # expected violation s/h at best_ci_s (inf: unbounded recovery)
    current_ci_s: float = math.nan
    current_violation_s_per_h: float = math.nan  # ... and at the current interval
    rate: float = math.nan
    mode: str = REFERENCE_MODE
    l_max_ms: float = math.nan
    r_max_s: float = math.nan
    ci_min: float = math.nan
    ci_max: float = math.nan
    dead_band_s: float = 0.0
    mtbf_h: float = math.nan
    slack_s_per_h: float = math.nan
    hysteresis: float = math.nan
    longest_feasible_s: float = math.nan  # longer than best_ci_s when the slack bound the choice
    checkpoint_cost_s: float | None = None
    longer_breaks: list[str] = field(default_factory=list)  # limits the next longer candidate breaks
    shorter_breaks: list[str] = field(default_factory=list)  # limits the candidates below the feasible range break
    warnings: list[str] = field(default_factory=list)
    action_reason: str = ""  # the clause about the action alone (dead band, cooldown, move)

    def to_dict(self) -> dict:
        """JSON-safe form (NaN/inf as null)."""
        return jsonable(asdict(self))


def young_daly(checkpoint_s: float | None, mtbf_h: float) -> tuple[float | None, float | None]:
    """Young ``sqrt(2 C M)`` and Daly first-order ``sqrt(2 C M) - C`` in seconds (None without a cost)."""
    if checkpoint_s is None or not math.isfinite(checkpoint_s) or checkpoint_s <= 0:
        return None, None
    m = mtbf_h * 3600.0
    y = math.sqrt(2.0 * checkpoint_s * m)
    return y, max(y - checkpoint_s, 0.0)


class Cooldown(NamedTuple):
    """When the last change was (None: never), the time now, and whether a predicted breach that the
    best interval removes may cut the cooldown short."""

    last_change_ts: float | None
    now: float
    breach_overrides: bool

    def cooling(self, p: Policy) -> bool:
        """The last change is less than ``cooldown_s`` ago."""
        return self.last_change_ts is not None and self.now - self.last_change_ts < p.cooldown_s


def recommend(
    model: Model,
    rate: float,
    current_ci: float,
    policy: Policy,
    last_change_ts: float | None = None,
    now: float | None = None,
    breach_overrides_cooldown: bool = True,
    capacity: float | None = None,
) -> Decision:
    """Pick the interval to run at ``rate`` events/s (see the module docstring for the rules); ``capacity``:
    the job's capacity on its cluster, events/s, estimated online at ``current_ci`` (None: the model's
    profiled one; with a checkpoint overhead model each candidate gets the capacity at its interval)."""
    p = policy
    finite(rate, "rate", 0)
    finite(current_ci, "current CI", 0)
    cands = candidates(model, rate, p, capacity, current_ci)
    cur = candidate_at(model, rate, current_ci, p, capacity, current_ci)
    cooldown = Cooldown(last_change_ts, time.time() if now is None else now, breach_overrides_cooldown)
    d = decide(p, cands, cur, cooldown)
    d.rate, d.checkpoint_cost_s = float(rate), checkpoint_cost(model)
    d.young_s, d.daly_s = young_daly(d.checkpoint_cost_s, p.mtbf_h)
    d.warnings = notes(model, rate, d.best_ci_s, capacity)
    return d


def decide(p: Policy, cands: list[Candidate], cur: Candidate, cooldown: Cooldown) -> Decision:
    """The rules on predicted candidates: the selection, the action (dead band, hysteresis, cooldown), the
    cost gate; ``cur``: the current interval. The model's figures (rate, checkpoint cost, Young/Daly,
    warnings) are left for the caller."""
    i = select(p, cands)
    best = cands[i]
    action, why = _action(p, best, cur, cooldown)
    action, why = _cost_gate(p, best, cur, action, why)
    d = _decision(p, cands, i, cur, action)
    d.reason, d.action_reason = reason(p, cands, best, cur, action, why), why
    return d


def _action(p: Policy, best: Candidate, cur: Candidate, cooldown: Cooldown) -> tuple[str, str]:
    """(action, why) by the rules: already best, dead band, hysteresis, cooldown. A move that removes a
    predicted breach (the current breaks a limit, the best keeps both) passes the dead band and the
    hysteresis always, the cooldown when ``cooldown.breach_overrides``."""
    fixes = not cur.feasible and best.feasible
    cooling = cooldown.cooling(p)
    gap = abs(best.ci_s - cur.ci_s)
    if gap < 1e-9:
        return "keep", f"the current {cur.ci_s:g} s interval is already the best candidate"
    if gap < p.dead_band_s and not fixes:
        return "keep", (
            f"the best interval {best.ci_s:g} s is within the {p.dead_band_s:g} s dead band "
            f"of the current {cur.ci_s:g} s"
        )
    why = held(p, best, cur)
    if why:
        return "keep", why
    if cooling and (not fixes or not cooldown.breach_overrides):
        ago = cooldown.now - cooldown.last_change_ts
        return "wait", f"the last change was {ago:.0f} s ago, inside the {p.cooldown_s:g} s cooldown"
    why = f"move from {cur.ci_s:g} s to {best.ci_s:g} s"
    broken = " and ".join(breaks(cur.latency_ratio, cur.recovery_ratio))
    if gap < p.dead_band_s:
        why += f" although within the {p.dead_band_s:g} s dead band: the current interval breaks the {broken} limit"
    elif cooling:
        why += f" inside the {p.cooldown_s:g} s cooldown: the current interval breaks the {broken} limit"
    return "change", why


def _cost_gate(p: Policy, best: Candidate, cur: Candidate, action: str, why: str) -> tuple[str, str]:
    """A restart change (``change_cost_s`` set) stands only when it saves more violation seconds over the
    horizon than a restart costs."""
    if action != "change" or p.change_cost_s is None:
        return action, why
    saved = violation_s(p, cur.latency_ms, cur.recovery_s, p.horizon_s) - violation_s(
        p, best.latency_ms, best.recovery_s, p.horizon_s
    )
    if saved > p.change_cost_s:
        return action, why
    return "keep", (
        f"moving to {best.ci_s:g} s would save {saved:.1f} violation s over the next {p.horizon_s:g} s "
        f"(MTBF {p.mtbf_h:g} h, limits counted beyond the model's error), not more than a restart "
        f"costs ({p.change_cost_s:.1f} s)"
    )


def _neighbours(cands: list[Candidate], i: int) -> tuple[list[str], list[str]]:
    """The limits the candidate after ``cands[i]`` breaks, and those the one before the first feasible
    candidate breaks."""
    longer = breaks(cands[i + 1].latency_ratio, cands[i + 1].recovery_ratio) if i + 1 < len(cands) else []
    first = next((j for j, c in enumerate(cands) if c.feasible), 0)
    shorter = breaks(cands[first - 1].latency_ratio, cands[first - 1].recovery_ratio) if first > 0 else []
    return longer, shorter


def _decision(p: Policy, cands: list[Candidate], i: int, cur: Candidate, action: str) -> Decision:
    """The :class:`Decision` of running ``cands[i]`` (on change) or ``cur`` (the reason and the model's
    figures are set by the callers)."""
    best = cands[i]
    run = best if action == "change" else cur
    feasible = [c for c in cands if c.feasible]
    longer, shorter = _neighbours(cands, i)
    return Decision(
        ci_s=run.ci_s,
        action=action,
        feasible=bool(feasible),
        alert=not run.feasible,
        reason="",
        predicted_latency_ms=run.latency_ms,
        predicted_recovery_s=run.recovery_s,
        ratios={"latency": run.latency_ratio, "recovery": run.recovery_ratio},
        young_s=None,
        daly_s=None,
        candidates=cands,
        best_ci_s=best.ci_s,
        best_latency_ms=best.latency_ms,
        best_recovery_s=best.recovery_s,
        best_ratios={"latency": best.latency_ratio, "recovery": best.recovery_ratio},
        best_violation_s_per_h=best.violation_s_per_h,
        current_ci_s=cur.ci_s,
        current_violation_s_per_h=cur.violation_s_per_h,
        mode=p.mode,
        l_max_ms=float(p.l_max_ms),
        r_max_s=float(p.r_max_s),
        ci_min=float(p.ci_min),
        ci_max=float(p.ci_max),
        dead_band_s=float(p.dead_band_s),
        mtbf_h=float(p.mtbf_h),
        slack_s_per_h=float(p.slack_s_per_h),
        hysteresis=float(p.hysteresis),
        longest_feasible_s=feasible[-1].ci_s if feasible else math.nan,
        longer_breaks=longer,
        shorter_breaks=shorter,
    )
