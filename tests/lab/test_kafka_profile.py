"""Kafka-fed jobs profiled end to end by `khaos profile` on real lab hosts.

1. A job the project did not write (tests/support/jobs/plain-kafka: KafkaSource -> keyBy -> window ->
   transactional KafkaSink; no Khaos metrics, no audit sink): 2 intervals x 1 rate x 1 TaskManager kill on
   2 lab clusters in parallel. The first lab also gets a Kafka host (playbooks/kafka.yml) that the second
   reaches; both units run at once, each on its own fresh topic and consumer group, fed by ONE replay.
   Recovery and lag come from standard metrics alone (the lag band); latency from the output topics;
   no file audit (said once); rows written; exit 0.
The sample job on Kafka with its file audit (0 lost / 0 duplicated through a kill) is
tests/lab/test_kafka_evaluate.py. Labs tkp1, tkp2, always taken down; run under
`flock /tmp/khaos-lab-tests.lock`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.infra import lab as labmod

pytestmark = pytest.mark.lab
KHAOS = [str(Path(sys.executable).parent / "khaos")]

PLAIN = """name: tkprof
job:
  jar: {jar}
  name: plain-kafka
  args: [--bootstrap, "{{bootstrap}}", --input-topic, "{{topic}}", --output-topic, "{{output_topic}}", --group, "{{group}}"]
  parallelism: 2
checkpoint_intervals: [3, 10]
workload: {{rates: [2000]}}
kafka: {{output_topic: true}}
failures: {{modes: [process], margin_s: 1}}
clusters: {{count: 2, hosts: 2, lab_prefix: tkp}}
measurement: {{warmup_s: 15, settle_s: 8, recovery_timeout_s: 120, consecutive_s: 6}}
output: {out}
"""


@pytest.fixture(scope="module", autouse=True)
def kafka_dist():
    proc = subprocess.run([*KHAOS, "dist", "kafka"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr


def profile(tmp_path, text: str, jar: str, prefix: str, labs: int) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    exp = tmp_path / "exp.yml"
    exp.write_text(text.format(jar=REPO_ROOT / "build/jobs" / jar, out=out))
    try:
        proc = subprocess.run([*KHAOS, "profile", str(exp)], capture_output=True, text=True, timeout=1800)
    finally:
        for i in range(1, labs + 1):
            labmod.Lab(f"{prefix}{i}").down(quiet=True)
    print(proc.stdout[-3000:])
    return proc, out


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def test_a_job_khaos_did_not_write_is_profiled_from_standard_metrics(tmp_path):
    proc, out = profile(tmp_path, PLAIN, "plain-kafka.jar", "tkp", 2)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 2 and set(df["ci_s"]) == {3.0, 10.0} and set(df["cluster"]) == {"tkp1", "tkp2"}
    assert df["recovered"].all() and (df["recovery_s"] > df["running_s"]).all()
    # recovery from the lag band of standard metrics: the KafkaSource's pendingRecords + records in
    assert set(df["recovery_rule"]) == {"lag"} and set(df["recovery_signals"]) == {"backlog,throughput"}
    # the band: at least one second of input (pendingRecords is 0 most of the steady state)
    assert (df["lag_band_hi"] >= 0.99 * df["pre_rate"]).all() and (df["peak_backlog"] >= 0).all()
    # the catch-up after the restart was seen (pendingRecords can miss it: the consumer prefetches what it
    # can at once; the records-in rate of the window operator then stays above the input rate)
    assert (df["catchup_s"] > 2).all()
    # end-to-end latency read from each copy's output topic (read_committed)
    assert (df["output_latency_p99_ms"] > 0).all() and (df["latency_p99_ms"] == df["output_latency_p99_ms"]).all()
    assert df[["audit_records", "audit_lost", "audit_duplicated"]].isna().all().all()
    events = journal(out)
    kinds = [e["event"] for e in events]
    assert kinds.count("audit_skipped") == 1 and "error" not in kinds
    (started,) = [e for e in events if e["event"] == "replay_start"]  # ONE replay for both copies
    assert len(started["topics"]) == 2 and len(set(started["topics"])) == 2
    (ended,) = [e for e in events if e["event"] == "replay_end"]
    assert len(set(ended["sent"].values())) == 1 and min(ended["sent"].values()) > 50_000  # same records each
    assert "kafka_cleanup" not in kinds  # topics and groups deleted
    deploys = {e["unit"]: e["args"] for e in events if e["event"] == "deploy"}
    topics = {a[a.index("--input-topic") + 1] for a in deploys.values()}
    assert topics == set(started["topics"])
    assert len({a[a.index("--group") + 1] for a in deploys.values()}) == 2
    assert "no file audit" in proc.stdout
    print(df[["cluster", "ci_s", "detect_s", "running_s", "recovery_s", "peak_backlog", "lag_band_hi"]].to_string())
