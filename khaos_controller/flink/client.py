"""A small Flink REST client: jars, jobs, checkpoints, savepoints, metrics.

Every call has a timeout; every failure becomes a FlinkError whose text is one line that
says what was asked of which cluster and what went wrong.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from ..errors import KhaosError

RUNNING = "RUNNING"
TERMINAL = {"FINISHED", "CANCELED", "FAILED"}


def trigger_id() -> str:
    """A new trigger id for an asynchronous operation (Flink's TriggerId: 32 hex digits)."""
    return uuid.uuid4().hex


class FlinkError(KhaosError):
    """The Flink REST API refused, failed or could not be reached. ``ambiguous``: no clear answer came
    back (a timeout, a lost connection, garbage), so the request may or may not have taken effect."""

    def __init__(self, message: str, status: int | None = None, ambiguous: bool = False):
        super().__init__(message)
        self.status, self.ambiguous = status, ambiguous


class SavepointError(FlinkError):
    """A savepoint (or stop-with-savepoint) did not complete; the job was not stopped by us."""


class FlinkClient:
    """One JobManager's REST API; every call has a timeout and fails with a one-line FlinkError."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            self.url = "http://" + self.url
        self.timeout = timeout
        self.run_timeout = max(timeout, 60.0)  # a job submission compiles the job graph: it takes longer
        self._local = threading.local()  # one HTTP session per thread: requests.Session is not thread-safe

    @property
    def session(self) -> requests.Session:
        """The calling thread's HTTP session (the daemon's collector, pacer and loop each have one)."""
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    # ---- transport ------------------------------------------------------------------
    def request(self, method: str, path: str, **kw) -> Any:
        """One REST call; the JSON answer, or FlinkError with one line."""
        kw.setdefault("timeout", self.timeout)
        try:
            resp = self.session.request(method, self.url + path, **kw)
        except requests.Timeout:
            raise FlinkError(
                f"Flink REST at {self.url}: {method} {path} timed out after {kw['timeout']}s", ambiguous=True
            ) from None
        except requests.ConnectionError as e:
            refused = "refused" in str(e).lower()
            raise FlinkError(
                f"Flink REST at {self.url} is unreachable ({'connection refused' if refused else 'cannot connect'})",
                ambiguous=not refused,
            ) from None
        except requests.RequestException as e:
            raise FlinkError(f"Flink REST {method} {path}: {type(e).__name__}", ambiguous=True) from None
        if resp.status_code >= 400:
            raise FlinkError(
                f"Flink REST {method} {path}: HTTP {resp.status_code}: {_error_text(resp)}",
                status=resp.status_code,
                ambiguous=resp.status_code >= 502,
            )
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise FlinkError(
                f"Flink REST {method} {path}: the answer is not JSON ({resp.content[:60]!r})",
                status=resp.status_code,
                ambiguous=True,
            ) from None

    def get(self, path: str, **kw) -> Any:
        """GET ``path``."""
        return self.request("GET", path, **kw)

    # ---- cluster --------------------------------------------------------------------
    def overview(self) -> dict:
        """GET /overview (slots, TaskManagers, jobs)."""
        return self.get("/overview")

    def taskmanagers(self) -> list[dict]:
        """The TaskManagers (GET /taskmanagers)."""
        return self.get("/taskmanagers")["taskmanagers"]

    # ---- jars -----------------------------------------------------------------------
    def upload_jar(self, path: str | Path) -> str:
        """Upload a jar; returns its jar id."""
        path = Path(path)
        if not path.is_file():
            raise FlinkError(f"jar {path} does not exist")
        with open(path, "rb") as fh:
            resp = self.request(
                "POST",
                "/jars/upload",
                timeout=max(self.timeout, 120),
                files={"jarfile": (path.name, fh, "application/x-java-archive")},
            )
        return Path(resp["filename"]).name

    def jars(self) -> list[dict]:
        """The uploaded jars."""
        return self.get("/jars").get("files", [])

    def run_jar(
        self,
        jar_id: str,
        args: list[str] | None = None,
        entry_class: str | None = None,
        parallelism: int | None = None,
        savepoint: str | None = None,
        allow_non_restored: bool = False,
        config: dict[str, str] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Start a job from an uploaded jar; per-job settings go in `config` (flinkConfiguration)."""
        body: dict[str, Any] = {"programArgsList": list(args or [])}
        if entry_class:
            body["entryClass"] = entry_class
        if parallelism:
            body["parallelism"] = parallelism
        if savepoint:
            body["savepointPath"] = savepoint
            body["allowNonRestoredState"] = allow_non_restored
        if config:
            body["flinkConfiguration"] = {k: str(v) for k, v in config.items()}
        if job_id:
            body["jobId"] = job_id  # a fixed id: Flink refuses a second job with an id it knows
        answer = self.request("POST", f"/jars/{jar_id}/run", json=body, timeout=self.run_timeout)
        if not isinstance(answer, dict) or not isinstance(answer.get("jobid"), str):
            raise FlinkError(f"Flink REST POST /jars/{jar_id}/run: no jobid in {str(answer)[:80]}", ambiguous=True)
        return answer["jobid"]

    # ---- jobs -----------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        """[{id, status}] of every job the cluster knows."""
        return self.get("/jobs")["jobs"]

    def running_jobs(self) -> list[str]:
        """Ids of the jobs that have not ended."""
        return [j["id"] for j in self.jobs() if j["status"] not in TERMINAL]

    def live_jobs(self, name: str) -> list[dict]:
        """/jobs/overview entries of the jobs called ``name`` that have not ended."""
        return [j for j in self.get("/jobs/overview")["jobs"] if j["name"] == name and j["state"] not in TERMINAL]

    def running_job(self, job: str | None = None) -> str:
        """Job id of the RUNNING job given by id or name (None: the only running job)."""
        jobs = [j for j in self.get("/jobs/overview")["jobs"] if j["state"] == RUNNING]
        hits = [j for j in jobs if job in (None, j["jid"], j["name"])]
        if len(hits) != 1:
            names = ", ".join(f"{j['name']} ({j['jid'][:8]})" for j in jobs) or "none"
            want = f"job {job!r}" if job else "exactly one running job"
            raise KhaosError(f"{self.url}: need {want}; running: {names}")
        return hits[0]["jid"]

    def job_or_none(self, job_id: str) -> dict | None:
        """GET /jobs/:id, or None when Flink does not know the job (HTTP 404)."""
        try:
            return self.job(job_id)
        except FlinkError as e:
            if e.status == 404:
                return None
            raise

    def job(self, job_id: str) -> dict:
        """GET /jobs/:id (state, vertices, timestamps)."""
        return self.get(f"/jobs/{job_id}")

    def all_tasks_running(self, job_id: str) -> bool:
        """RUNNING job state alone is not enough after a restart: every task must run."""
        job = self.job(job_id)
        if job["state"] != RUNNING:
            return False
        return all(v["status"] == RUNNING and v["tasks"].get(RUNNING, 0) == v["parallelism"] for v in job["vertices"])

    def phase_seconds(self, job_id: str) -> dict[str, float]:
        """Seconds the current attempts spent in each task state (CREATED, SCHEDULED, DEPLOYING, INITIALIZING
        = restoring state, RUNNING), the longest over every subtask of every vertex (Flink's status-duration)."""
        out: dict[str, float] = {}
        for v in self.job(job_id).get("vertices", []):
            for sub in self.get(f"/jobs/{job_id}/vertices/{v['id']}").get("subtasks", []):
                for state, ms in (sub.get("status-duration") or {}).items():
                    if isinstance(ms, (int, float)) and ms >= 0:
                        out[state] = max(out.get(state, 0.0), ms / 1000.0)
        return out

    def wait_running(self, job_id: str, timeout: float = 120, poll: float = 0.5) -> float:
        """Wait until every task of the job runs; returns the seconds waited."""
        start = time.monotonic()
        state = "?"
        while time.monotonic() - start < timeout:
            job = self.job(job_id)
            state = job["state"]
            if state in TERMINAL:
                raise FlinkError(f"job {job_id} is {state}: {self.root_exception(job_id)}")
            if self.all_tasks_running(job_id):
                return time.monotonic() - start
            time.sleep(poll)
        raise FlinkError(f"job {job_id} not fully RUNNING after {timeout:.0f}s (state {state})")

    def failure_times(self, job_id: str) -> list[float]:
        """Epoch seconds of the failures Flink recorded for the job, newest first."""
        entries = self.get(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])
        return [e["timestamp"] / 1000 for e in entries]

    def root_exception(self, job_id: str) -> str:
        """The first line of the job's latest exception."""
        try:
            exc = self.get(f"/jobs/{job_id}/exceptions")
        except FlinkError as e:
            return str(e)
        history = exc.get("exceptionHistory", {}).get("entries", [])
        text = history[0].get("stacktrace", "") if history else exc.get("root-exception", "") or ""
        return text.strip().splitlines()[0] if text.strip() else "no exception recorded"

    def cancel(self, job_id: str) -> None:
        """Cancel a job (no savepoint)."""
        self.request("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})

    # ---- checkpoints and savepoints ---------------------------------------------------
    def checkpoints(self, job_id: str) -> dict:
        """GET /jobs/:id/checkpoints (counts, latest, summary)."""
        return self.get(f"/jobs/{job_id}/checkpoints")

    def checkpoint_config(self, job_id: str) -> dict:
        """GET /jobs/:id/checkpoints/config."""
        return self.get(f"/jobs/{job_id}/checkpoints/config")

    def checkpoint_interval_ms(self, job_id: str) -> int:
        """The checkpoint interval in force, ms."""
        return int(self.checkpoint_config(job_id)["interval"])

    def stop_with_savepoint(
        self, job_id: str, target_dir: str | None = None, drain: bool = False, timeout: float = 300
    ) -> str:
        """Stop the job with a savepoint; returns its location. Raises SavepointError if it fails
        (Flink then keeps the job running)."""
        trigger = trigger_id()
        self.trigger_stop(job_id, trigger, target_dir, drain)
        return self.await_savepoint(job_id, trigger, timeout)

    def trigger_stop(self, job_id: str, trigger: str, target_dir: str | None = None, drain: bool = False) -> str:
        """POST /jobs/:id/stop (stop-with-savepoint) under the caller's trigger id (so it can be recorded
        first); returns it. Flink starts one stop per (job, trigger id): the same request again, while
        Flink remembers the id (the stop runs, or ended less than rest.async.store-duration ago),
        starts nothing and gets the same answer."""
        body: dict[str, Any] = {"drain": drain, "triggerId": trigger}
        if target_dir:
            body["targetDirectory"] = target_dir
        answer = self.request("POST", f"/jobs/{job_id}/stop", json=body)
        if not isinstance(answer, dict) or answer.get("request-id") != trigger:
            raise FlinkError(
                f"Flink REST POST /jobs/{job_id}/stop: not request-id {trigger} in {str(answer)[:80]}", ambiguous=True
            )
        return trigger

    def dispose_savepoint(self, path: str, timeout: float = 120.0, poll: float = 0.5) -> None:
        """Delete a savepoint through Flink (POST /savepoint-disposal): the JobManager removes it from its
        storage with its own access. FlinkError when Flink reports a failure or it is not done in time."""
        answer = self.request("POST", "/savepoint-disposal", json={"savepoint-path": path})
        trigger = answer.get("request-id") if isinstance(answer, dict) else None
        if not isinstance(trigger, str):
            raise FlinkError(f"Flink REST POST /savepoint-disposal: no request-id in {str(answer)[:80]}")
        deadline = time.monotonic() + timeout
        while True:
            st = self.get(f"/savepoint-disposal/{trigger}")
            status = st.get("status") if isinstance(st, dict) else None
            if isinstance(status, dict) and status.get("id") == "COMPLETED":
                cause = (st.get("operation") or {}).get("failure-cause")
                if cause:
                    raise FlinkError(
                        f"disposal of savepoint {path}: {_root_cause(str(cause.get('stack-trace') or cause))}"
                    )
                return
            if time.monotonic() > deadline:
                raise FlinkError(f"disposal of savepoint {path}: not done after {timeout:g} s")
            time.sleep(poll)

    def savepoint_status(self, job_id: str, trigger: str) -> dict | None:
        """One look at a savepoint (or stop) trigger: {status: IN_PROGRESS or COMPLETED, location, failure};
        None when Flink does not know the trigger (HTTP 404: never received, or forgotten)."""
        try:
            st = self.get(f"/jobs/{job_id}/savepoints/{trigger}")
        except FlinkError as e:
            if e.status == 404:
                return None
            raise
        status = st.get("status") if isinstance(st, dict) else None
        if not isinstance(status, dict) or status.get("id") not in ("IN_PROGRESS", "COMPLETED"):
            raise FlinkError(f"savepoint of job {job_id}: status not understood: {str(st)[:80]}", ambiguous=True)
        op = st.get("operation") if isinstance(st.get("operation"), dict) else {}
        failed = status["id"] == "COMPLETED" and not op.get("location")
        return {"status": status["id"], "location": op.get("location"), "failure": _failure(op) if failed else None}

    def await_savepoint(self, job_id: str, trigger: str, timeout: float) -> str:
        """Poll a savepoint trigger; its location, SavepointError if Flink says it failed (the job then
        keeps running), an ambiguous FlinkError if no answer says either within ``timeout``."""
        op = self._await(f"/jobs/{job_id}/savepoints/{trigger}", f"savepoint of job {job_id}", timeout)
        if "location" in op:
            return op["location"]
        raise SavepointError(f"savepoint of job {job_id} failed: {_failure(op)}")

    def trigger_checkpoint(self, job_id: str) -> str:
        """POST /jobs/:id/checkpoints (Flink >= 1.17): a normal checkpoint of the configured type, now;
        returns the trigger id to await."""
        answer = self.request("POST", f"/jobs/{job_id}/checkpoints", json={"checkpointType": "CONFIGURED"})
        if not isinstance(answer, dict) or not isinstance(answer.get("request-id"), str):
            raise FlinkError(
                f"Flink REST POST /jobs/{job_id}/checkpoints: no request-id in {str(answer)[:80]}", ambiguous=True
            )
        return answer["request-id"]

    def await_checkpoint(self, job_id: str, trigger: str, timeout: float) -> int:
        """Poll a checkpoint trigger; the id of the completed checkpoint, FlinkError if it failed."""
        op = self._await(f"/jobs/{job_id}/checkpoints/{trigger}", f"checkpoint of job {job_id}", timeout)
        if isinstance(op.get("checkpointId"), int):
            return op["checkpointId"]
        raise FlinkError(f"checkpoint of job {job_id} failed: {_failure(op)}")

    def _await(self, path: str, what: str, timeout: float) -> dict:
        """Poll an asynchronous operation until Flink says COMPLETED; its ``operation``. Busy or
        garbled answers are asked again until ``timeout`` (then an ambiguous FlinkError)."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            try:
                st = self.get(path)
            except FlinkError as e:
                if not e.ambiguous and e.status != 500:
                    raise
                last = str(e)
                time.sleep(0.5)
                continue
            if not isinstance(st, dict) or not isinstance(st.get("status"), dict):
                last = f"not understood: {str(st)[:80]}"
                time.sleep(0.5)
                continue
            if st["status"].get("id") == "COMPLETED":
                op = st.get("operation")
                return op if isinstance(op, dict) else {}
            time.sleep(0.2)
        raise FlinkError(f"{what} not complete after {timeout:.0f}s ({last})", ambiguous=True)

    # ---- metrics --------------------------------------------------------------------
    def vertex_id(self, job_id: str, name_part: str) -> str:
        """Id of the first vertex whose name contains name_part."""
        for v in self.job(job_id)["vertices"]:
            if name_part in v["name"]:
                return v["id"]
        raise FlinkError(f"job {job_id} has no operator named like {name_part!r}")

    def vertex_metric_names(self, job_id: str, vertex_id: str) -> list[str]:
        """Metric names of a vertex's subtasks."""
        return [m["id"] for m in self.get(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics")]

    def vertex_metrics(self, job_id: str, vertex_id: str, names: list[str], agg: str = "sum") -> dict[str, float]:
        """Metrics aggregated over the vertex's subtasks (agg: min, max, avg or sum)."""
        return {name: v for (name, _), v in self.vertex_aggregates(job_id, vertex_id, names, [agg]).items()}

    def vertex_aggregates(
        self, job_id: str, vertex_id: str, names: list[str], aggs: list[str]
    ) -> dict[tuple[str, str], float]:
        """{(metric, agg): value} over the vertex's subtasks, every aggregation in ONE request."""
        rows = self.get(
            f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics",
            params={"get": ",".join(names), "agg": ",".join(aggs)},
        )
        return {(r["id"], a): float(r[a]) for r in rows for a in aggs if a in r}

    def job_metrics(self, job_id: str, names: list[str]) -> dict[str, float]:
        """Job-level metrics by name."""
        rows = self.get(f"/jobs/{job_id}/metrics", params={"get": ",".join(names)})
        return {r["id"]: float(r["value"]) for r in rows if "value" in r}


def _failure(op: dict) -> str:
    """The telling line of an operation's failure-cause."""
    cause = op.get("failure-cause") or {}
    text = (cause.get("stack-trace") or cause.get("class") or "unknown cause").strip().splitlines()
    return text[0] if text else "unknown cause"


def _telling_line(trace: str) -> str:
    """The most telling line of a Java stack trace: its last ``Caused by:`` line, else its first ('' if empty)."""
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip()]
    causes = [ln for ln in lines if ln.startswith("Caused by:")]
    return (causes[-1] if causes else lines[0] if lines else "")[:300]


def _root_cause(trace: str) -> str:
    """The telling line of a stack trace without its ``Caused by:`` prefix."""
    return _telling_line(trace).removeprefix("Caused by: ") or "no reason given"


def _error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip().splitlines()[0][:300] if resp.text.strip() else resp.reason
    # Flink answers {"errors": [...]}; a proxy or another server may answer a list or a scalar
    errors = body.get("errors", []) if isinstance(body, dict) else body if isinstance(body, list) else [body]
    if not errors:
        return resp.reason
    # Flink puts a whole stack trace in errors[]: keep the most telling line.
    return _telling_line("\n".join(str(e) for e in errors))
