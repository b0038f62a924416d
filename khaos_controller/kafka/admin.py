"""A Kafka cluster as record, replay and lag see it: reach it, check topics, read log end offsets and a
consumer group's committed offsets, and the group's lag.

Builds on ``infra/kafka.py`` (the bootstrap syntax, the AdminClient, creating and deleting topics, which the
kafka role's modules use too). Every failure is one line (KhaosError)."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

from ..errors import KhaosError
from ..infra import kafka as infra_kafka

CONNECT_TIMEOUT_S = 3.0  # TCP connect to a bootstrap address
RETRY_S = 0.2  # pause before asking again after a retriable error
# librdkafka's own log lines go nowhere (the logger infra/kafka.py uses too): our one-line errors say what failed
LIBRDKAFKA_QUIET = logging.getLogger("khaos.kafka.librdkafka")
LIBRDKAFKA_QUIET.addHandler(logging.NullHandler())
LIBRDKAFKA_QUIET.propagate = False


def quiet_config() -> dict:
    """librdkafka settings every client of this package shares (its log lines off stderr)."""
    return {"logger": LIBRDKAFKA_QUIET}


def _reach(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port opens, else why not (a few words)."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"host {host} does not resolve"
    last = "no address"
    for family, kind, proto, _name, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.settimeout(timeout)
            try:
                s.connect(addr)
                return None
            except ConnectionRefusedError:
                last = "connection refused: nothing listens there"
            except TimeoutError:
                last = f"no answer to a TCP connect within {timeout:g} s"
            except OSError as e:
                last = e.strerror or str(e)
    return last


def connect(bootstrap: str, timeout: float = 5.0):
    """An AdminClient of a cluster that answers; KhaosError ``kafka at B is unreachable (why)`` within a few
    seconds when no bootstrap address takes a TCP connection or no broker answers Metadata."""
    bootstrap = infra_kafka.check_bootstrap(bootstrap)
    problems = []
    for part in bootstrap.split(","):
        host, _, port = part.rpartition(":")
        why = _reach(host, int(port), min(timeout, CONNECT_TIMEOUT_S))
        if why is None:
            break
        problems.append(why if "," not in bootstrap else f"{part}: {why}")
    else:
        raise KhaosError(f"kafka at {bootstrap} is unreachable ({'; '.join(problems)})")
    try:
        return infra_kafka.admin(bootstrap, timeout=timeout)
    except KhaosError as e:
        why = str(e).rpartition("): ")[2] or str(e)
        raise KhaosError(
            f"kafka at {bootstrap} is unreachable (a TCP connection opens, but no Kafka broker answered "
            f"within {timeout:g} s: {why}; wrong port or address?)"
        ) from None


def bootstrap_of(client) -> str:
    """The bootstrap address a client of :func:`connect` was made for."""
    return getattr(client, "khaos_bootstrap", "?")


def partitions(client, topic: str, timeout: float = 5.0) -> list[int]:
    """The topic's partition ids; KhaosError ``kafka topic T does not exist at B`` when it is missing."""
    md = infra_kafka.metadata(client, timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        known = sorted(n for n in md.topics if not n.startswith("__"))
        hint = f"topics there: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}" if known else "no topics"
        raise KhaosError(f"kafka topic {topic} does not exist at {bootstrap_of(client)} ({hint})")
    return sorted(t.partitions)


def topic_exists(client, topic: str, timeout: float = 5.0) -> bool:
    """Whether the topic exists (with partitions)."""
    t = infra_kafka.metadata(client, timeout).topics.get(topic)
    return t is not None and t.error is None and bool(t.partitions)


def create_topic(
    client, topic: str, partitions: int = 4, replication: int = 1, retention_ms: int | None = None
) -> bool:
    """Create the topic, or widen it to ``partitions`` (see infra/kafka.ensure_topic); True when it changed."""
    item = {"name": topic, "partitions": partitions, "replication": replication}
    if retention_ms is not None:
        item["retention_ms"] = retention_ms
    return infra_kafka.ensure_topic(client, infra_kafka.TopicSpec.of(item))["changed"]


def delete_topic(client, topic: str) -> bool:
    """Delete the topic if it exists; True when it did."""
    return infra_kafka.delete_topic(client, topic)["changed"]


def _offsets(client, topic: str, spec, timeout: float) -> dict[int, int]:
    """Offsets by ``spec`` for every partition; retriable errors (a leader not elected yet on a new topic) are
    asked again until ``timeout``."""
    from confluent_kafka import KafkaException, TopicPartition

    parts = partitions(client, topic, timeout)
    deadline = time.monotonic() + timeout
    while True:
        futures = client.list_offsets({TopicPartition(topic, p): spec for p in parts}, request_timeout=timeout)
        try:
            return dict(sorted((tp.partition, f.result(timeout=timeout).offset) for tp, f in futures.items()))
        except (KafkaException, TimeoutError) as e:
            if not (_retriable(e) and time.monotonic() < deadline):
                raise KhaosError(f"kafka topic {topic}: offsets: {error_text(e)}") from None
        time.sleep(RETRY_S)


def _retriable(e: BaseException) -> bool:
    """Whether the request may succeed when sent again: Kafka says so, or no leader is elected yet."""
    from confluent_kafka import KafkaError

    err = e.args[0] if getattr(e, "args", None) else None
    if not isinstance(err, KafkaError):
        return False
    return err.retriable() or err.code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def error_text(e: BaseException) -> str:
    """A Kafka exception (or KafkaError) as a few words on one line."""
    err = e.args[0] if getattr(e, "args", None) else e  # a KafkaException carries a KafkaError
    text = err.str() if hasattr(err, "str") else str(err) or type(e).__name__
    return " ".join(str(text).split())[:300]


def end_offsets(client, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """{partition: log end offset} (the offset the next record written there gets)."""
    from confluent_kafka.admin import OffsetSpec

    return _offsets(client, topic, OffsetSpec.latest(), timeout)


def start_offsets(client, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """{partition: log start offset} (the oldest record retention kept)."""
    from confluent_kafka.admin import OffsetSpec

    return _offsets(client, topic, OffsetSpec.earliest(), timeout)


def committed_offsets(client, group: str, topic: str, timeout: float = 10.0) -> dict[int, int | None]:
    """{partition: the group's committed offset} for every partition of the topic (None: nothing committed)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

    parts = partitions(client, topic, timeout)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    try:
        futures = client.list_consumer_group_offsets([request], request_timeout=timeout)
        result = futures[group].result(timeout=timeout)
    except (KafkaException, TimeoutError) as e:
        raise KhaosError(f"kafka group {group}: committed offsets of topic {topic}: {error_text(e)}") from None
    out = {p: None for p in parts}
    for tp in result.topic_partitions:
        if tp.error is not None:
            raise KhaosError(f"kafka group {group}, topic {topic} partition {tp.partition}: {error_text(tp.error)}")
        out[tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


@dataclass
class Lag:
    """A group's lag on a topic: records between its committed offsets and the log end, summed."""

    records: int  # sum over partitions of end - committed (partitions without a commit: end - log start)
    end: dict[int, int]
    committed: dict[int, int | None]
    uncommitted: list[int]  # partitions the group has not committed yet


def group_lag(client, group: str, topic: str, timeout: float = 10.0) -> Lag:
    """The group's lag on the topic from the broker: log end offsets minus committed offsets, summed.
    A partition the group never committed counts from its log start (all of it is still to read).
    Flink commits offsets only when a checkpoint completes: this lag is up to one interval stale."""
    end = end_offsets(client, topic, timeout)
    committed = committed_offsets(client, group, topic, timeout)
    missing = [p for p, c in committed.items() if c is None]
    start = start_offsets(client, topic, timeout) if missing else {}
    total = sum(max(0, end[p] - (committed[p] if committed[p] is not None else start[p])) for p in end)
    return Lag(total, end, committed, missing)
