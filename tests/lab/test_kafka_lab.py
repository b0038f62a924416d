"""Kafka on a real lab host: `khaos dist kafka`, playbooks/kafka.yml twice (the second
run changes nothing), topics through the kafka_topic module, records produced and consumed from this machine,
the broker SIGKILLed by inject_failure.yml and back with its topics and committed records, the sample job
(deploy_job.yml) reading a topic through a broker kill with its audit 0 lost / 0 duplicated, and a bad bootstrap
address in one line. One lab (2 Flink hosts + 1 Kafka host) for the whole module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.labs import fresh_lab

from khaos_controller.errors import KhaosError
from khaos_controller.infra import ansible, dist
from khaos_controller.infra.kafka import inventory_bootstrap
from khaos_controller.kafka import admin as kafka

LAB = "tkafka"
BROKER = f"{LAB}-kafka1"
TOPIC = {"name": "tk-events", "partitions": 2, "replication": 1, "retention_ms": 3_600_000}
RECORDS = 3000


@pytest.fixture(scope="module")
def kafka_lab(tmp_path_factory):
    """`khaos dist kafka` (cached after the first build), then a lab with one Kafka host."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "khaos"), "dist", "kafka"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    archive = Path(proc.stdout.strip().splitlines()[-1])
    assert archive == dist.kafka_dist_path()
    dist.verify(archive)
    lab = fresh_lab(LAB, hosts=2, kafka=1)
    try:
        lab.ansible_base = tmp_path_factory.mktemp("ansible")
        lab.runs = {}
        yield lab
    finally:
        lab.down(quiet=True)


def run(lab, playbook: str, **kw) -> ansible.PlaybookResult:
    return ansible.run_playbook(playbook, lab.inventory, base_dir=lab.ansible_base, **kw)


def admin(lab):
    return kafka.admin(lab.kafka_bootstrap, timeout=10)


def test_inventory_names_the_broker(kafka_lab):
    assert inventory_bootstrap(kafka_lab.inventory) == kafka_lab.kafka_bootstrap == f"{kafka_lab.host(BROKER).ip}:9092"
    facts = ansible.inventory_list(kafka_lab.inventory)
    assert facts["kafka"]["hosts"] == [BROKER]
    assert BROKER not in facts["flink_taskmanager"]["hosts"] + facts["flink_jobmanager"]["hosts"]


def test_role_deploys_a_broker_and_a_second_run_changes_nothing(kafka_lab):
    t0 = time.monotonic()
    first = run(kafka_lab, "kafka", extravars={"kafka_topics": [TOPIC]})
    first_s = time.monotonic() - t0
    t0 = time.monotonic()
    second = run(kafka_lab, "kafka", extravars={"kafka_topics": [TOPIC]})
    second_s = time.monotonic() - t0
    print(f"kafka.yml: first run {first_s:.1f} s changed={first.changed()}, second {second_s:.1f} s changed=0")
    assert first.changed(BROKER) > 5
    assert second.changed() == 0, second.stats
    facts = kafka.cluster(admin(kafka_lab))
    assert list(facts["brokers"]) == [1]
    topic = kafka.ensure_topic(admin(kafka_lab), kafka.TopicSpec.of(TOPIC), check_mode=True)
    assert topic == {"changed": False, "actions": [], "partitions": 2, "replication": 1}


def _tcp_from(lab, host, address: str, port: int) -> str:
    """A TCP connect from lab host ``host`` (its network namespace): 'open', or bash's error line."""
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.netns(host), "timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"],
        capture_output=True,
        text=True,
    )
    return "open" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


_METADATA = """
import json, sys
from khaos_controller.errors import KhaosError
from khaos_controller.kafka import admin as kafka
try:
    print(json.dumps(sorted(kafka.cluster(kafka.admin(sys.argv[1], timeout=5))["brokers"])))
except KhaosError as e:
    print(json.dumps(str(e)))
"""


def _metadata_from(lab, host, bootstrap: str):
    """A Kafka Metadata request (confluent-kafka's admin client) from lab host ``host``: the broker ids, or the error."""
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.netns(host), sys.executable, "-c", _METADATA, bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _reach(lab, peer, addresses) -> dict:
    """From lab host ``peer``: a TCP connect to each address on 9092 and 9093, and a Metadata request on 9092."""
    seen = {f"{a}:{port}": _tcp_from(lab, peer, a, port) for a in addresses for port in (9092, 9093)}
    seen |= {f"metadata {a}": _metadata_from(lab, peer, f"{a}:9092") for a in addresses}
    print(f"from {peer.name}: {seen}")
    return seen


def test_the_broker_listens_on_its_private_address_only(kafka_lab):
    """The broker host gets a second address on its link; from another lab host, Kafka answers on the private
    address and nothing listens on the second one (neither the client port nor the KRaft controller port).
    kafka_listen_address 0.0.0.0 opens it (and the default closes it again); an address the host does not
    have is refused in one line."""
    broker, peer = kafka_lab.host(BROKER), kafka_lab.host(f"{LAB}-2")
    subnet = kafka_lab.gateway.rsplit(".", 1)[0]
    private, other = broker.ip, kafka_lab.add_address(broker)
    assert other.startswith(f"{subnet}.") and other != private
    assert _tcp_from(kafka_lab, peer, other, 22) == "open"  # the address itself answers (sshd: every address)
    seen = _reach(kafka_lab, peer, (private, other))
    assert seen[f"{private}:9092"] == seen[f"{private}:9093"] == "open" and seen[f"metadata {private}"] == [1]
    assert "Connection refused" in seen[f"{other}:9092"] and "Connection refused" in seen[f"{other}:9093"]
    assert str(seen[f"metadata {other}"]).startswith(f"Kafka at {other}:9092 did not answer within 5 s")

    t0 = time.monotonic()
    opened = run(kafka_lab, "kafka", extravars={"kafka_listen_address": "0.0.0.0"})
    seen = _reach(kafka_lab, peer, (other,))
    assert opened.changed(BROKER) >= 2  # server.properties, the restart
    assert seen == {f"{other}:9092": "open", f"{other}:9093": "open", f"metadata {other}": [1]}
    closed = run(kafka_lab, "kafka")  # the default again: the broker restarts on its private address only
    print(f"opened and closed again (two restarts) in {time.monotonic() - t0:.1f} s")
    seen = _reach(kafka_lab, peer, (private, other))
    assert closed.changed(BROKER) >= 2 and seen[f"metadata {private}"] == [1]
    assert "Connection refused" in seen[f"{other}:9092"] and "Connection refused" in seen[f"{other}:9093"]

    with pytest.raises(KhaosError) as bad:
        run(kafka_lab, "kafka", extravars={"kafka_listen_address": f"{subnet}.99"}, tags="kafka_config")
    text = str(bad.value)
    assert "\n" not in text and f"kafka_listen_address {subnet}.99 is not an address of {BROKER} (" in text
    assert private in text and other in text  # the host's addresses, from its facts


def test_topic_module_updates_a_topic_once(kafka_lab):
    wider = {**TOPIC, "partitions": 3, "retention_ms": 7_200_000}
    first = run(kafka_lab, "kafka", extravars={"kafka_topics": [wider]}, tags="kafka_topics")
    again = run(kafka_lab, "kafka", extravars={"kafka_topics": [wider]}, tags="kafka_topics")
    assert (first.changed(), again.changed()) == (1, 0)
    assert kafka.ensure_topic(admin(kafka_lab), kafka.TopicSpec.of(wider), check_mode=True)["changed"] is False
    with pytest.raises(KhaosError, match="has 3 partitions, not 1: Kafka cannot remove partitions") as bad:
        run(kafka_lab, "kafka", extravars={"kafka_topics": [{**wider, "partitions": 1}]}, tags="kafka_topics")
    assert "\n" not in str(bad.value)


def _consume(bootstrap: str, group: str, want: int, timeout: float = 60.0) -> set[int]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "logger": kafka.LIBRDKAFKA_QUIET,
        }
    )
    consumer.subscribe([TOPIC["name"]])
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < want and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1):
                if msg.error() is None:
                    seen.add(int(msg.value()))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return seen


def _committed(bootstrap: str, group: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": kafka.LIBRDKAFKA_QUIET})
    try:
        parts = [TopicPartition(TOPIC["name"], p) for p in range(3)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=30)}
    finally:
        consumer.close()


def test_records_survive_a_broker_kill(kafka_lab):
    from confluent_kafka import Producer

    bootstrap = kafka_lab.kafka_bootstrap
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "logger": kafka.LIBRDKAFKA_QUIET}
    )
    for i in range(RECORDS):
        producer.produce(TOPIC["name"], key=str(i % 11), value=str(i))
    assert producer.flush(30) == 0
    assert _consume(bootstrap, "tk-audit", RECORDS) == set(range(RECORDS))
    committed = _committed(bootstrap, "tk-audit")
    assert sum(committed.values()) == RECORDS

    kill = run(kafka_lab, "inject_failure", extravars={"chaos_component": "kafka", "chaos_target": "random"})
    [killed] = kill.data["chaos_kills"]
    assert killed["host"] == BROKER and killed["component"] == "kafka" and killed["dead"]
    back = kafka.wait_brokers(bootstrap, [1], timeout=120)
    print(f"broker back {time.time() - killed['killed_at']:.1f} s after its SIGKILL (restart delay 2 s)")
    # the supervisor started a new JVM; topic, configs, records and the group's offsets are all there
    pid_file = kafka_lab.host_dir(kafka_lab.host(BROKER)) / "root" / "opt" / "kafka" / "run" / "kafka.pid"
    assert int(pid_file.read_text()) != killed["pid"] and back["brokers"] == {1: bootstrap}
    spec = kafka.TopicSpec.of({**TOPIC, "partitions": 3, "retention_ms": 7_200_000})
    assert kafka.ensure_topic(admin(kafka_lab), spec, check_mode=True)["changed"] is False
    assert _committed(bootstrap, "tk-audit") == committed
    assert _consume(bootstrap, "tk-reread", RECORDS) == set(range(RECORDS))


def test_a_job_reading_kafka_survives_a_broker_kill(kafka_lab):
    """deploy_job.yml starts the sample job on a topic that one replay fills (60 s x 500 events/s); the broker
    is SIGKILLed under it and comes back; the job reads every record, stop-with-savepoint, audit 0 lost / 0
    duplicated."""
    from khaos_controller.flink import audit
    from khaos_controller.flink.client import FlinkClient
    from khaos_controller.infra.inventory import cluster_facts
    from khaos_controller.kafka import admin as kadmin
    from khaos_controller.kafka import feed as kfeed

    run(kafka_lab, "flink_cluster")
    client = FlinkClient(cluster_facts(kafka_lab.inventory).rest_url)
    spec = kfeed.KafkaSpec()
    feed = kfeed.Feed(spec, kafka_lab.kafka_bootstrap, kfeed.run_prefix("tkb"), ["job"], partitions=2)
    try:
        feed.open()
        start_ms = feed.start(kfeed.source(spec, 60, rate=500))
        sink = kafka_lab.shared_dir / "jobs" / "iot-vehicles" / "out"
        args = [a.format(output=sink, **feed.fill("job")) for a in kfeed.SAMPLE_ARGS]
        run(kafka_lab, "deploy_job", extravars={"checkpoint_interval": "3s", "flink_job_args": args})
        time.sleep(10)
        kill = run(kafka_lab, "inject_failure", extravars={"chaos_component": "kafka", "chaos_target": "random"})
        [killed] = kill.data["chaos_kills"]
        assert killed["component"] == "kafka" and killed["dead"]
        kafka.wait_brokers(kafka_lab.kafka_bootstrap, [1], timeout=120)
        time.sleep(max(0.0, start_ms / 1000 + 62 - time.time()))  # the replay's 60 s are over
        summary = feed.stop()
        assert summary is not None and feed.error is None and summary.undelivered == 0, feed.error
        sent = summary.sent[feed.topics()[0]]
        assert sent == 30_000
        deadline, lag = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # offsets are committed with each checkpoint
            lag = kadmin.group_lag(feed.client, feed.fill("job")["group"], feed.topics()[0])
            if lag.records == 0 and not lag.uncommitted:
                break
            time.sleep(2)
        assert lag is not None and lag.records == 0, lag
        client.stop_with_savepoint(client.running_job("iot-vehicles"))
        result = audit.audit(sink, feed.partition_of)
        print(
            f"broker killed under the job; {result.records} records read, lost {result.lost}, dup {result.duplicated}"
        )
        assert (result.records, result.lost, result.duplicated) == (sent, 0, 0)
    finally:
        feed.close()
        for job_id in client.running_jobs():
            client.cancel(job_id)


def test_a_bad_bootstrap_address_is_one_line(kafka_lab):
    with pytest.raises(KhaosError) as malformed:
        kafka.admin("tkafka-kafka1")
    assert str(malformed.value) == (
        "Kafka bootstrap address 'tkafka-kafka1' is not host:port[,host:port...] (e.g. 10.0.0.5:9092)"
    )
    wrong = f"{kafka_lab.host(BROKER).ip}:9099"  # the broker's host, a port nothing listens on
    with pytest.raises(KhaosError, match=f"Kafka at {wrong} did not answer within 3 s") as silent:
        kafka.admin(wrong, timeout=3)
    assert "\n" not in str(silent.value)
    with pytest.raises(KhaosError) as played:  # the same line where a playbook reads the address
        run(
            kafka_lab,
            "kafka",
            extravars={"kafka_topics": [TOPIC], "kafka_bootstrap": wrong},
            tags="kafka_topics",
        )
    text = str(played.value)
    assert "\n" not in text and f"Kafka at {wrong} did not answer" in text and "Create or update the topics" in text
