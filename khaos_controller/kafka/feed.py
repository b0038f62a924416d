"""The Kafka side of a profile or an evaluation: every copy of the job reads its own fresh topic with its
own consumer group, and ONE replay (``replay.replay``: one process, one producer) writes the workload into
every copy's topic. The replay starts before the jobs, so a copy that fails catches up from the backlog
the broker holds, as in production.

:class:`KafkaSection` is the ``kafka`` key of experiment and evaluation files (one table of keys for
both); :func:`resolve` checks it into a :class:`KafkaSpec`, :func:`check_args` the job's arguments; a
:class:`Feed` creates the topics, runs the replay (and the output-latency consumers), and deletes the
topics and groups afterwards unless asked to keep them.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import KhaosError
from ..schema import Section, field_error, resolve_path
from . import admin, replay

PLACEHOLDERS = ("{bootstrap}", "{topic}", "{group}", "{output_topic}")
# a copy's job: the sample job reading Kafka, with its file audit
SAMPLE_ARGS = ["--bootstrap", "{bootstrap}", "--topic", "{topic}", "--group", "{group}", "--output", "{output}"]


class KafkaSection(Section):
    """Section kafka: the job reads Kafka; each copy gets its own topic and group, fed by one replay."""

    bootstrap: str | None = Field(
        None,
        min_length=1,
        description="Kafka bootstrap host:port[,...] (default: the inventory's kafka_bootstrap; on a lab a "
        "Kafka host that playbooks/kafka.yml deploys)",
    )
    partitions: int | None = Field(
        None, ge=1, le=1000, description="partitions of each copy's topic (default: the job's parallelism)"
    )
    format: Literal["iot", "ysb", "raw"] = Field(
        "iot",
        description="records the replay writes: iot (id,vehicleId,speed,area,eventTimeMs; ids 0,1,2... per "
        "topic), ysb (YSB JSON ad events) or raw (a recording's records as recorded)",
    )
    vehicles: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="iot: the vehicle ids (keys) the generated records draw from (default 10,000); match the "
        "job's --keys to give it that much keyed state",
    )
    recording: str | None = Field(
        None,
        min_length=1,
        description="a `khaos workload record --bootstrap` file: its per-second rates and records (looped) "
        "instead of the workload's rates or trace",
    )
    output_topic: bool = Field(
        False,
        description="give each copy an output topic ({output_topic}) and measure end-to-end latency from "
        "it (kafka/latency.py, read_committed)",
    )
    topic_config: dict[str, str | int] = Field(
        {}, description="topic configs of the copies' topics, e.g. {retention.ms: 3600000}"
    )
    producer: dict[str, str | int | float | bool] = Field(
        {}, description="librdkafka settings of the replay producer over its defaults (docs/kafka-workload.md)"
    )


@dataclass
class KafkaSpec:
    """A checked kafka section."""

    bootstrap: str | None = None  # None: from the inventory (or the lab's Kafka host)
    partitions: int | None = None
    format: str = "iot"
    vehicles: int | None = None  # iot: vehicle ids to draw from (None: the format's default)
    recording: Path | None = None
    output_topic: bool = False
    topic_config: dict[str, str] = field(default_factory=dict)
    producer: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line for a plan."""
        where = self.bootstrap or "the inventory's kafka_bootstrap (a lab: its Kafka host)"
        what = f"recording {self.recording}" if self.recording else "the workload, generated"
        out = ", an output topic each (latency read from it)" if self.output_topic else ""
        return f"kafka: {where}; one topic and group per copy{out}; one replay of {what} ({self.format} records)"


def resolve(section: KafkaSection, path: Path, base: Path, where: str = "kafka") -> KafkaSpec:
    """Check a kafka section (the bootstrap's syntax, the recording, the topic configs, the producer
    settings); every problem is one line ``FILE: kafka.KEY: ...``."""
    if section.vehicles is not None and section.format != "iot":
        raise field_error(path, f"{where}.vehicles", f"only the iot format has vehicles, not {section.format}")
    spec = KafkaSpec(
        partitions=section.partitions,
        format=section.format,
        vehicles=section.vehicles,
        output_topic=section.output_topic,
    )
    if section.bootstrap is not None:
        try:
            spec.bootstrap = admin.check_bootstrap(section.bootstrap)
        except KhaosError as e:
            raise field_error(path, f"{where}.bootstrap", str(e)) from None
    if section.recording is not None:
        from . import recording

        p = resolve_path(base, section.recording)
        try:
            recording.load(p)
        except KhaosError as e:
            raise field_error(path, f"{where}.recording", str(e)) from None
        spec.recording = p.resolve()
    elif section.format == "raw":
        raise field_error(path, f"{where}.format", "raw replays a recording's records: name kafka.recording")
    try:
        spec.topic_config = admin.TopicSpec.of({"name": "copy", "config": section.topic_config}).config
    except KhaosError as e:
        raise field_error(path, f"{where}.topic_config", str(e)) from None
    if section.producer:
        from confluent_kafka import KafkaException, Producer

        try:  # librdkafka checks names and values when the producer is made; nothing is connected yet
            Producer(replay.producer_config("127.0.0.1:9", section.producer))
        except (KafkaException, ValueError, TypeError) as e:
            raise field_error(path, f"{where}.producer", admin.error_text(e)) from None
        spec.producer = dict(section.producer)
    return spec


def check_args(path: Path, args: list[str], spec: KafkaSpec | None, where: str = "job.args") -> None:
    """The job's arguments and the kafka section agree: a Kafka-fed copy must read its own {topic};
    {output_topic} comes with kafka.output_topic; no Kafka placeholder without a kafka section."""
    used = {p for p in PLACEHOLDERS if any(p in a for a in args)}
    if spec is None:
        if used:
            raise field_error(path, where, f"{', '.join(sorted(used))} need a kafka section (the copies' topics)")
        return
    if "{topic}" not in used:
        raise field_error(path, where, "a Kafka-fed job needs {topic} in its arguments: each copy reads its own topic")
    if spec.output_topic and "{output_topic}" not in used:
        raise field_error(path, where, "kafka.output_topic is true: pass {output_topic} to the job")
    if "{output_topic}" in used and not spec.output_topic:
        raise field_error(path, where, "{output_topic} needs kafka.output_topic: true")


def slug(text: str, limit: int = 40) -> str:
    """``text`` as a piece of a topic name (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "x"


def run_prefix(name: str) -> str:
    """``khaos-<name>-<yymmdd-hhmmss>``: topics and groups of one run never meet an earlier run's."""
    return f"khaos-{slug(name)}-{time.strftime('%y%m%d-%H%M%S')}"


# ---------------------------------------------------------------------------------------------- sources


def looped(src: replay.Source, seconds: int) -> replay.Source:
    """A recorded source repeated to ``seconds`` (its per-second counts again and again, records spread evenly
    in each second); replay indices keep counting (ids 0, 1, 2, ... per topic), rows repeat."""
    sched = src.schedule
    if sched.seconds >= seconds:
        return src
    total, rows = sched.total, src.maker.rows
    maker = copy.copy(src.maker)
    maker.rows = lambda ids: rows(np.asarray(ids) % total)
    counts = np.resize(sched.counts, int(seconds))
    return replay.Source(f"{src.name}, looped to {seconds} s", replay.Schedule(counts), maker)


def source(spec: KafkaSpec, seconds: int, rate: float | None = None, trace=None) -> replay.Source:
    """What the replay writes for ``seconds`` s: the recording (looped), else a trace (a Series of events per
    second, repeated), else a constant rate."""
    if spec.recording is not None:
        return looped(replay.recording_source(spec.recording, fmt=spec.format), seconds)
    kw = {"vehicles": spec.vehicles} if spec.vehicles is not None else {}
    if trace is not None:
        return replay.trace_source(trace, seconds=seconds, fmt=spec.format, **kw)
    return replay.rate_source(float(rate), seconds, fmt=spec.format, **kw)


def recording_rate(spec: KafkaSpec) -> float:
    """Mean records/s of the spec's recording."""
    from . import recording

    rec = recording.load(spec.recording)
    return float(rec.records) / rec.seconds


# ---------------------------------------------------------------------------------------------- the feed


@dataclass
class Copy:
    """One copy's names on the broker."""

    name: str
    topic: str
    group: str
    output_topic: str | None = None


class Feed:
    """Topics and groups of several copies, one replay into all of them, output-latency consumers.

    ``open()`` creates the topics (KhaosError in one line: broker unreachable, a topic that exists already),
    ``start(source)`` runs the replay in a thread, ``fill(copy)`` gives the job's placeholders, ``close()``
    stops everything and deletes the topics and groups unless ``keep``."""

    def __init__(self, spec: KafkaSpec, bootstrap: str, prefix: str, copies: list[str], partitions: int, keep=False):
        self.spec, self.bootstrap, self.keep = spec, bootstrap, keep
        self.partitions = spec.partitions or partitions
        self.copies = {
            c: Copy(
                c,
                f"{prefix}-{slug(c)}",
                f"{prefix}-{slug(c)}",
                f"{prefix}-{slug(c)}-out" if spec.output_topic else None,
            )
            for c in copies
        }
        self.client = None
        self.created: list[str] = []
        self.latency: dict[str, object] = {}
        self.summary: replay.Summary | None = None
        self.error: str | None = None
        self.start_ms: int | None = None
        self.source: replay.Source | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def topics(self) -> list[str]:
        """Every input topic (one per copy)."""
        return [c.topic for c in self.copies.values()]

    def open(self) -> None:
        """Connect and create every copy's topics; start the output-latency consumers."""
        from .latency import OutputLatency

        self.client = admin.connect(self.bootstrap, timeout=10)
        for c in self.copies.values():
            for topic in filter(None, (c.topic, c.output_topic)):
                spec = admin.TopicSpec(topic, self.partitions, None, dict(self.spec.topic_config))
                if not admin.ensure_topic(self.client, spec)["changed"]:
                    raise KhaosError(
                        f"kafka topic {topic} exists already at {self.bootstrap}: a copy needs a fresh one"
                    )
                self.created.append(topic)
        for c in self.copies.values():
            if c.output_topic:
                self.latency[c.name] = OutputLatency(self.bootstrap, c.output_topic)
                self.latency[c.name].start()
        for lat in self.latency.values():
            lat.wait_ready()

    def start(self, src: replay.Source, start_ms: int | None = None) -> int:
        """Run the replay into every copy's topic in a thread; returns its start (epoch ms)."""
        self.start_ms = int(start_ms or (math.floor(time.time()) + 1) * 1000)
        self.source = src

        def run():
            try:
                self.summary = replay.replay(
                    src,
                    self.topics(),
                    self.start_ms,
                    bootstrap=self.bootstrap,
                    stop=self._stop,
                    config=self.spec.producer,
                )
            except KhaosError as e:
                self.error = f"replay: {e}"
            except Exception as e:  # noqa: BLE001 - a thread: keep the reason, one line
                self.error = f"replay: {type(e).__name__}: {admin.error_text(e)}"

        self._thread = threading.Thread(target=run, name="kafka-replay", daemon=True)
        self._thread.start()
        return self.start_ms

    def check(self) -> None:
        """KhaosError when the replay stopped on an error."""
        if self.error:
            raise KhaosError(self.error)

    def fill(self, name: str) -> dict[str, str]:
        """The job's Kafka placeholders of one copy."""
        c = self.copies[name]
        return {"bootstrap": self.bootstrap, "topic": c.topic, "group": c.group, "output_topic": c.output_topic or ""}

    def partition_of(self, ids: np.ndarray) -> np.ndarray:
        """The partition each replayed record id went to (the same in every copy's topic), for the audit."""
        maker = self.source.maker
        basis = maker.partition[maker.rows(ids)] if hasattr(maker, "rows") else np.asarray(ids)
        return np.asarray(basis, dtype=np.int64) % self.partitions

    def latency_rows(self, name: str) -> list:
        """The output topic's latency seconds of one copy (kafka/latency.LatencySecond), oldest first."""
        lat = self.latency.get(name)
        return lat.rows() if lat is not None else []

    def stop(self) -> replay.Summary | None:
        """Stop the replay (what was handed over is flushed) and the latency consumers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)
        for lat in self.latency.values():
            lat.stop()
        return self.summary

    def close(self) -> list[str]:
        """Stop, then delete the topics and consumer groups (unless ``keep``); returns what could not be deleted."""
        self.stop()
        if self.keep or self.client is None:
            return []
        problems = []
        for topic in self.created:
            try:
                admin.delete_topic(self.client, topic)
            except KhaosError as e:
                problems.append(str(e))
        groups = [c.group for c in self.copies.values()]
        try:
            futures = self.client.delete_consumer_groups(groups, request_timeout=10)
            for group, fut in futures.items():
                try:
                    fut.result(timeout=15)
                except Exception as e:  # noqa: BLE001 - a group never used is not there: fine
                    if "GROUP_ID_NOT_FOUND" not in str(e) and "not found" not in str(e).lower():
                        problems.append(f"kafka group {group}: {admin.error_text(e)}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"kafka groups: {admin.error_text(e)}")
        return problems
