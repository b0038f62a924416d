"""Keyed state at once: a job that holds ``--keys N`` x ``--state-bytes B`` of state reaches it only after
it has seen every key (minutes of records at a costly regime's rates). With ``job.bootstrap_state`` the
profiler writes that state once per cluster into a savepoint (the job jar's ``io.khaos.jobs.BootstrapState``,
a batch job of Flink's State Processor API, run on the cluster so the savepoint lands in its own savepoint
storage: a shared directory or the checkpoint store) and starts the capacity probe and every unit from it.

The savepoint holds only the stateful operator's state (uid ``vehicle-state``): sources, windows and sinks
start empty, so the audit of a unit still begins at id 0. Restoring it is part of each deployment (from the
store, at the link's bandwidth), as it is for a production job after a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import KhaosError
from ..flink.client import FlinkClient, FlinkError

ENTRY_CLASS = "io.khaos.jobs.BootstrapState"
FINISHED = "FINISHED"
FAILED = ("FAILED", "CANCELED", "SUSPENDED")


@dataclass(frozen=True)
class StateSize:
    """The keyed state the job's arguments ask for."""

    keys: int
    state_bytes: int

    @property
    def total_bytes(self) -> int:
        """Payload bytes over every key (RocksDB adds keys and per-entry overhead)."""
        return self.keys * self.state_bytes

    @property
    def name(self) -> str:
        """bootstrap-<keys>x<bytes>: the savepoint's directory name."""
        return f"bootstrap-{self.keys}x{self.state_bytes}"


def state_size(args: list[str]) -> StateSize:
    """``--keys`` and ``--state-bytes`` from the job's arguments (literal integers > 0), else KhaosError."""
    found = {}
    for flag in ("--keys", "--state-bytes"):
        try:
            value = args[args.index(flag) + 1]
        except (ValueError, IndexError):
            raise KhaosError(f"job.bootstrap_state needs {flag} N in job.args") from None
        if not value.isdigit() or int(value) <= 0:
            raise KhaosError(f"job.bootstrap_state needs a literal {flag} > 0 in job.args, got {value!r}")
        found[flag] = int(value)
    return StateSize(found["--keys"], found["--state-bytes"])


def savepoint_dir(client: FlinkClient) -> str:
    """The cluster's execution.checkpointing.savepoint-dir (GET /jobmanager/config)."""
    for entry in client.get("/jobmanager/config"):
        if entry.get("key") == "execution.checkpointing.savepoint-dir" and entry.get("value"):
            return str(entry["value"]).rstrip("/")
    raise KhaosError(f"{client.url}: no execution.checkpointing.savepoint-dir: the bootstrap has nowhere to write")


def write(
    client: FlinkClient,
    jar: str,
    size: StateSize,
    own,
    tag: str,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float = 900.0,
) -> str:
    """Run the bootstrap on the cluster and wait until it has FINISHED; the savepoint's path. ``own`` records
    the job as this run's; ``tag`` keeps two runs' savepoints apart. KhaosError when it fails or times out."""
    target = f"{savepoint_dir(client)}/{size.name}-{tag}"
    args = ["--keys", str(size.keys), "--state-bytes", str(size.state_bytes), "--savepoint", target]
    job_id = client.run_jar(client.upload_jar(jar), args=args, entry_class=ENTRY_CLASS, parallelism=1)
    own.add(job_id)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = client.job(job_id)["state"]
        except FlinkError as e:
            raise KhaosError(f"state bootstrap {job_id}: {e}") from None
        if state == FINISHED:
            return target
        if state in FAILED:
            raise KhaosError(f"state bootstrap {job_id} is {state}: {client.root_exception(job_id)}")
        if time.monotonic() > deadline:
            client.cancel(job_id)  # ours (own), and no savepoint to lose: it writes one
            raise KhaosError(f"state bootstrap {job_id}: not finished after {timeout_s:g} s (cancelled)")
        sleep(1.0)
