"""The experiment file of `khaos profile`: what to run, break and measure.

Every problem is reported as one line `FILE: field: what is wrong`. See
examples/experiment-lab.yml for a commented example and docs/profiling.md for every field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import REPO_ROOT
from .config import field_error as _err, number as _number, read_mapping
from .errors import KhaosError

CI_RANGE_S = (1.0, 3600.0)
MODES = ("process", "host")


@dataclass
class JobSpec:
    jar: Path
    name: str = "iot-vehicles"
    entry_class: str = ""
    # program arguments; {rate}, {output}, {start_ms} are filled in per run
    args: list[str] = field(default_factory=lambda: ["--rate", "{rate}", "--output", "{output}", "--start", "{start_ms}"])
    parallelism: int = 2


@dataclass
class Experiment:
    path: Path
    name: str
    job: JobSpec
    checkpoint_intervals: list[float]
    rates: list[float]
    modes: list[str] = field(default_factory=lambda: ["process", "host"])
    repetitions: int = 1
    target: str = "sink"
    timing: str = "before_checkpoint"
    margin_s: float = 2.0
    seed: int = 1
    clusters: int = 2
    hosts: int = 3
    lab_prefix: str = "kp"
    inventories: list[Path] = field(default_factory=list)
    warmup_s: float = 30.0
    settle_s: float = 15.0
    recovery_timeout_s: float = 180.0
    consecutive_s: float = 8.0
    output: Path = Path("out/profile")
    trace: Path | None = None  # a recorded trace replayed around failure points instead of fixed rates
    points: list[dict] = field(default_factory=list)  # failure points [{t, target_rate, avg_rate}]

    @property
    def failures(self) -> int:
        return len(self.checkpoint_intervals) * len(self.rates) * len(self.modes) * self.repetitions

    @property
    def cluster_count(self) -> int:
        return len(self.inventories) if self.inventories else self.clusters


def load(path: str | Path) -> Experiment:
    path, raw = read_mapping(path, "experiment")
    known = {"name", "job", "checkpoint_intervals", "workload", "failures", "repetitions", "clusters",
             "measurement", "output"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _err(path, unknown[0], f"unknown field (known: {', '.join(sorted(known))})")
    base = path.parent

    job_raw = raw.get("job") or {}
    if not isinstance(job_raw, dict) or "jar" not in job_raw:
        raise _err(path, "job.jar", "missing (the job's jar file)")
    jar = Path(job_raw["jar"])
    jar = jar if jar.is_absolute() else (REPO_ROOT / jar if (REPO_ROOT / jar).exists() else base / jar)
    if not jar.is_file():
        raise _err(path, "job.jar", f"{jar} does not exist (build the sample job with `make job`)")
    job = JobSpec(jar=jar, name=str(job_raw.get("name", "iot-vehicles")),
                  entry_class=str(job_raw.get("entry_class", "")),
                  parallelism=_number(path, "job.parallelism", job_raw.get("parallelism", 2), 1, 256, True))
    if "args" in job_raw:
        if not isinstance(job_raw["args"], list):
            raise _err(path, "job.args", "must be a list of strings")
        job.args = [str(a) for a in job_raw["args"]]
    elif "trace" in (raw.get("workload") or {}):
        job.args = ["--trace", "{trace}", "--output", "{output}", "--start", "{start_ms}"]

    cis = raw.get("checkpoint_intervals")
    if not isinstance(cis, list) or not cis:
        raise _err(path, "checkpoint_intervals", "missing: a list of intervals in seconds, e.g. [5, 10, 20]")
    cis = [float(_number(path, f"checkpoint_intervals[{i}]", c, *CI_RANGE_S)) for i, c in enumerate(cis)]
    if len(set(cis)) != len(cis):
        raise _err(path, "checkpoint_intervals", "has duplicates")

    workload = raw.get("workload") or {}
    if not isinstance(workload, dict):
        raise _err(path, "workload", "must be a mapping with rates or trace")
    trace, points = None, []
    if "trace" in workload:
        from . import workload as wl
        trace = Path(workload["trace"])
        trace = trace if trace.is_absolute() else (REPO_ROOT / trace if (REPO_ROOT / trace).exists() else base / trace)
        fp = workload.get("failure_points") or {}
        try:
            pts = wl.failure_points(wl.load_trace(trace), count=int(fp.get("count", 5)),
                                    window=int(fp.get("window", 300)), min_distance=int(fp.get("min_distance", 1800)))
        except KhaosError as e:
            raise _err(path, "workload.trace", str(e)) from None
        points = pts.to_dict("records")
        rates = [float(p["avg_rate"]) for p in points]
    else:
        rates = workload.get("rates")
        if not isinstance(rates, list) or not rates:
            raise _err(path, "workload.rates", "missing: a list of input rates in events/s (or a trace)")
        rates = [float(_number(path, f"workload.rates[{i}]", r, 1, 1_000_000)) for i, r in enumerate(rates)]

    fail = raw.get("failures") or {}
    if not isinstance(fail, dict):
        raise _err(path, "failures", "must be a mapping")
    modes = fail.get("modes", ["process", "host"])
    if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes):
        raise _err(path, "failures.modes", f"{modes!r}: use a list of {', '.join(MODES)}")
    timing = fail.get("timing", "before_checkpoint")
    if timing not in ("now", "before_checkpoint"):
        raise _err(path, "failures.timing", f"{timing!r}: use now or before_checkpoint")
    margin = float(_number(path, "failures.margin_s", fail.get("margin_s", 2.0), 0, 3600))
    if timing == "before_checkpoint" and margin >= min(cis):
        raise _err(path, "failures.margin_s", f"{margin:g}s must be shorter than the smallest interval {min(cis):g}s")

    clusters = raw.get("clusters") or {}
    inventories = [Path(p) for p in clusters.get("inventories", [])]
    for inv in inventories:
        if not inv.exists():
            raise _err(path, "clusters.inventories", f"{inv} does not exist")
    meas = raw.get("measurement") or {}
    exp = Experiment(
        path=path, name=str(raw.get("name", path.stem)), job=job, checkpoint_intervals=cis, rates=rates,
        modes=modes, repetitions=_number(path, "repetitions", raw.get("repetitions", 1), 1, 100, True),
        target=str(fail.get("target", "sink")), timing=timing, margin_s=margin,
        seed=_number(path, "failures.seed", fail.get("seed", 1), 0, None, True),
        clusters=_number(path, "clusters.count", clusters.get("count", 2), 1, 8, True),
        hosts=_number(path, "clusters.hosts", clusters.get("hosts", 3), 3, 10, True),
        lab_prefix=str(clusters.get("lab_prefix", "kp")), inventories=inventories,
        warmup_s=float(_number(path, "measurement.warmup_s", meas.get("warmup_s", 30), 5, 3600)),
        settle_s=float(_number(path, "measurement.settle_s", meas.get("settle_s", 15), 0, 3600)),
        recovery_timeout_s=float(_number(path, "measurement.recovery_timeout_s",
                                         meas.get("recovery_timeout_s", 180), 10, 7200)),
        consecutive_s=float(_number(path, "measurement.consecutive_s", meas.get("consecutive_s", 8), 1, 600)),
        output=Path(raw.get("output", f"out/profile-{path.stem}")), trace=trace, points=points,
    )
    if trace and not any("{trace}" in a for a in job.args):
        raise _err(path, "job.args", "a trace workload needs {trace} in the job's arguments")
    if not exp.lab_prefix.isalnum() or not exp.lab_prefix[0].isalpha() or len(exp.lab_prefix) > 6:
        raise _err(path, "clusters.lab_prefix", f"{exp.lab_prefix!r}: 1-6 letters/digits, starting with a letter")
    if "host" in modes and exp.hosts < 3 and not inventories:
        raise _err(path, "clusters.hosts", "host kills need >= 3 hosts (1 JobManager + 2 TaskManagers)")
    return exp
