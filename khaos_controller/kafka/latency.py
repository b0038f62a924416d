"""End-to-end latency of a job that writes to Kafka, measured outside the job: a consumer thread reads the
job's OUTPUT topic and publishes, per wall second, the count, p99 and max of

    latency = (time the record became readable here) - (the record's timestamp)

Flink's KafkaSink gives each output record the timestamp of the element it writes, i.e. its event time: for
a per-record job that is the input record's event time (the iot-vehicles audit sink: the due time the
replay stamped), for a window that is the window's last millisecond. So this is the latency a downstream
consumer sees, with no metric of the job's own:

* ``isolation.level=read_committed``: with an exactly-once (transactional) sink a record becomes readable
  when its checkpoint completes and the transaction commits, so the latency includes up to one checkpoint
  interval plus the commit. That is real: a read_committed consumer cannot see it earlier.
* For window outputs the latency is measured from the window's end (event time), so it includes the
  watermark delay (bounded out-of-orderness) and the firing, as YSB's window latency.
* "Readable" = the moment this consumer got it from librdkafka: a few ms after the broker could serve it
  (librdkafka fetches continuously; fetch.min.bytes 1). One consumer for every partition, from the log end at
  the start (older output is not measured). A consumer that cannot keep up with the output overstates it.
* Record timestamps and this clock must agree: true when the replay on this machine stamped the input. A
  record whose timestamp is not a CreateTime (none, or LogAppendTime) is counted in ``untimed`` only.
* A second of wall time is published once it is over; a second without output has count 0 and no p99/max.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import KhaosError
from . import admin

FETCH_WAIT_MS = 50  # the broker answers an empty fetch after this
POLL_S = 0.1  # longest wait for the next record (how soon stop() is seen)


@dataclass
class LatencySecond:
    """Output that became readable during one wall second, and how late it was."""

    second: int  # epoch second of the readable time
    count: int
    p99_ms: float | None
    max_ms: float | None


def summarize(second: int, latencies: list[float]) -> LatencySecond:
    """Count, p99 (nearest rank) and max of one second's latencies in ms."""
    if not latencies:
        return LatencySecond(second, 0, None, None)
    ordered = sorted(latencies)
    rank = max(1, math.ceil(0.99 * len(ordered)))
    return LatencySecond(second, len(ordered), float(ordered[rank - 1]), float(ordered[-1]))


class Seconds:
    """Per-second buckets of latencies by readable time; ``close(now)`` publishes every second that is over."""

    def __init__(self, keep: int = 3600, on_second: Callable[[LatencySecond], None] | None = None):
        self.rows: deque[LatencySecond] = deque(maxlen=keep)
        self.on_second = on_second
        self._open: dict[int, list[float]] = {}
        self._next: int | None = None  # first second not published yet

    def add(self, readable_s: float, latency_ms: float) -> None:
        """One record that became readable at ``readable_s`` (epoch s)."""
        sec = math.floor(readable_s)
        if self._next is None:
            self._next = sec
        if sec >= self._next:
            self._open.setdefault(sec, []).append(latency_ms)

    def close(self, now_s: float) -> None:
        """Publish every second that ended at or before ``now_s`` (empty ones too)."""
        if self._next is None:
            self._next = math.floor(now_s)
            return
        while self._next + 1 <= now_s:
            row = summarize(self._next, self._open.pop(self._next, []))
            self.rows.append(row)
            if self.on_second is not None:
                self.on_second(row)
            self._next += 1


class OutputLatency(threading.Thread):
    """The consumer thread: ``start()``, ``wait_ready()``, then ``latest()`` / ``rows()``; ``stop()`` ends it.
    A failure while reading is kept in ``error`` (one line) and ends the thread."""

    def __init__(self, bootstrap: str, topic: str, on_second=None, keep: int = 3600):
        super().__init__(name=f"latency-{topic}", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.buckets = Seconds(keep, on_second)
        self.untimed = 0
        self.error: str | None = None
        self.ready = threading.Event()
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Read the topic from its log end until stopped."""
        from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition

        consumer = None
        try:
            client = admin.connect(self.bootstrap)
            parts = admin.partitions(client, self.topic)
            end = admin.end_offsets(client, self.topic)
            consumer = Consumer(
                {
                    "bootstrap.servers": admin.bootstrap_of(client),
                    "group.id": f"khaos-latency-{uuid.uuid4().hex[:12]}",  # never committed
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": FETCH_WAIT_MS,
                    **admin.quiet_config(),
                }
            )
            consumer.assign([TopicPartition(self.topic, p, end[p]) for p in parts])
            self.ready.set()
            while not self._stop_event.is_set():
                # what is already fetched, else wait for the next record (consume(n, t) would wait the whole t)
                batch = consumer.consume(num_messages=10_000, timeout=0) or consumer.consume(1, POLL_S)
                now = time.time()
                with self._lock:
                    for m in batch:
                        if m.error() is not None:
                            continue
                        kind, ts = m.timestamp()
                        if kind != TIMESTAMP_CREATE_TIME:
                            self.untimed += 1
                            continue
                        self.buckets.add(now, now * 1000 - ts)
                    self.buckets.close(now)
        except KhaosError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 (a thread: keep the reason, one line)
            self.error = f"latency consumer of {self.topic}: {admin.error_text(e)}"
        finally:
            self.ready.set()
            if consumer is not None:
                consumer.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the consumer reads from the log end; KhaosError when it failed (unreachable, no topic)."""
        if not self.ready.wait(timeout):
            raise KhaosError(f"latency consumer of {self.topic}: not ready after {timeout:g} s")
        if self.error:
            raise KhaosError(self.error)

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread and wait for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def rows(self) -> list[LatencySecond]:
        """Every published second kept (oldest first)."""
        with self._lock:
            return list(self.buckets.rows)

    def latest(self) -> LatencySecond | None:
        """The last published second."""
        with self._lock:
            return self.buckets.rows[-1] if self.buckets.rows else None


def p99_between(rows: list[LatencySecond], t0: float, t1: float) -> float:
    """p99 of the per-second p99s of an output topic's latency seconds in [t0, t1) (NaN without output)."""
    values = [r.p99_ms for r in rows if t0 <= r.second < t1 and r.count and r.p99_ms is not None]
    return float(np.quantile(values, 0.99)) if values else float("nan")
