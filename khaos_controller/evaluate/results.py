"""The results of an evaluation: the samples become one row per second and copy, scored on the same rules
(score.py); summary.json and the report. `khaos evaluate --rescore` scores a finished run again from its files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import KhaosError
from . import report
from .score import notes, paced, per_second, ratios, score


@dataclass
class Measured:
    """What a run measured, per copy."""

    start: float  # the trace's t=0 (epoch s)
    offered: np.ndarray  # the trace: events per second
    samples: dict[str, pd.DataFrame]
    latency: dict[str, pd.DataFrame | None]  # end-to-end latency read from the output topic, or None
    reconfigs: dict[str, list[dict]]  # Khaos copy -> its reconfigurations, from its daemon's journal
    failures: list[dict]
    audits: dict[str, dict]
    placement: dict[str, list[str]]  # TaskManager hosts of each copy when deployed


def finish(ev, m: Measured, out: Path, say: Callable[[str], None]) -> dict:
    """Score the run, write seconds/, summary.json and the report; returns {table, summary, paths}."""
    seconds = {
        c: per_second(m.samples[c], int(m.start), m.offered, ev.limits["latency_ms"], m.latency[c]) for c in ev.copies
    }
    for copy, mode in ev.khaos_copies.items():
        if mode == "pace":  # the samples read the safety net; the interval in force is the paced one
            seconds[copy] = paced(seconds[copy], m.reconfigs[copy])
    for c in ev.copies:
        seconds[c].to_csv(out / "seconds" / f"{c}.csv", index=False)
    reconfigs = [r for copy in ev.khaos_copies for r in m.reconfigs[copy]]
    kh = ev.khaos["ci"]
    labels = {c: f"{ev.interval(c):g} s" for c in ev.copies}
    labels.update({c: f"khaos {mode} {kh['min']:g}-{kh['max']:g} s" for c, mode in ev.khaos_copies.items()})
    duration = len(m.offered)
    table = score(
        seconds, m.samples, m.failures, reconfigs, m.audits, ev.limits, ev.consecutive_s, labels, m.start + duration
    )
    summary = {
        "name": ev.name,
        "seed": ev.seed,
        "start": m.start,
        "duration_s": duration,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m.start)),
        "machine": machine(),
        "limits": ev.limits,
        "consecutive_s": ev.consecutive_s,
        "labels": labels,
        "placement": m.placement,
        **ratios(table),
        "failures": m.failures,
        "reconfigurations": reconfigs,
        "audits": m.audits,
    }
    paths = _write(out, summary, seconds, table, ev.text)
    say("\n" + report.markdown_table(table))
    say(f"report: {paths['html']}")
    return {"table": table, "summary": summary, "paths": paths}


def _write(out: Path, summary: dict, seconds: dict[str, pd.DataFrame], table: pd.DataFrame, config: str) -> dict:
    """summary.json and the report (table, charts, report.html); their paths."""
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json))
    meta = {**summary, "config": config, "notes": notes(table, summary["failures"])}
    return report.write_report(out, seconds, summary["failures"], summary["reconfigurations"], table, meta)


def rescore(out: str | Path) -> dict:
    """`khaos evaluate --rescore OUT`: score a finished run again from what it wrote (summary.json, samples/,
    seconds/), with today's rules; rewrites summary.json and the report. Nothing is started."""
    out = Path(out)
    try:
        s = json.loads((out / "summary.json").read_text())
        old = pd.read_csv(out / "table.csv")
        copies = [str(c) for c in old["copy"]]
        seconds = {c: pd.read_csv(out / "seconds" / f"{c}.csv") for c in copies}
        samples = {c: pd.read_csv(out / "samples" / f"{c}.csv") for c in copies}
        for df in samples.values():  # a sample without a job read no tasks: not all running (as when live)
            df["all_running"] = df["all_running"].fillna(False).astype(bool)
        config = (out / "evaluation.yml").read_text()
    except (OSError, ValueError, KeyError) as e:
        raise KhaosError(f"{out}: not the output of a finished `khaos evaluate` run ({e})") from None
    labels = s.get("labels") or dict(zip(copies, old["ci"].astype(str)))
    for key in ("khaos_violation_s", "ratio_best", "ratio_median"):  # the one-Khaos-copy ratios of old runs
        s.pop(key, None)
    table = score(
        seconds,
        samples,
        s["failures"],
        s["reconfigurations"],
        s["audits"],
        s["limits"],
        s["consecutive_s"],
        labels,
        s["start"] + s["duration_s"],
    )
    summary = {**s, "machine": s.get("machine", "not recorded"), "labels": labels, **ratios(table)}
    paths = _write(out, summary, seconds, table, config)
    print(report.markdown_table(table))
    print("\n".join(report.summary_lines(summary)))
    print(f"report: {paths['html']}")
    return {"table": table, "summary": summary, "paths": paths}


def _json(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if np.isnan(x) else float(x)
    return str(x)


def machine() -> str:
    """This machine in one line (for the report)."""
    import platform

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"
