#!/usr/bin/env python3
"""Run the whole suite (`make test`) in two phases.

1. Two lanes at once (the lab tests mostly wait on Flink and Ansible):
   lane A: the lab modules on the shared Flink cluster (marker shared_cluster) and the other lab
           modules not named below;
   lane B: lab modules that bring up labs of their own (each its own lab names, LANE_B), then the unit
           tests.
2. The measuring modules, ALONE, one after the other with nothing else running: they judge recovery
   times and latencies, which a machine shared with another lane distorts (a recovery of 13 s alone was
   64 s beside the other lane; an evaluation's copies fell seconds behind their input).

docs/results/test-suite.md has the measured times. As root, the runner holds the machine's lab test lock
for every run (KHAOS_LAB_LOCK_HELD tells their pytest runs so), removes the test labs an interrupted
session left, and checks at the end that nothing is left behind. Each run's output goes to a log,
printed when it ends. Extra arguments go to every pytest run. Exit status: 0 only if every run passes and
nothing is left behind.

  .venv/bin/python tests/lanes.py [pytest args]
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import LOCK_HELD_ENV  # noqa: E402

LANE_B = [
    f"tests/lab/{m}.py"
    for m in (
        "test_symlink_attack",
        "test_kafka_lab",
        "test_checkpoint_store",
        "test_openstack",
        "test_openstack_e2e",
        "test_lab",
    )
]
ALONE = [f"tests/lab/{m}.py" for m in ("test_kafka_evaluate", "test_profile", "test_kafka_profile")]
LANES = {"A": ["tests/lab", *(f"--ignore={m}" for m in LANE_B + ALONE)], "B": [*LANE_B, "tests/unit"]}


def check_lanes() -> None:
    """Lane B and the measuring modules must not use the shared cluster: it lives in lane A's pytest process."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "shared_cluster", *LANE_B, *ALONE],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    wrong = sorted({line.split("::")[0] for line in out.splitlines() if "::" in line})
    if wrong:
        raise SystemExit(f"lanes.py: {', '.join(wrong)} use(s) the shared cluster: take them out of LANE_B/ALONE")


def main(extra: list[str]) -> int:
    check_lanes()
    session = contextlib.nullcontext(list)  # without root no lab test runs: nothing to lock or check
    if os.geteuid() == 0:
        from support.labs import lab_session

        session = lab_session()
    with session as left_behind:
        rcs = run_lanes(LANES, extra)
        rcs |= run_lanes({"alone": ALONE}, extra)
        left = left_behind()
    if left:
        print(f"FAILED: the lab tests left behind: {left}")
    return 0 if not left and all(rc == 0 for rc in rcs.values()) else 1


def run_lanes(lanes: dict[str, list[str]], extra: list[str]) -> dict[str, int]:
    """Start the lanes at once, print each one's output when it ends; their exit codes."""
    env = {**os.environ, LOCK_HELD_ENV: "1"}
    logs = Path(tempfile.mkdtemp(prefix="khaos-lanes-"))
    procs, t0 = {}, time.monotonic()
    for name, args in lanes.items():
        log = (logs / f"lane-{name}.log").open("w")
        cmd = [sys.executable, "-m", "pytest", *args, *extra]
        print(f"lane {name}: {' '.join(cmd[2:])} (log {log.name})", flush=True)
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    rcs: dict[str, int] = {}
    try:
        while len(rcs) < len(procs):
            for name, (proc, log) in procs.items():
                if name not in rcs and proc.poll() is not None:
                    rcs[name] = proc.returncode
                    log.close()
                    print(f"\n===== lane {name}: exit {proc.returncode} after {time.monotonic() - t0:.0f} s =====")
                    print(Path(log.name).read_text(), flush=True)
            time.sleep(1)
    finally:  # interrupted: each lane gets SIGINT, so that its fixtures take their labs down
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=300)
    return rcs


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped CI job: clean up as on Ctrl-C
    sys.exit(main(sys.argv[1:]))
