"""The output of `khaos evaluate`: the score table (CSV, markdown), a timeline per copy, a violations chart
and one self-contained HTML page. Everything here renders numbers the evaluator has already computed."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import pandas as pd

from .config import is_khaos

MODE_COLORS = {"process": "tab:purple", "host": "black"}


def write_report(
    out_dir: Path,
    seconds: dict[str, pd.DataFrame],
    failures: list[dict],
    reconfigs: list[dict],
    table: pd.DataFrame,
    meta: dict,
) -> dict[str, Path]:
    """Write table.csv/.md, the timelines, the violations chart and report.html; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"table_csv": out_dir / "table.csv", "table_md": out_dir / "table.md"}
    table.to_csv(paths["table_csv"], index=False)
    paths["table_md"].write_text(markdown_table(table) + "\n\n" + "\n".join(summary_lines(meta)) + "\n")
    paths["violations_png"] = plot_violations(table, meta, out_dir / "violations.png")
    violation_s = dict(zip(table["copy"], table["violation_s"]))
    for copy, df in seconds.items():
        title = f"{meta['name']}: {copy} — {_cell(violation_s.get(copy, df['violation'].sum()))} violation s"
        png = out_dir / f"timeline-{re.sub(r'[^A-Za-z0-9._-]', '_', copy)}.png"
        paths[f"timeline_{copy}"] = plot_timeline(
            copy, df, failures, reconfigs, meta["limits"]["latency_ms"], title, png
        )
    paths["html"] = write_html(out_dir / "report.html", paths, list(seconds), failures, reconfigs, table, meta)
    return paths


def _cell(v) -> str:
    """A table cell: NaN and None as "-", floats with 1 decimal."""
    if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
        return "-"
    if hasattr(v, "item"):  # numpy scalar
        v = v.item()
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _ratio(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The score table as markdown."""

    def row(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    lines = [row(table.columns), "|" + "---|" * len(table.columns)]
    lines += [row(_cell(v) for v in r) for r in table.astype(object).itertuples(index=False)]
    return "\n".join(lines)


def summary_lines(meta: dict) -> list[str]:
    """The limits and each Khaos copy's violation seconds relative to the static copies."""
    limits = meta["limits"]
    median_s = meta.get("median_static_violation_s")
    lines = [f"Limits: p99 latency {limits['latency_ms']:g} ms, recovery {limits['recovery_s']:g} s"]
    for copy, k in (meta.get("khaos") or {}).items():
        lines += [
            f"{copy} violation seconds / best static ({meta.get('best_static') or 'n/a'}): {_ratio(k['ratio_best'])}",
            f"{copy} violation seconds / median static ({_cell(median_s)} s): {_ratio(k['ratio_median'])}",
        ]
        if "a_plus_b_ratio_median" in k:
            lines.append(
                f"{copy}: (a) latency violation s {_cell(k['latency_violation_s'])} (best static "
                f"{_cell(meta.get('best_static_latency_violation_s'))}), (b) recovery excess s "
                f"{_cell(k['recovery_excess_s'])} (best static {_cell(meta.get('best_static_recovery_excess_s'))}), "
                f"(a)+(b) / median static ({_cell(meta.get('median_static_a_plus_b'))}): "
                f"{_ratio(k['a_plus_b_ratio_median'])}"
            )
    return lines


def _runs(t: pd.Series, flags: pd.Series) -> list[tuple[int, int]]:
    """Runs of consecutive flagged seconds as (first t, last t + 1)."""
    runs: list[tuple[int, int]] = []
    for x in t[flags.fillna(0).astype(bool)]:
        if runs and runs[-1][1] == x:
            runs[-1] = (runs[-1][0], x + 1)
        else:
            runs.append((x, x + 1))
    return runs


def plot_timeline(
    copy: str,
    df: pd.DataFrame,
    failures: list[dict],
    reconfigs: list[dict],
    latency_limit_ms: float,
    title: str,
    png: Path,
) -> Path:
    """One copy's timeline: rate, interval, p99 latency, violations, failures and changes (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    ax[0].plot(df["t"], df["offered_rate"], lw=1, color="grey", label="offered")
    ax[0].plot(df["t"], df["rate_in"], lw=1, color="tab:blue", label="measured")
    ax[0].set_ylabel("rate (events/s)")
    ax[1].plot(df["t"], df["latency_p99_ms"], lw=1, color="tab:red")
    ax[1].axhline(latency_limit_ms, color="tab:red", ls="--", lw=1)
    ax[1].set_yscale("log")
    ax[1].set_ylabel("p99 latency (ms)")
    for start, end in _runs(df["t"], df["violation"]):
        ax[1].axvspan(start, end, color="red", alpha=0.2, lw=0)
    ax[2].step(df["t"], df["ci_s"], where="post", color="tab:green")
    ax[2].set_ylabel("checkpoint interval (s)")
    ax[2].set_xlabel("seconds since start")
    for f in failures:
        hit = bool(f.get("hit", {}).get(copy))
        for a in ax:
            a.axvline(f["t"], color=MODE_COLORS.get(f["mode"], "tab:brown"), ls="-" if hit else ":", lw=1.2)
    for r in reconfigs:
        if r["copy"] == copy:
            ok = r["status"] == "ok"
            ax[2].axvline(r["t"], color="tab:orange" if ok else "lightgrey", lw=1.5 if ok else 0.8)
    ax[0].legend(loc="upper left", fontsize=8)
    ax[0].set_title(
        title + "\nfailures: purple process kill, black host kill (solid: hit this copy, dotted: missed)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def plot_violations(table: pd.DataFrame, meta: dict, png: Path) -> Path:
    """Violation seconds per copy by reason (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    copies = [str(c) for c in table["copy"]]
    colors = ["tab:orange" if is_khaos(c) else "tab:blue" for c in copies]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.5))
    for a, col, label in [
        (ax[0], "violation_s", "latency or down: violation seconds"),
        (ax[1], "recovery_excess_s", f"recovery beyond {meta['limits']['recovery_s']:g} s, summed (s)"),
        (ax[2], "checkpoints", "checkpoints taken (overhead)"),
    ]:
        values = pd.to_numeric(table[col], errors="coerce")
        bars = a.bar(copies, values.fillna(0), color=colors)
        a.bar_label(bars, labels=[_cell(v) for v in table[col].astype(object)])
        a.set_ylabel(label)
        a.yaxis.set_major_locator(MaxNLocator(integer=True))
        a.tick_params(axis="x", labelrotation=30)
        a.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{meta['name']}: violation seconds, recovery excess and checkpoints per copy (orange: khaos)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def _html_table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: Path, alt: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    ".ratios{font-size:1.3em;font-weight:bold;background:#fff4e0;padding:0.5em 1em}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto}img{max-width:100%}"
)


def write_html(
    path: Path,
    paths: dict[str, Path],
    copies: list[str],
    failures: list[dict],
    reconfigs: list[dict],
    table: pd.DataFrame,
    meta: dict,
) -> Path:
    """One self-contained HTML page (images inline)."""
    e = html.escape
    limits = meta["limits"]
    facts = [
        ("name", meta["name"]),
        ("seed", meta["seed"]),
        ("started", meta["started"]),
        ("duration", f"{meta['duration_s']} s"),
        ("machine", meta["machine"]),
        ("limits", f"p99 latency {limits['latency_ms']:g} ms, recovery {limits['recovery_s']:g} s"),
    ]
    fail_headers = ["n", "t (s)", "mode", "target"] + [h for c in copies for h in (f"{c} hit", f"{c} recovery s")]
    fail_rows = [
        [f["n"], f["t"], f["mode"], f["target"]]
        + [v for c in copies for v in (bool(f.get("hit", {}).get(c)), f.get("recovery_s", {}).get(c))]
        for f in failures
    ]
    reconf_cols = ["copy", "t", "from_ci_s", "to_ci_s", "seconds", "status"]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Khaos evaluation: {e(meta['name'])}</title>",
        f"<style>{CSS}</style></head><body><h1>Khaos evaluation: {e(meta['name'])}</h1>",
        _html_table([k for k, _ in facts], [[v for _, v in facts]]),
        "<div class='ratios'>" + "<br>".join(e(line) for line in summary_lines(meta)[1:]) + "</div>",
        "<h2>Scores</h2>",
        _html_table(table.columns, table.astype(object).itertuples(index=False)),
        _img(paths["violations_png"], "violation seconds per copy"),
        "<h2>Failures</h2>",
        _html_table(fail_headers, fail_rows) if failures else "<p>none</p>",
        "<h2>Reconfigurations</h2>",
        _html_table(reconf_cols, [[r.get(c) for c in reconf_cols] for r in reconfigs]) if reconfigs else "<p>none</p>",
        "<h2>Timelines</h2>",
    ]
    parts += [f"<h3>{e(c)}</h3>" + _img(paths[f"timeline_{c}"], f"timeline of {c}") for c in copies]
    if meta.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in meta["notes"]) + "</ul>")
    parts.append(f"<h2>Configuration</h2><pre>{e(meta['config'])}</pre></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
