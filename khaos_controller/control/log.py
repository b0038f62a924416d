"""The daemon's structured logs on stderr: ``TIME level=INFO event=decision key=value ...`` or JSON lines."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys

from ..jsonio import jsonable

log = logging.getLogger("khaos.daemon")


class Formatter(logging.Formatter):
    """key=value (``kv``) or one JSON object per line (``json``)."""

    def __init__(self, fmt: str = "kv"):
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        """One line for one record; the record's ``kv`` extra holds the fields."""
        ts = _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds")
        fields = getattr(record, "kv", None) or {}
        if self.fmt == "json":
            return json.dumps(
                {"ts": ts, "level": record.levelname.lower(), "event": record.getMessage(), **jsonable(fields)},
                allow_nan=False,
            )
        parts = [ts, f"level={record.levelname.lower()}", f"event={record.getMessage()}"]
        for k, v in fields.items():
            if isinstance(v, float):
                v = f"{v:.6g}"
            v = str(v)
            if not v or any(c in v for c in ' "=\n\t'):
                v = json.dumps(v)
            parts.append(f"{k}={v}")
        return " ".join(parts)


def event(level: int, name: str, **fields) -> None:
    """Log event ``name`` with its fields."""
    log.log(level, name, extra={"kv": fields})


def setup(level: str = "info", fmt: str = "kv") -> None:
    """Structured logs of the `khaos` logger on stderr (replaces an earlier setup's handler)."""
    logger = logging.getLogger("khaos")
    for h in list(logger.handlers):
        if getattr(h, "_khaos_daemon", False):
            logger.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(Formatter(fmt))
    h._khaos_daemon = True  # type: ignore[attr-defined]
    logger.addHandler(h)
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False
