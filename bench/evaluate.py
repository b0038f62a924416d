#!/usr/bin/env python3
"""Benchmark: Khaos against static checkpoint intervals, the documented default evaluation.

Runs `khaos evaluate examples/evaluate.yml`: 3 static copies (10, 30, 60 s) and one Khaos-managed
copy of the sample job on one 3-host lab cluster, the same 25-minute day-shaped trace with bursts
(seed 7), the same 6 failures (4 TaskManager kills, 2 host kills). About 30 minutes in all.
Prints the table, where the report is, and LAST, per Khaos copy, the ratio
(Khaos violation seconds) / (best static copy's violation seconds), and the ratio to the median
static copy. Targets: <= 0.5 and <= 0.25. docs/evaluation.md explains the figures.
Run as root: .venv/bin/python bench/evaluate.py [--config FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from khaos_controller.evaluate import config, report, results, runner
from khaos_controller.infra.lab import require_root


def verdict(ratio: float | None, target: float) -> str:
    if ratio is None:
        return "n/a (the static copy had no violation second)"
    return f"{ratio:.2f} (target <= {target:g}: {'PASS' if ratio <= target else 'FAIL'})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/evaluate.yml")
    ap.add_argument("--out", help="output directory (default: the config's output)")
    args = ap.parse_args()
    require_root()
    ev = config.load(args.config)
    if args.out:
        ev.output = Path(args.out).resolve()
    started = datetime.datetime.now(datetime.UTC)
    result = runner.Runner(ev).run()
    s, table = result["summary"], result["table"]
    print(
        f"\nbench/evaluate.py, {started:%Y-%m-%d %H:%M} UTC, {results.machine()}, "
        f"{(datetime.datetime.now(datetime.UTC) - started).total_seconds() / 60:.1f} min"
    )
    print(report.markdown_table(table))
    print("failures: " + "; ".join(f"{f['mode']} at {f['t']:g} s" for f in s["failures"]))
    print(
        "audits: "
        + ", ".join(
            f"{c} {a['records']} records, lost {a['lost']}, dup {a['duplicated']}" for c, a in s["audits"].items()
        )
    )
    print(f"report: {result['paths']['html']}")
    for copy, k in s["khaos"].items():
        print(f"{copy} / median static ({s['median_static_violation_s']:g} s): {verdict(k['ratio_median'], 0.25)}")
        print(
            f"{copy} violation s / best static ({s['best_static']}, {s['best_static_violation_s']:g} s): "
            f"{k['violation_s']:g} s -> ratio {verdict(k['ratio_best'], 0.5)}"
        )
        ok = k["a_le_best_static"] and k["b_le_best_static"] and (k["a_plus_b_ratio_median"] or 0) <= 0.5
        print(
            f"{copy} against the statics: (a) latency violation s {k['latency_violation_s']:g} <= best static "
            f"{s['best_static_latency_violation_s']:g}: {k['a_le_best_static']}; (b) recovery excess s "
            f"{k['recovery_excess_s']:g} <= best static {s['best_static_recovery_excess_s']:g}: "
            f"{k['b_le_best_static']}; (a)+(b) / median static ({s['median_static_a_plus_b']:g}): "
            f"{k['a_plus_b_ratio_median']} (<= 0.5) -> {'PASS' if ok else 'FAIL'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
