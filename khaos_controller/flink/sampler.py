"""The one job sampler: follows a Flink job by NAME across restarts and resubmissions.

Every ``period`` s (paced on the monotonic clock; a slow REST call skips ticks instead of bunching
them) it finds the newest live job of that name, samples it with a :class:`~.probe.JobProbe` (a new
probe when the job id changes) and makes one row with the fixed columns :data:`COLUMNS`. Each row
goes to the ``on_row`` hooks and, with ``keep``, into ``rows``. Flink errors never stop it: they
become a row with ``error`` set. The profiler, the evaluation, the daemon's collector and the demo
all sample through this class.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pandas as pd

from ..errors import KhaosError
from .client import FlinkClient
from .probe import JobProbe

# t: epoch s of the sample; job_id None: no live job of that name; ci_s: the job's checkpoint interval;
# rate_in: source records/s; throughput: sink records/s; sink_count / latency_*: the sink's values of
# the epoch second sink_second; running_since: Flink's time every task of the current attempts ran;
# error: why the sample failed (all_running is then None: unknown).
COLUMNS = (
    "t",
    "job",
    "job_id",
    "jobs_running",
    "state",
    "all_running",
    "restarts",
    "ci_s",
    "checkpoints",
    "checkpoints_failed",
    "rate_in",
    "throughput",
    "sink_count",
    "backlog",
    "lag_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "sink_second",
    "running_since",
    "error",
)


class JobSampler:
    """Samples the newest live job called ``job`` every ``period`` s; see the module docstring."""

    def __init__(
        self,
        client: FlinkClient,
        job: str,
        period: float = 0.5,
        on_row: Callable[[dict], None] | None = None,
        keep: bool = True,
        name: str | None = None,
    ):
        self.client, self.job, self.period, self.keep = client, job, period, keep
        self.hooks: list[Callable[[dict], None]] = [on_row] if on_row else []
        self.rows: list[dict] = []
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe: JobProbe | None = None
        self._ci: dict[str, float | None] = {}
        self._thread_name = name or f"sample-{job}"

    # ---- one sample ---------------------------------------------------------------------------
    def sample(self) -> dict:
        """One row (never raises for a problem of Flink or of the job)."""
        row = dict.fromkeys(COLUMNS)
        row.update(t=time.time(), job=self.job, jobs_running=0, state="NONE", all_running=False)
        try:
            live = self.client.live_jobs(self.job)
            row["jobs_running"] = len(live)
            if not live:
                return row
            jid = max(live, key=lambda j: j.get("start-time", 0))["jid"]  # several: the newest
            if self._probe is None or self._probe.job_id != jid:
                self._probe = JobProbe(self.client, jid)
            if jid not in self._ci:
                self._ci[jid] = self.client.checkpoint_interval_ms(jid) / 1000
            s = self._probe.sample()
        except KhaosError as e:  # FlinkError included: the JobManager is busy, restarting or gone
            row.update(state="UNKNOWN", all_running=None, error=str(e)[:200])  # unknown, not down
            return row
        row.update(job_id=jid, ci_s=self._ci[jid], **{k: getattr(s, k) for k in COLUMNS if hasattr(s, k)})
        return row

    def once(self) -> dict:
        """Take one sample and hand it to the hooks (and ``rows``)."""
        row = self.sample()
        if self.keep:
            self.rows.append(row)
        for hook in self.hooks:
            hook(row)
        return row

    # ---- the thread -----------------------------------------------------------------------------
    def start(self) -> JobSampler:
        """Sample in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        t0, tick = time.monotonic(), 0
        while not self.stop_event.is_set():
            try:
                self.once()
            except Exception as e:  # noqa: BLE001 - a sampler must not die; the row says why
                row = dict.fromkeys(COLUMNS)
                row.update(t=time.time(), job=self.job, state="UNKNOWN", error=f"{type(e).__name__}: {e}"[:200])
                if self.keep:
                    self.rows.append(row)
            tick = max(tick + 1, int((time.monotonic() - t0) / self.period))
            self.stop_event.wait(max(0.0, t0 + tick * self.period - time.monotonic()))

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (waits for the sample in flight)."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(self.client.timeout + 5 if timeout is None else timeout)

    def frame(self) -> pd.DataFrame:
        """The kept rows as a DataFrame with exactly :data:`COLUMNS`."""
        return pd.DataFrame(list(self.rows), columns=list(COLUMNS))
