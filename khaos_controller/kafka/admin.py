"""The Kafka admin API (confluent-kafka's AdminClient), in one place: the bootstrap address, reaching a
cluster, broker health, topics made so, log end and committed offsets, and a consumer group's lag.

Record, replay, feed and latency use it, and so do the kafka role's modules (roles/kafka/library:
kafka_health, kafka_topic, run on the controller with the khaos venv's Python): one implementation of "is
the cluster up" and "make this topic so". Where a cluster's Kafka is (an inventory's bootstrap) is
infra/kafka.py. Every failure is one line (KhaosError); librdkafka's own log lines go to a silent logger
instead of stderr: the error that ends a call says what went wrong."""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass, field

from ..errors import KhaosError

CONNECT_TIMEOUT_S = 3.0  # TCP connect to a bootstrap address
RETRY_S = 0.2  # pause before asking again after a retriable error
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*):(?P<port>\d{1,5})$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# librdkafka's own log lines go nowhere: our one-line errors say what failed
LIBRDKAFKA_QUIET = logging.getLogger("khaos.kafka.librdkafka")
LIBRDKAFKA_QUIET.addHandler(logging.NullHandler())
LIBRDKAFKA_QUIET.propagate = False


def quiet_config() -> dict:
    """librdkafka settings every client shares (its log lines off stderr)."""
    return {"logger": LIBRDKAFKA_QUIET}


def check_bootstrap(bootstrap: str) -> str:
    """``host:port[,host:port...]`` (spaces dropped), or a KhaosError saying what is wrong with it."""
    text = "".join(str(bootstrap or "").split())
    if not text:
        raise KhaosError("no Kafka bootstrap address: set kafka_bootstrap (host:port[,host:port...])")
    for part in text.split(","):
        m = _HOST_PORT.match(part)
        if not m or not 0 < int(m["port"]) < 65536:
            raise KhaosError(
                f"Kafka bootstrap address {bootstrap!r} is not host:port[,host:port...] (e.g. 10.0.0.5:9092)"
            )
    return text


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
    bootstrap = check_bootstrap(bootstrap)
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
        return admin(bootstrap, timeout=timeout)
    except KhaosError as e:
        why = str(e).rpartition("): ")[2] or str(e)
        raise KhaosError(
            f"kafka at {bootstrap} is unreachable (a TCP connection opens, but no Kafka broker answered "
            f"within {timeout:g} s: {why}; wrong port or address?)"
        ) from None


def admin(bootstrap: str, timeout: float = 5.0):
    """An AdminClient for a cluster that answers Metadata: KhaosError (one line) when no broker does within
    ``timeout`` (for the kafka role's modules and polling; :func:`connect` also says why none answers)."""
    from confluent_kafka.admin import AdminClient

    bootstrap = check_bootstrap(bootstrap)
    client = AdminClient(
        {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_QUIET, "socket.connection.setup.timeout.ms": 5000}
    )
    client.khaos_bootstrap = bootstrap  # for the messages below
    metadata(client, timeout)
    return client


def bootstrap_of(client) -> str:
    """The bootstrap address a client of :func:`connect` was made for."""
    return getattr(client, "khaos_bootstrap", "?")


def partitions(client, topic: str, timeout: float = 5.0) -> list[int]:
    """The topic's partition ids; KhaosError ``kafka topic T does not exist at B`` when it is missing."""
    md = metadata(client, timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        known = sorted(n for n in md.topics if not n.startswith("__"))
        hint = f"topics there: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}" if known else "no topics"
        raise KhaosError(f"kafka topic {topic} does not exist at {bootstrap_of(client)} ({hint})")
    return sorted(t.partitions)


def topic_exists(client, topic: str, timeout: float = 5.0) -> bool:
    """Whether the topic exists (with partitions)."""
    t = metadata(client, timeout).topics.get(topic)
    return t is not None and t.error is None and bool(t.partitions)


def metadata(client, timeout: float = 5.0):
    """The cluster's metadata (brokers, topics), or a one-line KhaosError."""
    from confluent_kafka import KafkaException

    try:
        return client.list_topics(timeout=timeout)
    except KafkaException as e:
        where = getattr(client, "khaos_bootstrap", "?")
        raise KhaosError(
            f"Kafka at {where} did not answer within {timeout:g} s (broker down or wrong bootstrap address?): "
            f"{error_text(e)}"
        ) from None


def cluster(client, timeout: float = 5.0) -> dict:
    """Cluster id, the broker the metadata names as controller, and every registered broker {id: host:port}."""
    md = metadata(client, timeout)
    return {
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "brokers": {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()},
    }


def wait_brokers(bootstrap: str, node_ids: list[int], timeout: float = 120.0, cluster_id: str = "") -> dict:
    """Wait until every broker of ``node_ids`` is registered (the cluster answers Metadata with all of them);
    the cluster's facts plus ``waited_s``. KhaosError when the time is up or the cluster id is not ``cluster_id``."""
    bootstrap = check_bootstrap(bootstrap)
    t0 = time.monotonic()
    seen, last = {}, "no answer yet"
    client = None
    while True:
        try:
            client = client or admin(bootstrap, timeout=2.0)
            facts = cluster(client, timeout=2.0)
            seen = facts["brokers"]
            if cluster_id and facts["cluster_id"] != cluster_id:
                raise KhaosError(
                    f"Kafka at {bootstrap} is cluster {facts['cluster_id']}, not {cluster_id} (another cluster "
                    "answers at that address, or a broker was formatted anew)"
                )
            if set(node_ids) <= set(seen):
                return facts | {"waited_s": round(time.monotonic() - t0, 1)}
            last = f"registered brokers {sorted(seen) or 'none'}"
        except KhaosError as e:
            if "not answer" not in str(e):
                raise
            last = str(e)
        if time.monotonic() - t0 > timeout:
            missing = sorted(set(node_ids) - set(seen))
            raise KhaosError(f"Kafka at {bootstrap}: brokers {missing} not registered after {timeout:g} s ({last})")
        time.sleep(1.0)


@dataclass
class TopicSpec:
    """A topic as the kafka_topics variable describes it; None: whatever the broker has (or its default)."""

    name: str
    partitions: int | None = None
    replication: int | None = None
    config: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, item: dict) -> TopicSpec:
        """From ``{name, partitions, replication, retention_ms, config}``; KhaosError on a bad entry."""
        known = {"name", "partitions", "replication", "retention_ms", "config", "state"}
        if not isinstance(item, dict) or set(item) - known:
            extra = sorted(set(item) - known) if isinstance(item, dict) else item
            raise KhaosError(f"kafka topic entry {item!r}: unknown keys {extra} (known: {', '.join(sorted(known))})")
        name = str(item.get("name") or "")
        if not _TOPIC.match(name) or name in (".", ".."):
            raise KhaosError(f"kafka topic name {name!r}: 1-249 letters, digits, '.', '_' or '-'")
        ints = {}
        for key in ("partitions", "replication", "retention_ms"):
            value = item.get(key)
            if value is None:
                continue
            try:
                ints[key] = int(value)
            except (TypeError, ValueError):
                raise KhaosError(f"kafka topic {name}: {key} {value!r} is not a whole number") from None
            if ints[key] < (-1 if key == "retention_ms" else 1):
                raise KhaosError(f"kafka topic {name}: {key} must be >= {-1 if key == 'retention_ms' else 1}")
        config = {str(k): _config_value(v) for k, v in (item.get("config") or {}).items()}
        if "retention_ms" in ints:
            config["retention.ms"] = str(ints["retention_ms"])
        return cls(name, ints.get("partitions"), ints.get("replication"), config)


def _config_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _topic_state(client, name: str, timeout: float):
    """(partitions, replication) of a topic, or None when it does not exist."""
    # every topic's metadata: asking for one topic by name may create it where the broker auto-creates topics
    t = client.list_topics(timeout=timeout).topics.get(name)
    if t is None or t.error is not None or not t.partitions:
        return None
    return len(t.partitions), len(next(iter(t.partitions.values())).replicas)


def _result(future, what: str, timeout: float):
    from confluent_kafka import KafkaException

    try:
        return future.result(timeout=timeout)
    except KafkaException as e:
        raise KhaosError(f"{what}: {error_text(e)}") from None
    except TimeoutError:
        raise KhaosError(f"{what}: no answer within {timeout:g} s") from None


def _wait_leaders(client, name: str, timeout: float) -> None:
    """Every partition of a new topic has a leader (producers and consumers can use it at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = client.list_topics(timeout=timeout).topics.get(name)
        if t is not None and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    raise KhaosError(f"kafka topic {name}: created, but its partitions have no leader after {timeout:g} s")


def ensure_topic(client, spec: TopicSpec, check_mode: bool = False, timeout: float = 30.0) -> dict:
    """Create the topic or bring it to ``spec`` (more partitions, changed configs); nothing when it is so.
    ``{"changed", "actions", "partitions", "replication"}``. Kafka cannot drop partitions or change the
    replication factor in place: both are one-line errors, never a silent difference."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

    state = _topic_state(client, spec.name, timeout)
    if state is None:
        if not check_mode:
            new = NewTopic(spec.name, spec.partitions or -1, spec.replication or -1, config=spec.config)
            futures = client.create_topics([new], operation_timeout=timeout, request_timeout=timeout)
            _result(futures[spec.name], f"creating kafka topic {spec.name}", timeout)
            _wait_leaders(client, spec.name, timeout)
            state = _topic_state(client, spec.name, timeout) or (spec.partitions, spec.replication)
        return {
            "changed": True,
            "actions": ["create"],
            "partitions": state and state[0],
            "replication": state and state[1],
        }
    partitions, replication = state
    actions = []
    if spec.replication is not None and spec.replication != replication:
        raise KhaosError(
            f"kafka topic {spec.name} has replication factor {replication}, not {spec.replication}: changing it "
            "needs a partition reassignment (kafka-reassign-partitions), which kafka_topic does not do"
        )
    if spec.partitions is not None and spec.partitions < partitions:
        raise KhaosError(
            f"kafka topic {spec.name} has {partitions} partitions, not {spec.partitions}: Kafka cannot remove "
            "partitions (delete the topic and create it again)"
        )
    if spec.partitions is not None and spec.partitions > partitions:
        actions.append(f"partitions {partitions} -> {spec.partitions}")
        if not check_mode:
            futures = client.create_partitions([NewPartitions(spec.name, spec.partitions)], request_timeout=timeout)
            _result(futures[spec.name], f"adding partitions to kafka topic {spec.name}", timeout)
            partitions = spec.partitions
    if spec.config:
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
        entries = _result(client.describe_configs([resource])[resource], f"reading kafka topic {spec.name}", timeout)
        unknown = sorted(k for k in spec.config if k not in entries)
        if unknown:
            raise KhaosError(f"kafka topic {spec.name}: unknown topic config {', '.join(unknown)}")
        changes = {k: v for k, v in sorted(spec.config.items()) if entries[k].value != v}
        actions += [f"{k} {entries[k].value} -> {v}" for k, v in changes.items()]
        if changes and not check_mode:
            ops = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in changes.items()]
            alter = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=ops)
            futures = client.incremental_alter_configs([alter])
            _result(futures[alter], f"changing kafka topic {spec.name}", timeout)
    return {"changed": bool(actions), "actions": actions, "partitions": partitions, "replication": replication}


def delete_topic(client, name: str, check_mode: bool = False, timeout: float = 30.0) -> dict:
    """Delete the topic if it exists."""
    if _topic_state(client, name, timeout) is None:
        return {"changed": False, "actions": []}
    if not check_mode:
        futures = client.delete_topics([name], operation_timeout=timeout, request_timeout=timeout)
        _result(futures[name], f"deleting kafka topic {name}", timeout)
    return {"changed": True, "actions": ["delete"]}


def create_topic(
    client, topic: str, partitions: int = 4, replication: int = 1, retention_ms: int | None = None
) -> bool:
    """Create the topic, or widen it to ``partitions`` (see ensure_topic); True when it changed."""
    item = {"name": topic, "partitions": partitions, "replication": replication}
    if retention_ms is not None:
        item["retention_ms"] = retention_ms
    return ensure_topic(client, TopicSpec.of(item))["changed"]


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
