"""Run many `khaos` commands fast: one process imports the CLI and its heavy libraries once, then forks a
child per command. A child is a real process running ``khaos_controller.cli.main(argv)`` with its own
environment, working directory, stdout and stderr files and exit status, exactly as ``python -m
khaos_controller.cli ARGV`` would; only the imports are shared. Used by the bad-input battery (~1.5 s of
CPU per command as a fresh interpreter, a fraction of that forked).

    python tests/support/forkrun.py JOBS.json   # [{"argv": [...], "env": {...}, "cwd": "...", "out": "PREFIX"}]

Each job writes PREFIX.out, PREFIX.err and PREFIX.rc; at most ``--parallel`` (default 4) run at once, and a
child still running after ``--timeout`` s is killed (rc -9).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def _child(job: dict) -> None:
    """In the forked child: become the command, run it, exit with its status."""
    os.environ.clear()
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    for fd, suffix in ((1, "out"), (2, "err")):
        f = os.open(f"{job['out']}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.argv = ["khaos", *job["argv"]]
    code = 1
    try:
        from khaos_controller import cli

        code = cli.main(job["argv"])
    except SystemExit as e:  # argparse's usage errors exit 2
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - a traceback on stderr is what the battery looks for
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run(jobs: list[dict], parallel: int, timeout: float) -> None:
    """Fork a child per job, ``parallel`` at a time; each one's exit status goes to PREFIX.rc."""
    pending, running = list(jobs), {}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(job)
            running[pid] = (job, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            for p, (_job, t0) in list(running.items()):
                if time.monotonic() - t0 > timeout:
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.02)
            continue
        job, _ = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        with open(f"{job['out']}.rc", "w") as f:
            f.write(str(code))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    # what the commands import anyway, once
    import khaos_controller.cli
    import khaos_controller.control.config
    import khaos_controller.evaluate.runner
    import khaos_controller.model.cli
    import khaos_controller.profile.profiler  # noqa: F401

    with open(args.jobs) as f:
        run(json.load(f), args.parallel, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
