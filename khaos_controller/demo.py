"""`khaos demo`: the whole Khaos loop on the local lab, then everything is cleaned up.

1. short profile: 2 clusters in parallel, real TaskManager and host kills at the worst moment
2. fit: recovery and latency models from those failures (khaos fit)
3. lab up (JobManager, 2 TaskManagers, a bastion) -> playbooks/flink_cluster.yml
4. playbooks/controller.yml installs the daemon on the bastion
5. the sample job reads a Kafka topic (a Kafka host on the lab, playbooks/kafka.yml) that a replay on this
   machine fills with a rate that steps up; the daemon, started by controller.yml, sees the rate, predicts
   the recovery and moves the checkpoint interval: by pacing checkpoints over REST, no restart (default;
   the job's own interval stays as the safety net), or with ``realize="restart"`` by reconfigure.yml
   (stop-with-savepoint + resubmit) (``kafka=False``: the job's own synthetic replay source, --trace)
6. stop the daemon, stop the job with a savepoint, audit the exactly-once sink
7. summary: decisions, a timeline plot (rate, interval, latency, decisions) and the files
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import REPO_ROOT, journal
from .control import step
from .errors import KhaosError
from .flink import audit
from .flink.client import FlinkClient
from .flink.sampler import JobSampler
from .infra import ansible, bastion
from .infra.inventory import cluster_facts
from .infra.lab import Lab
from .kafka import feed as kfeed
from .model import fit as model_fit
from .model import report, store
from .model.predict import predict
from .profile import workload
from .progress import Bar

JOB = "iot-vehicles"
KAFKA_PROFILE = "examples/experiment-lab-kafka.yml"  # the short profile on Kafka
PLAIN_PROFILE = "examples/experiment-lab.yml"  # ... on the job's synthetic replay source
BASTION_HOME = "/opt/khaos"  # the role's khaos_controller_home (lab group_vars put the log there too)
CI = {"min": 2, "max": 30, "step": 1, "dead_band_s": 3, "cooldown_s": 120}  # the daemon's candidates, s


def _step(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)


@dataclass
class Rates:
    """The demo's rate step and the interval the job starts with."""

    low: int  # events/s for the first low_s seconds
    high: int  # events/s after them
    low_s: int
    start_ci: int  # s

    def series(self) -> pd.Series:
        """Events per second: low for low_s s, then high (for longer than any demo watches)."""
        return pd.Series([float(self.low)] * self.low_s + [float(self.high)] * 7200)


def run(
    lab_name: str = "demo",
    low: int = 800,
    high: int = 2800,
    low_s: int = 60,
    start_ci: int = 20,
    watch_s: int = 300,
    keep: bool = False,
    profile: str | None = None,
    results: str | None = None,
    out: str = "out/demo",
    kafka: bool = True,
    realize: str = "pace",
) -> None:
    """The whole demo (module docstring); the lab is removed afterwards unless ``keep``."""
    t0 = time.monotonic()
    lab = Lab(lab_name)
    profile = profile or (KAFKA_PROFILE if kafka else PLAIN_PROFILE)
    _check_args(low, high, low_s, start_ci, watch_s, profile, results, out)
    if realize not in ("pace", "restart"):
        raise KhaosError(f"--realize must be pace or restart, got {realize!r}")
    if lab.hosts:
        raise KhaosError(f"lab {lab_name!r} is already up: `khaos lab down --name {lab_name}` first")
    out_dir = REPO_ROOT / out
    out_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(t0, lab, Rates(low, high, low_s, start_ci), out_dir, kafka, realize)
    demo.fit(profile, results)  # 1-2
    try:
        demo.set_up()  # 3-4
        demo.start_job()  # 5
        samples = watch(t0, demo.client, demo.journal_path, step_at=demo.step_at, watch_s=watch_s)
        result = demo.stop()  # 6
        demo.summary(samples, result)  # 7
    finally:
        demo.close(keep)


class Demo:
    """One demo on a lab, step by step (module docstring): what each step set up is kept for the next."""

    def __init__(self, t0: float, lab: Lab, rates: Rates, out_dir: Path, kafka: bool, realize: str):
        self.t0, self.lab, self.rates, self.out_dir = t0, lab, rates, out_dir
        self.kafka, self.realize = kafka, realize
        self.feed: kfeed.Feed | None = None

    def say(self, text: str) -> None:
        """One progress line with the time since the start."""
        _step(self.t0, text)

    def fit(self, profile: str, results: str | None) -> None:
        """The short profile (unless ``results`` are given), the models, and the recovery limit."""
        results_path = Path(results) if results else short_profile(self.t0, profile)
        model = model_fit.fit(model_fit.load_results([results_path]), sources=[str(results_path)])
        self.model_path = store.save(model, self.out_dir / "model.json")
        report.plot(model, self.out_dir / "fit.png")
        print(report.format_report(model), flush=True)
        r = self.rates
        self.r_max, why = choose_r_max(model, r.low, r.high, r.start_ci)
        self.say(f"model {self.model_path}; limits: p99 latency 1000 ms, recovery {self.r_max:g} s ({why})")

    def set_up(self) -> None:
        """The lab, the Flink cluster (and the Kafka broker), the daemon installed on the bastion."""
        lab, name = self.lab, self.lab.name
        self.say("lab up: 4 hosts (JobManager, 2 TaskManagers, bastion)" + (" + a Kafka host" if self.kafka else ""))
        lab.up(hosts=4, kafka=1 if self.kafka else 0)
        self.inventory = bastion.lab_inventory(lab)
        self.say("playbooks/flink_cluster.yml")
        ansible.run_playbook("flink_cluster", self.inventory, ident=f"demo-cluster-{int(time.time())}")
        if self.kafka:
            self.say(f"playbooks/kafka.yml: a broker on {name}-kafka1 ({lab.kafka_bootstrap})")
            ansible.run_playbook("kafka", self.inventory, ident=f"demo-kafka-{int(time.time())}")
        self.bastion = lab.host(f"{name}-4")
        self.client = FlinkClient(cluster_facts(self.inventory).rest_url)
        # the daemon, installed but not started (it needs a running job)
        self.ctl = controller_vars(self.model_path, self.r_max, self.bastion.ip, self.realize)
        b = self.bastion
        self.say(f"playbooks/controller.yml: khaos in a venv on the bastion {b.name} ({b.ip})")
        self._controller(start=False)

    def _controller(self, start: bool) -> None:
        """playbooks/controller.yml: the daemon installed and started, or stopped."""
        extravars = self.ctl if start else {**self.ctl, "khaos_controller_start": False}
        ansible.run_playbook("controller", self.inventory, extravars=extravars)

    def start_job(self) -> None:
        """The job with the rate step (fed by a replay into its topic, or its own source), then the daemon."""
        r, lab = self.rates, self.lab
        rates = r.series()
        self.sink = lab.shared_dir / "jobs" / JOB / "out"
        if self.kafka:  # the topic is filled by one replay on this machine, started before the job
            self.feed, start_ms = kafka_feed(lab.kafka_bootstrap, rates)
            self.say(f"replay into topic {self.feed.topics()[0]}: {r.low} events/s for {r.low_s} s, then {r.high}/s")
            args = [a.format(output=self.sink, **self.feed.fill("demo")) for a in kfeed.SAMPLE_ARGS]
        else:
            trace = lab.shared_dir / "traces" / "demo.txt"
            trace.parent.mkdir(parents=True, exist_ok=True)
            workload.write_trace(rates, trace)
            start_ms = int(time.time() * 1000)
            args = ["--trace", str(trace), "--output", str(self.sink), "--start", str(start_ms)]
        self.say(
            f"playbooks/deploy_job.yml: {r.low} events/s for {r.low_s} s, then {r.high}/s; interval {r.start_ci} s"
        )
        ansible.run_playbook(
            "deploy_job",
            self.inventory,
            extravars={
                "checkpoint_interval": f"{r.start_ci}s",
                "flink_job_start_ms": start_ms,
                "flink_job_args": args,
            },
        )
        self._controller(start=True)
        b = self.bastion
        self.say(f"daemon running on {b.name}: metrics http://{b.ip}:9790/metrics")
        self.step_at = start_ms / 1000 + r.low_s  # the rate steps up
        log_dir = lab.host_dir(b) / "root" / BASTION_HOME.lstrip("/") / "log"
        self.journal_path = log_dir / f"{JOB}.journal.jsonl"

    def stop(self) -> audit.AuditResult:
        """The daemon stopped, then the job (with a savepoint) and the replay; the sink audited."""
        self._controller(start=False)
        job_id = self.client.running_job(JOB)
        location = self.client.stop_with_savepoint(job_id)
        self.say(f"daemon stopped; job stopped with savepoint {location}")
        feed = self.feed
        if feed is not None:
            done = feed.stop()
            self.say(done.line() if done is not None else f"replay: {feed.error}")
        result = audit.audit(self.sink, feed.partition_of if feed is not None else None)
        self.say(
            f"sink audit: {result.records} records, ids {result.min_id}..{result.max_id}, "
            f"lost {result.lost}, duplicated {result.duplicated}"
        )
        return result

    def summary(self, samples: list[dict], result: audit.AuditResult) -> None:
        """The daemon's changes, the timeline plot and the files; KhaosError if the audit failed or nothing
        changed."""
        out_dir = self.out_dir
        entries = journal.read(self.journal_path)
        (out_dir / "journal.jsonl").write_text(self.journal_path.read_text())
        pd.DataFrame(samples).to_csv(out_dir / "timeline.csv", index=False)
        png = plot_timeline(samples, entries, self.step_at, self.r_max, out_dir / "timeline.png")
        changes = summarise(entries)
        self.say(
            f"{changes} interval change(s) ({self.realize}); files: {out_dir / 'model.json'}, {out_dir / 'fit.png'}, "
            f"{png}, {out_dir / 'timeline.csv'}, {out_dir / 'journal.jsonl'}",
        )
        if result.lost or result.duplicated:
            raise KhaosError(f"sink audit failed: {result.lost} lost, {result.duplicated} duplicated")
        if not changes:
            raise KhaosError("the daemon changed no interval; see the journal above")

    def close(self, keep: bool) -> None:
        """The replay stopped; the lab removed unless ``keep``."""
        if self.feed is not None:
            self.feed.stop()
        if not keep:
            self.lab.down(quiet=True)
            self.say(f"lab {self.lab.name} down: hosts, JVMs and files removed")


def controller_vars(model_path: Path, r_max: float, bastion_ip: str, realize: str) -> dict:
    """playbooks/controller.yml's variables: the daemon's model, job and config."""
    return {
        "khaos_controller_model": str(model_path),
        "khaos_controller_job": JOB,
        "khaos_controller_config": {
            "limits": {"latency_ms": 1000, "recovery_s": r_max},
            "ci": CI,
            "loop": {"period_s": 15, "window_s": 15, "min_uptime_s": 20, "forecast_step_s": 5},
            "metrics": {"host": bastion_ip, "port": 9790},  # the lab network only
            "realize": {"mode": realize},
            # a restart must pay for itself (docs/daemon.md): the demo expects a failure every few minutes
            "mtbf_h": 0.05,
        },
    }


def kafka_feed(bootstrap: str, rates: pd.Series):
    """A fresh topic and group for the demo job and ONE replay of ``rates`` into it (kafka/feed.py); the
    replay starts on the next whole second. Returns (feed, start_ms)."""
    spec = kfeed.KafkaSpec()
    feed = kfeed.Feed(spec, bootstrap, kfeed.run_prefix("demo"), ["demo"], partitions=2, keep=True)
    feed.open()
    start_ms = feed.start(kfeed.source(spec, len(rates), trace=rates))
    return feed, start_ms


def choose_r_max(model: dict, low: float, high: float, ci: float) -> tuple[float, str]:
    """A recovery limit the current interval meets at the low rate and breaks at the high one."""
    r_low = predict(model, low, ci, "process")[1]
    r_high = predict(model, high, ci, "process")[1]
    if r_high - r_low >= 1.0:
        return round((r_low + r_high) / 2, 1), (
            f"between the predicted {r_low:.1f} s at {low:g}/s and {r_high:.1f} s at {high:g}/s for a {ci:g} s interval"
        )
    half = predict(model, high, ci / 2, "process")[1]
    return round(half, 1), (
        f"the model predicts about the same recovery at both rates ({r_low:.1f} / {r_high:.1f} s "
        f"at {ci:g} s), so the limit is what a {ci / 2:g} s interval gives: the daemon must move"
    )


def watch(t0: float, client: FlinkClient, journal_path: Path, step_at: float, watch_s: float) -> list[dict]:
    """Sample the job every second (following it across reconfigurations) and print the daemon's
    decisions as they are journaled; stop 45 s after the first realized change after the rate step."""
    sampler = JobSampler(client, JOB, period=1.0)
    seen, done_at = 0, None
    print(f"{'time':>8} {'job':>8} {'CI s':>5} {'rate/s':>7} {'lag ms':>7} {'p99 ms':>7}", flush=True)
    end = time.monotonic() + watch_s
    with Bar(watch_s, "watching the daemon (s)") as bar:
        while time.monotonic() < end and (done_at is None or time.time() < done_at + 45):
            row = sampler.once()
            if len(sampler.rows) % 5 == 0 and row["job_id"]:
                bar.say(
                    f"{time.monotonic() - t0:7.1f}s {row['job_id'][:8]:>8} {row['ci_s']:>5g} "
                    f"{_fmt(row['rate_in']):>7} {_fmt(row['lag_ms']):>7} {_fmt(row['latency_p99_ms']):>7}"
                )
            steps = step.read(journal.read(journal_path))
            for s in steps[seen:]:
                d = s.decision
                bar.say(
                    f"  daemon: {d.action} {d.current_ci_s} -> {d.ci_s} s at "
                    f"{s.observation.demand_rate or 0:.0f}/s: {d.reason}"
                )
                if s.realization is not None and s.realization.ok and s.ts > step_at and done_at is None:
                    done_at = time.time()
            seen = len(steps)
            bar.update(watch_s - max(0.0, end - time.monotonic()))
            time.sleep(1)
    return sampler.rows


def summarise(entries: list[dict]) -> int:
    """Print every realized change of a daemon journal with its explanation; returns how many."""
    changes = step.changes(step.read(entries))
    for s in changes:
        d = s.decision
        print(f"  change at {s.time}: {d.current_ci_s:g} s -> {d.ci_s:g} s ({s.realization.summary()})")
        print(f"    {s.explain or ''}")
    return len(changes)


def ci_timeline(samples: pd.DataFrame, entries: list[dict]) -> pd.Series:
    """The interval in force at each sample (step.timeline): the job's own interval as sampled, or the paced
    one a realized change of the journal set, when shorter."""
    changes = step.paced_changes(step.read(entries))
    held = step.timeline(samples["t"].tolist(), samples["ci_s"].tolist(), changes)
    return pd.Series(held, index=samples.index, dtype=float)


def plot_timeline(samples: list[dict], entries: list[dict], step_at: float, r_max: float, png: Path) -> Path:
    """Rate, interval in force (paced, and the job's own) and p99 latency over time, with decisions (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(samples)
    t_start = df["t"].min()
    x = df["t"] - t_start
    fig, ax = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    ax[0].plot(x, df["rate_in"], lw=1)
    ax[0].set_ylabel("input rate (events/s)")
    ax[1].step(x, ci_timeline(df, entries), where="post", color="tab:green", label="in force")
    ax[1].step(x, df["ci_s"], where="post", color="tab:green", ls=":", label="job's own (safety net)")
    ax[1].set_ylabel("checkpoint interval (s)")
    ax[1].legend(loc="upper right", fontsize="small")
    ax[2].plot(x, df["latency_p99_ms"], lw=1, color="tab:red")
    ax[2].set_ylabel("p99 latency (ms)")
    ax[2].set_xlabel("seconds")
    for a in ax:
        a.axvline(step_at - t_start, color="grey", ls=":", lw=1)
    for s in step.read(entries):
        if s.ts >= t_start:
            realized = s.realization is not None and s.realization.ok
            ax[1].axvline(s.ts - t_start, color="tab:orange" if realized else "lightgrey", lw=2 if realized else 0.8)
    ax[0].set_title(f"khaos demo: rate step at the dotted line; decisions (orange: a change); R_max {r_max:g} s")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _check_args(low, high, low_s, start_ci, watch_s, profile, results, out) -> None:
    """Every argument checked before anything starts (a bad one must not cost a profile)."""
    from .profile import experiment
    from .schema import DAY, MAX_RATE, out_dir

    for flag, value, low_bound, high_bound in (
        ("--low", low, 1, MAX_RATE),
        ("--high", high, 1, MAX_RATE),
        ("--low-seconds", low_s, 1, DAY),
        ("--interval", start_ci, CI["min"], CI["max"]),  # the daemon starts inside its candidate range
        ("--seconds", watch_s, 1, DAY),
    ):
        if not low_bound <= value <= high_bound:
            raise KhaosError(f"{flag} must be between {low_bound} and {high_bound}, got {value}")
    if high <= low:
        raise KhaosError(f"--high {high} must be above --low {low} (the rate steps up)")
    out_dir(REPO_ROOT / out, "--out")
    if results:
        if not Path(results).is_file():
            raise KhaosError(f"--results {results} is not a file")
    else:
        experiment.load(REPO_ROOT / profile)


def short_profile(t0: float, path: str) -> Path:
    """Parallel clusters, real failures at the worst moment, recovery measured; returns results.csv."""
    from .profile import experiment
    from .profile.profiler import Profiler

    exp = experiment.load(REPO_ROOT / path)
    prof = Profiler(exp, out=REPO_ROOT / exp.output)
    _step(t0, "short profile: " + prof.describe().splitlines()[0])
    df = prof.run()
    cols = [
        "cluster",
        "ci_s",
        "rate",
        "mode",
        "since_checkpoint_s",
        "detect_s",
        "running_s",
        "recovery_s",
        "peak_lag_ms",
        "audit_lost",
        "audit_duplicated",
    ]
    print(df[cols].round(1).to_string(index=False))
    _step(
        t0,
        f"profile done: {len(df)} failures; results {prof.out / 'results.csv'}, "
        f"plot {prof.out / 'recovery_vs_rate.png'}, journal {prof.out / 'journal.jsonl'}",
    )
    if prof.errors:
        raise KhaosError(f"{len(prof.errors)} profile units failed (see {prof.out / 'journal.jsonl'})")
    return prof.out / "results.csv"


def _fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.0f}"
