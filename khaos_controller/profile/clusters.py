"""The profiling clusters brought up and down: a lab of its own per cluster or the experiment's inventories,
Flink deployed on all of them in parallel (with the checkpoint store and the Kafka host where the experiment
asks), the state bootstrap written on each, and every lab removed at the end. A cluster that runs jobs this
run did not submit is refused before anything is done to it (ownjobs.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import KhaosError
from ..flink.client import FlinkClient
from ..infra import ansible
from ..infra import kafka as infra_kafka
from ..infra.inventory import cluster_facts, group_hosts
from ..infra.lab import Lab
from . import bootstrap
from .ownjobs import check_clusters


@dataclass
class Cluster:
    """One profiling cluster: a lab of its own or a given inventory."""

    name: str
    inventory: Path
    rest_url: str
    lab: Lab | None = None
    shared_dir: Path | None = None
    capacity: float | None = None  # events/s, from the saturation probe (profile/capacity.py)
    savepoint: str | None = None  # the state bootstrap every deployment starts from (profile/bootstrap.py)


def bring_up(prof) -> None:
    """The profiler's clusters, each with Flink running (and Kafka reachable where the experiment has a
    kafka section); KhaosError if one runs a job this run did not submit."""
    exp = prof.exp
    kafka_inventory = _from_inventories(prof) if exp.inventories else _from_labs(prof)
    if exp.kafka is not None:
        prof.bootstrap = exp.kafka.bootstrap or prof.bootstrap
    prof._say(
        f"deploying Flink on {len(prof.clusters)} clusters in parallel"
        + (f" and Kafka ({prof.bootstrap})" if kafka_inventory else "")
        + " ..."
    )
    _deploy(prof, kafka_inventory)
    if exp.kafka is not None:
        from ..kafka import admin

        admin.connect(prof.bootstrap, timeout=10)  # one line now if the broker cannot be reached
    check_clusters(prof.own, prof.clusters, deployed=True)
    prof._say(
        f"clusters ready after {time.monotonic() - prof._started:.0f}s: " + ", ".join(c.name for c in prof.clusters)
    )


def _from_inventories(prof) -> Path | None:
    """The clusters of the experiment's inventories (static files or inventory plugins such as OpenStack:
    read as Ansible sees them); the inventory whose Kafka hosts Khaos deploys, or None."""
    exp = prof.exp
    for i, inv in enumerate(exp.inventories, 1):
        facts = cluster_facts(inv)
        prof.clusters.append(Cluster(f"c{i}", inv, facts.rest_url, shared_dir=facts.shared_dir))
    check_clusters(prof.own, prof.clusters, deployed=False)  # before flink_cluster.yml touches them
    if exp.kafka is None or exp.kafka.bootstrap is not None:
        return None
    inv = kafka_inventory(exp.inventories)
    prof.bootstrap = infra_kafka.inventory_bootstrap(inv)
    if group_hosts(ansible.inventory_list(inv), "kafka"):
        return inv  # brokers Khaos deploys (else a Kafka named by kafka_bootstrap only)
    return None


def _from_labs(prof) -> Path | None:
    """One new lab per cluster (the first with the Kafka host, if the experiment needs one); the inventory
    of that Kafka host, or None."""
    exp, kafka_inv = prof.exp, None
    for i in range(1, exp.clusters + 1):
        lab = Lab(f"{exp.lab_prefix}{i}")
        if lab.hosts:
            raise KhaosError(f"lab {lab.name} is already up: `khaos lab down --name {lab.name}` first")
        brokers = 1 if i == 1 and exp.kafka is not None and exp.kafka.bootstrap is None else 0
        lab.up(hosts=exp.hosts, kafka=brokers, store=exp.store is not None)
        prof.clusters.append(
            Cluster(lab.name, lab.inventory, cluster_facts(lab.inventory).rest_url, lab, lab.shared_dir)
        )
        if brokers:
            kafka_inv, prof.bootstrap = lab.inventory, lab.kafka_bootstrap
        elif exp.kafka is not None and exp.kafka.bootstrap is None:
            lab.link(prof.clusters[0].lab)  # the Flink hosts here reach the Kafka host of the first lab
        prof.journal.write("lab_up", cluster=lab.name, hosts=exp.hosts, kafka=brokers)
    return kafka_inv


def _deploy(prof, kafka_inventory: Path | None) -> None:
    """Flink on every cluster (and a lab's checkpoint store, and the Kafka host), all playbooks at once."""
    exp = prof.exp
    plays = [("flink_cluster", c.inventory, f"{c.name}-cluster", c.name) for c in prof.clusters]
    if exp.store is not None and not exp.inventories:
        plays += [("checkpoint_store", c.inventory, f"{c.name}-store", c.name) for c in prof.clusters]
    if kafka_inventory is not None:
        plays.append(("kafka", kafka_inventory, "kafka", "kafka"))
    runs = [
        ansible.run_playbook_async(
            play,
            inv,
            extravars={"flink_cluster": exp.pinning, "checkpoint_store": exp.store}.get(play),
            ident=ident,
            base_dir=prof.out / "ansible",
            cancel=prof.cancel.is_set,
        )
        for play, inv, ident, _ in plays
    ]
    for (play, _, _, name), run in zip(plays, runs):
        prof._await(*run)
        prof.journal.write(f"{play}_ready", cluster=name)


def kafka_inventory(inventories: list[Path]) -> Path:
    """The first inventory with a kafka_bootstrap or a kafka group (KhaosError when none has either)."""
    for inv in inventories:
        try:
            infra_kafka.inventory_bootstrap(inv)
            return inv
        except KhaosError:
            continue
    raise KhaosError(
        "the experiment has a kafka section but no inventory names a Kafka cluster (group kafka or "
        "kafka_bootstrap): set kafka.bootstrap"
    )


def write_bootstraps(prof) -> None:
    """Write the state bootstrap on every cluster, one after the other (each writes its own)."""
    size = prof.exp.job.bootstrap
    for c in prof.clusters:
        t0 = time.monotonic()
        prof._say(f"{c.name}: writing {size.keys:,} keys x {size.state_bytes:,} B of state into a savepoint ...")
        c.savepoint = bootstrap.write(
            FlinkClient(c.rest_url), str(prof.exp.job.jar), size, prof.own, prof.prefix, sleep=prof._sleep
        )
        took = time.monotonic() - t0
        prof.journal.write("bootstrap", cluster=c.name, savepoint=c.savepoint, seconds=round(took, 1))
        prof._say(f"{c.name}: state bootstrap {c.savepoint} in {took:.0f}s")


def teardown(prof) -> None:
    """Dispose of the bootstrap savepoint of an inventory's cluster and remove every lab."""
    for c in prof.clusters:
        if c.savepoint and c.lab is None:  # a lab's storage goes with the lab
            prof.cleanup.unit_done(c, FlinkClient(c.rest_url), "bootstrap", c.savepoint)
        if c.lab is not None:
            c.lab.down(quiet=True)
            if prof.journal:
                prof.journal.write("lab_down", cluster=c.name)
