"""`khaos run` and `khaos recommend`."""

from __future__ import annotations

import json
import sys

from ..cli import field_number, finite_float, number
from ..errors import KhaosError
from ..schema import MAX_INTERVAL_S, MAX_RATE
from .config import CISection, DaemonFile, Limits


def _run(args) -> None:
    from ..errors import KhaosError
    from .config import check_inventory, exposed_metrics, load_config, metrics_clash

    # the config and every file it names (outside advisor mode, restart needs an inventory), before the
    # daemon (and its imports) start
    cfg = load_config(args.config, require_inventory=not args.advisor)
    hosts = check_inventory(cfg)
    clash = metrics_clash(cfg)
    if clash:
        raise KhaosError(clash)
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


def _recommend(args) -> None:
    from ..model import store
    from .explain import explain
    from .planner import recommend
    from .policy import Policy

    if args.l_max is None or args.r_max is None:
        missing = " and ".join(n for n, v in (("--l-max", args.l_max), ("--r-max", args.r_max)) if v is None)
        raise KhaosError(f"missing limit(s) {missing}: both the latency (ms) and recovery (s) limits are needed")
    policy = Policy(
        l_max_ms=args.l_max,
        r_max_s=args.r_max,
        ci_min=args.ci_min,
        ci_max=args.ci_max,
        ci_step=args.step,
        dead_band_s=args.dead_band,
        cooldown_s=args.cooldown_s,
        mtbf_h=args.mtbf_h,
        mode=args.mode,
        slack_s_per_h=args.slack_s_per_h,
        hysteresis=args.hysteresis,
    )
    rec = recommend(store.load(args.model), args.rate, args.current_ci, policy, last_change_ts=args.last_change_ts)
    if args.json:
        d = rec.to_dict()
        if not args.all_candidates:
            d["candidates"] = len(rec.candidates)
        print(json.dumps(d, indent=1))
    else:
        print(explain(rec))
        print(f"action: {rec.action}  ci: {rec.ci_s:g} s  alert: {str(rec.alert).lower()}")


def add_recommend(subparsers) -> None:
    """Register ``khaos recommend`` on the ``khaos`` sub-command parser (defaults and bounds: the daemon
    schema's; the rate and the current interval: the physical bounds of khaos_controller/schema.py)."""
    p = subparsers.add_parser("recommend", help="recommend a checkpoint interval from a fitted model and two limits")
    p.add_argument("--model", required=True, help="model file written by khaos fit")
    p.add_argument("--rate", type=number(0, MAX_RATE, open_low=True), required=True, help="input rate, events/s")
    p.add_argument(
        "--current-ci",
        type=number(0, MAX_INTERVAL_S, open_low=True),
        required=True,
        help="the job's current checkpoint interval, s",
    )
    p.add_argument("--l-max", type=field_number(Limits, "latency_ms"), help="p99 latency limit, ms (required)")
    p.add_argument("--r-max", type=field_number(Limits, "recovery_s"), help="recovery time limit, s (required)")
    _rule_flags(p)
    p.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    p.add_argument("--all-candidates", action="store_true", help="with --json: include every candidate")
    p.set_defaults(func=_recommend)


def _rule_flags(p) -> None:
    """The flags of the planner's rules and the last change, with the daemon schema's defaults and bounds."""
    from .policy import Policy

    d = Policy(l_max_ms=1.0, r_max_s=1.0)
    p.add_argument(
        "--ci-min",
        type=field_number(CISection, "min"),
        default=d.ci_min,
        help=f"shortest candidate interval, s (default {d.ci_min:g})",
    )
    p.add_argument(
        "--ci-max",
        type=field_number(CISection, "max"),
        default=d.ci_max,
        help=f"longest candidate interval, s (default {d.ci_max:g})",
    )
    p.add_argument(
        "--step",
        type=field_number(CISection, "step"),
        default=d.ci_step,
        help=f"candidate spacing, s (default {d.ci_step:g})",
    )
    p.add_argument(
        "--dead-band",
        type=field_number(CISection, "dead_band_s"),
        default=d.dead_band_s,
        help=f"do not move for less than this, s (default {d.dead_band_s:g})",
    )
    p.add_argument(
        "--mtbf-h",
        type=field_number(DaemonFile, "mtbf_h"),
        default=d.mtbf_h,
        help=f"mean time between failures for Young/Daly, h (default {d.mtbf_h:g})",
    )
    p.add_argument(
        "--slack-s-per-h",
        type=field_number(CISection, "slack_s_per_h"),
        default=d.slack_s_per_h,
        help="among intervals meeting both limits, the longest within this many expected violation s per hour "
        f"of the least (default {d.slack_s_per_h:g})",
    )
    p.add_argument(
        "--hysteresis",
        type=field_number(CISection, "hysteresis"),
        default=d.hysteresis,
        help="when no interval meets both limits: leave --current-ci only for one expected to cause more than "
        f"this fraction fewer violation seconds (default {d.hysteresis:g})",
    )
    p.add_argument("--mode", default=d.mode, help=f"failure mode to plan for: process or host (default {d.mode})")
    p.add_argument(
        "--last-change-ts", type=finite_float, help="epoch s of the last interval change (enables the cooldown)"
    )
    p.add_argument(
        "--cooldown-s",
        type=field_number(CISection, "cooldown_s"),
        default=d.cooldown_s,
        help=f"no change within this long after the last one (default {d.cooldown_s:g})",
    )
