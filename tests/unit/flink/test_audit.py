"""Unit tests for khaos_controller.flink.audit on small generated FileSink-like directories."""

from pathlib import Path

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.flink.audit import AuditResult, audit


def write(path: Path, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def test_contiguous_over_buckets_and_subtasks(tmp_path):
    write(tmp_path / "2026-01-01--10" / "part-aaa-0-0", range(0, 100, 2))
    write(tmp_path / "2026-01-01--10" / "part-aaa-1-0", range(1, 100, 2))
    write(tmp_path / "2026-01-01--11" / "part-aaa-0-1", range(100, 250))
    r = audit(tmp_path)
    assert r == AuditResult(records=250, distinct=250, min_id=0, max_id=249, lost=0, duplicated=0, files=3)
    assert r.exactly_once


def test_gap_is_lost(tmp_path):
    write(tmp_path / "b" / "part-x-0-0", [0, 1, 2, 6, 7])
    r = audit(tmp_path)
    assert (r.records, r.distinct, r.max_id, r.lost, r.duplicated) == (5, 5, 7, 3, 0)
    assert not r.exactly_once


def test_missing_zero_counts_as_lost(tmp_path):
    write(tmp_path / "part-x-0-0", [3, 4])
    r = audit(tmp_path)
    assert (r.min_id, r.max_id, r.lost) == (3, 4, 3)


def test_duplicates_within_and_across_files(tmp_path):
    write(tmp_path / "part-x-0-0", [0, 1, 2, 2])
    write(tmp_path / "part-x-1-0", [1, 2, 3])
    r = audit(tmp_path)
    assert (r.records, r.distinct, r.lost, r.duplicated) == (7, 4, 0, 3)


def test_in_progress_and_pending_files_ignored(tmp_path):
    write(tmp_path / "b" / "part-x-0-0", range(10))
    write(tmp_path / "b" / ".part-x-0-1.inprogress.1234", range(5, 20))  # uncommitted
    write(tmp_path / "b" / ".part-x-0-2.pending", [99])
    write(tmp_path / "_SUCCESS", [])
    r = audit(tmp_path)
    assert (r.records, r.max_id, r.lost, r.duplicated, r.files) == (10, 9, 0, 0, 1)


def test_empty_directory_and_empty_files(tmp_path):
    assert audit(tmp_path) == AuditResult(0, 0, None, None, 0, 0, 0)
    write(tmp_path / "part-x-0-0", [])
    assert audit(tmp_path).files == 1


def test_large_ids_grow_bitmap(tmp_path):
    write(tmp_path / "part-x-0-0", [0])
    write(tmp_path / "part-x-0-1", [1_000_000])
    r = audit(tmp_path)
    assert (r.distinct, r.max_id, r.lost) == (2, 1_000_000, 999_999)


def test_missing_directory(tmp_path):
    with pytest.raises(KhaosError, match="does not exist"):
        audit(tmp_path / "nope")


def test_garbage_line_rejected(tmp_path):
    (tmp_path / "part-x-0-0").write_text("1\nhello\n3\n")
    with pytest.raises(KhaosError, match="part-x-0-0"):
        audit(tmp_path)
    (tmp_path / "part-x-0-0").write_text("1\n-2\n")
    with pytest.raises(KhaosError):
        audit(tmp_path)


def test_kafka_partitions_read_to_different_points_lose_nothing(tmp_path):
    # ids i went to partition i % 2; the job stopped with partition 0 read up to 4 and partition 1 up to 9
    write(tmp_path / "part-x-0-0", [0, 2, 4, 1, 3, 5, 7, 9])
    assert audit(tmp_path).lost == 2  # 6 and 8 look lost without the partitions
    r = audit(tmp_path, partition_of=lambda ids: ids % 2)
    assert (r.records, r.lost, r.duplicated) == (8, 0, 0)
    write(tmp_path / "part-x-0-0", [0, 4, 1, 3, 5, 7, 9])  # 2 of partition 0 is missing before its 4
    assert audit(tmp_path, partition_of=lambda ids: ids % 2).lost == 1
