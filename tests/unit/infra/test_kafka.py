"""Kafka without a broker: bootstrap addresses and topic entries (khaos_controller.infra.kafka), the lab's
inventory with --kafka, the chaos plan's kafka component, and the kafka role's server.properties for 1 and
4 brokers (the KRaft quorum layout), rendered by Ansible on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from khaos_controller import REPO_ROOT as REPO
from khaos_controller.chaos import plan as chaos
from khaos_controller.errors import KhaosError
from khaos_controller.infra import lab as labmod
from khaos_controller.infra.kafka import inventory_bootstrap
from khaos_controller.kafka import admin as kafka


def test_bootstrap_addresses():
    assert kafka.check_bootstrap(" 10.0.0.5:9092, b-2.example.org:19092 ") == "10.0.0.5:9092,b-2.example.org:19092"
    assert kafka.check_bootstrap("[::1]:9092") == "[::1]:9092"
    for bad in ("", "nohost", "h:0", "h:70000", "h:9092,", "h/1:9092", "http://h:9092"):
        with pytest.raises(KhaosError) as e:
            kafka.check_bootstrap(bad)
        assert "\n" not in str(e.value) and ("bootstrap" in str(e.value)), bad


def test_nothing_answering_is_one_line():
    with pytest.raises(KhaosError) as e:
        kafka.admin("127.0.0.1:1", timeout=1)
    assert str(e.value).startswith("Kafka at 127.0.0.1:1 did not answer within 1 s (broker down or wrong bootstrap")
    assert "\n" not in str(e.value)


def test_topic_entries():
    spec = kafka.TopicSpec.of({"name": "ev", "partitions": "4", "retention_ms": 3600000, "config": {"x.y": True}})
    assert spec == kafka.TopicSpec("ev", 4, None, {"x.y": "true", "retention.ms": "3600000"})
    assert kafka.TopicSpec.of({"name": "a.b_c-1", "state": "absent"}).partitions is None
    for bad, why in (
        ({"name": "a b"}, "letters, digits"),
        ({"name": ""}, "letters, digits"),
        ({"name": "a", "partitions": 0}, "partitions must be >= 1"),
        ({"name": "a", "replication": "two"}, "replication 'two' is not a whole number"),
        ({"name": "a", "retention": 5}, r"unknown keys \['retention'\]"),
        ("a", "unknown keys"),
    ):
        with pytest.raises(KhaosError, match=why):
            kafka.TopicSpec.of(bad)


def _lab(tmp_path, monkeypatch, kafka_hosts: int) -> labmod.Lab:
    monkeypatch.setattr(labmod, "INVENTORY_DIR", tmp_path)
    lab = labmod.Lab("tunitk")
    lab.inventory, lab.octet = tmp_path / "tunitk.yml", 42
    for name in ("tunitk-1", "tunitk-2", "tunitk-3"):
        lab._plan_host(name)
    for i in range(1, kafka_hosts + 1):
        lab._plan_host(f"tunitk-kafka{i}").role = "kafka"
    return lab


def test_lab_inventory_with_a_kafka_host(tmp_path, monkeypatch):
    inv = yaml.safe_load(_lab(tmp_path, monkeypatch, 1).write_inventory().read_text())["all"]
    assert inv["children"]["kafka"] == {"hosts": {"tunitk-kafka1": {"ansible_host": "10.213.42.14"}}}
    flink = inv["children"]["flink"]["children"]
    assert list(flink["flink_jobmanager"]["hosts"]) == ["tunitk-1"]
    assert list(flink["flink_taskmanager"]["hosts"]) == ["tunitk-2", "tunitk-3"]
    assert inv["vars"]["kafka_bootstrap"] == "10.213.42.14:9092"
    assert inv["vars"]["kafka_dist_archive"].endswith("/dist/kafka-4.4.0.tgz")
    assert inventory_bootstrap(tmp_path / "tunitk.yml") == "10.213.42.14:9092"


def test_lab_inventory_without_kafka_is_as_before(tmp_path, monkeypatch):
    inv = yaml.safe_load(_lab(tmp_path, monkeypatch, 0).write_inventory().read_text())["all"]
    assert list(inv["children"]) == ["flink"] and not any(k.startswith("kafka") for k in inv["vars"])
    with pytest.raises(KhaosError, match="no kafka_bootstrap and no host in group kafka"):
        inventory_bootstrap(tmp_path / "tunitk.yml")


def test_bootstrap_derived_from_the_kafka_group(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  children:\n    kafka:\n      hosts:\n        b1: {ansible_host: 192.0.2.1}\n        b2: {}\n"
    )
    assert inventory_bootstrap(inv) == "192.0.2.1:9092,b2:9092"
    inv.write_text(  # a host's advertised address is where its broker listens: the bootstrap uses it
        "all:\n  children:\n    kafka:\n      hosts:\n"
        "        b1: {ansible_host: 192.0.2.1, kafka_advertised_address: 10.0.0.1}\n        b2: {ansible_host: 192.0.2.2}\n"
    )
    assert inventory_bootstrap(inv) == "10.0.0.1:9092,192.0.2.2:9092"


GROUPS = {
    "flink_jobmanager": ["a-1"],
    "flink_taskmanager": ["a-2", "a-3"],
    "kafka": ["a-kafka1", "a-kafka2"],
}
ADDR = {h: f"10.0.0.{i}" for i, h in enumerate([h for hosts in GROUPS.values() for h in hosts], 1)}


def test_chaos_kills_a_kafka_broker():
    picks = {tuple(chaos.resolve_targets("random", GROUPS, ADDR, "kafka", seed=s)) for s in range(20)}
    assert picks == {("a-kafka1",), ("a-kafka2",)}  # random picks among the brokers only
    plan = chaos.make_plan("process", "kafka", "a-kafka2", GROUPS, ADDR)
    assert plan.component == "kafka" and "SIGKILL the kafka JVM on a-kafka2" in plan.describe()
    assert chaos.make_plan("host", "kafka", "group:kafka", GROUPS, ADDR, max_hosts=2).targets == GROUPS["kafka"]
    with pytest.raises(KhaosError, match="a-2 runs no Kafka broker"):
        chaos.make_plan("process", "kafka", "a-2", GROUPS, ADDR)
    with pytest.raises(KhaosError, match="target 'sink' is a TaskManager host"):
        chaos.resolve_targets("sink", GROUPS, ADDR, "kafka")


# ---- the role's server.properties, rendered by Ansible from the role's own files (defaults, vars, template) --
RENDER = """\
- name: Render server.properties as the kafka role does
  hosts: kafka
  gather_facts: false
  vars_files:
    - {repo}/roles/kafka/vars/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {repo}/roles/kafka/templates/server.properties.j2
        dest: "{out}/{{{{ inventory_hostname }}}}.properties"
        mode: "0644"
    - name: Write the bootstrap address the health check and the topic module use
      ansible.builtin.copy:
        content: "{{{{ kafka_bootstrap }}}}"
        dest: "{out}/bootstrap"
        mode: "0644"
      run_once: true
"""


def _render(tmp_path, hosts: list[str], host_vars: dict[str, dict] | None = None) -> dict[str, dict[str, str]]:
    inv = tmp_path / "hosts.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    members = {
        h: {**local, "ansible_host": f"10.0.0.{i}", **(host_vars or {}).get(h, {})} for i, h in enumerate(hosts, 1)
    }
    # the role defaults as all's vars: below host vars, as role defaults are
    defaults = {}
    for role in ("khaos_defaults", "kafka"):
        defaults |= yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    inv.write_text(yaml.safe_dump({"all": {"vars": defaults, "children": {"kafka": {"hosts": members}}}}))
    pb = tmp_path / "render.yml"
    pb.write_text(RENDER.format(repo=REPO, out=tmp_path))
    env = os.environ | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(pb)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = {}
    for h in hosts:
        lines = (tmp_path / f"{h}.properties").read_text().splitlines()
        out[h] = dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))
    return out


def test_one_broker_is_a_combined_broker_and_controller(tmp_path):
    [cfg] = _render(tmp_path, ["b1"]).values()
    assert cfg["process.roles"] == "broker,controller" and cfg["node.id"] == "1"
    assert cfg["controller.quorum.voters"] == "1@10.0.0.1:9093"
    assert cfg["listeners"] == "PLAINTEXT://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093"  # the private address only
    assert cfg["advertised.listeners"] == "PLAINTEXT://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093"
    assert cfg["offsets.topic.replication.factor"] == "1" and cfg["min.insync.replicas"] == "1"
    assert cfg["auto.create.topics.enable"] == "false" and cfg["log.dirs"] == "/var/lib/kafka/data"
    assert list(cfg) == sorted(cfg)


def test_four_brokers_have_three_voters(tmp_path):
    cfgs = _render(tmp_path, ["b1", "b2", "b3", "b4"])
    voters = "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093"
    assert {c["controller.quorum.voters"] for c in cfgs.values()} == {voters}
    assert [cfgs[h]["process.roles"] for h in ("b1", "b2", "b3", "b4")] == ["broker,controller"] * 3 + ["broker"]
    assert [cfgs[h]["node.id"] for h in ("b1", "b2", "b3", "b4")] == ["1", "2", "3", "4"]
    assert cfgs["b4"]["listeners"] == "PLAINTEXT://10.0.0.4:9092"  # no controller listener on a broker only
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert cfgs["b2"][key] == "3", key
    assert cfgs["b2"]["min.insync.replicas"] == "2" and cfgs["b2"]["transaction.state.log.min.isr"] == "2"


def test_listeners_open_only_where_set(tmp_path):
    # b1 binds every address (set explicitly); b2 advertises another address of its own, and binds that one
    opened, other = {"kafka_listen_address": "0.0.0.0"}, {"kafka_advertised_address": "10.9.0.2"}
    cfgs = _render(tmp_path, ["b1", "b2"], {"b1": opened, "b2": other})
    assert cfgs["b1"]["listeners"] == "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093"
    assert cfgs["b1"]["advertised.listeners"] == "PLAINTEXT://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093"
    assert cfgs["b2"]["listeners"] == "PLAINTEXT://10.9.0.2:9092,CONTROLLER://10.9.0.2:9093"
    assert cfgs["b2"]["advertised.listeners"] == cfgs["b2"]["listeners"]
    assert cfgs["b1"]["controller.quorum.voters"] == "1@10.0.0.1:9093,2@10.9.0.2:9093"
    assert (tmp_path / "bootstrap").read_text() == "10.0.0.1:9092,10.9.0.2:9092"  # where the brokers listen


def test_pinned_node_ids_and_overrides(tmp_path):
    b1 = {"kafka_node_id": 7, "kafka_config": {"num.partitions": 8, "node.id": 99}}
    cfgs = _render(tmp_path, ["b1", "b2"], {"b1": b1})
    assert cfgs["b1"]["node.id"] == "7" and cfgs["b2"]["node.id"] == "2"  # the role owns node.id
    assert cfgs["b2"]["controller.quorum.voters"] == "7@10.0.0.1:9093,2@10.0.0.2:9093"
    assert cfgs["b1"]["num.partitions"] == "8" and cfgs["b2"]["num.partitions"] == "4"
    assert cfgs["b1"]["default.replication.factor"] == "2" and cfgs["b1"]["min.insync.replicas"] == "1"
