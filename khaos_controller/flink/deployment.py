"""The durable record of a deployed job and the safe change of its checkpoint interval.

deploy_job.yml writes a record per job (jar, args, settings, job id, interval). A change of
interval (playbooks/reconfigure.yml, later the daemon) is:

  stop-with-savepoint -> record the savepoint path durably BEFORE anything else ->
  resubmit the same jar and args from it with the new interval -> verify every task RUNNING
  and the new interval in force.

If the savepoint fails, Flink keeps the job running and nothing else happens. If the resubmit
fails, the job is resubmitted from the same savepoint with the old interval. A job is never
cancelled unless a completed savepoint of it is recorded. A record left with a pending
change (the controller died half-way) is finished by `reconcile`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import KhaosError
from ..jsonio import write_json
from .client import FlinkClient, FlinkError


def seconds(text: str | float) -> float:
    """'10s', '500ms', '2min', '1 h', 7 -> seconds."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*", str(text))
    if not m:
        raise KhaosError(f"{text!r} is not a duration like 10s, 500ms or 2min")
    return float(m.group(1)) * {"ms": 0.001, None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def load(path: Path) -> dict:
    """Read a deployment record."""
    if not path.exists():
        raise KhaosError(f"no deployment record {path} (deploy the job with playbooks/deploy_job.yml first)")
    return json.loads(path.read_text())


def save(path: Path, record: dict) -> None:
    """Atomic and durable: a crash leaves either the old or the new record, never half of one."""
    write_json(path, record)


def _event(record: dict, action: str, **data) -> None:
    record.setdefault("history", []).append({"ts": round(time.time(), 3), "action": action, **data})


def _running(client: FlinkClient, name: str) -> list[str]:
    return [j["jid"] for j in client.live_jobs(name)]


def _submit(client: FlinkClient, record: dict, interval_s: float, savepoint: str | None, timeout: float) -> str:
    jar_id = record.get("jar_id")
    if jar_id not in {j["id"] for j in client.jars()}:
        jar_id = record["jar_id"] = client.upload_jar(record["jar"])
    config = dict(record.get("config") or {})
    config["pipeline.name"] = record["name"]
    config["execution.checkpointing.interval"] = f"{interval_s:g}s"
    job_id = client.run_jar(
        jar_id,
        args=record["args"],
        entry_class=record.get("entry_class") or None,
        parallelism=record.get("parallelism") or None,
        savepoint=savepoint,
        config=config,
    )
    try:
        client.wait_running(job_id, timeout=timeout)
        got = client.checkpoint_interval_ms(job_id) / 1000
        if abs(got - interval_s) > 0.001:
            raise KhaosError(f"job {job_id} runs with interval {got:g}s, not {interval_s:g}s")
    except KhaosError as e:
        # Never leave a half-started copy behind. One that runs may have checkpointed (and
        # committed output) since the savepoint: stop it with a savepoint of its own. One that
        # never ran every task cannot have completed a checkpoint: its state is the recorded savepoint.
        if job_id in _running(client, record["name"]):
            if client.all_tasks_running(job_id):
                raise ResubmitError(str(e), client.stop_with_savepoint(job_id, timeout=timeout)) from None
            client.cancel(job_id)
        raise ResubmitError(str(e), savepoint) from None
    return job_id


class ResubmitError(KhaosError):
    """A resubmitted job did not come up; `savepoint` is the state to roll back from."""

    def __init__(self, message: str, savepoint: str | None):
        super().__init__(message)
        self.savepoint = savepoint


def reconfigure(
    client: FlinkClient, path: Path, new_interval: str | float, savepoint_dir: str | None = None, timeout: float = 180
) -> dict:
    """Change the job's checkpoint interval safely. Returns {changed, job_id, old_s, new_s, savepoint, ...}."""
    record = load(path)
    new_s = seconds(new_interval)
    if new_s < 0.01:
        raise KhaosError(f"checkpoint interval {new_interval!r} is below Flink's minimum of 10 ms")
    if record.get("pending"):
        raise KhaosError(f"{path}: a change is still pending ({record['pending']}): run reconcile first")
    jobs = _running(client, record["name"])
    if len(jobs) != 1:
        raise KhaosError(f"need exactly one running job named {record['name']!r} on {client.url}, found {len(jobs)}")
    job_id = jobs[0]
    old_s = client.checkpoint_interval_ms(job_id) / 1000
    if abs(old_s - new_s) < 0.001:
        return {"changed": False, "job_id": job_id, "old_s": old_s, "new_s": new_s}
    t0 = time.time()
    try:
        location = client.stop_with_savepoint(job_id, target_dir=savepoint_dir, timeout=timeout)
    except FlinkError as e:  # refused at once, or the savepoint itself failed: Flink keeps the job running
        state = client.job(job_id)["state"]
        _event(record, "savepoint_failed", job_id=job_id, error=str(e), job_state=state)
        save(path, record)
        raise KhaosError(f"savepoint failed, job {job_id} left {state} on interval {old_s:g}s: {e}") from None
    # the savepoint is the only copy of the job's state now: record it before anything else
    record["pending"] = {
        "savepoint": location,
        "old_s": old_s,
        "new_s": new_s,
        "stopped_job": job_id,
        "ts": round(time.time(), 3),
    }
    _event(record, "stopped_with_savepoint", job_id=job_id, savepoint=location)
    save(path, record)
    try:
        new_job = _submit(client, record, new_s, location, timeout)
    except KhaosError as e:  # a FlinkError (upload/run refused) or a ResubmitError (did not come up)
        location = getattr(e, "savepoint", None) or location
        record["pending"]["savepoint"] = location
        _event(record, "resubmit_failed", interval_s=new_s, error=str(e), savepoint=location)
        save(path, record)
        try:
            old_job = _submit(client, record, old_s, location, timeout)
        except KhaosError as e2:
            raise KhaosError(
                f"resubmit failed ({e}) and so did the rollback ({e2}): the job is STOPPED, its state "
                f"is in savepoint {location} (recorded in {path}); fix the cause, then reconcile"
            ) from None
        _finish(path, record, old_job, old_s, location)
        raise KhaosError(
            f"resubmit with interval {new_s:g}s failed ({e}); rolled back: job {old_job} "
            f"runs on {old_s:g}s from savepoint {location}"
        ) from None
    _finish(path, record, new_job, new_s, location)
    return {
        "changed": True,
        "job_id": new_job,
        "old_job_id": job_id,
        "old_s": old_s,
        "new_s": new_s,
        "savepoint": location,
        "seconds": round(time.time() - t0, 3),
    }


def _finish(path: Path, record: dict, job_id: str, interval_s: float, savepoint: str) -> None:
    record.update(job_id=job_id, checkpoint_interval_s=interval_s, last_savepoint=savepoint, pending=None)
    _event(record, "running", job_id=job_id, interval_s=interval_s, savepoint=savepoint)
    save(path, record)


def reconcile(client: FlinkClient, path: Path, timeout: float = 180) -> dict:
    """After a crash mid-change: make exactly one job run. A pending change with no running job
    is finished from the recorded savepoint (new interval, else the old one)."""
    record = load(path)
    pending = record.get("pending")
    jobs = _running(client, record["name"])
    if not pending:
        return {"action": "none", "running": jobs}
    if jobs:  # the resubmit got through before the crash: adopt it
        interval = client.checkpoint_interval_ms(jobs[0]) / 1000
        _finish(path, record, jobs[0], interval, pending["savepoint"])
        return {"action": "adopted", "job_id": jobs[0], "interval_s": interval}
    try:
        job_id, interval = _submit(client, record, pending["new_s"], pending["savepoint"], timeout), pending["new_s"]
    except (KhaosError, FlinkError):
        job_id, interval = _submit(client, record, pending["old_s"], pending["savepoint"], timeout), pending["old_s"]
    _finish(path, record, job_id, interval, pending["savepoint"])
    return {"action": "restored", "job_id": job_id, "interval_s": interval, "savepoint": pending["savepoint"]}
