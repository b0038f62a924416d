"""The model file: a typed :class:`Model` (pydantic), stored as versioned JSON.

Every field is typed and every number must be finite, so a hand-edited or damaged file fails to load
with one line (``FILE: recovery.physics.coef.0: Input should be a finite number``) instead of giving a
wrong interval at runtime. docs/models.md describes the fields.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from ..errors import KhaosError
from ..jsonio import write_json
from ..schema import validate

SCHEMA = "khaos-model"
# 2: measured capacity and utilization (ranges.utilization, constants.state_model, residual, cv.extrapolation).
# Version 1 files (no capacity) load unchanged: every field version 2 added is optional.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
REFERENCE_MODE = "process"  # the failure mode without an indicator column; others get "mode=<m>"
# Feature names a model may use (features.py computes them).
FEATURE_RE = re.compile(
    r"^(rate|ci|1/ci|rate/ci|L0|L0\*rate|L0\*rate/\(cap-rate\)|ckpt/ci|ckpt/ci/\(1-u\)|u/\(1-u\)|1/ci/\(1-u\)"
    r"|state_gb|u|mode=[a-z_]+)$"
)
MAX_FILE_BYTES = 64 << 20  # a model file is a few kB; this is not one
# Strict scalars: "12" is not a number and 1 is not true (a hand-edited file must say what it means).
Float = Annotated[float, Strict()]
Int = Annotated[int, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=False)


class CheckpointCost(_Strict):
    """Checkpoint duration (s) as a linear function of rate and interval (feature ckpt/ci)."""

    intercept: Float
    rate: Float
    ci: Float


class Constants(_Strict):
    """Physical constants a feature set needs, fitted with the coefficients."""

    margin_s: Float = Field(0.0, ge=0)  # the profiler fires this long before the next checkpoint
    downtime_s: dict[str, Float] = Field(default_factory=lambda: {"*": 0.0})  # failure -> running, per mode
    capacity: Float | None = Field(None, gt=0)  # records/s the job can process (drain feature)
    capacity_at_grid_edge: Bool = False  # the capacity fit ran into the grid's upper edge
    capacity_measured: Bool = False  # capacity is the profiled clusters' median measured capacity, not a fit
    ckpt_model: CheckpointCost | None = None
    state_model: CheckpointCost | None = None  # checkpointed state (GB) as a line of rate and interval

    @model_validator(mode="after")
    def _downtimes(self) -> Constants:
        if "*" not in self.downtime_s:
            raise ValueError("downtime_s needs the '*' (any mode) entry")
        if any(v < 0 for v in self.downtime_s.values()):
            raise ValueError("downtime_s values must be >= 0")
        return self


class Residual(_Strict):
    """A learned correction of a physical model: prediction x exp(intercept + sum(coef * feature)), a ridge
    regression of log(observed / physical) fitted on the training rows (model/greybox.py)."""

    features: list[str]
    coef: list[Float]
    intercept: Float
    alpha: Float = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Residual:
        if len(self.coef) != len(self.features):
            raise ValueError(f"{len(self.coef)} residual coefficients for {len(self.features)} features")
        bad = [f for f in self.features if not FEATURE_RE.match(f)]
        if bad:
            raise ValueError(f"unknown residual feature {bad[0]!r} (written by a newer khaos?)")
        return self


class Spec(_Strict):
    """One fitted linear model: intercept + sum(coef * feature) [x the residual's correction]."""

    name: Str
    features: list[str]
    coef: list[Float]
    intercept: Float
    positive: Bool = True
    constants: Constants = Field(default_factory=Constants)
    residual: Residual | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        if len(self.coef) != len(self.features):
            raise ValueError(f"{len(self.coef)} coefficients for {len(self.features)} features")
        bad = [f for f in self.features if not FEATURE_RE.match(f)]
        if bad:
            raise ValueError(f"unknown feature {bad[0]!r} (written by a newer khaos?)")
        if any("cap" in f for f in self.features) and self.constants.capacity is None:
            raise ValueError("a capacity feature needs constants.capacity")
        if any(f.startswith("ckpt/ci") for f in self.features) and self.constants.ckpt_model is None:
            raise ValueError("feature ckpt/ci needs constants.ckpt_model")
        if "state_gb" in self.features and self.constants.state_model is None:
            raise ValueError("feature state_gb needs constants.state_model")
        if any("(1-u)" in f or f == "u" for f in self.features) and self.constants.capacity is None:
            raise ValueError("a utilization feature needs constants.capacity")
        if self.positive and any(c < 0 for c in self.coef):
            i = next(i for i, c in enumerate(self.coef) if c < 0)
            raise ValueError(f"coef[{i}] {self.coef[i]:g} is negative in a non-negative (positive) model")
        return self


class Pair(_Strict):
    """The two model families of one target."""

    baseline: Spec  # the prototype's OLS on (rate, CI)
    physics: Spec  # the chosen non-negative physical model


class Error(_Strict):
    """Held-out error of one model family (NaN is stored as null)."""

    mape: Float | None = None  # fraction, not percent
    mae: Float | None = None
    n: Int = Field(0, ge=0)
    feature_set: Str | None = None
    n_features: Int | None = None


class Band(_Strict):
    """A prediction interval: [prediction x ratio_lo, prediction x ratio_hi] (model/conformal.py)."""

    level: Float = Field(gt=0, lt=1)
    ratio_lo: Float = Field(ge=0)
    ratio_hi: Float = Field(gt=0)
    coverage: Float | None = Field(None, ge=0, le=1)  # held out: the share of failures inside


class CVTarget(_Strict):
    """Held-out error of one target."""

    protocol: Str
    folds: Int = Field(ge=1)
    baseline: Error
    physics: Error
    candidates: dict[str, Error]
    interval: Band | None = None  # of the physics model; None: too few failures for its level


class Heldout(_Strict):
    """One held-out prediction."""

    ci_s: Float
    rate: Float
    mode: Str
    observed: Float
    baseline: Float | None
    physics: Float | None


class Extrapolation(_Strict):
    """Fitted on the rows at or below a utilization, predicting the rows above another (both targets)."""

    fit_max: Float  # trained on utilization <= this
    test_min: Float  # predicted utilization >= this
    recovery: Error
    latency: Error
    recovery_baseline: Error | None = None
    latency_baseline: Error | None = None


class CV(_Strict):
    """Cross-validation: errors per target and every held-out prediction."""

    recovery: CVTarget
    latency: CVTarget
    heldout: dict[Literal["recovery", "latency"], list[Heldout]]
    note: Str = ""
    extrapolation: Extrapolation | None = None


class Ranges(_Strict):
    """What was profiled (a prediction outside is an extrapolation)."""

    ci_s: tuple[Float, Float]
    rate: tuple[Float, Float]
    modes: list[str] = Field(min_length=1)
    utilization: tuple[Float, Float] | None = None  # rate / measured capacity (version 2)
    capacity: tuple[Float, Float] | None = None  # measured capacities, events/s (version 2)

    @model_validator(mode="after")
    def _ordered(self) -> Ranges:
        for name in ("ci_s", "rate", "utilization", "capacity"):
            if getattr(self, name) is None:
                continue
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} [{lo:g}, {hi:g}] is not a range of positive numbers, low first")
        return self


class Rows(_Strict):
    """Rows read and used per target, and why others were dropped."""

    input: Int = Field(ge=0)
    recovery_used: Int = Field(ge=0)
    recovery_dropped: dict[str, Int]
    latency_used: Int = Field(ge=0)
    latency_dropped: dict[str, Int]


class CheckpointStats(_Strict):
    """Profiled checkpoint duration, s."""

    mean: Float = Field(ge=0)
    min: Float = Field(ge=0)
    max: Float = Field(ge=0)
    n: Int = Field(ge=1)


class OverheadFit(_Strict):
    """What checkpoints cost the job's capacity (model/overhead.py): at interval ci the job processes
    ``capacity_ref x (1 - k x min(1, checkpoint_s / ci))`` events/s. The fit and every prediction of the
    catch-up law use that capacity, not the reference one."""

    k: Float = Field(ge=0, lt=1)  # capacity lost at a duty cycle of 1, as a fraction of the reference
    checkpoint_s: Float = Field(gt=0)  # profiled mean checkpoint duration C, s
    capacity_ref: Float = Field(gt=0)  # events/s at the longest interval: the profile's reference capacity
    l0_ms: Float = Field(ge=0)  # mean per-second p99 = l0 + a x min(1, C/ci) / (1 - u_eff)
    a_ms: Float = Field(ge=0)
    deployments: Int = Field(ge=3)


class Model(_Strict):
    """A fitted model: what `khaos fit` writes and the daemon, the planner and the evaluation read."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    schema_: Literal["khaos-model"] = Field(SCHEMA, alias="schema")
    schema_version: Literal[1, 2] = SCHEMA_VERSION
    created: Str
    data_hash: Str
    sources: list[str] = Field(default_factory=list)
    rows: Rows
    ranges: Ranges
    checkpoint_duration_s: CheckpointStats | None = None
    overhead: OverheadFit | None = None  # a profile with capacity and steady latency per deployment
    recovery: Pair
    latency: Pair
    cv: CV

    def to_dict(self) -> dict:
        """The JSON form (the file's content)."""
        return self.model_dump(mode="json", by_alias=True)

    def target(self, name: str) -> Pair:
        """``recovery`` or ``latency``."""
        return {"recovery": self.recovery, "latency": self.latency}[name]

    @property
    def recovery_mape(self) -> float | None:
        """Cross-validated recovery MAPE of the physics fit (None if not computable)."""
        v = self.cv.recovery.physics.mape
        return None if v is None or not math.isfinite(v) else float(v)

    def unprofiled(self, mode: str) -> str | None:
        """None if failure mode ``mode`` was profiled, else "'x' was not profiled; the model knows ..."."""
        seen = self.ranges.modes
        return None if mode in seen else f"{mode!r} was not profiled; the model knows {', '.join(seen)}"


def parse(data, where: str = "model") -> Model:
    """A Model from its JSON form; KhaosError (one line) if it is not a usable khaos model."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise KhaosError(f"{where} is not a khaos model file (schema {SCHEMA!r} expected)")
    v = data.get("schema_version")
    if v not in READABLE_VERSIONS:
        raise KhaosError(
            f"{where} has schema version {v}, this khaos reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: refit it with khaos fit"
        )
    return validate(Model, data, where)


def _unique(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup is not None:
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def load(path: str | Path) -> Model:
    """Read and check a model file; KhaosError with one line if it is missing or not usable."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise KhaosError(f"model file {path} is not a file")
        raise KhaosError(f"model file {path} does not exist (make one with: khaos fit RESULTS --out {path})")
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise KhaosError(f"model file {path}: {len(raw)} bytes is too large for a model file")
        data = json.loads(raw, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, a duplicate key
        raise KhaosError(f"model file {path} is not valid JSON: {' '.join(str(e).split())[:200]}") from None
    except OSError as e:
        raise KhaosError(f"model file {path}: cannot read: {e.strerror or e}") from None
    return parse(data, str(path))


def save(model: Model, path: str | Path) -> Path:
    """Write the model file atomically (a reader, e.g. the daemon, never sees half a file)."""
    return write_json(path, model.to_dict())


def compare(old: Model | None, new: Model) -> bool:
    """True if ``new`` should replace ``old``: its CV recovery MAPE is not worse (no old model: True)."""
    if old is None:
        return True

    def mape(m: Model) -> float:
        v = m.recovery_mape
        return math.inf if v is None else v

    return mape(new) <= mape(old)


def promote(new: str | Path, current: str | Path) -> tuple[bool, str]:
    """Swap ``new`` in as ``current`` if its CV recovery MAPE is not worse. Returns (replaced, why).

    The old file is kept as CURRENT.prev; the swap is atomic, and the daemon picks the new file up at
    its next decision."""
    from ..schema import file_problem

    new, current = Path(new), Path(current)
    fresh = load(new)
    why = file_problem(current)
    if why:
        raise KhaosError(f"cannot replace the model {current}: {why}")
    old = load(current) if current.exists() else None
    if not compare(old, fresh):
        return False, f"kept {current}: the new model's CV recovery MAPE {_mape(fresh)} is worse than {_mape(old)}"
    if old is not None:
        shutil.copy2(current, current.with_name(current.name + ".prev"))
    save(fresh, current)
    why = "no model before" if old is None else f"CV recovery MAPE {_mape(fresh)} <= {_mape(old)}"
    return True, f"replaced {current} with {new} ({why}; previous kept as {current.name}.prev)"


def _mape(model: Model | None) -> str:
    v = model.recovery_mape if model is not None else None
    return "n/a" if v is None else f"{100 * v:.1f}%"
