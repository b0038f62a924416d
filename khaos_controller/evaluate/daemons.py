"""The Khaos daemons of an evaluation: one `khaos run` per Khaos copy, its config, journal and log named after
the copy in the run's output dir. They start with the trace and stop (SIGTERM) before the jobs do."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import REPO_ROOT
from ..errors import KhaosError


@dataclass
class Setting:
    """What every daemon of a run is told: the cluster, the model and the failure rate to expect."""

    rest_url: str
    inventory: Path
    model: Path
    mtbf_h: float


class Daemons:
    """The run's daemons, by Khaos copy."""

    def __init__(self, ev, out: Path, say: Callable[[str], None]):
        self.ev, self.out, self.say = ev, out, say
        self.procs: dict[str, subprocess.Popen] = {}

    def journal(self, copy: str) -> Path:
        """A Khaos copy's daemon journal."""
        return self.out / f"{copy}-journal.jsonl"

    def log(self, copy: str) -> Path:
        """A Khaos copy's daemon log (its stdout and stderr)."""
        return self.out / f"{copy}-daemon.log"

    def config(self, copy: str, mode: str, setting: Setting) -> dict:
        """The daemon config of one Khaos copy (realize ``mode``)."""
        ev, kh = self.ev, self.ev.khaos
        return {
            "job": ev.job_name(copy),
            "flink": {"rest_url": setting.rest_url},
            "inventory": str(setting.inventory),
            "model": str(setting.model),
            "mode": kh["mode"],
            "mtbf_h": setting.mtbf_h,
            "limits": dict(ev.limits),
            "ci": kh["ci"],
            "loop": kh["loop"],
            "realize": {"mode": mode},
            "journal": str(self.journal(copy)),
            "metrics": None,
            "log": {"level": "info", "format": "kv"},
        }

    def start(self, copy: str, mode: str, setting: Setting) -> None:
        """A `khaos run` daemon managing one Khaos copy (config, journal and log named after it)."""
        self.journal(copy).unlink(missing_ok=True)
        cfg_path = self.out / f"{copy}.yml"
        cfg_path.write_text(yaml.safe_dump(self.config(copy, mode, setting), sort_keys=False))
        log = self.log(copy)
        with log.open("w") as f:  # the child keeps its own descriptor
            self.procs[copy] = subprocess.Popen(
                [sys.executable, "-m", "khaos_controller.cli", "run", str(cfg_path)],
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        self.say(f"t=0: {copy}: khaos daemon started, realize {mode} (pid {self.procs[copy].pid}, log {log})")

    def check(self) -> None:
        """KhaosError if a daemon has exited."""
        for copy, d in self.procs.items():
            if d.poll() is not None:
                raise KhaosError(f"the khaos daemon of {copy} exited with {d.returncode}: see {self.log(copy)}")

    def stop(self) -> None:
        """SIGTERM every running daemon (it finishes a running reconfiguration first) and wait for it."""
        running = {c: d for c, d in self.procs.items() if d.poll() is None}
        for d in running.values():
            d.send_signal(signal.SIGTERM)
        for copy, d in running.items():
            try:
                d.wait(timeout=400)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
            self.say(f"{copy}: khaos daemon stopped (exit {d.returncode})")
