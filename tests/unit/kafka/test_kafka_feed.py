"""The kafka section of experiment and evaluation files (kafka/feed.py), its sources and the profiler's waves;
no broker (the feed against a real one: tests/lab/test_kafka_profile.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.kafka import feed, recording
from khaos_controller.kafka.feed import KafkaSection, KafkaSpec, check_args, resolve
from khaos_controller.profile import experiment
from khaos_controller.profile.profiler import Profiler


def _recording(tmp_path: Path, complete: bool = True) -> Path:
    start_s = 1796083838
    res = recording.Reservoir(start_s, 4, 10_000 if complete else 5, 1)
    off = 0
    for s, rate in enumerate([3, 0, 2, 5]):
        for j in range(rate):
            res.add((start_s + s) * 1000 + j * 100, j % 2, off, b"%d" % (off % 3), b"%d,%d,90,1,0" % (off, off % 3))
            off += 1
    return recording.save(res.recording("live"), tmp_path / "rec.parquet")


def one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_a_recording_is_looped_with_ids_counting_on(tmp_path):
    src = feed.source(KafkaSpec(recording=_recording(tmp_path), format="iot"), seconds=10)
    assert src.schedule.counts.tolist() == [3, 0, 2, 5, 3, 0, 2, 5, 3, 0]
    n = src.schedule.total
    _keys, values, _ = src.maker.make(np.arange(n), src.schedule.offsets(0, n))
    ids = [int(v.split(b",")[0]) for v in values]
    vehicles = [int(v.split(b",")[1]) for v in values]
    assert ids == list(range(n))  # the audit ids count on across loops
    assert vehicles[:10] == vehicles[10:20]  # the recorded records, again
    sampled = feed.source(KafkaSpec(recording=_recording(tmp_path, complete=False), format="raw"), seconds=9)
    assert sampled.schedule.counts.tolist() == [3, 0, 2, 5, 3, 0, 2, 5, 3]
    sampled.maker.make(np.arange(sampled.schedule.total), sampled.schedule.offsets(0, sampled.schedule.total))


def test_sources_follow_the_spec():
    spec = KafkaSpec()
    assert feed.source(spec, 5, rate=1000.4).schedule.counts.tolist() == [1000] * 5
    import pandas as pd

    trace = feed.source(spec, 5, trace=pd.Series([10.0, 20.0]))
    assert trace.schedule.counts.tolist() == [10, 20, 10, 20, 10]
    # kafka.vehicles: the keys the generated records draw from (the job's keyed state follows)
    assert trace.maker.vehicles == 10_000
    wide = feed.source(KafkaSpec(vehicles=25_000), 5, trace=pd.Series([10.0]))
    vid, _, _ = wide.maker.fields(np.arange(30_000))
    assert wide.maker.vehicles == 25_000 and len(set(vid.tolist())) == 25_000


def test_job_args_and_kafka_section_must_agree():
    spec = KafkaSpec(output_topic=True)
    check_args(Path("e.yml"), ["--topic", "{topic}", "--out", "{output_topic}"], spec)
    cases = [
        (["--rate", "{rate}"], KafkaSpec(), "needs {topic}"),
        (["--topic", "{topic}"], spec, "pass {output_topic}"),
        (["--topic", "{topic}", "{output_topic}"], KafkaSpec(), "needs kafka.output_topic"),
        (["--bootstrap", "{bootstrap}"], None, "need a kafka section"),
    ]
    for args, s, expect in cases:
        with pytest.raises(KhaosError) as e:
            check_args(Path("e.yml"), args, s)
        assert expect in one_line(e) and one_line(e).startswith("e.yml: job.args: ")


@pytest.mark.parametrize(
    "section, where, expect",
    [
        ({"bootstrap": "kafka1"}, "kafka.bootstrap", "not host:port"),
        ({"format": "raw"}, "kafka.format", "raw replays a recording"),
        ({"recording": "nope.parquet"}, "kafka.recording", "does not exist"),
        ({"topic_config": {"retention.ms": "x y"}}, None, None),  # values are the broker's business
        ({"producer": {"linger.ms": "soon"}}, "kafka.producer", "Invalid value"),
        ({"producer": {"no.such.setting": 1}}, "kafka.producer", "no.such.setting"),
        ({"format": "ysb", "vehicles": 5}, "kafka.vehicles", "only the iot format has vehicles"),
    ],
)
def test_a_bad_kafka_section_is_one_line(tmp_path, section, where, expect):
    sec = KafkaSection(**section)
    if where is None:
        resolve(sec, Path("e.yml"), tmp_path)
        return
    with pytest.raises(KhaosError) as e:
        resolve(sec, Path("e.yml"), tmp_path)
    assert one_line(e).startswith(f"e.yml: {where}: ") and expect in one_line(e)


def test_a_malformed_recording_is_named(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(KhaosError) as e:
        resolve(KafkaSection(recording=str(bad)), Path("e.yml"), tmp_path)
    assert one_line(e).startswith("e.yml: kafka.recording: recording ") and "Parquet" in one_line(e)


def test_names_are_fresh_topic_names():
    prefix = feed.run_prefix("my exp/1")
    assert prefix.startswith("khaos-my-exp-1-") and len(prefix) < 60
    f = feed.Feed(KafkaSpec(output_topic=True), "h:1", prefix, ["u01-ci4-r1000", "u02-ci2.5-r10"], partitions=2)
    assert f.topics() == [f"{prefix}-u01-ci4-r1000", f"{prefix}-u02-ci2.5-r10"]
    fill = f.fill("u01-ci4-r1000")
    assert fill == {
        "bootstrap": "h:1",
        "topic": f"{prefix}-u01-ci4-r1000",
        "group": f"{prefix}-u01-ci4-r1000",
        "output_topic": f"{prefix}-u01-ci4-r1000-out",
    }


def _experiment(tmp_path, text: str):
    (tmp_path / "job.jar").write_bytes(b"jar")
    path = tmp_path / "exp.yml"
    path.write_text(text.format(out=tmp_path / "out"))
    return experiment.load(path)


KAFKA_EXP = """name: k
job: {{jar: job.jar}}
checkpoint_intervals: [3, 4, 8]
workload: {{rates: [1000, 3000]}}
kafka: {{}}
clusters: {{count: 2}}
output: {out}
"""


def test_kafka_experiment_defaults_and_waves(tmp_path):
    exp = _experiment(tmp_path, KAFKA_EXP)
    assert exp.job.args == feed.SAMPLE_ARGS and exp.recovery == "lag" and exp.kafka.format == "iot"
    waves = Profiler(exp, out=tmp_path / "out").waves()
    # one workload per wave, at most one unit per cluster, longest intervals first
    assert [[(u.ci_s, u.rate) for u in w] for w in waves] == [
        [(8.0, 1000.0), (4.0, 1000.0)],
        [(3.0, 1000.0)],
        [(8.0, 3000.0), (4.0, 3000.0)],
        [(3.0, 3000.0)],
    ]
    plain = _experiment(tmp_path, KAFKA_EXP.replace("kafka: {{}}\n", ""))
    assert plain.recovery == "bands" and plain.kafka is None


def test_a_recording_is_the_workload(tmp_path):
    _recording(tmp_path)
    text = KAFKA_EXP.replace("workload: {{rates: [1000, 3000]}}\n", "").replace(
        "kafka: {{}}", "kafka: {{recording: rec.parquet}}"
    )
    exp = _experiment(tmp_path, text)
    assert exp.rates == [2.5] and exp.kafka.recording == (tmp_path / "rec.parquet").resolve()
    with pytest.raises(KhaosError, match="workload: kafka.recording replays the recorded rates"):
        _experiment(tmp_path, KAFKA_EXP.replace("kafka: {{}}", "kafka: {{recording: rec.parquet}}"))
    with pytest.raises(KhaosError, match="workload: missing"):
        _experiment(tmp_path, KAFKA_EXP.replace("workload: {{rates: [1000, 3000]}}\n", ""))


def test_a_new_job_has_caught_up_with_the_replay_when_lag_and_sink_are_normal():
    from khaos_controller.profile.waves import caught_up

    normal = {"all_running": True, "lag_ms": 40.0, "throughput": 2100.0}
    assert caught_up([normal] * 6, 2000)
    assert not caught_up([normal] * 5, 2000)  # not long enough yet
    assert not caught_up([normal] * 5 + [{**normal, "lag_ms": 4000.0}], 2000)  # still behind
    assert not caught_up([{**normal, "throughput": 9000.0}] + [normal] * 5, 2000)  # working off records in flight
    assert not caught_up([normal] * 5 + [{**normal, "lag_ms": None}], 2000)  # no lag seen
    assert caught_up([{**normal, "throughput": None}] * 6, 2000)  # a job without a sink count


def test_a_job_without_a_lag_gauge_is_not_waited_for():
    from khaos_controller.profile.waves import NO_LAG_SAMPLES, no_lag_gauge

    quiet = {"all_running": True, "lag_ms": None, "throughput": 2100.0}
    assert no_lag_gauge([quiet] * NO_LAG_SAMPLES)
    assert not no_lag_gauge([quiet] * (NO_LAG_SAMPLES - 1))  # its source may not have registered it yet
    assert not no_lag_gauge([quiet] * NO_LAG_SAMPLES + [{**quiet, "lag_ms": 900.0}])  # a lag: wait for it
    assert not no_lag_gauge([{**quiet, "all_running": False}] * 20)  # not running yet


def test_a_recording_is_readable_by_its_owner_only(tmp_path):
    import stat

    path = _recording(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a production topic's records
    assert recording.load(path).meta()["format"] == recording.FORMAT
    assert not path.with_name(path.name + ".tmp").exists()
