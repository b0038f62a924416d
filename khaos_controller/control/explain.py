"""A planner's decision in English: its one-line reason (:func:`reason`) and the sentences the daemon
logs and ``khaos recommend`` prints (:func:`explain`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .ranking import Candidate, breaks, least, risk

if TYPE_CHECKING:
    from .planner import Decision
    from .policy import Policy


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


def _per_h(c: Candidate) -> str:
    """Expected violation s/h in words."""
    if math.isfinite(c.violation_s_per_h):
        return f"{c.violation_s_per_h:.1f} violation s/h"
    return "unbounded (no recovery at this rate)"


def _limits(names: list[str]) -> str:
    """'latency limit', 'latency and recovery limits'."""
    return " and ".join(names) + (" limits" if len(names) > 1 else " limit")


def reason(p: Policy, cands: list[Candidate], best: Candidate, cur: Candidate, action: str, why: str) -> str:
    """The decision's one line: where nothing is feasible, which limits the best breaks and its expected
    violation against the current's; then the action's clause ``why``."""
    if not best.feasible:
        return _infeasible_reason(p, cands, best, cur, why)
    if not cur.feasible and action != "change":
        broken = _limits(breaks(cur.latency_ratio, cur.recovery_ratio))
        return f"{why}; the current interval is predicted to break the {broken}"
    return why


def _infeasible_reason(p: Policy, cands: list[Candidate], best: Candidate, cur: Candidate, why: str) -> str:
    """:func:`reason` where no candidate meets both limits."""
    broken = _limits(breaks(best.latency_ratio, best.recovery_ratio))
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
            f" short of the longest {lowest.ci_s:g} s (lower, by no more than the {100 * p.hysteresis:g} % hysteresis)"
        )
    return (
        f"{head}; the least expected violation is at {where}, which breaks the {broken}: {_per_h(best)} "
        f"against {_per_h(cur)} at the current {cur.ci_s:g} s; {why}"
    )


def explain(rec: Decision) -> str:
    """Plain words: what is predicted at which interval, which limit binds, what to do, Young/Daly."""
    first = _feasible(rec) if rec.feasible else _infeasible(rec)
    parts = [first, *_action(rec), _young_daly(rec)]
    return " ".join(parts + [f"Note: {w}." for w in rec.warnings])


def _prediction(rec: Decision) -> str:
    """What the best interval is predicted to do at the rate, against both limits."""
    rec_txt = (
        f"recover in {_s(rec.best_recovery_s)} s"
        if math.isfinite(rec.best_recovery_s)
        else "never recover (the rate is at or above the estimated capacity)"
    )
    return (
        f"At {rec.rate:.0f} events/s {_a(rec.best_ci_s)} s interval is predicted to {rec_txt} "
        f"(limit {rec.r_max_s:g} s) with p99 latency {_ms(rec.best_latency_ms)} ms (limit {rec.l_max_ms:g} ms)"
    )


def _feasible(rec: Decision) -> str:
    """The prediction and what binds the choice: a longer interval's limit, ci-max or the slack; and a
    shorter interval's limit."""
    head = _prediction(rec)
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
    return head + "."


def _times(v: float) -> str:
    return f"{v:.2f}x" if math.isfinite(v) else "unbounded times"


def _infeasible(rec: Decision) -> str:
    """The alert: no interval meets both limits; the prediction, how far over each limit, the least
    expected violation."""
    br = rec.best_ratios
    tail = (
        f"the least expected violation at a {rec.mtbf_h:g} h MTBF, {_vph(rec.best_violation_s_per_h)} "
        f"against {_vph(rec.current_violation_s_per_h)} at the current {rec.current_ci_s:g} s."
        if math.isfinite(rec.best_recovery_s)
        else "no interval recovers at this rate, and the shortest replays the least input after a failure."
    )
    return (
        f"ALERT: no interval in {rec.ci_min:g}-{rec.ci_max:g} s meets both limits. "
        + _prediction(rec)
        + f" ({_times(br['recovery'])} the recovery limit, {_times(br['latency'])} the latency limit): "
        + tail
    )


def _action(rec: Decision) -> list[str]:
    """What to do: change, or keep / wait with why and what the interval kept is predicted to do."""
    if rec.action == "change":
        return [f"Change the interval from {rec.current_ci_s:g} s to {rec.ci_s:g} s."]
    verb = "Keep" if rec.action == "keep" else "Wait: keep"
    parts = [
        f"{verb} {rec.ci_s:g} s ({rec.action_reason}); there it is predicted to recover in "
        f"{_s(rec.predicted_recovery_s)} s with p99 latency {_ms(rec.predicted_latency_ms)} ms."
    ]
    if rec.alert and rec.feasible:
        broken = _limits(breaks(rec.ratios["latency"], rec.ratios["recovery"]))
        parts.append(f"ALERT: {rec.ci_s:g} s is predicted to break the {broken}.")
    return parts


def _young_daly(rec: Decision) -> str:
    if rec.young_s is None:
        return "Young/Daly: no checkpoint duration in the model's data."
    return (
        f"Young/Daly suggest {rec.young_s:.0f}/{rec.daly_s:.0f} s for a {rec.mtbf_h:g} h MTBF "
        f"(checkpoint cost {rec.checkpoint_cost_s:.2f} s)."
    )
