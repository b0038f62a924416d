"""The daemon's config file (`khaos run CONFIG`): its schema and the resolved :class:`Config`.

:class:`DaemonFile` is the one table of keys, types, defaults, bounds and help: it validates the
file and renders the table in docs/daemon.md (a test keeps them equal, and checks the bastion role's
defaults against it). :func:`load_config` turns a valid file into a :class:`Config` with absolute
paths and the loaded model.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..errors import KhaosError
from ..model import store
from ..model.store import REFERENCE_MODE, Model
from ..schema import (
    DAY,
    MAX_INTERVAL_S,
    MAX_LATENCY_MS,
    MAX_RECOVERY_S,
    MIN_INTERVAL_S,
    Section,
    dir_problem,
    field_error,
    file_problem,
    read_mapping,
    resolve_path,
    url_problem,
    validate,
)

DEFAULT_STATE_DIR = "/var/lib/khaos/state"  # the flink_job role's default (khaos_state_dir)


class FlinkSection(Section):
    """Section flink: how the daemon reaches the JobManager."""

    rest_url: str = Field(min_length=1, description="the JobManager REST URL, e.g. http://10.213.0.11:8081")
    timeout_s: float = Field(10.0, gt=0, le=3600, description="timeout of one REST call")

    @field_validator("rest_url")
    @classmethod
    def _url(cls, url: str) -> str:
        why = url_problem(url)
        if why:
            raise ValueError(why)
        return url


class Limits(Section):
    """Section limits: the two SLOs."""

    latency_ms: float = Field(gt=0, le=MAX_LATENCY_MS, description="the p99 latency limit L_max in ms")
    recovery_s: float = Field(gt=0, le=MAX_RECOVERY_S, description="the recovery time limit R_max in s")
    recovery_bound: Literal["point", "upper"] = Field(
        "point",
        description="what is held to R_max: the predicted recovery (point) or the upper end of the model's 90 % "
        "band (upper: the bad case; the model must have a band, docs/models.md)",
    )


class CISection(Section):
    """Section ci: the candidate intervals and how often the daemon may move."""

    min: float = Field(1.0, ge=MIN_INTERVAL_S, description="shortest interval the daemon may choose, s")
    max: float = Field(120.0, gt=0, le=MAX_INTERVAL_S, description="longest interval the daemon may choose, s")
    step: float = Field(1.0, gt=0, description="spacing of the candidate intervals, s")
    dead_band_s: float = Field(5.0, ge=0, le=DAY, description="no change smaller than this (unless a limit is broken)")
    cooldown_s: float = Field(
        600.0,
        ge=0,
        le=30 * DAY,
        description="no change within this long after the last change or attempt, unless the interval in force is predicted to break a limit that another keeps (and the last attempt did not fail)",
    )

    slack_s_per_h: float = Field(
        2.0,
        ge=0,
        le=1e6,
        description="among the intervals that meet both limits, the longest whose expected violation seconds per hour (failures per hour from mtbf_h x the predicted recovery) are within this of the least: overhead is traded for at most this many (0: the fastest recovery; 1e6: the longest feasible interval)",
    )
    hysteresis: float = Field(
        0.3,
        ge=0,
        le=0.9,
        description="when no interval meets both limits: leave the interval in force only for one expected to cause more than this fraction fewer violation seconds per hour (0.3: 30 % fewer; at or above capacity, where none recovers, a shorter one always), and choose the longest interval (in pace mode the safety net) only when it beats every other by as much; keeps a jittering rate from flapping the interval (0: off)",
    )
    change_cost_s: float | None = Field(
        None,
        ge=0,
        le=DAY,
        description="restart mode: violation seconds one change costs; a change is made only when it is expected to save more (default: measured, the median down time of the last changes; 5 s before the first)",
    )

    @field_validator("step")
    @classmethod
    def _candidates(cls, step: float, info: ValidationInfo) -> float:
        lo, hi = info.data.get("min"), info.data.get("max")
        if lo is not None and hi is not None and (hi - lo) / step > 100_000:
            raise ValueError(f"{step:g} s gives more than 100000 candidates in {lo:g}-{hi:g} s")
        return step

    @model_validator(mode="after")
    def _range(self) -> CISection:
        if self.min >= self.max:
            raise ValueError(f"min {self.min:g} >= max {self.max:g}: the interval range is empty or inverted")
        return self


class LoopSection(Section):
    """Section loop: sampling, the decision period and the forecast."""

    sample_s: float = Field(1.0, ge=0.2, le=3600, description="seconds between samples of the job")
    period_s: float = Field(300.0, le=DAY, description="seconds between decisions (>= sample_s)")
    window_s: float = Field(300.0, le=DAY, description="seconds of samples a decision looks at (>= 2 x sample_s)")
    forecast_horizon_s: float | None = Field(
        None, gt=0, le=7 * DAY, description="how far ahead the rate is forecast (default: period_s)"
    )
    forecast_step_s: float = Field(60.0, le=DAY, description="block length of the rate forecast, s (>= sample_s)")
    stuck_s: float = Field(120.0, gt=0, le=DAY, description="alert when the job has not run every task this long")
    min_uptime_s: float = Field(
        600.0, ge=0, le=30 * DAY, description="no decision until the job has run this long since its last (re)start"
    )

    @field_validator("period_s", "window_s", "forecast_step_s")
    @classmethod
    def _vs_sample(cls, value: float, info: ValidationInfo) -> float:
        sample = info.data.get("sample_s", 1.0)
        low = 2 * sample if info.field_name == "window_s" else sample
        if not value >= low:
            raise ValueError(f"{value:g} must be >= {low:g}")
        return value


class MetricsSection(Section):
    """Section metrics: the Prometheus endpoint."""

    host: str = Field("127.0.0.1", min_length=1, description="address the /metrics endpoint binds to")
    port: int = Field(9790, ge=0, description="its TCP port (0: any free port)")

    @field_validator("port")
    @classmethod
    def _port(cls, port: int) -> int:
        if port > 65535:
            raise ValueError(f"{port} is not a TCP port (0..65535; 0 = any free port)")
        return port


class RealizeSection(Section):
    """Section realize: how a decided interval reaches the job."""

    mode: Literal["pace", "restart"] = Field(
        "pace",
        description="pace: trigger checkpoints over REST at the chosen interval, no restart; the job's configured interval stays in force as the safety net (Flink >= 1.17). restart: stop-with-savepoint and resubmit with the new interval (playbooks/reconfigure.yml, needs inventory)",
    )
    tick_s: float = Field(
        0.5,
        ge=0.1,
        le=60,
        description="pace: how often the pacer checks whether a checkpoint is due, s (and once more when the next paced one falls due)",
    )


class ReconfigureSection(Section):
    """Section reconfigure: how a restart change is made (realize.mode restart)."""

    timeout_s: float = Field(180.0, gt=0, le=DAY, description="longest a savepoint or a resubmit may take, s")
    savepoint_dir: str | None = Field(
        None,
        min_length=1,
        description="savepoint target (default: the cluster's execution.checkpointing.savepoint-dir)",
    )


class LogSection(Section):
    """Section log: the daemon's logs on stderr."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    format: Literal["kv", "json"] = Field("kv", description="key=value lines or one JSON object per line")


class RetentionSection(Section):
    """Section retention: what a daemon that runs for months keeps on disk."""

    journal_mb: float = Field(64.0, gt=0, le=100_000, description="the journal rotates when it is this large, MB")
    journal_files: int = Field(5, ge=1, le=1000, description="rotated journals kept (JOURNAL.1 ... JOURNAL.N)")
    savepoints: int = Field(
        5, ge=1, le=1000, description="savepoints of its changes kept per job (older ones disposed through Flink)"
    )


class DaemonFile(Section):
    """Every key of a daemon config file (examples/controller.yml is a commented one)."""

    job: str = Field(
        min_length=1,
        description="the Flink job to control (pipeline.name); exactly one running job of that name must exist at start",
    )
    flink: FlinkSection = Field(description="how to reach Flink")
    inventory: str | None = Field(
        None,
        min_length=1,
        description="the Ansible inventory reconfigure.yml runs on (required with realize.mode restart, unless --advisor); a relative path is looked for beside the config file first",
    )
    model: str = Field(
        min_length=1, description="the model file written by khaos fit (checked at start, reloaded when it changes)"
    )
    limits: Limits = Field(description="both limits are required, e.g. limits: {latency_ms: 1000, recovery_s: 60}")
    mode: str = Field(
        REFERENCE_MODE,
        min_length=1,
        description="failure mode the recovery limit is planned for (process or host; must be profiled)",
    )
    mtbf_h: float = Field(
        24.0,
        gt=0,
        le=1_000_000,
        description="mean time between failures, h: how often a recovery excess is expected (restart mode's cost rule) and the Young/Daly reference",
    )
    state_dir: str | None = Field(
        None,
        min_length=1,
        description=f"deployment records (default: the inventory's khaos_state_dir, else {DEFAULT_STATE_DIR})",
    )
    journal: str | None = Field(
        None, min_length=1, description="decision journal (default: STATE_DIR/JOB.journal.jsonl)"
    )
    ci: CISection = Field(default_factory=CISection)
    loop: LoopSection = Field(default_factory=LoopSection)
    metrics: MetricsSection | None = Field(
        default_factory=MetricsSection, description="Prometheus endpoint; null or false: none"
    )
    realize: RealizeSection = Field(default_factory=RealizeSection)
    reconfigure: ReconfigureSection = Field(default_factory=ReconfigureSection)
    log: LogSection = Field(default_factory=LogSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)

    @field_validator("job")
    @classmethod
    def _job(cls, job: str) -> str:
        if not job.strip() or "/" in job or "\0" in job or job.strip() in (".", ".."):
            raise ValueError(f"{job!r} is not a job name (it names files in state_dir: no '/', not empty)")
        return job

    @model_validator(mode="before")
    @classmethod
    def _metrics_off(cls, data):
        if isinstance(data, dict) and data.get("metrics", True) in (None, False):
            return {**data, "metrics": None}
        return data


@dataclass
class Config:
    """A validated daemon config: the file's sections (their defaults are the schema's), absolute paths
    and the loaded model."""

    path: Path
    file: DaemonFile
    inventory: Path | None
    model_path: Path
    model: Model
    state_dir: Path
    journal: Path
    mode: str

    @property
    def job(self) -> str:
        """The Flink job's name."""
        return self.file.job

    @property
    def rest_url(self) -> str:
        """The JobManager's REST URL."""
        return self.file.flink.rest_url

    @property
    def limits(self) -> Limits:
        """L_max and R_max."""
        return self.file.limits

    @property
    def ci(self) -> CISection:
        """The candidate intervals and the rules of moving."""
        return self.file.ci

    @property
    def loop(self) -> LoopSection:
        """Sampling, period, window, forecast (forecast_horizon_s is filled in)."""
        return self.file.loop

    @property
    def record(self) -> Path:
        """The deployment record written by deploy_job.yml and read/updated by reconfigure.yml."""
        return self.state_dir / f"{self.job}.json"


def inventory_problem(inventory: Path) -> str | None:
    """Why ``inventory`` cannot be an Ansible inventory at a glance (missing, unreadable, binary), or None.
    Whether Ansible parses it is :func:`check_inventory`'s question."""
    if not inventory.exists():
        return f"{inventory} does not exist"
    if inventory.is_dir():
        return None if os.access(inventory, os.R_OK | os.X_OK) else f"{inventory}: cannot read the directory"
    if not inventory.is_file():
        return f"{inventory} is not a file or a directory"
    try:
        data = inventory.read_bytes()
    except OSError as e:
        return f"{inventory}: cannot read it ({e.strerror or e})"
    try:
        binary = data.decode("utf-8").find("\0") >= 0
    except UnicodeDecodeError:
        binary = True
    return f"{inventory} is not an Ansible inventory (not a text file)" if binary else None


def check_inventory(cfg: Config) -> int:
    """Parse the config's inventory as Ansible does (ansible-inventory); the number of its hosts.
    KhaosError ``CONFIG: inventory: ...`` when Ansible cannot parse it."""
    if cfg.inventory is None:
        return 0
    from ..infra import ansible

    try:
        data = ansible.inventory_list(cfg.inventory)
    except KhaosError as e:
        raise field_error(cfg.path, "inventory", str(e).removeprefix("inventory ")) from None
    return len({h for g, v in data.items() if g != "_meta" and isinstance(v, dict) for h in v.get("hosts", [])})


def metrics_clash(cfg: Config) -> str | None:
    """The problem when another daemon config beside this one (a bastion keeps one per job in one
    directory) serves /metrics on the same port and an overlapping address, else None. Files that are
    not daemon configs of another job are ignored."""
    m = cfg.file.metrics
    if m is None or m.port == 0:
        return None
    anywhere = {"0.0.0.0", "::", "[::]"}
    for other in sorted(cfg.path.parent.glob("*.y*ml")):
        if other.resolve() == cfg.path.resolve():
            continue
        try:
            raw = read_mapping(other, "config")[1]
            f = DaemonFile.model_validate(raw)
        except (KhaosError, ValueError):
            continue
        o = f.metrics
        if (
            o is not None
            and f.job != cfg.job
            and o.port == m.port
            and (o.host == m.host or anywhere & {o.host, m.host})
        ):
            return (
                f"{cfg.path}: metrics.port {m.port} is also the port of the daemon of job {f.job!r} ({other}): "
                "give each job on this host its own metrics.port"
            )
    return None


def exposed_metrics(cfg: Config) -> str | None:
    """A warning when /metrics binds to every interface or a public address, else None."""
    m = cfg.file.metrics
    host = (m.host if m is not None else "").strip().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name: not judged (resolving it here could hang)
    if ip.is_unspecified or ip.is_global:
        where = "every interface" if ip.is_unspecified else "a public address"
        return (
            f"{cfg.path}: metrics.host {host} serves /metrics on {where}: whoever reaches this host reads "
            "the job's metrics (bind 127.0.0.1 or a private address)"
        )
    return None


def inventory_state_dir(inventory: Path) -> str | None:
    """khaos_state_dir of the inventory's all.vars (the lab writes it), if readable."""
    try:
        inv = yaml.safe_load(inventory.read_text())
        value = ((inv or {}).get("all") or {}).get("vars", {}).get("khaos_state_dir")
        return str(value) if value else None
    except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError, RecursionError):
        return None


def load_config(path: str | Path, require_inventory: bool = False) -> Config:
    """Read and validate a daemon config; every problem is one line `FILE: field: problem`. The files
    it names are checked too (the model loads, the state dir and the journal can be written, a named
    inventory exists and is text; with ``require_inventory`` (i.e. unless --advisor) realize.mode restart
    needs one), so that `khaos run --check` passing means the daemon does not stop later for a config
    reason. Whether Ansible parses the inventory: :func:`check_inventory`."""
    path, raw = read_mapping(path, "config")
    f: DaemonFile = validate(DaemonFile, raw, path)
    base = path.resolve().parent
    inventory = resolve_path(base, f.inventory) if f.inventory else None
    if require_inventory and f.realize.mode == "restart" and inventory is None:
        raise field_error(path, "inventory", "missing: realize.mode restart runs reconfigure.yml on it")
    why = inventory_problem(inventory) if inventory is not None else None
    if why:
        raise field_error(path, "inventory", why)
    model_path = resolve_path(base, f.model)
    try:
        model = store.load(model_path)
    except KhaosError as e:
        raise field_error(path, "model", str(e)) from None
    mode = f.mode.strip().lower()
    missing = model.unprofiled(mode)
    if missing:
        raise field_error(path, "mode", missing)
    state_dir = (
        resolve_path(base, f.state_dir)
        if f.state_dir
        else Path((inventory and inventory_state_dir(inventory)) or DEFAULT_STATE_DIR)
    )
    journal = resolve_path(base, f.journal) if f.journal else state_dir / f"{f.job}.journal.jsonl"
    why = dir_problem(state_dir)
    if why:
        raise field_error(path, "state_dir" if f.state_dir else "state_dir (default)", why)
    why = file_problem(journal)
    if why:
        raise field_error(path, "journal" if f.journal else "journal (default)", why)
    f.job, f.flink.rest_url = f.job.strip(), f.flink.rest_url.strip()
    f.loop.forecast_horizon_s = f.loop.forecast_horizon_s or f.loop.period_s
    return Config(
        path=path,
        file=f,
        inventory=inventory,
        model_path=model_path,
        model=model,
        state_dir=state_dir,
        journal=journal,
        mode=mode,
    )
