"""What a profile says about the interval: per (interval, utilization level) the capacity checkpoints
leave, the steady latency, and the recovery of each failure mode; per interval what a checkpoint takes
(`khaos tradeoff RESULTS`, markdown on stdout). The numbers an operator weighs before trusting a model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import KhaosError
from ..model.results import numeric, recovered

NEEDS = ("ci_s", "rate", "mode", "recovered", "recovery_s")


def units(df: pd.DataFrame) -> pd.DataFrame:
    """One row per deployment (interval x rate): level, capacity left (% of the reference) and steady latency
    (mean per-second p99, share of late seconds) before its first failure, mean recovery per failure mode,
    and a status (ok, not recovered, overloaded: no failure injected)."""
    missing = [c for c in NEEDS if c not in df]
    if missing:
        raise KhaosError(f"results lack column(s) {', '.join(missing)} (is it a khaos profile results.csv?)")
    d = df.assign(
        ci_s=numeric(df, "ci_s"),
        rate=numeric(df, "rate"),
        level=numeric(df, "utilization_target"),
        cap_pct=100 * numeric(df, "capacity_busy") / numeric(df, "capacity_probe"),
        latency_mean_ms=numeric(df, "latency_mean_ms"),
        late_pct=100 * numeric(df, "late_share"),
        recovery_s=numeric(df, "recovery_s").where(recovered(df)),
        overloaded=df["recovery_rule"].astype(str).eq("overloaded") if "recovery_rule" in df else False,
    )
    out = []
    for (ci, rate), g in d.groupby(["ci_s", "rate"], sort=True):
        rec = {m: g.loc[g["mode"] == m, "recovery_s"].mean() for m in sorted(set(g["mode"]))}
        status = "overloaded" if g["overloaded"].any() else "ok" if g["recovery_s"].notna().all() else "not recovered"
        steady = g[~g["overloaded"]]
        first = g.sort_values("t_fail").iloc[0] if "t_fail" in g else g.iloc[0]  # its window is steady
        out.append(
            {
                "ci_s": ci,
                "level_pct": 100 * g["level"].iloc[0],
                "rate": rate,
                "capacity_pct": first["cap_pct"],
                "latency_mean_ms": first["latency_mean_ms"] if len(steady) else np.nan,
                "late_pct": first["late_pct"] if len(steady) else np.nan,
                **{f"recovery_{m}_s": v for m, v in rec.items()},
                "status": status,
            }
        )
    return pd.DataFrame(out)


def checkpoints(df: pd.DataFrame) -> pd.DataFrame:
    """Per interval: median checkpoint duration (s) and size (MB), and what it writes per hour (MB: size x
    3600 / max(interval, duration); full snapshots, an upper bound for incremental ones)."""
    d = pd.DataFrame(
        {
            "ci_s": numeric(df, "ci_s"),
            "dur": numeric(df, "checkpoint_duration_ms") / 1000,
            "mb": numeric(df, "checkpoint_size_bytes") / 1e6,
        }
    )
    g = d.groupby("ci_s").median()
    g["mb_per_h"] = g["mb"] * 3600 / np.maximum(g.index.to_numpy(float), g["dur"])
    return g.reset_index().rename(columns={"dur": "duration_s", "mb": "size_mb"})


def _cell(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)


def markdown(df: pd.DataFrame) -> str:
    """Both tables as markdown."""
    u, c = units(df), checkpoints(df)
    modes = [col for col in u.columns if col.startswith("recovery_")]
    head = ["CI s", "level %", "rate/s", "capacity % of ref", "mean p99 ms", "late s %"]
    head += [f"recovery {m.split('_')[1]} s" for m in modes] + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in u.itertuples(index=False):
        r = r._asdict()
        cells = [_cell(r["ci_s"], "g"), _cell(r["level_pct"], ".0f"), _cell(r["rate"], ".0f")]
        cells += [_cell(r["capacity_pct"], ".0f"), _cell(r["latency_mean_ms"], ".0f"), _cell(r["late_pct"], ".0f")]
        cells += [_cell(r[m], ".1f") for m in modes] + [r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| CI s | checkpoint s | size MB | MB written per hour |", "|---|---|---|---|"]
    for r in c.itertuples(index=False):
        lines.append(
            f"| {r.ci_s:g} | {_cell(r.duration_s, '.1f')} | {_cell(r.size_mb, '.0f')} | {_cell(r.mb_per_h, ',.0f')} |"
        )
    return "\n".join(lines)


def add_cli(subparsers) -> None:
    """Register ``khaos tradeoff``."""
    p = subparsers.add_parser("tradeoff", help="tables of a profile: capacity, latency and recovery per interval")
    p.add_argument("results", help="a profile's results.csv (or .parquet)")
    p.set_defaults(func=_run)


def _run(args) -> None:
    from ..model.results import load_results

    print(markdown(load_results(args.results)))
