"""The evaluation file of `khaos evaluate`: its schema and the resolved :class:`Evaluation`.

:class:`EvaluationFile` is the one table of keys (types, defaults, bounds, help); it renders the table
in docs/evaluation.md. ``khaos.ci`` and ``khaos.loop`` are the daemon's own sections (control/config.py)
with evaluation defaults. examples/evaluate.yml is a commented example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .. import REPO_ROOT
from ..control.config import CISection, Limits, LoopSection
from ..errors import KhaosError
from ..kafka.feed import SAMPLE_ARGS, KafkaSection, KafkaSpec, check_args, resolve
from ..model import store
from ..profile.experiment import TRACE_ARGS
from ..schema import (
    MAX_DURATION_S,
    MAX_RATE,
    FailureMode,
    JobBase,
    Section,
    dir_problem,
    field_error,
    read_mapping,
    resolve_path,
    validate,
)

KHAOS = "khaos"  # the name of the Khaos-managed copy (khaos-pace, khaos-restart when there are two)
LOOP_DEFAULTS = {"period_s": 15, "window_s": 15, "min_uptime_s": 20, "forecast_step_s": 5}
Interval = Annotated[float, Field(ge=1, le=3600)]
Realize = Literal["pace", "restart"]


def is_khaos(copy: str) -> bool:
    """Whether a copy is Khaos-managed (the others are static-<interval>)."""
    return copy == KHAOS or copy.startswith(f"{KHAOS}-")


class JobSection(JobBase):
    """Section job: the job every copy runs (its args and parallelism: schema.JobBase)."""

    jar: str = Field("build/jobs/iot-vehicles.jar", min_length=1, description="the job's jar")


class WorkloadSection(Section):
    """Section workload: the trace every copy replays."""

    trace: str | None = Field(
        None,
        min_length=1,
        description="a trace file (one rate per line, or a recorded t,rate CSV) instead of the synthetic day",
    )
    seconds: int = Field(1500, ge=60, le=86400, description="length of the synthetic day, s")
    low: float = Field(400.0, ge=0, le=MAX_RATE, description="events/s at night")
    high: float = Field(2400.0, ge=1, le=MAX_RATE, description="events/s at noon (plus bursts)")
    bursts: int = Field(3, ge=0, le=100, description="bursts of +20..50 % of high, 30-300 s each")
    noise: float = Field(0.05, ge=0, le=1, description="noise, as a fraction of high - low")

    @model_validator(mode="after")
    def _order(self) -> WorkloadSection:
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} > high {self.high:g}")
        return self


class KhaosSection(Section):
    """Section khaos: the Khaos-managed copy (the daemon's model, start interval, ci and loop)."""

    model: str | None = Field(None, min_length=1, description="a `khaos fit` model (or results)")
    results: list[str] | str | None = Field(None, description="profile results.csv to fit at the start")
    realize: Realize | list[Realize] = Field(
        "restart",
        description="how the daemon changes the interval: restart (stop-with-savepoint + resubmit) or pace "
        "(checkpoints triggered over REST; the copy's configured interval is the safety net); "
        "[pace, restart]: two Khaos copies side by side, khaos-pace and khaos-restart, a daemon each",
    )
    start_ci_s: float | None = Field(
        None,
        ge=1,
        le=3600,
        description="the interval the Khaos copies start with, inside khaos.ci's range (default: the middle static; with pace: the longest, its safety net)",
    )
    mode: FailureMode = Field("process", description="failure mode the daemon plans for")
    ci: dict = Field(
        {},
        description="the daemon's ci section (docs/daemon.md); default min 2, max the longest "
        "static, step 1, dead_band_s 3, cooldown_s 60",
    )
    loop: dict = Field(
        LOOP_DEFAULTS,
        description="the daemon's loop section (docs/daemon.md), short-run values; a key not given keeps its default",
    )

    @field_validator("realize")
    @classmethod
    def _realizers(cls, realize):
        if isinstance(realize, list) and (not realize or len(set(realize)) != len(realize)):
            raise ValueError("a list names pace and/or restart, each once")
        return realize

    @model_validator(mode="after")
    def _source(self) -> KhaosSection:
        if self.model is None and self.results is None:
            raise ValueError("needs model (a `khaos fit` model) or results (profile results.csv to fit)")
        return self


class FailuresSection(Section):
    """Section failures: the failure schedule."""

    count: int = Field(6, ge=0, le=1000, description="failures drawn from the seed")
    modes: list[FailureMode] = Field(
        ["process", "process", "host"], min_length=1, description="cycled over the failures"
    )
    first_s: float = Field(180.0, ge=0, le=MAX_DURATION_S, description="no failure before this second")
    min_gap_s: float = Field(150.0, ge=1, le=MAX_DURATION_S, description="seconds between two failures, at least")
    at: list[Annotated[float, Field(ge=0, le=MAX_DURATION_S)]] | None = Field(
        None, description="exact seconds instead of drawing them"
    )
    target: str = Field(
        "shared",
        min_length=1,
        description="shared: the fewest TaskManager hosts that take down every copy; or a host / group:NAME",
    )


class ClusterSection(Section):
    """Section cluster: a lab or your own inventory."""

    lab: str = Field("ev", pattern=r"^[a-z][a-z0-9]{0,7}$", description="lab name (1-8 lowercase letters/digits)")
    hosts: int = Field(3, ge=2, le=10, description="lab hosts (1 JobManager + TaskManagers)")
    inventory: str | None = Field(None, min_length=1, description="your own cluster's inventory instead of a lab")
    slots: int | None = Field(None, ge=1, le=256, description="slots per TaskManager (default: every copy fits on one)")
    tm_memory: str = Field("1600m", pattern=r"^\d+[kmg]?$", description="taskmanager.memory.process.size")


class MeasurementSection(Section):
    """Section measurement: sampling and scoring."""

    consecutive_s: int = Field(5, ge=1, le=600, description="violation-free seconds that end a recovery")
    sample_s: float = Field(0.5, ge=0.2, le=5, description="seconds between samples of every copy")
    lead_s: float = Field(60.0, ge=5, le=600, description="seconds from the first deployment to t=0")


class EvaluationFile(Section):
    """Every key of an evaluation file."""

    name: str | None = Field(None, min_length=1, description="evaluation name (default: the file name)")
    seed: int = Field(1, ge=0, description="the trace and the failure schedule follow from it")
    job: JobSection = Field(default_factory=JobSection)
    workload: WorkloadSection = Field(default_factory=WorkloadSection)
    statics: list[Interval] = Field(
        min_length=1, description="a list of static checkpoint intervals in seconds, e.g. [10, 30, 60]"
    )
    limits: Limits = Field(description="both latency_ms (L_max) and recovery_s (R_max) are required")
    khaos: KhaosSection = Field(description="needs model (a `khaos fit` model) or results (profile results.csv)")
    failures: FailuresSection = Field(default_factory=FailuresSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    measurement: MeasurementSection = Field(default_factory=MeasurementSection)
    kafka: KafkaSection | None = Field(
        None,
        description="the job reads Kafka: a topic and group per copy, one replay of the trace (or "
        "kafka.recording) into all of them (docs/evaluation.md)",
    )
    output: str | None = Field(None, min_length=1, description="output directory (default out/evaluate/NAME)")

    @field_validator("statics")
    @classmethod
    def _unique(cls, statics):
        if len(set(statics)) != len(statics):
            raise ValueError("has duplicates")
        return statics


@dataclass
class Evaluation:
    """A validated evaluation with resolved files."""

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
    kafka: KafkaSpec | None = None  # the copies read Kafka: a topic and group each, one replay

    @property
    def audit(self) -> bool:
        """Whether the copies' sinks are audited (the job writes ids to {output})."""
        return any("{output}" in a for a in self.args)

    @property
    def khaos_copies(self) -> dict[str, str]:
        """The Khaos-managed copies and each one's realizer: {khaos: mode}, or {khaos-pace: pace, ...}."""
        modes = self.khaos["realize"]
        return {KHAOS: modes[0]} if len(modes) == 1 else {f"{KHAOS}-{m}": m for m in modes}

    @property
    def copies(self) -> list[str]:
        """The copies' names: static-<interval> ... and the Khaos copies."""
        return [f"static-{c:g}" for c in self.statics] + list(self.khaos_copies)

    def job_name(self, copy: str) -> str:
        """The Flink job name of a copy."""
        return f"eval-{copy}"

    def interval(self, copy: str) -> float:
        """The interval a copy starts with (the static one, or its realizer's start_ci_s)."""
        if copy in self.khaos_copies:
            return self.khaos["start_ci_s"][self.khaos_copies[copy]]
        return self.statics[self.copies.index(copy)]


def _file(path: Path, where: str, value: str) -> Path:
    cand = resolve_path(path.parent, value)
    if not cand.exists():
        raise field_error(path, where, f"{value} does not exist")
    if not cand.is_file() and where != "cluster.inventory":
        raise field_error(path, where, f"{value} is not a file")
    return cand.resolve()


def load(path: str | Path) -> Evaluation:
    """Read and check an evaluation file; every problem is one line `FILE: field: problem`. Files it names
    (jar, trace, model, results, inventory) are checked too, so a dry run that passes does not fail later
    for a config reason."""
    path, raw = read_mapping(path, "evaluation")
    f: EvaluationFile = validate(EvaluationFile, raw, path)
    statics = [float(c) for c in f.statics]
    jar = _file(path, "job.jar", f.job.jar)
    spec = resolve(f.kafka, path, path.parent) if f.kafka is not None else None
    args = list(f.job.args if f.job.args is not None else (SAMPLE_ARGS if spec is not None else TRACE_ARGS))
    if spec is None and "{trace}" not in args:
        raise field_error(path, "job.args", "must pass {trace} to the job (or read Kafka: a kafka section)")
    check_args(path, args, spec)
    trace_file, synthetic = _workload(path, f.workload, spec)
    model_path, results = _model(path, f.khaos)
    cl = f.cluster
    lab, inventory = cl.lab, None
    if cl.inventory is not None:
        inventory, lab = _file(path, "cluster.inventory", cl.inventory), None
    m = f.measurement
    name = f.name or path.stem
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        raise field_error(path, "name", f"{name!r}: use 1-64 letters, digits, '.', '_' or '-' (it names files)")
    ev = Evaluation(
        path=path,
        text=path.read_text(),
        name=name,
        seed=f.seed,
        statics=statics,
        jar=jar,
        args=args,
        parallelism=f.job.parallelism,
        trace_file=trace_file,
        synthetic=synthetic,
        limits={"latency_ms": float(f.limits.latency_ms), "recovery_s": float(f.limits.recovery_s)},
        khaos=_khaos(path, f.khaos, statics),
        failures=_failures(f.failures),
        lab=lab,
        hosts=cl.hosts,
        inventory=inventory,
        slots=cl.slots,
        tm_memory=cl.tm_memory,
        consecutive_s=m.consecutive_s,
        sample_s=float(m.sample_s),
        lead_s=float(m.lead_s),
        output=Path(f.output or f"out/evaluate/{path.stem}"),
        model_path=model_path,
        results=results,
        kafka=spec,
    )
    if not ev.output.is_absolute():
        ev.output = REPO_ROOT / ev.output
    why = dir_problem(ev.output)
    if why:
        raise field_error(path, "output" if f.output else "output (default)", why)
    return ev


def _workload(path: Path, wl: WorkloadSection, spec: KafkaSpec | None) -> tuple[Path | None, dict]:
    """(trace file, synthetic-day settings): a kafka recording's rates, a trace file (it must load), or the
    synthetic day."""
    from ..profile import workload

    if spec is not None and spec.recording is not None:
        if wl.trace is not None:
            raise field_error(path, "workload.trace", "kafka.recording replays the recorded rates: leave it out")
        return None, {"seconds": wl.seconds, "recording": str(spec.recording)}  # its rates, looped to seconds
    if wl.trace is not None:
        trace_file = _file(path, "workload.trace", wl.trace)
        try:
            workload.load_trace(trace_file)
        except KhaosError as e:
            raise field_error(path, "workload.trace", str(e)) from None
        return trace_file, {}
    return None, {
        "seconds": wl.seconds,
        "low": float(wl.low),
        "high": float(wl.high),
        "bursts": wl.bursts,
        "noise": float(wl.noise),
    }


def _model(path: Path, kh: KhaosSection) -> tuple[Path | None, list[Path]]:
    """(model file, results files) of the Khaos copy: a model that loads and knows the mode, or results that
    can be fitted now (they are, at the start of the run)."""
    if kh.model is not None:
        model_path = _file(path, "khaos.model", kh.model)
        try:
            model = store.load(model_path)
        except KhaosError as e:
            raise field_error(path, "khaos.model", str(e)) from None
        missing = model.unprofiled(kh.mode)
        if missing:
            raise field_error(path, "khaos.mode", missing)
        return model_path, []
    from ..model import fit as model_fit

    results = [_file(path, "khaos.results", r) for r in (kh.results if isinstance(kh.results, list) else [kh.results])]
    try:
        rec, _, _ = model_fit.usable(model_fit.load_results(results))
    except KhaosError as e:
        raise field_error(path, "khaos.results", str(e)) from None
    profiled = sorted(set(rec["mode"]))
    if kh.mode not in profiled:
        raise field_error(
            path, "khaos.mode", f"{kh.mode!r} was not profiled in khaos.results (they have {', '.join(profiled)})"
        )
    return None, results


def _khaos(path: Path, kh: KhaosSection, statics: list[float]) -> dict:
    """The Khaos copies' settings: start interval per realizer, the daemon's ci and loop sections."""
    ci = validate(
        CISection,
        {"min": 2, "max": max(statics), "step": 1, "dead_band_s": 3, "cooldown_s": 60, **kh.ci},
        path,
        "khaos.ci",
    )
    if kh.start_ci_s is not None and not ci.min <= kh.start_ci_s <= ci.max:
        raise field_error(
            path,
            "khaos.start_ci_s",
            f"{kh.start_ci_s:g} s is outside the daemon's candidate range khaos.ci {ci.min:g}-{ci.max:g} s",
        )
    loop = validate(LoopSection, {**LOOP_DEFAULTS, **kh.loop}, path, "khaos.loop")
    realize = kh.realize if isinstance(kh.realize, list) else [kh.realize]
    default = {"pace": max(statics), "restart": statics[len(statics) // 2]}
    return {
        "start_ci_s": {m: float(kh.start_ci_s if kh.start_ci_s is not None else default[m]) for m in realize},
        "realize": realize,
        "mode": kh.mode,
        "ci": ci.model_dump(),
        "loop": loop.model_dump(exclude_none=True),
    }


def _failures(fl: FailuresSection) -> dict:
    """The failure schedule's settings."""
    failures = {
        "modes": list(fl.modes),
        "target": fl.target,
        "count": fl.count,
        "first_s": float(fl.first_s),
        "min_gap_s": float(fl.min_gap_s),
    }
    if fl.at is not None:
        failures["at"] = sorted(float(a) for a in fl.at)
    return failures
