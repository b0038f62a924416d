"""Every systemd unit the roles install, rendered with the roles' defaults by real Ansible, passes
``systemd-analyze verify`` and scores at most MAX_EXPOSURE in ``systemd-analyze security --offline``
(the shared sandbox lives in roles/khaos_defaults: khaos_systemd_sandbox). Touches no host."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from khaos_controller import REPO_ROOT as REPO

SUPPORT = REPO / "tests" / "support"
UNITS = [
    "flink-jobmanager.service",
    "flink-taskmanager.service",
    "kafka.service",
    "s3proxy.service",
    "khaos-iot-vehicles.service",
    "khaos-iot-vehicles-reprofile.service",
]
MAX_EXPOSURE = 2.0  # systemd's scale: 0 (locked down) .. 10 (unsandboxed); "OK" is below 5
SANDBOX = [
    "ProtectHome=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "CapabilityBoundingSet=",
    "SystemCallFilter=@system-service",
]


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> Path:
    """The rendered units, with every install dir below a temporary root whose ExecStart files exist."""
    root = tmp_path_factory.mktemp("units")
    extra = {
        "out_dir": root,
        "flink_install_dir": root / "opt/flink",
        "kafka_install_dir": root / "opt/kafka",
        "checkpoint_store_install_dir": root / "opt/s3proxy",
        "khaos_controller_home": root / "opt/khaos",
    }
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(SUPPORT / "render_units.inventory.yml")]
    for k, v in extra.items():
        cmd += ["-e", f"{k}={v}"]
    done = subprocess.run([*cmd, str(SUPPORT / "render_units.yml")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:]
    for unit in root.glob("*.service"):
        exe = Path(re.search(r"^ExecStart=(\S+)", unit.read_text(), re.M).group(1))
        assert exe.is_relative_to(root), f"{unit.name} starts {exe}, outside the install dirs"
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    return root


def test_every_role_unit_is_rendered_with_the_shared_sandbox_and_a_memory_bound(units):
    assert sorted(p.name for p in units.glob("*.service")) == sorted(UNITS)
    for name in UNITS:
        lines = (units / name).read_text().splitlines()
        assert [d for d in SANDBOX if d not in lines] == [], name
        assert any(re.fullmatch(r"MemoryMax=\d+[MG]", line) for line in lines), name
        assert not any(line.startswith("MemoryDenyWriteExecute") for line in lines), f"{name}: breaks the JVM's JIT"


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_finds_nothing(units, name):
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / name)], capture_output=True, text=True)
    assert (done.returncode, done.stderr.strip()) == (0, "")


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_security_scores_the_unit_low(units, name, capsys):
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(units / name)],
        capture_output=True,
        text=True,
    )
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout).group(1))
    with capsys.disabled():
        print(f"\n{name}: systemd-analyze security exposure {score}")
    assert score <= MAX_EXPOSURE, done.stdout
