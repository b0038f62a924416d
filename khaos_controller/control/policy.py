"""What the planner is configured with: the :class:`Policy` (the limits and the interval rules, their
defaults the daemon schema's), the candidate intervals, and the model's predictions and notes for them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import KhaosError
from ..model.predict import capacity_at, extrapolation_warnings, predict
from ..model.store import Model
from ..schema import check
from .config import CISection, DaemonFile, Limits
from .ranking import Candidate, candidate

PRIOR_CHANGE_COST_S = 5.0  # violation s a restart change is taken to cost before one was measured
# the schema field of each Policy setting (Limits, CISection, DaemonFile), and the flag of `khaos recommend`
# that sets it: a refused value is named by its flag
_FIELDS = {
    "l_max_ms": (Limits, "latency_ms", "--l-max"),
    "r_max_s": (Limits, "recovery_s", "--r-max"),
    "ci_min": (CISection, "min", "--ci-min"),
    "ci_max": (CISection, "max", "--ci-max"),
    "ci_step": (CISection, "step", "--step"),
    "dead_band_s": (CISection, "dead_band_s", "--dead-band"),
    "cooldown_s": (CISection, "cooldown_s", "--cooldown-s"),
    "slack_s_per_h": (CISection, "slack_s_per_h", "--slack-s-per-h"),
    "hysteresis": (CISection, "hysteresis", "--hysteresis"),
    "change_cost_s": (CISection, "change_cost_s", "change_cost_s"),
    "mtbf_h": (DaemonFile, "mtbf_h", "--mtbf-h"),
}
_FLAGS = {field: flag for _, field, flag in _FIELDS.values()} | {"": "--ci-min/--ci-max"}  # "": the ci range


def recovery_band(cfg) -> float:
    """1 (the point prediction), or with ``limits.recovery_bound: upper`` the model's 90 % band's upper ratio;
    KhaosError when the model has no band."""
    if cfg.limits.recovery_bound != "upper":
        return 1.0
    band = cfg.model.cv.recovery.interval
    if band is None:
        raise KhaosError(
            f"limits.recovery_bound: upper needs a model with a recovery band; {cfg.model_path} has none "
            "(fit it again with this version, from a profile of >= 19 failures)"
        )
    return max(1.0, band.ratio_hi)


def _default(section, name: str):
    return section.model_fields[name].default


@dataclass(frozen=True)
class Policy:
    """The limits and rules of a decision. Their defaults, bounds and rules are the daemon config schema's:
    a value it refuses is a KhaosError `FLAG: problem`."""

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
    recovery_band: float = 1.0  # what a predicted recovery is multiplied by before R_max (the band's upper ratio)

    def __post_init__(self) -> None:
        for section in (Limits, CISection, DaemonFile):
            values = {field: getattr(self, name) for name, (sec, field, _) in _FIELDS.items() if sec is section}
            check(section, values, _FLAGS)

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
            recovery_band=recovery_band(cfg),
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


def candidate_intervals(ci_min: float, ci_max: float, step: float) -> np.ndarray:
    """ci_min, ci_min + step, ... and ci_max itself."""
    n = math.floor((ci_max - ci_min) / step + 1e-9)
    c = ci_min + step * np.arange(n + 1)
    if ci_max - c[-1] > 1e-9:
        c = np.append(c, ci_max)
    return np.round(c, 9)


def candidates(
    model: Model, rate: float, p: Policy, capacity: float | None, measured_at_ci: float | None = None
) -> list[Candidate]:
    """Every candidate interval of ``p`` with the model's predictions at ``rate`` events/s (``capacity``:
    the job's own, events/s, measured while ``measured_at_ci`` was in force; None: the model's profiled one)."""
    cis = candidate_intervals(p.ci_min, p.ci_max, p.ci_step)
    lat, rec = predict(model, rate, cis, p.mode, capacity=capacity, measured_at_ci=measured_at_ci)
    caps = _capacities(model, cis, capacity, measured_at_ci)
    return [candidate(p, c, a, b, k) for c, a, b, k in zip(cis, lat, rec, caps)]


def candidate_at(
    model: Model, rate: float, ci: float, p: Policy, capacity: float | None, measured_at_ci: float | None = None
) -> Candidate:
    """The interval ``ci`` (e.g. the current one) with the model's predictions, as :func:`candidates`."""
    lat, rec = predict(model, rate, float(ci), p.mode, capacity=capacity, measured_at_ci=measured_at_ci)
    return candidate(p, float(ci), lat, rec, _capacities(model, [float(ci)], capacity, measured_at_ci)[0])


def _capacities(model: Model, cis, capacity: float | None, measured_at_ci: float | None) -> list[float]:
    """What the job has at each interval where the model knows what checkpoints cost; NaN each without."""
    if model.overhead is None:
        return [math.nan] * len(cis)
    return [float(c) for c in capacity_at(model, cis, capacity, measured_at_ci)]


def measured_capacity(model: Model) -> bool:
    """The model was fitted on measured capacities (grey-box): a prediction takes the job's own capacity."""
    return any(pair.physics.constants.capacity_measured for pair in (model.recovery, model.latency))


def checkpoint_cost(model: Model) -> float | None:
    """The profiled mean checkpoint duration, s (None: the model's data has none)."""
    return model.checkpoint_duration_s.mean if model.checkpoint_duration_s else None


def notes(model: Model, rate: float, chosen_s: float, capacity: float | None) -> list[str]:
    """Where the model extrapolates: the rate, the utilization, and a chosen interval well outside the
    profiled ones."""
    out = extrapolation_warnings(model, rate, capacity=capacity)
    lo, hi = model.ranges.ci_s
    if chosen_s > hi * 1.5 or chosen_s < lo / 1.5:
        out.append(f"the chosen {chosen_s:g} s is well outside the profiled {lo:g}-{hi:g} s intervals")
    return out
