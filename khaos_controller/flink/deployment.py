"""Deployment records, and changes of a running job that can never lose, duplicate or strand it.

A record (``STATE_DIR/<job>.json``, mode 0600) holds what a resubmit needs: the jar, its arguments and
settings, and the job's *lineage* (a random id made at deploy time) and *generation*. Every job Khaos
submits for a record gets the fixed id ``job_id(lineage, generation)``. Flink refuses a second job with
an id it knows (DuplicateJobSubmissionException), so no retry, rollback or reconciliation can ever
start two copies: a submit whose answer was lost is simply made again with the same id.

A change of interval (playbooks/reconfigure.yml, the daemon) runs under a lock per job::

    pre-checks (exactly one live job; the jar is on the cluster or can be uploaded)
    -> record pending {phase: stopping} (fsynced BEFORE the stop)
    -> POST /jobs/:id/stop (stop-with-savepoint) -> record the trigger, then the savepoint
    -> submit generation g+1 with the new interval from it -> every task RUNNING, the interval in force
    -> record the new job, pending cleared

Outcomes: the savepoint fails -> Flink keeps the job running, the pending change is dropped. The new
job is refused -> the same generation is submitted with the old interval (rollback). The new job
FAILED -> the next generation with the old interval, from the newest completed checkpoint of the
failed job if it made one (its output is committed up to there), else from the savepoint. A job that
does not come up in time is left alone (never cancelled: it may have committed output). Anything
whose outcome is not known (timeouts, REST errors, a crash) stays pending in the record and
:func:`reconcile` finishes it: the module runs it before every change and the daemon on every loop.
No path cancels a job; the only stop is stop-with-savepoint.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from pathlib import Path

from ..errors import KhaosError
from ..jsonio import write_json
from .client import TERMINAL, FlinkClient, FlinkError, SavepointError
from .lock import JobLock

HISTORY_KEEP = 200  # record history entries kept (the newest)
KEEP_SAVEPOINTS = 5  # savepoints of its changes a record keeps on disk (the newest; file:// only)


def seconds(text: str | float) -> float:
    """'10s', '500ms', '2min', '1 h', 7 -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*", str(text))
    if not m:
        raise KhaosError(f"{text!r} is not a duration like 10s, 500ms or 2min")
    return float(m.group(1)) * {"ms": 0.001, None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


# ------------------------------------------------------------------------------------------- records


def load(path: Path) -> dict:
    """Read a deployment record (KhaosError if it is missing or not a record)."""
    path = Path(path)
    if not path.exists():
        raise KhaosError(f"no deployment record {path} (deploy the job with playbooks/deploy_job.yml first)")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise KhaosError(f"deployment record {path} is unreadable: {str(e).splitlines()[0]}") from None
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise KhaosError(f"deployment record {path} is not a khaos deployment record")
    return record


def save(path: Path, record: dict) -> None:
    """Atomic, durable and private (0600: args and settings may hold credentials); KhaosError if the
    disk refuses."""
    record["history"] = (record.get("history") or [])[-HISTORY_KEEP:]
    try:
        write_json(path, record, mode=0o600)
    except OSError as e:
        raise KhaosError(f"cannot write the deployment record {path}: {e.strerror or e}") from None


def job_id(record: dict, generation: int) -> str:
    """The fixed Flink job id of a record's generation (32 hex digits)."""
    return hashlib.md5(f"khaos:{record['lineage']}:{generation}".encode()).hexdigest()


def new_record(
    name: str,
    rest_url: str,
    jar: str,
    args: list[str],
    entry_class: str | None = None,
    parallelism: int | None = None,
    config: dict | None = None,
    interval_s: float | None = None,
) -> dict:
    """A record for a job about to be deployed (generation 0 of a new lineage)."""
    return {
        "name": name,
        "rest_url": rest_url,
        "jar": str(jar),
        "jar_id": None,
        "entry_class": entry_class,
        "args": list(args),
        "parallelism": parallelism,
        "config": dict(config or {}),
        "lineage": uuid.uuid4().hex,
        "generation": 0,
        "job_id": None,
        "checkpoint_interval_s": interval_s,
        "last_savepoint": None,
        "pending": None,
        "history": [],
    }


def _event(record: dict, action: str, **data) -> None:
    record.setdefault("history", []).append({"ts": round(time.time(), 3), "action": action, **data})


def _lineage(record: dict) -> None:
    """Records written before lineages: give them one (their current job keeps its id)."""
    if not record.get("lineage"):
        record["lineage"] = uuid.uuid4().hex
        record["generation"] = 0


# ------------------------------------------------------------------------------------------ launching


class NotStarted(KhaosError):
    """Flink refused the submission and does not have the job."""


class Failed(KhaosError):
    """The job was submitted and ended (FAILED, CANCELED or FINISHED) before it ran every task."""


class Stuck(KhaosError):
    """The job is live but not every task runs yet; it was left alone."""


class Unknown(KhaosError):
    """Flink did not answer clearly: the job may or may not exist."""


class WrongInterval(KhaosError):
    """The job ran with another interval; it was stopped with the savepoint ``savepoint``."""

    def __init__(self, message: str, savepoint: str):
        super().__init__(message)
        self.savepoint = savepoint


def _jar_id(client: FlinkClient, record: dict) -> str:
    """The record's jar on the cluster, uploaded again when the JobManager lost it."""
    if record.get("jar_id") and record["jar_id"] in {j["id"] for j in client.jars()}:
        return record["jar_id"]
    if not Path(record["jar"]).is_file():
        raise KhaosError(
            f"the job's jar {record['jar']} is neither on {client.url} nor on this machine: "
            "a resubmit is impossible, nothing was changed"
        )
    record["jar_id"] = client.upload_jar(record["jar"])
    return record["jar_id"]


def precheck(client: FlinkClient, record: dict) -> None:
    """What must hold before a job is stopped: its jar can be submitted again."""
    _jar_id(client, record)


def launch(
    client: FlinkClient, record: dict, generation: int, interval_s: float | None, restore: str | None, timeout: float
) -> str:
    """Make generation ``generation`` run with ``interval_s`` (None: the cluster's) from ``restore``;
    returns its job id.

    Raises NotStarted, Failed, Stuck, Unknown or WrongInterval (each says what Flink now has)."""
    jid = job_id(record, generation)
    known = _lookup(client, jid)
    if known is None:
        config = dict(record.get("config") or {})
        config["pipeline.name"] = record["name"]
        if interval_s:
            config["execution.checkpointing.interval"] = f"{interval_s:g}s"
        try:
            client.run_jar(
                _jar_id(client, record),
                args=record["args"],
                entry_class=record.get("entry_class") or None,
                parallelism=record.get("parallelism") or None,
                savepoint=restore,
                config=config,
                job_id=jid,
            )
        except KhaosError as e:  # a FlinkError, or the jar could not be found or uploaded
            try:
                known = _lookup(client, jid)
            except Unknown:
                known = None
            if known is None:
                kind = Unknown if getattr(e, "ambiguous", False) else NotStarted
                raise kind(f"submit of job {jid} failed: {e}") from None
    return _wait(client, jid, interval_s, timeout)


def _lookup(client: FlinkClient, jid: str, tries: int = 6) -> dict | None:
    """GET /jobs/:id through a few transient errors; Unknown if Flink never answers clearly."""
    for attempt in range(tries):
        try:
            return client.job_or_none(jid)
        except FlinkError as e:
            last = e
            time.sleep(0.5 * (attempt + 1))
    raise Unknown(f"cannot tell whether job {jid} exists: {last}")


def _wait(client: FlinkClient, jid: str, interval_s: float | None, timeout: float) -> str:
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            job = client.job_or_none(jid)
            if job is None:
                last = "not known to Flink yet"
            elif job["state"] in TERMINAL:
                raise Failed(f"job {jid} is {job['state']}: {client.root_exception(jid)}")
            elif client.all_tasks_running(jid):
                got = client.checkpoint_interval_ms(jid) / 1000
                if interval_s and abs(got - interval_s) > 0.001:
                    sp = client.stop_with_savepoint(jid, timeout=timeout)
                    raise WrongInterval(f"job {jid} ran with interval {got:g}s, not {interval_s:g}s", sp)
                return jid
            else:
                last = f"{job['state']}, not every task running"
        except FlinkError as e:  # a busy JobManager: keep asking until the deadline
            last = str(e)
        time.sleep(0.5)
    raise Stuck(f"job {jid} not fully running after {timeout:.0f}s ({last}); left as it is")


def restore_point(client: FlinkClient, failed_jid: str, savepoint: str) -> str:
    """Where a rollback after a FAILED job starts: that job's newest completed checkpoint when it made
    one (its output is committed up to there), else the savepoint it started from."""
    try:
        latest = (client.checkpoints(failed_jid).get("latest") or {}).get("completed") or {}
    except FlinkError:
        return savepoint
    return latest.get("external_path") or savepoint


# --------------------------------------------------------------------------------------- the change


def reconfigure(
    client: FlinkClient,
    path: Path,
    new_interval: str | float,
    savepoint_dir: str | None = None,
    timeout: float = 180,
    keep_savepoints: int | None = None,
) -> dict:
    """Change the job's checkpoint interval safely. Returns {changed, job_id, old_s, new_s, savepoint, ...};
    KhaosError with the outcome otherwise (see the module docstring)."""
    new_s = seconds(new_interval)
    if new_s < 0.01:
        raise KhaosError(f"checkpoint interval {new_interval!r} is below Flink's minimum of 10 ms")
    path = Path(path)
    lock = JobLock(path.parent, load(path)["name"], "change").acquire()
    try:
        if keep_savepoints:
            save(path, {**load(path), "keep_savepoints": int(keep_savepoints)})
        return _reconfigure(client, path, new_s, savepoint_dir, timeout)
    finally:
        lock.release()


def _reconfigure(client: FlinkClient, path: Path, new_s: float, savepoint_dir: str | None, timeout: float) -> dict:
    record = load(path)
    if record.get("pending"):
        raise KhaosError(f"{path}: a change is still pending ({record['pending'].get('phase')}): reconcile first")
    _lineage(record)
    jobs = [j["jid"] for j in client.live_jobs(record["name"])]
    if len(jobs) != 1:
        raise KhaosError(f"need exactly one running job named {record['name']!r} on {client.url}, found {len(jobs)}")
    old_job = jobs[0]
    old_s = client.checkpoint_interval_ms(old_job) / 1000
    if abs(old_s - new_s) < 0.001:
        return {"changed": False, "job_id": old_job, "old_s": old_s, "new_s": new_s}
    precheck(client, record)
    t0 = time.time()
    gen = int(record.get("generation") or 0) + 1
    record["pending"] = {
        "phase": "stopping",
        "job_id": old_job,
        "old_s": old_s,
        "new_s": new_s,
        "generation": gen,
        "savepoint_dir": savepoint_dir,
        "ts": round(time.time(), 3),
    }
    save(path, record)  # before the stop: a crash from here on is finished by reconcile
    try:
        trigger = client.trigger_stop(old_job, savepoint_dir)
        record["pending"]["trigger"] = trigger
        _try_save(path, record)
        location = client.await_savepoint(old_job, trigger, timeout)
    except SavepointError as e:  # Flink says it failed: the job keeps running on its interval
        return _stop_failed(client, path, record, old_job, old_s, e)
    except FlinkError as e:
        if not e.ambiguous and _state(client, old_job) == "RUNNING":
            return _stop_failed(client, path, record, old_job, old_s, e)
        raise KhaosError(
            f"the stop of job {old_job} has no known outcome yet ({e}); it is recorded as pending in "
            f"{path}: reconcile finishes it"
        ) from None
    record["pending"].update(phase="stopped", savepoint=location)
    _event(record, "stopped_with_savepoint", job_id=old_job, savepoint=location)
    unsaved = _try_save(path, record)  # a full disk must not keep the job down: go on, reconcile mends
    result = _bring_up(client, path, record, gen, new_s, old_s, location, timeout)
    result.update(changed=True, old_job_id=old_job, old_s=old_s, new_s=new_s, seconds=round(time.time() - t0, 3))
    if unsaved:
        raise KhaosError(
            f"job {result['job_id']} runs on {result['interval_s']:g}s from savepoint {location}, but "
            f"the record could not be written ({unsaved}): free space, then reconcile"
        )
    if result["interval_s"] != new_s:
        raise KhaosError(
            f"resubmit with interval {new_s:g}s failed ({result['error']}); rolled back: job "
            f"{result['job_id']} runs on {old_s:g}s from {result['savepoint']}"
        )
    return result


def _bring_up(
    client: FlinkClient, path: Path, record: dict, gen: int, new_s: float, old_s: float, restore: str, timeout: float
) -> dict:
    """Generation ``gen`` on the new interval, else a rollback to the old one; records the outcome."""
    try:
        jid = launch(client, record, gen, new_s, restore, timeout)
        return _finish(path, record, jid, gen, new_s, restore)
    except (Stuck, Unknown) as e:
        record["pending"].update(phase="starting", job=job_id(record, gen))
        _try_save(path, record)
        raise KhaosError(f"{e}; the change stays pending in {path}: reconcile finishes it") from None
    except NotStarted as e:  # Flink does not have generation gen: the same generation, old interval
        error, roll_gen, roll_from = str(e), gen, restore
    except Failed as e:
        error, roll_gen, roll_from = str(e), gen + 1, restore_point(client, job_id(record, gen), restore)
    except WrongInterval as e:
        error, roll_gen, roll_from = str(e), gen + 1, e.savepoint
    _event(record, "resubmit_failed", interval_s=new_s, error=error, restore=roll_from)
    record["pending"].update(phase="rollback", generation=roll_gen, savepoint=roll_from, error=error)
    _try_save(path, record)
    try:
        jid = launch(client, record, roll_gen, old_s, roll_from, timeout)
    except KhaosError as e2:
        raise KhaosError(
            f"resubmit failed ({error}) and so did the rollback ({e2}): the job's state is in "
            f"{roll_from} (recorded as pending in {path}); fix the cause, then reconcile"
        ) from None
    return {**_finish(path, record, jid, roll_gen, old_s, roll_from), "error": error}


def _finish(path: Path, record: dict, jid: str, gen: int, interval_s: float, savepoint: str | None) -> dict:
    record.update(job_id=jid, generation=gen, checkpoint_interval_s=interval_s, pending=None)
    if savepoint:
        record["last_savepoint"] = savepoint
        _keep_savepoints(record, savepoint)
    _event(record, "running", job_id=jid, generation=gen, interval_s=interval_s, savepoint=savepoint)
    _try_save(path, record)
    return {"job_id": jid, "interval_s": interval_s, "savepoint": savepoint, "generation": gen}


def _keep_savepoints(record: dict, savepoint: str) -> None:
    """Remember the savepoint; remove the oldest ones the record's changes made beyond
    ``record["keep_savepoints"]`` (default KEEP_SAVEPOINTS). Only file:// savepoints this machine sees
    are removed; others are left to the storage's own lifecycle rules (docs/ansible.md)."""
    import shutil

    kept = [sp for sp in record.get("savepoints") or [] if sp != savepoint] + [savepoint]
    keep = max(1, int(record.get("keep_savepoints") or KEEP_SAVEPOINTS))
    for old in kept[:-keep]:
        local = Path(old.removeprefix("file:").removeprefix("//")) if old.startswith("file:") else None
        if local is not None and local.is_dir() and local.name.startswith("savepoint-"):
            shutil.rmtree(local, ignore_errors=True)
    record["savepoints"] = kept[-keep:]


def _stop_failed(client, path, record, old_job, old_s, error) -> dict:
    state = _state(client, old_job)
    record["pending"] = None
    _event(record, "savepoint_failed", job_id=old_job, error=str(error), job_state=state)
    _try_save(path, record)
    raise KhaosError(f"savepoint failed, job {old_job} left {state} on interval {old_s:g}s: {error}")


def _state(client: FlinkClient, jid: str) -> str:
    try:
        job = client.job_or_none(jid)
    except FlinkError:
        return "UNKNOWN"
    return job["state"] if job else "UNKNOWN"


def _try_save(path: Path, record: dict) -> str | None:
    """Save; on a disk error say why instead of raising (the job matters more than the record)."""
    try:
        save(path, record)
    except KhaosError as e:
        return str(e)
    return None


# ------------------------------------------------------------------------------------------ reconcile


def reconcile(client: FlinkClient, path: Path, timeout: float = 180) -> dict:
    """Finish a change left pending (a crash, a timeout, a full disk, an unclear answer): make exactly
    one job of the record's name run. Returns {action: none | kept | adopted | restored, ...}."""
    path = Path(path)
    lock = JobLock(path.parent, load(path)["name"], "change").acquire()
    try:
        return _reconcile(client, path, timeout)
    finally:
        lock.release()


def _reconcile(client: FlinkClient, path: Path, timeout: float) -> dict:
    record = load(path)
    pending = record.get("pending")
    live = [j["jid"] for j in client.live_jobs(record["name"])]
    if not pending:
        return {"action": "none", "running": live}
    if len(live) > 1:
        raise KhaosError(f"{len(live)} jobs named {record['name']!r} run ({', '.join(live)}): not touching any")
    if pending.get("phase") == "deploying":  # a deploy that crashed after writing the record
        if live:
            _event(record, "deployed", job_id=live[0])
            _finish(path, record, live[0], 0, record.get("checkpoint_interval_s"), pending.get("savepoint"))
            return {"action": "adopted", "job_id": live[0]}
        jid = launch(client, record, 0, record.get("checkpoint_interval_s"), pending.get("savepoint"), timeout)
        _event(record, "deployed", job_id=jid)
        _finish(path, record, jid, 0, record.get("checkpoint_interval_s"), pending.get("savepoint"))
        return {"action": "restored", "job_id": jid}
    old_job = pending.get("job_id")
    if live == [old_job]:  # the stop has not happened (yet): see how the savepoint went
        if pending.get("trigger"):
            location = _await_trigger(client, old_job, pending["trigger"], timeout)
        else:  # the answer to the stop was lost: Flink's own history says whether one is under way
            location = _await_stop(client, old_job, float(pending.get("ts") or 0), timeout)
        live = [j["jid"] for j in client.live_jobs(record["name"])]
        if live == [old_job]:
            record["pending"] = None
            _event(record, "stop_not_done", job_id=old_job)
            save(path, record)
            return {"action": "kept", "job_id": old_job}
        if location:
            pending.update(phase="stopped", savepoint=location)
    if live:  # a job of the change runs (the new one or the rollback): adopt it
        jid = live[0]
        try:
            _wait(client, jid, client.checkpoint_interval_ms(jid) / 1000, timeout)
        except Stuck as e:
            raise KhaosError(f"{e}; the change stays pending in {path}") from None
        interval = client.checkpoint_interval_ms(jid) / 1000
        gen = _generation_of(record, jid, pending)
        _finish(path, record, jid, gen, interval, pending.get("savepoint"))
        return {"action": "adopted", "job_id": jid, "interval_s": interval}
    restore = pending.get("savepoint") or _find_savepoint(client, old_job, pending)
    if not restore:
        raise KhaosError(
            f"no job named {record['name']!r} runs and no savepoint of job {old_job} was found: "
            f"the job is down; restore it by hand from its last checkpoint ({path})"
        )
    pending["savepoint"] = restore
    gen = int(pending.get("generation") or int(record.get("generation") or 0) + 1)
    result = _bring_up(client, path, record, gen, float(pending["new_s"]), float(pending["old_s"]), restore, timeout)
    return {"action": "restored", **result}


def _await_trigger(client: FlinkClient, jid: str, trigger: str | None, timeout: float) -> str | None:
    if not trigger:
        return None
    try:
        return client.await_savepoint(jid, trigger, timeout)
    except FlinkError:
        return None


STOP_GRACE_S = 15.0  # a stop that reached Flink shows a savepoint in its history within this


def _await_stop(client: FlinkClient, jid: str, since: float, timeout: float) -> str | None:
    """Wait out a stop-with-savepoint whose trigger id is unknown: while the job's checkpoint history
    shows a savepoint begun after ``since`` in progress, or done while the job still winds down. Its
    location once the job ended; None when none was begun (after a grace) or it failed."""
    deadline, grace = time.monotonic() + timeout, time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            job = client.job_or_none(jid)
            history = client.checkpoints(jid).get("history") or []
        except FlinkError:
            time.sleep(1)
            continue
        ours = [h for h in history if h.get("is_savepoint") and h.get("trigger_timestamp", 0) / 1000 >= since - 1]
        if job is not None and job["state"] in TERMINAL:
            done = [h for h in ours if h.get("status") == "COMPLETED"]
            return done[0].get("external_path") if done else None
        if ours and ours[0].get("status") == "FAILED":
            return None
        if not ours and time.monotonic() > grace:
            return None
        time.sleep(0.5)
    return None


def _find_savepoint(client: FlinkClient, jid: str | None, pending: dict) -> str | None:
    """The stop's savepoint when the record could not keep it: from the trigger, else the job's history."""
    if not jid:
        return None
    found = _await_trigger(client, jid, pending.get("trigger"), 30)
    if found:
        return found
    try:
        sp = (client.checkpoints(jid).get("latest") or {}).get("savepoint") or {}
    except FlinkError:
        return None
    if sp.get("external_path") and sp.get("trigger_timestamp", 0) / 1000 >= float(pending.get("ts", 0)) - 1:
        return sp["external_path"]
    return None


def _generation_of(record: dict, jid: str, pending: dict) -> int:
    start = int(record.get("generation") or 0)
    for gen in range(start, start + 4):
        if job_id(record, gen) == jid:
            return gen
    return int(pending.get("generation") or start + 1)


# --------------------------------------------------------------------------------------------- deploy


def deploy(client: FlinkClient, path: Path, record: dict, savepoint: str | None, timeout: float) -> dict:
    """Submit a new job (generation 0 of a new lineage) and write its record before the submit, so a
    crash in between is adopted, not duplicated. Returns {changed, job_id, jar_id}."""
    lock = JobLock(Path(path).parent, record["name"], "change").acquire()
    try:
        record["pending"] = {
            "phase": "deploying",
            "job_id": None,
            "old_s": record.get("checkpoint_interval_s"),
            "new_s": record.get("checkpoint_interval_s"),
            "generation": 0,
            "savepoint": savepoint,
            "ts": round(time.time(), 3),
        }
        save(path, record)
        jid = launch(client, record, 0, record.get("checkpoint_interval_s"), savepoint, timeout)
        _event(record, "deployed", job_id=jid)
        _finish(path, record, jid, 0, record.get("checkpoint_interval_s"), savepoint)
        return {"changed": True, "job_id": jid, "jar_id": record.get("jar_id")}
    finally:
        lock.release()


def worst_case_s(timeout: float) -> float:
    """Longest one change can take: upload, stop and savepoint, the new job (and a wrong interval's
    savepoint), a rollback; each bounded by ``timeout``. The bastion's stop timeout is this."""
    return 4 * timeout + 180
