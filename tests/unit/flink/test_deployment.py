"""The stop of a change (flink/deployment.py) is known by its trigger id and its savepoint by a checkpoint
id, never by a clock; a slow stop stays pending until it ends. On a test double of the REST client that
keeps Flink's rules: one stop per (job, trigger id), savepoint ids above every earlier checkpoint id, and
the savepoint answered only once the job has finished. The lab test (tests/lab/test_hardening.py, S) runs
the same on a real cluster."""

from __future__ import annotations

import json
import re

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.flink import deployment
from khaos_controller.flink.client import TERMINAL, FlinkClient, FlinkError, SavepointError
from khaos_controller.flink.record import Pending, Record, job_id, load, new_record, save

NAME = "tj"


class FakeFlink:
    """Jobs, their checkpoint history and savepoint triggers, as Flink's REST API shows them."""

    url = "http://fake:8081"

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.ops: dict[tuple[str, str], dict] = {}  # (job, trigger) -> the operation Flink remembers
        self.posts: list[tuple[str, str]] = []  # every stop request that reached Flink
        self.forget = False  # Flink no longer knows any trigger (a JobManager restart, an expired cache)
        self.lose_next_stop = False  # the next stop request never reaches Flink (its sender times out)
        self.on_post = None  # called with the record's text when a stop request arrives

    # ---- what the test sets up and does ----
    def add_job(self, jid: str, interval_ms: int = 20_000, restored: str | None = None) -> None:
        self.jobs[jid] = {"state": "RUNNING", "interval": interval_ms, "history": [], "restored": restored}

    def checkpoint(self, jid: str, savepoint: bool = False, status: str = "COMPLETED", ts: int = 0) -> dict:
        ids = [h["id"] for j in self.jobs.values() for h in j["history"]]
        entry = {"id": max(ids, default=0) + 1, "is_savepoint": savepoint, "status": status, "trigger_timestamp": ts}
        if status == "COMPLETED":
            entry["external_path"] = f"file:///sp/{'savepoint' if savepoint else 'chk'}-{entry['id']}"
        self.jobs[jid]["history"].insert(0, entry)
        return entry

    def finish_stop(self, jid: str, trigger: str, ok: bool = True) -> None:
        """The stop's savepoint completes and the job finishes (ok) or the savepoint fails (it runs on)."""
        sp = next(h for h in self.jobs[jid]["history"] if h["is_savepoint"] and h["status"] == "IN_PROGRESS")
        if ok:
            sp.update(status="COMPLETED", external_path=f"file:///sp/savepoint-{sp['id']}")
            self.jobs[jid]["state"] = "FINISHED"
            self.ops[(jid, trigger)] = {"status": "COMPLETED", "location": sp["external_path"], "failure": None}
        else:
            sp["status"] = "FAILED"
            self.ops[(jid, trigger)] = {"status": "COMPLETED", "location": None, "failure": "declined"}

    def live(self) -> list[str]:
        return [j for j, v in self.jobs.items() if v["state"] not in TERMINAL]

    # ---- the FlinkClient calls deployment.py makes ----
    def live_jobs(self, name: str) -> list[dict]:
        return [{"jid": j, "name": name, "state": self.jobs[j]["state"]} for j in self.live()]

    def job_or_none(self, jid: str) -> dict | None:
        return {"jid": jid, "state": self.jobs[jid]["state"]} if jid in self.jobs else None

    def checkpoints(self, jid: str) -> dict:
        history = self.jobs[jid]["history"]
        sps = [h for h in history if h["is_savepoint"] and h["status"] == "COMPLETED"]
        return {"history": [dict(h) for h in history], "latest": {"savepoint": dict(sps[0]) if sps else None}}

    def checkpoint_interval_ms(self, jid: str) -> int:
        return self.jobs[jid]["interval"]

    def trigger_stop(self, jid: str, trigger: str, target_dir=None, drain=False) -> str:
        assert re.fullmatch(r"[0-9a-f]{32}", trigger)
        if self.lose_next_stop:
            self.lose_next_stop = False
            raise FlinkError("POST /stop timed out", ambiguous=True)
        self.posts.append((jid, trigger))
        if self.on_post:
            self.on_post()
        if (jid, trigger) not in self.ops:  # Flink: one operation per (job, trigger id)
            self.ops[(jid, trigger)] = {"status": "IN_PROGRESS", "location": None, "failure": None}
            self.checkpoint(jid, savepoint=True, status="IN_PROGRESS")
        return trigger

    def savepoint_status(self, jid: str, trigger: str) -> dict | None:
        return None if self.forget else dict(self.ops[(jid, trigger)]) if (jid, trigger) in self.ops else None

    def await_savepoint(self, jid: str, trigger: str, timeout: float) -> str:
        op = self.savepoint_status(jid, trigger) or {}
        if op.get("location"):
            return op["location"]
        if op.get("failure"):
            raise SavepointError(f"savepoint of job {jid} failed: {op['failure']}")
        raise FlinkError(f"savepoint of job {jid} not complete after {timeout:.0f}s", ambiguous=True)

    def jars(self) -> list[dict]:
        return [{"id": "jar1"}]

    def run_jar(self, jar_id, args, entry_class, parallelism, savepoint, config, job_id) -> str:
        assert job_id not in self.jobs  # the fixed ids: never a second job of one generation
        interval = config.get("execution.checkpointing.interval", "20s").removesuffix("s")
        self.add_job(job_id, int(float(interval) * 1000), restored=savepoint)
        return job_id

    def all_tasks_running(self, jid: str) -> bool:
        return self.jobs[jid]["state"] == "RUNNING"

    def root_exception(self, jid: str) -> str:
        return "no exception recorded"


@pytest.fixture
def setup(tmp_path):
    """A record of generation 0 whose job runs on 20 s with two completed checkpoints."""
    flink, path = FakeFlink(), tmp_path / f"{NAME}.json"
    record = new_record(NAME, flink.url, "/nonexistent/job.jar", ["--rate", "1"], interval_s=20.0)
    old = job_id(record, 0)
    record.update(job_id=old, jar_id="jar1")
    save(path, record)
    flink.add_job(old)
    flink.checkpoint(old)
    flink.checkpoint(old)
    return flink, path, old


def pending(path):
    return load(path).pending


def test_the_trigger_and_the_checkpoint_id_are_on_disk_before_the_stop_request(setup):
    flink, path, old = setup
    seen = []
    flink.on_post = lambda: seen.append(json.loads(path.read_text())["pending"])
    with pytest.raises(KhaosError, match="no known outcome yet"):  # the savepoint is slow: still in progress
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    [(jid, trigger)] = flink.posts
    assert jid == old and seen[0]["trigger"] == trigger and seen[0]["phase"] == "stopping"
    assert seen[0]["checkpoint_id"] == 2  # the newest checkpoint id before the stop


def test_a_slow_stop_stays_pending_until_the_job_has_ended(setup):
    flink, path, old = setup
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    trigger = pending(path).trigger
    for _ in range(3):  # the daemon's steps: every reconcile waits, none gives up on the stop
        with pytest.raises(KhaosError, match="is not over after .*the next reconcile looks again"):
            deployment.reconcile(flink, path, timeout=0.1)
        assert pending(path).phase == "stopping" and flink.live() == [old]
    flink.finish_stop(old, trigger)
    result = deployment.reconcile(flink, path, timeout=0.1)
    assert result["action"] == "restored" and result["interval_s"] == 10.0
    [new] = flink.live()
    assert new == result["job_id"] == job_id(load(path), 1)
    assert flink.jobs[new]["restored"] == "file:///sp/savepoint-3" == load(path).last_savepoint
    assert pending(path) is None and len(flink.posts) == 1


def test_a_forgotten_trigger_finds_the_savepoint_by_checkpoint_id_not_by_time(setup):
    flink, path, old = setup
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    trigger = pending(path).trigger
    flink.forget = True  # the JobManager restarted or its trigger cache expired
    with pytest.raises(KhaosError, match="a savepoint with a checkpoint id above 2 is in progress"):
        deployment.reconcile(flink, path, timeout=0.1)
    flink.finish_stop(old, trigger)
    # a savepoint with a LOWER id whose timestamp looks newer (a clock that jumped) is not taken
    flink.jobs[old]["history"].append(
        {
            "id": 1,
            "is_savepoint": True,
            "status": "COMPLETED",
            "external_path": "file:///sp/old",
            "trigger_timestamp": 9e15,
        }
    )
    result = deployment.reconcile(flink, path, timeout=0.1)
    assert result["action"] == "restored" and result["savepoint"] == "file:///sp/savepoint-3"
    assert pending(path) is None and len(flink.live()) == 1


def test_a_stop_flink_never_received_is_asked_again_under_its_id(setup):
    flink, path, old = setup
    flink.lose_next_stop = True
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    assert flink.posts == [] and pending(path).trigger
    trigger = pending(path).trigger
    with pytest.raises(KhaosError, match="is not over"):  # not in progress: asked for again, now it runs
        deployment.reconcile(flink, path, timeout=0.1)
    flink.trigger_stop(old, trigger)  # the first request arrives late: Flink starts no second stop
    assert flink.posts == [(old, trigger), (old, trigger)]
    assert sum(h["is_savepoint"] for h in flink.jobs[old]["history"]) == 1
    flink.finish_stop(old, trigger)
    assert deployment.reconcile(flink, path, timeout=0.1)["action"] == "restored"
    assert len(flink.live()) == 1 and pending(path) is None


def test_a_failed_stop_drops_the_change_once_the_job_runs(setup):
    flink, path, old = setup
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    flink.jobs[old]["state"] = "RESTARTING"  # Flink fails the job over after a failed stop
    flink.finish_stop(old, pending(path).trigger, ok=False)
    with pytest.raises(KhaosError, match="is RESTARTING"):
        deployment.reconcile(flink, path, timeout=0.1)
    flink.jobs[old]["state"] = "RUNNING"
    result = deployment.reconcile(flink, path, timeout=0.1)
    assert result == {"action": "kept", "job_id": old} and pending(path) is None
    assert load(path).history[-1]["reason"] == "Flink says the stop failed: declined"


def test_a_stop_flink_says_failed_at_once_leaves_the_job_running(setup):
    flink, path, old = setup

    def fail_now():
        flink.ops[(old, flink.posts[-1][1])] = {"status": "COMPLETED", "location": None, "failure": "declined"}

    flink.on_post = fail_now
    with pytest.raises(KhaosError, match=f"savepoint failed, job {old} left RUNNING on interval 20s"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    assert pending(path) is None and flink.live() == [old]


def test_a_job_that_ended_with_no_newer_savepoint_is_reported_down(setup):
    flink, path, old = setup
    with pytest.raises(KhaosError, match="no known outcome yet"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    flink.forget = True
    flink.jobs[old]["state"] = "FAILED"  # it died during the stop; its savepoint never completed
    with pytest.raises(KhaosError, match="none with a checkpoint id above 2.*the job is down"):
        deployment.reconcile(flink, path, timeout=0.1)
    assert pending(path).phase == "stopping"  # kept for whoever restores it


# ---- the REST client: the stop's body carries the caller's trigger id --------------------------------


def test_trigger_stop_sends_the_trigger_id_and_checks_the_answer():
    client = FlinkClient("http://fake:8081")
    calls = []

    def request(method, path, **kw):
        calls.append((method, path, kw.get("json")))
        return {"request-id": kw["json"]["triggerId"] if len(calls) == 1 else "something-else"}

    client.request = request
    trigger = "0123456789abcdef0123456789abcdef"
    assert client.trigger_stop("j1", trigger, "file:///sp") == trigger
    assert calls[0] == (
        "POST",
        "/jobs/j1/stop",
        {"drain": False, "triggerId": trigger, "targetDirectory": "file:///sp"},
    )
    with pytest.raises(FlinkError, match="not request-id") as e:
        client.trigger_stop("j1", trigger)
    assert e.value.ambiguous


def test_savepoint_status_is_none_for_a_trigger_flink_does_not_know():
    client = FlinkClient("http://fake:8081")
    answers = iter(
        [
            FlinkError("HTTP 404: not found", status=404),
            {"status": {"id": "IN_PROGRESS"}},
            {"status": {"id": "COMPLETED"}, "operation": {"location": "file:///sp/savepoint-1"}},
            {"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"class": "CheckpointException"}}},
        ]
    )

    def get(path, **kw):
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    client.get = get
    assert client.savepoint_status("j1", "t") is None
    assert client.savepoint_status("j1", "t")["status"] == "IN_PROGRESS"
    assert client.savepoint_status("j1", "t")["location"] == "file:///sp/savepoint-1"
    assert client.savepoint_status("j1", "t")["failure"] == "CheckpointException"


def test_a_live_job_of_the_same_name_that_is_not_the_records_is_never_touched(setup):
    flink, path, old = setup
    flink.jobs.pop(old)  # someone else's job of the same name runs instead (another deployer, a manual submit)
    flink.add_job("f" * 32)
    with pytest.raises(KhaosError, match=r"the live job f{32} named .* is not one of .*someone else's job"):
        deployment.reconfigure(flink, path, "10s", timeout=0.1)
    assert flink.posts == [] and pending(path) is None
    # a pending change finds the foreign job where its own should be: it is not adopted either
    record = load(path)
    record.pending = Pending.new(phase="stopped", job_id=old, savepoint="file:///sp/savepoint-2", generation=1)
    save(path, record)
    with pytest.raises(KhaosError, match="someone else's job, not touching it"):
        deployment.reconcile(flink, path, timeout=0.1)
    assert load(path).job_id == old and flink.live() == ["f" * 32]


def test_savepoints_beyond_the_kept_ones_are_disposed_through_flink_and_a_refusal_is_kept_for_later():
    disposed = []

    class Disposer:
        def dispose_savepoint(self, path, timeout):
            if path.endswith("-2"):
                raise FlinkError(f"disposal of savepoint {path}: java.io.IOException: Access Denied")
            disposed.append(path)

    record = Record(name=NAME, keep_savepoints=3, savepoints=[f"s3://b/savepoint-{i}" for i in range(1, 6)])
    deployment._keep_savepoints(Disposer(), record, "s3://b/savepoint-6")
    assert disposed == ["s3://b/savepoint-1", "s3://b/savepoint-3"]
    assert record.savepoints == [
        "s3://b/savepoint-2",
        "s3://b/savepoint-4",
        "s3://b/savepoint-5",
        "s3://b/savepoint-6",
    ]
    [entry] = record.history
    assert entry["action"] == "savepoint_kept" and "Access Denied" in entry["error"]
    deployment._keep_savepoints(Disposer(), record, "s3://b/savepoint-7")  # tried again at the next change
    assert "s3://b/savepoint-4" in disposed and record.savepoints[0] == "s3://b/savepoint-2"
