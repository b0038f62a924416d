"""A profile's plan in plain words: what `khaos profile` (and its --dry-run) prints before it starts."""

from __future__ import annotations

from . import capacity


def describe(prof) -> str:
    """The experiment of a Profiler as a few lines: failures, intervals, levels, units, resuming, pinning."""
    exp = prof.exp
    units, pending = prof.units(), prof.pending()
    lines = [
        f"experiment {exp.name}: {exp.failures} failures = {len(exp.checkpoint_intervals)} "
        f"intervals x {len(exp.rates or exp.utilizations)} {'rates' if exp.rates else 'levels'} x "
        f"{len(exp.modes)} modes x {exp.repetitions} repetitions, on {exp.cluster_count} clusters in parallel",
        f"  intervals (s): {', '.join(f'{c:g}' for c in exp.checkpoint_intervals)}",
        f"  rates (events/s): {', '.join(f'{r:g}' for r in exp.rates)}"
        if exp.rates
        else f"  utilization levels (x the probed capacity): {', '.join(f'{u:g}' for u in exp.utilizations)}",
        *([f"  capacity: {capacity.describe(exp)}"] if exp.capacity else []),
        f"  failures: {', '.join(exp.modes)} on target {exp.target}, {exp.timing}"
        + (f" (margin {exp.margin_s:g}s)" if exp.timing == "before_checkpoint" else ""),
        f"  {len(units)} units (one job deployment each), output {prof.out}",
        f"  recovery: {exp.recovery} rule (docs/recovery.md)"
        + ("" if prof.audit else "; no file audit: the job's arguments have no {output}"),
    ]
    if prof.only:
        lines.append(f"  only: {len(pending)} units matching {', '.join(prof.only)} still to run (--only)")
    if prof.reused:
        lines.append(f"  resuming: {len(prof.reused)} units finished earlier are kept, {len(pending)} to run")
    if exp.job.bootstrap is not None:
        size = exp.job.bootstrap
        lines.append(
            f"  state: every deployment starts from a savepoint of {size.keys:,} keys x {size.state_bytes:,} B "
            f"(~{size.total_bytes / 1e6:,.0f} MB), written once per cluster"
        )
    if exp.store is not None:
        up, down = exp.store["checkpoint_store_link_upload_mbit"], exp.store["checkpoint_store_link_download_mbit"]
        link = f"{up:g} Mbit/s up, {down:g} down" if up or down else "unshaped"
        lines.append(f"  store: a checkpoint store host per lab (link {link}); checkpoints and savepoints go there")
    if exp.pinning:
        lines.append("  pinned: " + ", ".join(f"{k.split('_')[1]}s on CPUs {v}" for k, v in exp.pinning.items()))
    if exp.kafka is not None:
        lines.append("  " + exp.kafka.describe())
        lines.append(
            f"  {len(prof.waves())} waves: the units of one workload run at once, one replay into their topics"
        )
    return "\n".join(lines)
