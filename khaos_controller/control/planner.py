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

The rules' settings are a :class:`Policy` (the daemon config's limits, ci, mtbf_h and mode keys;
their defaults come from that schema, config.py); :func:`recommend` returns a :class:`Decision`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..errors import KhaosError
from ..jsonio import jsonable
from ..model.predict import extrapolation_warnings, predict
from ..model.store import REFERENCE_MODE, Model
from .config import CISection, DaemonFile
from .ranking import Candidate, candidate, held, least, risk, select, violation_s

ACTIONS = ("change", "keep", "wait")
PRIOR_CHANGE_COST_S = 5.0  # violation s a restart change is taken to cost before one was measured


def _default(section, name: str):
    return section.model_fields[name].default


@dataclass(frozen=True)
class Policy:
    """The limits and rules of a decision; defaults are the daemon config schema's."""

    l_max_ms: float
    r_max_s: float
    ci_min: float = _default(CISection, "min")
    ci_max: float = _default(CISection, "max")
    ci_step: float = _default(CISection, "step")
    dead_band_s: float = _default(CISection, "dead_band_s")
    cooldown_s: float = _default(CISection, "cooldown_s")
    mtbf_h: float = _default(DaemonFile, "mtbf_h")
    mode: str = _default(DaemonFile, "mode")
    slack_s_per_h: float = _default(CISection, "slack_s_per_h")
    hysteresis: float = _default(CISection, "hysteresis")
    change_cost_s: float | None = None  # violation s a restart change costs (None: free, no cost gate)
    horizon_s: float = 300.0  # how long a decision stands, s (the savings are counted over it)
    cv_recovery: float = 0.0  # the model's held-out relative error of recovery (0.1 = 10 %)
    cv_latency: float = 0.0  # ... and of latency

    @classmethod
    def of(
        cls, cfg, realize: str = "advisor", safety_net_s: float | None = None, change_cost_s: float | None = None
    ) -> Policy:
        """The policy of a daemon :class:`~.config.Config` for its realizer. ``pace``: the candidates stop at
        the safety net (the periodic checkpoints come at least that often) and a move costs nothing: no
        dead band, no cooldown. ``restart``: a move must save more violation seconds than
        ``change_cost_s`` (default: PRIOR_CHANGE_COST_S), counted beyond the model's CV error."""
        p = cls(
            l_max_ms=cfg.limits.latency_ms,
            r_max_s=cfg.limits.recovery_s,
            ci_min=cfg.ci.min,
            ci_max=cfg.ci.max,
            ci_step=cfg.ci.step,
            dead_band_s=cfg.ci.dead_band_s,
            cooldown_s=cfg.ci.cooldown_s,
            mtbf_h=cfg.file.mtbf_h,
            mode=cfg.mode,
            slack_s_per_h=cfg.ci.slack_s_per_h,
            hysteresis=cfg.ci.hysteresis,
        )
        if realize == "restart":
            return replace(
                p,
                change_cost_s=PRIOR_CHANGE_COST_S if change_cost_s is None else change_cost_s,
                horizon_s=max(cfg.loop.forecast_horizon_s or cfg.loop.period_s, cfg.ci.cooldown_s),
                cv_recovery=cfg.model.recovery_mape or 0.0,
                cv_latency=cfg.model.cv.latency.physics.mape or 0.0,
            )
        if realize == "pace":
            top = p.ci_max if safety_net_s is None else max(p.ci_min + p.ci_step, min(p.ci_max, safety_net_s))
            return replace(p, ci_max=top, dead_band_s=0.0, cooldown_s=0.0)
        return p


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


def candidate_intervals(ci_min: float, ci_max: float, step: float) -> np.ndarray:
    """ci_min, ci_min + step, ... and ci_max itself."""
    n = math.floor((ci_max - ci_min) / step + 1e-9)
    c = ci_min + step * np.arange(n + 1)
    if ci_max - c[-1] > 1e-9:
        c = np.append(c, ci_max)
    return np.round(c, 9)


def _validate(p: Policy, rate: float, current_ci: float) -> None:
    """One KhaosError line for the first bad input or setting."""
    l_max_ms, r_max_s, ci_min, ci_max, step = p.l_max_ms, p.r_max_s, p.ci_min, p.ci_max, p.ci_step
    missing = [n for n, v in (("--l-max", l_max_ms), ("--r-max", r_max_s)) if v is None]
    if missing:
        raise KhaosError(
            f"missing limit(s) {' and '.join(missing)}: both the latency (ms) and recovery (s) limits are needed"
        )
    checks = [
        (rate is None or not math.isfinite(rate) or rate <= 0, f"rate must be > 0 events/s, got {rate}"),
        (not math.isfinite(l_max_ms) or l_max_ms <= 0, f"latency limit must be > 0 ms, got {l_max_ms}"),
        (not math.isfinite(r_max_s) or r_max_s <= 0, f"recovery limit must be > 0 s, got {r_max_s}"),
        (not (math.isfinite(ci_min) and ci_min > 0), f"--ci-min must be > 0 s, got {ci_min}"),
        (
            not math.isfinite(ci_max) or ci_min >= ci_max,
            f"CI range is empty or inverted: --ci-min {ci_min:g} >= --ci-max {ci_max:g}",
        ),
        (not math.isfinite(step) or step <= 0, f"--step must be > 0 s, got {step}"),
        (
            current_ci is None or not math.isfinite(current_ci) or current_ci <= 0,
            f"current CI must be > 0 s, got {current_ci}",
        ),
        (p.dead_band_s < 0, f"--dead-band must be >= 0 s, got {p.dead_band_s}"),
        (not math.isfinite(p.mtbf_h) or p.mtbf_h <= 0, f"--mtbf-h must be > 0 h, got {p.mtbf_h}"),
        (p.cooldown_s < 0, f"cooldown must be >= 0 s, got {p.cooldown_s}"),
        (not p.slack_s_per_h >= 0, f"--slack-s-per-h must be >= 0 violation s per hour, got {p.slack_s_per_h:g}"),
        (not 0 <= p.hysteresis < 1, f"--hysteresis must be a fraction in [0, 1), got {p.hysteresis:g}"),
    ]
    for bad, msg in checks:
        if bad:
            raise KhaosError(msg)
    if (ci_max - ci_min) / step > 100_000:
        raise KhaosError(f"--step {step:g} s gives more than 100000 candidates in {ci_min:g}-{ci_max:g} s")


def _candidates(model: Model, rate: float, p: Policy, capacity: float | None) -> list[Candidate]:
    cis = candidate_intervals(p.ci_min, p.ci_max, p.ci_step)
    lat, rec = predict(model, rate, cis, p.mode, capacity=capacity)
    return [candidate(p, c, a, b) for c, a, b in zip(cis, lat, rec)]


def measured_capacity(model: Model) -> bool:
    """The model was fitted on measured capacities (grey-box): a prediction takes the job's own capacity."""
    return any(pair.physics.constants.capacity_measured for pair in (model.recovery, model.latency))


def _breaks(lr: float, rr: float) -> list[str]:
    return [name for name, r in (("latency", lr), ("recovery", rr)) if not r <= 1.0]


def _action(
    p: Policy, best: Candidate, cur: Candidate, last_change_ts: float | None, now: float, breach_overrides: bool
) -> tuple[str, str]:
    """(action, why) by the rules: already best, dead band, hysteresis, cooldown. A move that removes a
    predicted breach (the current breaks a limit, the best keeps both) passes the dead band and the
    hysteresis always, the cooldown when ``breach_overrides``."""
    fixes = not cur.feasible and best.feasible
    cooling = last_change_ts is not None and now - last_change_ts < p.cooldown_s
    gap = abs(best.ci_s - cur.ci_s)
    if gap < 1e-9:
        return "keep", f"the current {cur.ci_s:g} s interval is already the best candidate"
    if gap < p.dead_band_s and not fixes:
        return "keep", (
            f"the best interval {best.ci_s:g} s is within the {p.dead_band_s:g} s dead band "
            f"of the current {cur.ci_s:g} s"
        )
    reason = held(p, best, cur)
    if reason:
        return "keep", reason
    if cooling and (not fixes or not breach_overrides):
        return "wait", f"the last change was {now - last_change_ts:.0f} s ago, inside the {p.cooldown_s:g} s cooldown"
    reason = f"move from {cur.ci_s:g} s to {best.ci_s:g} s"
    broken = " and ".join(_breaks(cur.latency_ratio, cur.recovery_ratio))
    if gap < p.dead_band_s:
        reason += f" although within the {p.dead_band_s:g} s dead band: the current interval breaks the {broken} limit"
    elif cooling:
        reason += f" inside the {p.cooldown_s:g} s cooldown: the current interval breaks the {broken} limit"
    return "change", reason


def _cost_gate(p: Policy, best: Candidate, cur: Candidate, action: str, reason: str) -> tuple[str, str]:
    """A restart change (``change_cost_s`` set) stands only when it saves more violation seconds over the
    horizon than a restart costs."""
    if action != "change" or p.change_cost_s is None:
        return action, reason
    saved = violation_s(p, cur.latency_ms, cur.recovery_s, p.horizon_s) - violation_s(
        p, best.latency_ms, best.recovery_s, p.horizon_s
    )
    if saved > p.change_cost_s:
        return action, reason
    return "keep", (
        f"moving to {best.ci_s:g} s would save {saved:.1f} violation s over the next {p.horizon_s:g} s "
        f"(MTBF {p.mtbf_h:g} h, limits counted beyond the model's error), not more than a restart "
        f"costs ({p.change_cost_s:.1f} s)"
    )


def _per_h(c: Candidate) -> str:
    """Expected violation s/h in words."""
    if math.isfinite(c.violation_s_per_h):
        return f"{c.violation_s_per_h:.1f} violation s/h"
    return "unbounded (no recovery at this rate)"


def _reason(p: Policy, cands: list[Candidate], best: Candidate, cur: Candidate, action: str, why: str) -> str:
    """The decision's one line: where nothing is feasible, which limits the best breaks and its expected
    violation against the current's; then the action's clause ``why``."""
    if not best.feasible:
        broken = _limits(_breaks(best.latency_ratio, best.recovery_ratio))
        head = f"no interval in {p.ci_min:g}-{p.ci_max:g} s meets both limits"
        if not math.isfinite(best.recovery_s):
            return (
                f"{head} and none is predicted to recover at this rate (at or above capacity): {best.ci_s:g} s, "
                f"which breaks the {broken}, replays the least input after a failure ({best.ci_s:g} s against "
                f"{cur.ci_s:g} s at the current interval); {why}"
            )
        lowest = cands[least([risk(p, c) for c in cands], range(len(cands)))]
        where = f"{best.ci_s:g} s"
        if lowest is not best:
            where += (
                f" short of the longest {lowest.ci_s:g} s (lower, by no more than the "
                f"{100 * p.hysteresis:g} % hysteresis)"
            )
        return (
            f"{head}; the least expected violation is at {where}, which breaks the {broken}: {_per_h(best)} "
            f"against {_per_h(cur)} at the current {cur.ci_s:g} s; {why}"
        )
    if not cur.feasible and action != "change":
        broken = _limits(_breaks(cur.latency_ratio, cur.recovery_ratio))
        return f"{why}; the current interval is predicted to break the {broken}"
    return why


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
    the job's capacity on its cluster, events/s, estimated online (None: the model's profiled one)."""
    p = policy
    _validate(p, rate, current_ci)
    cands = _candidates(model, rate, p, capacity)
    i = select(p, cands)
    best = cands[i]
    cur = candidate(p, float(current_ci), *predict(model, rate, float(current_ci), p.mode, capacity=capacity))
    now = time.time() if now is None else now
    action, action_reason = _action(p, best, cur, last_change_ts, now, breach_overrides_cooldown)
    action, action_reason = _cost_gate(p, best, cur, action, action_reason)
    d = _decision(model, rate, p, cands, i, cur, action, capacity)
    d.reason, d.action_reason = _reason(p, cands, best, cur, action, action_reason), action_reason
    return d


def _decision(
    model: Model, rate: float, p: Policy, cands: list[Candidate], i: int, cur: Candidate, action: str, capacity
) -> Decision:
    """The :class:`Decision` of running ``cands[i]`` (on change) or ``cur`` (the reason is set by the caller)."""
    best = cands[i]
    run = best if action == "change" else cur
    feasible = [c for c in cands if c.feasible]
    longer = _breaks(cands[i + 1].latency_ratio, cands[i + 1].recovery_ratio) if i + 1 < len(cands) else []
    first = next((j for j, c in enumerate(cands) if c.feasible), 0)
    shorter = _breaks(cands[first - 1].latency_ratio, cands[first - 1].recovery_ratio) if first > 0 else []
    cost = model.checkpoint_duration_s.mean if model.checkpoint_duration_s else None
    young, daly = young_daly(cost, p.mtbf_h)
    warns = extrapolation_warnings(model, rate, capacity=capacity)
    lo, hi = model.ranges.ci_s
    if best.ci_s > hi * 1.5 or best.ci_s < lo / 1.5:
        warns.append(f"the chosen {best.ci_s:g} s is well outside the profiled {lo:g}-{hi:g} s intervals")
    return Decision(
        ci_s=run.ci_s,
        action=action,
        feasible=bool(feasible),
        alert=not run.feasible,
        reason="",
        predicted_latency_ms=run.latency_ms,
        predicted_recovery_s=run.recovery_s,
        ratios={"latency": run.latency_ratio, "recovery": run.recovery_ratio},
        young_s=young,
        daly_s=daly,
        candidates=cands,
        best_ci_s=best.ci_s,
        best_latency_ms=best.latency_ms,
        best_recovery_s=best.recovery_s,
        best_ratios={"latency": best.latency_ratio, "recovery": best.recovery_ratio},
        best_violation_s_per_h=best.violation_s_per_h,
        current_ci_s=cur.ci_s,
        current_violation_s_per_h=cur.violation_s_per_h,
        rate=float(rate),
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
        checkpoint_cost_s=cost,
        longer_breaks=longer,
        shorter_breaks=shorter,
        warnings=warns,
    )


# ------------------------------------------------------------------------------------------ words


def _s(x: float) -> str:
    if not math.isfinite(x):
        return "never"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}"


def _a(x: float) -> str:
    """'a 12 s' / 'an 8 s' / 'an 11 s' interval."""
    w = f"{x:g}"
    return ("an " if w.startswith("8") or w.split(".")[0] in ("11", "18") else "a ") + w


def _ms(x: float) -> str:
    return f"{x:.0f}" if math.isfinite(x) else "unbounded"


def _vph(x: float) -> str:
    return f"{x:.1f} violation s per hour" if math.isfinite(x) else "unbounded (it never recovers at this rate)"


def _limits(names: list[str]) -> str:
    return " and ".join(names) + (" limits" if len(names) > 1 else " limit")


def explain(rec: Decision) -> str:
    """Plain words: what is predicted at which interval, which limit binds, what to do, Young/Daly."""
    rec_txt = (
        f"recover in {_s(rec.best_recovery_s)} s"
        if math.isfinite(rec.best_recovery_s)
        else "never recover (the rate is at or above the estimated capacity)"
    )
    head = (
        f"At {rec.rate:.0f} events/s {_a(rec.best_ci_s)} s interval is predicted to {rec_txt} "
        f"(limit {rec.r_max_s:g} s) with p99 latency {_ms(rec.best_latency_ms)} ms (limit {rec.l_max_ms:g} ms)"
    )
    parts = []
    if rec.feasible:
        if rec.longer_breaks:
            head += f"; longer intervals would break the {_limits(rec.longer_breaks)}"
        elif rec.best_ci_s >= rec.ci_max - 1e-9:
            head += f"; it is the longest allowed interval (ci-max {rec.ci_max:g} s)"
        elif rec.longest_feasible_s > rec.best_ci_s + 1e-9:
            head += (
                f"; intervals up to {rec.longest_feasible_s:g} s also meet both limits but would recover longer, "
                f"more than {rec.slack_s_per_h:g} violation s per hour more at a {rec.mtbf_h:g} h MTBF"
            )
        if rec.shorter_breaks:
            first_ok = min(c.ci_s for c in rec.candidates if c.feasible)
            head += f"; intervals shorter than {first_ok:g} s would break the {_limits(rec.shorter_breaks)}"
        parts.append(head + ".")
    else:
        br = rec.best_ratios
        x = lambda v: f"{v:.2f}x" if math.isfinite(v) else "unbounded times"  # noqa: E731
        parts.append(
            f"ALERT: no interval in {rec.ci_min:g}-{rec.ci_max:g} s meets both limits. "
            + head
            + f" ({x(br['recovery'])} the recovery limit, {x(br['latency'])} the latency limit): "
            + (
                f"the least expected violation at a {rec.mtbf_h:g} h MTBF, {_vph(rec.best_violation_s_per_h)} "
                f"against {_vph(rec.current_violation_s_per_h)} at the current {rec.current_ci_s:g} s."
                if math.isfinite(rec.best_recovery_s)
                else "no interval recovers at this rate, and the shortest replays the least input after a failure."
            )
        )
    if rec.action == "change":
        parts.append(f"Change the interval from {rec.current_ci_s:g} s to {rec.ci_s:g} s.")
    else:
        verb = "Keep" if rec.action == "keep" else "Wait: keep"
        parts.append(
            f"{verb} {rec.ci_s:g} s ({rec.action_reason}); there it is predicted to recover in "
            f"{_s(rec.predicted_recovery_s)} s with p99 latency {_ms(rec.predicted_latency_ms)} ms."
        )
        if rec.alert and rec.feasible:
            parts.append(
                f"ALERT: {rec.ci_s:g} s is predicted to break the "
                f"{_limits(_breaks(rec.ratios['latency'], rec.ratios['recovery']))}."
            )
    if rec.young_s is not None:
        parts.append(
            f"Young/Daly suggest {rec.young_s:.0f}/{rec.daly_s:.0f} s for a {rec.mtbf_h:g} h MTBF "
            f"(checkpoint cost {rec.checkpoint_cost_s:.2f} s)."
        )
    else:
        parts.append("Young/Daly: no checkpoint duration in the model's data.")
    for w in rec.warnings:
        parts.append(f"Note: {w}.")
    return " ".join(parts)
