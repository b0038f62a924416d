"""Paced checkpoints: change a running job's checkpoint interval without a restart.

Open-source Flink cannot change the periodic interval of a running job, but since 1.17 it takes a
checkpoint on request (``POST /jobs/:id/checkpoints``, FLINK-27101) and a failover restores from it
like from any other. The :class:`Pacer` triggers one whenever the time since the last completed
checkpoint (periodic or paced) reaches the chosen interval. The job's own configured interval stays
in force as the SAFETY NET: if the daemon dies, the job just falls back to it.

Ages are measured on this host's monotonic clock from when a completion was first seen, so a skewed
JobManager clock does not move a trigger (only the checkpoint found at start is dated by Flink's clock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..flink.client import RUNNING, FlinkClient, FlinkError
from ..journal import Journal
from .log import event
from .metrics import Metrics

RETRY_S = 5.0  # after a failed trigger, wait min(interval, this) before the next
RESOLVE_S = 5.0  # look the job id up again this often (a restart or failover changes nothing; a resubmit does)
DEFAULT_TIMEOUT_S = 600.0  # a trigger's longest wait when the job's checkpoint timeout is unknown
MIN_WAIT_S = 0.02  # the shortest wait between two checks


class Pacer:
    """Triggers checkpoints of the running job called ``job`` every ``interval_s`` (None: none, the
    safety net alone). ``tick()`` is one check; ``start()`` runs it every ``tick_s`` in a thread."""

    def __init__(
        self,
        client: FlinkClient,
        job: str,
        journal: Journal | None = None,
        metrics: Metrics | None = None,
        tick_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.client, self.job, self.journal, self.metrics = client, job, journal, metrics
        self.tick_s, self.clock, self.wall = tick_s, clock, wall
        self.interval_s: float | None = None
        self.triggered = self.failed = 0
        self._job_id: str | None = None
        self._resolved_at = -1e18
        self._config: dict = {}  # the job's checkpoint config: interval (safety net), min pause, timeout
        self._done_id: int | None = None  # last completed checkpoint seen
        self._done_at = 0.0  # its trigger time, on self.clock
        self._acked_at = 0.0  # its completion time, on self.clock
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- control ----------------------------------------------------------------------------------
    def set_interval(self, interval_s: float | None) -> None:
        """Pace at ``interval_s`` from now on (None or >= the safety net: no paced triggers)."""
        self.interval_s = interval_s
        if self.metrics is not None:
            self.metrics.set("khaos_paced_interval_seconds", interval_s)

    @property
    def safety_net_s(self) -> float | None:
        """The job's configured interval, s (None: not known yet)."""
        ms = self._config.get("interval")
        return ms / 1000.0 if isinstance(ms, (int, float)) and ms > 0 else None

    def start(self) -> Pacer:
        """Run ``tick()`` every ``tick_s`` in a daemon thread until ``stop()``."""
        self._thread = threading.Thread(target=self._loop, name=f"pacer-{self.job}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (a trigger in flight is awaited up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def next_check_s(self, now: float | None = None) -> float:
        """Seconds until the next check: ``tick_s``, or less when a paced checkpoint falls due sooner (so
        a paced interval is not stretched by up to a tick; never under MIN_WAIT_S). Once due, a check
        that could not trigger (one in flight) waits a whole tick: no busy polling of the JobManager."""
        now = self.clock() if now is None else now
        due_at = self._due_at()
        if due_at is None or due_at <= now:
            return self.tick_s
        return min(self.tick_s, max(MIN_WAIT_S, due_at - now))

    def _loop(self) -> None:
        while not self._stop.wait(self.next_check_s()):
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the pacer must outlive any one bad answer
                event(logging.WARNING, "pacer_error", job=self.job, error=f"{type(e).__name__}: {e}")

    # ---- one check --------------------------------------------------------------------------------
    def _resolve(self, now: float) -> str | None:
        if self._job_id is not None and now - self._resolved_at < RESOLVE_S:
            return self._job_id
        self._resolved_at = now
        running = [j for j in self.client.live_jobs(self.job) if j["state"] == RUNNING]
        jid = running[0]["jid"] if len(running) == 1 else None  # none or two: trigger nothing
        if jid != self._job_id:
            self._job_id, self._done_id, self._config = jid, None, {}
            if jid is not None:
                self._config = self.client.checkpoint_config(jid)
                if self.metrics is not None:
                    self.metrics.set("khaos_safety_net_interval_seconds", self.safety_net_s)
        return jid

    def _observe(self, latest: dict | None, now: float) -> None:
        """Date the last completed checkpoint on our clock."""
        if not latest:
            if self._done_id is None:
                self._done_id, self._done_at = -1, now  # none yet: one interval from now
                self._acked_at = now
            return
        cid = latest.get("id")
        if cid == self._done_id:
            return
        if self._done_id is None:  # first look: Flink's clock says how old it is
            wall = self.wall()
            self._done_at = now - max(0.0, wall - latest.get("trigger_timestamp", 0) / 1000.0)
            self._acked_at = now - max(0.0, wall - latest.get("latest_ack_timestamp", 0) / 1000.0)
        else:  # completed since the last tick: triggered its duration ago
            self._done_at = now - max(0.0, latest.get("end_to_end_duration", 0) / 1000.0)
            self._acked_at = now
        self._done_id = cid

    def _due_at(self) -> float | None:
        """When the next paced checkpoint falls due, on ``self.clock`` (None: none is paced): one interval
        after the last completed one was triggered, ``min_pause`` after it completed, not before a retry."""
        if self.interval_s is None or self._done_id is None:
            return None
        net = self.safety_net_s
        if net is not None and self.interval_s >= net:
            return None  # the periodic checkpoints come at least as often
        min_pause = self._config.get("min_pause", 0) / 1000.0
        return max(self._done_at + self.interval_s, self._acked_at + min_pause, self._retry_at)

    def due(self, now: float | None = None) -> bool:
        """Whether a paced checkpoint is due now (ignores in-flight ones: ``tick`` checks those)."""
        now = self.clock() if now is None else now
        due_at = self._due_at()
        return due_at is not None and now >= due_at

    def tick(self) -> dict | None:
        """One check: trigger a checkpoint if one is due and none is in flight; returns the trigger's
        journal entry (None: nothing triggered)."""
        now = self.clock()
        try:
            jid = self._resolve(now)  # also when not pacing: the safety net is known before the first move
            if jid is None or self.interval_s is None:
                return None
            stats = self.client.checkpoints(jid)
        except FlinkError:
            self._job_id = None  # ask again next tick; the collector reports REST problems
            return None
        if (stats.get("counts") or {}).get("in_progress", 0) > 0:
            return None
        self._observe((stats.get("latest") or {}).get("completed"), now)
        if not self.due(now):
            return None
        return self._trigger(jid, now)

    def _trigger(self, jid: str, now: float) -> dict:
        interval = self.interval_s
        timeout = self._config.get("timeout", DEFAULT_TIMEOUT_S * 1000) / 1000.0
        entry = {"event": "checkpoint_trigger", "job": self.job, "job_id": jid, "interval_s": interval}
        t0 = self.clock()
        try:
            cid = self.client.await_checkpoint(jid, self.client.trigger_checkpoint(jid), timeout)
        except FlinkError as e:
            self.failed += 1
            self._retry_at = self.clock() + min(interval or RETRY_S, RETRY_S)
            entry.update(status="failed", error=str(e), seconds=round(self.clock() - t0, 3))
            event(logging.WARNING, "checkpoint_trigger_failed", job=self.job, job_id=jid, error=str(e))
        else:
            self.triggered += 1
            self._done_id, self._done_at, self._acked_at = cid, now, self.clock()
            entry.update(status="completed", checkpoint_id=cid, seconds=round(self.clock() - t0, 3))
        if self.metrics is not None:
            self.metrics.inc("khaos_checkpoint_triggers_total", result=entry["status"])
        if self.journal is not None:
            self.journal.write(entry)
        return entry
