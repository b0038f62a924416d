"""`khaos evaluate EVAL.yml`: Khaos against static checkpoint intervals, side by side.

K copies of the job with static intervals and one or two copies whose interval a Khaos daemon
(`khaos run`, one per copy: realize pace and/or restart) manages run at the same time as separate jobs
on ONE Flink cluster, replay the same trace from the same start instant and live through the same
failures: a killed TaskManager or host takes down every copy with a task on it at the same moment.
Every copy is sampled twice a second (flink/sampler.py follows a Khaos copy across reconfigurations);
afterwards the samples are scored (results.py). Each Khaos copy has its own daemon (daemons.py).

Everything is reproducible from the seed: the trace (when synthetic) and the failure schedule.
docs/evaluation.md explains the choices and the results.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from ..chaos.plan import inventory_host
from ..errors import KhaosError
from ..flink import audit
from ..flink.client import FlinkClient, FlinkError
from ..flink.sampler import JobSampler
from ..infra import ansible
from ..infra.inventory import cluster_facts, group_hosts
from ..model import fit as model_fit
from ..model import store
from ..profile import workload
from ..profile.ownjobs import OwnJobs, check_clusters
from ..progress import Bar
from ..signals import interrupt, on_stop
from . import results
from .config import Evaluation, load
from .daemons import Daemons, Setting
from .plan import covering_hosts, describe, failure_schedule, make_trace, slots
from .score import reconfigurations


class Runner:
    """One evaluation run: cluster, copies, daemon, failures, scoring, report."""

    def __init__(self, ev: Evaluation, keep: bool = False, progress: bool = True):
        self.ev, self.keep, self.progress = ev, keep, progress
        self.out = ev.output
        self.t0 = time.monotonic()
        self.lab = None
        self.daemons = Daemons(ev, self.out, self.say)  # the Khaos copies' `khaos run`
        self.samplers: dict[str, JobSampler] = {}
        self.stop = threading.Event()
        self.cluster_vars: dict = {}
        self.bar: Bar | None = None
        self.feed = None  # kafka: the copies' topics and the one replay (kafka/feed.py)

    def say(self, text: str) -> None:
        """One progress line (above the bar, if there is one)."""
        line = f"[{time.monotonic() - self.t0:6.0f}s] {text}"
        if self.bar is not None:
            self.bar.say(line)
        elif self.progress:
            print(line, flush=True)

    def playbook(self, name: str, ident: str, extravars: dict) -> ansible.PlaybookResult:
        """Run a playbook on the evaluation's cluster (its settings merged in)."""
        return ansible.run_playbook(
            name,
            self.inventory,
            extravars={**self.cluster_vars, **extravars},
            ident=f"{ident}-{int(time.time() * 1000)}",
            base_dir=self.out / "ansible",
        )

    def run(self) -> dict:
        """The whole evaluation; returns {table, summary, paths}. Ctrl-C or SIGTERM remove the lab."""
        ev = self.ev
        trace = make_trace(ev)
        schedule = failure_schedule(ev, len(trace))
        self.out.mkdir(parents=True, exist_ok=True)
        for sub in ("samples", "seconds"):
            (self.out / sub).mkdir(exist_ok=True)
        (self.out / "evaluation.yml").write_text(ev.text)
        self.say(describe(ev, trace, schedule))
        try:
            with on_stop(interrupt):  # SIGTERM cleans up like Ctrl-C
                model_path = self._model()
                self._cluster()
                start = self._deploy(trace)
                # the daemon weighs a restart against the failures it expects: the schedule's own rate
                self.mtbf_h = len(trace) / max(1, len(schedule)) / 3600.0
                self._start_watch(model_path, start)
                with Bar(len(trace), "trace seconds", quiet=not self.progress) as self.bar:
                    failures = self._inject(schedule, start, len(trace))
                self.bar = None
                self._stop_watch()
                audits = self._stop_jobs()
        finally:
            self.bar = None
            self._stop_watch()
            for copy, s in self.samplers.items():  # the raw data survives a failed run
                s.frame().to_csv(self.out / "samples" / f"{copy}.csv", index=False)
            self._close_feed()
            if self.lab is not None and not self.keep:
                self.lab.down(quiet=True)
                self.say(f"lab {self.lab.name} down")
        return self.finish(trace, start, failures, audits)

    def _model(self) -> Path:
        ev = self.ev
        if ev.model_path:
            return ev.model_path
        model = model_fit.fit(model_fit.load_results(ev.results), sources=[str(r) for r in ev.results])
        path = store.save(model, self.out / "model.json")
        self.say(f"model fitted from {', '.join(map(str, ev.results))}: {path}")
        return path

    def _cluster(self) -> None:
        ev = self.ev
        if ev.lab:
            from ..infra.lab import Lab

            lab = Lab(ev.lab)
            if lab.hosts:
                raise KhaosError(f"lab {ev.lab} is already up: `khaos lab down --name {ev.lab}` first")
            self.lab = lab
            brokers = 1 if ev.kafka is not None and ev.kafka.bootstrap is None else 0
            self.say(f"lab up: {ev.hosts} hosts" + (" + a Kafka host" if brokers else ""))
            lab.up(hosts=ev.hosts, kafka=brokers)
            self.inventory = lab.inventory
        else:
            self.inventory = ev.inventory
        if ev.kafka is not None:
            from ..infra import kafka as infra_kafka

            self.bootstrap = ev.kafka.bootstrap or infra_kafka.inventory_bootstrap(self.inventory)
            if ev.kafka.bootstrap is None and group_hosts(ansible.inventory_list(self.inventory), "kafka"):
                self.say(f"playbooks/kafka.yml ({self.bootstrap})")
                self.playbook("kafka", "eval-kafka", {})
        facts = cluster_facts(self.inventory)
        self.addresses = facts.addresses
        self.shared = facts.shared_dir or Path("/srv/flink")
        self.rest_url = facts.rest_url
        # every copy fits on one TaskManager; slots are spread evenly when the copies are deployed (restarts
        # and resubmissions move them: _shared_target)
        self.cluster_vars = {
            "flink_config": {
                **(facts.hostvars.get("flink_config") or {}),
                "taskmanager.numberOfTaskSlots": slots(ev),
                "taskmanager.memory.process.size": ev.tm_memory,
                "taskmanager.load-balance.mode": "slots",
            }
        }
        # a named cluster must run no job of anyone else: flink_cluster.yml restarts its TaskManagers
        cluster = [SimpleNamespace(name=str(self.inventory), rest_url=self.rest_url)]
        own = OwnJobs("evaluation", "evaluate")
        check_clusters(own, cluster, deployed=False)
        self.say(f"playbooks/flink_cluster.yml ({slots(ev)} slots per TaskManager)")
        self.playbook("flink_cluster", "eval-cluster", {})
        check_clusters(own, cluster, deployed=True)  # a JobManager with high availability may recover jobs
        self.client = FlinkClient(self.rest_url)

    def _deploy(self, trace: pd.Series) -> float:
        """The trace on the share, the feed (Kafka), every copy; returns the trace's t=0 (epoch s)."""
        ev = self.ev
        trace_path = self.shared / "traces" / f"eval-{ev.name}.txt"
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        workload.write_trace(trace, trace_path)
        start = math.ceil(time.time() + ev.lead_s)
        if ev.kafka is not None:  # one replay into every copy's topic, from t=0; started before the jobs
            self._start_feed(trace, start)
        for copy in ev.copies:
            self._deploy_copy(copy, trace_path, start)
        self.spread = self._placement()
        self.say("TaskManager hosts of each copy: " + ", ".join(f"{c} {'+'.join(h)}" for c, h in self.spread.items()))
        if time.time() > start:
            raise KhaosError(f"deploying took longer than measurement.lead_s allows ({ev.lead_s:g} s): raise it")
        return float(start)

    def _start_feed(self, trace: pd.Series, start: int) -> None:
        from ..kafka import feed as kfeed

        ev = self.ev
        self.feed = kfeed.Feed(
            ev.kafka, self.bootstrap, kfeed.run_prefix(f"eval-{ev.name}"), ev.copies, ev.parallelism, self.keep
        )
        self.feed.open()
        src = kfeed.source(ev.kafka, len(trace), trace=trace)
        self.feed.start(src, start_ms=start * 1000)
        self.say(f"replay of {src.name} into {', '.join(self.feed.topics())} from t=0")

    def _deploy_copy(self, copy: str, trace_path: Path, start: int) -> None:
        """playbooks/deploy_job.yml for one copy: its static (or starting) interval, its sink dir and input."""
        ev = self.ev
        ci = ev.interval(copy)
        out = self.shared / "jobs" / ev.job_name(copy) / "out"
        fill = {"trace": str(trace_path), "output": str(out), "start_ms": str(start * 1000)}
        if self.feed is not None:
            fill.update(self.feed.fill(copy))
        self.say(f"playbooks/deploy_job.yml: {ev.job_name(copy)}, interval {ci:g} s")
        self.playbook(
            "deploy_job",
            f"eval-deploy-{copy}",
            {
                "flink_job_name": ev.job_name(copy),
                "flink_job_jar": str(ev.jar),
                "flink_job_parallelism": ev.parallelism,
                "flink_job_args": [a.format(**fill) for a in ev.args],
                "flink_job_output_dir": str(out),
                "flink_job_checkpoint_interval": f"{ci:g}s",
            },
        )

    def _placement(self) -> dict[str, list[str]]:
        """Inventory hosts running tasks of each copy (a copy between two jobs has none)."""
        out = {}
        for copy in self.ev.copies:
            jids = [j["jid"] for j in self.client.live_jobs(self.ev.job_name(copy)) if j["state"] == "RUNNING"]
            hosts = set()
            for jid in jids:
                for v in self.client.job(jid)["vertices"]:
                    for tm in self.client.get(f"/jobs/{jid}/vertices/{v['id']}/taskmanagers").get("taskmanagers", []):
                        endpoint = tm.get("endpoint") or tm.get("host") or "?"
                        hosts.add(inventory_host(endpoint, self.addresses) or endpoint)
            out[copy] = sorted(hosts)
        return out

    def _shared_target(self) -> tuple[str, dict]:
        """Where to kill so that the failure takes down every copy. Spare slots let restarted and
        resubmitted jobs land on different TaskManagers, so one host is not always shared by all."""
        placement = self._placement()
        return ",".join(covering_hosts(placement)), placement

    def _start_watch(self, model_path: Path, start: float) -> None:
        ev = self.ev
        for copy in ev.copies:
            self.samplers[copy] = JobSampler(self.client, ev.job_name(copy), ev.sample_s).start()
        # the daemons start with the trace: before it, the idle jobs would teach them nothing
        time.sleep(max(0.0, start - time.time()))
        setting = Setting(self.rest_url, self.inventory, model_path, getattr(self, "mtbf_h", 24.0))
        for copy, mode in ev.khaos_copies.items():
            self.daemons.start(copy, mode, setting)

    def _inject(self, schedule: list[dict], start: float, duration: int) -> list[dict]:
        done, next_line = [], 0.0
        end = start + duration
        pending = list(schedule)
        while time.time() < end:
            self.daemons.check()
            now = time.time()
            if pending and now >= start + pending[0]["t"]:
                done.append(self._kill(pending.pop(0), start))
            if self.bar is not None:
                self.bar.update(min(duration, now - start))
            if now - start >= next_line:  # a status line every 30 s (a host kill blocks for a while)
                self._progress(now - start, duration)
                next_line = (int((now - start) // 30) + 1) * 30
            time.sleep(0.5)
        return done

    def _kill(self, f: dict, start: float) -> dict:
        ev = self.ev
        self.say(f"failure {f['n']}: {f['mode']} kill (target {ev.failures['target']})")
        last, placement = None, None
        for _ in range(3):  # the target job may be between two attempts of a reconfiguration
            try:
                target = ev.failures["target"]
                if target == "shared":
                    target, placement = self._shared_target()
                res = self.playbook(
                    "inject_failure",
                    f"eval-fail{f['n']}",
                    {
                        "chaos_mode": f["mode"],
                        "chaos_target": target,
                        "chaos_timing": "now",
                        "chaos_max_hosts": len(target.split(",")),
                        "chaos_job": ev.job_name(next(iter(ev.khaos_copies))),
                        "chaos_seed": ev.seed * 1000 + f["n"],
                    },
                )
                kills = res.data.get("chaos_kills", [])
                if kills and all(k.get("dead") for k in kills):
                    at = min(float(k["killed_at"]) for k in kills)
                    plan = res.data.get("chaos_plan", {})
                    self.say(f"  killed {', '.join(plan.get('targets', []))} at t={at - start:.1f} s")
                    return {
                        **f,
                        "at": at,
                        "t": round(at - start, 1),
                        "target": ",".join(plan.get("targets", [])),
                        "placement": placement,
                    }
                last = f"the kill was not verified: {kills}"
            except KhaosError as e:
                last = str(e)
            time.sleep(2)
        raise KhaosError(f"failure {f['n']} ({f['mode']}) could not be injected: {last}")

    def _progress(self, t: float, duration: int) -> None:
        parts = []
        for copy, s in self.samplers.items():
            row = s.rows[-1] if s.rows else {}
            p99 = row.get("latency_p99_ms")
            ci = row.get("ci_s")
            parts.append(
                f"{copy} CI {'-' if ci is None or ci != ci else f'{ci:g}'} p99 {'-' if p99 is None or p99 != p99 else f'{p99:.0f}'}"
            )
        self.say(f"t={t:5.0f}/{duration} s | " + " | ".join(parts))

    def _stop_watch(self) -> None:
        self.daemons.stop()
        self.stop.set()
        for s in self.samplers.values():
            s.stop()

    def _stop_jobs(self) -> dict[str, dict]:
        """Stop every copy with a savepoint (retried while a copy restarts), then audit its sink."""
        audits = {}
        for copy in self.ev.copies:
            name, last = self.ev.job_name(copy), None
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    jid = self.client.running_job(name)
                    self.client.wait_running(jid, timeout=60)
                    self.client.stop_with_savepoint(jid)
                    break
                except (KhaosError, FlinkError) as e:
                    last = e
                    time.sleep(3)
            else:
                raise KhaosError(f"{name} could not be stopped with a savepoint: {last}")
            if not self.ev.audit:
                audits[copy] = {"records": None, "lost": None, "duplicated": None}
                self.say(f"{name} stopped with a savepoint (no sink audit: the job has no {{output}})")
                continue
            r = audit.audit(self.shared / "jobs" / name / "out", self.feed.partition_of if self.feed else None)
            audits[copy] = {"records": r.records, "lost": r.lost, "duplicated": r.duplicated}
            self.say(
                f"{name} stopped with a savepoint; sink audit: {r.records} records, lost {r.lost}, "
                f"duplicated {r.duplicated}"
            )
        return audits

    # ---- results ----------------------------------------------------------------------------------
    def finish(self, trace: pd.Series, start: float, failures: list[dict], audits: dict) -> dict:
        """Score the run, write summary.json and the report; returns {table, summary, paths}."""
        ev = self.ev
        measured = results.Measured(
            start=start,
            offered=trace.to_numpy(),
            samples={c: s.frame() for c, s in self.samplers.items()},
            latency={c: self._output_latency(c) for c in ev.copies},
            reconfigs={c: reconfigurations(self.daemons.journal(c), start, c) for c in ev.khaos_copies},
            failures=failures,
            audits=audits,
            placement=getattr(self, "spread", {}),
        )
        return results.finish(ev, measured, self.out, self.say)

    def _output_latency(self, copy: str) -> pd.DataFrame | None:
        """A copy's end-to-end latency seconds read from its output topic (kafka.output_topic), or None."""
        rows = self.feed.latency_rows(copy) if self.feed is not None else []
        if not rows:
            return None
        df = pd.DataFrame([vars(r) for r in rows])
        df.to_csv(self.out / "samples" / f"{copy}-output-latency.csv", index=False)
        return df

    def _close_feed(self) -> None:
        """Stop the replay; delete the copies' topics and groups unless --keep."""
        if self.feed is None:
            return
        summary = self.feed.stop()
        if summary is not None:
            self.say(summary.line())
        for problem in self.feed.close():
            self.say(f"kafka cleanup: {problem}")


def run(path: str | Path, dry_run: bool = False, keep: bool = False, out: str | None = None) -> int:
    """`khaos evaluate`: 0, or 1 when a copy's sink audit found lost or duplicated records."""
    ev = load(path)
    if out:
        ev.output = Path(out).resolve()
    if dry_run:
        trace = make_trace(ev)
        print(describe(ev, trace, failure_schedule(ev, len(trace))))
        print("--dry-run: nothing started")
        return 0
    from ..infra.lab import require_root

    if ev.kafka is not None and ev.kafka.bootstrap:  # a named broker must answer before anything starts
        from ..kafka import admin

        admin.connect(ev.kafka.bootstrap)
    if ev.lab:
        require_root()
    result = Runner(ev, keep=keep).run()
    table = result["table"]
    bad = table[(table["audit_lost"].fillna(0) > 0) | (table["audit_duplicated"].fillna(0) > 0)]
    return 1 if len(bad) else 0
