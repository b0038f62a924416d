"""One way to read the project's YAML files (experiment, evaluation, daemon config).

Each file type is a pydantic model: its fields are the single table of (key, type, default, bounds,
help) that validates a file, fills in its defaults and renders the docs table (schema_docs.py; a test
keeps the docs in step). Every problem is ONE line ``FILE: field.path: what is wrong``.
Numbers are strict (``"5"`` and ``true`` are not numbers) and finite; unknown keys are refused.
"""

from __future__ import annotations

import math
import os
import tempfile
import types
import typing
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from .errors import KhaosError

MAX_FILE_BYTES = 1 << 20  # a config file larger than 1 MiB is not a config file

# Physical bounds: a number beyond them is a typo or garbage, not a workload. Every file type, flag and
# profile row is held to them (the schemas' fields, the CLI's flags, model/results.py's results reader).
DAY = 86400  # s; upper bound of times (a larger one also overflows a sleep or a socket timeout)
MIN_INTERVAL_S = 0.01  # a checkpoint interval, s ...
MAX_INTERVAL_S = DAY  # ... up to a day
MAX_RATE = 10_000_000  # events/s into one job
MAX_RECOVERY_S = 1_000_000  # a recovery (or its limit), s
MAX_LATENCY_MS = DAY * 1000  # a latency (or its limit), ms
MAX_DURATION_S = 10_000_000  # ~116 days: a workload's length (a trace, a replay, a recording), s
# A job's parallelism: Flink's default key-group count (max parallelism) is 128 up to parallelism 128 and
# grows past it; 256 is beyond every cluster Khaos profiles or evaluates on (one slot per core).
MAX_PARALLELISM = 256
FailureMode = Literal["process", "host"]  # what a profile kills: a TaskManager JVM, or its whole host
FAILURE_MODES = typing.get_args(FailureMode)


class Section(BaseModel):
    """A mapping of a config file: strict, finite numbers, no unknown keys; ``key: null`` = the default."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if not (
                    v is None
                    and k in cls.model_fields
                    and not cls.model_fields[k].is_required()
                    and not _nullable(cls.model_fields[k])
                )
            }
        return data


class JobBase(Section):
    """The part of a job section the profile's and the evaluation's share: the arguments and the parallelism.
    Each adds its jar (and what else it needs)."""

    args: list[str] | None = Field(
        None,
        description="program arguments; {output}, {start_ms}, {trace}, {rate} (profiles only) and with kafka "
        "{bootstrap}, {topic}, {group}, {output_topic} are filled in per run; without {output} there is no "
        "sink audit (default: the sample job's)",
    )
    parallelism: int = Field(2, ge=1, le=MAX_PARALLELISM, description="job parallelism")


def _nullable(f: FieldInfo) -> bool:
    t = f.annotation
    return typing.get_origin(t) in (typing.Union, types.UnionType) and type(None) in typing.get_args(t)


def resolve_path(base: Path, value: str | Path) -> Path:
    """Where a path named in a config file is, in one order for every config: an absolute one (``~``
    expanded) as it is; else the first that exists of: beside the config file (``base``, its directory),
    the current directory, the repository (the examples name repository paths such as
    build/jobs/iot-vehicles.jar); else (a file still to be written) beside the config file."""
    from . import REPO_ROOT

    p = Path(value).expanduser()
    if p.is_absolute():
        return Path(os.path.normpath(p))
    for root in (Path(base), Path.cwd(), REPO_ROOT):
        if (root / p).exists():
            return Path(os.path.normpath(root / p))
    return Path(os.path.normpath(Path(base) / p))


def field_error(path: Path | str, where: str, what: str) -> KhaosError:
    """`FILE: field: what is wrong`."""
    return KhaosError(f"{path}: {where}: {what}")


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _Loader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently; a merge key ``<<`` may still be overridden)."""

    def construct_mapping(self, node, deep=False):
        """The mapping of ``node``; a key given twice is an error."""
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise _DuplicateKey(None, None, f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class says so
                    pass
        return super().construct_mapping(node, deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line (PyYAML's own text spans several, with a copy of the input)."""
    if isinstance(e, yaml.reader.ReaderError):
        return f"{e.reason}: character {e.character!r} at byte {e.position}"
    text = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
    return " ".join(str(text).split())


def read_mapping(path: str | Path, kind: str) -> tuple[Path, dict]:
    """Parse a YAML file whose top level must be a mapping (one-line errors, also for binary or
    absurdly nested input, and for a key given twice)."""
    path = Path(path)
    if not path.exists():
        raise KhaosError(f"{path}: no such {kind} file")
    if not path.is_file():
        raise KhaosError(f"{path}: {kind} file is not a regular file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KhaosError(f"{path}: cannot read the {kind} file: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise KhaosError(f"{path}: {len(data)} bytes is too large for a {kind} file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KhaosError(f"{path}: not a text file (not UTF-8)") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        what = _yaml_problem(e)
        raise field_error(path, where, what if isinstance(e, _DuplicateKey) else f"malformed YAML ({what})") from None
    except RecursionError:
        raise field_error(path, "YAML", "nested too deeply") from None
    if not isinstance(raw, dict):
        raise field_error(path, "top level", "must be a mapping")
    return path, raw


# ------------------------------------------------------------------------------ values and paths


def finite(value: float, what: str, low: float | None = None, strict_low: bool = True) -> float:
    """``value`` if it is a finite number (above ``low``), else KhaosError naming ``what``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict_low else '>='} {low:g}"
        raise KhaosError(f"{what} must be a finite number{bound}, got {value!r}")
    return value


def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, bool, float | None]:
    """(low, low is exclusive, high) of a schema field: what a command-line flag for it is held to."""
    low, open_low, high = None, False, None
    for m in model.model_fields[name].metadata:
        if getattr(m, "gt", None) is not None:
            low, open_low = m.gt, True
        if getattr(m, "ge", None) is not None:
            low = m.ge
        if getattr(m, "le", None) is not None:
            high = m.le
    return low, open_low, high


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host (and a valid port), or None."""
    text = url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as e:
        return f"{url!r} is not an http(s) URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        return f"{url!r} is not an http(s) URL with a host, e.g. http://10.213.0.11:8081"
    if port == 0:
        return f"{url!r}: port 0 is not a port"
    return None


def _existing_ancestor(p: Path) -> Path:
    a = p
    while not os.path.lexists(a) and a != a.parent:
        a = a.parent
    return a


def _probe(d: Path) -> str | None:
    """None if a file can be created in directory ``d`` (tried for real: root passes os.access,
    but not a read-only file system or /proc)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".khaos-probe-", dir=d)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(name)
    return None


def dir_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be an output directory (it must be a writable directory, or creatable),
    or None. Creates nothing."""
    p = Path(path).expanduser().absolute()
    if os.path.lexists(p) and not p.is_dir():
        return f"{p} is not a directory"
    if p.is_dir():
        why = _probe(p)
        return f"{p} is not writable ({why})" if why else None
    a = _existing_ancestor(p.parent)
    if not a.is_dir():
        return f"cannot create {p}: {a} is not a directory"
    why = _probe(a)
    return f"cannot create {p} in {a} ({why})" if why else None


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be written as a file (it is a directory, or its directory cannot be
    made or written), or None. Creates nothing."""
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        return f"{p} is a directory, not a file"
    if os.path.lexists(p) and not p.is_file():
        return f"{p} is not a regular file"
    return dir_problem(p.parent)


def out_dir(path: str | Path, what: str) -> Path:
    """``path`` as an output directory, checked (KhaosError ``WHAT: problem``)."""
    why = dir_problem(path)
    if why:
        raise KhaosError(f"{what}: {why}")
    return Path(path)


def out_file(path: str | Path, what: str) -> Path:
    """``path`` as a file to write, checked (KhaosError ``WHAT: problem``)."""
    why = file_problem(path)
    if why:
        raise KhaosError(f"{what}: {why}")
    return Path(path)


def _field(model: type[BaseModel], loc: tuple) -> FieldInfo | None:
    """The FieldInfo at ``loc`` (names and list indexes) inside ``model``."""
    cur: Any = model
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        info = cur.model_fields[part]
        cur = inner_model(info.annotation)
    return info


def inner_model(t: Any) -> Any:
    """The model class inside Optional[...] / list[...] annotations, else ``t``."""
    for a in typing.get_args(t) or ():
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        inner = inner_model(a)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return t


def _known(model: type[BaseModel], loc: tuple) -> str:
    parent = _field(model, loc[:-1]) if len(loc) > 1 else None
    cls = inner_model(parent.annotation) if parent is not None else model
    names = sorted(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []
    return f" (known: {', '.join(names)})" if names else ""


def _bound(ctx: dict, key: str) -> str:
    v = ctx.get(key)
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe(err: dict, model: type[BaseModel]) -> str:
    """One pydantic error as plain words."""
    kind, loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    info = _field(model, loc)
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if kind == "missing" or (value is None and info is not None and info.is_required()):
        return f"missing ({info.description})" if info is not None and info.description else "missing"
    if kind == "extra_forbidden":
        return "unknown field" + _known(model, loc)
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a mapping" + (
            f" of {', '.join(sorted(inner_model(info.annotation).model_fields))}"
            if info is not None
            and isinstance(inner_model(info.annotation), type)
            and issubclass(inner_model(info.annotation), BaseModel)
            else ""
        )
    if kind in ("float_type", "float_parsing"):
        return f"{shown} is not a number"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{shown} is not a whole number"
    if kind == "finite_number":
        return f"{shown} is not a finite number"
    if kind in ("string_type",):
        return f"{shown} is not a string"
    if kind == "string_too_short":
        return f"{shown} is not a non-empty string"
    if kind in ("bool_type", "bool_parsing"):
        return f"{shown} is not true or false"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length", 1) <= 1 else f"needs at least {ctx['min_length']} items"
    if kind == "too_long":
        return f"has more than {ctx.get('max_length')} items"
    if kind == "greater_than":
        return f"{shown} must be > {_bound(ctx, 'gt')}"
    if kind == "greater_than_equal":
        return f"{shown} must be >= {_bound(ctx, 'ge')}"
    if kind == "less_than":
        return f"{shown} must be < {_bound(ctx, 'lt')}"
    if kind == "less_than_equal":
        return f"{shown} must be <= {_bound(ctx, 'le')}"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "?")).replace("'", "").replace(" or ", ", ")
        return f"{shown} is not one of {expected}"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match {ctx.get('pattern')}"
    return err["msg"].removeprefix("Value error, ")


def validate(model: type[BaseModel], raw, path: Path | str, prefix: str = ""):
    """``model`` filled from ``raw``; KhaosError ``FILE: field.path: problem`` (the first problem).
    ``prefix`` names where ``raw`` sits in the file when it is a section of it."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ([prefix] if prefix else []) + list(err["loc"])
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        raise field_error(path, where or "top level", describe(err, model)) from None
    except RecursionError:
        raise field_error(path, "top level", "nested too deeply") from None


def check(model: type[BaseModel], values: dict, names: dict[str, str]) -> None:
    """Hold ``values`` (some fields of ``model``) to its types, bounds and rules; the fields left out are
    not checked. KhaosError `NAME: problem` for the first refused: NAME is ``names`` of that field, or
    ``names[""]`` for a rule across fields."""
    try:
        model.model_validate(values)
    except ValidationError as e:
        errors = [err for err in e.errors() if not err["loc"] or err["loc"][0] in values]
        if errors:
            loc = errors[0]["loc"]
            raise KhaosError(f"{names[loc[0] if loc else '']}: {describe(errors[0], model)}") from None


def load(model: type[BaseModel], path: str | Path, kind: str):
    """Read a YAML file of type ``model``: returns (path, instance)."""
    path, raw = read_mapping(path, kind)
    return path, validate(model, raw, path)


# The docs tables (schema_docs.py) read the schemas; their names stay importable from here.
_DOCS = ("rows", "docs_table", "DOC_TABLES", "sync_docs")


def __getattr__(name: str):
    if name in _DOCS:
        from . import schema_docs

        return getattr(schema_docs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # python -m khaos_controller.schema: rewrite the docs tables from the schemas
    from . import REPO_ROOT
    from .schema_docs import sync_docs

    for doc in sync_docs(REPO_ROOT, write=True):
        print(f"updated {doc}")
