"""``khaos replay`` and ``khaos workload record --bootstrap``: the command-line side of record and replay."""

from __future__ import annotations

import argparse
import threading
import time

from ..errors import KhaosError


def _epoch_ms(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not epoch milliseconds (a whole number)") from None
    if not 10**12 <= value < 10**14:
        raise argparse.ArgumentTypeError(f"{text!r} is not epoch milliseconds (13 digits, e.g. 1796083838000)")
    return value


def record(args) -> None:
    """``khaos workload record --bootstrap B --topic T --seconds N --out FILE [--max-records M]``."""
    from ..progress import Bar
    from ..schema import out_file
    from ..signals import on_stop
    from . import recording

    if not args.topic:
        raise KhaosError("--topic is required with --bootstrap (the topic to record)")
    if args.job or args.source:
        raise KhaosError("--job and --source select a Flink job's source (--rest), not a Kafka topic")
    out_file(args.out, "--out")
    max_records = recording.DEFAULT_MAX_RECORDS if args.max_records is None else args.max_records
    if not 1 <= max_records <= recording.MAX_RECORDS:
        raise KhaosError(f"--max-records must be between 1 and {recording.MAX_RECORDS}, got {max_records}")
    stop = threading.Event()
    with Bar(int(args.seconds), f"recording {args.topic}") as bar, on_stop(lambda _s: stop.set()):
        rec = recording.record(
            args.bootstrap,
            args.topic,
            args.seconds,
            max_records=max_records,
            stop=stop,
            progress=lambda done, _n: bar.update(done),
        )
    recording.save(rec, args.out)
    kept = f"all {rec.kept} kept" if not rec.sampled else f"a uniform sample of {rec.kept} kept"
    print(
        f"{rec.records} records of topic {rec.topic} in {rec.seconds} s (mean {rec.records / rec.seconds:,.0f}/s, "
        f"peak {int(rec.rates.max()):,}/s; {kept}){' [stopped early]' if stop.is_set() else ''} -> {args.out}"
    )


def _replay(args) -> None:
    from ..progress import Bar
    from ..signals import on_stop
    from . import admin, replay

    kinds = [k for k in ("recording", "trace", "rate") if getattr(args, k) is not None]
    if len(kinds) != 1:
        raise KhaosError("give exactly one of --recording FILE, --trace FILE, --rate R")
    if args.rate is not None and args.seconds is None:
        raise KhaosError("--rate needs --seconds N (how long to replay)")
    gen = {"vehicles": args.vehicles, "skew": args.skew, "campaigns": args.campaigns, "seed": args.seed}
    if args.recording is not None:
        if args.seconds is not None:
            raise KhaosError("--seconds is for --rate and --trace (a recording replays its own length)")
        given = [f"--{k}" for k, v in gen.items() if v is not None]
        if given:
            raise KhaosError(f"{', '.join(given)}: only for generated records (--rate, --trace), not --recording")
        source = replay.recording_source(args.recording, args.format or "raw")
    else:
        fmt = args.format or "iot"
        wrong = ["--campaigns", "--seed"] if fmt == "iot" else ["--vehicles"]
        given = [w for w in wrong if gen[w[2:]] is not None]
        if given:
            raise KhaosError(f"{', '.join(given)}: not for --format {fmt}")
        kw = {k: v for k, v in gen.items() if v is not None}
        if fmt == "ysb":
            kw["ads_per_campaign"] = args.ads_per_campaign
        if args.rate is not None:
            source = replay.rate_source(args.rate, args.seconds, fmt, **kw)
        else:
            source = replay.trace_source(args.trace, args.seconds, fmt, **kw)
    topics = list(dict.fromkeys(args.topic))
    client = admin.connect(args.bootstrap)
    for t in topics:
        if args.create and not admin.topic_exists(client, t):
            admin.create_topic(client, t, partitions=args.create)
            print(f"created topic {t} ({args.create} partitions)")
        admin.partitions(client, t)  # a missing topic: one line, before anything is sent
    if args.start is not None and args.start < time.time() * 1000:
        print(f"--start is {time.time() - args.start / 1000:.1f} s ago: what is already due goes out at once (late)")
    print(f"replaying {source.name} into {', '.join(topics)} at {args.bootstrap}")
    stop = threading.Event()
    with (
        Bar(source.schedule.seconds, "replay") as bar,
        on_stop(lambda _s: stop.set()),
    ):
        summary = replay.replay(source, topics, args.start, bootstrap=args.bootstrap, stop=stop, bar=bar)
    print(summary.line())
    lost = sum(summary.failed.values()) + summary.undelivered
    if lost:
        first = f": {summary.errors[0]}" if summary.errors else ""
        raise KhaosError(f"{lost} records were not delivered{first}")


def add_cli(subparsers) -> None:
    """Register ``khaos replay``."""
    from ..cli import field_number, number
    from ..schema import MAX_DURATION_S, MAX_RATE
    from .feed import KafkaSection
    from .formats import FORMATS

    def whole(high: int):  # a count from 1 up to high
        return number(1, high, whole=True)

    p = subparsers.add_parser(
        "replay",
        help="produce a recorded or synthetic workload into one Kafka topic per copy, at its timing, never early",
    )
    p.add_argument("--recording", help="a recording (khaos workload record --bootstrap ...): its records and timing")
    p.add_argument("--trace", help="a trace file: events per second (one number per line, or a recorded t,rate CSV)")
    p.add_argument(
        "--rate", type=number(0, MAX_RATE, open_low=True), help="a constant rate, records/s (needs --seconds)"
    )
    p.add_argument("--seconds", type=whole(MAX_DURATION_S), help="length: --rate's; --trace repeated or cut to it")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap address HOST:PORT[,HOST:PORT...]")
    p.add_argument("--topic", action="append", required=True, help="a target topic (repeat: one per copy)")
    p.add_argument("--start", type=_epoch_ms, help="epoch ms at which record 0 is due (default: in ~2 s)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="generated: iot (default) or ysb; recording: raw (default, as recorded), iot or ysb (ids and "
        "event times rewritten)",
    )
    p.add_argument("--skew", type=number(0, 10), help="key skew 0..10 of generated records (Zipf-like, as the job)")
    p.add_argument(
        "--vehicles",
        type=field_number(KafkaSection, "vehicles", whole=True),
        help="iot: vehicles (keys), default 10000",
    )
    p.add_argument("--campaigns", type=whole(10_000), help="ysb: campaigns of the job's mapping, default 100")
    p.add_argument("--ads-per-campaign", type=whole(100), default=10, help="ysb: ads per campaign, default 10")
    p.add_argument("--seed", type=int, help="ysb: the job's mapping seed, default 0")
    p.add_argument(
        "--create",
        type=field_number(KafkaSection, "partitions", whole=True),
        metavar="PARTITIONS",
        help="create missing topics with this many",
    )
    p.set_defaults(func=_replay)
