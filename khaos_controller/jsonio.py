"""JSON files: values made JSON-safe, and whole-file writes that are atomic and durable."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """A copy of ``x`` that json.dumps accepts: numpy scalars as Python ones, NaN/inf as None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None  # JSON has no inf/NaN
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_atomic(path: str | os.PathLike, text: str, durable: bool = True, mode: int | None = None) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader or a
    crash sees the old file or the new one, never half of one. ``durable`` fsyncs the file and its
    directory before returning; ``mode`` sets its permission bits (e.g. 0o600 for secrets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is None else mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def write_json(path: str | os.PathLike, data: Any, durable: bool = True, mode: int | None = None) -> Path:
    """``data`` as indented JSON (see :func:`jsonable`), written with :func:`write_atomic`."""
    return write_atomic(path, json.dumps(jsonable(data), indent=1, allow_nan=False) + "\n", durable, mode)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old
