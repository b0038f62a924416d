"""The deployment record (``STATE_DIR/<job>.json``, mode 0600) as a typed :class:`Record`: what a resubmit
of the job needs, the change under way (:class:`Pending`) and what happened (``history``). deployment.py
changes jobs with it.

The file keeps its keys. :meth:`Record.from_dict` reads every key the controller writes, and records
written before lineages existed (no ``lineage``: :meth:`Record.ensure_lineage` gives them one at their
next change); keys it does not know stay in ``extra``. :meth:`Record.to_dict` writes the keys read, in
their order, then the ones set since: load -> save leaves a file as it was, and the file of a new
record has the same keys a reader of ``record["generation"]`` and the like expects.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from ..errors import KhaosError
from ..jsonio import write_json

HISTORY_KEEP = 200  # record history entries kept (the newest)

_OWN = ("extra", "file_keys")  # the fields that are not keys of the file


class _Keys:
    """from_dict/to_dict of a dataclass whose fields are the keys of a JSON object.

    to_dict writes the keys read (``file_keys``), in their order, then the fields set since: by
    :meth:`update` (None included) or to a value other than their default; then ``extra``."""

    extra: dict[str, Any]
    file_keys: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        """The object of a JSON object; keys that are not fields go to ``extra``."""
        names = _defaults(cls)
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra, file_keys=tuple(data))

    def update(self, **values: Any) -> None:
        """Set fields, as dict.update sets keys: each is written to the file, None included."""
        names = _defaults(type(self))
        for key, value in values.items():
            if key not in names:
                raise AttributeError(f"{type(self).__name__} has no field {key!r}")
            setattr(self, key, value)
        self.file_keys += tuple(k for k in values if k not in self.file_keys)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (a nested Pending as one too)."""
        defaults = _defaults(type(self))
        values = {name: getattr(self, name) for name in defaults}
        later = [k for k, v in values.items() if k not in self.file_keys and v != defaults[k]]
        out: dict[str, Any] = {}
        for key in [*self.file_keys, *later, *self.extra]:
            if key in values:
                value = values[key]
                out[key] = value.to_dict() if isinstance(value, _Keys) else value
            elif key in self.extra:
                out[key] = self.extra[key]
        return out


_NO_DEFAULT = object()  # a field without a default: always written


def _defaults(cls: type) -> dict[str, Any]:
    """{field: its default} of the fields that are keys of the file."""
    out = {}
    for f in fields(cls):
        if f.name not in _OWN:
            out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
    return {k: _NO_DEFAULT if v is MISSING else v for k, v in out.items()}


@dataclass
class Pending(_Keys):
    """A change under way (deployment.py: the phases and who finishes them)."""

    phase: str | None = None  # deploying | stopping | stopped | starting | rollback
    job_id: str | None = None  # the job being stopped (None while deploying)
    old_s: float | None = None  # the interval before the change
    new_s: float | None = None  # the interval asked for
    generation: int | None = None  # the generation the change starts
    savepoint_dir: str | None = None  # where the stop writes its savepoint (None: the cluster's)
    savepoint: str | None = None  # the savepoint the next generation starts from
    ts: float | None = None  # when the change began (epoch s)
    trigger: str | None = None  # the stop's trigger id, recorded before the request
    checkpoint_id: int | None = None  # the job's newest checkpoint id before the stop
    job: str | None = None  # the new generation's job id while it starts
    error: str | None = None  # why the new interval failed (phase rollback)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    file_keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def new(cls, **values: Any) -> Pending:
        """A change with these keys on disk, None values included."""
        return cls.from_dict(values)

    def __bool__(self) -> bool:
        return bool(self.to_dict())  # {} on disk is no change


@dataclass
class Record(_Keys):
    """A deployment record. ``history`` holds events, oldest first: {ts, action, ...} (actions: deployed,
    stopped_with_savepoint, running, resubmit_failed, savepoint_failed, savepoint_kept, stop_not_done)."""

    name: str
    rest_url: str | None = None
    jar: str | None = None  # the jar on this machine: uploaded again when the JobManager lost it
    jar_id: str | None = None  # the jar's id on the cluster
    entry_class: str | None = None
    args: list[str] = field(default_factory=list)
    parallelism: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the job's Flink settings
    lineage: str | None = None  # a random id made at deploy time (None: a record from before lineages)
    generation: int = 0
    job_id: str | None = None  # the running generation's job
    checkpoint_interval_s: float | None = None
    last_savepoint: str | None = None
    pending: Pending | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    keep_savepoints: int | None = None  # savepoints of its changes kept (None: deployment.KEEP_SAVEPOINTS)
    savepoints: list[str] | None = None  # those savepoints, oldest first
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    file_keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        """A record of a file's object; a null generation, args, config or history reads as empty."""
        record = super().from_dict(data)
        record.generation = int(record.generation or 0)
        record.args, record.config = list(record.args or []), dict(record.config or {})
        record.history = list(record.history or [])
        if isinstance(record.pending, dict):
            record.pending = Pending.from_dict(record.pending)
        return record

    def event(self, action: str, **data: Any) -> None:
        """Add a history entry."""
        self.history.append({"ts": round(time.time(), 3), "action": action, **data})

    def ensure_lineage(self) -> None:
        """Records written before lineages: give them one (their current job keeps its id)."""
        if not self.lineage:
            self.update(lineage=uuid.uuid4().hex, generation=0)


def job_id(record: Record, generation: int) -> str:
    """The fixed Flink job id of a record's generation (32 hex digits)."""
    return hashlib.md5(f"khaos:{record.lineage}:{generation}".encode()).hexdigest()


def new_record(
    name: str,
    rest_url: str,
    jar: str,
    args: list[str],
    entry_class: str | None = None,
    parallelism: int | None = None,
    config: dict | None = None,
    interval_s: float | None = None,
) -> Record:
    """A record for a job about to be deployed (generation 0 of a new lineage); its file has every key."""
    return Record.from_dict(
        {
            "name": name,
            "rest_url": rest_url,
            "jar": str(jar),
            "jar_id": None,
            "entry_class": entry_class,
            "args": list(args),
            "parallelism": parallelism,
            "config": dict(config or {}),
            "lineage": uuid.uuid4().hex,
            "generation": 0,
            "job_id": None,
            "checkpoint_interval_s": interval_s,
            "last_savepoint": None,
            "pending": None,
            "history": [],
        }
    )


def load(path: Path) -> Record:
    """Read a deployment record (KhaosError if it is missing or not a record)."""
    path = Path(path)
    if not path.exists():
        raise KhaosError(f"no deployment record {path} (deploy the job with playbooks/deploy_job.yml first)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise KhaosError(f"deployment record {path} is unreadable: {str(e).splitlines()[0]}") from None
    if not _is_record(data):
        raise KhaosError(f"deployment record {path} is not a khaos deployment record")
    return Record.from_dict(data)


def _is_record(data: Any) -> bool:
    """A JSON object with a name, whose lists and objects are where a record has them."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return False
    shapes = {"args": list, "config": dict, "generation": (int, float), "history": list, "pending": dict}
    return all(data.get(key) is None or isinstance(data[key], kind) for key, kind in shapes.items())


def save(path: Path, record: Record) -> None:
    """Atomic, durable and private (0600: args and settings may hold credentials); KhaosError if the
    disk refuses."""
    record.history = record.history[-HISTORY_KEEP:]
    try:
        write_json(path, record.to_dict(), mode=0o600)
    except OSError as e:
        raise KhaosError(f"cannot write the deployment record {path}: {e.strerror or e}") from None
