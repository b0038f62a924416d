"""Plan: the checkpoint interval (CI) that keeps predicted latency <= L_max and recovery <= R_max.

Rules (docs/models.md, "Optimizer"):

* Candidates: ``ci_min, ci_min + step, ...`` up to ``ci_max`` (``ci_max`` itself is always included).
  Each gets a predicted p99 latency and recovery time from :func:`khaos_controller.model.predict.predict`.
* Feasible: ``latency / L_max <= 1`` and ``recovery / R_max <= 1``. Among feasible candidates the
  LONGEST interval wins (least checkpoint overhead) whose expected violation seconds per hour exceed
  the feasible minimum by at most ``slack_s_per_h``: failures per hour (from the MTBF) x the predicted
  recovery, since the output is late while a job recovers. Frequent failures thus favour short
  intervals, rare ones the least overhead. Candidates are distinct, so there is no tie.
* None feasible: the candidate with the smallest ``max(latency / L_max, recovery / R_max)`` wins
  (ties within 1e-9 -> the longer interval) and the recommendation carries ``alert=True`` and a reason.
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

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..errors import KhaosError
from ..jsonio import jsonable
from ..model.predict import extrapolation_warnings, predict
from ..model.store import REFERENCE_MODE, Model
from .config import CISection, DaemonFile

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
class Candidate:
    """One candidate interval and what the model predicts for it."""

    ci_s: float
    latency_ms: float
    recovery_s: float
    latency_ratio: float
    recovery_ratio: float
    feasible: bool


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
    current_ci_s: float = math.nan
    rate: float = math.nan
    mode: str = REFERENCE_MODE
    l_max_ms: float = math.nan
    r_max_s: float = math.nan
    ci_min: float = math.nan
    ci_max: float = math.nan
    dead_band_s: float = 0.0
    mtbf_h: float = math.nan
    slack_s_per_h: float = math.nan
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


def _validate(rate, current_ci, l_max_ms, r_max_s, ci_min, ci_max, step, dead_band, mtbf_h, cooldown_s):
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
        (dead_band < 0, f"--dead-band must be >= 0 s, got {dead_band}"),
        (not math.isfinite(mtbf_h) or mtbf_h <= 0, f"--mtbf-h must be > 0 h, got {mtbf_h}"),
        (cooldown_s < 0, f"cooldown must be >= 0 s, got {cooldown_s}"),
    ]
    for bad, msg in checks:
        if bad:
            raise KhaosError(msg)
    if (ci_max - ci_min) / step > 100_000:
        raise KhaosError(f"--step {step:g} s gives more than 100000 candidates in {ci_min:g}-{ci_max:g} s")


def violation_s(p: Policy, latency_ms: float, recovery_s: float, seconds: float) -> float:
    """Expected violation seconds in ``seconds`` of running at one interval: the failures expected in
    them times (the recovery, when the output is late, + its excess over R_max), plus all of them when
    the p99 is over L_max. A limit counts as broken only beyond the model's error (cv_*)."""
    failures = seconds / (p.mtbf_h * 3600.0)
    rec = recovery_s if math.isfinite(recovery_s) else 1e9
    excess = max(0.0, rec - p.r_max_s * (1.0 + p.cv_recovery))
    late = seconds if not latency_ms <= p.l_max_ms * (1.0 + p.cv_latency) else 0.0
    return failures * (rec + excess) + late


def _pick_feasible(p: Policy, cands: list[Candidate], feasible: np.ndarray) -> int:
    """The longest of the ``feasible`` candidates (indices) within ``slack_s_per_h`` expected violation
    s/h of the least."""
    per_h = np.array([violation_s(p, cands[j].latency_ms, cands[j].recovery_s, 3600.0) for j in feasible])
    return int(feasible[per_h <= per_h.min() + p.slack_s_per_h + 1e-9][-1])


def measured_capacity(model: Model) -> bool:
    """The model was fitted on measured capacities (grey-box): a prediction takes the job's own capacity."""
    return any(pair.physics.constants.capacity_measured for pair in (model.recovery, model.latency))


def _breaks(lr: float, rr: float) -> list[str]:
    return [name for name, r in (("latency", lr), ("recovery", rr)) if not r <= 1.0]


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
    l_max_ms, r_max_s, ci_min, ci_max, step = p.l_max_ms, p.r_max_s, p.ci_min, p.ci_max, p.ci_step
    dead_band, mtbf_h, mode, cooldown_s = p.dead_band_s, p.mtbf_h, p.mode, p.cooldown_s
    _validate(rate, current_ci, l_max_ms, r_max_s, ci_min, ci_max, step, dead_band, mtbf_h, cooldown_s)
    if not p.slack_s_per_h >= 0:
        raise KhaosError(f"--slack-s-per-h must be >= 0 violation s per hour, got {p.slack_s_per_h:g}")
    cis = candidate_intervals(ci_min, ci_max, step)
    lat, rec = predict(model, rate, cis, mode, capacity=capacity)
    lr, rr = lat / l_max_ms, rec / r_max_s
    ok = (lr <= 1.0) & (rr <= 1.0)  # NaN/inf ratios are never feasible
    cands = [
        Candidate(float(c), float(a), float(b), float(x), float(y), bool(f))
        for c, a, b, x, y, f in zip(cis, lat, rec, lr, rr, ok)
    ]
    feasible = np.flatnonzero(ok)
    worst = np.where(np.isnan(lr) | np.isnan(rr), np.inf, np.maximum(lr, rr))  # inf stays inf
    if feasible.size:
        i = _pick_feasible(p, cands, feasible)
    else:
        m = worst.min()
        tie = np.flatnonzero(worst <= m + 1e-9 * max(1.0, abs(m))) if math.isfinite(m) else np.arange(len(cis))
        i = int(tie[-1])  # ties -> the longer interval (less overhead)
    best = cands[i]
    longer = _breaks(cands[i + 1].latency_ratio, cands[i + 1].recovery_ratio) if i + 1 < len(cands) else []
    shorter: list[str] = []
    if feasible.size:
        first = int(feasible[0])
        if first > 0:
            shorter = _breaks(cands[first - 1].latency_ratio, cands[first - 1].recovery_ratio)

    cur_lat, cur_rec = predict(model, rate, float(current_ci), mode, capacity=capacity)
    cur_lr, cur_rr = cur_lat / l_max_ms, cur_rec / r_max_s
    cur_ok = cur_lr <= 1.0 and cur_rr <= 1.0
    now = time.time() if now is None else now
    cooling = last_change_ts is not None and now - last_change_ts < cooldown_s

    if abs(best.ci_s - current_ci) < 1e-9:
        action, reason = "keep", f"the current {current_ci:g} s interval is already the best candidate"
    elif abs(best.ci_s - current_ci) < dead_band and (cur_ok or not best.feasible):
        action, reason = (
            "keep",
            (
                f"the best interval {best.ci_s:g} s is within the {dead_band:g} s dead band "
                f"of the current {current_ci:g} s"
            ),
        )
    elif cooling and (cur_ok or not best.feasible or not breach_overrides_cooldown):
        action, reason = (
            "wait",
            (f"the last change was {now - last_change_ts:.0f} s ago, inside the {cooldown_s:g} s cooldown"),
        )
    else:
        action, reason = "change", f"move from {current_ci:g} s to {best.ci_s:g} s"
        if abs(best.ci_s - current_ci) < dead_band:
            reason += (
                f" although within the {dead_band:g} s dead band: the current interval breaks the "
                f"{' and '.join(_breaks(cur_lr, cur_rr))} limit"
            )
        elif cooling:
            reason += (
                f" inside the {cooldown_s:g} s cooldown: the current interval breaks the "
                f"{' and '.join(_breaks(cur_lr, cur_rr))} limit"
            )
    if action == "change" and p.change_cost_s is not None:
        saved = violation_s(p, cur_lat, cur_rec, p.horizon_s) - violation_s(
            p, best.latency_ms, best.recovery_s, p.horizon_s
        )
        if saved <= p.change_cost_s:
            action, reason = (
                "keep",
                f"moving to {best.ci_s:g} s would save {saved:.1f} violation s over the next {p.horizon_s:g} s "
                f"(MTBF {mtbf_h:g} h, limits counted beyond the model's error), not more than a restart "
                f"costs ({p.change_cost_s:.1f} s)",
            )
    action_reason = reason
    if not best.feasible:
        reason = (
            f"no interval in {ci_min:g}-{ci_max:g} s meets both limits; {best.ci_s:g} s minimises the worse ratio; "
            + reason
        )
    elif not cur_ok and action != "change":
        reason += f"; the current interval is predicted to break the {' and '.join(_breaks(cur_lr, cur_rr))} limit"

    if action == "change":
        run_ci, run_lat, run_rec, run_lr, run_rr = (
            best.ci_s,
            best.latency_ms,
            best.recovery_s,
            best.latency_ratio,
            best.recovery_ratio,
        )
    else:
        run_ci, run_lat, run_rec, run_lr, run_rr = float(current_ci), cur_lat, cur_rec, cur_lr, cur_rr
    run_ok = run_lr <= 1.0 and run_rr <= 1.0

    cost = model.checkpoint_duration_s.mean if model.checkpoint_duration_s else None
    young, daly = young_daly(cost, mtbf_h)
    warns = extrapolation_warnings(model, rate, capacity=capacity)
    lo, hi = model.ranges.ci_s
    if best.ci_s > hi * 1.5 or best.ci_s < lo / 1.5:
        warns.append(f"the chosen {best.ci_s:g} s is well outside the profiled {lo:g}-{hi:g} s intervals")
    return Decision(
        ci_s=run_ci,
        action=action,
        feasible=bool(ok.any()),
        alert=not run_ok,
        reason=reason,
        predicted_latency_ms=float(run_lat),
        predicted_recovery_s=float(run_rec),
        ratios={"latency": float(run_lr), "recovery": float(run_rr)},
        young_s=young,
        daly_s=daly,
        candidates=cands,
        best_ci_s=best.ci_s,
        best_latency_ms=best.latency_ms,
        best_recovery_s=best.recovery_s,
        best_ratios={"latency": best.latency_ratio, "recovery": best.recovery_ratio},
        current_ci_s=float(current_ci),
        rate=float(rate),
        mode=mode,
        l_max_ms=float(l_max_ms),
        r_max_s=float(r_max_s),
        ci_min=float(ci_min),
        ci_max=float(ci_max),
        dead_band_s=float(dead_band),
        mtbf_h=float(mtbf_h),
        slack_s_per_h=float(p.slack_s_per_h),
        longest_feasible_s=float(cis[feasible[-1]]) if feasible.size else math.nan,
        checkpoint_cost_s=cost,
        longer_breaks=longer,
        shorter_breaks=shorter,
        warnings=warns,
        action_reason=action_reason,
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
            + f": the best compromise, at {x(br['recovery'])} the recovery limit and "
            f"{x(br['latency'])} the latency limit."
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


# ------------------------------------------------------------------------------------------- CLI


def _cli_recommend(args) -> None:
    from ..model import store

    if args.l_max is None or args.r_max is None:
        missing = " and ".join(n for n, v in (("--l-max", args.l_max), ("--r-max", args.r_max)) if v is None)
        raise KhaosError(f"missing limit(s) {missing}: both the latency (ms) and recovery (s) limits are needed")
    policy = Policy(
        l_max_ms=args.l_max,
        r_max_s=args.r_max,
        ci_min=args.ci_min,
        ci_max=args.ci_max,
        ci_step=args.step,
        dead_band_s=args.dead_band,
        cooldown_s=args.cooldown_s,
        mtbf_h=args.mtbf_h,
        mode=args.mode,
        slack_s_per_h=args.slack_s_per_h,
    )
    rec = recommend(store.load(args.model), args.rate, args.current_ci, policy, last_change_ts=args.last_change_ts)
    if args.json:
        d = rec.to_dict()
        if not args.all_candidates:
            d["candidates"] = len(rec.candidates)
        print(json.dumps(d, indent=1))
    else:
        print(explain(rec))
        print(f"action: {rec.action}  ci: {rec.ci_s:g} s  alert: {str(rec.alert).lower()}")


def add_cli(subparsers) -> None:
    """Register ``khaos recommend`` on the ``khaos`` sub-command parser (defaults and bounds: the daemon
    schema's; the rate and the current interval: the physical bounds of khaos_controller/schema.py)."""
    from ..cli import field_number, finite_float, number
    from ..schema import MAX_INTERVAL_S, MAX_RATE
    from .config import Limits

    d = Policy(l_max_ms=1.0, r_max_s=1.0)
    p = subparsers.add_parser("recommend", help="recommend a checkpoint interval from a fitted model and two limits")
    p.add_argument("--model", required=True, help="model file written by khaos fit")
    p.add_argument("--rate", type=number(0, MAX_RATE, open_low=True), required=True, help="input rate, events/s")
    p.add_argument(
        "--current-ci",
        type=number(0, MAX_INTERVAL_S, open_low=True),
        required=True,
        help="the job's current checkpoint interval, s",
    )
    p.add_argument("--l-max", type=field_number(Limits, "latency_ms"), help="p99 latency limit, ms (required)")
    p.add_argument("--r-max", type=field_number(Limits, "recovery_s"), help="recovery time limit, s (required)")
    p.add_argument(
        "--ci-min",
        type=field_number(CISection, "min"),
        default=d.ci_min,
        help=f"shortest candidate interval, s (default {d.ci_min:g})",
    )
    p.add_argument(
        "--ci-max",
        type=field_number(CISection, "max"),
        default=d.ci_max,
        help=f"longest candidate interval, s (default {d.ci_max:g})",
    )
    p.add_argument(
        "--step",
        type=field_number(CISection, "step"),
        default=d.ci_step,
        help=f"candidate spacing, s (default {d.ci_step:g})",
    )
    p.add_argument(
        "--dead-band",
        type=field_number(CISection, "dead_band_s"),
        default=d.dead_band_s,
        help=f"do not move for less than this, s (default {d.dead_band_s:g})",
    )
    p.add_argument(
        "--mtbf-h",
        type=field_number(DaemonFile, "mtbf_h"),
        default=d.mtbf_h,
        help=f"mean time between failures for Young/Daly, h (default {d.mtbf_h:g})",
    )
    p.add_argument(
        "--slack-s-per-h",
        type=field_number(CISection, "slack_s_per_h"),
        default=d.slack_s_per_h,
        help="among intervals meeting both limits, the longest within this many expected violation s per hour "
        f"of the least (default {d.slack_s_per_h:g})",
    )
    p.add_argument("--mode", default=d.mode, help=f"failure mode to plan for: process or host (default {d.mode})")
    p.add_argument(
        "--last-change-ts", type=finite_float, help="epoch s of the last interval change (enables the cooldown)"
    )
    p.add_argument(
        "--cooldown-s",
        type=field_number(CISection, "cooldown_s"),
        default=d.cooldown_s,
        help=f"no change within this long after the last one (default {d.cooldown_s:g})",
    )
    p.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    p.add_argument("--all-candidates", action="store_true", help="with --json: include every candidate")
    p.set_defaults(func=_cli_recommend)
