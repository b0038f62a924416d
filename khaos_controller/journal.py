"""The one journal writer: append-only JSON lines, one per event, flushed (and fsynced) as written.

Every line has ``ts`` (epoch s) and ``time`` (UTC ISO) and then the event's own fields, so a crash
loses nothing that was written and `jq` reads any journal Khaos keeps (profile, daemon, evaluation).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
from pathlib import Path

from .errors import KhaosError
from .jsonio import jsonable


class Journal:
    """Append-only JSON lines at ``path``; ``fsync`` makes each line durable before write() returns."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True, max_bytes: int | None = None, keep: int = 5):
        self.path = Path(path)
        self.fsync = fsync
        self.max_bytes, self.keep = max_bytes, keep  # rotation: path.1 .. path.<keep> hold older lines
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KhaosError(f"journal {self.path}: cannot create its directory: {e.strerror or e}") from None
        if self.path.is_dir():
            raise KhaosError(f"journal {self.path} is a directory, not a file")
        self._lock = threading.Lock()

    def write(self, event: str | dict, **data) -> dict:
        """Append one event: ``write("deploy", unit=...)`` or ``write({"event": "deploy", ...})``."""
        entry = dict(event) if isinstance(event, dict) else {"event": event, **data}
        ts = round(time.time(), 3)
        entry = {"ts": ts, **entry}
        entry.setdefault(
            "time", _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
        line = json.dumps(jsonable(entry), allow_nan=False, default=str)
        with self._lock:
            try:
                self._rotate()
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
            except OSError as e:
                raise KhaosError(f"journal {self.path}: cannot append: {e.strerror or e}") from None
        return entry

    def _rotate(self) -> None:
        """When the file is over max_bytes: path -> path.1 -> ... -> path.<keep> (the oldest is dropped)."""
        if not self.max_bytes or not self.path.exists() or self.path.stat().st_size < self.max_bytes:
            return
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        """Nothing to release (each write opens and closes the file); kept for symmetry with files."""


def read(path: str | os.PathLike) -> list[dict]:
    """Every entry of a journal; a torn last line (a crash mid-write) is skipped."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
