"""Deployment records, and changes of a running job that can never lose, duplicate or strand it.

A record (record.py: ``STATE_DIR/<job>.json``, mode 0600) holds what a resubmit needs: the jar, its arguments and
settings, and the job's *lineage* (a random id made at deploy time) and *generation*. Every job Khaos
submits for a record gets the fixed id ``job_id(lineage, generation)``. Flink refuses a second job with
an id it knows (DuplicateJobSubmissionException), so no retry, rollback or reconciliation can ever
start two copies: a submit whose answer was lost is simply made again with the same id.

A change of interval (playbooks/reconfigure.yml, the daemon) runs under a lock per job::

    pre-checks (exactly one live job; the jar is on the cluster or can be uploaded)
    -> record pending {phase: stopping, trigger, checkpoint_id} (fsynced BEFORE the stop): the stop's
       trigger id, chosen here, and the newest checkpoint id Flink has given the job
    -> POST /jobs/:id/stop (stop-with-savepoint) under that trigger id -> record the savepoint
    -> submit generation g+1 with the new interval from it -> every task RUNNING, the interval in force
    -> record the new job, pending cleared

A stop is known by its trigger id, never by a clock (stop.py): Flink starts one stop per (job, trigger
id), so the request can be made again harmlessly, and a savepoint it took has a checkpoint id above the
recorded one (how it is found when Flink no longer knows the trigger: a JobManager restart, an expired
cache).
A change stays pending until the old job has ended (then generation g+1 starts from its savepoint) or
runs with no stop of the change under way (then the change is dropped); a slow stop is waited out by
the next reconcile, never given up on because a timeout passed.

Outcomes: Flink refuses the stop or says the savepoint failed, and the job runs on -> the pending change
is dropped. The new job is refused -> the same generation is submitted with the old interval
(rollback). The new job FAILED -> the next generation with the old interval, from the newest completed
checkpoint of the failed job if it made one (its output is committed up to there), else from the
savepoint. The new job runs on another interval than asked (its code sets one) -> it is stopped the
same way and the next generation rolls back from its savepoint. A job that does not come up in time is
left alone (never cancelled: it may have committed output). Anything whose outcome is not known
(timeouts, REST errors, a crash, a stop still under way) stays pending in the record and
:func:`reconcile` finishes it: the module runs it before every change and the daemon on every loop.
No path cancels a job; the only stop is stop-with-savepoint. Savepoints of the record's changes beyond
``keep_savepoints`` are disposed through Flink (POST /savepoint-disposal); a refusal is a
``savepoint_kept`` history entry (the daemon alerts) and is tried again at the next change. A live job of the record's name that is
neither the record's job nor a generation of its lineage is someone else's (another controller, a
manual submit): a change or a reconcile refuses it in one line and touches nothing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..errors import KhaosError
from . import stop
from .client import TERMINAL, FlinkClient, FlinkError, SavepointError
from .lock import JobLock
from .record import Pending, Record, job_id, load, save

KEEP_SAVEPOINTS = 5  # savepoints of its changes a record keeps (the newest; older ones disposed through Flink)


def seconds(text: str | float) -> float:
    """'10s', '500ms', '2min', '1 h', 7 -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*", str(text))
    if not m:
        raise KhaosError(f"{text!r} is not a duration like 10s, 500ms or 2min")
    return float(m.group(1)) * {"ms": 0.001, None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


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
    """Every task runs, but on another interval than asked (the job's code sets one); left running."""

    def __init__(self, message: str, job_id: str, interval_s: float):
        super().__init__(message)
        self.job_id, self.interval_s = job_id, interval_s


def _jar_id(client: FlinkClient, record: Record) -> str:
    """The record's jar on the cluster, uploaded again when the JobManager lost it."""
    if record.jar_id and record.jar_id in {j["id"] for j in client.jars()}:
        return record.jar_id
    if not record.jar or not Path(record.jar).is_file():
        raise KhaosError(
            f"the job's jar {record.jar} is neither on {client.url} nor on this machine: "
            "a resubmit is impossible, nothing was changed"
        )
    record.jar_id = client.upload_jar(record.jar)
    return record.jar_id


def precheck(client: FlinkClient, record: Record) -> None:
    """What must hold before a job is stopped: its jar can be submitted again."""
    _jar_id(client, record)


def launch(
    client: FlinkClient, record: Record, generation: int, interval_s: float | None, restore: str | None, timeout: float
) -> str:
    """Make generation ``generation`` run with ``interval_s`` (None: the cluster's) from ``restore``;
    returns its job id.

    Raises NotStarted, Failed, Stuck, Unknown or WrongInterval (each says what Flink now has)."""
    jid = job_id(record, generation)
    known = _lookup(client, jid)
    if known is None:
        config = dict(record.config)
        config["pipeline.name"] = record.name
        if interval_s:
            config["execution.checkpointing.interval"] = f"{interval_s:g}s"
        try:
            client.run_jar(
                _jar_id(client, record),
                args=record.args,
                entry_class=record.entry_class or None,
                parallelism=record.parallelism or None,
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
                    raise WrongInterval(f"job {jid} runs with interval {got:g}s, not {interval_s:g}s", jid, got)
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
    lock = JobLock(path.parent, load(path).name, "change").acquire()
    try:
        if keep_savepoints:
            record = load(path)
            record.keep_savepoints = int(keep_savepoints)
            save(path, record)
        return _reconfigure(client, path, new_s, savepoint_dir, timeout)
    finally:
        lock.release()


def _reconfigure(client: FlinkClient, path: Path, new_s: float, savepoint_dir: str | None, timeout: float) -> dict:
    record = load(path)
    if record.pending:
        raise KhaosError(f"{path}: a change is still pending ({record.pending.phase}): reconcile first")
    record.ensure_lineage()
    jobs = [j["jid"] for j in client.live_jobs(record.name)]
    if len(jobs) != 1:
        raise KhaosError(f"need exactly one running job named {record.name!r} on {client.url}, found {len(jobs)}")
    old_job = jobs[0]
    _own(record, old_job, path)
    old_s = client.checkpoint_interval_ms(old_job) / 1000
    if abs(old_s - new_s) < 0.001:
        return {"changed": False, "job_id": old_job, "old_s": old_s, "new_s": new_s}
    precheck(client, record)
    t0 = time.time()
    gen = record.generation + 1
    record.pending = Pending.new(
        phase="stopping",
        job_id=old_job,
        old_s=old_s,
        new_s=new_s,
        generation=gen,
        savepoint_dir=savepoint_dir,
        ts=round(time.time(), 3),
    )
    try:
        location = stop.request(client, path, record, old_job, timeout)
    except SavepointError as e:  # Flink refused the stop or says it failed: the job runs on, on its interval
        return _stop_failed(client, path, record, old_job, old_s, e)
    record.pending.update(phase="stopped", savepoint=location)
    record.event("stopped_with_savepoint", job_id=old_job, savepoint=location)
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
    client: FlinkClient, path: Path, record: Record, gen: int, new_s: float, old_s: float, restore: str, timeout: float
) -> dict:
    """Generation ``gen`` on the new interval, else a rollback to the old one; records the outcome."""
    try:
        jid = launch(client, record, gen, new_s, restore, timeout)
        return _finish(client, path, record, jid, gen, new_s, restore)
    except (Stuck, Unknown) as e:
        record.pending.update(phase="starting", job=job_id(record, gen))
        _try_save(path, record)
        raise KhaosError(f"{e}; the change stays pending in {path}: reconcile finishes it") from None
    except NotStarted as e:  # Flink does not have generation gen: the same generation, old interval
        error, roll_gen, roll_from = str(e), gen, restore
    except Failed as e:
        error, roll_gen, roll_from = str(e), gen + 1, restore_point(client, job_id(record, gen), restore)
    except WrongInterval as e:  # stopped like the old job (recorded first), then the rollback from its savepoint
        error, roll_gen = str(e), gen + 1
        record.pending.generation = roll_gen
        try:
            roll_from = stop.request(client, path, record, e.job_id, timeout)
        except SavepointError as e2:  # it runs on, on the interval it chose
            _finish(client, path, record, e.job_id, gen, e.interval_s, restore)
            raise KhaosError(f"{error}; its stop failed ({e2}): it runs on that interval") from None
    record.event("resubmit_failed", interval_s=new_s, error=error, restore=roll_from)
    record.pending.update(phase="rollback", generation=roll_gen, savepoint=roll_from, error=error)
    _try_save(path, record)
    try:
        jid = launch(client, record, roll_gen, old_s, roll_from, timeout)
    except KhaosError as e2:
        raise KhaosError(
            f"resubmit failed ({error}) and so did the rollback ({e2}): the job's state is in "
            f"{roll_from} (recorded as pending in {path}); fix the cause, then reconcile"
        ) from None
    return {**_finish(client, path, record, jid, roll_gen, old_s, roll_from), "error": error}


def _finish(
    client: FlinkClient, path: Path, record: Record, jid: str, gen: int, interval_s: float, savepoint: str | None
) -> dict:
    record.update(job_id=jid, generation=gen, checkpoint_interval_s=interval_s, pending=None)
    if savepoint:
        record.last_savepoint = savepoint
        _keep_savepoints(client, record, savepoint)
    record.event("running", job_id=jid, generation=gen, interval_s=interval_s, savepoint=savepoint)
    _try_save(path, record)
    return {"job_id": jid, "interval_s": interval_s, "savepoint": savepoint, "generation": gen}


def _keep_savepoints(client: FlinkClient, record: Record, savepoint: str) -> None:
    """Remember the savepoint; dispose of the oldest ones the record's changes made beyond
    ``record.keep_savepoints`` (default KEEP_SAVEPOINTS) through Flink (POST /savepoint-disposal: the
    JobManager deletes them with its own access, on a shared directory or S3 alike). A disposal Flink
    refuses is a ``savepoint_kept`` history entry and is tried again at the next change."""
    kept = [sp for sp in record.savepoints or [] if sp != savepoint] + [savepoint]
    keep = max(1, int(record.keep_savepoints or KEEP_SAVEPOINTS))
    failed = []
    for old in kept[:-keep]:
        try:
            client.dispose_savepoint(old, timeout=60)
        except FlinkError as e:
            failed.append(old)
            record.event("savepoint_kept", savepoint=old, error=str(e))
    record.savepoints = failed + kept[-keep:]


def _stop_failed(client, path, record: Record, old_job, old_s, error) -> dict:
    state = stop.state(client, old_job)
    record.pending = None
    record.event("savepoint_failed", job_id=old_job, error=str(error), job_state=state)
    _try_save(path, record)
    raise KhaosError(f"savepoint failed, job {old_job} left {state} on interval {old_s:g}s: {error}")


def _try_save(path: Path, record: Record) -> str | None:
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
    lock = JobLock(path.parent, load(path).name, "change").acquire()
    try:
        return _reconcile(client, path, timeout)
    finally:
        lock.release()


def _reconcile(client: FlinkClient, path: Path, timeout: float) -> dict:
    record = load(path)
    pending = record.pending
    live = [j["jid"] for j in client.live_jobs(record.name)]
    if not pending:
        return {"action": "none", "running": live}
    if len(live) > 1:
        raise KhaosError(f"{len(live)} jobs named {record.name!r} run ({', '.join(live)}): not touching any")
    if pending.phase == "deploying":
        return _finish_deploy(client, path, record, live, timeout)
    old_job = pending.job_id
    if live == [old_job] or (not live and pending.phase == "stopping"):  # the stop's outcome is not known
        outcome, found = stop.wait(client, old_job, pending, timeout)
        if outcome == "busy":
            raise KhaosError(
                f"the stop of job {old_job} is not over after {timeout:g}s ({found}); the change stays "
                f"pending in {path}: the next reconcile looks again"
            )
        if outcome == "running":
            record.pending = None
            record.event("stop_not_done", job_id=old_job, reason=found)
            save(path, record)
            return {"action": "kept", "job_id": old_job}
        if found:
            pending.update(phase="stopped", savepoint=found)
            _try_save(path, record)
        live = [j["jid"] for j in client.live_jobs(record.name)]
    if live:  # a job of the change runs (the new one or the rollback): adopt it
        return _adopt(client, path, record, live[0], timeout)
    if not pending.savepoint:
        raise KhaosError(
            f"no job named {record.name!r} runs and no savepoint of job {old_job} was found (none with a "
            f"checkpoint id above {pending.checkpoint_id}): the job is down; restore it by hand from "
            f"its last checkpoint ({path})"
        )
    gen = int(pending.generation or record.generation + 1)
    new_s, old_s = float(pending.new_s), float(pending.old_s)
    return {"action": "restored", **_bring_up(client, path, record, gen, new_s, old_s, pending.savepoint, timeout)}


def _finish_deploy(client: FlinkClient, path: Path, record: Record, live: list[str], timeout: float) -> dict:
    """A deploy that crashed after writing the record: adopt its job, else submit it."""
    restore, interval = record.pending.savepoint, record.checkpoint_interval_s
    if live:
        _own(record, live[0], path, record.pending)
        jid, action = live[0], "adopted"
    else:
        jid, action = launch(client, record, 0, interval, restore, timeout), "restored"
    record.event("deployed", job_id=jid)
    _finish(client, path, record, jid, 0, interval, restore)
    return {"action": action, "job_id": jid}


def _adopt(client: FlinkClient, path: Path, record: Record, jid: str, timeout: float) -> dict:
    """A job of the pending change runs (the new one or the rollback): wait until every task runs, then
    record it."""
    pending = record.pending
    _own(record, jid, path, pending)
    try:
        _wait(client, jid, client.checkpoint_interval_ms(jid) / 1000, timeout)
    except Stuck as e:
        raise KhaosError(f"{e}; the change stays pending in {path}") from None
    interval = client.checkpoint_interval_ms(jid) / 1000
    _finish(client, path, record, jid, _generation_of(record, jid, pending), interval, pending.savepoint)
    return {"action": "adopted", "job_id": jid, "interval_s": interval}


def _own(record: Record, jid: str, path: Path, pending: Pending | None = None) -> None:
    """KhaosError unless ``jid`` is this record's job or a generation of its lineage (the ids Khaos gives
    the jobs it submits for it): a job of the same name started by anyone else is never touched."""
    start = record.generation
    ours = {record.job_id, pending.job_id if pending else None} | {job_id(record, g) for g in range(start + 4)}
    if jid not in ours:
        raise KhaosError(
            f"the live job {jid} named {record.name!r} is not one of {path}'s (neither its job "
            f"{record.job_id} nor a generation of its lineage): someone else's job, not touching it"
        )


def _generation_of(record: Record, jid: str, pending: Pending) -> int:
    start = record.generation
    for gen in range(start, start + 4):
        if job_id(record, gen) == jid:
            return gen
    return int(pending.generation or start + 1)


# --------------------------------------------------------------------------------------------- deploy


def deploy(client: FlinkClient, path: Path, record: Record, savepoint: str | None, timeout: float) -> dict:
    """Submit a new job (generation 0 of a new lineage) and write its record before the submit, so a
    crash in between is adopted, not duplicated. Returns {changed, job_id, jar_id}."""
    lock = JobLock(Path(path).parent, record.name, "change").acquire()
    try:
        interval = record.checkpoint_interval_s
        record.pending = Pending.new(
            phase="deploying",
            job_id=None,
            old_s=interval,
            new_s=interval,
            generation=0,
            savepoint=savepoint,
            ts=round(time.time(), 3),
        )
        save(path, record)
        jid = launch(client, record, 0, interval, savepoint, timeout)
        record.event("deployed", job_id=jid)
        _finish(client, path, record, jid, 0, interval, savepoint)
        return {"changed": True, "job_id": jid, "jar_id": record.jar_id}
    finally:
        lock.release()


def worst_case_s(timeout: float) -> float:
    """Longest one change can take: upload, stop and savepoint, the new job (and a wrong interval's
    savepoint), a rollback; each bounded by ``timeout``. The bastion's stop timeout is this."""
    return 4 * timeout + 180
