"""Read a running job's health over REST: checkpoints, input rate, lag, backlog, latency.

Works for any job from standard Flink metrics (numRecordsOut counters of the sources) and
uses the sample job's own gauges where present (backlog, eventTimeLagMs, the per-second latency
gauges and ``latencySecond``, the epoch second those describe). Rates come from counter deltas
between two samples, never from the 60 s *PerSecond averages. ``running_since`` is Flink's own
timestamp of the moment the last task of the current attempts became RUNNING (subtasktimes).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

from ..kafka import metrics as kafka_metrics
from .client import FlinkClient, FlinkError

RATE_WINDOW_S = 3.0
# (metric suffix, field, aggregation over subtasks)
_GAUGES = (
    (".emitted", "emitted", "sum"),
    # a FLIP-27 source's standard backlog (KafkaSource: records behind the partitions' end offsets);
    # the sample job's own `backlog` gauge, listed after it, wins where both exist
    ("pendingRecords", "backlog", "sum"),
    (".backlog", "backlog", "sum"),
    (".eventTimeLagMs", "lag_ms", "max"),
    ("latencyP99Ms", "latency_p99_ms", "max"),  # last complete second (sample job)
    ("latencyMaxMs", "latency_max_ms", "max"),
    ("latencyCount", "sink_count", "sum"),  # records the sink saw in the last complete second
    # the epoch second the three gauges above describe; min == max: every subtask reports the same one
    ("latencySecond", "_second_min", "min"),
    ("latencySecond", "_second_max", "max"),
)


@dataclass
class Sample:
    """One look at a job; the field names are the sampler's column names (flink/sampler.py)."""

    t: float
    state: str
    all_running: bool
    checkpoints: int  # completed checkpoints of this job
    checkpoints_failed: int
    restarts: int
    emitted: float | None = None  # records read by the source(s), cumulative
    rate_in: float | None = None  # source records/s since the previous sample
    sink_in: float | None = None  # records into the sink's task, cumulative
    throughput: float | None = None  # sink-side records/s (exact per-second count where the job has one)
    sink_count: float | None = None  # records the sink saw in the second sink_second
    backlog: float | None = None
    lag_ms: float | None = None
    latency_p99_ms: float | None = None  # the sink's p99 end-to-end latency of the second sink_second
    latency_max_ms: float | None = None  # ... and its maximum
    # epoch second that sink_count / latency_p99_ms / latency_max_ms describe (None: not known, or the
    # subtasks report different seconds, so the sum / max mix two seconds)
    sink_second: float | None = None
    running_since: float | None = None  # epoch s: every task of the current attempts RUNNING (Flink's clock)

    def as_dict(self) -> dict:
        """The sample as a dict."""
        return asdict(self)


class JobProbe:
    """Samples one job id: state, checkpoints, restarts, and its metrics (found once they appear)."""

    def __init__(self, client: FlinkClient, job_id: str):
        self.client, self.job_id = client, job_id
        self._metric_ids: dict[str, list[tuple[str, str, str]]] = {}  # vertex -> [(metric, field, agg)]
        self._discoveries = 0
        self._history: deque[Sample] = deque()
        self._running_since: tuple[tuple, float | None] = ((), None)  # (attempts' start times, RUNNING time)

    def _complete(self) -> bool:
        """All of the sample job's gauges found (a generic job never completes: we retry a while)."""
        fields = {f for metrics in self._metric_ids.values() for _, f, _ in metrics}
        return {"emitted", "sink_in", "backlog", "lag_ms", "latency_p99_ms"} <= fields

    def _discover(self) -> dict[str, list[tuple[str, str, str]]]:
        found: dict[str, list[tuple[str, str, str]]] = {}
        vertices = self.client.job(self.job_id)["vertices"]
        sinks = [v for v in vertices if "sink" in v["name"].lower()] or vertices[-1:]
        for v in vertices:
            names = self.client.vertex_metric_names(self.job_id, v["id"])
            for suffix, field, agg in _GAUGES:
                hits = [n for n in names if n.endswith(suffix)]
                if hits:
                    found.setdefault(v["id"], []).append((hits[0], field, agg))
            # no pendingRecords (an older connector): the Kafka consumer's records-lag-max, summed
            found_kafka = kafka_metrics.source_metrics(names, found.get(v["id"]))
            if found_kafka:
                found.setdefault(v["id"], []).extend(found_kafka)
            has_emitted = any(f == "emitted" for _, f, _ in found.get(v["id"], []))
            if v["name"].startswith("Source") and not has_emitted and "numRecordsOut" in names:
                found.setdefault(v["id"], []).append(("numRecordsOut", "emitted", "sum"))
            if v is sinks[-1] and "numRecordsIn" in names:
                found.setdefault(v["id"], []).append(("numRecordsIn", "sink_in", "sum"))
        return found

    def sample(self) -> Sample:
        """Look at the job once (a few REST calls)."""
        job = self.client.job(self.job_id)
        counts = self.client.checkpoints(self.job_id).get("counts", {})
        restarts = self.client.job_metrics(self.job_id, ["numRestarts"]).get("numRestarts", 0)
        running = job["state"] == "RUNNING" and all(
            v["status"] == "RUNNING" and v["tasks"].get("RUNNING", 0) == v["parallelism"] for v in job["vertices"]
        )
        s = Sample(
            t=time.time(),
            state=job["state"],
            all_running=running,
            checkpoints=counts.get("completed", 0),
            checkpoints_failed=counts.get("failed", 0),
            restarts=int(restarts),
        )
        if running:
            try:
                # metric names show up over REST a few seconds after the tasks run: look again for a while
                if not self._complete() and self._discoveries < 30:
                    found = self._discover()
                    self._discoveries += 1
                    if found != self._metric_ids:
                        self._metric_ids = found
                        self._history.clear()
                got: dict[str, float] = {}
                for vid, metrics in self._metric_ids.items():  # one request per vertex
                    values = self.client.vertex_aggregates(
                        self.job_id, vid, sorted({m for m, _, _ in metrics}), sorted({a for _, _, a in metrics})
                    )
                    got.update({field: values[(m, a)] for m, field, a in metrics if (m, a) in values})
                for field, v in got.items():
                    if not field.startswith("_"):
                        setattr(s, field, v)
                lo, hi = got.get("_second_min"), got.get("_second_max")
                if lo is not None and lo == hi and lo > 0:  # 0: no second published yet (fresh attempt)
                    s.sink_second = lo
            except FlinkError:
                pass  # metrics lag behind task state for a moment after a restart
            s.running_since = self._running_time(job)
        # REST serves metrics cached for metrics.fetcher.update-interval (1 s): a 1 Hz sampler sees
        # 0, 2x, 0, ... Rates are therefore taken over the last >= RATE_WINDOW_S seconds.
        self._history.append(s)
        while len(self._history) > 2 and s.t - self._history[1].t >= RATE_WINDOW_S:
            self._history.popleft()
        first = self._history[0]
        if s.t - first.t >= 1.5:
            for total, per_s in (("emitted", "rate_in"), ("sink_in", "throughput")):
                now, before = getattr(s, total), getattr(first, total)
                if now is not None and before is not None and now >= before:  # a restart resets counters
                    setattr(s, per_s, (now - before) / (s.t - first.t))
        if s.sink_count is not None:
            s.throughput = s.sink_count
        # no event-time lag gauge (any Kafka-fed job): the backlog in ms of input; a job's own gauge is kept
        own_lag = any(f == "lag_ms" for metrics in self._metric_ids.values() for _, f, _ in metrics)
        kafka_metrics.fill_lag(s, has_lag_gauge=own_lag)
        return s

    def _running_time(self, job: dict) -> float | None:
        """When the last task of the current attempts became RUNNING, from Flink's own state timestamps
        (``/jobs/:jid/vertices/:vid/subtasktimes``: per subtask ``timestamps.RUNNING`` in ms). Asked
        only when the attempts changed (a vertex's ``start-time``, its first DEPLOYING, moved)."""
        key = tuple((v["id"], v.get("start-time")) for v in job["vertices"])
        if key == self._running_since[0]:
            return self._running_since[1]
        try:
            latest = 0
            for v in job["vertices"]:
                times = self.client.get(f"/jobs/{self.job_id}/vertices/{v['id']}/subtasktimes")
                running = [st.get("timestamps", {}).get("RUNNING", 0) for st in times.get("subtasks", [])]
                if not running or min(running) <= 0:
                    return None  # a subtask has not reached RUNNING in this attempt
                latest = max(latest, max(running))
        except (FlinkError, KeyError, TypeError, AttributeError):
            return None
        self._running_since = (key, latest / 1000)
        return latest / 1000


# Flink's cumulative per-subtask task metrics (ms since the attempt started; note Flink's spelling
# "accumulate...") and record counters: what the Flink autoscaler reads for a vertex's busy fraction.
BUSY_METRICS = {
    "accumulateBusyTimeMs": "busy_ms",
    "accumulateIdleTimeMs": "idle_ms",
    "accumulateBackPressuredTimeMs": "backpressured_ms",
    "numRecordsIn": "records_in",
    "numRecordsOut": "records_out",
}


def busy_times(client: FlinkClient, job_id: str) -> list[dict]:
    """One row per subtask of every vertex: ``vertex``, ``name``, ``subtask``, the cumulative ``busy_ms``,
    ``idle_ms``, ``backpressured_ms`` and ``records_in`` / ``records_out`` of its current attempt, and
    ``t`` (epoch s). One REST call per vertex (``/jobs/:jid/vertices/:vid/metrics``, ids ``<subtask>.<metric>``);
    a metric Flink does not report (yet) is None. profile/capacity.py turns two such looks into a capacity."""
    rows = []
    for v in client.job(job_id)["vertices"]:
        n = int(v["parallelism"])
        ids = ",".join(f"{i}.{m}" for i in range(n) for m in BUSY_METRICS)
        got = {r["id"]: r.get("value") for r in client.get(f"/jobs/{job_id}/vertices/{v['id']}/metrics?get={ids}")}
        t = time.time()
        for i in range(n):
            row = {"t": t, "vertex": v["id"], "name": v["name"], "subtask": i}
            for metric, field in BUSY_METRICS.items():
                value = got.get(f"{i}.{metric}")
                row[field] = float(value) if value not in (None, "") else None
            rows.append(row)
    return rows
