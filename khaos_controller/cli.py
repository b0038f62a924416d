"""The `khaos` command."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time

from .errors import KhaosError


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are the command's: one line ``khaos: error: ...``, exit 1
    (argparse's own is a usage block and exit 2). Sub-command parsers are of this class too."""

    def error(self, message: str):
        """Print the one line and exit 1."""
        verb = self.prog.removeprefix("khaos").strip()
        where = f"{verb}: " if verb else ""
        message = " ".join(message.split())
        self.exit(1, f"khaos: error: {where}{message} (see `{self.prog} --help`)\n")


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def number(low: float | None = None, high: float | None = None, open_low: bool = False, whole: bool = False):
    """An argparse type: a finite number (``whole``: an integer) in [low, high], or (low, high] with
    ``open_low``; the physical bounds of khaos_controller/schema.py."""

    def parse(text: str):
        if whole:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        else:
            value = finite_float(text)
        if low is not None and (value <= low if open_low else value < low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if open_low else '>='} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be <= {high:g}")
        return value

    return parse


def field_number(model, name: str, whole: bool = False):
    """An argparse type held to the bounds of the schema field ``model.name`` (they live there once)."""
    from .schema import field_bounds

    low, open_low, high = field_bounds(model, name)
    return number(low, high, open_low, whole)


def _soon(text: str) -> float:
    """An argparse type: epoch seconds within a day (86400 s) from now: a kill time (khaos lab kill starts
    in milliseconds: it imports no schema)."""
    value = finite_float(text)
    if abs(value - time.time()) > 86400:
        raise argparse.ArgumentTypeError(f"{text} is not within a day from now (epoch seconds)")
    return value


def _lab(args):
    from .infra import lab

    if args.lab_cmd == "list":
        print("\n".join(lab.all_labs()) or "no labs")
        return
    name_lab = lab.Lab(args.name)
    if args.lab_cmd == "up":
        name_lab.up(hosts=args.hosts, kafka=args.kafka, store=args.store)
        brokers = f" + {args.kafka} Kafka (bootstrap {name_lab.kafka_bootstrap})" if args.kafka else ""
        store = f" + a checkpoint store ({name_lab.store_endpoint})" if args.store else ""
        print(f"lab {args.name}: {args.hosts} hosts{brokers}{store} up; inventory {name_lab.inventory}")
    elif args.lab_cmd == "down":
        name_lab.down()
    elif args.lab_cmd == "status":
        rows = name_lab.status()
        if not rows:
            print(f"lab {args.name}: not up")
        for r in rows:
            print(f"{r['host']:<12} {r['ip']:<14} {r['role']:<12} {r['state']:<5} pids={r['pids']}")
    elif args.lab_cmd == "kill":
        for host in args.host:
            name_lab.host(host)  # all names valid before anything dies
        if args.at:
            time.sleep(max(0.0, args.at - time.time()))
        results = [name_lab.kill(host) for host in args.host]
        if args.json:
            print(json.dumps(results))
        for r in [] if args.json else results:
            print(f"lab {args.name}: host {r['host']} killed ({len(r['pids'])} processes)")
    elif args.lab_cmd == "restore":
        for host in args.host:
            name_lab.restore(host)
            print(f"lab {args.name}: host {host} restored (fresh host, same address)")


def _dist(args):
    from .infra import dist

    build, default = {
        "kafka": (dist.build_kafka, dist.KAFKA_VERSION),
        "s3proxy": (dist.build_s3proxy, dist.S3PROXY_VERSION),
        "flink-s3": (dist.build_flink_s3_plugin, dist.FLINK_VERSION),
    }.get(args.product, (dist.build, dist.FLINK_VERSION))
    print(build(version=args.version or default, force=args.force))


def _demo(args):
    from . import demo

    demo.run(
        lab_name=args.name,
        low=args.low,
        high=args.high,
        low_s=args.low_seconds,
        start_ci=args.interval,
        watch_s=args.seconds,
        keep=args.keep,
        profile=args.profile,
        results=args.results,
        out=args.out,
        kafka=not args.no_kafka and os.environ.get("KHAOS_DEMO_KAFKA", "1") != "0",
        realize=args.realize,
    )


def _profile(args):
    from .profile import experiment
    from .schema import out_dir

    exp = experiment.load(args.experiment)
    if args.out:
        out_dir(args.out, "--out")
    from .profile import profiler  # pandas & co. only for a valid experiment

    prof = profiler.Profiler(exp, out=args.out, keep=args.keep, only=args.only or [], redo=args.redo or [])
    print(prof.describe())
    if args.dry_run:
        chosen = {u.ident for u in prof.pending()}
        for u in prof.units():
            kept = (
                " (finished earlier: kept)" if u.ident in prof.reused else "" if u.ident in chosen else " (not chosen)"
            )
            print(f"  unit {u.ident}: " + ", ".join(f"{m} #{r + 1}" for m, r in u.failures) + kept)
        print("dry run: nothing was started")
        return
    df = prof.run()
    peak = f"; peak disk use of the labs {prof.cleanup.peak_bytes / 1e9:.1f} GB" if prof.cleanup.peak_bytes else ""
    print(f"{len(df)} failures measured; {len(prof.errors)} errors{peak}")
    for e in prof.errors:
        print(f"  error: {e}")
    print(
        f"results: {prof.out / 'results.csv'} (+ .parquet), journal {prof.out / 'journal.jsonl'}, "
        f"plot {prof.out / 'recovery_vs_rate.png'}"
    )
    if prof.errors:
        raise KhaosError(f"{len(prof.errors)} of {len(prof.units())} units failed (see {prof.out / 'journal.jsonl'})")


def _evaluate(args):
    from .evaluate import results, runner
    from .schema import out_dir

    if args.rescore:
        results.rescore(args.evaluation)
        return
    if args.out:
        out_dir(args.out, "--out")  # a run builds a lab before it writes there
    rc = runner.run(args.evaluation, dry_run=args.dry_run, keep=args.keep, out=args.out)
    if rc:
        raise KhaosError("a copy's sink audit found lost or duplicated records (see the table above)")


def _workload(args):
    from .profile import workload
    from .schema import MAX_DURATION_S, out_file, url_problem

    if args.wl_cmd == "record" and args.seconds > MAX_DURATION_S:
        raise KhaosError(f"--seconds must be <= {MAX_DURATION_S} (~116 days), got {args.seconds:g}")
    if args.wl_cmd == "record" and args.bootstrap:
        from .kafka.cli import record

        record(args)
    elif args.wl_cmd == "record":
        from .flink.client import FlinkClient

        if args.topic or args.max_records is not None:
            raise KhaosError("--topic and --max-records record a Kafka topic: give --bootstrap, not --rest")
        if url_problem(args.rest):
            raise KhaosError(f"--rest: {url_problem(args.rest)}")
        out_file(args.out, "--out")
        client = FlinkClient(args.rest)
        job_id = client.running_job(args.job)
        n = workload.record_rate(
            client,
            job_id,
            args.out,
            args.seconds,
            source=args.source,
            progress=lambda i, total: print(f"\r{i}/{total} s", end="", file=sys.stderr),
        )
        print(f"\n{n} seconds of input rate written to {args.out}")
    elif args.wl_cmd == "points":
        from .profile.experiment import FailurePoints
        from .schema import validate

        # the bounds of an experiment's workload.failure_points
        given = {"count": args.count, "window": args.window, "min_distance": args.min_distance}
        validate(FailurePoints, given, "workload points")
        pts = workload.failure_points(workload.load_trace(args.trace), **given)
        print(pts.to_string(index=False))
    elif args.wl_cmd == "window":
        for flag, value in (("--center", args.center), ("--before", args.before), ("--after", args.after)):
            if value > MAX_DURATION_S:
                raise KhaosError(f"{flag} must be <= {MAX_DURATION_S} s (~116 days), got {value}")
        out_file(args.out, "--out")
        series = workload.trace_window(workload.load_trace(args.trace), args.center, args.before, args.after)
        workload.write_trace(series, args.out)
        print(f"{len(series)} seconds written to {args.out} (a --trace file for the job)")


# verbs whose modules import pandas / scikit-learn: registered by their package's add_cli when asked for
_HEAVY = {
    "fit": ("model.cli", "fit latency and recovery models from profile results, with CV errors"),
    "promote": ("model.cli", "replace the daemon's model only if the new one's CV error is not worse"),
    "recommend": ("control.cli", "recommend a checkpoint interval for a rate under latency and recovery limits"),
    "run": ("control.cli", "run the runtime controller: keep a job's checkpoint interval inside its limits"),
    "replay": ("kafka.cli", "produce a recorded or synthetic workload into one Kafka topic per copy, never early"),
    "tradeoff": ("profile.tradeoff", "tables of a profile: capacity, latency and recovery per interval"),
}


def _add_dist(sub) -> None:
    """`khaos dist`."""
    d = sub.add_parser(
        "dist",
        help="build a distribution offline (cached): Flink from the PyPI wheels, Kafka, S3Proxy and Flink's S3 "
        "plugin from Maven Central",
    )
    d.add_argument(
        "product",
        nargs="?",
        choices=("flink", "kafka", "s3proxy", "flink-s3"),
        default="flink",
        help="flink (default): flink-<v>-bin-scala_2.12.tgz + .sha512; kafka: kafka-<v>.tgz + .sha256; s3proxy "
        "(the checkpoint store): s3proxy-<v>.tgz + .sha256; flink-s3: flink-s3-fs-hadoop-<v>.jar + .sha256",
    )
    d.add_argument("--version", help="version (default: Flink and flink-s3 2.3.0, Kafka 4.4.0, S3Proxy 2.6.0)")
    d.add_argument("--force", action="store_true", help="rebuild even if cached")
    d.set_defaults(func=_dist)


def _add_demo(sub) -> None:
    """`khaos demo`."""
    dm = sub.add_parser(
        "demo",
        help="the whole loop on a fresh local lab: profile, fit, daemon on a bastion "
        "changing a live job's interval, audit; then clean up (root)",
    )
    dm.add_argument("--name", default="demo", help="lab name (default demo)")
    dm.add_argument("--low", type=int, default=800, help="events/s before the rate step (default 800)")
    dm.add_argument("--high", type=int, default=2800, help="events/s after it (default 2800)")
    dm.add_argument("--low-seconds", type=int, default=60, help="seconds at the low rate (default 60)")
    dm.add_argument(
        "--interval",
        type=int,
        default=20,
        help="checkpoint interval to start with, s (default 20; 2-30: the daemon's range)",
    )
    dm.add_argument("--seconds", type=int, default=300, help="longest time to watch the daemon (default 300)")
    dm.add_argument("--keep", action="store_true", help="leave the lab, cluster and daemon running afterwards")
    dm.add_argument(
        "--profile",
        help="experiment of the short profile (default examples/experiment-lab-kafka.yml; with --no-kafka "
        "examples/experiment-lab.yml)",
    )
    dm.add_argument(
        "--no-kafka",
        action="store_true",
        help="the job's synthetic replay source instead of Kafka (also KHAOS_DEMO_KAFKA=0)",
    )
    dm.add_argument(
        "--realize",
        choices=("pace", "restart"),
        default="pace",
        help="how the daemon applies an interval: pace (trigger checkpoints over REST, no restart; default) "
        "or restart (stop-with-savepoint + resubmit through reconfigure.yml)",
    )
    dm.add_argument("--results", help="fit these profile results instead of profiling (skips step 1)")
    dm.add_argument("--out", default="out/demo", help="where the model, plots and journal go (default out/demo)")
    dm.set_defaults(func=_demo)


def _add_profile(sub) -> None:
    """`khaos profile`."""
    pf = sub.add_parser("profile", help="inject failures into parallel copies of a job and measure recovery (root)")
    pf.add_argument("experiment", help="experiment file, e.g. examples/experiment-lab.yml")
    pf.add_argument(
        "--out",
        help="output directory (default: the experiment's output); a rerun into it keeps the units that finished",
    )
    pf.add_argument("--dry-run", action="store_true", help="validate and print the plan; start nothing")
    pf.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only the units whose name matches (shell-style, e.g. '*-ci2-*'; repeatable); "
        "with a rerun into the same --out, units in another order or a part at a time",
    )
    pf.add_argument(
        "--redo",
        action="append",
        metavar="PATTERN",
        help="measure these finished units again (shell-style, repeatable; with --only, name them there too): "
        "their new rows replace the old",
    )
    pf.add_argument(
        "--keep", action="store_true", help="keep the copies' Kafka topics and consumer groups (kafka section)"
    )
    pf.set_defaults(func=_profile)


def _add_workload(sub) -> None:
    """`khaos workload record | points | window`."""
    wl = sub.add_parser("workload", help="record a job's input rate, pick failure points, cut trace windows")
    wl_sub = wl.add_subparsers(dest="wl_cmd", required=True)
    rec = wl_sub.add_parser(
        "record",
        help="record a running job's input rate per second into a CSV (t,rate), or a live Kafka topic's rate "
        "and records into a Parquet file (--bootstrap; docs/kafka-workload.md)",
    )
    where = rec.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", help="JobManager REST URL, e.g. http://10.213.0.11:8081")
    where.add_argument("--bootstrap", help="Kafka bootstrap HOST:PORT: record --topic instead of a job's rate")
    rec.add_argument("--topic", help="with --bootstrap: the topic to record")
    rec.add_argument("--max-records", type=int, help="with --bootstrap: records kept (default 2000000; then a sample)")
    rec.add_argument("--job", help="job name or id (default: the only running job)")
    rec.add_argument("--seconds", type=positive_float, required=True, help="how long to record, s (up to 10^7)")
    rec.add_argument("--source", help="part of the source vertex name (default: every source)")
    rec.add_argument("--out", required=True, help="file to write (CSV; with --bootstrap Parquet)")
    pts = wl_sub.add_parser("points", help="failure points across the whole rate range of a trace")
    pts.add_argument("trace", help="trace file (one number per line) or recorded CSV")
    pts.add_argument("--count", type=int, default=12, help="number of points (default 12)")
    pts.add_argument("--window", type=int, default=300, help="moving-average window in s (default 300)")
    pts.add_argument("--min-distance", type=int, default=1800, help="min seconds between points (default 1800)")
    win = wl_sub.add_parser("window", help="cut the window around a point into a --trace file")
    win.add_argument("trace")
    win.add_argument("--center", type=int, required=True, help="second of the failure point")
    win.add_argument("--before", type=int, default=1200, help="seconds before (default 1200)")
    win.add_argument("--after", type=int, default=1200, help="seconds after (default 1200)")
    win.add_argument("--out", required=True)
    wl.set_defaults(func=_workload)


def _add_evaluate(sub) -> None:
    """`khaos evaluate`."""
    ev = sub.add_parser(
        "evaluate",
        help="Khaos against static checkpoint intervals: same trace, same failures, "
        "one table and an HTML report (root on the lab)",
    )
    ev.add_argument(
        "evaluation",
        help="evaluation file, e.g. examples/evaluate.yml (docs/evaluation.md); with --rescore a run's output",
    )
    ev.add_argument("--dry-run", action="store_true", help="print the plan (copies, trace, failure schedule) and stop")
    ev.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    ev.add_argument("--out", help="output directory (default: the file's output)")
    ev.add_argument(
        "--rescore",
        action="store_true",
        help="score a finished run again from its output directory (samples, seconds, summary.json): new table, "
        "summary and report, nothing started",
    )
    ev.set_defaults(func=_evaluate)


def _add_lab(sub) -> None:
    """`khaos lab up | down | status | kill | restore | list`."""
    lab = sub.add_parser("lab", help="local test hosts (network namespaces + sshd); needs root")
    lab_sub = lab.add_subparsers(dest="lab_cmd", required=True)
    for verb, text in (
        ("up", "create the hosts and write inventories/local/NAME.yml"),
        ("down", "remove every host, link, process and file of the lab"),
        ("status", "show the hosts and whether they are up"),
        ("kill", "kill a host: every process dies and it becomes unreachable"),
        ("restore", "replace a killed host with a fresh one at the same address"),
        ("list", "list the labs that are up"),
    ):
        sp = lab_sub.add_parser(verb, help=text)
        if verb != "list":
            sp.add_argument("--name", default="khaos", help="lab name (default khaos); one lab = one cluster")
        if verb == "up":
            sp.add_argument("--hosts", type=int, default=3, help="hosts: 1 JobManager + N-1 TaskManagers (default 3)")
            sp.add_argument(
                "--kafka",
                type=int,
                nargs="?",
                const=1,
                default=0,
                help="also N Kafka broker hosts in group kafka (N-kafka1, ...; --kafka alone: 1)",
            )
            sp.add_argument(
                "--store",
                action="store_true",
                help="also a checkpoint store host in group checkpoint_store (N-store; playbooks/checkpoint_store.yml "
                "deploys it); Flink's checkpoints and savepoints then go to s3://khaos/...",
            )
        if verb in ("kill", "restore"):
            sp.add_argument("host", nargs="+", help="host name(s), e.g. khaos-2")
        if verb == "kill":
            sp.add_argument("--at", type=_soon, help="kill at this time (epoch seconds, within a day) instead of now")
            sp.add_argument("--json", action="store_true", help="print what died as JSON")
    lab.set_defaults(func=_lab)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (only the verb asked for imports its heavy modules)."""
    p = Parser(prog="khaos", description="Keep a Flink job inside its latency and recovery SLOs.")
    sub = p.add_subparsers(dest="cmd", required=True)

    for add in (_add_dist, _add_demo, _add_profile, _add_workload, _add_evaluate):
        add(sub)
    # pandas/scikit-learn take seconds to import: load those commands only when they are asked
    # for (a `khaos lab kill --at T` must start in milliseconds)
    wanted = set(_HEAVY) if not argv or argv[0] in ("-h", "--help") else {argv[0]} & set(_HEAVY)
    modules = {m for n, (m, _) in _HEAVY.items() if n in wanted}
    for module in sorted(modules):
        importlib.import_module(f".{module}", __package__).add_cli(sub)
    for name, (module, text) in _HEAVY.items():
        if module not in modules:
            sub.add_parser(name, help=text, add_help=False)

    from .infra import bastion

    bastion.add_cli(sub)

    _add_lab(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """The `khaos` command: every error is one line `khaos: error: ...`, exit 1."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        args.func(args)
    except KhaosError as e:
        print(f"khaos: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("khaos: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the last line of defence: a file or disk problem no check foresaw, in one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"khaos: error: {where}{e.strerror or e}".replace("\n", "\\n"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
