"""What `khaos fit` prints and plots: the held-out error table, the formulas, predicted vs measured."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .greybox import fmt_level
from .store import Error, Model, Spec


def _pct(x, sep: str = "") -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}{sep}%"


def _num(x, digits=2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _sum(icpt: float, features: list[str], coef: list[float]) -> str:
    parts = [f"{icpt:.4g}"] + [f"{b:.4g}*{f}" for f, b in zip(features, coef)]
    return " + ".join(parts).replace("+ -", "- ")


def formula(spec: Spec) -> str:
    """``intercept + coef*feature ...`` with its residual and the capacity a capacity feature uses."""
    s = _sum(spec.intercept, spec.features, spec.coef)
    if spec.residual is not None:
        r = spec.residual
        s = f"({s}) x exp({_sum(r.intercept, r.features, r.coef)})"
    cap = spec.constants.capacity
    if cap and any("cap" in f or "(1-u)" in f or f == "u" for f in spec.features):
        if spec.constants.capacity_measured:
            s += f"  (cap: each cluster's measured capacity; default {cap:.0f}/s, the profiled median)"
        else:
            s += f"  (cap={cap:.0f}/s" + (
                ", at the grid's upper edge: not identifiable from these data)"
                if spec.constants.capacity_at_grid_edge
                else ")"
            )
    return s


def _vs(e: Error, base: Error | None, unit: str) -> str:
    b = base or Error()
    return f"MAPE {_pct(e.mape)} (baseline {_pct(b.mape)}), MAE {_num(e.mae)} {unit} (baseline {_num(b.mae)})"


def extrapolation_line(model: Model) -> str | None:
    """The extrapolation check in one line (None without one)."""
    x = model.cv.extrapolation
    if x is None:
        return None
    return (
        f"extrapolation (fitted at utilization <= {fmt_level(x.fit_max)}, predicting >= {fmt_level(x.test_min)}, "
        f"{x.recovery.n} failures): recovery {_vs(x.recovery, x.recovery_baseline, 's')}; "
        f"latency {_vs(x.latency, x.latency_baseline, 'ms')}"
    )


def heldout_line(target: str, t, unit: str) -> str:
    """``recovery held-out: MAPE X %, MAE Y s, 90 % interval coverage Z % (baseline: MAPE ..., MAE ...)``."""
    band = t.interval
    if band is None:
        cover = "no interval (too few failures)"
    else:
        got = "n/a" if band.coverage is None else f"{100 * band.coverage:.0f} %"
        cover = f"{100 * band.level:.0f} % interval coverage {got} (x{band.ratio_lo:.2f} .. x{band.ratio_hi:.2f})"
    return (
        f"{target} held-out: MAPE {_pct(t.physics.mape, ' ')}, MAE {_num(t.physics.mae)} {unit}, {cover} "
        f"(baseline: MAPE {_pct(t.baseline.mape, ' ')}, MAE {_num(t.baseline.mae)} {unit})"
    )


def format_report(model: Model) -> str:
    """The side-by-side CV table and the fitted formulas, as printed by ``khaos fit``."""
    r = model.rows

    def drop(d: dict) -> str:
        return ", ".join(f"{n} {w}" for w, n in d.items()) or "none"

    lines = [
        f"rows: {r.input} read; recovery model uses {r.recovery_used} "
        f"(dropped: {drop(r.recovery_dropped)}); latency model uses {r.latency_used} "
        f"(dropped: {drop(r.latency_dropped)})",
        f"ranges: CI {model.ranges.ci_s[0]:g}-{model.ranges.ci_s[1]:g} s, rate "
        f"{model.ranges.rate[0]:g}-{model.ranges.rate[1]:g} events/s, modes {', '.join(model.ranges.modes)}"
        + (
            f", utilization {100 * model.ranges.utilization[0]:.0f}-{100 * model.ranges.utilization[1]:.0f} %"
            if model.ranges.utilization
            else ""
        )
        + (
            f", measured capacity {model.ranges.capacity[0]:.0f}-{model.ranges.capacity[1]:.0f} events/s"
            if model.ranges.capacity
            else ""
        ),
    ]
    cv = model.cv
    lines.append(f"held-out error ({cv.recovery.protocol} for recovery; {cv.latency.protocol} for latency)")
    lines.append(f"  {'':<14}{'MAPE baseline':>14}{'MAPE physics':>14}{'MAE baseline':>14}{'MAE physics':>14}")
    for target, unit in (("recovery", "s"), ("latency", "ms")):
        t = getattr(cv, target)
        lines.append(
            f"  {target + ' (' + unit + ')':<14}{_pct(t.baseline.mape):>14}{_pct(t.physics.mape):>14}"
            f"{_num(t.baseline.mae):>14}{_num(t.physics.mae):>14}"
        )
    for target, unit in (("recovery", "s"), ("latency", "ms")):
        lines.append(heldout_line(target, getattr(cv, target), unit))
    for target in ("recovery", "latency"):
        t = getattr(cv, target)
        cands = ", ".join(f"{k} {_pct(v.mape)}" for k, v in t.candidates.items())
        lines.append(f"  {target} physics candidates (CV MAPE): {cands}; chose {t.physics.feature_set}")
    x = extrapolation_line(model)
    if x:
        lines.append(x)
    for target in ("recovery", "latency"):
        for fam in ("baseline", "physics"):
            lines.append(f"{fam} {target} = {formula(getattr(model.target(target), fam))}")
    c = model.recovery.physics.constants
    if c.downtime_s:
        d = ", ".join(f"{k} {v:.2f} s" for k, v in c.downtime_s.items() if k != "*")
        lines.append(f"  L0 = (CI - {c.margin_s:.2f} s) + downtime ({d})")
    if c.state_model is not None:
        k = c.state_model
        lines.append(f"  state_gb = {k.intercept:.4g} + {k.rate:.4g}*rate + {k.ci:.4g}*ci")
    if model.overhead is not None:
        lines.append(overhead_line(model))
    lines.append(f"data {model.data_hash[:19]}..., created {model.created}")
    return "\n".join(lines)


def overhead_line(model: Model) -> str:
    """What checkpoints cost the capacity, as the catch-up law uses it (Model.overhead)."""
    o = model.overhead
    lo, hi = model.ranges.ci_s
    at = ", ".join(
        f"{o.capacity_ref * (1 - o.k * min(1.0, o.checkpoint_s / ci)):,.0f}/s at {ci:g} s" for ci in (lo, hi)
    )
    return (
        f"checkpoint overhead: capacity = {o.capacity_ref:,.0f} x (1 - {o.k:.3f} x min(1, {o.checkpoint_s:.1f} s / CI)) "
        f"({at}; {o.deployments} deployments): the catch-up law drains a replay at it"
    )


def plot(model: Model, path: str | Path) -> Path:
    """Held-out predicted vs observed, baseline and physics, one panel per target (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (target, unit) in zip(axes, (("recovery", "s"), ("latency", "ms"))):
        rows = model.cv.heldout[target]
        t = getattr(model.cv, target)
        obs = np.array([r.observed for r in rows], float)
        allv = [obs]
        for fam, marker, color in (("baseline", "o", "tab:orange"), ("physics", "s", "tab:blue")):
            pred = np.array([np.nan if getattr(r, fam) is None else getattr(r, fam) for r in rows], float)
            allv.append(pred[np.isfinite(pred)])
            e = getattr(t, fam)
            ax.scatter(
                obs,
                pred,
                marker=marker,
                color=color,
                alpha=0.8,
                label=f"{fam} (MAPE {_pct(e.mape)}, MAE {_num(e.mae)} {unit})",
            )
        vals = np.concatenate(allv)
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="perfect")
        ax.set_xlabel(f"observed {target} ({unit})")
        ax.set_ylabel(f"held-out prediction ({unit})")
        ax.set_title(f"{target}: {t.protocol}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"khaos model, {model.rows.recovery_used} recovered failures ({model.data_hash[7:19]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
