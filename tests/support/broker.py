"""A throw-away Kafka broker on 127.0.0.1 from the jars of jobs/kafka-dist (its README's recipe): for tests
and benchmarks that need a broker but no lab. ``with local_broker() as b: b.bootstrap``; the JVM is
SIGTERMed (then SIGKILLed) and its directory removed on exit."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from khaos_controller import REPO_ROOT

DIST = REPO_ROOT / "jobs" / "kafka-dist"
LIBS = DIST / "libs"


@dataclass
class Broker:
    """A running local broker: its address, JVM process and directory."""

    bootstrap: str
    proc: subprocess.Popen
    home: Path
    started_s: float


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def libs() -> Path:
    """jobs/kafka-dist/libs, resolved with Maven if it is not there yet."""
    if not any(LIBS.glob("kafka_2.13-*.jar")):
        subprocess.run(["mvn", "-q", "-B", "-f", str(DIST / "pom.xml"), "dependency:copy-dependencies"], check=True)
    return LIBS


def _java(home: Path, *args: str, heap: str = "-Xmx256m") -> list[str]:
    log = [f"-Dlog4j2.configurationFile={home / 'etc' / 'log4j2.properties'}", f"-Dkafka.logs.dir={home / 'logs'}"]
    return ["java", heap, *log, "-cp", f"{libs()}/*", *args]


@contextlib.contextmanager
def local_broker(timeout: float = 120.0, heap: str = "-Xms512m -Xmx512m") -> Iterator[Broker]:
    """Format and start a combined KRaft broker/controller in a temp dir; yield it once clients get metadata."""
    from confluent_kafka.admin import AdminClient

    home = Path(tempfile.mkdtemp(prefix="khaos-broker-"))
    port, cport = free_port(), free_port()
    (home / "etc").mkdir()
    config = (DIST / "server.properties").read_text()
    for key, value in {"HOST": "127.0.0.1", "PORT": port, "CONTROLLER_PORT": cport, "NODE_ID": 1}.items():
        config = config.replace(f"@{key}@", str(value))
    config = config.replace("@DATA_DIR@", str(home / "data"))
    (home / "etc" / "server.properties").write_text(config)
    config = str(home / "etc" / "server.properties")
    shutil.copy(DIST / "log4j2.properties", home / "etc" / "log4j2.properties")
    proc = None
    t0 = time.monotonic()
    try:
        cid = subprocess.run(
            _java(home, "kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=True
        ).stdout.split()[-1]
        subprocess.run(
            [
                *_java(home, "kafka.tools.StorageTool", "format", "--cluster-id", cid, "--standalone", "--config"),
                config,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        jvm = [
            "java",
            *heap.split(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-Djava.awt.headless=true",
            *_java(home, "kafka.Kafka", config)[2:],
        ]
        out = open(home / "stdout.log", "wb")  # noqa: SIM115 (lives as long as the broker)
        proc = subprocess.Popen(jvm, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        bootstrap = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited with {proc.returncode}: see {home}/logs/server.log")
            try:
                if admin.list_topics(timeout=1).brokers:
                    break
            except Exception:  # noqa: BLE001 (not up yet)
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"broker at {bootstrap} not up after {timeout:g} s")
            time.sleep(0.3)
        yield Broker(bootstrap, proc, home, time.monotonic() - t0)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def read_all(bootstrap: str, topic: str, timeout: float = 60.0, isolation: str = "read_committed") -> list:
    """Every record of the topic from the log start to the log end offsets as of now: [(timestamp_ms, partition,
    key, value)]."""
    from confluent_kafka import Consumer, TopicPartition

    from khaos_controller.kafka import admin

    client = admin.connect(bootstrap)
    end, start = admin.end_offsets(client, topic), admin.start_offsets(client, topic)
    left = {p: end[p] - start[p] for p in end if end[p] > start[p]}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "khaos-test-read",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            **admin.quiet_config(),
        }
    )
    out = []
    try:
        consumer.assign([TopicPartition(topic, p, start[p]) for p in left])
        deadline = time.monotonic() + timeout
        while any(n > 0 for n in left.values()) and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is None:
                    out.append((m.timestamp()[1], m.partition(), m.key(), m.value()))
                    if m.offset() >= end[m.partition()] - 1:
                        left[m.partition()] = 0
    finally:
        consumer.close()
    return out


def per_second(records: list) -> dict[int, int]:
    """{epoch second: records} by record timestamp."""
    counts: dict[int, int] = {}
    for ts, *_ in records:
        counts[ts // 1000] = counts.get(ts // 1000, 0) + 1
    return dict(sorted(counts.items()))
