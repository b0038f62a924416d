"""Failure injection plans: which process or host dies, and when.

A plan is made on the controller (playbooks/inject_failure.yml runs it through the chaos
role's `chaos_plan` module) and carried out by the role on the target hosts.

Components: a Flink `taskmanager` or `jobmanager` JVM, or the `kafka` broker JVM (roles/kafka). Each
runs on the hosts of its inventory group, named as roles/khaos_defaults names them (infra/inventory.py's
GroupNames: an inventory may rename them). Targets: a host name, `group:NAME` (every host of a group), `random` (a
seeded pick among the component's hosts) or `sink` (the host running the first subtask of the job's
sink, found over REST, as the original Khaos did; TaskManagers only).
Timing: `now`, or `before_checkpoint`: read the last completed checkpoint over REST and fire
`margin_s` before the next one is due, the worst case (almost a full interval to replay).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field

from ..errors import KhaosError
from ..flink.client import FlinkClient
from ..infra.inventory import GroupNames, Groups
from ..schema import FAILURE_MODES as MODES

COMPONENTS = ("taskmanager", "jobmanager", "kafka")  # GroupNames' fields: the group each runs on
TIMINGS = ("now", "before_checkpoint")


@dataclass
class Plan:
    """A failure to inject: what dies, on which hosts, at what time."""

    mode: str
    component: str
    targets: list[str]
    timing: str
    fire_at: float  # epoch seconds
    margin_s: float = 0.0
    checkpoint_interval_s: float | None = None
    last_checkpoint_at: float | None = None
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The plan as a plain dict (for set_stats and journals)."""
        return asdict(self)

    def describe(self) -> str:
        """The plan in plain words."""
        what = f"SIGKILL the {self.component} JVM on" if self.mode == "process" else "kill the whole host"
        when = (
            "now"
            if self.timing == "now"
            else (
                f"at {time.strftime('%H:%M:%S', time.localtime(self.fire_at))}"
                f".{int(self.fire_at * 1000) % 1000:03d}, {self.margin_s:g}s before the checkpoint due then "
                f"(interval {self.checkpoint_interval_s:g}s)"
            )
        )
        return f"{what} {', '.join(self.targets)} {when}"


def sink_host(client: FlinkClient, job_id: str, addresses: dict[str, str]) -> str:
    """Inventory host running subtask 0 of the job's sink (the last vertex of the job graph)."""
    job = client.job(job_id)
    sinks = [v for v in job["vertices"] if "sink" in v["name"].lower()] or job["vertices"][-1:]
    detail = client.get(f"/jobs/{job_id}/vertices/{sinks[-1]['id']}")
    sub0 = min(detail["subtasks"], key=lambda s: s.get("subtask", 0))
    endpoint = sub0.get("endpoint") or sub0.get("host") or ""
    host = inventory_host(endpoint, addresses)
    if host is None:
        raise KhaosError(f"the sink's first subtask runs on {endpoint!r}, which is no inventory host")
    return host


def inventory_host(endpoint: str, addresses: dict[str, str]) -> str | None:
    """The inventory host ({host: address}) behind a TaskManager endpoint ("address:port" or a name)."""
    address = endpoint.rsplit(":", 1)[0] if ":" in endpoint else endpoint
    by_address = {a: h for h, a in addresses.items()}
    if address in by_address:
        return by_address[address]
    return address if address in addresses else None  # Flink reported the host name itself


def _names(groups: dict) -> GroupNames:
    return groups.names if isinstance(groups, Groups) else GroupNames.of()


def resolve_targets(
    target: str,
    groups: dict[str, list[str]],
    addresses: dict[str, str],
    component: str,
    count: int = 1,
    seed: int | None = None,
    client: FlinkClient | None = None,
    job_id: str | None = None,
) -> list[str]:
    """Inventory hosts a target names: a host list, group:NAME, random (seeded) or sink. ``groups`` may
    carry the inventory's group names (``groups.names``, infra/inventory.GroupNames)."""
    names = _names(groups)
    pool = groups.get(getattr(names, component, ""), [])
    if target == "random":
        if len(pool) < count:
            raise KhaosError(f"cannot pick {count} of {len(pool)} {component} hosts")
        return sorted(random.Random(seed).sample(sorted(pool), count))
    if target == "sink":
        if component == "kafka":
            raise KhaosError(
                f"target 'sink' is a TaskManager host: for the kafka component name a host, group:{names.kafka} or random"
            )
        if client is None or job_id is None:
            raise KhaosError("target 'sink' needs a running job")
        return [sink_host(client, job_id, addresses)]
    if target.startswith("group:"):
        name = target.split(":", 1)[1]
        if name not in groups:
            raise KhaosError(f"unknown group {name!r} (groups: {', '.join(sorted(groups))})")
        return sorted(groups[name])
    hosts = [h.strip() for h in target.split(",") if h.strip()]
    unknown = [h for h in hosts if h not in addresses]
    if unknown or not hosts:
        raise KhaosError(f"unknown host {', '.join(unknown) or target!r} (hosts: {', '.join(sorted(addresses))})")
    return hosts


def next_fire_time(
    client: FlinkClient, job_id: str, margin_s: float, now: float | None = None, min_lead_s: float = 1.0
) -> tuple[float, float, float]:
    """(fire_at, interval_s, last_trigger_s): margin_s before the next checkpoint that is at least
    min_lead_s away, the next one being due at last trigger + k * interval."""
    now = time.time() if now is None else now
    interval_s = client.checkpoint_interval_ms(job_id) / 1000
    if margin_s >= interval_s:
        raise KhaosError(f"margin {margin_s:g}s must be shorter than the checkpoint interval {interval_s:g}s")
    latest = (client.checkpoints(job_id).get("latest") or {}).get("completed") or {}
    if "trigger_timestamp" in latest:
        base = latest["trigger_timestamp"] / 1000
    else:  # no checkpoint completed yet: count from the job's start
        base = client.job(job_id)["start-time"] / 1000
    due = base + interval_s
    while due - margin_s < now + min_lead_s:
        due += interval_s
    return due - margin_s, interval_s, base


def make_plan(
    mode: str,
    component: str,
    target: str,
    groups: dict[str, list[str]],
    addresses: dict[str, str],
    timing: str = "now",
    margin_s: float = 3.0,
    count: int = 1,
    seed: int | None = None,
    max_hosts: int = 1,
    allow_jobmanager: bool = False,
    client: FlinkClient | None = None,
    job: str | None = None,
    lead_s: float = 2.0,
) -> Plan:
    """Check the inputs and plan one failure (targets, fire time); refuses the JobManager and a blast radius over max_hosts."""
    if mode not in MODES:
        raise KhaosError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if component not in COMPONENTS:
        raise KhaosError(f"component {component!r} is not one of {', '.join(COMPONENTS)}")
    if timing not in TIMINGS:
        raise KhaosError(f"timing {timing!r} is not one of {', '.join(TIMINGS)}")
    if count < 1:
        raise KhaosError(f"count must be >= 1, got {count}")
    job_id = client.running_job(job) if client and (timing == "before_checkpoint" or target == "sink") else None
    targets = resolve_targets(target, groups, addresses, component, count, seed, client, job_id)
    names = _names(groups)
    jms = set(groups.get(names.jobmanager, []))
    if (component == "jobmanager" or (mode == "host" and jms & set(targets))) and not allow_jobmanager:
        raise KhaosError("refusing to kill the JobManager (the whole cluster): set allow_jobmanager to do it")
    if component == "taskmanager" and mode == "process":
        not_tm = [t for t in targets if t not in groups.get(names.taskmanager, [])]
        if not_tm:
            raise KhaosError(f"{', '.join(not_tm)} runs no TaskManager")
    if component == "kafka":
        not_broker = [t for t in targets if t not in groups.get(names.kafka, [])]
        if not_broker:
            raise KhaosError(f"{', '.join(not_broker)} runs no Kafka broker (group {names.kafka})")
    if len(targets) > max_hosts:
        raise KhaosError(f"blast radius: {len(targets)} hosts ({', '.join(targets)}) > max_hosts {max_hosts}")
    if mode == "host":
        lead_s = max(lead_s, 4.0)  # the kill runs through a playbook task on the controller: more lead time
    plan = Plan(
        mode=mode, component=component, targets=targets, timing=timing, fire_at=time.time() + lead_s, job_id=job_id
    )
    if timing == "before_checkpoint":
        plan.fire_at, plan.checkpoint_interval_s, plan.last_checkpoint_at = next_fire_time(
            client, job_id, margin_s, min_lead_s=lead_s
        )
        plan.margin_s = margin_s
        failures = client.failure_times(job_id)
        if failures and failures[0] > (plan.last_checkpoint_at or 0):
            # after a restart Flink starts its checkpoint timer anew with a random initial delay
            plan.notes.append("no checkpoint completed since the last restart: the fire time is approximate")
    return plan
