"""`khaos fit` and `khaos promote`."""

from __future__ import annotations

import sys
from pathlib import Path


def _fit(args) -> None:
    from ..schema import out_file
    from . import bounds, fit, report, store

    out = Path(args.out) if args.out else Path(args.results[0]).with_name("model.json")
    out_file(out, "--out")  # both outputs before the fit: a bad path must not cost it
    if args.plot:
        out_file(args.plot, "--plot")
    df = fit.load_results(args.results)
    model = fit.fit(df, capacity=args.capacity, sources=args.results)
    store.save(model, out)
    print(report.format_report(model))
    print(bounds.line(df))
    print(f"model: {out}")
    if args.overhead:
        from . import overhead

        print("\n".join(overhead.report(df)))
    if args.plot:
        print(f"plot: {report.plot(model, args.plot)}")


def _promote(args) -> None:
    from . import store

    replaced, why = store.promote(args.new, args.to)
    print(why)
    if args.strict and not replaced:
        sys.exit(3)


def add_cli(subparsers) -> None:
    """Register ``khaos fit`` and ``khaos promote``."""
    from ..cli import number
    from ..schema import MAX_RATE

    p = subparsers.add_parser("fit", help="fit latency and recovery models from profile results, with CV errors")
    p.add_argument("results", nargs="+", help="profile results.csv or .parquet (several are concatenated)")
    p.add_argument("--out", help="model file to write (default: model.json beside the first results file)")
    p.add_argument("--plot", help="also write a predicted-vs-observed PNG here")
    p.add_argument(
        "--capacity",
        type=number(0, MAX_RATE, open_low=True),
        help="the job's maximum throughput in events/s, if known (default: the profile's measured capacity, else estimated)",
    )
    p.add_argument(
        "--overhead",
        action="store_true",
        help="also fit what checkpoints cost the running job (capacity lost, latency added; model/overhead.py) and "
        "print its held-out errors (needs a profile with a capacity probe)",
    )
    p.set_defaults(func=_fit)
    p = subparsers.add_parser("promote", help="replace the daemon's model only if the new one's CV error is not worse")
    p.add_argument("new", help="model file just written by khaos fit")
    p.add_argument("--to", required=True, help="the model file the daemon reads (its config's `model`)")
    p.add_argument("--strict", action="store_true", help="exit 3 when the new model is not taken")
    p.set_defaults(func=_promote)
