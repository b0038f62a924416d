"""`khaos run` (control/cli.py): its arguments, a bad config in one line, --check starts nothing."""

from __future__ import annotations

import subprocess
import sys

from support.daemon import write_config


def test_cli_registers_run():
    import argparse

    from khaos_controller.control import cli

    p = argparse.ArgumentParser(prog="khaos")
    sub = p.add_subparsers(dest="cmd", required=True)
    cli.add_cli(sub)
    a = p.parse_args(["run", "c.yml", "--advisor", "--once"])
    assert (a.config, a.advisor, a.once, a.func) == ("c.yml", True, True, cli._run)
    a = p.parse_args(["run", "c.yml"])
    assert (a.advisor, a.once) == (False, False)


def test_cli_error_is_one_line(tmp_path, model_file):
    path = write_config(tmp_path, model_file, limits=...)
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "run", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"khaos: error: {path}: limits: missing (both limits are required, "
        "e.g. limits: {latency_ms: 1000, recovery_s: 60})"
    ]


def test_check_prints_one_line_and_starts_nothing(tmp_path, model_file):
    path = write_config(tmp_path, model_file)
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "run", "--check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.strip().splitlines()
    assert line.startswith(f"{path}: ok: job 'tj' on http://127.0.0.1:1, limits 1000 ms / 25 s, CI 2-20 s"), line
    assert not (tmp_path / "journal.jsonl").exists()  # nothing started, nothing journaled


def test_a_second_job_on_the_same_metrics_port_is_one_line_naming_the_first(tmp_path, model_file):
    first = write_config(tmp_path, model_file, metrics={"port": 9790})
    first.rename(tmp_path / "tj.yml")
    second = write_config(tmp_path, model_file, job="other", metrics={"host": "0.0.0.0", "port": 9790})
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "run", "--check", str(second)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"khaos: error: {second}: metrics.port 9790 is also the port of the daemon of job 'tj' ({tmp_path / 'tj.yml'}): "
        "give each job on this host its own metrics.port"
    )
    # its own port: no clash; the same job's config under another name is not another daemon
    ok = write_config(tmp_path, model_file, job="other", metrics={"port": 9791})
    assert subprocess.run([sys.executable, "-m", "khaos_controller.cli", "run", "--check", str(ok)]).returncode == 0
