"""The profiler and the capacity probe never touch a job they did not submit (profile/ownjobs.py), on a
test double of the REST client; the lab test is in tests/lab/test_hardening.py (P)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.flink.client import FlinkError
from khaos_controller.profile import capacity
from khaos_controller.profile.ownjobs import OwnJobs, check_clusters

PROD = "a" * 32


class FakeCluster:
    """/jobs/overview, cancel and the calls a probe makes first; records what was done."""

    url = "http://jm:8081"

    def __init__(self, jobs: dict[str, tuple[str, str]]):
        self.jobs = dict(jobs)  # id -> (name, state)
        self.done: list[str] = []

    def get(self, path):
        assert path == "/jobs/overview"
        return {"jobs": [{"jid": j, "name": n, "state": s} for j, (n, s) in self.jobs.items()]}

    def running_jobs(self):
        return [j for j, (_, s) in self.jobs.items() if s not in ("FINISHED", "CANCELED", "FAILED")]

    def cancel(self, jid):
        self.done.append(f"cancel {jid}")
        self.jobs[jid] = (self.jobs[jid][0], "CANCELED")

    def upload_jar(self, jar):
        self.done.append("upload")
        raise AssertionError("nothing may be submitted to a cluster running a foreign job")


def test_a_foreign_job_is_refused_in_one_line_and_left_alone():
    flink = FakeCluster({PROD: ("iot-vehicles", "RUNNING"), "b" * 32: ("old", "FINISHED")})
    with pytest.raises(KhaosError) as e:
        OwnJobs().clear(flink, "c1")
    assert str(e.value) == (
        f"cluster c1 (http://jm:8081) runs jobs the profiler did not submit: {PROD} (iot-vehicles); "
        "profile only clusters of its own (nothing was done to it)"
    )
    assert flink.done == [] and flink.jobs[PROD][1] == "RUNNING"


def test_only_the_runs_own_jobs_are_cancelled():
    own = OwnJobs()
    own.add("c" * 32)
    flink = FakeCluster({"c" * 32: ("iot-vehicles", "RUNNING"), "b" * 32: ("old", "FINISHED")})
    own.clear(flink, "c1")
    assert flink.done == [f"cancel {'c' * 32}"]
    flink.jobs[PROD] = ("prod", "RUNNING")  # a foreign job started meanwhile: refused, nothing cancelled
    flink.jobs["c" * 32] = ("iot-vehicles", "RUNNING")
    with pytest.raises(KhaosError, match=f"did not submit: {PROD} \\(prod\\)"):
        own.clear(flink, "c1")
    assert flink.done == [f"cancel {'c' * 32}"]


def test_the_capacity_probe_refuses_before_it_submits_anything():
    flink = FakeCluster({PROD: ("iot-vehicles", "RUNNING")})
    spec = capacity.CapacitySpec(probe=True, probe_rate=1000)
    with pytest.raises(KhaosError, match="runs jobs the profiler did not submit"):
        capacity.probe("c1", flink, OwnJobs(), "job.jar", [], spec, 4.0, 2)
    assert flink.done == []


def test_clusters_are_checked_before_and_after_deployment(monkeypatch):
    answers = {}

    class Client:
        def __init__(self, url):
            self.url = url

        def get(self, path):
            if isinstance(answers[self.url], Exception):
                raise answers[self.url]
            return {"jobs": answers[self.url]}

    monkeypatch.setattr("khaos_controller.profile.ownjobs.FlinkClient", Client)
    clusters = [SimpleNamespace(name="c1", rest_url="http://a"), SimpleNamespace(name="c2", rest_url="http://b")]
    answers["http://a"] = FlinkError("Flink REST at http://a is unreachable (connection refused)")
    answers["http://b"] = []
    check_clusters(OwnJobs(), clusters, deployed=False)  # no JobManager yet: nothing runs there
    with pytest.raises(KhaosError, match="cluster c1: cannot tell which jobs run on it .*: nothing was done to it"):
        check_clusters(OwnJobs(), clusters, deployed=True)
    answers["http://a"] = FlinkError("Flink REST GET /jobs/overview: HTTP 401: Unauthorized", status=401)
    with pytest.raises(KhaosError, match="cannot tell"):  # something answers: it must say which jobs run
        check_clusters(OwnJobs(), clusters, deployed=False)
    answers["http://a"] = [{"jid": PROD, "name": "prod", "state": "RUNNING"}]
    with pytest.raises(KhaosError, match=f"cluster c1 \\(http://a\\) runs jobs the profiler did not submit: {PROD}"):
        check_clusters(OwnJobs(), clusters, deployed=False)


def test_an_evaluation_refuses_a_named_cluster_that_runs_a_foreign_job(monkeypatch, tmp_path):
    """Before flink_cluster.yml restarts its TaskManagers, and in the evaluation's own words."""
    from khaos_controller.evaluate import runner
    from khaos_controller.profile import ownjobs

    flink = FakeCluster({PROD: ("prod", "RUNNING")})
    monkeypatch.setattr(ownjobs, "FlinkClient", lambda url: flink)
    facts = SimpleNamespace(addresses={}, shared_dir=None, rest_url=flink.url, hostvars={})
    monkeypatch.setattr(runner, "cluster_facts", lambda inventory: facts)
    monkeypatch.setattr(runner, "slots", lambda ev: 2)
    ev = SimpleNamespace(lab=None, inventory=tmp_path / "prod.yml", kafka=None, tm_memory="1g", output=tmp_path)
    r = runner.Runner(ev, progress=False)
    played = []
    monkeypatch.setattr(r, "playbook", lambda name, ident, extravars: played.append(name))
    with pytest.raises(KhaosError, match=r"runs jobs the evaluation did not submit: a+ \(prod\); evaluate only"):
        r._cluster()
    assert played == [] and flink.done == []
    flink.jobs[PROD] = ("prod", "FINISHED")
    r._cluster()
    assert played == ["flink_cluster"]
