"""The plan of an evaluation: the trace, the failure schedule, the slots, what to kill."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import KhaosError
from ..profile import workload
from .config import Evaluation


def make_trace(ev: Evaluation) -> pd.Series:
    """The trace every copy replays: the file, or the seeded synthetic day."""
    if ev.trace_file is not None:
        return workload.load_trace(ev.trace_file)
    s = ev.synthetic
    if "recording" in s:  # kafka.recording: its per-second rates, repeated to the length of the run
        from ..kafka import recording

        rates = recording.load(s["recording"]).rates
        return pd.Series(np.resize(rates, s["seconds"]).astype(float))
    return workload.synthetic_day(
        s["seconds"], s["low"], s["high"], seed=ev.seed, bursts=s["bursts"], noise=s["noise"]
    ).round()


def failure_schedule(ev: Evaluation, duration: int) -> list[dict]:
    """Seconds since the start and modes of the failures: `at` if given, else `count` times drawn
    from the seed between first_s and duration - 90 s, at least min_gap_s apart (a draw that
    cannot place them all raises)."""
    f = ev.failures
    modes = f["modes"]
    if "at" in f:
        times = [a for a in f["at"] if a < duration]
    else:
        rng = np.random.default_rng(ev.seed)
        lo, hi, gap = f["first_s"], duration - 90.0, f["min_gap_s"]
        room = hi - lo - gap * (f["count"] - 1)
        if f["count"] and room < 0:
            raise KhaosError(
                f"{ev.path}: failures: {f['count']} failures {gap:g} s apart do not fit between "
                f"{lo:g} s and {hi:g} s of a {duration} s trace"
            )
        # spread `count` points with the minimum gap: uniform offsets in the spare room, sorted
        offsets = np.sort(rng.uniform(0, max(room, 0), f["count"]))
        times = [round(lo + o + i * gap) for i, o in enumerate(offsets)]
    return [{"n": i + 1, "t": float(t), "mode": modes[i % len(modes)]} for i, t in enumerate(times)]


def describe(ev: Evaluation, trace: pd.Series, schedule: list[dict]) -> str:
    """The plan in plain words (what --dry-run prints)."""
    lines = [
        f"evaluation {ev.name} (seed {ev.seed}): {len(ev.copies)} copies on one cluster: "
        + ", ".join(f"{c} ({ev.job_name(c)})" for c in ev.copies),
        f"  workload: {len(trace)} s, {trace.min():.0f}..{trace.max():.0f} events/s (mean {trace.mean():.0f})"
        + (
            f" from {ev.trace_file}"
            if ev.trace_file
            else f" from {ev.synthetic['recording']}"
            if "recording" in ev.synthetic
            else f" synthetic day, {ev.synthetic['bursts']} bursts"
        ),
        f"  limits: p99 latency {ev.limits['latency_ms']:g} ms, recovery {ev.limits['recovery_s']:g} s",
        *(
            f"  {copy} (realize {mode}): starts at {ev.interval(copy):g} s, candidates "
            f"{ev.khaos['ci']['min']:g}-{ev.khaos['ci']['max']:g} s, decides every {ev.khaos['loop']['period_s']:g} s"
            for copy, mode in ev.khaos_copies.items()
        ),
        "  khaos model: " + (str(ev.model_path) if ev.model_path else "fitted from " + ", ".join(map(str, ev.results))),
        f"  failures ({len(schedule)}, target {ev.failures['target']}): "
        + ", ".join(f"{f['mode']} at {f['t']:g} s" for f in schedule),
        "  cluster: "
        + (f"lab {ev.lab} ({ev.hosts} hosts)" if ev.lab else f"inventory {ev.inventory}")
        + f", {slots(ev)} slots per TaskManager, parallelism {ev.parallelism} per copy",
        f"  output: {ev.output}",
    ]
    if ev.kafka is not None:
        lines.insert(-1, "  " + ev.kafka.describe())
    if not ev.audit:
        lines.insert(-1, "  no sink audit: the job's arguments have no {output}")
    return "\n".join(lines)


def slots(ev: Evaluation) -> int:
    """Room for every copy on ONE TaskManager: after a host kill the survivors can run them all."""
    return ev.slots or len(ev.copies) * ev.parallelism


def covering_hosts(placement: dict[str, list[str]]) -> list[str]:
    """The fewest hosts whose loss takes down every copy (greedy: the host running the most
    copies not yet covered; ties go to the first name). One host while the copies share one."""
    left = {c: set(h) for c, h in placement.items() if h}
    if not left:
        raise KhaosError("no copy has a running task: nothing to kill")
    chosen: list[str] = []
    while left:
        counts: dict[str, int] = {}
        for hosts in left.values():
            for h in hosts:
                counts[h] = counts.get(h, 0) + 1
        best = min(counts, key=lambda h: (-counts[h], h))
        chosen.append(best)
        left = {c: h for c, h in left.items() if best not in h}
    return chosen
