"""Record a live Kafka topic: its exact per-second rate and its records (a bounded uniform sample), in one
Parquet file that ``replay`` plays back into one topic per copy.

What is recorded: reading starts at the topic's log end offsets at the start (only records written from then
on) and covers the whole seconds ``[start_s, start_s + seconds)`` of the RECORD TIMESTAMP (CreateTime, or the
broker's LogAppendTime on such topics), ``start_s`` being the first whole second after the start. Reading goes
on ``grace_s`` past the window's end for records that arrive late (producer batching, transactions committed
late), with ``isolation.level=read_committed`` (aborted transactions are not part of the workload).
``rates[k]`` = the number of records whose timestamp lies in second ``start_s + k``, exact: every record read is
counted. Up to ``max_records`` records are kept; beyond that, a uniform reservoir sample (Algorithm R) of the
window's records, so the rates stay exact while the file stays bounded.

File: one Parquet table ``timestamp_ms`` (int64), ``partition`` (int32), ``offset`` (int64), ``key``, ``value``
(binary, nullable), sorted by timestamp; the schema metadata ``khaos.recording`` holds JSON with the rates and
the facts (topic, bootstrap, start_s, seconds, records, kept, ...). :func:`load` checks all of it.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import uuid
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import KhaosError
from ..schema import MAX_DURATION_S
from . import admin

FORMAT = "khaos-kafka-recording"
VERSION = 1
META_KEY = b"khaos.recording"
DEFAULT_MAX_RECORDS = 2_000_000
DEFAULT_GRACE_S = 2.0
MAX_SECONDS = MAX_DURATION_S  # a longer recording is a mistake
MAX_RECORDS = 100_000_000  # records a recording keeps in memory at most (--max-records)
SCHEMA = pa.schema(
    [
        ("timestamp_ms", pa.int64()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
    ]
)


@dataclass
class Recording:
    """A recorded topic: exact per-second rates and the records kept (all of them, or a uniform sample)."""

    topic: str
    start_s: int  # epoch second of rates[0]
    rates: np.ndarray  # int64, records per record-timestamp second
    table: pa.Table  # the kept records (SCHEMA), sorted by timestamp
    records: int = 0  # records in the window (= rates.sum())
    bootstrap: str = ""
    partitions: int = 0
    outside_window: int = 0  # records read whose timestamp fell outside the window (not counted, not kept)
    max_records: int = DEFAULT_MAX_RECORDS
    recorded_at: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def seconds(self) -> int:
        """Length of the window in seconds."""
        return len(self.rates)

    @property
    def kept(self) -> int:
        """Records stored in the file."""
        return self.table.num_rows

    @property
    def sampled(self) -> bool:
        """True when the file holds a sample (fewer records than the window had)."""
        return self.kept < self.records

    def meta(self) -> dict:
        """The JSON stored in the file's schema metadata."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "topic": self.topic,
            "bootstrap": self.bootstrap,
            "partitions": self.partitions,
            "start_s": self.start_s,
            "seconds": self.seconds,
            "clock": "record timestamp",
            "records": self.records,
            "kept": self.kept,
            "max_records": self.max_records,
            "outside_window": self.outside_window,
            "recorded_at": self.recorded_at,
            "rates": [int(x) for x in self.rates],
            **self.extra,
        }


class Reservoir:
    """Counts every record of the window by its timestamp second and keeps a uniform sample of at most
    ``max_records`` (Algorithm R: record n > max replaces a random slot with probability max/n)."""

    def __init__(self, start_s: int, seconds: int, max_records: int = DEFAULT_MAX_RECORDS, seed: int | None = None):
        if max_records < 1:
            raise KhaosError(f"max records must be >= 1, got {max_records}")
        self.start_s, self.max = start_s, max_records
        self.counts = [0] * seconds
        self.seen = 0  # records inside the window
        self.outside = 0
        self.ts = array("q")  # machine ints: ~20 bytes a record instead of ~100 as Python ints
        self.part = array("i")
        self.off = array("q")
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self._rng = random.Random(seed)

    def add(self, ts_ms: int, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """One record read from the topic."""
        sec = ts_ms // 1000 - self.start_s
        if sec < 0 or sec >= len(self.counts):
            self.outside += 1
            return
        self.counts[sec] += 1
        self.seen += 1
        if self.seen <= self.max:
            self.ts.append(ts_ms)
            self.part.append(partition)
            self.off.append(offset)
            self.keys.append(key)
            self.values.append(value)
            return
        j = self._rng.randrange(self.seen)
        if j < self.max:
            self.ts[j], self.part[j], self.off[j], self.keys[j], self.values[j] = ts_ms, partition, offset, key, value

    def add_messages(self, messages: Iterable) -> int:
        """confluent-kafka Messages (errors skipped); how many were records."""
        n = 0
        add = self.add
        for m in messages:
            if m.error() is not None:
                continue
            add(m.timestamp()[1], m.partition(), m.offset(), m.key(), m.value())
            n += 1
        return n

    def truncate(self, seconds: int) -> None:
        """Keep only the first ``seconds`` of the window (a recording stopped early)."""
        cut = (self.start_s + seconds) * 1000
        drop = sum(self.counts[seconds:])
        self.counts = self.counts[:seconds]
        self.seen -= drop
        self.outside += drop
        keep = [i for i, t in enumerate(self.ts) if t < cut]  # a uniform sample, filtered, stays uniform
        for name in ("ts", "part", "off", "keys", "values"):
            col = getattr(self, name)
            kept = [col[i] for i in keep]
            setattr(self, name, array(col.typecode, kept) if isinstance(col, array) else kept)

    def recording(self, topic: str, **facts) -> Recording:
        """The Recording of what was added (records sorted by timestamp, then partition and offset)."""
        ts, off = np.frombuffer(self.ts, dtype=np.int64), np.frombuffer(self.off, dtype=np.int64)
        part = np.frombuffer(self.part, dtype=np.int32)
        table = pa.table(
            {
                "timestamp_ms": pa.array(ts, pa.int64()),
                "partition": pa.array(part, pa.int32()),
                "offset": pa.array(off, pa.int64()),
                "key": pa.array(self.keys, pa.binary()),
                "value": pa.array(self.values, pa.binary()),
            },
            schema=SCHEMA,
        )
        if table.num_rows:
            table = table.take(pa.array(np.lexsort((off, part, ts))))
        rates = np.asarray(self.counts, dtype=np.int64)
        return Recording(
            topic=topic,
            start_s=self.start_s,
            rates=rates,
            table=table,
            records=self.seen,
            outside_window=self.outside,
            max_records=self.max,
            **facts,
        )


def record(
    bootstrap: str,
    topic: str,
    seconds: float,
    max_records: int = DEFAULT_MAX_RECORDS,
    grace_s: float = DEFAULT_GRACE_S,
    stop=None,
    progress: Callable[[float, int], None] | None = None,
    seed: int | None = None,
) -> Recording:
    """Record the live topic for ``seconds`` whole seconds of record time (see the module doc). ``stop``
    (a threading.Event) ends it early: the whole seconds recorded so far are kept. ``progress(done_s,
    records)`` is called about once a second. KhaosError: broker unreachable, topic missing, nothing recorded."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    n = int(seconds)
    if n < 1 or n > MAX_SECONDS or not math.isfinite(seconds):
        raise KhaosError(f"a recording lasts 1..{MAX_SECONDS} whole seconds, got {seconds}")
    client = admin.connect(bootstrap)
    parts = admin.partitions(client, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": admin.bootstrap_of(client),
            "group.id": f"khaos-record-{uuid.uuid4().hex[:12]}",  # never committed: no group on the broker
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
            **admin.quiet_config(),
        }
    )
    try:
        end = admin.end_offsets(client, topic)
        t0 = time.time()
        start_s = math.ceil(t0)
        consumer.assign([TopicPartition(topic, p, end[p]) for p in parts])
        res = Reservoir(start_s, n, max_records, seed)
        deadline = start_s + n + grace_s
        last_tick = 0.0
        while True:
            now = time.time()
            if now >= deadline:
                break
            if stop is not None and stop.is_set():
                done = max(0, min(n, math.floor(now - grace_s) - start_s))
                if done < 1:
                    raise KhaosError(f"kafka topic {topic}: recording stopped before a whole second was recorded")
                res.truncate(done)
                break
            try:
                res.add_messages(consumer.consume(num_messages=10_000, timeout=0.2))
            except KafkaException as e:
                raise KhaosError(f"kafka topic {topic}: reading failed: {admin.error_text(e)}") from None
            if progress is not None and now - last_tick >= 1.0:
                last_tick = now
                progress(min(n, max(0.0, now - start_s)), res.seen)
    finally:
        consumer.close()
    if res.seen == 0:
        raise KhaosError(
            f"kafka topic {topic}: no record with a timestamp in the {len(res.counts)} s recorded (an idle topic? "
            f"{res.outside} read with timestamps outside them)"
        )
    return res.recording(
        topic,
        bootstrap=admin.bootstrap_of(client),
        partitions=len(parts),
        recorded_at=datetime.fromtimestamp(t0, UTC).isoformat(timespec="seconds"),
        extra={"start_offsets": {str(p): o for p, o in end.items()}, "grace_s": grace_s},
    )


def save(rec: Recording, path: str | Path) -> Path:
    """Write the recording as one Parquet file (to ``path.tmp``, then renamed), readable by its owner only:
    it holds a production topic's records."""
    path = Path(path)
    table = rec.table.replace_schema_metadata({META_KEY: json.dumps(rec.meta()).encode()})
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)  # a leftover of another user's mode is not reused
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise KhaosError(f"cannot write recording {path}: {e.strerror or e}") from None
    return path


def _bad(path: Path, what: str) -> KhaosError:
    return KhaosError(f"recording {path}: {what}")


def _int(meta: dict, key: str, path: Path, low: int = 0) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _bad(path, f"{key} must be a whole number >= {low}, got {value!r}")
    return value


def load(path: str | Path) -> Recording:
    """Read and check a recording file; KhaosError (one line) for anything that is not a valid recording."""
    path = Path(path)
    if not path.exists():
        raise KhaosError(f"recording {path} does not exist")
    if not path.is_file():
        raise KhaosError(f"recording {path} is not a file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        text = re.sub(r"^Could not open Parquet input source '.*?': ", "", " ".join(str(e).split()))
        raise _bad(path, f"not a readable Parquet file ({text.split('. ')[0][:200]})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise _bad(path, f"a Parquet file, but not a Khaos recording (no {META_KEY.decode()} metadata)")
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad(path, f"its {META_KEY.decode()} metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, f"metadata format is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise _bad(path, f"version {meta.get('version')!r}, this khaos reads version {VERSION}")
    if not isinstance(meta.get("topic"), str) or not meta["topic"]:
        raise _bad(path, "no topic name")
    start_s = _int(meta, "start_s", path)
    seconds = _int(meta, "seconds", path, 1)
    records, kept = _int(meta, "records", path), _int(meta, "kept", path)
    rates = meta.get("rates")
    if not isinstance(rates, list) or len(rates) != seconds:
        raise _bad(path, f"rates must be a list of {seconds} counts (one per second)")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in rates):
        raise _bad(path, "rates must be whole numbers >= 0")
    if sum(rates) != records:
        raise _bad(path, f"the rates add up to {sum(rates)}, not to its {records} records")
    if records == 0:
        raise _bad(path, "no records were recorded (an idle topic, or timestamps outside the window)")
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise _bad(path, f"missing columns {', '.join(missing)}")
    try:
        table = table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowException, ValueError) as e:
        raise _bad(path, f"column types are not {SCHEMA.types}: {' '.join(str(e).split())[:150]}") from None
    if table.num_rows != kept or not 0 < kept <= records:
        raise _bad(path, f"holds {table.num_rows} records, its metadata says {kept} of {records}")
    ts = table.column("timestamp_ms").to_numpy(zero_copy_only=False)
    if table.column("timestamp_ms").null_count or table.column("partition").null_count:
        raise _bad(path, "a record without timestamp or partition")
    if np.any(np.diff(ts) < 0):
        raise _bad(path, "records are not sorted by timestamp")
    if ts[0] < start_s * 1000 or ts[-1] >= (start_s + seconds) * 1000:
        raise _bad(path, f"a record timestamp lies outside the recorded seconds {start_s}..{start_s + seconds - 1}")
    if kept == records:
        per_second = np.bincount(ts // 1000 - start_s, minlength=seconds)
        if not np.array_equal(per_second, np.asarray(rates)):
            raise _bad(path, "the records' timestamps do not add up to its rates")
    known = {f for f in Recording.__dataclass_fields__} | {"format", "version", "seconds", "clock", "kept"}
    return Recording(
        topic=meta["topic"],
        start_s=start_s,
        rates=np.asarray(rates, dtype=np.int64),
        table=table,
        records=records,
        bootstrap=str(meta.get("bootstrap", "")),
        partitions=int(meta.get("partitions") or 0),
        outside_window=int(meta.get("outside_window") or 0),
        max_records=int(meta.get("max_records") or kept),
        recorded_at=str(meta.get("recorded_at", "")),
        extra={k: v for k, v in meta.items() if k not in known},
    )
