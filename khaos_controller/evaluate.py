"""`khaos evaluate EVAL.yml`: Khaos against static checkpoint intervals, side by side.

K copies of the job with static intervals and one copy whose interval the Khaos daemon
(`khaos run`) manages run at the same time as separate jobs on ONE Flink cluster, replay the same
trace from the same start instant and live through the same failures: a killed TaskManager or
host takes down every copy with a task on it at the same moment. Every copy is sampled twice a
second (following the Khaos copy across reconfigurations); afterwards the samples become one row
per second and copy, and the copies are scored on the SAME per-second rules:

  violation  the sink's p99 latency of that second > L_max, or the copy is down (not every task
             RUNNING, or no job); a second without a sink measurement keeps the previous second's
             state ("carried").
  recovery   from the kill to the start of the first `consecutive_s` violation-free seconds after
             the first violation it caused (0 if it caused none); NaN if not recovered before the
             next failure or the end.

Everything is reproducible from the seed: the trace (when synthetic) and the failure schedule.
docs/evaluation.md explains the choices and the results.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import REPO_ROOT, ansible, audit, models, workload
from .chaos import inventory_host, running_job
from .config import field_error as _err, number as _num, read_mapping
from .errors import KhaosError
from .flink import FlinkClient, FlinkError
from .probe import JobProbe

KHAOS = "khaos"  # the name of the Khaos-managed copy
MODES = ("process", "host")
_DEFAULT_ARGS = ["--trace", "{trace}", "--output", "{output}", "--start", "{start_ms}"]


@dataclass
class Evaluation:
    path: Path
    text: str
    name: str
    seed: int
    statics: list[float]
    jar: Path
    args: list[str]
    parallelism: int
    trace_file: Path | None
    synthetic: dict
    limits: dict
    khaos: dict
    failures: dict
    lab: str | None = None
    hosts: int = 3
    inventory: Path | None = None
    slots: int | None = None
    tm_memory: str = "1600m"
    consecutive_s: int = 5
    sample_s: float = 0.5
    lead_s: float = 60.0
    output: Path = Path("out/evaluate")
    model_path: Path | None = None
    results: list[Path] = field(default_factory=list)

    @property
    def copies(self) -> list[str]:
        return [f"static-{c:g}" for c in self.statics] + [KHAOS]

    def job_name(self, copy: str) -> str:
        return f"eval-{copy}"

    def interval(self, copy: str) -> float:
        """The interval a copy starts with (the static one, or Khaos's start_ci_s)."""
        return self.khaos["start_ci_s"] if copy == KHAOS else self.statics[self.copies.index(copy)]


# ------------------------------------------------------------------------------------------- config

def _map(path, raw, name, known):
    sec = raw.get(name) or {}
    if not isinstance(sec, dict):
        raise _err(path, name, "must be a mapping")
    unknown = sorted(set(sec) - set(known))
    if unknown:
        raise _err(path, f"{name}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(known))})")
    return sec


def _file(path: Path, where: str, value) -> Path:
    p = Path(str(value))
    for cand in (p, REPO_ROOT / p, path.parent / p):
        if cand.exists():
            return cand.resolve()
    raise _err(path, where, f"{value} does not exist")


def load(path: str | Path) -> Evaluation:
    """Read and check an evaluation file; every problem is one line `FILE: field: problem`."""
    path, raw = read_mapping(path, "evaluation")
    known = {"name", "seed", "job", "workload", "statics", "khaos", "limits", "failures", "cluster",
             "measurement", "output"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _err(path, unknown[0], f"unknown field (known: {', '.join(sorted(known))})")
    seed = _num(path, "seed", raw.get("seed", 1), 0, integer=True)

    job = _map(path, raw, "job", {"jar", "args", "parallelism"})
    jar = _file(path, "job.jar", job.get("jar", "build/jobs/iot-vehicles.jar"))
    args = job.get("args", _DEFAULT_ARGS)
    if not isinstance(args, list) or "{trace}" not in args:
        raise _err(path, "job.args", "must be a list of strings that passes {trace} to the job")
    parallelism = _num(path, "job.parallelism", job.get("parallelism", 2), 1, 64, True)

    wl = _map(path, raw, "workload", {"trace", "seconds", "low", "high", "bursts", "noise"})
    trace_file, synthetic = None, {}
    if "trace" in wl:
        trace_file = _file(path, "workload.trace", wl["trace"])
        workload.load_trace(trace_file)  # one-line error if it is not a trace
    else:
        synthetic = {"seconds": _num(path, "workload.seconds", wl.get("seconds", 1500), 60, 86400, True),
                     "low": float(_num(path, "workload.low", wl.get("low", 400), 0)),
                     "high": float(_num(path, "workload.high", wl.get("high", 2400), 1)),
                     "bursts": _num(path, "workload.bursts", wl.get("bursts", 3), 0, 100, True),
                     "noise": float(_num(path, "workload.noise", wl.get("noise", 0.05), 0, 1))}
        if synthetic["low"] > synthetic["high"]:
            raise _err(path, "workload", f"low {synthetic['low']:g} > high {synthetic['high']:g}")

    statics = raw.get("statics")
    if not isinstance(statics, list) or not statics:
        raise _err(path, "statics", "missing: a list of static checkpoint intervals in seconds, e.g. [10, 30, 60]")
    statics = [float(_num(path, f"statics[{i}]", c, 1, 3600)) for i, c in enumerate(statics)]
    if len(set(statics)) != len(statics):
        raise _err(path, "statics", "has duplicates")

    lim = _map(path, raw, "limits", {"latency_ms", "recovery_s"})
    if "latency_ms" not in lim or "recovery_s" not in lim:
        raise _err(path, "limits", "both latency_ms (L_max) and recovery_s (R_max) are required")
    limits = {"latency_ms": float(_num(path, "limits.latency_ms", lim["latency_ms"], 1)),
              "recovery_s": float(_num(path, "limits.recovery_s", lim["recovery_s"], 0.1))}

    kh = _map(path, raw, "khaos", {"model", "results", "start_ci_s", "mode", "ci", "loop"})
    model_path, results = None, []
    if "model" in kh:
        model_path = _file(path, "khaos.model", kh["model"])
    elif "results" in kh:
        results = [_file(path, "khaos.results", r) for r in (kh["results"] if isinstance(kh["results"], list) else [kh["results"]])]
    else:
        raise _err(path, "khaos", "needs model (a `khaos fit` model) or results (profile results.csv to fit)")
    ci = kh.get("ci") or {}
    loop = kh.get("loop") or {}
    if not isinstance(ci, dict) or not isinstance(loop, dict):
        raise _err(path, "khaos", "ci and loop must be mappings (see docs/daemon.md)")
    khaos = {"start_ci_s": float(_num(path, "khaos.start_ci_s", kh.get("start_ci_s", statics[len(statics) // 2]), 1, 3600)),
             "mode": str(kh.get("mode", "process")),
             "ci": {"min": 2, "max": max(statics), "step": 1, "dead_band_s": 3, "cooldown_s": 60, **ci},
             "loop": {"period_s": 15, "window_s": 15, "min_uptime_s": 20, "forecast_step_s": 5, **loop}}

    fl = _map(path, raw, "failures", {"count", "modes", "first_s", "min_gap_s", "at", "target"})
    modes = fl.get("modes", ["process", "process", "host"])
    if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes):
        raise _err(path, "failures.modes", f"must be a list of {' / '.join(MODES)} (cycled over the failures)")
    failures = {"modes": modes, "target": str(fl.get("target", "shared")),
                "count": _num(path, "failures.count", fl.get("count", 6), 0, 1000, True),
                "first_s": float(_num(path, "failures.first_s", fl.get("first_s", 180), 0)),
                "min_gap_s": float(_num(path, "failures.min_gap_s", fl.get("min_gap_s", 150), 1))}
    if "at" in fl:
        at = fl["at"]
        if not isinstance(at, list) or any(isinstance(a, bool) or not isinstance(a, (int, float)) or a < 0 for a in at):
            raise _err(path, "failures.at", "must be a list of seconds since the start")
        failures["at"] = sorted(float(a) for a in at)

    cl = _map(path, raw, "cluster", {"lab", "hosts", "inventory", "slots", "tm_memory"})
    lab, inventory = cl.get("lab", "ev"), None
    if "inventory" in cl:
        inventory, lab = _file(path, "cluster.inventory", cl["inventory"]), None
    hosts = _num(path, "cluster.hosts", cl.get("hosts", 3), 2, 10, True)
    slots = cl.get("slots")
    if slots is not None:
        slots = _num(path, "cluster.slots", slots, 1, 256, True)

    ms = _map(path, raw, "measurement", {"consecutive_s", "sample_s", "lead_s"})
    ev = Evaluation(path=path, text=path.read_text(), name=str(raw.get("name", path.stem)), seed=int(seed),
                    statics=statics, jar=jar, args=[str(a) for a in args], parallelism=int(parallelism),
                    trace_file=trace_file, synthetic=synthetic, limits=limits, khaos=khaos, failures=failures,
                    lab=lab, hosts=int(hosts), inventory=inventory, slots=slots,
                    tm_memory=str(cl.get("tm_memory", "1600m")),
                    consecutive_s=_num(path, "measurement.consecutive_s", ms.get("consecutive_s", 5), 1, 600, True),
                    sample_s=float(_num(path, "measurement.sample_s", ms.get("sample_s", 0.5), 0.2, 5)),
                    lead_s=float(_num(path, "measurement.lead_s", ms.get("lead_s", 60), 5, 600)),
                    output=Path(str(raw.get("output", f"out/evaluate/{path.stem}"))),
                    model_path=model_path, results=results)
    if not ev.output.is_absolute():
        ev.output = REPO_ROOT / ev.output
    return ev


# --------------------------------------------------------------------------------------- the plan

def make_trace(ev: Evaluation) -> pd.Series:
    if ev.trace_file is not None:
        return workload.load_trace(ev.trace_file)
    s = ev.synthetic
    return workload.synthetic_day(s["seconds"], s["low"], s["high"], seed=ev.seed, bursts=s["bursts"], noise=s["noise"]).round()


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
            raise KhaosError(f"{ev.path}: failures: {f['count']} failures {gap:g} s apart do not fit between "
                             f"{lo:g} s and {hi:g} s of a {duration} s trace")
        # spread `count` points with the minimum gap: uniform offsets in the spare room, sorted
        offsets = np.sort(rng.uniform(0, max(room, 0), f["count"]))
        times = [round(lo + o + i * gap) for i, o in enumerate(offsets)]
    return [{"n": i + 1, "t": float(t), "mode": modes[i % len(modes)]} for i, t in enumerate(times)]


def describe(ev: Evaluation, trace: pd.Series, schedule: list[dict]) -> str:
    lines = [f"evaluation {ev.name} (seed {ev.seed}): {len(ev.copies)} copies on one cluster: "
             + ", ".join(f"{c} ({ev.job_name(c)})" for c in ev.copies),
             f"  workload: {len(trace)} s, {trace.min():.0f}..{trace.max():.0f} events/s (mean {trace.mean():.0f})"
             + (f" from {ev.trace_file}" if ev.trace_file else f" synthetic day, {ev.synthetic['bursts']} bursts"),
             f"  limits: p99 latency {ev.limits['latency_ms']:g} ms, recovery {ev.limits['recovery_s']:g} s",
             f"  khaos: starts at {ev.khaos['start_ci_s']:g} s, candidates {ev.khaos['ci']['min']:g}-{ev.khaos['ci']['max']:g} s, "
             f"decides every {ev.khaos['loop']['period_s']:g} s, model "
             + (str(ev.model_path) if ev.model_path else "fitted from " + ", ".join(map(str, ev.results))),
             f"  failures ({len(schedule)}, target {ev.failures['target']}): "
             + ", ".join(f"{f['mode']} at {f['t']:g} s" for f in schedule),
             f"  cluster: " + (f"lab {ev.lab} ({ev.hosts} hosts)" if ev.lab else f"inventory {ev.inventory}")
             + f", {slots(ev)} slots per TaskManager, parallelism {ev.parallelism} per copy",
             f"  output: {ev.output}"]
    return "\n".join(lines)


def slots(ev: Evaluation) -> int:
    """Room for every copy on ONE TaskManager: after a host kill the survivors can run them all."""
    return ev.slots or len(ev.copies) * ev.parallelism


# ------------------------------------------------------------------------------------- sampling

class CopySampler(threading.Thread):
    """Samples one copy (a job found by name, followed across resubmissions) every `period` s."""

    def __init__(self, client: FlinkClient, job: str, stop: threading.Event, period: float):
        super().__init__(daemon=True, name=f"sample-{job}")
        self.client, self.job, self.stop, self.period = client, job, stop, period
        self.rows: list[dict] = []
        self._probe: JobProbe | None = None
        self._ci: dict[str, float] = {}

    def _current(self) -> str | None:
        live = self.client.live_jobs(self.job)
        return max(live, key=lambda j: j.get("start-time", 0))["jid"] if live else None

    def sample(self) -> dict:
        t = time.time()
        try:
            jid = self._current()
            if jid is None:
                return {"t": t, "job_id": None, "all_running": False}
            if self._probe is None or self._probe.job_id != jid:
                self._probe = JobProbe(self.client, jid)
            if jid not in self._ci:
                self._ci[jid] = self.client.checkpoint_interval_ms(jid) / 1000
            s = self._probe.sample()
        except (FlinkError, KhaosError) as e:
            return {"t": t, "job_id": None, "all_running": False, "error": str(e)[:120]}
        return {"t": s.t, "job_id": jid, "ci_s": self._ci[jid], "state": s.state, "all_running": s.all_running,
                "restarts": s.restarts, "checkpoints": s.checkpoints_completed, "rate": s.rate,
                "throughput": s.throughput, "lag_ms": s.lag_ms, "backlog": s.backlog,
                "latency_p99_ms": s.latency_p99_ms, "latency_max_ms": s.latency_ms,
                "sink_count": s.sink_last_second, "sink_second": s.sink_second}

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.rows.append(self.sample())
            self.stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def frame(self) -> pd.DataFrame:
        cols = ["t", "job_id", "ci_s", "state", "all_running", "restarts", "checkpoints", "rate", "throughput",
                "lag_ms", "backlog", "latency_p99_ms", "latency_max_ms", "sink_count", "sink_second", "error"]
        return pd.DataFrame(list(self.rows), columns=cols)


# ------------------------------------------------------------------------------------- scoring

def per_second(samples: pd.DataFrame, start_s: int, offered: np.ndarray, l_max_ms: float) -> pd.DataFrame:
    """One row per second [start_s, start_s + len(offered)) from a copy's samples (module docstring)."""
    n = len(offered)
    sec = pd.DataFrame({"second": start_s + np.arange(n), "t": np.arange(n), "offered_rate": np.asarray(offered, float)})
    df = samples.sort_values("t").copy()
    df["s"] = np.floor(df["t"]).astype(int)
    df["down"] = ~df["all_running"].fillna(False).astype(bool)
    state = df.groupby("s").agg(job_id=("job_id", "last"), ci_s=("ci_s", "last"), rate=("rate", "last"),
                                lag_ms=("lag_ms", "last"), down=("down", "max"))
    # a second without any sample keeps the state of the last sample before it
    state = state.reindex(range(int(df["s"].min()) if len(df) else start_s, start_s + n)).ffill()
    state = state.reindex(sec["second"])
    sink = df[df["sink_second"].notna()].groupby("sink_second").agg(
        latency_p99_ms=("latency_p99_ms", "last"), latency_max_ms=("latency_max_ms", "last"),
        throughput=("sink_count", "last"))
    sink = sink.reindex(sec["second"].astype(float))
    for col in ("job_id", "ci_s", "rate", "lag_ms"):
        sec[col] = state[col].to_numpy()
    sec["up"] = (~state["down"].fillna(True).astype(bool)).astype(int).to_numpy()
    for col in ("throughput", "latency_p99_ms", "latency_max_ms"):
        sec[col] = sink[col].to_numpy()
    sec["measured"] = sec["latency_p99_ms"].notna().astype(int)
    violation, reason, prev = [], [], 0
    for up, measured, p99 in zip(sec["up"], sec["measured"], sec["latency_p99_ms"]):
        if measured and p99 > l_max_ms:
            v, r = 1, "latency"
        elif not up:
            v, r = 1, "down"
        elif measured:
            v, r = 0, ""
        else:
            v, r = prev, "carried" if prev else ""
        violation.append(v)
        reason.append(r)
        prev = v
    sec["violation"], sec["reason"] = violation, reason
    return sec


def hit(samples: pd.DataFrame, at: float, window_s: float = 30.0) -> bool:
    """Did the failure at `at` take this copy down: the job it ran then restarted or stopped running?"""
    before = samples[(samples["t"] <= at) & samples["job_id"].notna()].tail(1)
    if before.empty:
        return False
    jid, restarts = before["job_id"].iloc[0], before["restarts"].iloc[0]
    after = samples[(samples["t"] > at) & (samples["t"] <= at + window_s) & (samples["job_id"] == jid)]
    return bool(((after["restarts"] > restarts) | ~after["all_running"].astype(bool)).any())


def recovery_s(sec: pd.DataFrame, at: float, until: float, consecutive_s: int, first_within_s: float = 30.0) -> float:
    """Seconds from the kill at `at` to the start of the first `consecutive_s` violation-free seconds
    after the first violation it caused (0.0 if none within first_within_s; NaN if none before `until`)."""
    t0 = sec["second"].iloc[0]
    v = sec["violation"].to_numpy()
    i0 = max(0, int(math.floor(at)) - t0)
    end = min(len(v), int(math.floor(until)) - t0)
    bad = [i for i in range(i0, min(end, i0 + int(first_within_s) + 1)) if v[i]]
    if not bad:
        return 0.0
    run = 0
    for i in range(bad[0], end):
        run = run + 1 if not v[i] else 0
        if run == consecutive_s:
            return float(t0 + i - consecutive_s + 1 - at)
    return float("nan")


def score(seconds: dict[str, pd.DataFrame], samples: dict[str, pd.DataFrame], failures: list[dict],
          reconfigs: list[dict], audits: dict[str, dict], limits: dict, consecutive_s: int,
          ci_label: dict[str, str], end: float) -> pd.DataFrame:
    """The table: one row per copy. Fills failures[i]['hit'] / ['recovery_s'] per copy."""
    for i, f in enumerate(failures):
        until = failures[i + 1]["at"] if i + 1 < len(failures) else end
        f["hit"], f["recovery_s"] = {}, {}
        for copy, sec in seconds.items():
            f["hit"][copy] = hit(samples[copy], f["at"])
            f["recovery_s"][copy] = recovery_s(sec, f["at"], until, consecutive_s) if f["hit"][copy] else None
    rows = []
    for copy, sec in seconds.items():
        rec = np.array([f["recovery_s"][copy] for f in failures if f["hit"][copy]], dtype=float)
        lat = sec.loc[sec["measured"] == 1, "latency_p99_ms"]
        smp = samples[copy].dropna(subset=["job_id"])
        a = audits.get(copy, {})
        rows.append({
            "copy": copy, "ci": ci_label[copy],
            "violation_s": int(sec["violation"].sum()),
            "violation_pct": round(100.0 * sec["violation"].mean(), 2),
            "down_s": int((sec["reason"] == "down").sum()),
            "measured_pct": round(100.0 * sec.loc[sec["up"] == 1, "measured"].mean(), 1) if sec["up"].any() else 0.0,
            "recoveries": int(len(rec)),
            "recoveries_over_rmax": int(((rec > limits["recovery_s"]) | np.isnan(rec)).sum()),
            "recovery_mean_s": round(float(np.nanmean(rec)), 2) if np.isfinite(rec).any() else float("nan"),
            "recovery_max_s": round(float(np.nanmax(rec)), 2) if np.isfinite(rec).any() else float("nan"),
            "latency_mean_ms": round(float(lat.mean()), 1) if len(lat) else float("nan"),
            "latency_p99_ms": round(float(lat.quantile(0.99)), 1) if len(lat) else float("nan"),
            "checkpoints": int(smp.groupby("job_id")["checkpoints"].max().sum()) if len(smp) else 0,
            "reconfigurations": sum(1 for r in reconfigs if r["copy"] == copy and r["status"] == "ok"),
            "audit_records": a.get("records"), "audit_lost": a.get("lost"), "audit_duplicated": a.get("duplicated"),
        })
    return pd.DataFrame(rows)


def ratios(table: pd.DataFrame) -> dict:
    """Khaos violation seconds over the best and over the median static copy's."""
    statics = table[table["copy"] != KHAOS].set_index("copy")["violation_s"]
    k = float(table.loc[table["copy"] == KHAOS, "violation_s"].iloc[0])
    best, med = float(statics.min()), float(statics.median())

    def ratio(x: float) -> float | None:
        return round(k / x, 3) if x > 0 else (0.0 if k == 0 else None)
    return {"khaos_violation_s": k, "best_static": str(statics.idxmin()), "best_static_violation_s": best,
            "median_static_violation_s": med, "ratio_best": ratio(best), "ratio_median": ratio(med)}


def reconfigurations(journal: Path, start: float) -> list[dict]:
    """The Khaos copy's realized (or failed) changes, from the daemon's journal."""
    out = []
    if not journal.exists():
        return out
    for line in journal.read_text().splitlines():
        e = json.loads(line)
        r = e.get("realize") or {}
        if e.get("event") == "decision" and r.get("status") in ("ok", "failed"):
            out.append({"copy": KHAOS, "t": round(e["ts"] - start, 1), "from_ci_s": e["decision"].get("current_ci_s"),
                        "to_ci_s": r.get("target_ci_s"), "seconds": r.get("seconds"), "status": r["status"],
                        "rate": (e.get("inputs") or {}).get("demand_rate")})
    return out


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


# ------------------------------------------------------------------------------------------ the run

class Runner:
    def __init__(self, ev: Evaluation, keep: bool = False, progress: bool = True):
        self.ev, self.keep, self.progress = ev, keep, progress
        self.out = ev.output
        self.t0 = time.monotonic()
        self.lab = None
        self.daemon: subprocess.Popen | None = None
        self.samplers: dict[str, CopySampler] = {}
        self.stop = threading.Event()
        self.cluster_vars: dict = {}

    def say(self, text: str) -> None:
        if self.progress:
            print(f"[{time.monotonic() - self.t0:6.0f}s] {text}", flush=True)

    def playbook(self, name: str, ident: str, extravars: dict) -> ansible.PlaybookResult:
        return ansible.run_playbook(name, self.inventory, extravars={**self.cluster_vars, **extravars},
                                    ident=f"{ident}-{int(time.time() * 1000)}", base_dir=self.out / "ansible")

    def run(self) -> dict:
        ev = self.ev
        trace = make_trace(ev)
        schedule = failure_schedule(ev, len(trace))
        self.out.mkdir(parents=True, exist_ok=True)
        for sub in ("samples", "seconds"):
            (self.out / sub).mkdir(exist_ok=True)
        (self.out / "evaluation.yml").write_text(ev.text)
        self.say(describe(ev, trace, schedule))
        prev_term = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
        try:
            model_path = self._model()
            self._cluster()
            start = self._deploy(trace)
            self._start_watch(model_path, start)
            failures = self._inject(schedule, start, len(trace))
            self._stop_watch()
            audits = self._stop_jobs()
        finally:
            self._stop_watch()
            for copy, s in self.samplers.items():  # the raw data survives a failed run
                s.frame().to_csv(self.out / "samples" / f"{copy}.csv", index=False)
            signal.signal(signal.SIGTERM, prev_term)
            if self.lab is not None and not self.keep:
                self.lab.down(quiet=True)
                self.say(f"lab {self.lab.name} down")
        return self.finish(trace, start, failures, audits)

    def _model(self) -> Path:
        ev = self.ev
        if ev.model_path:
            return ev.model_path
        model = models.fit(models.load_results(ev.results), sources=[str(r) for r in ev.results])
        path = models.save_model(model, self.out / "model.json")
        self.say(f"model fitted from {', '.join(map(str, ev.results))}: {path}")
        return path

    def _cluster(self) -> None:
        ev = self.ev
        if ev.lab:
            from .lab import Lab
            lab = Lab(ev.lab)
            if lab.hosts:
                raise KhaosError(f"lab {ev.lab} is already up: `khaos lab down --name {ev.lab}` first")
            self.lab = lab
            self.say(f"lab up: {ev.hosts} hosts")
            lab.up(hosts=ev.hosts)
            self.inventory = lab.inventory
        else:
            self.inventory = ev.inventory
        data = ansible.inventory_list(self.inventory)
        jm = (data.get("flink_jobmanager", {}).get("hosts") or [None])[0]
        if jm is None:
            raise KhaosError(f"inventory {self.inventory}: no host in group flink_jobmanager")
        hv = data["_meta"]["hostvars"].get(jm, {})
        self.addresses = {n: v.get("ansible_host", n) for n, v in data["_meta"]["hostvars"].items()}
        self.shared = Path(hv.get("khaos_shared_dir") or "/srv/flink")
        self.rest_url = f"http://{hv.get('ansible_host', jm)}:{hv.get('flink_rest_port', 8081)}"
        # every copy fits on one TaskManager; slots are spread evenly when the copies are deployed (restarts
        # and resubmissions move them: _shared_target)
        self.cluster_vars = {"flink_config": {**(hv.get("flink_config") or {}),
                                              "taskmanager.numberOfTaskSlots": slots(ev),
                                              "taskmanager.memory.process.size": ev.tm_memory,
                                              "taskmanager.load-balance.mode": "slots"}}
        self.say(f"playbooks/flink_cluster.yml ({slots(ev)} slots per TaskManager)")
        self.playbook("flink_cluster", "eval-cluster", {})
        self.client = FlinkClient(self.rest_url)

    def _deploy(self, trace: pd.Series) -> float:
        ev = self.ev
        trace_path = self.shared / "traces" / f"eval-{ev.name}.txt"
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        workload.write_trace(trace, trace_path)
        start = math.ceil(time.time() + ev.lead_s)
        for copy in ev.copies:
            ci = ev.interval(copy)
            out = self.shared / "jobs" / ev.job_name(copy) / "out"
            fill = {"trace": str(trace_path), "output": str(out), "start_ms": str(start * 1000)}
            self.say(f"playbooks/deploy_job.yml: {ev.job_name(copy)}, interval {ci:g} s")
            self.playbook("deploy_job", f"eval-deploy-{copy}", {
                "flink_job_name": ev.job_name(copy), "flink_job_jar": str(ev.jar), "flink_job_parallelism": ev.parallelism,
                "flink_job_args": [a.format(**fill) for a in ev.args], "flink_job_output_dir": str(out),
                "flink_job_checkpoint_interval": f"{ci:g}s"})
        self.spread = self._placement()
        self.say("TaskManager hosts of each copy: " + ", ".join(f"{c} {'+'.join(h)}" for c, h in self.spread.items()))
        if time.time() > start:
            raise KhaosError(f"deploying took longer than measurement.lead_s allows ({ev.lead_s:g} s): raise it")
        return float(start)

    def _placement(self) -> dict[str, list[str]]:
        """Inventory hosts running tasks of each copy (a copy between two jobs has none)."""
        out = {}
        for copy in self.ev.copies:
            jids = [j["jid"] for j in self.client.live_jobs(self.ev.job_name(copy)) if j["state"] == "RUNNING"]
            hosts = set()
            for jid in jids:
                for v in self.client.job(jid)["vertices"]:
                    for tm in self.client.get(f"/jobs/{jid}/vertices/{v['id']}/taskmanagers").get("taskmanagers", []):
                        endpoint = tm.get("endpoint") or tm.get("host") or "?"
                        hosts.add(inventory_host(endpoint, self.addresses) or endpoint)
            out[copy] = sorted(hosts)
        return out

    def _shared_target(self) -> tuple[str, dict]:
        """Where to kill so that the failure takes down every copy. Spare slots let restarted and
        resubmitted jobs land on different TaskManagers, so one host is not always shared by all."""
        placement = self._placement()
        return ",".join(covering_hosts(placement)), placement

    def _start_watch(self, model_path: Path, start: float) -> None:
        ev = self.ev
        for copy in ev.copies:
            s = CopySampler(self.client, ev.job_name(copy), self.stop, ev.sample_s)
            s.start()
            self.samplers[copy] = s
        kh = ev.khaos
        self.journal = self.out / "khaos-journal.jsonl"
        if self.journal.exists():
            self.journal.unlink()
        cfg = {"job": ev.job_name(KHAOS), "flink": {"rest_url": self.rest_url}, "inventory": str(self.inventory),
               "model": str(model_path), "mode": kh["mode"], "limits": dict(ev.limits), "ci": kh["ci"],
               "loop": kh["loop"], "journal": str(self.journal), "metrics": None,
               "log": {"level": "info", "format": "kv"}}
        cfg_path = self.out / "khaos.yml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # the daemon starts with the trace: before it, the idle jobs would teach it nothing
        time.sleep(max(0.0, start - time.time()))
        self.daemon_log = open(self.out / "khaos-daemon.log", "w")
        self.daemon = subprocess.Popen([sys.executable, "-m", "khaos_controller.daemon", str(cfg_path)],
                                       stdout=self.daemon_log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.say(f"t=0: the trace starts for every copy; khaos daemon started (pid {self.daemon.pid}, "
                 f"config {cfg_path}, log {self.daemon_log.name})")

    def _inject(self, schedule: list[dict], start: float, duration: int) -> list[dict]:
        done, next_line = [], 0.0
        end = start + duration
        pending = list(schedule)
        while time.time() < end:
            if self.daemon.poll() is not None:
                raise KhaosError(f"the khaos daemon exited with {self.daemon.returncode}: see {self.daemon_log.name}")
            now = time.time()
            if pending and now >= start + pending[0]["t"]:
                done.append(self._kill(pending.pop(0), start))
            if now - start >= next_line:  # a progress line every 30 s (a host kill blocks for a while)
                self._progress(now - start, duration)
                next_line = (int((now - start) // 30) + 1) * 30
            time.sleep(0.5)
        return done

    def _kill(self, f: dict, start: float) -> dict:
        ev = self.ev
        self.say(f"failure {f['n']}: {f['mode']} kill (target {ev.failures['target']})")
        last, placement = None, None
        for attempt in range(3):  # the target job may be between two attempts of a reconfiguration
            try:
                target = ev.failures["target"]
                if target == "shared":
                    target, placement = self._shared_target()
                res = self.playbook("inject_failure", f"eval-fail{f['n']}", {
                    "chaos_mode": f["mode"], "chaos_target": target, "chaos_timing": "now",
                    "chaos_max_hosts": len(target.split(",")),
                    "chaos_job": ev.job_name(KHAOS), "chaos_seed": ev.seed * 1000 + f["n"]})
                kills = res.data.get("chaos_kills", [])
                if kills and all(k.get("dead") for k in kills):
                    at = min(float(k["killed_at"]) for k in kills)
                    plan = res.data.get("chaos_plan", {})
                    self.say(f"  killed {', '.join(plan.get('targets', []))} at t={at - start:.1f} s")
                    return {**f, "at": at, "t": round(at - start, 1), "target": ",".join(plan.get("targets", [])),
                            "placement": placement}
                last = f"the kill was not verified: {kills}"
            except KhaosError as e:
                last = str(e)
            time.sleep(2)
        raise KhaosError(f"failure {f['n']} ({f['mode']}) could not be injected: {last}")

    def _progress(self, t: float, duration: int) -> None:
        parts = []
        for copy, s in self.samplers.items():
            row = s.rows[-1] if s.rows else {}
            p99 = row.get("latency_p99_ms")
            ci = row.get("ci_s")
            parts.append(f"{copy} CI {'-' if ci is None or ci != ci else f'{ci:g}'} p99 {'-' if p99 is None or p99 != p99 else f'{p99:.0f}'}")
        self.say(f"t={t:5.0f}/{duration} s | " + " | ".join(parts))

    def _stop_watch(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)  # the daemon finishes a running reconfiguration first
            try:
                self.daemon.wait(timeout=400)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.say(f"khaos daemon stopped (exit {self.daemon.returncode})")
        self.stop.set()
        for s in self.samplers.values():
            s.join(5)

    def _stop_jobs(self) -> dict[str, dict]:
        """Stop every copy with a savepoint (retried while a copy restarts), then audit its sink."""
        audits = {}
        for copy in self.ev.copies:
            name, last = self.ev.job_name(copy), None
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    jid = running_job(self.client, name)
                    self.client.wait_running(jid, timeout=60)
                    self.client.stop_with_savepoint(jid)
                    break
                except (KhaosError, FlinkError) as e:
                    last = e
                    time.sleep(3)
            else:
                raise KhaosError(f"{name} could not be stopped with a savepoint: {last}")
            r = audit.audit(self.shared / "jobs" / name / "out")
            audits[copy] = {"records": r.records, "lost": r.lost, "duplicated": r.duplicated}
            self.say(f"{name} stopped with a savepoint; sink audit: {r.records} records, lost {r.lost}, "
                     f"duplicated {r.duplicated}")
        return audits

    # ---- results ----------------------------------------------------------------------------------
    def finish(self, trace: pd.Series, start: float, failures: list[dict], audits: dict) -> dict:
        ev = self.ev
        offered = trace.to_numpy()
        samples = {c: s.frame() for c, s in self.samplers.items()}
        seconds = {c: per_second(samples[c], int(start), offered, ev.limits["latency_ms"]) for c in ev.copies}
        for c in ev.copies:
            seconds[c].to_csv(self.out / "seconds" / f"{c}.csv", index=False)
        reconfigs = reconfigurations(self.journal, start)
        kh = ev.khaos["ci"]
        labels = {c: (f"khaos {kh['min']:g}-{kh['max']:g} s" if c == KHAOS else f"{ev.interval(c):g} s") for c in ev.copies}
        table = score(seconds, samples, failures, reconfigs, audits, ev.limits, ev.consecutive_s, labels,
                      start + len(trace))
        r = ratios(table)
        summary = {"name": ev.name, "seed": ev.seed, "start": start, "duration_s": len(trace),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)), "limits": ev.limits,
                   "consecutive_s": ev.consecutive_s, "placement": getattr(self, "spread", {}), **r,
                   "failures": failures, "reconfigurations": reconfigs, "audits": audits}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json))
        from . import evalreport
        meta = {**summary, "config": ev.text, "machine": machine(), "notes": notes(table, failures)}
        paths = evalreport.write_report(self.out, seconds, failures, reconfigs, table, meta)
        self.say("\n" + evalreport.markdown_table(table))
        self.say(f"report: {paths['html']}")
        return {"table": table, "summary": summary, "paths": paths}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _json(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if np.isnan(x) else float(x)
    return str(x)


def machine() -> str:
    import platform
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def notes(table: pd.DataFrame, failures: list[dict]) -> list[str]:
    out = []
    for f in failures:
        missed = [c for c, h in f.get("hit", {}).items() if not h]
        if missed:
            out.append(f"failure {f['n']} ({f['mode']} at {f['t']:g} s) did not take down: {', '.join(missed)}")
    bad = table[(table["audit_lost"].fillna(0) > 0) | (table["audit_duplicated"].fillna(0) > 0)]
    for _, row in bad.iterrows():
        out.append(f"{row['copy']}: sink audit lost {row['audit_lost']}, duplicated {row['audit_duplicated']}")
    return out


def run(path: str | Path, dry_run: bool = False, keep: bool = False, out: str | None = None) -> int:
    ev = load(path)
    if out:
        ev.output = Path(out).resolve()
    if dry_run:
        trace = make_trace(ev)
        print(describe(ev, trace, failure_schedule(ev, len(trace))))
        print("--dry-run: nothing started")
        return 0
    from .lab import require_root
    if ev.lab:
        require_root()
    result = Runner(ev, keep=keep).run()
    bad = result["table"][(result["table"]["audit_lost"] > 0) | (result["table"]["audit_duplicated"] > 0)]
    return 1 if len(bad) else 0
