"""Exactly-once audit of the iot-vehicles job's AuditSink output.

The job writes each event id (0, 1, 2, ...) once per line with a FileSink. Only committed part
files count: their names start with "part-"; in-progress and pending files are hidden
(".part-...") and are ignored. Ids are tracked in a numpy bitmap (one byte per id), so ~10 million
ids need ~10 MB plus one file's worth of parsed ids.

Fed from Kafka, a job reads each partition in order but the partitions independently: when it stops,
partition 0 may be read up to id 1001 and partition 1 only up to 998. With ``partition_of`` (the
partition each id was written to; kafka/feed.py knows it) an id counts as lost only when a later id
of its own partition was seen.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import KhaosError


@dataclass(frozen=True)
class AuditResult:
    """What the audit of a sink's committed output found."""

    records: int  # lines in committed part files
    distinct: int  # distinct ids
    min_id: int | None  # None when there are no records
    max_id: int | None
    lost: int  # ids in [0, max_id] never seen
    duplicated: int  # extra copies (records - distinct)
    files: int  # committed part files read

    @property
    def exactly_once(self) -> bool:
        """No id lost and none duplicated."""
        return self.lost == 0 and self.duplicated == 0


def committed_files(output_dir: Path) -> list[Path]:
    """Committed FileSink part files under output_dir (recursively, bucket dirs included)."""
    found = []
    for root, _dirs, names in os.walk(output_dir):
        found.extend(Path(root, n) for n in names if n.startswith("part-"))
    return sorted(found)


def _parse_ids(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if not data.strip():
        return np.empty(0, dtype=np.int64)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy only warns about trailing garbage
            ids = np.fromstring(data, dtype=np.int64, sep="\n")
    except (ValueError, DeprecationWarning) as e:
        raise KhaosError(f"audit: {path} is not one integer id per line ({e})") from None
    if len(ids) != lines or (len(ids) and ids.min() < 0):
        raise KhaosError(f"audit: {path} is not one non-negative integer id per line")
    return ids


def audit(output_dir: str | os.PathLike, partition_of: Callable[[np.ndarray], np.ndarray] | None = None) -> AuditResult:
    """Count records, lost ids and duplicates in the committed output of the AuditSink; with
    ``partition_of`` (ids -> their input partitions) lost ids per partition (module docstring)."""
    out = Path(output_dir)
    if not out.is_dir():
        raise KhaosError(f"audit: output directory {out} does not exist (did the job run with --output {out}?)")
    seen = np.zeros(0, dtype=np.bool_)
    records, files, min_id, max_id = 0, 0, None, -1
    for f in committed_files(out):
        files += 1
        ids = _parse_ids(f)
        if not len(ids):
            continue
        records += len(ids)
        lo, hi = int(ids.min()), int(ids.max())
        min_id = lo if min_id is None else min(min_id, lo)
        max_id = max(max_id, hi)
        if hi >= len(seen):  # grow the bitmap geometrically
            grown = np.zeros(max(hi + 1, 2 * len(seen)), dtype=np.bool_)
            grown[: len(seen)] = seen
            seen = grown
        seen[ids] = True
    if records == 0:
        return AuditResult(0, 0, None, None, 0, 0, files)
    distinct = int(np.count_nonzero(seen))
    lost = max_id + 1 - distinct
    if partition_of is not None:  # expected: every id up to the last one seen of its own partition
        seen = seen[: max_id + 1]
        part = np.asarray(partition_of(np.arange(max_id + 1, dtype=np.int64)), dtype=np.int64)
        last = np.full(int(part.max()) + 1, -1, dtype=np.int64)
        np.maximum.at(last, part[seen], np.flatnonzero(seen))
        lost = int(np.count_nonzero(~seen & (np.arange(max_id + 1) <= last[part])))
    return AuditResult(
        records=records,
        distinct=distinct,
        min_id=min_id,
        max_id=max_id,
        lost=lost,
        duplicated=records - distinct,
        files=files,
    )
