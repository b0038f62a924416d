"""Experiment files and failure plans: bad input gets one clear line (no cluster needed)."""

from __future__ import annotations

import pytest
from support import SMALL_EXPERIMENT

from khaos_controller.chaos import plan as chaos
from khaos_controller.errors import KhaosError
from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.profile import experiment

GOOD = SMALL_EXPERIMENT
GROUPS = {
    "all": ["a-1", "a-2", "a-3"],
    "flink_jobmanager": ["a-1"],
    "flink_taskmanager": ["a-2", "a-3"],
    "flink": ["a-1", "a-2", "a-3"],
}
ADDR = {"a-1": "10.0.0.1", "a-2": "10.0.0.2", "a-3": "10.0.0.3"}


def load_text(tmp_path, text):
    p = tmp_path / "exp.yml"
    p.write_text(text)
    return experiment.load(p)


def error_of(tmp_path, text) -> str:
    with pytest.raises(KhaosError) as e:
        load_text(tmp_path, text)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_good_experiment_and_its_units(tmp_path, jar_built):
    exp = load_text(tmp_path, GOOD)
    assert exp.failures == 8 and exp.cluster_count == 2
    from khaos_controller.profile.profiler import Profiler

    units = Profiler(exp, out=tmp_path / "out", progress=False).units()
    assert len(units) == 4 and units[0].ci_s == 12  # longest intervals first
    assert all(u.failures == [("process", 0), ("host", 0)] for u in units)


def test_malformed_yaml(tmp_path):
    assert "malformed YAML" in error_of(tmp_path, "job: [unclosed\n")


def test_ci_out_of_range(tmp_path, jar_built):
    assert "checkpoint_intervals[1]: 0 must be >= 1" in error_of(tmp_path, GOOD.replace("[4, 12]", "[4, 0]"))
    assert "checkpoint_intervals[0]: 'x' is not a number" in error_of(tmp_path, GOOD.replace("[4, 12]", "[x, 4]"))


def test_missing_and_unknown_fields(tmp_path, jar_built):
    assert "workload: missing" in error_of(tmp_path, GOOD.replace("workload: {rates: [1000, 3000]}", ""))
    assert "workload: missing: a list of input rates" in error_of(tmp_path, GOOD.replace("{rates: [1000, 3000]}", "{}"))
    assert "colour: unknown field" in error_of(tmp_path, GOOD + "colour: red\n")
    assert "failures.modes" in error_of(tmp_path, GOOD.replace("[process, host]", "[meteor]"))
    assert "must be shorter than the smallest interval" in error_of(tmp_path, GOOD.replace("1.5", "4"))
    assert "job.jar" in error_of(tmp_path, GOOD.replace("build/jobs/iot-vehicles.jar", "nope.jar"))


def test_targets():
    assert chaos.resolve_targets("a-2", GROUPS, ADDR, "taskmanager") == ["a-2"]
    assert chaos.resolve_targets("group:flink_taskmanager", GROUPS, ADDR, "taskmanager") == ["a-2", "a-3"]
    picks = {tuple(chaos.resolve_targets("random", GROUPS, ADDR, "taskmanager", seed=s)) for s in range(20)}
    assert picks == {("a-2",), ("a-3",)}  # seeded picks only among TaskManagers
    assert chaos.resolve_targets("random", GROUPS, ADDR, "taskmanager", seed=7) == chaos.resolve_targets(
        "random", GROUPS, ADDR, "taskmanager", seed=7
    )


def test_bad_plans():
    with pytest.raises(KhaosError, match="unknown host 'nohost'"):
        chaos.make_plan("process", "taskmanager", "nohost", GROUPS, ADDR)
    with pytest.raises(KhaosError, match="blast radius: 2 hosts"):
        chaos.make_plan("host", "taskmanager", "group:flink_taskmanager", GROUPS, ADDR, max_hosts=1)
    with pytest.raises(KhaosError, match="refusing to kill the JobManager"):
        chaos.make_plan("host", "taskmanager", "a-1", GROUPS, ADDR)
    with pytest.raises(KhaosError, match="runs no TaskManager"):
        chaos.make_plan("process", "taskmanager", "a-1", GROUPS, ADDR)
    with pytest.raises(KhaosError, match="mode 'meteor'"):
        chaos.make_plan("meteor", "taskmanager", "a-2", GROUPS, ADDR)
    plan = chaos.make_plan("process", "taskmanager", "a-3", GROUPS, ADDR, timing="now")
    assert plan.targets == ["a-3"] and "SIGKILL the taskmanager JVM on a-3" in plan.describe()


def test_unreachable_cluster():
    with pytest.raises(FlinkError, match="unreachable"):
        chaos.make_plan("process", "taskmanager", "sink", GROUPS, ADDR, client=FlinkClient("127.0.0.1:9", timeout=2))


def test_trace_experiment_picks_failure_points_across_the_range(jar_built):
    from khaos_controller import REPO_ROOT
    from khaos_controller.profile import workload
    from khaos_controller.profile.profiler import Profiler

    exp = experiment.load(REPO_ROOT / "examples" / "experiment-trace.yml")
    rates = workload.load_trace(exp.trace)
    assert len(exp.points) == 3 and exp.failures == 6
    avg = rates.rolling(300).mean()
    assert min(exp.rates) < avg.quantile(0.2) and max(exp.rates) > avg.quantile(0.8)  # low and high load covered
    units = Profiler(exp, progress=False).units()
    assert all(u.point is not None for u in units) and "{trace}" in exp.job.args


def test_pinned_clusters_pass_cpu_lists_to_the_flink_role(tmp_path, jar_built):
    from khaos_controller.profile.profiler import Profiler

    exp = load_text(tmp_path, GOOD + "clusters: {count: 1, jobmanager_cpus: '0', taskmanager_cpus: '1'}\n")
    assert exp.pinning == {"flink_jobmanager_cpus": "0", "flink_taskmanager_cpus": "1"}
    assert "pinned: jobmanagers on CPUs 0, taskmanagers on CPUs 1" in Profiler(exp, out=tmp_path / "o").describe()
    assert load_text(tmp_path, GOOD).pinning == {}  # an inventory's own settings are not overridden
    assert "clusters.taskmanager_cpus" in error_of(tmp_path, GOOD + "clusters: {taskmanager_cpus: 'one'}\n")


def test_a_store_section_gives_each_lab_a_checkpoint_store_behind_a_shaped_link(tmp_path, jar_built):
    from khaos_controller.profile.profiler import Profiler

    exp = load_text(tmp_path, GOOD + "clusters: {count: 1, store: {upload_mbit: 40, download_mbit: 100}}\n")
    assert exp.store == {"checkpoint_store_link_upload_mbit": 40, "checkpoint_store_link_download_mbit": 100}
    assert (
        "store: a checkpoint store host per lab (link 40 Mbit/s up, 100 down)"
        in Profiler(exp, out=tmp_path / "o").describe()
    )
    assert load_text(tmp_path, GOOD).store is None
    assert "clusters.store.upload_mbit: -1 must be >= 0" in error_of(
        tmp_path, GOOD + "clusters: {store: {upload_mbit: -1}}\n"
    )


def test_a_store_section_with_inventories_is_refused(tmp_path, jar_built):
    inv = tmp_path / "inv.yml"
    inv.write_text("all: {}\n")
    text = GOOD + f"clusters: {{inventories: [{inv}], store: {{upload_mbit: 40}}}}\n"
    assert "clusters.store: is for labs: an inventory names its own store" in error_of(tmp_path, text)
