"""A finished unit's savepoint is disposed through Flink (a failure is a journal line, not a failed unit),
and the labs' peak disk use is kept."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.journal import Journal
from khaos_controller.profile.cleanup import Cleanup, disk_bytes


class Disposal(FlinkClient):
    """POST /savepoint-disposal, then GET its status: IN_PROGRESS once, then COMPLETED (with a cause)."""

    def __init__(self, cause: dict | None = None):
        super().__init__("http://jm:8081")
        self.cause, self.posted, self.looks = cause, [], 0

    def request(self, method, path, **kw):
        assert (method, path) == ("POST", "/savepoint-disposal")
        self.posted.append(kw["json"]["savepoint-path"])
        return {"request-id": "t1"}

    def get(self, path, **kw):
        assert path == "/savepoint-disposal/t1"
        self.looks += 1
        if self.looks == 1:
            return {"status": {"id": "IN_PROGRESS"}}
        return {"status": {"id": "COMPLETED"}, "operation": {"failure-cause": self.cause} if self.cause else {}}


def test_flink_disposes_the_savepoint_and_a_refusal_is_one_line():
    ok = Disposal()
    ok.dispose_savepoint("s3://khaos/savepoints/savepoint-1", poll=0)
    assert ok.posted == ["s3://khaos/savepoints/savepoint-1"] and ok.looks == 2
    refused = Disposal({"class": "java.io.IOException", "stack-trace": "java.io.IOException: Access Denied\n\tat x"})
    with pytest.raises(FlinkError, match=r"^disposal of savepoint s3://b/sp: java.io.IOException: Access Denied$"):
        refused.dispose_savepoint("s3://b/sp", poll=0)


def test_a_unit_leaves_its_disk_sample_and_no_savepoint(tmp_path):
    lab_dir = tmp_path / "lab"
    (lab_dir / "shared" / "savepoints").mkdir(parents=True)
    (lab_dir / "shared" / "savepoints" / "_metadata").write_bytes(b"x" * 5000)
    (lab_dir / "link").symlink_to(lab_dir / "shared" / "savepoints" / "_metadata")
    assert disk_bytes(lab_dir) == 5000  # a link is not counted twice
    journal = Journal(tmp_path / "journal.jsonl", fsync=False)
    cleanup = Cleanup(journal)
    cluster = SimpleNamespace(name="c1", lab=SimpleNamespace(dir=lab_dir))
    cleanup.unit_done(cluster, Disposal(), "u01", "file:///sp-1")
    cleanup.unit_done(cluster, Disposal({"stack-trace": "java.io.IOException: gone"}), "u02", "file:///sp-2")
    events = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["disk", "savepoint_disposed", "disk", "savepoint_kept"]
    assert events[3]["error"] == "disposal of savepoint file:///sp-2: java.io.IOException: gone"
    assert cleanup.peak_bytes == 5000
