"""Replay a workload into one Kafka topic per copy, at its timing and never early, from one process and one
producer: a recording (``kafka/recording.py``), a trace (events per second) or a constant rate.

Timing: record i is due at ``start_ms + offset(i)``; it is handed to the producer no earlier than that
(wall clock), and its Kafka timestamp and event time are the due time. Offsets: a complete recording keeps
its records' own offsets (timestamp - start of the recording); a sampled recording, a trace or a rate spread
second s's c records evenly, record j at ``s*1000 + floor(j*1000/c)`` ms, as the sample job's replay source.
Every target gets the same records; generated ids run 0, 1, 2, ... in every topic.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import KhaosError
from . import admin, formats

BATCH = 5000  # records made and produced per step at most (a step also polls the producer)
TICK_S = 0.002  # shortest sleep while nothing is due: a record leaves at most ~2 ms after its due time
LATE_MS = 100.0  # a wall second counts as late when a record left more than this after its due time
# The producer: one for every copy. acks=all + idempotence: no record lost or written twice on a retry (the
# copies' exactly-once audits check the input ids too); with one broker acks=all costs the same as acks=1.
# linger 5 ms: batches of ~5 ms per partition (fewer requests) while adding at most 5 ms to the job's
# measured latency (event time = due time). No compression: the CPU of a 2-core machine is the limit, not
# the network. message.timeout 5 min: records wait out a broker restart (a kafka kill) instead of failing.
PRODUCER = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": 300_000,
    "delivery.report.only.error": True,
}


class Schedule:
    """When each record is due, in ms after the start: from per-second counts (records spread evenly inside
    their second) or from explicit, sorted offsets."""

    def __init__(self, counts, offsets: np.ndarray | None = None):
        self.counts = np.asarray(counts, dtype=np.int64)
        if self.counts.ndim != 1 or len(self.counts) == 0 or np.any(self.counts < 0):
            raise KhaosError("a schedule needs one count >= 0 per second")
        self.cum = np.concatenate(([0], np.cumsum(self.counts)))
        self.total = int(self.cum[-1])
        if self.total == 0:
            raise KhaosError("the workload has no records (rate 0 or an all-zero trace)")
        self.explicit = None if offsets is None else np.asarray(offsets, dtype=np.int64)
        if self.explicit is not None and (len(self.explicit) != self.total or np.any(np.diff(self.explicit) < 0)):
            raise KhaosError("explicit offsets must be sorted, one per record")

    @property
    def seconds(self) -> int:
        """Length in seconds."""
        return len(self.counts)

    def offsets(self, i0: int, i1: int) -> np.ndarray:
        """Due offsets (ms) of records i0..i1-1."""
        if self.explicit is not None:
            return self.explicit[i0:i1]
        i = np.arange(i0, i1, dtype=np.int64)
        s = np.searchsorted(self.cum, i, side="right") - 1  # cum[s] <= i < cum[s+1]: empty seconds skipped
        return s * 1000 + (i - self.cum[s]) * 1000 // self.counts[s]

    def second_of(self, ids: np.ndarray) -> np.ndarray:
        """The second each record is due in."""
        return np.searchsorted(self.cum, ids, side="right") - 1

    def due_count(self, t_ms: int) -> int:
        """Records due at or before t_ms after the start (offset <= t_ms)."""
        if t_ms < 0:
            return 0
        if self.explicit is not None:
            return int(np.searchsorted(self.explicit, t_ms, side="right"))
        sec, ms = divmod(int(t_ms), 1000)
        if sec >= len(self.counts):
            return self.total
        c = int(self.counts[sec])
        return int(self.cum[sec]) + min(c, ((ms + 1) * c + 999) // 1000)  # j due iff j*1000 < (ms+1)*c


@dataclass
class Source:
    """What to replay: a schedule and the maker of its records."""

    name: str
    schedule: Schedule
    maker: object  # formats.IotFormat | YsbFormat | RecordedFormat


def rate_source(rate: float, seconds: int, fmt: str = "iot", **kw) -> Source:
    """A constant ``rate`` records/s (rounded half up) for ``seconds`` seconds of generated records."""
    if not math.isfinite(rate) or rate <= 0 or seconds < 1:
        raise KhaosError(f"--rate must be > 0 and --seconds >= 1, got {rate:g} and {seconds}")
    return Source(f"{rate:g}/s for {seconds} s", Schedule([math.floor(rate + 0.5)] * int(seconds)), _maker(fmt, kw))


def trace_source(trace, seconds: int | None = None, fmt: str = "iot", **kw) -> Source:
    """A trace (a file as profile/workload.load_trace reads it, or a Series of events per second), counts
    rounded half up as the job does; with ``seconds`` repeated or cut to that length (the job repeats it)."""
    from ..profile import workload

    series = workload.load_trace(trace) if isinstance(trace, (str, Path)) else trace
    counts = np.floor(np.clip(np.asarray(series, dtype=float), 0, None) + 0.5).astype(np.int64)
    if seconds is not None:
        if seconds < 1:
            raise KhaosError(f"--seconds must be >= 1, got {seconds}")
        counts = np.resize(counts, int(seconds))
    name = f"trace {trace}" if isinstance(trace, (str, Path)) else "trace"
    return Source(f"{name} ({len(counts)} s)", Schedule(counts), _maker(fmt, kw))


def _maker(fmt: str, kw: dict):
    if fmt == "iot":
        return formats.IotFormat(**kw)
    if fmt == "ysb":
        return formats.YsbFormat(**kw)
    raise KhaosError(f"--format {fmt}: a rate or a trace generates iot or ysb records (raw needs --recording)")


def recording_source(recording, fmt: str = "raw") -> Source:
    """A recording (a file or a Recording): its exact per-second counts; timing from the record timestamps
    when it holds every record, else spread evenly with values from the sample of the same second."""
    from . import recording as rec_mod

    rec = rec_mod.load(recording) if isinstance(recording, (str, Path)) else recording
    schedule_kw = {}
    if not rec.sampled:
        ts = rec.table.column("timestamp_ms").to_numpy(zero_copy_only=False)
        schedule_kw["offsets"] = ts - rec.start_s * 1000
        rows = lambda ids: np.asarray(ids)  # noqa: E731
    schedule = Schedule(rec.rates, **schedule_kw)
    if rec.sampled:
        ts = rec.table.column("timestamp_ms").to_numpy(zero_copy_only=False)
        sec = ts // 1000 - rec.start_s
        first = np.searchsorted(sec, np.arange(rec.seconds))  # sample rows of second s: first[s] .. first[s]+k[s]
        k = np.bincount(sec, minlength=rec.seconds)
        kept = rec.kept

        def rows(ids):
            ids = np.asarray(ids)
            s = schedule.second_of(ids)
            j = ids - schedule.cum[s]
            ks = k[s]
            # a second without sampled records borrows from the whole sample
            return np.where(ks > 0, first[s] + j % np.maximum(ks, 1), (s * 7919 + j) % kept)

    where = f"recording of topic {rec.topic}"
    maker = formats.RecordedFormat(rec.table, fmt, rows, where)
    kind = "sample of " if rec.sampled else ""
    return Source(f"recording of {rec.topic} ({kind}{rec.records} records, {rec.seconds} s)", schedule, maker)


@dataclass
class Summary:
    """What a replay did: records per topic, and how late it ran."""

    due: int  # records of the workload (per topic)
    produced: dict[str, int]  # records handed to the producer, per topic
    failed: dict[str, int]  # delivery failures reported by the producer, per topic
    undelivered: int  # still queued when the final flush gave up (all topics)
    start_ms: int
    wall_s: float  # the whole call, including the wait for start_ms and the final flush
    active_s: float  # from start_ms (or the call, if later) to the last record handed over
    late_seconds: int  # wall seconds with a record sent more than LATE_MS after its due time
    max_late_ms: float
    stopped: bool
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> dict[str, int]:
        """Records delivered per topic (produced minus reported failures; ``undelivered`` not split by topic)."""
        return {t: n - self.failed.get(t, 0) for t, n in self.produced.items()}

    def line(self) -> str:
        """One line for people."""
        total = sum(self.produced.values())
        per = ", ".join(f"{t} {n}" for t, n in self.sent.items())
        how = "stopped" if self.stopped else "done"
        fail = sum(self.failed.values()) + self.undelivered
        return (
            f"replay {how}: {per} records sent ({total / max(self.active_s, 1e-9):,.0f} records/s in total over "
            f"{self.active_s:.1f} s); {fail} failed; late seconds {self.late_seconds} (max {self.max_late_ms:.0f} ms late)"
        )


class _Refused:
    """Stands in for the message of a record librdkafka refused at produce() time."""

    def __init__(self, topic: str):
        self._topic = topic

    def topic(self) -> str:
        """The record's topic."""
        return self._topic


def producer_config(bootstrap: str, overrides: dict | None = None) -> dict:
    """The replay producer's librdkafka settings (PRODUCER + overrides)."""
    return {"bootstrap.servers": bootstrap, **PRODUCER, **admin.quiet_config(), **(overrides or {})}


class _Producer:
    """The one producer of a replay: every record into every target topic, counted per topic (handed over,
    failed); a record refused at once is counted as failed, not raised."""

    def __init__(self, client, targets: list[str], config: dict | None):
        from confluent_kafka import Producer

        self.nparts = {t: len(admin.partitions(client, t)) for t in targets}
        self.produced = dict.fromkeys(targets, 0)
        self.failed: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        conf = producer_config(admin.bootstrap_of(client), config)
        conf["on_delivery"] = self.delivered
        self.producer = Producer(conf)

    def delivered(self, err, msg) -> None:
        """The delivery callback: only failures are reported (delivery.report.only.error)."""
        if err is not None:
            self.failed[msg.topic()] += 1
            if len(self.errors) < 5:
                self.errors.append(f"{msg.topic()}: {admin.error_text(err)}")

    def send(self, topic: str, keys: list, values: list, basis: np.ndarray, stamps: list) -> None:
        """Records with their keys, values and timestamps into ``topic``, partition ``basis`` modulo its count."""
        from confluent_kafka import KafkaException

        produce, poll = self.producer.produce, self.producer.poll
        parts = (basis % self.nparts[topic]).tolist()
        for k, v, p, ts in zip(keys, values, parts, stamps):
            while True:
                try:
                    produce(topic, v, k, p, timestamp=ts)
                    break
                except BufferError:  # the local queue is full: let librdkafka send, then retry
                    poll(0.05)
                except KafkaException as e:  # refused at once (too large, unknown partition): counted
                    self.delivered(e.args[0] if e.args else e, _Refused(topic))
                    break
        self.produced[topic] += len(stamps)


class _Progress:
    """How far the replay is (``bar``, at most every 0.5 s) and how late its records leave, per wall second."""

    def __init__(self, bar, seconds: int, start_ms: int):
        self.bar, self.seconds, self.start_ms = bar, seconds, start_ms
        self.last_bar = 0.0
        self.late: dict[int, float] = {}

    def late_by(self, now_ms: float, due_ms: float) -> None:
        """A record due at ``due_ms`` leaves at ``now_ms``."""
        sec = int(now_ms // 1000)
        self.late[sec] = max(self.late.get(sec, 0.0), now_ms - due_ms)

    def update(self, now_ms: float) -> None:
        """The bar at ``now_ms``."""
        if self.bar is not None and now_ms - self.last_bar > 500:
            self.last_bar = now_ms
            self.bar.update(min(self.seconds, max(0.0, (now_ms - self.start_ms) / 1000)))

    def done(self) -> None:
        """The bar full: every record handed over."""
        if self.bar is not None:
            self.bar.update(self.seconds)


def _wait(schedule: Schedule, i: int, start_ms: int, now_ms: float, poll) -> None:
    """Nothing is due: serve the producer, then sleep until record ``i`` is due (TICK_S to 0.1 s)."""
    wait = (start_ms + int(schedule.offsets(i, i + 1)[0]) - now_ms) / 1000
    poll(0)
    time.sleep(min(max(wait, TICK_S), 0.1))


def replay(
    source: Source,
    targets: list[str],
    start_ms: int | None = None,
    *,
    bootstrap: str,
    stop=None,
    bar=None,
    config: dict | None = None,
    flush_s: float = 60.0,
    on_step: Callable[[int], None] | None = None,
) -> Summary:
    """Produce ``source`` into every topic of ``targets`` (one copy each) from one producer, record i no
    earlier than ``start_ms + offset(i)``. ``start_ms`` default: the second after next (whole seconds, so
    per-second counts by timestamp equal the source's). ``stop`` (threading.Event) ends it early; ``bar`` (a
    progress.Bar over ``source.schedule.seconds``) shows progress; ``on_step(records_done)`` after each step.
    KhaosError before anything is sent: broker unreachable, a topic missing."""
    if not targets or len(set(targets)) != len(targets):
        raise KhaosError(f"replay needs one or more distinct topics, got {targets}")
    out = _Producer(admin.connect(bootstrap), targets, config)
    schedule, maker = source.schedule, source.maker
    if start_ms is None:
        start_ms = (math.floor(time.time()) + 2) * 1000
    progress = _Progress(bar, schedule.seconds, start_ms)
    i, total, stopped = 0, schedule.total, False
    wall0, cpu0, began_ms = time.monotonic(), time.process_time(), time.time() * 1000
    while i < total:
        if stop is not None and stop.is_set():
            stopped = True
            break
        now_ms = time.time() * 1000
        due = min(schedule.due_count(math.floor(now_ms - start_ms)), i + BATCH)
        if due <= i:
            _wait(schedule, i, start_ms, now_ms, out.producer.poll)
            continue
        due_ms = start_ms + schedule.offsets(i, due)
        keys, values, basis = maker.make(np.arange(i, due, dtype=np.int64), due_ms)
        progress.late_by(now_ms, float(due_ms[0]))
        stamps = due_ms.tolist()
        for topic in targets:
            out.send(topic, keys, values, basis, stamps)
        out.producer.poll(0)
        i = due
        if on_step is not None:
            on_step(i)
        progress.update(now_ms)
    end_ms = time.time() * 1000
    undelivered = out.producer.flush(flush_s)
    if not stopped:
        progress.done()
    return Summary(
        due=total,
        produced=out.produced,
        failed=dict(out.failed),
        undelivered=undelivered,
        start_ms=start_ms,
        wall_s=time.monotonic() - wall0,
        active_s=max(0.0, end_ms - max(start_ms, began_ms)) / 1000,
        late_seconds=sum(1 for v in progress.late.values() if v > LATE_MS),
        max_late_ms=max(progress.late.values(), default=0.0),
        stopped=stopped,
        cpu_s=time.process_time() - cpu0,
        errors=out.errors,
    )
