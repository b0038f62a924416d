"""A profile's output files: one row per failure in results.csv and results.parquet, and a plot of the
recovery time over the input rate (recovery_vs_rate.png)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write(rows: list[dict], out: Path, name: str) -> pd.DataFrame:
    """Write the rows (sorted by interval, rate, mode, repetition) and the plot into ``out``; the frame."""
    df = pd.DataFrame(rows).sort_values(["ci_s", "rate", "mode", "rep"]) if rows else pd.DataFrame()
    df.to_csv(out / "results.csv", index=False)
    df.to_parquet(out / "results.parquet", index=False)
    if not df.empty:
        plot(df, out / "recovery_vs_rate.png", f"{name}: recovery time over input rate")
    return df


def plot(df: pd.DataFrame, path: Path, title: str) -> Path:
    """Recovery time over input rate, one line per interval, marker per failure mode (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {"process": "o", "host": "s"}
    for i, (ci, g) in enumerate(df.groupby("ci_s")):
        color = plt.cm.viridis(i / max(1, df["ci_s"].nunique() - 1))
        means = g.groupby("rate")["recovery_s"].mean()
        ax.plot(means.index, means.values, color=color, label=f"CI {ci:g}s")
        for mode, gm in g.groupby("mode"):
            ax.scatter(gm["rate"], gm["recovery_s"], color=color, marker=markers.get(mode, "x"), s=30)
    ax.set_xlabel("input rate (events/s)")
    ax.set_ylabel("recovery time (s)  [o process kill, s host kill]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="checkpoint interval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
