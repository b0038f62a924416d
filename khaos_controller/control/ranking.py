"""How the planner ranks candidate intervals: the expected violation seconds per hour of each
(:func:`violation_s`), the slack rule among feasible ones, the total order and the hysteresis where none
is feasible (docs/models.md, "Optimizer rules", 3-5)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .policy import Policy


@dataclass
class Candidate:
    """One candidate interval and what the model predicts for it."""

    ci_s: float
    latency_ms: float
    recovery_s: float
    latency_ratio: float
    recovery_ratio: float
    feasible: bool
    violation_s_per_h: float  # expected violation s/h (violation_s); inf when the recovery is unbounded
    capacity: float = math.nan  # events/s the job has at this interval (a checkpoint overhead model); NaN: n/a


def violation_s(p: Policy, latency_ms: float, recovery_s: float, seconds: float) -> float:
    """Expected violation seconds in ``seconds`` of running at one interval: the failures expected in
    them times (the recovery, when the output is late, + its excess over R_max), plus all of them when
    the p99 is over L_max. A limit counts as broken only beyond the model's error (cv_*)."""
    failures = seconds / (p.mtbf_h * 3600.0)
    rec = recovery_s if math.isfinite(recovery_s) else 1e9
    excess = max(0.0, rec - p.r_max_s * (1.0 + p.cv_recovery))
    late = seconds if not latency_ms <= p.l_max_ms * (1.0 + p.cv_latency) else 0.0
    return failures * (rec + excess) + late


def candidate(p: Policy, ci: float, latency_ms: float, recovery_s: float, capacity: float = math.nan) -> Candidate:
    """The interval ``ci`` with its predictions: ratios to the limits (recovery: its bound, the prediction x
    ``recovery_band``), feasibility, expected violation s/h (from the prediction itself: an expectation);
    ``capacity``: what the job has at this interval, where the model knows what checkpoints cost."""
    lr, rr = latency_ms / p.l_max_ms, recovery_s * p.recovery_band / p.r_max_s
    per_h = violation_s(p, latency_ms, recovery_s, 3600.0) if math.isfinite(recovery_s) else math.inf
    ok = bool(lr <= 1.0 and rr <= 1.0)  # NaN/inf ratios are never feasible
    return Candidate(
        float(ci), float(latency_ms), float(recovery_s), float(lr), float(rr), ok, float(per_h), float(capacity)
    )


def breaks(latency_ratio: float, recovery_ratio: float) -> list[str]:
    """The limits a candidate with these ratios to them breaks: "latency", "recovery" (NaN breaks)."""
    return [name for name, r in (("latency", latency_ratio), ("recovery", recovery_ratio)) if not r <= 1.0]


class Risk(NamedTuple):
    """Where a candidate stands when none is feasible (:func:`risk`)."""

    unbounded: bool  # the recovery is predicted never to end (rate at or above capacity)
    s_per_h: float  # expected violation s/h (inf when unbounded)
    late_s_per_h: float  # ... of them from a p99 over L_max (3600 or 0)
    ci_s: float
    capacity: float = math.nan  # events/s at this interval (NaN: the model does not say)


def risk(p: Policy, c: Candidate) -> Risk:
    """The expected violation s/h of ``c`` (:func:`violation_s`), unbounded when its recovery is."""
    late = violation_s(p, c.latency_ms, 0.0, 3600.0)  # with no recovery: the latency term alone
    return Risk(not math.isfinite(c.recovery_s), c.violation_s_per_h, late, c.ci_s, c.capacity)


def lower(a: Risk, b: Risk) -> bool:
    """``a`` comes strictly before ``b``: a bounded recovery first; among bounded ones fewer expected
    violation s/h (beyond 1e-9), then the shorter interval; among unbounded ones (at or above capacity
    every candidate's recovery is) the one that leaves the job more capacity (where checkpoints cost
    some: the backlog grows by rate - capacity every second, for as long as the rate stays there), then
    the shorter interval: a failure replays less input, and every replayed second leaves the output a
    second further behind (the limit of the bounded order as the rate nears capacity, where the recovery
    term outgrows the latency term)."""
    if a.unbounded != b.unbounded:
        return b.unbounded
    if not a.unbounded and abs(a.s_per_h - b.s_per_h) > 1e-9 * max(1.0, a.s_per_h, b.s_per_h):
        return a.s_per_h < b.s_per_h
    if a.unbounded and abs(a.capacity - b.capacity) > 1e-9 * max(1.0, abs(a.capacity), abs(b.capacity)):
        return a.capacity > b.capacity  # False for NaN: no overhead model, the interval decides
    return a.ci_s < b.ci_s


def least(risks: list[Risk], idx) -> int:
    """The index in ``idx`` of the least risk in the order of :func:`lower`."""
    out = None
    for j in idx:
        if out is None or lower(risks[j], risks[out]):
            out = j
    return out


def beats(a: Risk, b: Risk, h: float) -> bool:
    """``a`` is lower than ``b`` by more than the hysteresis ``h``: with both recoveries bounded, when it
    cuts the expected violation s/h ``b`` has beyond what both have (a p99 over L_max in both) by more
    than the fraction ``h``; otherwise by the order alone (a bounded recovery beats an unbounded one;
    the order of unbounded ones does not move with the rate)."""
    if a.unbounded or b.unbounded:
        return lower(a, b)
    return b.s_per_h - a.s_per_h > h * (b.s_per_h - min(a.late_s_per_h, b.late_s_per_h))


def _pick_feasible(p: Policy, cands: list[Candidate], feasible: list[int]) -> int:
    """The longest of the ``feasible`` candidates (indices) within ``slack_s_per_h`` expected violation
    s/h of the least."""
    least = min(cands[j].violation_s_per_h for j in feasible)
    return max(j for j in feasible if cands[j].violation_s_per_h <= least + p.slack_s_per_h + 1e-9)


def _pick_infeasible(p: Policy, cands: list[Candidate]) -> int:
    """The least :func:`risk`; the longest candidate (in pace mode the safety net) only when it beats
    the least of the others by more than the hysteresis."""
    risks = [risk(p, c) for c in cands]
    i = least(risks, range(len(cands)))
    if i == len(cands) - 1 and i > 0:
        other = least(risks, range(i))
        if not beats(risks[i], risks[other], p.hysteresis):
            i = other
    return i


def select(p: Policy, cands: list[Candidate]) -> int:
    """The index of the rules' choice: the slack rule when some candidates are feasible, else the least risk."""
    feasible = [j for j, c in enumerate(cands) if c.feasible]
    return _pick_feasible(p, cands, feasible) if feasible else _pick_infeasible(p, cands)


def held(p: Policy, best: Candidate, cur: Candidate) -> str:
    """Hysteresis, where no candidate is feasible: why the current interval stays, or "" when the best
    beats it by more than ``hysteresis`` (:func:`beats`) or the current lies outside ci_min..ci_max. A
    feasible best is never held back: the slack rule, the dead band and the cooldown decide."""
    if best.feasible or not p.ci_min - 1e-9 <= cur.ci_s <= p.ci_max + 1e-9:
        return ""
    rb, rc = risk(p, best), risk(p, cur)
    if beats(rb, rc, p.hysteresis):
        return ""
    if rb.unbounded != rc.unbounded:
        return (
            f"the current {cur.ci_s:g} s is predicted to recover at this rate, the best candidate {best.ci_s:g} s not"
        )
    if rb.unbounded:
        return f"no interval recovers at this rate, and the current {cur.ci_s:g} s replays no more than {best.ci_s:g} s"
    shared = min(rb.late_s_per_h, rc.late_s_per_h)  # a p99 breach both have is left out
    cut = max(0.0, rc.s_per_h - rb.s_per_h) / max(rc.s_per_h - shared, 1e-12)
    beyond = " beyond the p99 breach both have" if shared else ""
    return (
        f"moving to {best.ci_s:g} s would cut the expected violation{beyond} by {100 * cut:.0f} %, "
        f"not more than the {100 * p.hysteresis:g} % hysteresis"
    )
