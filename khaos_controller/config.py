"""Reading the project's YAML files (experiments, controller configs) with one-line errors."""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import KhaosError


def field_error(path: Path, where: str, what: str) -> KhaosError:
    """`FILE: field: what is wrong`."""
    return KhaosError(f"{path}: {where}: {what}")


def read_mapping(path: str | Path, kind: str) -> tuple[Path, dict]:
    """Parse a YAML file whose top level must be a mapping."""
    path = Path(path)
    if not path.is_file():
        raise KhaosError(f"{path}: no such {kind} file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise field_error(path, f"line {mark.line + 1}" if mark else "YAML",
                          f"malformed YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise field_error(path, "top level", "must be a mapping")
    return path, raw


def number(path: Path, where: str, value, lo=None, hi=None, integer: bool = False):
    """A number (a whole one with integer=True) within [lo, hi], else `FILE: field: what is wrong`."""
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise field_error(path, where, f"{value!r} is not a {'whole ' if integer else ''}number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise field_error(path, where, f"{value!r} is out of range {lo:g}..{hi:g}" if hi is not None
                          else f"{value!r} must be >= {lo:g}")
    return value
