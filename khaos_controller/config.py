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
