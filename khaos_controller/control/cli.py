"""`khaos run` and `khaos recommend`."""

from __future__ import annotations

import sys

from .planner import add_cli as add_recommend


def _run(args) -> None:
    from .config import load_config

    # the config and every file it names, before the daemon (and its imports) start; outside advisor
    # mode the inventory must exist too
    load_config(args.config, require_inventory=not args.advisor)
    from .daemon import run

    rc = run(args.config, advisor=args.advisor, once=args.once, check=args.check)
    if rc:
        sys.exit(rc)


def add_cli(subparsers) -> None:
    """Register ``khaos run CONFIG [--advisor] [--once] [--check]`` and ``khaos recommend``."""
    p = subparsers.add_parser(
        "run",
        help="run the runtime controller: keep a job's checkpoint interval inside its latency and recovery limits",
    )
    p.add_argument("config", help="daemon config (YAML), e.g. examples/controller.yml")
    p.add_argument(
        "--advisor", action="store_true", help="recommend only: journal, log and export, never change the job"
    )
    p.add_argument("--once", action="store_true", help="one iteration (collect one window, decide, act), then exit")
    p.add_argument("--check", action="store_true", help="check the config and the model, print one line and exit")
    p.set_defaults(func=_run)
    add_recommend(subparsers)
