"""Resuming a profile: a rerun into the same output directory keeps the units that finished and runs only
the rest (a lab that died, a Ctrl-C, a unit that failed).

A unit is finished when the profile's journal holds its ``unit_done`` line, written after its savepoint,
audit and capacity columns, with the unit's result rows. Units are reused only from runs of the SAME
experiment file (its SHA-256, written in each run's ``start`` line); an output directory that holds
finished units of another experiment is refused with one line, so results never mix."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path

from ..errors import KhaosError


def fingerprint(experiment_file: Path) -> str:
    """The experiment file's SHA-256 (hex, first 16 digits): what a reused unit must come from."""
    return hashlib.sha256(Path(experiment_file).read_bytes()).hexdigest()[:16]


def _entries(journal: Path):
    """(fingerprint of the run that wrote it, entry) for every line of the journal; nothing when there is none."""
    current = None  # the fingerprint of the run whose lines are being read
    try:
        lines = Path(journal).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    except OSError as e:
        raise KhaosError(f"profile journal {journal}: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            if n == len(lines):
                return  # the last line of a run that was killed while writing it
            raise KhaosError(f"profile journal {journal}, line {n}: not JSON (a damaged journal)") from None
        if entry.get("event") == "start":
            current = entry.get("experiment_sha256")
        yield current, entry


def finished(journal: Path, experiment_fp: str) -> dict[str, list[dict]]:
    """{unit ident: its result rows} for every unit the journal records as done by a run of this experiment.
    KhaosError when it records finished units of another experiment."""
    done: dict[str, list[dict]] = {}
    for fp, entry in _entries(journal):
        if entry.get("event") == "unit_done":
            if fp != experiment_fp:
                raise KhaosError(
                    f"output {Path(journal).parent} holds finished units of another experiment file: "
                    "give another --out, or remove that directory to start over"
                )
            done[entry["unit"]] = entry["rows"]
    return done


def probed(journal: Path, experiment_fp: str) -> dict[str, float]:
    """{cluster: capacity} of the FIRST saturation probe a run of this experiment journaled per cluster: a
    resumed profile keeps the rates its first units were given, instead of probing again (a probe of the same
    cluster varies by ~10 %, which would move the utilization levels between units)."""
    first: dict[str, float] = {}
    for fp, entry in _entries(journal):
        if fp == experiment_fp and entry.get("event") == "capacity_probe":
            first.setdefault(entry["cluster"], float(entry["capacity"]))
    return first


def named(units: list, patterns: list[str], flag: str = "--only") -> list:
    """The units whose ident matches one of ``patterns`` (shell-style, e.g. ``*-ci2-*``; all without any):
    a rerun may take the units in another order or a part at a time. KhaosError for a pattern naming none."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(u.ident, pattern) for u in units):
            raise KhaosError(
                f"{flag} {pattern!r} names no unit of this experiment (khaos profile --dry-run lists them)"
            )
    return [u for u in units if not patterns or any(fnmatch.fnmatchcase(u.ident, p) for p in patterns)]


def kept(done: dict[str, list[dict]], units: list, redo: list[str]) -> dict[str, list[dict]]:
    """The finished units a rerun keeps: all but those ``redo`` names (shell-style; run again, their new
    rows replace the old). KhaosError for a pattern naming no unit."""
    again = {u.ident for u in named(units, redo, "--redo")} if redo else set()
    return {u: rows for u, rows in done.items() if u not in again}
