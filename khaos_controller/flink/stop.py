"""The stop of a change (deployment.py): known by its trigger id, its savepoint by a checkpoint id, never
by comparing Flink's clock with ours.

:func:`request` records, before the request, the stop's trigger id (chosen by Khaos) and the newest
checkpoint id Flink has given the job (:func:`last_checkpoint_id`). Flink starts one stop-with-savepoint per (job,
trigger id): while it remembers the id (the stop runs, or ended less than rest.async.store-duration
ago) the same request again starts nothing and gets the same answer. A savepoint Flink takes after the
record has a higher checkpoint id, which finds it when Flink no longer knows the trigger (a JobManager
restart, an expired cache).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import KhaosError
from .client import RUNNING, TERMINAL, FlinkClient, FlinkError, SavepointError, trigger_id
from .record import Pending, Record, save


def request(client: FlinkClient, path: Path, record: Record, jid: str, timeout: float) -> str:
    """Stop-with-savepoint of ``jid`` for the change pending in ``record``; returns the savepoint.

    The trigger id (chosen here) and the job's newest checkpoint id are recorded, fsynced, BEFORE the
    request: whatever happens next, reconcile knows the stop by its id. SavepointError when Flink
    refused the stop or says it failed and the job runs on; KhaosError, the change still pending, when
    the outcome is not known."""
    pending = record.pending
    pending.update(
        phase="stopping",
        job_id=jid,
        trigger=trigger_id(),
        checkpoint_id=last_checkpoint_id(client, jid),
        savepoint=None,
    )
    save(path, record)  # before the stop: a crash from here on is finished by reconcile
    try:
        try:
            client.trigger_stop(jid, pending.trigger, pending.savepoint_dir)
        except FlinkError as e:
            if e.ambiguous or e.status == 500:  # it may have reached Flink
                raise
            raise SavepointError(f"Flink refused the stop of job {jid}: {e}") from None
        return client.await_savepoint(jid, pending.trigger, timeout)
    except SavepointError as e:
        if state(client, jid) not in TERMINAL | {"UNKNOWN"}:
            raise
        error = e
    except FlinkError as e:
        error = e
    raise KhaosError(
        f"the stop of job {jid} has no known outcome yet ({error}); it is recorded as pending in {path}: "
        "reconcile finishes it"
    )


def state(client: FlinkClient, jid: str) -> str:
    """The job's state; UNKNOWN when Flink does not know it or does not answer."""
    try:
        job = client.job_or_none(jid)
    except FlinkError:
        return "UNKNOWN"
    return job["state"] if job else "UNKNOWN"


def last_checkpoint_id(client: FlinkClient, jid: str) -> int:
    """The highest checkpoint id Flink has given the job so far (0: none); a later savepoint's is higher."""
    stats = client.checkpoints(jid)
    entries = [*(stats.get("history") or []), *(stats.get("latest") or {}).values()]
    return max((e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), int)), default=0)


def wait(client: FlinkClient, jid: str, pending: Pending, timeout: float) -> tuple[str, str | None]:
    """Look at the stop of ``jid`` recorded in ``pending`` (trigger, checkpoint_id, savepoint_dir) until
    it has an outcome (:func:`look`), at most ``timeout`` s: then ("busy", why)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome, found = look(client, jid, pending)
        except FlinkError as e:  # a busy or unreachable JobManager: look again
            outcome, found = "busy", str(e)
        if outcome != "busy" or time.monotonic() >= deadline:
            return outcome, found
        time.sleep(1)


def look(client: FlinkClient, jid: str, pending: Pending) -> tuple[str, str | None]:
    """One look: ("ended", the savepoint or None) once the job has ended (or Flink no longer knows it);
    ("running", why) when it runs and no stop of the change is or can still be under way; ("busy",
    why) otherwise. A stop Flink does not know (never received, or forgotten) of a job that runs is
    asked for again under its trigger id: if the first request reached Flink, or arrives later, Flink
    starts no second stop."""
    trigger, after = pending.trigger, pending.checkpoint_id
    job = client.job_or_none(jid)
    op = client.savepoint_status(jid, trigger) if trigger else None
    state = job["state"] if job else None
    if op and op["status"] == "IN_PROGRESS":
        return "busy", f"its savepoint (trigger {trigger}) is in progress"
    if state is None or state in TERMINAL:
        found = (op or {}).get("location")
        if not found and job:
            done = [sp for sp in savepoints_after(client, jid, after) if sp.get("status") == "COMPLETED"]
            found = done[0].get("external_path") if done else None
        return "ended", found
    if state != RUNNING:
        return "busy", f"job {jid} is {state}"
    if op and op["location"]:
        return "busy", f"its savepoint {op['location']} is complete, the job is finishing"
    if op:
        return "running", f"Flink says the stop failed: {op['failure']}"
    if any(sp.get("status") == "IN_PROGRESS" for sp in savepoints_after(client, jid, after)):
        return "busy", f"a savepoint with a checkpoint id above {after} is in progress"
    if trigger:
        client.trigger_stop(jid, trigger, pending.savepoint_dir)
        return "busy", f"Flink did not know the stop (trigger {trigger}): asked again under that id"
    return "running", "no stop of the change is under way"


def savepoints_after(client: FlinkClient, jid: str, after: int | None) -> list[dict]:
    """The job's savepoints (any status) with a checkpoint id above ``after``, newest first (none when
    ``after`` is not known)."""
    if after is None:
        return []
    stats = client.checkpoints(jid)
    found: dict[int, dict] = {}
    for sp in [*(stats.get("history") or []), (stats.get("latest") or {}).get("savepoint") or {}]:
        if sp.get("is_savepoint") and isinstance(sp.get("id"), int) and sp["id"] > after:
            found.setdefault(sp["id"], sp)
    return [found[i] for i in sorted(found, reverse=True)]
