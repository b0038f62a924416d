"""The experiment file of `khaos profile`: what to run, break and measure.

:class:`ExperimentFile` is the one table of keys (types, defaults, bounds, help): it validates the
file and renders the table in docs/profiling.md. :func:`load` resolves it into an
:class:`Experiment`. examples/experiment-lab.yml is a commented example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import KhaosError
from ..kafka.feed import SAMPLE_ARGS, KafkaSection, KafkaSpec, check_args, resolve
from ..schema import (
    MAX_DURATION_S,
    MAX_LATENCY_MS,
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
from .bootstrap import StateSize, state_size
from .capacity import CapacitySection, CapacitySpec

Interval = Annotated[float, Field(ge=1, le=3600)]  # a checkpoint interval, s
Rate = Annotated[float, Field(ge=1, le=MAX_RATE)]  # events/s
Level = Annotated[float, Field(gt=0, lt=1.5)]  # a utilization level: rate / capacity
DEFAULT_ARGS = ["--rate", "{rate}", "--output", "{output}", "--start", "{start_ms}"]
TRACE_ARGS = ["--trace", "{trace}", "--output", "{output}", "--start", "{start_ms}"]


class JobSection(JobBase):
    """Section job: the job to profile (its args and parallelism: schema.JobBase)."""

    jar: str = Field(min_length=1, description="the job's jar file (the sample job: build/jobs/iot-vehicles.jar)")
    name: str = Field("iot-vehicles", min_length=1, description="job name (pipeline.name)")
    entry_class: str = Field("", description="main class (empty: from the jar manifest)")
    config: dict[str, str | int | float | bool] = Field(
        {},
        description="per-job Flink settings (flinkConfiguration), e.g. state.backend.type: rocksdb, "
        "execution.checkpointing.incremental: true",
    )
    bootstrap_state: bool = Field(
        False,
        description="start the probe and every unit from a savepoint that holds the state of every key "
        "(--keys x --state-bytes of args), written once per cluster (profile/bootstrap.py)",
    )


class FailurePoints(Section):
    """Failure points picked from a trace."""

    count: int = Field(5, ge=1, le=1000, description="failure points picked across the trace's rate range")
    window: int = Field(300, ge=1, le=MAX_DURATION_S, description="trailing moving-average window, s")
    min_distance: int = Field(1800, ge=0, le=MAX_DURATION_S, description="minimum seconds between two points")


class WorkloadSection(Section):
    """Section workload: fixed rates or a trace."""

    rates: list[Rate] | None = Field(None, min_length=1, description="input rates in events/s (or a trace)")
    trace: str | None = Field(None, min_length=1, description="a recorded trace replayed around failure points")
    utilizations: list[Level] | None = Field(
        None,
        min_length=1,
        description="utilization levels (rate / capacity) instead of rates: each unit's rate is the level x its "
        "cluster's probed capacity (section capacity)",
    )
    failure_points: FailurePoints = Field(default_factory=FailurePoints)

    @model_validator(mode="after")
    def _one(self) -> WorkloadSection:
        given = [k for k in ("rates", "trace", "utilizations") if getattr(self, k) is not None]
        if not given:
            raise ValueError("missing: a list of input rates in events/s (or a trace)")
        if len(given) > 1:
            raise ValueError(f"give one of rates, trace and utilizations, not {' and '.join(given)}")
        return self


class FailuresSection(Section):
    """Section failures: what dies, where and when."""

    modes: list[FailureMode] = Field(
        ["process", "host"], min_length=1, description="process (SIGKILL a TaskManager JVM) and/or host (kill its host)"
    )
    target: str = Field(
        "sink",
        min_length=1,
        description="sink (the host of the sink's first subtask), random, a host name or group:NAME",
    )
    timing: Literal["now", "before_checkpoint"] = Field(
        "before_checkpoint", description="before_checkpoint: the worst case"
    )
    margin_s: float = Field(2.0, ge=0, le=3600, description="fire this long before the next checkpoint, s")
    seed: int = Field(1, ge=0, description="seed of random target picks")


class StoreSection(Section):
    """Section clusters.store: a checkpoint store host in each lab (playbooks/checkpoint_store.yml)."""

    upload_mbit: float = Field(
        0, ge=0, le=100_000, description="link rate of what Flink sends the store, Mbit/s (0: unshaped)"
    )
    download_mbit: float = Field(
        0, ge=0, le=100_000, description="link rate of what the store sends (restores), Mbit/s (0: unshaped)"
    )

    def extravars(self) -> dict:
        """The checkpoint_store role's link variables."""
        return {
            "checkpoint_store_link_upload_mbit": self.upload_mbit,
            "checkpoint_store_link_download_mbit": self.download_mbit,
        }


CPU_LIST = r"^([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)?$"  # as taskset and the flink role take it


class ClustersSection(Section):
    """Section clusters: labs or your own inventories."""

    count: int = Field(2, ge=1, le=8, description="lab clusters profiled in parallel")
    hosts: int = Field(3, ge=2, le=10, description="hosts per lab cluster (1 JobManager + TaskManagers)")
    lab_prefix: str = Field("kp", pattern=r"^[a-z][a-z0-9]{0,5}$", description="lab names: PREFIX1, PREFIX2, ...")
    inventories: list[str] = Field([], description="existing clusters (inventories) instead of labs")
    jobmanager_cpus: str = Field(
        "", pattern=CPU_LIST, description="CPUs the JobManager JVM is pinned to (a CPU list: 0, 0-3, 0,2); empty: any"
    )
    store: StoreSection | None = Field(
        None,
        description="labs only: a checkpoint store host in each lab; Flink checkpoints and savepoints go there over "
        "a link of this bandwidth (docs/checkpoint-store.md); absent: the lab's shared directory",
    )
    taskmanager_cpus: str = Field(
        "",
        pattern=CPU_LIST,
        description="CPUs the TaskManager JVMs are pinned to, e.g. 1: CPU-bound units measured on a core of their "
        "own (docs/profiling.md); empty: any",
    )


class MeasurementSection(Section):
    """Section measurement: steady state and recovery."""

    warmup_s: float = Field(30.0, ge=5, le=3600, description="steady state learned before each failure, s")
    settle_s: float = Field(15.0, ge=0, le=3600, description="pause between two failures of one deployment, s")
    recovery_timeout_s: float = Field(180.0, ge=10, le=7200, description="not recovered after this long: a miss")
    consecutive_s: float = Field(8.0, ge=1, le=600, description="seconds back in the steady-state band = recovered")
    recovery: Literal["auto", "bands", "lag"] = Field(
        "auto",
        description="how recovery is judged (docs/recovery.md): lag = back inside the pre-failure lag band "
        "(standard Kafka source metrics, any job); bands = every signal in its band (the sample job's "
        "sink gauges); auto = lag with a kafka section, else bands",
    )
    lag_quantile: float = Field(0.95, ge=0.5, le=1, description="lag band: this quantile of the pre-failure backlog")
    lag_tolerance: float = Field(0.5, ge=0, le=10, description="lag band: ... times (1 + tolerance)")
    lag_floor_s: float = Field(
        1.0, ge=0, le=600, description="lag band: at least this many seconds of input at the pre-failure rate"
    )
    latency_floor_ms: float = Field(
        200.0,
        ge=0,
        le=600_000,
        description="bands rule: the latency band reaches at least this far above the baseline's center, ms "
        "(raise it above the job's checkpoint spikes when the baseline holds few checkpoints)",
    )
    latency_limit_ms: float | None = Field(
        None,
        gt=0,
        le=MAX_LATENCY_MS,
        description="the regime's L_max: each row's late_share is the share of steady seconds whose p99 is above it",
    )
    lag_throughput: bool = Field(
        True,
        description="lag rule: also the records-in rate of the last vertex back in its band (records in network "
        "buffers drained)",
    )


class ExperimentFile(Section):
    """Every key of an experiment file."""

    name: str | None = Field(None, min_length=1, description="experiment name (default: the file name)")
    job: JobSection = Field(description="the job's jar file")
    checkpoint_intervals: list[Interval] = Field(
        min_length=1, description="a list of intervals in seconds, e.g. [5, 10, 20]"
    )
    workload: WorkloadSection | None = Field(
        None, description="a list of input rates in events/s (or a trace); required unless kafka.recording"
    )
    kafka: KafkaSection | None = Field(
        None,
        description="the job reads Kafka: each copy gets its own topic and group, one replay feeds them all "
        "(docs/profiling.md)",
    )
    failures: FailuresSection = Field(default_factory=FailuresSection)
    repetitions: int = Field(1, ge=1, le=100, description="failures per (interval, rate, mode)")
    clusters: ClustersSection = Field(default_factory=ClustersSection)
    measurement: MeasurementSection = Field(default_factory=MeasurementSection)
    capacity: CapacitySection | None = Field(
        None, description="measure each cluster's capacity with a saturation probe (profile/capacity.py)"
    )
    output: str | None = Field(None, min_length=1, description="output directory (default out/profile-NAME)")

    @field_validator("checkpoint_intervals")
    @classmethod
    def _cis(cls, cis):
        if len(set(cis)) != len(cis):
            raise ValueError("has duplicates")
        return cis


@dataclass
class JobSpec:
    """The job a profile deploys."""

    jar: Path
    name: str = "iot-vehicles"
    entry_class: str = ""
    args: list[str] = field(default_factory=lambda: list(DEFAULT_ARGS))
    parallelism: int = 2
    config: dict = field(default_factory=dict)  # per-job Flink settings
    bootstrap: StateSize | None = None  # job.bootstrap_state: the state every unit starts with


@dataclass
class Experiment:
    """A validated experiment with resolved paths and failure points."""

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
    pinning: dict[str, str] = field(default_factory=dict)  # flink role CPU lists given (flink_*_cpus)
    store: dict | None = None  # labs with a checkpoint store: the checkpoint_store role's link variables
    warmup_s: float = 30.0
    settle_s: float = 15.0
    recovery_timeout_s: float = 180.0
    consecutive_s: float = 8.0
    output: Path = Path("out/profile")
    kafka: KafkaSpec | None = None  # the job reads Kafka (a topic and group per unit, one replay per wave)
    recovery: str = "bands"  # the recovery rule (auto resolved)
    lag_quantile: float = 0.95
    lag_tolerance: float = 0.5
    lag_floor_s: float = 1.0
    lag_throughput: bool = True
    latency_floor_ms: float = 200.0
    latency_limit_ms: float | None = None
    trace: Path | None = None  # a recorded trace replayed around failure points instead of fixed rates
    points: list[dict] = field(default_factory=list)  # failure points [{t, target_rate, avg_rate}]
    utilizations: list[float] = field(default_factory=list)  # levels instead of rates (rates is then empty)
    capacity: CapacitySpec | None = None  # the capacity section (None: capacity from busy time only)

    @property
    def failures(self) -> int:
        """Failures the experiment injects."""
        levels = len(self.rates or self.utilizations)
        return len(self.checkpoint_intervals) * levels * len(self.modes) * self.repetitions

    @property
    def cluster_count(self) -> int:
        """Clusters profiled in parallel."""
        return len(self.inventories) if self.inventories else self.clusters


def _bootstrap(path: Path, job: JobSection, args: list[str]) -> StateSize | None:
    """The state size job.bootstrap_state asks for (from --keys and --state-bytes), or None."""
    if not job.bootstrap_state:
        return None
    try:
        return state_size(args)
    except KhaosError as e:
        raise field_error(path, "job.bootstrap_state", str(e).removeprefix("job.bootstrap_state ")) from None


def _job(path: Path, f: ExperimentFile, spec) -> JobSpec:
    """The job section: its jar must exist; its arguments (given, or the sample job's for the workload)
    must carry what the workload fills in."""
    jar = resolve_path(path.parent, f.job.jar)
    if not jar.is_file():
        raise field_error(path, "job.jar", f"{jar} does not exist (build the sample job with `make job`)")
    if f.job.args is not None:
        args = f.job.args
    elif spec is not None:
        args = SAMPLE_ARGS
    else:
        args = TRACE_ARGS if f.workload.trace else DEFAULT_ARGS
    check_args(path, list(args), spec)
    return JobSpec(
        jar=jar,
        name=f.job.name,
        entry_class=f.job.entry_class,
        args=list(args),
        parallelism=f.job.parallelism,
        config={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in f.job.config.items()},
        bootstrap=_bootstrap(path, f.job, args),
    )


def _rates(path: Path, f: ExperimentFile, spec) -> tuple[list[float], Path | None, list[dict]]:
    """(rates, trace, failure points): a recording's mean rate, a trace's failure points, fixed rates, or
    none yet (utilization levels: each cluster's probe turns them into rates)."""
    wl_f = f.workload
    if wl_f is None:  # a recording: one workload, its mean rate
        from ..kafka.feed import recording_rate

        return [round(recording_rate(spec), 1)], None, []
    if wl_f.trace:
        from . import workload as wl

        trace = resolve_path(path.parent, wl_f.trace)
        fp = wl_f.failure_points
        try:
            pts = wl.failure_points(
                wl.load_trace(trace), count=fp.count, window=fp.window, min_distance=fp.min_distance
            )
        except KhaosError as e:
            raise field_error(path, "workload.trace", str(e)) from None
        points = pts.to_dict("records")
        return [float(p["avg_rate"]) for p in points], trace, points
    if wl_f.utilizations:  # rates from each cluster's probed capacity (profile/capacity.py)
        if spec is not None:
            raise field_error(path, "workload.utilizations", "not with a kafka section (give rates)")
        if f.capacity is not None and not f.capacity.probe:
            raise field_error(path, "workload.utilizations", "needs the capacity probe (capacity.probe: true)")
        return [], None, []
    return [float(r) for r in wl_f.rates], None, []


def _inventories(path: Path, clusters) -> list[Path]:
    """The clusters section's inventories (each must exist; a store is for labs only)."""
    inventories = [Path(p) for p in clusters.inventories]
    if inventories and clusters.store is not None:
        raise field_error(
            path, "clusters.store", "is for labs: an inventory names its own store (group checkpoint_store)"
        )
    for inv in inventories:
        if not inv.exists():
            raise field_error(path, "clusters.inventories", f"{inv} does not exist")
    return inventories


def load(path: str | Path) -> Experiment:
    """Read and check an experiment file; every problem is one line `FILE: field: problem`."""
    path, raw = read_mapping(path, "experiment")
    f: ExperimentFile = validate(ExperimentFile, raw, path)
    spec = resolve(f.kafka, path, path.parent) if f.kafka is not None else None
    wl_f = f.workload
    if wl_f is None and (spec is None or spec.recording is None):
        raise field_error(path, "workload", "missing: a list of input rates in events/s (or a trace)")
    if wl_f is not None and spec is not None and spec.recording is not None:
        raise field_error(path, "workload", "kafka.recording replays the recorded rates: leave workload out")
    job = _job(path, f, spec)
    cis = [float(c) for c in f.checkpoint_intervals]
    rates, trace, points = _rates(path, f, spec)
    fl = f.failures
    if fl.timing == "before_checkpoint" and fl.margin_s >= min(cis):
        raise field_error(
            path, "failures.margin_s", f"{fl.margin_s:g}s must be shorter than the smallest interval {min(cis):g}s"
        )
    inventories = _inventories(path, f.clusters)
    output = Path(f.output or f"out/profile-{path.stem}")
    why = dir_problem(output)
    if why:
        raise field_error(path, "output" if f.output else "output (default)", why)
    m = f.measurement
    exp = Experiment(
        path=path,
        name=f.name or path.stem,
        job=job,
        checkpoint_intervals=cis,
        rates=rates,
        modes=list(fl.modes),
        repetitions=f.repetitions,
        target=fl.target,
        timing=fl.timing,
        margin_s=float(fl.margin_s),
        seed=fl.seed,
        clusters=f.clusters.count,
        hosts=f.clusters.hosts,
        lab_prefix=f.clusters.lab_prefix,
        inventories=inventories,
        pinning={
            f"flink_{part}_cpus": cpus
            for part, cpus in (("jobmanager", f.clusters.jobmanager_cpus), ("taskmanager", f.clusters.taskmanager_cpus))
            if cpus
        },
        store=f.clusters.store.extravars() if f.clusters.store is not None else None,
        warmup_s=float(m.warmup_s),
        settle_s=float(m.settle_s),
        recovery_timeout_s=float(m.recovery_timeout_s),
        consecutive_s=float(m.consecutive_s),
        output=output,
        trace=trace,
        points=points,
        kafka=spec,
        recovery=m.recovery if m.recovery != "auto" else ("lag" if spec is not None else "bands"),
        lag_quantile=float(m.lag_quantile),
        lag_tolerance=float(m.lag_tolerance),
        lag_floor_s=float(m.lag_floor_s),
        lag_throughput=m.lag_throughput,
        latency_floor_ms=float(m.latency_floor_ms),
        latency_limit_ms=m.latency_limit_ms,
        utilizations=[float(u) for u in (wl_f.utilizations or [])] if wl_f is not None else [],
        capacity=CapacitySpec.of(f.capacity) if f.capacity is not None or (wl_f and wl_f.utilizations) else None,
    )
    if trace and spec is None and not any("{trace}" in a for a in job.args):
        raise field_error(path, "job.args", "a trace workload needs {trace} in the job's arguments")
    return exp
