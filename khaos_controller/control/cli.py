"""`khaos run` and `khaos recommend`."""

from __future__ import annotations

import sys

from .planner import add_cli as add_recommend


def _run(args) -> None:
    from .config import check_inventory, exposed_metrics, load_config

    # the config and every file it names (outside advisor mode, restart needs an inventory), before the
    # daemon (and its imports) start
    cfg = load_config(args.config, require_inventory=not args.advisor)
    hosts = check_inventory(cfg)
    warning = exposed_metrics(cfg)
    if warning:
        print(f"khaos: warning: {warning}", file=sys.stderr)
    if args.check:
        inventory = f", inventory {cfg.inventory} ({hosts} hosts)" if cfg.inventory else ""
        print(
            f"{cfg.path}: ok: job {cfg.job!r} on {cfg.rest_url}, limits {cfg.limits.latency_ms:g} ms / "
            f"{cfg.limits.recovery_s:g} s, CI {cfg.ci.min:g}-{cfg.ci.max:g} s, model {cfg.model_path} "
            f"({cfg.model.data_hash[:19]}){inventory}"
        )
        _flink(cfg)
        return
    from .daemon import run

    rc = run(cfg, advisor=args.advisor, once=args.once)
    if rc:
        sys.exit(rc)


def _flink(cfg) -> None:
    """One line: Flink's version and the job's live copies, or (on stderr) that Flink does not answer."""
    from ..flink.client import FlinkClient, FlinkError

    client = FlinkClient(cfg.rest_url, timeout=min(cfg.file.flink.timeout_s, 10.0))
    try:
        version = client.overview().get("flink-version", "?")
        live = len(client.live_jobs(cfg.job))
    except FlinkError as e:
        print(f"khaos: warning: {e}: the daemon does not start until Flink answers", file=sys.stderr)
        return
    need = "" if live == 1 else " (the daemon needs exactly one to start)"
    print(f"flink: {client.url}: Flink {version}, {live} live job(s) named {cfg.job!r}{need}")


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
    p.add_argument(
        "--check",
        action="store_true",
        help="check the config and every file it names, say whether Flink answers, and exit",
    )
    p.set_defaults(func=_run)
    add_recommend(subparsers)
