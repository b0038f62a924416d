"""The deployment record (flink/record.py): typed, with the file's keys unchanged. Files written before the
type (and before lineages) load; load -> save leaves a file as it was, keys it does not know included; a
record written here is read by the old key names; a bad file is a one-line KhaosError."""

from __future__ import annotations

import json
import stat

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.flink.record import HISTORY_KEEP, Pending, Record, job_id, load, new_record, save
from khaos_controller.jsonio import write_json

KEYS = [
    "name",
    "rest_url",
    "jar",
    "jar_id",
    "entry_class",
    "args",
    "parallelism",
    "config",
    "lineage",
    "generation",
    "job_id",
    "checkpoint_interval_s",
    "last_savepoint",
    "pending",
    "history",
]

# a record as the dict-based code wrote it: mid-change, with retention set
OLD = {
    "name": "tj",
    "rest_url": "http://jm:8081",
    "jar": "/opt/jobs/iot.jar",
    "jar_id": "abc_iot.jar",
    "entry_class": None,
    "args": ["--rate", "1500"],
    "parallelism": 2,
    "config": {"state.backend.type": "rocksdb"},
    "lineage": "0123456789abcdef0123456789abcdef",
    "generation": 3,
    "job_id": "f" * 32,
    "checkpoint_interval_s": 10.0,
    "last_savepoint": "file:///sp/savepoint-7",
    "pending": {
        "phase": "stopping",
        "job_id": "f" * 32,
        "old_s": 10.0,
        "new_s": 5.0,
        "generation": 4,
        "savepoint_dir": None,
        "ts": 1796000000.123,
        "trigger": "9" * 32,
        "checkpoint_id": 41,
        "savepoint": None,
    },
    "history": [
        {"ts": 1795999000.0, "action": "deployed", "job_id": "e" * 32},
        {"ts": 1795999500.5, "action": "stopped_with_savepoint", "job_id": "e" * 32, "savepoint": "file:///sp/s-7"},
        {"ts": 1795999501.0, "action": "running", "job_id": "f" * 32, "generation": 3, "interval_s": 10.0},
    ],
    "keep_savepoints": 3,
    "savepoints": ["file:///sp/savepoint-5", "file:///sp/savepoint-7"],
}

# a record from before lineages: no lineage, no generation, nothing pending
BEFORE_LINEAGES = {
    "name": "tj",
    "rest_url": "http://jm:8081",
    "jar": "/opt/jobs/iot.jar",
    "jar_id": None,
    "entry_class": "com.example.Iot",
    "args": [],
    "parallelism": None,
    "config": {},
    "job_id": "d" * 32,
    "checkpoint_interval_s": 20.0,
    "last_savepoint": None,
    "pending": None,
    "history": [],
}


def written(tmp_path, data, name="tj.json"):
    """A record file as the dict-based code wrote it (jsonio.write_json, mode 0600)."""
    path = tmp_path / name
    write_json(path, data, mode=0o600)
    return path


def test_a_record_written_by_the_dict_code_loads_with_every_value():
    record = Record.from_dict(json.loads(json.dumps(OLD)))
    assert record.name == "tj" and record.args == ["--rate", "1500"] and record.parallelism == 2
    assert record.lineage == OLD["lineage"] and record.generation == 3 and record.job_id == "f" * 32
    assert record.config == {"state.backend.type": "rocksdb"} and record.checkpoint_interval_s == 10.0
    assert record.keep_savepoints == 3 and record.savepoints == OLD["savepoints"]
    assert isinstance(record.pending, Pending) and record.pending.phase == "stopping"
    assert record.pending.trigger == "9" * 32 and record.pending.checkpoint_id == 41
    assert record.pending.savepoint is None and record.history[-1]["action"] == "running"
    assert record.extra == {} and record.pending.extra == {}


@pytest.mark.parametrize("data", [OLD, BEFORE_LINEAGES], ids=["current", "before-lineages"])
def test_load_then_save_leaves_the_file_as_it_was(tmp_path, data):
    path = written(tmp_path, data)
    before = path.read_bytes()
    save(path, load(path))
    assert path.read_bytes() == before  # same keys, values and order
    assert json.loads(path.read_text()) == data


def test_a_record_from_before_lineages_loads_and_gets_one_at_its_next_change(tmp_path):
    path = written(tmp_path, BEFORE_LINEAGES)
    record = load(path)
    assert record.lineage is None and record.generation == 0 and record.pending is None
    record.ensure_lineage()
    assert len(record.lineage) == 32 and len(job_id(record, 1)) == 32
    save(path, record)
    data = json.loads(path.read_text())
    assert data["lineage"] == record.lineage and data["generation"] == 0
    assert data["job_id"] == "d" * 32  # its current job keeps its id


def test_keys_it_does_not_know_are_kept_through_a_change(tmp_path):
    data = {**OLD, "owner": "ops", "pending": {**OLD["pending"], "stopped_job": "c" * 32}}
    path = written(tmp_path, data)
    record = load(path)
    assert record.extra == {"owner": "ops"} and record.pending.extra == {"stopped_job": "c" * 32}
    save(path, record)
    assert json.loads(path.read_text()) == data
    record.pending.update(phase="stopped", savepoint="file:///sp/savepoint-8")
    record.event("stopped_with_savepoint", job_id="f" * 32, savepoint="file:///sp/savepoint-8")
    save(path, record)
    on_disk = json.loads(path.read_text())
    assert on_disk["owner"] == "ops" and on_disk["pending"]["stopped_job"] == "c" * 32
    assert on_disk["pending"]["phase"] == "stopped" and on_disk["history"][-1]["action"] == "stopped_with_savepoint"


def test_a_new_record_has_the_keys_the_dict_code_reads(tmp_path):
    path = tmp_path / "tj.json"
    record = new_record("tj", "http://jm:8081", "/opt/jobs/iot.jar", ["--rate", "1"], interval_s=20.0)
    save(path, record)
    data = json.loads(path.read_text())
    assert list(data) == KEYS
    assert data["generation"] == 0 and data["pending"] is None and data["jar_id"] is None
    assert data["checkpoint_interval_s"] == 20.0 and len(data["lineage"]) == 32
    # a change as the code makes it: every key the dict code wrote, None values included
    record.pending = Pending.new(phase="deploying", job_id=None, old_s=20.0, new_s=20.0, generation=0, savepoint=None)
    record.update(job_id="a" * 32, generation=1, pending=None)
    record.pending = Pending.new(phase="stopping", job_id="a" * 32, old_s=20.0, new_s=5.0, savepoint_dir=None)
    record.pending.update(trigger="1" * 32, checkpoint_id=2, savepoint=None)
    record.keep_savepoints, record.savepoints = 2, ["file:///sp/savepoint-1"]
    save(path, record)
    data = json.loads(path.read_text())
    assert list(data) == [*KEYS, "keep_savepoints", "savepoints"]
    assert data["generation"] == 1 and data["job_id"] == "a" * 32
    assert data["pending"] == {
        "phase": "stopping",
        "job_id": "a" * 32,
        "old_s": 20.0,
        "new_s": 5.0,
        "savepoint_dir": None,
        "trigger": "1" * 32,
        "checkpoint_id": 2,
        "savepoint": None,
    }


def test_a_short_pending_change_stays_short():
    """What the daemon journals of a change a killed daemon left: its keys as on disk, no more."""
    record = Record.from_dict({"name": "tj", "pending": {"old_s": 20.0, "new_s": 11.0}, "history": []})
    assert record.pending.to_dict() == {"old_s": 20.0, "new_s": 11.0}
    assert record.to_dict() == {"name": "tj", "pending": {"old_s": 20.0, "new_s": 11.0}, "history": []}
    assert not Record.from_dict({"name": "tj", "pending": {}}).pending  # {} on disk is no change


def test_save_is_private_and_keeps_the_newest_history(tmp_path):
    path = tmp_path / "tj.json"
    record = new_record("tj", "http://jm:8081", "/opt/jobs/iot.jar", [])
    for i in range(HISTORY_KEEP + 5):
        record.event("running", generation=i)
    save(path, record)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    history = json.loads(path.read_text())["history"]
    assert len(history) == HISTORY_KEEP and history[0]["generation"] == 5


@pytest.mark.parametrize(
    "text, says",
    [
        (None, "no deployment record"),
        ('{"name": "tj",', "is unreadable"),
        ("[1, 2]", "is not a khaos deployment record"),
        ('{"job_id": "x"}', "is not a khaos deployment record"),
        ('{"name": "tj", "pending": "stopping"}', "is not a khaos deployment record"),
        ('{"name": "tj", "history": {"ts": 1}}', "is not a khaos deployment record"),
        ('{"name": "tj", "generation": "three"}', "is not a khaos deployment record"),
    ],
    ids=["missing", "truncated", "a-list", "no-name", "pending-text", "history-object", "generation-text"],
)
def test_a_bad_file_is_a_one_line_error(tmp_path, text, says):
    path = tmp_path / "tj.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(KhaosError, match=says) as e:
        load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_update_refuses_a_field_that_does_not_exist():
    with pytest.raises(AttributeError, match="no field 'lineage_id'"):
        Record(name="tj").update(lineage_id="x")
