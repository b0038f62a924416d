"""Kafka as the controller sees it, through the admin API of confluent-kafka (librdkafka): the bootstrap
address, broker health and topics. The kafka role's modules (roles/kafka/library: kafka_health,
kafka_topic) run this on the controller with the khaos venv's Python, so there is one implementation
of "is the cluster up" and "make this topic so"; the bootstrap address of a cluster is the inventory's
``kafka_bootstrap`` (the lab writes it; roles/khaos_defaults derives it from group ``kafka``).

Every failure is one line (KhaosError). librdkafka's own log lines go to a silent logger instead of
stderr: the error that ends a call says what went wrong.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KhaosError

DEFAULT_PORT = 9092  # the kafka role's kafka_port (roles/khaos_defaults)
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*):(?P<port>\d{1,5})$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_QUIET = logging.getLogger("khaos.kafka.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


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


def _one_line(e: BaseException) -> str:
    err = e.args[0] if e.args else e
    text = err.str() if hasattr(err, "str") else str(err)
    return " ".join(str(text).split())[:300]


def admin(bootstrap: str, timeout: float = 5.0):
    """An AdminClient for a cluster that answers: KhaosError (one line) when no broker does within ``timeout``."""
    from confluent_kafka.admin import AdminClient

    bootstrap = check_bootstrap(bootstrap)
    client = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET, "socket.connection.setup.timeout.ms": 5000})
    client.khaos_bootstrap = bootstrap  # for the messages below
    metadata(client, timeout)
    return client


def metadata(client, timeout: float = 5.0):
    """The cluster's metadata (brokers, topics), or a one-line KhaosError."""
    from confluent_kafka import KafkaException

    try:
        return client.list_topics(timeout=timeout)
    except KafkaException as e:
        where = getattr(client, "khaos_bootstrap", "?")
        raise KhaosError(
            f"Kafka at {where} did not answer within {timeout:g} s (broker down or wrong bootstrap address?): "
            f"{_one_line(e)}"
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
        raise KhaosError(f"{what}: {_one_line(e)}") from None
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


def inventory_bootstrap(inventory: str | Path) -> str:
    """A cluster's bootstrap address from its inventory: ``kafka_bootstrap`` (the lab inventory sets it), else
    ``<address>:<kafka_port>`` of every host of the brokers' group (kafka_group), the address being the one the broker advertises and
    listens on (``kafka_advertised_address``, else ``ansible_host``), as roles/khaos_defaults derives it.
    KhaosError when the inventory has neither."""
    from . import ansible
    from .inventory import group_hosts, names_in

    data = ansible.inventory_list(inventory)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    brokers = group_hosts(data, "kafka")
    for hv in hostvars.values():
        if hv.get("kafka_bootstrap"):
            return check_bootstrap(hv["kafka_bootstrap"])
    if not brokers:
        raise KhaosError(f"inventory {inventory}: no kafka_bootstrap and no host in group {names_in(data).kafka}")

    def address(host: str) -> str:
        v = hostvars.get(host, {})
        return f"{v.get('kafka_advertised_address') or v.get('ansible_host', host)}:{v.get('kafka_port', DEFAULT_PORT)}"

    return check_bootstrap(",".join(address(h) for h in brokers))
