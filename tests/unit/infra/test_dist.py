"""`khaos dist`: the official tarball layout, built offline from the PyPI wheels."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile

import pytest

from khaos_controller.errors import KhaosError
from khaos_controller.infra import dist


def test_cached_dist_has_the_official_layout():
    archive = dist.build()  # cached by `make dist`
    dist.verify(archive)
    assert archive.name == "flink-2.3.0-bin-scala_2.12.tgz"
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    top = {name.split("/")[1] for name in members if name.count("/") >= 1}
    assert {"bin", "conf", "lib", "opt", "plugins", "log"} <= top
    for script in ("bin/jobmanager.sh", "bin/taskmanager.sh", "bin/flink", "bin/config.sh"):
        m = members[f"flink-2.3.0/{script}"]
        assert m.isfile() and m.mode & 0o111, script  # real, executable files (not links)
    assert members["flink-2.3.0/lib/flink-dist-2.3.0.jar"].isfile()
    assert members["flink-2.3.0/lib"].isdir() and members["flink-2.3.0/bin/bash-java-utils.jar"].isfile()


def test_verify_detects_corruption(tmp_path):
    bad = tmp_path / "flink.tgz"
    bad.write_bytes(b"x")
    (tmp_path / "flink.tgz.sha512").write_text("0" * 128 + "  flink.tgz\n")
    with pytest.raises(KhaosError, match="sha512 mismatch"):
        dist.verify(bad)
    with pytest.raises(KhaosError, match="does not exist"):
        dist.verify(tmp_path / "missing.tgz")


# ---- the one tar writer, and `khaos dist kafka` ----------------------------------------------------------
FILES = {"bin/run": (b"#!/bin/sh\necho hi\n", 0o755), "libs/b.jar": (b"B" * 5000, 0o644), "libs/a.jar": (b"A", 0o644)}


def test_pack_is_byte_reproducible_sorted_and_timeless(tmp_path):
    one = dist._pack(tmp_path / "one" / "x-1.tgz", "x-1", FILES, "sha256", empty_dirs=("logs",))
    two = dist._pack(tmp_path / "two" / "x-1.tgz", "x-1", dict(reversed(list(FILES.items()))), "sha256")
    assert one.read_bytes() != two.read_bytes()  # the empty logs/ dir differs ...
    three = dist._pack(tmp_path / "three" / "x-1.tgz", "x-1", FILES, "sha256", empty_dirs=("logs",))
    assert one.read_bytes() == three.read_bytes()  # ... the same input is the same bytes, whatever the order
    assert two.read_bytes() == dist._pack(tmp_path / "four" / "x-1.tgz", "x-1", FILES, "sha256").read_bytes()
    sha = (tmp_path / "one" / "x-1.tgz.sha256").read_text()
    assert sha == f"{hashlib.sha256(one.read_bytes()).hexdigest()}  x-1.tgz\n"  # sha256sum -c reads it
    with tarfile.open(one) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["x-1", "x-1/bin", "x-1/libs", "x-1/logs", "x-1/bin/run", "x-1/libs/a.jar", "x-1/libs/b.jar"]
    assert {m.mtime for m in members} == {dist._MTIME} and {m.uid for m in members} == {0}
    assert members[4].mode == 0o755 and members[5].mode == 0o644 and members[3].isdir()
    assert not list((tmp_path / "one").glob("*.tmp"))


def _fake_jars(where, version="4.4.0"):
    where.mkdir(parents=True, exist_ok=True)
    names = [n.format(v=version) for n in dist._KAFKA_NEEDED] + ["slf4j-api-1.7.36.jar"]
    for i, name in enumerate(names):
        (where / name).write_bytes(f"jar {i}".encode() * 100)
    return sorted(where.glob("*.jar"))


def test_kafka_tarball_layout_and_recorded_sha256(tmp_path):
    jars = _fake_jars(tmp_path / "libs")
    out = dist.pack_kafka("4.4.0", jars, tmp_path / "dist" / "kafka-4.4.0.tgz")
    dist.verify(out)  # .sha256 beside it
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        sums = tar.extractfile("kafka-4.4.0/libs.sha256").read().decode().splitlines()
        run = tar.extractfile("kafka-4.4.0/bin/kafka-run").read()
    assert members["kafka-4.4.0/bin/kafka-run"].mode == 0o755 and run.startswith(b"#!/bin/bash")
    assert members["kafka-4.4.0/config/server.properties"].isfile()
    assert members["kafka-4.4.0/config/log4j2.properties"].isfile()
    assert {n for n in members if n.startswith("kafka-4.4.0/libs/")} == {f"kafka-4.4.0/libs/{j.name}" for j in jars}
    assert sums == [f"{hashlib.sha256(j.read_bytes()).hexdigest()}  libs/{j.name}" for j in jars]
    again = dist.pack_kafka("4.4.0", list(reversed(jars)), tmp_path / "again" / "kafka-4.4.0.tgz")
    assert again.read_bytes() == out.read_bytes()


def test_build_kafka_is_cached_and_force_rebuilds_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("KHAOS_CACHE", str(tmp_path))
    calls = []

    def resolve(version, dest):
        calls.append((version, dest))
        return _fake_jars(dest, version)

    monkeypatch.setattr(dist, "resolve_kafka_jars", resolve)
    out = dist.build_kafka()
    assert out == tmp_path / "dist" / "kafka-4.4.0.tgz" and calls == [("4.4.0", tmp_path / "kafka-libs" / "4.4.0")]
    first = out.read_bytes()
    assert dist.build_kafka() == out and len(calls) == 1  # cached
    assert dist.build_kafka(force=True).read_bytes() == first and len(calls) == 2


def test_kafka_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(KhaosError, match="Kafka version '4.x' is not a release number like 4.4.0"):
        dist.kafka_dist_path("4.x")
    monkeypatch.setattr(dist.shutil, "which", lambda _: None)
    with pytest.raises(KhaosError, match="needs Maven"):
        dist.resolve_kafka_jars("4.4.0", tmp_path / "libs")
    mvn = tmp_path / "mvn"
    mvn.write_text(
        "#!/bin/sh\necho '[INFO] x'\necho '[ERROR] Failed to execute goal: could not resolve kafka_2.13:9.9.9'\nexit 1\n"
    )
    mvn.chmod(0o755)
    monkeypatch.setattr(dist.shutil, "which", lambda _: str(mvn))
    with pytest.raises(KhaosError) as e:
        dist.resolve_kafka_jars("9.9.9", tmp_path / "libs")
    assert str(e.value) == (
        "mvn could not resolve Kafka 9.9.9 (is Maven Central reachable?): "
        "Failed to execute goal: could not resolve kafka_2.13:9.9.9"
    )
    bad = tmp_path / "kafka-1.0.0.tgz"
    bad.write_bytes(b"x")
    (tmp_path / "kafka-1.0.0.tgz.sha256").write_text("0" * 64 + "  kafka-1.0.0.tgz\n")
    with pytest.raises(KhaosError, match="sha256 mismatch"):
        dist.verify(bad)
    with pytest.raises(KhaosError, match=r"run `khaos dist kafka`"):
        dist.verify(tmp_path / "kafka-2.0.0.tgz")


def test_kafka_run_explains_itself():
    proc = subprocess.run([str(dist.KAFKA_DIST_DIR / "bin" / "kafka-run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "kafka-run start CONFIG" in proc.stderr


def test_cached_kafka_dist_runs_the_broker_class():
    archive = dist.build_kafka()  # cached by `make kafka-dist`
    dist.verify(archive)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for jar in ("kafka_2.13-4.4.0.jar", "kafka-server-4.4.0.jar", "log4j-slf4j-impl-2.25.5.jar"):
        assert f"kafka-4.4.0/libs/{jar}" in names, jar
