"""Record and replay against a real broker: a Kafka host of a lab deployed by the kafka role
(playbooks/kafka.yml), reached from this machine over the lab bridge. A producer writes a live topic at known
per-second rates; `khaos workload record` (a sample) and recording.record (every record) take it; `khaos replay`
plays the recording into 2 copy topics, whose per-second rates must match within 2 %. Then the group lag, the
output latency consumer, and the bad-input lines (topic missing, broker unreachable, wrong address, malformed
recording). One lab (2 idle Flink hosts + 1 Kafka host) for the module, always taken down."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.broker import per_second, read_all
from support.labs import fresh_lab

from khaos_controller.errors import KhaosError
from khaos_controller.infra import ansible
from khaos_controller.kafka import admin, latency, recording, replay

LAB = "trkafka"
KHAOS = [str(Path(sys.executable).parent / "khaos")]
# records per second of the live producer: a known, uneven shape with an idle second
RATES = [600, 1800, 1200, 0, 2400, 900, 1500, 300, 2100, 1200, 1800, 600, 1500, 900, 2400, 1200]


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory):
    """A broker on a lab host: `khaos dist kafka` (cached), a lab with one Kafka host, playbooks/kafka.yml."""
    proc = subprocess.run([*KHAOS, "dist", "kafka"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    lab = fresh_lab(LAB, hosts=2, kafka=1)
    try:
        ansible.run_playbook("kafka", lab.inventory, base_dir=tmp_path_factory.mktemp("ansible"))
        yield lab.kafka_bootstrap
    finally:
        lab.down(quiet=True)


def khaos(*argv, timeout=120):
    return subprocess.run([*KHAOS, *argv], capture_output=True, text=True, timeout=timeout)


def live_producer(bootstrap: str, topic: str, start_s: int, truth: dict[int, int]) -> None:
    """Write RATES[k] iot records with timestamps in second start_s + k (spread over 20 slices of 50 ms)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", **admin.quiet_config()})
    i = 0
    for k, rate in enumerate(RATES):
        for slice_ in range(20):
            at = start_s + k + slice_ / 20
            time.sleep(max(0.0, at - time.time()))
            for _ in range(rate // 20):
                ts = int(time.time() * 1000)
                p.produce(topic, f"{i},{i % 50},{60 + i % 90},{1 + i % 9},{ts}", str(i % 50), timestamp=ts)
                truth[ts // 1000] = truth.get(ts // 1000, 0) + 1
                i += 1
            p.poll(0)
    assert p.flush(30) == 0


def test_record_a_live_topic_and_replay_it_into_two_copies(bootstrap, tmp_path):
    client = admin.connect(bootstrap)
    for topic, parts in (("live", 4), ("copy-1", 4), ("copy-2", 2)):
        admin.delete_topic(client, topic)
        admin.create_topic(client, topic, partitions=parts)
    truth: dict[int, int] = {}
    start_s = int(time.time()) + 2
    producer = threading.Thread(target=live_producer, args=(bootstrap, "live", start_s, truth))
    producer.start()
    time.sleep(start_s + 1.5 - time.time())  # the recordings start inside the live stream
    full: dict = {}
    whole = threading.Thread(target=lambda: full.setdefault("rec", recording.record(bootstrap, "live", 10)))
    whole.start()
    sampled = khaos(
        *("workload", "record", "--bootstrap", bootstrap, "--topic", "live", "--seconds", "10"),
        *("--max-records", "3000", "--out", str(tmp_path / "live.parquet")),
    )
    whole.join()
    producer.join()
    assert sampled.returncode == 0, sampled.stderr
    print(sampled.stdout.strip())
    for rec in (full["rec"], recording.load(tmp_path / "live.parquet")):
        # exact: every record the producer stamped in a recorded second was counted
        assert rec.rates.tolist() == [truth.get(rec.start_s + k, 0) for k in range(rec.seconds)]
        assert rec.seconds == 10 and rec.records > 5000
    sample = recording.load(tmp_path / "live.parquet")
    assert sample.sampled and sample.kept == 3000 and not full["rec"].sampled

    start_ms = (int(time.time()) + 3) * 1000
    played = khaos(
        *("replay", "--recording", str(tmp_path / "live.parquet"), "--format", "iot", "--bootstrap", bootstrap),
        *("--topic", "copy-1", "--topic", "copy-2", "--start", str(start_ms)),
    )
    assert played.returncode == 0, played.stderr
    print(played.stdout.strip())
    for topic in ("copy-1", "copy-2"):
        records = read_all(bootstrap, topic)
        got = per_second(records)
        copy = [got.get(start_ms // 1000 + k, 0) for k in range(sample.seconds)]
        print(f"{topic} per second {copy}; recording {sample.rates.tolist()}")
        for want, have in zip(sample.rates.tolist(), copy):
            assert abs(have - want) <= 0.02 * want, (topic, copy, sample.rates.tolist())
        assert sum(got.values()) == sample.records
        ids = sorted(int(v.split(b",")[0]) for *_, v in records)
        assert ids == list(range(sample.records))  # contiguous per copy: the copy's audit works
        assert all(int(v.split(b",")[4]) == ts >= start_ms for ts, *_, v in records)  # event time = due


def test_group_lag_from_the_broker(bootstrap):
    from confluent_kafka import Consumer, TopicPartition

    client = admin.connect(bootstrap)
    admin.delete_topic(client, "lagged")
    admin.create_topic(client, "lagged", partitions=2)
    replay.replay(replay.rate_source(500, 2), ["lagged"], int(time.time() * 1000), bootstrap=bootstrap)
    assert admin.group_lag(client, "g-lag", "lagged").records == 1000  # nothing committed: all of it
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-lag", **admin.quiet_config()})
    c.commit(offsets=[TopicPartition("lagged", 0, 100), TopicPartition("lagged", 1, 400)], asynchronous=False)
    c.close()
    lag = admin.group_lag(client, "g-lag", "lagged")
    assert lag.records == 500 and lag.end == {0: 500, 1: 500} and lag.committed == {0: 100, 1: 400}


def test_output_latency_of_records_written_to_kafka(bootstrap):
    client = admin.connect(bootstrap)
    admin.create_topic(client, "out", partitions=2)
    watch = latency.OutputLatency(bootstrap, "out")
    watch.start()
    watch.wait_ready()
    # due 2 s from now: the producer has its connection and the topic's metadata before the first record
    replay.replay(replay.rate_source(1000, 4), ["out"], int(time.time() * 1000) + 2000, bootstrap=bootstrap)
    time.sleep(1.5)
    watch.stop()
    rows = [r for r in watch.rows() if r.count]
    assert sum(r.count for r in rows) == 4000 and watch.error is None
    assert all(0 <= r.p99_ms <= r.max_ms < 1000 for r in rows), rows  # produced at the due time: ms, not s


def test_bad_input_is_one_line_each(bootstrap, tmp_path):
    host, _, port = bootstrap.partition(":")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is no recording")
    prefix = host.rsplit(".", 1)[0]
    out = ["--seconds", "3", "--out", str(tmp_path / "r.parquet")]
    cases = {
        "topic missing (replay)": (
            ["replay", "--rate", "10", "--seconds", "1", "--bootstrap", bootstrap, "--topic", "no-such-topic"],
            f"kafka topic no-such-topic does not exist at {bootstrap}",
        ),
        "topic missing (record)": (
            ["workload", "record", "--bootstrap", bootstrap, "--topic", "no-such-topic", *out],
            f"kafka topic no-such-topic does not exist at {bootstrap}",
        ),
        "wrong port": (
            ["replay", "--rate", "10", "--seconds", "1", "--bootstrap", f"{host}:9099", "--topic", "t"],
            f"kafka at {host}:9099 is unreachable (connection refused",
        ),
        "wrong address": (
            ["replay", "--rate", "10", "--seconds", "1", "--bootstrap", f"{prefix}.250:{port}", "--topic", "t"],
            f"kafka at {prefix}.250:{port} is unreachable (",
        ),
        "not Kafka": (  # the broker host's sshd: a port that answers, but not Kafka
            ["replay", "--rate", "10", "--seconds", "1", "--bootstrap", f"{host}:22", "--topic", "t"],
            "no Kafka broker answered",
        ),
        "malformed recording": (
            ["replay", "--recording", str(tmp_path / "bad.parquet"), "--bootstrap", bootstrap, "--topic", "t"],
            "not a readable Parquet file",
        ),
    }
    for name, (argv, expect) in cases.items():
        t0 = time.monotonic()
        proc = khaos(*argv, timeout=60)
        took = time.monotonic() - t0
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, (name, proc.stderr)
        assert lines[0].startswith("khaos: error: ") and expect in lines[0], (name, lines[0])
        assert took < 15, (name, took)
        print(f"{name} ({took:.1f} s): {lines[0]}")
    with pytest.raises(KhaosError, match="unreachable"):
        admin.connect(f"{host}:9099")


def test_a_stopped_replay_delivers_what_it_sent(bootstrap):
    client = admin.connect(bootstrap)
    admin.delete_topic(client, "stopped")
    admin.create_topic(client, "stopped", partitions=3)
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()
    s = replay.replay(
        replay.rate_source(2000, 60), ["stopped"], int(time.time() * 1000), bootstrap=bootstrap, stop=stop
    )
    assert s.stopped and s.undelivered == 0
    assert sum(admin.end_offsets(client, "stopped").values()) == s.produced["stopped"]
    assert np.isclose(s.produced["stopped"], 4000, rtol=0.25)
