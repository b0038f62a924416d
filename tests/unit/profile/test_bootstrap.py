"""The state bootstrap: its size from the job's arguments, its savepoint target from the cluster, its wait
for the batch job (a scripted REST answer; the lab test writes a real one)."""

from __future__ import annotations

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.profile import bootstrap, experiment
from khaos_controller.profile.ownjobs import OwnJobs

ARGS = ["--rate", "{rate}", "--output", "{output}", "--keys", "750000", "--state-bytes", "200"]


def test_the_state_size_comes_from_the_literal_arguments():
    size = bootstrap.state_size(ARGS)
    assert (size.keys, size.state_bytes, size.total_bytes) == (750_000, 200, 150_000_000)
    assert size.name == "bootstrap-750000x200"
    with pytest.raises(KhaosError, match="needs --state-bytes N in job.args"):
        bootstrap.state_size(ARGS[:-2])
    with pytest.raises(KhaosError, match="literal --keys > 0 in job.args, got '{keys}'"):
        bootstrap.state_size(["--keys", "{keys}", "--state-bytes", "200"])


def test_an_experiment_asks_for_it_in_its_job_section(tmp_path, jar_built):
    text = """
name: t
job: {jar: build/jobs/iot-vehicles.jar, bootstrap_state: true, args: [--rate, "{rate}", --keys, "1000"%s]}
checkpoint_intervals: [4]
workload: {rates: [1000]}
"""
    p = tmp_path / "exp.yml"
    p.write_text(text % ', --state-bytes, "500"')
    assert experiment.load(p).job.bootstrap == bootstrap.StateSize(1000, 500)
    p.write_text(text % "")
    with pytest.raises(KhaosError, match=r"job.bootstrap_state: needs --state-bytes N in job.args") as e:
        experiment.load(p)
    assert "\n" not in str(e.value)


class Cluster:
    """GET /jobmanager/config, jar upload and run, then the job's states in turn."""

    def __init__(self, states, savepoint_dir="s3://khaos/savepoints/"):
        self.url, self.states, self.dir = "http://jm:8081", list(states), savepoint_dir
        self.ran, self.cancelled = None, []

    def get(self, path):
        assert path == "/jobmanager/config"
        return [{"key": "rest.port", "value": "8081"}] + (
            [{"key": "execution.checkpointing.savepoint-dir", "value": self.dir}] if self.dir else []
        )

    def upload_jar(self, jar):
        return "jar-1"

    def run_jar(self, jar_id, args, entry_class, parallelism):
        self.ran = (jar_id, args, entry_class, parallelism)
        return "job-1"

    def job(self, job_id):
        return {"state": self.states.pop(0) if len(self.states) > 1 else self.states[0]}

    def root_exception(self, job_id):
        return "java.io.IOException: no space left"

    def cancel(self, job_id):
        self.cancelled.append(job_id)


def test_it_waits_for_the_batch_job_and_returns_the_savepoint():
    c, own = Cluster(["INITIALIZING", "RUNNING", "FINISHED"]), OwnJobs()
    path = bootstrap.write(c, "job.jar", bootstrap.StateSize(10, 8), own, "run1", sleep=lambda s: None)
    assert path == "s3://khaos/savepoints/bootstrap-10x8-run1"
    assert c.ran == ("jar-1", ["--keys", "10", "--state-bytes", "8", "--savepoint", path], bootstrap.ENTRY_CLASS, 1)
    assert "job-1" in own  # the profiler may clean up after it: it is this run's


def test_a_failed_or_endless_bootstrap_is_one_line_and_a_cluster_without_savepoint_storage_is_refused():
    with pytest.raises(KhaosError, match="state bootstrap job-1 is FAILED: java.io.IOException: no space left"):
        bootstrap.write(
            Cluster(["RUNNING", "FAILED"]), "j", bootstrap.StateSize(1, 1), OwnJobs(), "t", sleep=lambda s: None
        )
    slow = Cluster(["RUNNING"])
    with pytest.raises(KhaosError, match="not finished after 0 s"):
        bootstrap.write(slow, "j", bootstrap.StateSize(1, 1), OwnJobs(), "t", sleep=lambda s: None, timeout_s=0)
    assert slow.cancelled == ["job-1"]
    with pytest.raises(KhaosError, match="no execution.checkpointing.savepoint-dir"):
        bootstrap.write(Cluster(["FINISHED"], None), "j", bootstrap.StateSize(1, 1), OwnJobs(), "t")
