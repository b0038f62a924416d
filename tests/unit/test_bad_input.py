"""The bad-input battery: the REAL `khaos` command against every file type and verb.

Every case in BAD runs the `khaos` command (``khaos_controller.cli.main(ARGS)`` in a process of its own,
forked from one that imported it: tests/support/forkrun.py) in its own directory, which first gets
GOOD versions of every file type (daemon config, experiment, evaluation, model, profile results,
traces, inventory, jar); the case then overwrites some of them. A bad case must exit 1 with exactly
one line on stderr, ``khaos: error: ...``, naming the offending field or file (its ``expect``
substrings), and no traceback anywhere. The GOOD controls must exit 0: the checks do not just refuse
everything. Nothing starts a lab or reaches a cluster: ``--check``, ``--dry-run``, or verbs that fail
before they do anything (``@D@`` in arguments and files is the case's directory).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support import PROFILE

from khaos_controller import REPO_ROOT

FORKRUN = Path(__file__).resolve().parent.parent / "support" / "forkrun.py"
NAN, INF = math.nan, math.inf
DROP = object()  # an Edit value that removes the key


def _recording_bytes() -> bytes:
    """A small valid `khaos workload record` file."""
    import tempfile

    from khaos_controller.kafka import recording

    res = recording.Reservoir(1796083838, 3, 100, 1)
    for i in range(30):
        res.add(1796083838000 + i * 100, i % 2, i, b"k", b"%d,1,90,1,0" % i)
    with tempfile.TemporaryDirectory() as d:
        return recording.save(res.recording("live"), Path(d) / "r.parquet").read_bytes()


RECORDING = _recording_bytes()


# ------------------------------------------------------------------------------ good baselines

DAEMON = {
    "job": "iot-vehicles",
    "flink": {"rest_url": "http://127.0.0.1:1", "timeout_s": 5},
    "inventory": "inventory.yml",
    "model": "model.json",
    "mode": "process",
    "limits": {"latency_ms": 1000, "recovery_s": 20},
    "mtbf_h": 24,
    "state_dir": "state",
    "ci": {"min": 2, "max": 60, "step": 1, "dead_band_s": 3, "cooldown_s": 60},
    "loop": {"sample_s": 1, "period_s": 30, "window_s": 30, "forecast_step_s": 10, "min_uptime_s": 20},
    "metrics": {"host": "127.0.0.1", "port": 0},
    "reconfigure": {"timeout_s": 120},
    "log": {"level": "info", "format": "kv"},
}

EXPERIMENT = {
    "name": "battery",
    "job": {"jar": "job.jar", "name": "iot-vehicles", "parallelism": 2},
    "checkpoint_intervals": [4, 12],
    "workload": {"rates": [1000, 3000]},
    "failures": {"modes": ["process", "host"], "target": "sink", "timing": "before_checkpoint", "margin_s": 1.5},
    "repetitions": 1,
    "clusters": {"count": 2, "hosts": 3, "lab_prefix": "kp"},
    "measurement": {"warmup_s": 25, "settle_s": 10, "recovery_timeout_s": 120, "consecutive_s": 8},
    "output": "@D@/profile-out",
}

EVALUATION = {
    "name": "battery",
    "seed": 7,
    "job": {"jar": "@D@/job.jar", "parallelism": 2},
    "workload": {"seconds": 900, "low": 400, "high": 2400, "bursts": 2, "noise": 0.05},
    "statics": [10, 30],
    "limits": {"latency_ms": 1000, "recovery_s": 20},
    "khaos": {
        "model": "@D@/model.json",
        "start_ci_s": 10,
        "mode": "process",
        "ci": {"min": 2, "max": 30, "step": 1, "dead_band_s": 3, "cooldown_s": 60},
        "loop": {"period_s": 15, "window_s": 15, "min_uptime_s": 20, "forecast_step_s": 5},
    },
    "failures": {"count": 2, "modes": ["process", "host"], "first_s": 150, "min_gap_s": 150},
    "cluster": {"lab": "ev", "hosts": 3},
    "measurement": {"consecutive_s": 5, "sample_s": 0.5, "lead_s": 60},
    "output": "@D@/eval-out",
}

TRACE = "".join(f"{1000 + round(800 * math.sin(i / 40))}\n" for i in range(600))
TRACE_CSV = "t,rate\n" + "".join(f"{1_700_000_000 + i},{1000 + (i % 97) * 10}\n" for i in range(400))
INVENTORY = "all:\n  vars: {khaos_state_dir: state}\n  children:\n    flink:\n      children:\n" + (
    "        flink_jobmanager: {hosts: {jm: {ansible_host: 127.0.0.1}}}\n"
    "        flink_taskmanager: {hosts: {tm: {ansible_host: 127.0.0.1}}}\n"
)
DEEP_LIST = "job: " + "[" * 3000 + "]" * 3000 + "\n"
DEEP_MAP = "job: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"
BINARY = bytes(range(256)) * 8
LATIN1 = "job: caf\xe9\n".encode("latin-1")
UTF16 = "job: x\n".encode("utf-16")


@dataclass
class Edit:
    """A good baseline (``daemon``, ``experiment``, ``evaluation`` or ``model``) with some keys changed:
    dotted paths (list indexes as numbers) -> new value, or DROP."""

    kind: str
    changes: dict = field(default_factory=dict)
    sub: tuple = ()  # (old, new): a text replacement in the rendered file


@dataclass
class Case:
    """One run of the real command: its id, arguments, files written into its directory, and the
    substrings its one error line must contain (``ok``: it must succeed instead)."""

    id: str
    argv: list[str]
    files: dict = field(default_factory=dict)
    expect: tuple = ()
    ok: bool = False
    warn: tuple = ()  # a good case: substrings of its one-line warnings on stderr (``khaos: warning: ...``)


def run_check(id, content, *expect):
    return Case(id, ["run", "--check", "@D@/daemon.yml"], {"daemon.yml": content}, expect)


def profile(id, content, *expect, argv=()):
    return Case(id, ["profile", "@D@/experiment.yml", "--dry-run", *argv], {"experiment.yml": content}, expect)


def evaluate(id, content, *expect, argv=()):
    return Case(id, ["evaluate", "@D@/evaluation.yml", "--dry-run", *argv], {"evaluation.yml": content}, expect)


def recommend(id, *args, model=None, expect=()):
    """khaos recommend with good arguments, some replaced (flag, value pairs; DROP removes one)."""
    argv = {"--model": "@D@/model.json", "--rate": "1500", "--current-ci": "10", "--l-max": "1000", "--r-max": "20"}
    extra = []
    for flag, value in zip(args[::2], args[1::2]):
        if value is DROP:
            argv.pop(flag)
        elif flag in argv:
            argv[flag] = value
        else:
            extra += [flag, value]
    files = {} if model is None else {"model.json": model}
    return Case(id, ["recommend", *[x for kv in argv.items() for x in kv], *extra], files, expect)


def model(id, content, *expect):
    """A bad model file read by recommend."""
    return recommend(id, model=content, expect=("model.json", *expect))


def fit(id, content, *expect, name="results.csv", argv=()):
    files = {} if content is None else {name: content}
    return Case(id, ["fit", f"@D@/{name}", "--out", "@D@/fitted.json", *argv], files, expect)


def points(id, content, *expect, name="bad-trace.txt", argv=()):
    files = {} if content is None else {name: content}
    return Case(id, ["workload", "points", f"@D@/{name}", *argv], files, expect)


def results(row: int = 0, **cells) -> str:
    """The good profile results with cells of one row replaced (a new column is empty in the other rows)."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(PROFILE.read_text())))
    columns = list(rows[0]) + [c for c in cells if c not in rows[0]]
    rows[row].update({c: str(v) for c, v in cells.items()})
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def replay(id, *args, expect=()):
    """khaos replay --rate 1000 --seconds 10 with some flags replaced (it fails before Kafka is reached)."""
    argv = {"--rate": "1000", "--seconds": "10", "--bootstrap": "127.0.0.1:1", "--topic": "t"}
    argv.update(zip(args[::2], args[1::2]))
    return Case(id, ["replay", *[x for kv in argv.items() for x in kv]], expect=expect)


def D(**changes):
    return Edit("daemon", changes)


def X(**changes):
    return Edit("experiment", changes)


def E(**changes):
    return Edit("evaluation", changes)


def M(**changes):
    return Edit("model", changes)


def k(*pairs):
    """Dotted keys and their new values: k("loop.period_s", -5)."""
    return dict(zip(pairs[::2], pairs[1::2]))


# ------------------------------------------------------------------------------------------ GOOD

GOOD = [
    Case(
        "run-check-good",
        ["run", "--check", "@D@/daemon.yml"],
        expect=("ok: job", "inventory", "(2 hosts)"),
        ok=True,
        warn=("Flink REST at http://127.0.0.1:1 is unreachable",),
    ),
    Case(
        "run-check-good-job-named-like-a-lookup",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": D(job="x{{ lookup('pipe', 'id') }}")},
        expect=("ok: job \"x{{ lookup('pipe', 'id') }}\"",),
        ok=True,
    ),
    Case(
        "run-check-good-metrics-any-address",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": D(**k("metrics.host", "0.0.0.0"))},
        ok=True,
        warn=("metrics.host 0.0.0.0 serves /metrics on every interface",),
    ),
    Case(
        "run-check-good-metrics-any-ipv6",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": D(**k("metrics.host", "::"))},
        ok=True,
        warn=("metrics.host :: serves /metrics on every interface",),
    ),
    Case(
        "run-check-good-metrics-public-address",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": D(**k("metrics.host", "8.8.8.8"))},
        ok=True,
        warn=("metrics.host 8.8.8.8 serves /metrics on a public address",),
    ),
    Case(
        "run-check-good-unicode-job-metrics-off",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": Edit("daemon", k("job", "fahrzeuge-ä-ジョブ", "metrics", None))},
        ok=True,
    ),
    Case(
        "run-check-good-pace-no-inventory",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": D(inventory=DROP)},
        ok=True,
    ),
    Case(
        "run-check-good-advisor-restart-no-inventory",
        ["run", "--check", "--advisor", "@D@/daemon.yml"],
        {"daemon.yml": D(inventory=DROP, realize={"mode": "restart"})},
        ok=True,
    ),
    Case("profile-dry-run-good", ["profile", "@D@/experiment.yml", "--dry-run"], expect=("dry run",), ok=True),
    Case(
        "profile-dry-run-good-kafka",
        ["profile", "@D@/experiment.yml", "--dry-run"],
        {"experiment.yml": X(kafka={"partitions": 4, "topic_config": {"retention.ms": 600000}})},
        expect=("dry run",),
        ok=True,
    ),
    Case(
        "evaluate-dry-run-good-kafka",
        ["evaluate", "@D@/evaluation.yml", "--dry-run"],
        {"evaluation.yml": E(kafka={"format": "iot"})},
        expect=("nothing",),
        ok=True,
    ),
    Case(
        "profile-dry-run-good-trace",
        ["profile", "@D@/experiment.yml", "--dry-run", "--out", "@D@/new/dir"],
        {
            "experiment.yml": Edit(
                "experiment",
                k(
                    "workload",
                    {"trace": "@D@/trace.txt", "failure_points": {"count": 2, "window": 60, "min_distance": 100}},
                ),
            )
        },
        ok=True,
    ),
    Case("evaluate-dry-run-good-model", ["evaluate", "@D@/evaluation.yml", "--dry-run"], expect=("nothing",), ok=True),
    Case(
        "evaluate-dry-run-good-results-trace",
        ["evaluate", "@D@/evaluation.yml", "--dry-run", "--out", "@D@/other-out"],
        {
            "evaluation.yml": Edit(
                "evaluation",
                k("khaos.model", DROP, "khaos.results", "@D@/results.csv", "workload", {"trace": "@D@/trace.csv"}),
            )
        },
        ok=True,
    ),
    Case("recommend-good", recommend("x").argv, expect=("action:",), ok=True),
    Case("recommend-good-json-host", [*recommend("x").argv, "--mode", "host", "--json"], ok=True),
    Case("fit-good", ["fit", "@D@/results.csv", "--out", "@D@/fitted.json"], expect=("model:",), ok=True),
    Case("promote-good", ["promote", "@D@/model.json", "--to", "@D@/current/model.json"], ok=True),
    Case(
        "workload-points-good",
        ["workload", "points", "@D@/trace.txt", "--count", "3", "--window", "60", "--min-distance", "60"],
        ok=True,
    ),
    Case(
        "workload-points-good-csv",
        ["workload", "points", "@D@/trace.csv", "--count", "2", "--window", "30", "--min-distance", "30"],
        ok=True,
    ),
    Case(
        "workload-window-good",
        [
            "workload",
            "window",
            "@D@/trace.txt",
            "--center",
            "100",
            "--before",
            "10",
            "--after",
            "10",
            "--out",
            "@D@/window.txt",
        ],
        ok=True,
    ),
    Case("lab-status-good-not-up", ["lab", "status", "--name", "zzbadin"], expect=("not up",), ok=True),
    Case("help-good", ["--help"], ok=True),
    Case("run-help-good", ["run", "--help"], ok=True),
]

# ------------------------------------------------------------------------------------------- BAD

BAD = [
    # ---- the command line itself (argparse: exit 1 and one line, not exit 2 and a usage block)
    Case("cli-no-verb", [], expect=("required",)),
    Case("cli-unknown-verb", ["teleport"], expect=("teleport",)),
    Case("cli-unknown-option", ["profile", "@D@/experiment.yml", "--bogus"], expect=("--bogus",)),
    Case("cli-run-missing-config", ["run", "--check"], expect=("config",)),
    Case("cli-fit-no-results", ["fit"], expect=("results",)),
    Case(
        "cli-window-missing-center", ["workload", "window", "@D@/trace.txt", "--out", "@D@/w.txt"], expect=("--center",)
    ),
    Case("cli-lab-kill-no-host", ["lab", "kill", "--name", "zzbadin"], expect=("host",)),
    Case("cli-lab-up-hosts-text", ["lab", "up", "--name", "zzbadin", "--hosts", "many"], expect=("--hosts", "many")),
    Case("cli-points-count-float", ["workload", "points", "@D@/trace.txt", "--count", "2.5"], expect=("--count",)),
    # ---- khaos recommend: every number finite and in range, the mode profiled
    recommend("recommend-rate-nan", "--rate", "nan", expect=("rate", "nan")),
    recommend("recommend-rate-inf", "--rate", "inf", expect=("rate", "inf")),
    recommend("recommend-rate-negative", "--rate", "-5", expect=("rate",)),
    recommend("recommend-rate-text", "--rate", "fast", expect=("--rate", "fast")),
    recommend("recommend-current-ci-negative", "--current-ci", "-10", expect=("current",)),
    recommend("recommend-l-max-nan", "--l-max", "nan", expect=("l-max",)),
    recommend("recommend-l-max-negative", "--l-max", "-1000", expect=("--l-max", "must be > 0")),
    recommend("recommend-l-max-missing", "--l-max", DROP, expect=("--l-max",)),
    recommend("recommend-r-max-zero", "--r-max", "0", expect=("--r-max", "must be > 0")),
    recommend(
        "recommend-ci-range-inverted",
        "--ci-min",
        "60",
        "--ci-max",
        "10",
        expect=("--ci-min/--ci-max", "min 60 >= max 10"),
    ),
    recommend("recommend-step-zero", "--step", "0", expect=("--step",)),
    recommend("recommend-step-tiny", "--step", "1e-9", expect=("--step", "100000")),
    recommend("recommend-dead-band-nan", "--dead-band", "nan", expect=("dead-band",)),
    recommend("recommend-cooldown-nan", "--cooldown-s", "nan", expect=("cooldown",)),
    recommend("recommend-slack-negative", "--slack-s-per-h", "-1", expect=("--slack-s-per-h", "-1")),
    recommend("recommend-slack-nan", "--slack-s-per-h", "nan", expect=("slack",)),
    recommend("recommend-hysteresis-one", "--hysteresis", "1", expect=("--hysteresis", "<= 0.9")),
    recommend("recommend-hysteresis-negative", "--hysteresis", "-0.1", expect=("--hysteresis", "-0.1")),
    recommend("recommend-last-change-inf", "--last-change-ts", "inf", expect=("last-change",)),
    recommend("recommend-mode-teleport", "--mode", "teleport", expect=("teleport", "not profiled")),
    # ---- physical bounds: rates, intervals, recoveries and latencies a job can have
    recommend("recommend-rate-1e308", "--rate", "1e308", expect=("--rate", "must be <= 1e+07")),
    recommend("recommend-rate-1e9", "--rate", "1e9", expect=("--rate", "must be <= 1e+07")),
    recommend("recommend-current-ci-a-year", "--current-ci", "31536000", expect=("--current-ci", "<= 86400")),
    recommend("recommend-r-max-1e300", "--r-max", "1e300", expect=("--r-max", "<= 1e+06")),
    recommend("recommend-l-max-1e300", "--l-max", "1e300", expect=("--l-max", "<= 8.64e+07")),
    recommend("recommend-ci-min-tiny", "--ci-min", "0.001", expect=("--ci-min", ">= 0.01")),
    recommend("recommend-ci-max-a-year", "--ci-max", "31536000", expect=("--ci-max", "<= 86400")),
    recommend("recommend-mtbf-1e300", "--mtbf-h", "1e300", expect=("--mtbf-h", "<= 1e+06")),
    recommend("recommend-cooldown-1e300", "--cooldown-s", "1e300", expect=("--cooldown-s",)),
    recommend("recommend-model-missing", "--model", "@D@/nope.json", expect=("nope.json", "does not exist")),
    recommend("recommend-model-directory", "--model", "@D@", expect=("not a file",)),
    # ---- model files (read by recommend, promote, run --check, evaluate --dry-run)
    model("model-empty", "", "not valid JSON"),
    model("model-binary", BINARY, "not valid JSON"),
    model("model-json-list", "[1, 2, 3]", "not a khaos model"),
    model("model-wrong-schema", M(schema="other"), "not a khaos model"),
    model("model-schema-version-3", M(schema_version=3), "schema version 3"),
    model("model-coef-nan", M(**k("recovery.physics.coef.0", NAN)), "recovery.physics.coef[0]", "finite"),
    model("model-coef-null", M(**k("recovery.physics.coef.0", None)), "recovery.physics.coef[0]"),
    model("model-coef-string", M(**k("latency.physics.coef.0", "12")), "latency.physics.coef[0]: '12' is not a number"),
    model(
        "model-intercept-huge",
        Edit("model", k("latency.physics.intercept", 12345.678), sub=("12345.678", "1e999")),
        "latency.physics.intercept",
        "finite",
    ),
    model(
        "model-all-nan",
        M(**k("recovery.physics.coef", [NAN, NAN, NAN], "recovery.physics.intercept", NAN)),
        "recovery.physics",
    ),
    model("model-features-3", M(**k("recovery.physics.features", 3)), "recovery.physics.features"),
    model("model-features-unknown", M(**k("recovery.physics.features.0", "rm -rf")), "unknown feature"),
    model("model-coef-count", M(**k("recovery.physics.coef", [1.0])), "coefficients"),
    model("model-negative-physics-coef", M(**k("recovery.physics.coef.0", -5.0)), "recovery.physics", "negative"),
    model("model-ranges-list", M(ranges=[]), "ranges"),
    model("model-ranges-inverted", M(**k("ranges.ci_s", [12.0, 4.0])), "ranges", "ci_s"),
    model("model-ranges-nan", M(**k("ranges.rate", [NAN, 3000.0])), "ranges.rate"),
    model("model-modes-empty", M(**k("ranges.modes", [])), "ranges.modes"),
    model("model-downtime-negative", M(**k("recovery.physics.constants.downtime_s.process", -1.0)), "downtime_s"),
    model("model-capacity-zero", M(**k("latency.physics.constants.capacity", 0.0)), "capacity"),
    model("model-missing-recovery", M(recovery=DROP), "recovery"),
    model("model-unknown-key", M(surprise=1), "surprise"),
    model("model-duplicate-key", '{"schema": "khaos-model", "schema": "khaos-model"}', "duplicate", "schema"),
    model("model-deep-json", "[" * 100000 + "]" * 100000, "JSON"),
    Case(
        "promote-new-nan-model",
        ["promote", "@D@/bad.json", "--to", "@D@/current.json"],
        {"bad.json": M(**k("recovery.physics.coef.0", NAN))},
        ("bad.json", "finite"),
    ),
    Case("promote-new-missing", ["promote", "@D@/none.json", "--to", "@D@/current.json"], expect=("none.json",)),
    Case(
        "promote-to-garbage",
        ["promote", "@D@/model.json", "--to", "@D@/current.json"],
        {"current.json": "garbage"},
        ("current.json", "JSON"),
    ),
    Case("promote-to-directory", ["promote", "@D@/model.json", "--to", "@D@"], expect=("not a file",)),
    Case("promote-to-proc", ["promote", "@D@/model.json", "--to", "/proc/khaos/model.json"], expect=("/proc/khaos",)),
    Case(
        "promote-to-under-a-file",
        ["promote", "@D@/model.json", "--to", "@D@/good.txt/model.json"],
        expect=("good.txt",),
    ),
    Case(
        "run-check-nan-model",
        ["run", "--check", "@D@/daemon.yml"],
        {"model.json": M(**k("recovery.physics.coef.0", NAN))},
        ("model", "model.json", "finite"),
    ),
    Case(
        "evaluate-garbage-model",
        ["evaluate", "@D@/evaluation.yml", "--dry-run"],
        {"model.json": "{garbage"},
        ("khaos.model", "model.json"),
    ),
    # ---- profile results (khaos fit)
    fit("fit-missing", None, "nope.csv", name="nope.csv"),
    fit("fit-directory", None, "subdir", name="subdir"),
    fit("fit-empty", "", "results.csv"),
    fit("fit-binary", BINARY, "results.csv"),
    fit("fit-missing-columns", "a,b\n1,2\n", "results.csv", "lacks column"),
    fit("fit-header-only", "ci_s,rate,mode,recovered,recovery_s,latency_p99_ms\n", "too few"),
    fit(
        "fit-all-text",
        "ci_s,rate,mode,recovered,recovery_s,latency_p99_ms\n" + "x,y,z,w,v,u\n" * 10,
        "line 2",
        "mode 'z'",
    ),
    fit(
        "fit-all-nan",
        "ci_s,rate,mode,recovered,recovery_s,latency_p99_ms\n" + "nan,inf,process,true,nan,nan\n" * 8,
        "too few",
    ),
    fit("fit-parquet-garbage", "not parquet", "bad.parquet", name="bad.parquet"),
    fit("fit-recovery-1e300", results(1, recovery_s="1e300"), "line 3", "recovery_s 1e+300", "(0, 1e+06] s"),
    fit("fit-recovery-negative", results(1, recovery_s="-4"), "line 3", "recovery_s -4"),
    fit("fit-rate-1e308", results(0, rate="1e308"), "line 2", "rate 1e+308", "events/s"),
    fit("fit-rate-1e9", results(4, rate="1e9"), "line 6", "rate 1e+09"),
    fit("fit-rate-zero", results(0, rate="0"), "line 2", "rate 0"),
    fit("fit-interval-tiny", results(0, ci_s="0.001"), "line 2", "ci_s 0.001", "[0.01, 86400] s"),
    fit("fit-interval-a-year", results(0, ci_s="31536000"), "line 2", "ci_s"),
    fit("fit-latency-1e300", results(2, latency_p99_ms="1e300"), "line 4", "latency_p99_ms"),
    fit("fit-capacity-1e12", results(0, capacity="1e12"), "line 2", "capacity 1e+12"),
    fit("fit-running-1e300", results(0, running_s="1e300"), "line 2", "running_s"),
    fit("fit-mode-unknown", results(3, mode="teleport"), "line 5", "mode 'teleport'", "process, host"),
    fit("fit-mode-network", results(0, mode="Network "), "line 2", "'Network '"),
    fit("fit-capacity-nan", None, "--capacity", argv=["--capacity", "nan"], name="results.csv"),
    fit("fit-capacity-negative", None, "--capacity", argv=["--capacity", "-1"], name="results.csv"),
    fit("fit-capacity-1e300", None, "--capacity", "<= 1e+07", argv=["--capacity", "1e300"], name="results.csv"),
    Case("fit-out-directory", ["fit", "@D@/results.csv", "--out", "@D@"], expect=("--out", "directory")),
    Case("fit-out-proc", ["fit", "@D@/results.csv", "--out", "/proc/khaos/model.json"], expect=("/proc/khaos",)),
    Case("fit-out-under-file", ["fit", "@D@/results.csv", "--out", "@D@/good.txt/m.json"], expect=("good.txt",)),
    Case(
        "fit-plot-directory",
        ["fit", "@D@/results.csv", "--out", "@D@/m.json", "--plot", "@D@"],
        expect=("--plot", "directory"),
    ),
    # ---- traces (workload points / window; experiments and evaluations read them too)
    points("trace-missing", None, "nope.txt", name="nope.txt"),
    points("trace-directory", None, "subdir", name="subdir"),
    points("trace-empty", "", "no values"),
    points("trace-binary", BINARY, "bad-trace.txt"),
    points("trace-utf16", UTF16, "bad-trace.txt"),
    points("trace-text", "100\nfast\n", "line 2", "fast"),
    points("trace-negative", "100\n-5\n", "line 2", "negative"),
    points("trace-nan", "100\nnan\n", "line 2"),
    points("trace-huge", "100\n1e999\n", "line 2"),
    points("trace-csv-bad-header", "time,value\n1,2\n", "header"),
    points("trace-csv-t-decreasing", "t,rate\n10,1\n5,2\n", "line 3", "increase"),
    points("trace-csv-t-nan", "t,rate\nnan,1\n", "line 2"),
    points("trace-csv-columns", "t,rate\n1,2,3\n", "line 2", "columns"),
    points("trace-csv-huge-gap", "t,rate\n0,1\n1000000000000000,2\n", "line 3", "seconds"),
    points("trace-shorter-than-window", "1\n2\n3\n", "window"),
    Case("points-count-zero", ["workload", "points", "@D@/trace.txt", "--count", "0"], expect=("count",)),
    Case(
        "points-count-1e20",
        ["workload", "points", "@D@/trace.txt", "--count", "99999999999999999999"],
        expect=("count", "<= 1000"),
    ),
    Case(
        "window-before-1e20",
        [
            "workload",
            "window",
            "@D@/trace.txt",
            "--center",
            "10",
            "--before",
            "99999999999999999999",
            "--out",
            "@D@/w.txt",
        ],
        expect=("--before", "<= 10000000"),
    ),
    Case("points-window-negative", ["workload", "points", "@D@/trace.txt", "--window", "-60"], expect=("window",)),
    Case(
        "points-min-distance-negative",
        ["workload", "points", "@D@/trace.txt", "--min-distance", "-1"],
        expect=("min_distance",),
    ),
    Case(
        "window-center-negative",
        ["workload", "window", "@D@/trace.txt", "--center", "-1", "--out", "@D@/w.txt"],
        expect=("center",),
    ),
    Case(
        "window-center-beyond",
        ["workload", "window", "@D@/trace.txt", "--center", "100000", "--out", "@D@/w.txt"],
        expect=("center",),
    ),
    Case(
        "window-before-negative",
        ["workload", "window", "@D@/trace.txt", "--center", "10", "--before", "-5", "--out", "@D@/w.txt"],
        expect=("before",),
    ),
    Case(
        "window-out-directory",
        ["workload", "window", "@D@/trace.txt", "--center", "100", "--out", "@D@"],
        expect=("--out", "directory"),
    ),
    Case(
        "window-out-proc",
        ["workload", "window", "@D@/trace.txt", "--center", "100", "--out", "/proc/khaos/w.txt"],
        expect=("/proc/khaos",),
    ),
    Case(
        "record-seconds-nan",
        ["workload", "record", "--rest", "http://127.0.0.1:1", "--seconds", "nan", "--out", "@D@/rec.csv"],
        expect=("--seconds",),
    ),
    Case(
        "record-rest-not-a-url",
        ["workload", "record", "--rest", "not a url", "--seconds", "10", "--out", "@D@/rec.csv"],
        expect=("--rest", "not a url"),
    ),
    Case(
        "record-seconds-1e11",
        ["workload", "record", "--rest", "http://127.0.0.1:1", "--seconds", "1e11", "--out", "@D@/rec.csv"],
        expect=("--seconds", "<= 10000000"),
    ),
    Case(
        "record-max-records-1e20",
        [
            "workload",
            "record",
            "--bootstrap",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--seconds",
            "10",
            "--max-records",
            "99999999999999999999",
            "--out",
            "@D@/rec.parquet",
        ],
        expect=("--max-records", "between 1 and 100000000"),
    ),
    Case(
        "record-out-directory",
        ["workload", "record", "--rest", "http://127.0.0.1:1", "--seconds", "10", "--out", "@D@"],
        expect=("--out", "directory"),
    ),
    # ---- the daemon config (khaos run --check)
    Case("run-check-missing-file", ["run", "--check", "@D@/none.yml"], expect=("none.yml", "no such")),
    Case("run-check-directory", ["run", "--check", "@D@"], expect=("not a regular file",)),
    run_check("run-check-empty", "", "daemon.yml", "top level"),
    run_check("run-check-list", "- job\n- flink\n", "daemon.yml", "top level", "mapping"),
    run_check("run-check-binary", BINARY, "daemon.yml", "UTF-8"),
    run_check("run-check-nul", "job: a\x00b\n", "daemon.yml"),
    run_check("run-check-malformed", "job: [unclosed\n", "daemon.yml", "malformed"),
    run_check("run-check-python-tag", "job: !!python/object/apply:os.system [id]\n", "daemon.yml"),
    run_check("run-check-deep-list", DEEP_LIST, "daemon.yml", "nested"),
    run_check("run-check-deep-map", DEEP_MAP, "daemon.yml", "nested"),
    run_check("run-check-too-large", "# " + "x" * (1 << 20) + "\n", "daemon.yml", "too large"),
    run_check("run-check-duplicate-key", yaml.safe_dump(DAEMON) + "job: other\n", "daemon.yml", "duplicate", "job"),
    run_check("run-check-unknown-key", D(bogus=1), "bogus", "unknown field"),
    run_check("run-check-unicode-key", D(**{"jöb": "x"}), "jöb", "unknown field"),
    run_check("run-check-job-missing", D(job=DROP), "job", "missing"),
    run_check("run-check-job-number", D(job=5), "job", "not a string"),
    run_check("run-check-job-date", "job: 2024-01-01\n", "job"),
    run_check("run-check-job-slash", D(job="../../etc/passwd"), "job", "../../etc/passwd"),
    run_check("run-check-rest-url-not-a-url", D(**k("flink.rest_url", "not a url")), "flink.rest_url"),
    run_check("run-check-rest-url-ftp", D(**k("flink.rest_url", "ftp://10.0.0.1:8081")), "flink.rest_url"),
    run_check("run-check-rest-url-bad-port", D(**k("flink.rest_url", "http://10.0.0.1:99999")), "flink.rest_url"),
    run_check("run-check-flink-list", D(flink=[1, 2]), "flink", "mapping"),
    run_check("run-check-timeout-nan", D(**k("flink.timeout_s", NAN)), "flink.timeout_s", "finite"),
    run_check("run-check-timeout-string", D(**k("flink.timeout_s", "10")), "flink.timeout_s", "not a number"),
    run_check("run-check-timeout-huge", D(**k("flink.timeout_s", 1e300)), "flink.timeout_s"),
    run_check("run-check-limits-missing", D(limits=DROP), "limits", "missing"),
    run_check("run-check-latency-nan", D(**k("limits.latency_ms", NAN)), "limits.latency_ms", "finite"),
    run_check("run-check-latency-negative-inf", D(**k("limits.latency_ms", -INF)), "limits.latency_ms"),
    run_check("run-check-latency-1e300", D(**k("limits.latency_ms", 1e300)), "limits.latency_ms", "<= 8.64e+07"),
    run_check("run-check-recovery-1e300", D(**k("limits.recovery_s", 1e300)), "limits.recovery_s", "<= 1e+06"),
    run_check("run-check-ci-min-tiny", D(**k("ci.min", 0.001)), "ci.min", ">= 0.01"),
    run_check("run-check-recovery-fullwidth", D(**k("limits.recovery_s", "２０")), "limits.recovery_s"),
    run_check(
        "run-check-inventory-missing",
        D(inventory="nowhere.yml", realize={"mode": "restart"}),
        "inventory",
        "nowhere.yml",
    ),
    run_check("run-check-restart-no-inventory", D(inventory=DROP, realize={"mode": "restart"}), "inventory", "missing"),
    # ---- --check verifies what the config names: the inventory is there and Ansible parses it
    run_check("run-check-pace-inventory-missing", D(inventory="nowhere.yml"), "inventory", "nowhere.yml", "not exist"),
    Case(
        "run-check-advisor-inventory-missing",
        ["run", "--check", "--advisor", "@D@/daemon.yml"],
        {"daemon.yml": D(inventory="nowhere.yml")},
        ("inventory", "nowhere.yml", "does not exist"),
    ),
    Case(
        "run-check-inventory-binary",
        ["run", "--check", "@D@/daemon.yml"],
        {"inventory.yml": BINARY},
        ("inventory", "inventory.yml", "not an Ansible inventory"),
    ),
    Case(
        "run-check-restart-inventory-binary",
        ["run", "--check", "@D@/daemon.yml"],
        {"inventory.yml": bytes(range(128, 256)) * 8, "daemon.yml": D(realize={"mode": "restart"})},
        ("inventory", "not an Ansible inventory"),
    ),
    Case(
        "run-check-inventory-malformed-yaml",
        ["run", "--check", "@D@/daemon.yml"],
        {"inventory.yml": "all:\n  hosts: {jm: [unclosed\n"},
        ("inventory", "not an Ansible inventory", "YAML"),
    ),
    Case(
        "run-check-inventory-malformed-ini",
        ["run", "--check", "@D@/daemon.yml"],
        {"daemon.yml": D(inventory="hosts.ini"), "hosts.ini": "[jm\nhost\n"},
        ("inventory", "hosts.ini", "not an Ansible inventory"),
    ),
    run_check("run-check-realize-mode-bad", D(realize={"mode": "reboot"}), "realize.mode"),
    run_check("run-check-realize-tick-zero", D(realize={"tick_s": 0}), "realize.tick_s"),
    run_check("run-check-model-missing", D(model="modèle.json"), "model", "modèle.json"),
    run_check("run-check-model-newline", D(model="a\nb.json"), "model"),
    run_check("run-check-mode-teleport", D(mode="teleport"), "mode", "teleport"),
    run_check("run-check-mtbf-zero", D(mtbf_h=0), "mtbf_h"),
    run_check("run-check-mtbf-nan", D(mtbf_h=NAN), "mtbf_h"),
    run_check("run-check-state-dir-file", D(state_dir="good.txt"), "state_dir", "good.txt"),
    run_check("run-check-state-dir-proc", D(state_dir="/proc/khaos/state"), "state_dir", "/proc/khaos"),
    run_check("run-check-journal-directory", D(journal="."), "journal", "directory"),
    run_check("run-check-journal-under-file", D(journal="good.txt/j.jsonl"), "journal", "good.txt"),
    run_check("run-check-journal-proc", D(journal="/proc/khaos/j.jsonl"), "journal", "/proc/khaos"),
    run_check("run-check-ci-inverted", D(**k("ci.min", 60, "ci.max", 10)), "ci", "inverted"),
    run_check("run-check-ci-step-zero", D(**k("ci.step", 0)), "ci.step"),
    run_check("run-check-ci-step-tiny", D(**k("ci.step", 1e-7)), "ci.step", "100000"),
    run_check("run-check-ci-max-huge", D(**k("ci.max", 1e300)), "ci."),
    run_check("run-check-dead-band-inf", D(**k("ci.dead_band_s", INF)), "ci.dead_band_s"),
    run_check("run-check-ci-string", D(ci="fast"), "ci", "mapping"),
    run_check("run-check-period-negative", D(**k("loop.period_s", -5)), "loop.period_s"),
    run_check("run-check-period-nan", D(**k("loop.period_s", NAN)), "loop.period_s"),
    run_check("run-check-period-huge", D(**k("loop.period_s", 1e300)), "loop.period_s"),
    run_check("run-check-window-short", D(**k("loop.window_s", 1)), "loop.window_s"),
    run_check("run-check-horizon-zero", D(**k("loop.forecast_horizon_s", 0)), "loop.forecast_horizon_s"),
    run_check("run-check-port-huge", D(**k("metrics.port", 99999999999999999999)), "metrics.port"),
    run_check("run-check-port-float", D(**k("metrics.port", 80.5)), "metrics.port"),
    run_check("run-check-metrics-true", D(metrics=True), "metrics"),
    run_check("run-check-reconfigure-timeout-zero", D(**k("reconfigure.timeout_s", 0)), "reconfigure.timeout_s"),
    run_check("run-check-log-level", D(**k("log.level", "loud")), "log.level"),
    # ---- the experiment (khaos profile --dry-run)
    profile("profile-empty", "", "experiment.yml", "top level"),
    profile("profile-deep", DEEP_LIST, "experiment.yml", "nested"),
    profile("profile-duplicate-key", "name: a\nname: b\n", "duplicate", "name"),
    profile("profile-unknown-key", X(surprise=1), "surprise"),
    profile("profile-jar-missing", X(**k("job.jar", "missing.jar")), "job.jar"),
    profile("profile-jar-directory", X(**k("job.jar", "subdir")), "job.jar"),
    profile("profile-parallelism-nan", X(**k("job.parallelism", NAN)), "job.parallelism"),
    profile("profile-intervals-empty", X(checkpoint_intervals=[]), "checkpoint_intervals"),
    profile("profile-intervals-nan", X(checkpoint_intervals=[NAN]), "checkpoint_intervals"),
    profile("profile-intervals-zero", X(checkpoint_intervals=[0]), "checkpoint_intervals"),
    profile("profile-intervals-duplicate", X(checkpoint_intervals=[5, 5]), "checkpoint_intervals", "duplicates"),
    profile("profile-intervals-string", X(checkpoint_intervals="5"), "checkpoint_intervals"),
    profile("profile-rates-empty", X(**k("workload.rates", [])), "workload.rates"),
    profile("profile-rates-nan", X(**k("workload.rates", [1000, NAN])), "workload.rates"),
    profile("profile-rates-string", X(**k("workload.rates", "fast")), "workload.rates"),
    profile("profile-rates-1e9", X(**k("workload.rates", [1000, 1e9])), "workload.rates[1]", "<= 1e+07"),
    profile(
        "profile-failure-points-window-huge",
        X(workload={"trace": "trace.txt", "failure_points": {"window": 10**12}}),
        "workload.failure_points.window",
    ),
    profile("profile-workload-empty", X(workload={}), "workload"),
    profile("profile-trace-missing", X(workload={"trace": "nope.txt"}), "workload.trace"),
    profile("profile-trace-garbage", X(workload={"trace": "good.txt"}), "workload.trace"),
    profile(
        "profile-failure-points-zero",
        X(workload={"trace": "trace.txt", "failure_points": {"count": 0}}),
        "workload.failure_points.count",
    ),
    profile("profile-modes-teleport", X(**k("failures.modes", ["teleport"])), "failures.modes"),
    profile("profile-timing", X(**k("failures.timing", "never")), "failures.timing"),
    profile("profile-margin-nan", X(**k("failures.margin_s", NAN)), "failures.margin_s"),
    profile("profile-margin-too-long", X(**k("failures.margin_s", 5)), "failures.margin_s"),
    profile("profile-clusters-list", X(clusters=[1, 2]), "clusters", "mapping"),
    profile("profile-clusters-count-huge", X(**k("clusters.count", 10**30)), "clusters.count"),
    profile("profile-lab-prefix", X(**k("clusters.lab_prefix", "BAD NAME!")), "clusters.lab_prefix"),
    profile("profile-inventory-missing", X(**k("clusters.inventories", ["@D@/nope.yml"])), "clusters.inventories"),
    profile("profile-measurement-fast", X(measurement="fast"), "measurement", "mapping"),
    profile("profile-warmup-nan", X(**k("measurement.warmup_s", NAN)), "measurement.warmup_s"),
    profile("profile-output-file", X(output="@D@/good.txt"), "output", "good.txt"),
    profile("profile-output-proc", X(output="/proc/khaos/out"), "output", "/proc/khaos"),
    profile("profile-out-file", X(), "--out", "good.txt", argv=["--out", "@D@/good.txt"]),
    profile("profile-out-proc", X(), "--out", "/proc/khaos", argv=["--out", "/proc/khaos/out"]),
    profile("profile-kafka-unknown-key", X(kafka={"topic": "x"}), "kafka.topic"),
    profile("profile-kafka-bootstrap-malformed", X(kafka={"bootstrap": "kafka1"}), "kafka.bootstrap", "host:port"),
    profile("profile-kafka-bootstrap-port", X(kafka={"bootstrap": "h:99999"}), "kafka.bootstrap", "h:99999"),
    profile("profile-kafka-format", X(kafka={"format": "avro"}), "kafka.format"),
    profile("profile-kafka-raw-no-recording", X(kafka={"format": "raw"}), "kafka.format", "recording"),
    profile("profile-kafka-recording-missing", X(kafka={"recording": "none.parquet"}), "kafka.recording"),
    profile(
        "profile-kafka-recording-malformed",
        X(workload=DROP, kafka={"recording": "@D@/good.txt"}),
        "kafka.recording",
        "not a readable Parquet file",
    ),
    profile(
        "profile-kafka-recording-and-rates",
        X(kafka={"recording": "@D@/rec.parquet"}),
        "workload",
        "recorded rates",
    ),
    profile("profile-kafka-partitions-zero", X(kafka={"partitions": 0}), "kafka.partitions"),
    profile("profile-kafka-producer-key", X(kafka={"producer": {"lingr.ms": 5}}), "kafka.producer", "lingr.ms"),
    profile("profile-kafka-args-no-topic", X(kafka={}, **k("job.args", ["--rate", "{rate}"])), "job.args", "{topic}"),
    profile(
        "profile-kafka-output-topic-not-passed",
        X(kafka={"output_topic": True}),
        "job.args",
        "{output_topic}",
    ),
    profile("profile-topic-without-kafka", X(**k("job.args", ["--topic", "{topic}"])), "job.args", "kafka section"),
    profile("profile-recovery-rule", X(**k("measurement.recovery", "vibes")), "measurement.recovery"),
    profile("profile-lag-quantile", X(**k("measurement.lag_quantile", 2)), "measurement.lag_quantile"),
    Case(
        "profile-kafka-broker-unreachable",
        ["profile", "@D@/experiment.yml"],
        {"experiment.yml": X(kafka={"bootstrap": "127.0.0.1:1"})},
        ("kafka at 127.0.0.1:1 is unreachable",),
    ),
    # ---- the evaluation (khaos evaluate --dry-run)
    evaluate("evaluate-empty", "", "evaluation.yml", "top level"),
    evaluate("evaluate-deep", DEEP_MAP, "evaluation.yml", "nested"),
    evaluate("evaluate-duplicate-key", yaml.safe_dump(EVALUATION) + "seed: 8\n", "duplicate", "seed"),
    evaluate("evaluate-unknown-key", E(surprise=1), "surprise"),
    evaluate("evaluate-statics-empty", E(statics=[]), "statics"),
    evaluate("evaluate-statics-nan", E(statics=[10, NAN]), "statics"),
    evaluate("evaluate-statics-duplicate", E(statics=[10, 10]), "statics", "duplicates"),
    evaluate("evaluate-limits-missing", E(limits=DROP), "limits"),
    evaluate("evaluate-latency-nan", E(**k("limits.latency_ms", NAN)), "limits.latency_ms"),
    evaluate("evaluate-no-model-no-results", E(**k("khaos.model", DROP)), "khaos"),
    evaluate("evaluate-model-missing", E(**k("khaos.model", "nope.json")), "khaos.model"),
    Case(
        "evaluate-nan-model",
        ["evaluate", "@D@/evaluation.yml", "--dry-run"],
        {"model.json": M(**k("latency.physics.intercept", NAN))},
        ("khaos.model", "finite"),
    ),
    evaluate("evaluate-results-missing", E(**k("khaos.model", DROP, "khaos.results", "nope.csv")), "khaos.results"),
    evaluate("evaluate-results-garbage", E(**k("khaos.model", DROP, "khaos.results", "@D@/good.txt")), "khaos.results"),
    evaluate("evaluate-mode-teleport", E(**k("khaos.mode", "teleport")), "khaos.mode"),
    evaluate("evaluate-start-ci-nan", E(**k("khaos.start_ci_s", NAN)), "khaos.start_ci_s"),
    evaluate("evaluate-ci-unknown-key", E(**k("khaos.ci.teleport", 1)), "khaos.ci", "teleport"),
    evaluate("evaluate-ci-nan", E(**k("khaos.ci.min", NAN)), "khaos.ci.min"),
    evaluate("evaluate-ci-number", E(**k("khaos.ci", 5)), "khaos.ci"),
    evaluate("evaluate-loop-period-negative", E(**k("khaos.loop.period_s", -5)), "khaos.loop.period_s"),
    evaluate("evaluate-first-s-nan", E(**k("failures.first_s", NAN)), "failures.first_s"),
    evaluate("evaluate-first-s-beyond-trace", E(**k("failures.first_s", 1e9)), "failures"),
    evaluate("evaluate-failure-modes", E(**k("failures.modes", ["teleport"])), "failures.modes"),
    evaluate("evaluate-at-nan", E(**k("failures.at", [100, NAN])), "failures.at"),
    evaluate("evaluate-lab-bad-name", E(**k("cluster.lab", "BAD NAME!")), "cluster.lab"),
    evaluate("evaluate-inventory-missing", E(**k("cluster.inventory", "nope.yml")), "cluster.inventory"),
    evaluate("evaluate-tm-memory", E(**k("cluster.tm_memory", "lots")), "cluster.tm_memory"),
    evaluate("evaluate-sample-inf", E(**k("measurement.sample_s", INF)), "measurement.sample_s"),
    evaluate("evaluate-low-above-high", E(**k("workload.low", 3000)), "workload"),
    evaluate("evaluate-high-nan", E(**k("workload.high", NAN)), "workload.high"),
    evaluate("evaluate-high-1e9", E(**k("workload.high", 1e9)), "workload.high", "<= 1e+07"),
    evaluate("evaluate-low-1e308", E(**k("workload.low", 1e308)), "workload.low"),
    evaluate("evaluate-recovery-1e300", E(**k("limits.recovery_s", 1e300)), "limits.recovery_s"),
    evaluate("evaluate-start-ci-above-range", E(**k("khaos.start_ci_s", 100)), "khaos.start_ci_s", "2-30 s"),
    evaluate(
        "evaluate-start-ci-below-range", E(**k("khaos.start_ci_s", 3, "khaos.ci.min", 5)), "khaos.start_ci_s", "5-30"
    ),
    evaluate("evaluate-min-gap-1e300", E(**k("failures.min_gap_s", 1e300)), "failures.min_gap_s"),
    Case(
        "evaluate-results-recovery-1e300",
        ["evaluate", "@D@/evaluation.yml", "--dry-run"],
        {
            "evaluation.yml": E(**k("khaos.model", DROP, "khaos.results", "@D@/bad.csv")),
            "bad.csv": results(1, recovery_s="1e300"),
        },
        ("khaos.results", "line 3", "recovery_s"),
    ),
    Case(
        "evaluate-results-mode-unknown",
        ["evaluate", "@D@/evaluation.yml", "--dry-run"],
        {
            "evaluation.yml": E(**k("khaos.model", DROP, "khaos.results", "@D@/bad.csv")),
            "bad.csv": results(0, mode="kafka-broker"),
        },
        ("khaos.results", "mode 'kafka-broker'"),
    ),
    evaluate("evaluate-trace-missing", E(workload={"trace": "nope.txt"}), "workload.trace"),
    evaluate("evaluate-trace-garbage", E(workload={"trace": "@D@/good.txt"}), "workload.trace"),
    evaluate("evaluate-args-no-trace", E(**k("job.args", ["--rate", "5"])), "job.args"),
    evaluate("evaluate-jar-missing", E(**k("job.jar", "nope.jar")), "job.jar"),
    evaluate("evaluate-name-bad", E(name="bad name!"), "name"),
    evaluate("evaluate-seed-float", E(seed=1.5), "seed"),
    evaluate("evaluate-output-file", E(output="@D@/good.txt"), "output", "good.txt"),
    evaluate("evaluate-output-proc", E(output="/proc/khaos/out"), "output", "/proc/khaos"),
    evaluate("evaluate-out-file", E(), "--out", "good.txt", argv=["--out", "@D@/good.txt"]),
    evaluate("evaluate-out-proc", E(), "--out", "/proc/khaos", argv=["--out", "/proc/khaos/out"]),
    evaluate("evaluate-kafka-bootstrap", E(kafka={"bootstrap": "nohost"}), "kafka.bootstrap", "host:port"),
    evaluate(
        "evaluate-kafka-args-no-topic",
        E(kafka={}, **k("job.args", ["--trace", "{trace}"])),
        "job.args",
        "{topic}",
    ),
    Case(
        "evaluate-kafka-broker-unreachable",
        ["evaluate", "@D@/evaluation.yml"],
        {"evaluation.yml": E(kafka={"bootstrap": "127.0.0.1:1"})},
        ("kafka at 127.0.0.1:1 is unreachable",),
    ),
    # ---- khaos lab: bad names and arguments fail before anything needs root
    Case(
        "evaluate-rescore-not-a-run", ["evaluate", "--rescore", "@D@/subdir"], expect=("not the output of a finished",)
    ),
    Case(
        "evaluate-rescore-a-file", ["evaluate", "--rescore", "@D@/good.txt"], expect=("not the output of a finished",)
    ),
    Case("lab-up-bad-name", ["lab", "up", "--name", "BAD NAME!"], expect=("BAD NAME!",)),
    Case("lab-kill-bad-name", ["lab", "kill", "--name", "BAD NAME!", "x"], expect=("BAD NAME!",)),
    Case("lab-restore-bad-name", ["lab", "restore", "--name", "../../etc", "x"], expect=("../../etc",)),
    Case("lab-kill-unknown-host", ["lab", "kill", "--name", "zzbadin", "zzbadin-1"], expect=("zzbadin-1",)),
    Case("lab-up-hosts-one", ["lab", "up", "--name", "zzbadin", "--hosts", "1"], expect=("--hosts",)),
    Case("lab-kill-at-nan", ["lab", "kill", "--name", "zzbadin", "--at", "nan", "zzbadin-1"], expect=("--at",)),
    Case(
        "lab-kill-at-1e300",
        ["lab", "kill", "--name", "zzbadin", "--at", "1e300", "zzbadin-1"],
        expect=("--at", "within a day"),
    ),
    Case(
        "run-advisor-bad-config",
        ["run", "--advisor", "--once", "@D@/daemon.yml"],
        {"daemon.yml": D(**k("loop.period_s", -5))},
        ("loop.period_s",),
    ),
    # ---- khaos demo: every argument checked before a profile or a lab starts
    Case("demo-bad-name", ["demo", "--name", "BAD NAME!", "--results", "@D@/results.csv"], expect=("BAD NAME!",)),
    Case(
        "demo-low-negative",
        ["demo", "--name", "zzbadin", "--low", "-5", "--results", "@D@/results.csv"],
        expect=("--low",),
    ),
    Case(
        "demo-high-below-low",
        ["demo", "--name", "zzbadin", "--low", "3000", "--high", "1000", "--results", "@D@/results.csv"],
        expect=("--high",),
    ),
    Case("demo-interval-text", ["demo", "--name", "zzbadin", "--interval", "fast"], expect=("--interval",)),
    Case(
        "demo-interval-above-range",
        ["demo", "--name", "zzbadin", "--interval", "1000", "--results", "@D@/results.csv"],
        expect=("--interval", "between 2 and 30"),
    ),
    Case(
        "demo-interval-below-range",
        ["demo", "--name", "zzbadin", "--interval", "1", "--results", "@D@/results.csv"],
        expect=("--interval", "between 2 and 30"),
    ),
    Case(
        "demo-high-1e9",
        ["demo", "--name", "zzbadin", "--high", "1000000000", "--results", "@D@/results.csv"],
        expect=("--high", "10000000"),
    ),
    Case(
        "demo-out-proc",
        ["demo", "--name", "zzbadin", "--out", "/proc/khaos/demo", "--results", "@D@/results.csv"],
        expect=("--out", "/proc/khaos"),
    ),
    Case("demo-results-missing", ["demo", "--name", "zzbadin", "--results", "@D@/nope.csv"], expect=("nope.csv",)),
    Case("demo-profile-garbage", ["demo", "--name", "zzbadin", "--profile", "@D@/good.txt"], expect=("good.txt",)),
    # ---- khaos replay: bounded before anything is generated or sent
    replay("replay-rate-1e300", "--rate", "1e300", expect=("--rate", "must be <= 1e+07")),
    replay("replay-rate-1e9", "--rate", "1e9", expect=("--rate",)),
    replay("replay-rate-zero", "--rate", "0", expect=("--rate", "must be > 0")),
    replay("replay-seconds-1e11", "--seconds", "100000000000", expect=("--seconds", "<= 1e+07")),
    replay("replay-seconds-float", "--seconds", "1e11", expect=("--seconds", "not a whole number")),
    replay("replay-skew-huge", "--skew", "1e9", expect=("--skew", "<= 10")),
    replay("replay-vehicles-huge", "--vehicles", "10000000000", expect=("--vehicles",)),
    replay("replay-campaigns-huge", "--format", "ysb", "--campaigns", "100000000", expect=("--campaigns",)),
    replay("replay-create-huge", "--create", "1000000", expect=("--create",)),
    # ---- khaos dist / bundle / wheelhouse: bad versions and paths fail before any download
    Case("dist-version-traversal", ["dist", "--version", "x/../.."], expect=("version", "x/../..")),
    Case("dist-kafka-version-traversal", ["dist", "kafka", "--version", "../x"], expect=("Kafka version", "../x")),
    Case("dist-version-shell", ["dist", "--version", "2.3.0; rm -rf /"], expect=("version", "rm -rf")),
    Case("dist-s3proxy-version", ["dist", "s3proxy", "--version", "2.x"], expect=("S3Proxy version", "2.x")),
    Case("dist-flink-s3-version", ["dist", "flink-s3", "--version", "../2"], expect=("Flink version", "../2")),
    Case("lab-up-store-hosts-one", ["lab", "up", "--name", "zzbadin", "--hosts", "1", "--store"], expect=("--hosts",)),
    Case("bundle-out-directory", ["bundle", "--out", "@D@"], expect=("--out", "directory")),
    Case("bundle-out-proc", ["bundle", "--out", "/proc/khaos/b.tar"], expect=("/proc/khaos",)),
    Case("bundle-out-under-file", ["bundle", "--out", "@D@/good.txt/b.tar"], expect=("good.txt",)),
    Case(
        "bundle-wheelhouse-file",
        ["bundle", "--out", "@D@/b.tar", "--wheelhouse", "@D@/good.txt"],
        expect=("--wheelhouse", "good.txt"),
    ),
    Case("wheelhouse-out-file", ["wheelhouse", "--out", "@D@/good.txt"], expect=("--out", "good.txt")),
    Case("wheelhouse-out-proc", ["wheelhouse", "--out", "/proc/khaos/wh"], expect=("/proc/khaos",)),
    Case(
        "wheelhouse-requirements-missing",
        ["wheelhouse", "--out", "@D@/wh", "--requirements", "@D@/nope.txt"],
        expect=("nope.txt",),
    ),
]


# ------------------------------------------------------------------------------------------ runner


def _set(doc, path: str, value) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        doc = doc[int(p)] if isinstance(doc, list) else doc.setdefault(p, {})
    last = parts[-1]
    if isinstance(doc, list):
        doc[int(last)] = value
    elif value is DROP:
        doc.pop(last, None)
    else:
        doc[last] = value


def _render(content, bases: dict) -> bytes:
    if isinstance(content, Edit):
        doc = copy.deepcopy(bases[content.kind])
        for path, value in content.changes.items():
            _set(doc, path, value)
        if content.kind == "model":
            text = json.dumps(doc)  # NaN / Infinity as JSON's non-standard literals
        else:
            text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        return (text.replace(*content.sub) if content.sub else text).encode()
    return content if isinstance(content, bytes) else content.encode()


def _prepare(case: Case, root: Path, bases: dict) -> dict:
    """The case's directory with its files; the forkrun job that runs it."""
    d = root / case.id
    d.mkdir()
    (d / "subdir").mkdir()
    files = {
        "daemon.yml": Edit("daemon"),
        "experiment.yml": Edit("experiment"),
        "evaluation.yml": Edit("evaluation"),
        "model.json": Edit("model"),
        "results.csv": PROFILE.read_bytes(),
        "trace.txt": TRACE,
        "trace.csv": TRACE_CSV,
        "inventory.yml": INVENTORY,
        "job.jar": b"PK\x03\x04 not really a jar",
        "good.txt": "a regular file\n",
        "rec.parquet": RECORDING,
        **case.files,
    }
    for name, content in files.items():
        data = _render(content, bases)
        (d / name).write_bytes(data.replace(b"@D@", str(d).encode()))
    # belt and braces: without the lab's tools on PATH no lab can start, and pip has no index
    env = {**os.environ, "PATH": str(d / "no-bin"), "HOME": str(d), "KHAOS_CACHE": str(d / "cache")}
    env.update(PIP_NO_INDEX="1", PYTHONDONTWRITEBYTECODE="1")
    argv = [a.replace("@D@", str(d)) for a in case.argv]
    return {"argv": argv, "env": env, "cwd": str(REPO_ROOT), "out": str(root / f"{case.id}.result")}


def _result(job: dict) -> subprocess.CompletedProcess:
    rc = Path(f"{job['out']}.rc")
    code = int(rc.read_text()) if rc.exists() else -1
    text = {s: Path(f"{job['out']}.{s}").read_text(errors="replace") for s in ("out", "err")}
    if code == -9:
        text["err"] += "\ntimed out after 120 s"
    return subprocess.CompletedProcess(job["argv"], code, text["out"], text["err"])


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Every selected case run once, in parallel: id -> CompletedProcess."""
    from khaos_controller.model import fit, store

    root = tmp_path_factory.mktemp("battery")
    good_model = store.save(fit.fit(fit.load_results(PROFILE)), root / "model.json")
    bases = {
        "daemon": DAEMON,
        "experiment": EXPERIMENT,
        "evaluation": EVALUATION,
        "model": json.loads(good_model.read_text()),
    }
    wanted = {
        item.callspec.params["case"].id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    cases = [c for c in GOOD + BAD if c.id in wanted]
    jobs = [_prepare(c, root, bases) for c in cases]
    (root / "jobs.json").write_text(json.dumps(jobs))
    # one interpreter imports khaos once and forks a child per case (tests/support/forkrun.py)
    subprocess.run(
        [sys.executable, str(FORKRUN), str(root / "jobs.json"), "--parallel", "4"], check=True, cwd=REPO_ROOT
    )
    return {c.id: _result(j) for c, j in zip(cases, jobs)}


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_is_one_line_and_exit_1(case, outcomes):
    r = outcomes[case.id]
    shown = f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-3000:]}"
    assert "Traceback" not in r.stdout + r.stderr, shown
    assert r.returncode == 1, shown
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("khaos: error: "), shown
    for part in case.expect:
        assert part in lines[0], f"{part!r} not in the error line\n{shown}"


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_good_input_passes(case, outcomes):
    r = outcomes[case.id]
    shown = f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-3000:]}"
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, shown
    for part in case.expect:
        assert part in r.stdout, f"{part!r} not in the output\n{shown}"
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("khaos: warning: ")]
    for part in case.warn:
        assert any(part in ln for ln in warnings), f"no one-line warning with {part!r}\n{shown}"


def test_the_battery_covers_every_file_type_and_verb():
    ids = [c.id for c in BAD]
    assert len(ids) == len(set(ids + [c.id for c in GOOD])) - len(GOOD), "duplicate case ids"
    assert len(BAD) >= 120
    verbs = {c.argv[0] for c in BAD if c.argv}
    assert verbs >= {
        "run",
        "profile",
        "evaluate",
        "recommend",
        "promote",
        "fit",
        "workload",
        "lab",
        "dist",
        "bundle",
        "wheelhouse",
    }
    for kind in ("daemon.yml", "experiment.yml", "evaluation.yml", "model.json", "results.csv", "bad-trace.txt"):
        assert sum(kind in c.files for c in BAD) >= 5, kind
