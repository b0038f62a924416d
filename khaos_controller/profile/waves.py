"""Profiling a Kafka-fed job in waves: the units of one workload (one rate, or one failure point of a
trace), at most one per cluster, run at the same time, each reading its own fresh topic with its own
consumer group, and ONE replay (kafka/feed.py) writes the workload into all their topics. The replay
starts before the jobs and runs until the wave's last unit is done, so a job that fails catches up from
the backlog the broker holds, as in production."""

from __future__ import annotations

import threading
import time

from ..errors import KhaosError
from ..kafka import feed as kfeed

CAUGHT_UP_LAG_MS = 1000.0  # a job starting behind the replay has caught up when its lag is below 1 s ...
CAUGHT_UP_SAMPLES = 6  # ... for 6 samples (3 s) in a row ...
CAUGHT_UP_RATE = 1.3  # ... and its sink takes at most 1.3x the input rate (the records in flight are worked off)
CAUGHT_UP_TIMEOUT_S = 180.0  # past this the job is judged by its lag's trend: still falling, it is waited for
TREND_S = 60.0  # the lag counts as falling when it is 10 % below its value this long before
NO_LAG_SAMPLES = 10  # a job whose source reports no lag for 10 running samples is not waited for


def group(units: list, clusters: int) -> list[list]:
    """Units grouped by workload (rate, failure point), in order, cut into waves of ``clusters`` units."""
    groups: dict[tuple, list] = {}
    for u in units:
        groups.setdefault((u.rate, (u.point or {}).get("t")), []).append(u)
    return [g[i : i + clusters] for g in groups.values() for i in range(0, len(g), clusters)]


def replay_seconds(exp, failures: int) -> int:
    """Long enough for every failure of a unit to time out (the replay is stopped when the wave ends)."""
    per_failure = exp.recovery_timeout_s + exp.consecutive_s + exp.settle_s + 3 * max(exp.checkpoint_intervals) + 90
    return int(600 + 3 * exp.warmup_s + CAUGHT_UP_TIMEOUT_S + failures * per_failure)


def run(prof) -> None:
    """Every wave of the profiler's experiment, one after the other."""
    for wave in prof.waves():
        if prof.cancel.is_set():
            return
        run_wave(prof, wave)


def run_wave(prof, wave: list) -> None:
    """The wave's units in parallel (one per cluster) fed by ONE replay started before the jobs; topics and
    groups deleted afterwards unless the profiler keeps them. A wave that cannot start fails its units."""
    exp, u0 = prof.exp, wave[0]
    names = [u.ident for u in wave]
    feed = kfeed.Feed(exp.kafka, prof.bootstrap, prof.prefix, names, exp.job.parallelism, keep=prof.keep)
    try:
        feed.open()
        src = kfeed.source(exp.kafka, replay_seconds(exp, len(u0.failures)), rate=u0.rate, trace=prof._window(u0))
        start_ms = feed.start(src)
        prof.journal.write("replay_start", units=names, topics=feed.topics(), source=src.name, start_ms=start_ms)
        prof._say(f"replay of {src.name} into {', '.join(feed.topics())}")
        threads = [
            threading.Thread(target=prof._unit, args=(c, u, feed), daemon=True) for c, u in zip(prof.clusters, wave)
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KhaosError as e:
        for u in wave:
            prof.errors.append(f"{u.ident}: {e}")
            prof.journal.write("error", unit=u.ident, error=str(e))
        prof._say(f"ERROR wave {', '.join(names)}: {e}")
    finally:
        summary = feed.stop()
        problems = feed.close()
        if summary is not None:
            prof.journal.write("replay_end", units=names, line=summary.line(), sent=summary.sent)
            prof._say(summary.line())
        for p in problems:
            prof.journal.write("kafka_cleanup", problem=p)


def caught_up(rows: list[dict], rate: float) -> bool:
    """The last CAUGHT_UP_SAMPLES samples show a job that has read what was written before it started:
    running, lag below CAUGHT_UP_LAG_MS, its sink at most CAUGHT_UP_RATE x the input rate."""
    last = rows[-CAUGHT_UP_SAMPLES:]
    if len(last) < CAUGHT_UP_SAMPLES:
        return False
    for r in last:
        lag, thr = r.get("lag_ms"), r.get("throughput")
        if not r.get("all_running") or lag is None or lag != lag or lag > CAUGHT_UP_LAG_MS:
            return False
        if thr is not None and thr == thr and thr > CAUGHT_UP_RATE * rate:
            return False
    return True


def no_lag_gauge(rows: list[dict]) -> bool:
    """The job has run for NO_LAG_SAMPLES samples without ever reporting a lag: nothing to wait for."""
    running = [r for r in rows if r.get("all_running")]
    lags = [r.get("lag_ms") for r in running]
    return len(running) >= NO_LAG_SAMPLES and all(v is None or v != v for v in lags)


def wait_caught_up(prof, sampler, unit) -> float | None:
    """Block until the new job has caught up with its input (the replay, or a source that starts at
    --start: it is behind by its deploy time), so that the warm-up that follows learns a steady state; at
    once for a job without a lag gauge. Seconds waited; None (and a ``not_caught_up`` note) when it has
    not after CAUGHT_UP_TIMEOUT_S and its lag no longer falls (or not within the recovery timeout): the
    job processes less than arrives at this interval and rate. (Near capacity a deploy's backlog alone
    takes minutes: B u/(1-u) s for B s behind.)"""
    t0 = time.monotonic()
    while True:
        waited = time.monotonic() - t0
        if caught_up(sampler.rows, unit.rate) or no_lag_gauge(sampler.rows):
            return waited
        if waited >= prof.exp.recovery_timeout_s or (waited >= CAUGHT_UP_TIMEOUT_S and not falling(sampler.rows)):
            break
        prof._sleep(1)
    prof.journal.write("not_caught_up", unit=unit.ident, waited_s=round(waited, 1))
    return None


def falling(rows: list[dict]) -> bool:
    """The job's lag is falling: its last value is 10 % below its value TREND_S earlier (no lag: not)."""
    lags = [
        (r["t"], r.get("lag_ms")) for r in rows if r.get("lag_ms") is not None and r.get("lag_ms") == r.get("lag_ms")
    ]
    if not lags or lags[-1][0] - lags[0][0] < TREND_S:
        return False
    then = [v for t, v in lags if t <= lags[-1][0] - TREND_S][-1]
    return lags[-1][1] < 0.9 * then
