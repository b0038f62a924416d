"""The flink role's script supervisor (roles/flink/templates/flink-supervise.sh.j2), rendered and run
with a stand-in component script: it restarts a JVM that exits, and keeps its stdout file and its own log
bounded (moved to FILE.1 past the size when a JVM starts)."""

from __future__ import annotations

import subprocess

import jinja2

from khaos_controller import REPO_ROOT

TEMPLATE = REPO_ROOT / "roles" / "flink" / "templates" / "flink-supervise.sh.j2"
# the third start asks the supervisor to stop (SIGTERM to its parent), as flink-ctl stop would
COMPONENT = """#!/bin/bash
echo start >> "$(dirname "$0")/starts"
head -c 150 /dev/zero | tr '\\0' 'o'
if [ "$(wc -l < "$(dirname "$0")/starts")" -ge 3 ]; then kill -TERM $PPID; sleep 0.5; exit 0; fi
exit 1
"""


def test_a_jvm_that_exits_is_started_again_and_its_files_stay_bounded(tmp_path):
    home, run = tmp_path / "flink", tmp_path / "run"
    (home / "bin").mkdir(parents=True)
    run.mkdir()
    (home / "bin" / "taskmanager.sh").write_text(COMPONENT)
    (home / "bin" / "taskmanager.sh").chmod(0o755)
    (run / "taskmanager.out").write_text("old " * 100)  # 400 bytes: past the 200-byte limit
    script = tmp_path / "flink-supervise"
    script.write_text(
        jinja2.Template(TEMPLATE.read_text(), undefined=jinja2.StrictUndefined).render(
            ansible_managed="managed",
            flink_restart_delay=0,
            flink_user="flink",
            flink_run_dir=str(run),
            flink_home=str(home),
            flink_out_max_bytes=200,
            flink_jobmanager_cpus="",
            flink_taskmanager_cpus="",
        )
    )
    script.chmod(0o755)
    subprocess.run([str(script), "taskmanager"], check=True, timeout=30)
    assert (home / "bin" / "starts").read_text().count("start") == 3
    # moved at the first start (400 bytes of old output) and again at the third (two JVMs' 300 bytes):
    # one old file kept
    assert (run / "taskmanager.out.1").read_text() == "o" * 300
    assert (run / "taskmanager.out").stat().st_size == 150  # the last JVM's output only
    assert (run / "taskmanager.supervisor.log").read_text().count("exited rc=1; restarting in 0s") == 2
    assert not (run / "taskmanager.supervisor.pid").exists() and not (run / "taskmanager.pid").exists()
