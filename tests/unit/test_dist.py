"""`khaos dist`: the official tarball layout, built offline from the PyPI wheels."""

from __future__ import annotations

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
