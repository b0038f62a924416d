"""Kafka record and replay without a broker: the schedule (never early), the replay loop against a fake
producer, generated formats (the jobs' own ids and fields), recorded round trips, the recording's sample and
file checks, lag from standard metrics, the output latency buckets, and the CLI's one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import one_line

from khaos_controller.errors import KhaosError
from khaos_controller.kafka import formats, latency, metrics, recording, replay


# ---- schedule ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schedule_is_never_early_and_keeps_every_seconds_count(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 3000, 40)
    counts[[3, 4, 17]] = 0  # empty seconds are skipped
    s = replay.Schedule(counts)
    off = s.offsets(0, s.total)
    assert len(off) == s.total == counts.sum()
    assert np.all(np.diff(off) >= 0)
    assert np.array_equal(np.bincount(off // 1000, minlength=len(counts)), counts)
    probe = rng.choice(s.total, 2000, replace=False)
    for i in probe.tolist():
        t = int(off[i])
        assert s.due_count(t) >= i + 1  # due at its offset
        assert s.due_count(t - 1) <= i  # not one ms before
    assert s.due_count(-1) == 0 and s.due_count(len(counts) * 1000) == s.total


def test_schedule_spreads_a_second_like_the_job():
    s = replay.Schedule([3, 0, 2])  # Schedule.java: event j of a second with c events at s*1000 + j*1000/c
    assert s.offsets(0, 5).tolist() == [0, 333, 666, 2000, 2500]
    assert [s.due_count(t) for t in (0, 332, 333, 999, 1999, 2000, 2499, 2500)] == [1, 1, 2, 3, 3, 4, 4, 5]


def test_schedule_refuses_no_records():
    with pytest.raises(KhaosError, match="no records"):
        replay.Schedule([0, 0])
    with pytest.raises(KhaosError):
        replay.rate_source(0, 10)


# ---- the replay loop against a fake producer --------------------------------------------
class FakeProducer:
    sent: list = []

    def __init__(self, conf):
        self.conf = conf

    def produce(self, topic, value, key, partition, timestamp):
        FakeProducer.sent.append((time.time() * 1000, topic, value, key, partition, timestamp))

    def poll(self, _t=0):
        return 0

    def flush(self, _t=0):
        return 0


@pytest.fixture
def fake_kafka(monkeypatch):
    import confluent_kafka

    FakeProducer.sent = []
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    monkeypatch.setattr(replay.admin, "connect", lambda b: object())
    monkeypatch.setattr(replay.admin, "bootstrap_of", lambda c: "fake:9092")
    monkeypatch.setattr(replay.admin, "partitions", lambda c, t: list(range({"a": 3, "b": 4}[t])))
    return FakeProducer


def test_replay_never_sends_early_and_numbers_each_copy_from_zero(fake_kafka):
    start = (int(time.time()) + 1) * 1000
    trace = pd.Series([1500, 0, 2500])
    s = replay.replay(replay.trace_source(trace), ["a", "b"], start, bootstrap="fake:9092")
    sent = fake_kafka.sent
    assert s.produced == {"a": 4000, "b": 4000} and s.sent == s.produced and not s.stopped
    assert all(at >= ts for at, *_, ts in sent), "a record left before its due time"
    assert s.max_late_ms < 1000
    for topic, parts in (("a", 3), ("b", 4)):
        rows = [r for r in sent if r[1] == topic]
        ids = [int(r[2].split(",")[0]) for r in rows]
        assert ids == list(range(4000))  # contiguous per topic, in order
        assert all(r[4] == i % parts for r, i in zip(rows, ids))  # every partition gets records
        per_s = pd.Series([r[5] // 1000 - start // 1000 for r in rows]).value_counts().sort_index()
        assert per_s.to_dict() == {0: 1500, 2: 2500}
        assert all(int(r[2].split(",")[4]) == r[5] for r in rows)  # event time = record timestamp = due


def test_replay_stops_on_the_event(fake_kafka):
    import threading

    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    start = int(time.time() * 1000)
    s = replay.replay(replay.rate_source(100, 60), ["a"], start, bootstrap="fake:9092", stop=stop)
    assert s.stopped and 0 < s.produced["a"] < 6000
    assert s.wall_s < 5


def test_records_refused_at_once_are_counted_not_raised(fake_kafka, monkeypatch):
    from confluent_kafka import KafkaError, KafkaException

    def refuse(self, topic, value, key, partition, timestamp):
        if partition == 1:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION))
        FakeProducer.sent.append((time.time() * 1000, topic, value, key, partition, timestamp))

    monkeypatch.setattr(FakeProducer, "produce", refuse)
    s = replay.replay(replay.rate_source(300, 1), ["a"], int(time.time() * 1000), bootstrap="fake:9092")
    assert s.produced == {"a": 300} and s.failed == {"a": 100} and s.sent == {"a": 200}
    assert s.errors[0] == "a: Local: Unknown partition" and "100 failed" in s.line()


def test_the_producer_settings():
    conf = replay.producer_config("h:1", {"linger.ms": 20})
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True and conf["compression.type"] == "none"
    assert conf["linger.ms"] == 20 and conf["bootstrap.servers"] == "h:1"


# ---- generated formats ------------------------------------------------------------------
# VehicleEvent.of(i, 1000, skew, 0) printed by the job's own Java class: (vehicleId, speed, area) of ids
# 0, 1, 2, 3, 100000, 299998 (300,000 ids x 6 skews were compared bit for bit when this was written)
JAVA = {
    0.0: [(0, 129, 6), (1, 144, 8), (2, 88, 7), (3, 92, 4), (0, 74, 6), (998, 134, 5)],
    1.1: [(50, 129, 6), (6, 144, 8), (7, 88, 7), (97, 92, 4), (4, 74, 6), (10, 134, 5)],
}


@pytest.mark.parametrize("skew", [0.0, 1.1])
def test_iot_records_are_the_jobs_replay_events(skew):
    ids = np.array([0, 1, 2, 3, 100000, 299998])
    keys, values, basis = formats.IotFormat(1000, skew).make(ids, np.full(6, 1796083838123))
    got = [tuple(int(x) for x in v.split(",")[1:4]) for v in values]
    assert got == JAVA[skew]
    assert [int(v.split(",")[0]) for v in values] == ids.tolist()
    assert keys == [str(g[0]) for g in got] and basis.tolist() == ids.tolist()
    assert all(v.endswith(",1796083838123") for v in values)


def test_iot_skew_matches_the_jobs_documented_shares():
    vid, *_ = formats.IotFormat(1000, 1.1).fields(np.arange(200_000))
    top10 = np.sort(np.bincount(vid, minlength=1000))[::-1][:10].sum() / 200_000
    assert 0.40 < top10 < 0.46  # jobs/iot-vehicles/README.md: 43 % at S = 1.1
    with pytest.raises(KhaosError, match="skew"):
        formats.IotFormat(10, 11)


def test_ysb_events_use_the_jobs_campaign_mapping():
    f = formats.YsbFormat()  # --campaigns 100 --ads-per-campaign 10 --seed 0, the job's defaults
    assert f.ads[0] == "c6a885f7-dd02-302d-a596-28e8bb91241b"  # pinned in jobs/ysb/README.md
    assert f.campaign_of[f.ads[0]] == "47069b5c-0672-36f4-9b4c-d30895310cf6"
    assert len(set(f.campaign_of.values())) == 100
    ids = np.arange(30_000)
    _keys, values, _ = f.make(ids, 1796084365000 + ids)
    events = [json.loads(v) for v in values]
    assert all(e["ad_id"] in f.campaign_of for e in events)
    assert [int(e["event_time"]) for e in events[:3]] == [1796084365000, 1796084365001, 1796084365002]
    views = sum(e["event_type"] == "view" for e in events) / len(events)
    assert 0.31 < views < 0.36
    assert f.make(ids[:5], ids[:5])[1] == formats.YsbFormat().make(ids[:5], ids[:5])[1]  # deterministic
    hot = formats.YsbFormat(skew=1.5).make(ids, ids)[1]
    top_ad = pd.Series([json.loads(v)["ad_id"] for v in hot]).value_counts().iloc[0] / len(hot)
    assert top_ad > 0.1


# ---- recorded records -------------------------------------------------------------------
def _table(values, ts=None, keys=None, parts=None):
    n = len(values)
    ts = ts if ts is not None else [1796083838000 + 10 * i for i in range(n)]
    return pa.table(
        {
            "timestamp_ms": pa.array(ts, pa.int64()),
            "partition": pa.array(parts or [i % 2 for i in range(n)], pa.int32()),
            "offset": pa.array(range(n), pa.int64()),
            "key": pa.array(keys or [b"k%d" % i for i in range(n)], pa.binary()),
            "value": pa.array(values, pa.binary()),
        },
        schema=recording.SCHEMA,
    )


def test_recorded_formats_round_trip():
    iot = [b"41,7,97,3,1796083838123", b"42,8,55,0,1796083838124"]
    f = formats.RecordedFormat(_table(iot), "iot", lambda ids: np.asarray(ids) % 2, "r")
    keys, values, basis = f.make(np.array([0, 1, 2]), np.array([5, 6, 7]))
    assert values == [b"0,7,97,3,5", b"1,8,55,0,6", b"2,7,97,3,7"]  # id = replay index, event time = due
    assert keys == [b"k0", b"k1", b"k0"] and basis.tolist() == [0, 1, 0]  # recorded key and partition
    event = {"user_id": "u", "page_id": "p", "ad_id": "a", "ad_type": "mail", "event_type": "view", "event_time": "1"}
    f = formats.RecordedFormat(_table([json.dumps(event).encode()]), "ysb", lambda ids: ids * 0, "r")
    out = json.loads(f.make(np.array([0]), np.array([1796084365350]))[1][0])
    assert out == {**event, "event_time": "1796084365350"}
    raw = [b"\x00\xffbinary", None]
    f = formats.RecordedFormat(_table(raw), "raw", lambda ids: np.asarray(ids), "r")
    assert f.make(np.array([0, 1]), np.array([1, 2]))[1] == raw


def test_a_recorded_value_of_another_format_is_one_line():
    with pytest.raises(KhaosError) as e:
        formats.RecordedFormat(_table([b"41,7,97,3,1", b"not,iot"]), "iot", None, "recording of topic t")
    assert "partition 1 offset 1 is not a iot record" in one_line(e) and "--format raw" in str(e.value)
    with pytest.raises(KhaosError, match="not a ysb record"):
        formats.RecordedFormat(_table([b"[1, 2]"]), "ysb", None, "r")


# ---- the recording: sample, file, checks ------------------------------------------------
def _reservoir(seconds=20, rate=lambda s: 100 + 50 * (s % 4), max_records=500, seed=1) -> recording.Reservoir:
    start_s = 1796083838
    res = recording.Reservoir(start_s, seconds, max_records, seed)
    res.add((start_s - 1) * 1000 + 999, 0, 0, None, b"before")
    off = 0
    for s in range(seconds):
        for j in range(rate(s)):
            res.add((start_s + s) * 1000 + j * 1000 // rate(s), j % 3, off, b"k", b"%d" % off)
            off += 1
    res.add((start_s + seconds) * 1000, 0, 0, None, b"after")
    return res


def test_sampling_keeps_the_rates_exact():
    res = _reservoir()
    rec = res.recording("t")
    expected = [100 + 50 * (s % 4) for s in range(20)]
    assert rec.rates.tolist() == expected and rec.records == sum(expected) == 3500
    assert rec.kept == 500 and rec.sampled and rec.outside_window == 2
    ts = rec.table.column("timestamp_ms").to_numpy()
    assert np.all(np.diff(ts) >= 0)
    first_half = np.sum(ts // 1000 - rec.start_s < 10) / rec.kept  # uniform: half of the records are there
    assert 0.42 < first_half < 0.58
    small = _reservoir(max_records=10_000).recording("t")
    assert not small.sampled and small.kept == small.records == 3500


def test_a_stopped_recording_keeps_its_whole_seconds():
    res = _reservoir()
    res.truncate(5)
    rec = res.recording("t")
    assert rec.rates.tolist() == [100 + 50 * (s % 4) for s in range(5)] and rec.records == 800
    assert (rec.table.column("timestamp_ms").to_numpy() < (rec.start_s + 5) * 1000).all()


def test_save_and_load_round_trip(tmp_path):
    rec = _reservoir().recording("topic-a", bootstrap="h:1", partitions=3, recorded_at="x")
    path = recording.save(rec, tmp_path / "r.parquet")
    back = recording.load(path)
    assert back.topic == "topic-a" and back.rates.tolist() == rec.rates.tolist() and back.kept == 500
    assert back.table.equals(rec.table) and back.partitions == 3 and back.records == 3500


def test_a_recording_replays_its_exact_rates(tmp_path):
    for max_records in (500, 10_000):  # a sample and a complete recording
        rec = _reservoir(max_records=max_records).recording("t")
        src = replay.recording_source(rec, "raw")
        off = src.schedule.offsets(0, src.schedule.total)
        assert np.array_equal(np.bincount(off // 1000, minlength=rec.seconds), rec.rates)
        _keys, values, _ = src.maker.make(np.arange(src.schedule.total), off)
        assert set(values) <= set(rec.table.column("value").to_pylist())
    # complete: the recorded timing itself
    assert np.array_equal(off, rec.table.column("timestamp_ms").to_numpy() - rec.start_s * 1000)
    assert values == rec.table.column("value").to_pylist()


def _meta_file(tmp_path, edit=None, table=None, name="bad.parquet"):
    rec = _reservoir(seconds=3, max_records=10_000).recording("t")
    meta = rec.meta()
    if edit:
        edit(meta)
    t = (table if table is not None else rec.table).replace_schema_metadata(
        {recording.META_KEY: json.dumps(meta).encode()}
    )
    pq.write_table(t, tmp_path / name)
    return tmp_path / name


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


BAD_RECORDINGS = {
    "garbage": ("not a readable Parquet file", lambda d: _write(d / "x", b"PAR1 not really")),
    "missing": ("does not exist", lambda d: d / "none.parquet"),
    "directory": ("is not a file", lambda d: d),
    "plain-parquet": (
        "not a Khaos recording",
        lambda d: pq.write_table(pa.table({"a": [1]}), d / "p.parquet") or d / "p.parquet",
    ),
    "rates-sum": ("add up to", lambda d: _meta_file(d, _set("records", 5))),
    "rates-length": ("rates must be a list of 3", lambda d: _meta_file(d, _set("rates", [1, 2]))),
    "rates-negative": ("whole numbers >= 0", lambda d: _meta_file(d, _set("rates", [-1, 2, 3]))),
    "version": ("version 9", lambda d: _meta_file(d, _set("version", 9))),
    "kept": ("holds 450 records", lambda d: _meta_file(d, _set("kept", 7))),
    "no-column": (
        "missing columns value",
        lambda d: _meta_file(d, table=_reservoir(seconds=3, max_records=10_000).recording("t").table.drop(["value"])),
    ),
    "unsorted": (
        "not sorted",
        lambda d: _meta_file(d, table=_reservoir(seconds=3, max_records=10_000).recording("t").table[::-1]),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDINGS))
def test_a_malformed_recording_is_one_line(tmp_path, case):
    expect, make = BAD_RECORDINGS[case]
    path = make(tmp_path)
    with pytest.raises(KhaosError) as e:
        recording.load(path)
    assert expect in one_line(e)


def test_bad_metadata_json_is_one_line(tmp_path):
    t = pa.table({"a": [1]}).replace_schema_metadata({recording.META_KEY: b"{nope"})
    pq.write_table(t, tmp_path / "j.parquet")
    with pytest.raises(KhaosError, match="not JSON"):
        recording.load(tmp_path / "j.parquet")


# ---- lag from standard metrics, output latency -------------------------------------------
def test_kafka_source_metrics_are_found_by_suffix():
    names = ["Source__Kafka_Source.numRecordsOut", "Source__Kafka_Source.pendingRecords", "x.records-lag-max"]
    assert metrics.source_metrics(names) == [("Source__Kafka_Source.pendingRecords", "backlog", "sum")]
    assert metrics.source_metrics(["a.KafkaConsumer.records-lag-max"]) == [
        ("a.KafkaConsumer.records-lag-max", "backlog", "sum")
    ]
    assert metrics.source_metrics(names, found=[("Source__Replay.backlog", "backlog", "sum")]) == []
    assert metrics.source_metrics(["Map.numRecordsIn"]) == []


def test_lag_ms_from_backlog_and_rate():
    assert metrics.lag_ms(5000, 1000) == 5000.0
    assert metrics.lag_ms(0, None) == 0.0 and metrics.lag_ms(None, 10) is None
    assert metrics.lag_ms(10, 0) is None and metrics.lag_ms(10, None) is None

    class S:
        backlog, rate_in, lag_ms = 2000.0, 4000.0, None

    s = S()
    metrics.fill_lag(s, has_lag_gauge=False)
    assert s.lag_ms == 500.0
    s.lag_ms = None
    metrics.fill_lag(s, has_lag_gauge=False, arrival_rate=1000)
    assert s.lag_ms == 2000.0
    s.lag_ms = None
    metrics.fill_lag(s, has_lag_gauge=True)
    assert s.lag_ms is None


def test_latency_seconds_publish_p99_and_max_once_over():
    rows = []
    b = latency.Seconds(on_second=rows.append)
    for k in range(200):
        b.add(100.5, float(k))  # second 100: latencies 0..199
    b.add(102.2, 7.0)
    b.close(102.9)
    assert [(r.second, r.count, r.p99_ms, r.max_ms) for r in rows] == [(100, 200, 197.0, 199.0), (101, 0, None, None)]
    b.close(103.0)
    assert rows[-1].second == 102 and rows[-1].p99_ms == 7.0
    assert latency.summarize(5, [3.0]).p99_ms == 3.0


# ---- the CLI: one line, exit 1, before anything reaches a broker ---------------------------
def khaos(*argv, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", *argv], capture_output=True, text=True, timeout=60, cwd=cwd
    )


OUT = ["--seconds", "5", "--out", "@D@/r.parquet"]
CLI_BAD = {
    "unreachable": (
        ["replay", "--rate", "10", "--seconds", "1", "--bootstrap", "127.0.0.1:1", "--topic", "t"],
        ["kafka at 127.0.0.1:1 is unreachable (connection refused"],
    ),
    "bad-bootstrap": (
        ["replay", "--rate", "10", "--seconds", "1", "--bootstrap", "nohost", "--topic", "t"],
        ["not host:port"],
    ),
    "unresolvable": (
        ["workload", "record", "--bootstrap", f"no-{uuid.uuid4().hex[:6]}.invalid:9092", "--topic", "t", *OUT],
        ["does not resolve"],
    ),
    "no-source": (["replay", "--bootstrap", "h:1", "--topic", "t"], ["exactly one of --recording"]),
    "rate-without-seconds": (["replay", "--rate", "5", "--bootstrap", "h:1", "--topic", "t"], ["--rate needs"]),
    "raw-generated": (
        ["replay", "--rate", "5", "--seconds", "2", "--format", "raw", "--bootstrap", "h:1", "--topic", "t"],
        ["raw needs --recording"],
    ),
    "recording-garbage": (
        ["replay", "--recording", "@D@/garbage.parquet", "--bootstrap", "h:1", "--topic", "t"],
        ["not a readable Parquet file"],
    ),
    "recording-skew": (
        ["replay", "--recording", "@D@/garbage.parquet", "--skew", "1", "--bootstrap", "h:1", "--topic", "t"],
        ["--skew: only for generated"],
    ),
    "record-without-topic": (
        ["workload", "record", "--bootstrap", "h:1", "--seconds", "5", "--out", "@D@/r.parquet"],
        ["--topic is required"],
    ),
    "record-topic-with-rest": (
        ["workload", "record", "--rest", "http://127.0.0.1:1", "--topic", "t", "--seconds", "5", "--out", "@D@/x"],
        ["give --bootstrap, not --rest"],
    ),
    "record-rest-and-bootstrap": (
        ["workload", "record", "--rest", "http://h:1", "--bootstrap", "h:1", "--seconds", "5", "--out", "@D@/x"],
        ["not allowed with argument"],
    ),
    "start-not-ms": (
        ["replay", "--rate", "5", "--seconds", "2", "--start", "1796083838", "--bootstrap", "h:1", "--topic", "t"],
        ["--start", "epoch milliseconds"],
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_BAD))
def test_cli_errors_are_one_line(tmp_path, case):
    argv, expect = CLI_BAD[case]
    (tmp_path / "garbage.parquet").write_text("garbage\n")
    t0 = time.monotonic()
    proc = khaos(*[a.replace("@D@", str(tmp_path)) for a in argv])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("khaos: error: "), proc.stderr
    assert all(x in lines[0] for x in expect), lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 30
