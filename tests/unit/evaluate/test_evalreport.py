"""The evaluation report renders what the evaluator computed: tables, charts and one self-contained HTML file."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from khaos_controller.evaluate import report as evalreport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N = 120
START = 1_700_000_000


def copy_seconds(ci: float | None, violation_end: int, latency: bool = True) -> pd.DataFrame:
    """120 s of one copy: a failure at t=60 takes the job down, violations from 60 to violation_end."""
    t = np.arange(N)
    down = (t >= 60) & (t < 63)
    violation = (t >= 60) & (t <= violation_end)
    if ci is None:  # the khaos copy moves from 30 s to 12 s at t=20
        ci_s = np.where(t < 20, 30.0, 12.0)
    else:
        ci_s = np.full(N, ci)
    p99 = np.where(violation, 900.0, 80.0) if latency else np.full(N, np.nan)
    return pd.DataFrame(
        {
            "second": START + t,
            "t": t,
            "job_id": np.where(down, None, "job-a"),
            "ci_s": np.where(down, np.nan, ci_s),
            "offered_rate": np.where(t < 40, 800.0, 1500.0),
            "rate_in": np.where(down, np.nan, 790.0),
            "throughput": np.where(down, np.nan, 780.0),
            "lag_ms": np.where(down, np.nan, 5.0),
            "latency_p99_ms": np.where(down, np.nan, p99),
            "latency_max_ms": np.where(down, np.nan, p99 * 1.5),
            "up": (~down).astype(int),
            "measured": (~down).astype(int),
            "violation": violation.astype(int),
            "reason": np.where(down, "down", np.where(violation, "latency", "")),
        }
    )


def inputs(
    copies=("static-10", "static-30", "khaos"), ratio_best=0.4237, config="name: eval1\nseed: 7\n", latency=True
):
    ends = {"static-10": 66, "static-30": 71, "khaos": 63}
    seconds = {
        c: copy_seconds(
            None if c == "khaos" else float(c.split("-")[-1] if "-" in c else 20),
            ends.get(c, 66),
            latency=latency or c != "khaos",
        )
        for c in copies
    }
    failures = [
        {
            "n": 1,
            "t": 60,
            "at": START + 60.0,
            "mode": "process",
            "target": "lab-2",
            "hit": {c: c != "static-30" for c in copies},
            "recovery_s": {c: 6.5 if c != "static-30" else None for c in copies},
        }
    ]
    reconfigs = [{"copy": "khaos", "t": 20.5, "from_ci_s": 30.0, "to_ci_s": 12.0, "seconds": 2.1, "status": "ok"}]
    table = pd.DataFrame(
        {
            "copy": list(copies),
            "ci": ["khaos 3-60 s" if c == "khaos" else f"{c.split('-')[-1]} s" for c in copies],
            "violation_s": [int(seconds[c]["violation"].sum()) for c in copies],
            "violation_pct": [100.0 * seconds[c]["violation"].mean() for c in copies],
            "down_s": [3] * len(copies),
            "measured_pct": [97.5] * len(copies),
            "recoveries": [1] * len(copies),
            "recoveries_over_rmax": [1 if c == "static-30" else 0 for c in copies],
            "recovery_mean_s": [6.54 if c != "static-30" else math.nan for c in copies],
            "recovery_max_s": [6.54] * len(copies),
            "recovery_excess_s": [0.0] * len(copies),
            "latency_mean_ms": [123.456] * len(copies),
            "latency_p99_ms": [900.0] * len(copies),
            "checkpoints": [10] * len(copies),
            "reconfigurations": [1 if c == "khaos" else 0 for c in copies],
            "audit_records": [96000] * len(copies),
            "audit_lost": [0] * len(copies),
            "audit_duplicated": [0] * len(copies),
            "extra_column": ["kept"] * len(copies),
        }
    )
    meta = {
        "name": "eval1",
        "seed": 7,
        "started": "2026-11-26T02:00:00Z",
        "duration_s": N,
        "limits": {"latency_ms": 500.0, "recovery_s": 20.0},
        "khaos": {"khaos": {"violation_s": 4.0, "ratio_best": ratio_best, "ratio_median": 0.21}},
        "best_static": "static-10",
        "median_static_violation_s": 9.5,
        "config": config,
        "machine": "test box",
        "notes": ["one failure only"],
    }
    return seconds, failures, reconfigs, table, meta


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    seconds, failures, reconfigs, table, meta = inputs()
    paths = evalreport.write_report(tmp_path_factory.mktemp("report"), seconds, failures, reconfigs, table, meta)
    return paths, table


def md_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_every_file_is_written_and_the_images_are_png(report):
    paths, _ = report
    assert set(paths) == {
        "table_md",
        "table_csv",
        "violations_png",
        "html",
        "timeline_static-10",
        "timeline_static-30",
        "timeline_khaos",
    }
    for path in paths.values():
        assert path.exists() and path.stat().st_size > 0, path
    for key in ["violations_png", "timeline_static-10", "timeline_static-30", "timeline_khaos"]:
        assert paths[key].read_bytes().startswith(PNG_SIGNATURE), key
    assert paths["timeline_khaos"].name == "timeline-khaos.png"


def test_markdown_table_has_one_row_per_copy_with_the_numbers(report):
    paths, table = report
    rows = md_rows(paths["table_md"].read_text())
    assert rows[0] == list(table.columns)
    assert all(set(c) <= set("-") for c in rows[1])
    body = {r[0]: dict(zip(rows[0], r)) for r in rows[2:]}
    assert list(body) == ["static-10", "static-30", "khaos"]
    assert body["khaos"]["violation_s"] == "4" and body["static-10"]["violation_s"] == "7"
    assert body["static-30"]["violation_s"] == "12"
    assert body["khaos"]["ci"] == "khaos 3-60 s"
    assert body["khaos"]["latency_mean_ms"] == "123.5" and body["khaos"]["violation_pct"] == "3.3"
    assert body["static-30"]["recovery_mean_s"] == "-" and body["khaos"]["recovery_mean_s"] == "6.5"
    assert body["khaos"]["extra_column"] == "kept"


def test_markdown_lists_the_limits_and_the_ratios(report):
    text = report[0]["table_md"].read_text()
    assert "Limits: p99 latency 500 ms, recovery 20 s" in text
    assert "khaos violation seconds / best static (static-10): 0.42" in text
    assert "khaos violation seconds / median static (9.5 s): 0.21" in text


def test_csv_round_trips_the_table(report):
    paths, table = report
    back = pd.read_csv(paths["table_csv"])
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_html_is_self_contained_and_embeds_every_chart(report):
    paths, table = report
    page = paths["html"].read_text()
    for ref in ["http://", "https://", 'src="file', "<link", "<script"]:
        assert ref not in page, ref
    assert page.count("data:image/png;base64,") == len(table) + 1
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "khaos violation seconds / best static (static-10): 0.42" in page
    assert "<td>khaos 3-60 s</td>" in page and "<td>lab-2</td>" in page
    failure_row = re.search(r"<tr><td>1</td><td>60</td>.*?</tr>", page).group(0)
    assert "<td>no</td>" in failure_row and "<td>6.5</td>" in failure_row  # static-30 missed, others recovered
    assert "<td>30.0</td><td>12.0</td><td>2.1</td><td>ok</td>" in page  # the reconfiguration
    assert "<li>one failure only</li>" in page and "seed: 7" in page


def test_ratios_without_a_value_show_n_a(tmp_path):
    seconds, failures, reconfigs, table, meta = inputs(ratio_best=None)
    meta.update(best_static=None, median_static_violation_s=None)
    meta["khaos"]["khaos"]["ratio_median"] = float("inf")
    paths = evalreport.write_report(tmp_path, seconds, failures, reconfigs, table, meta)
    text = paths["table_md"].read_text()
    assert "khaos violation seconds / best static (n/a): n/a" in text
    assert "khaos violation seconds / median static (- s): n/a" in text
    assert "/ best static (n/a): n/a" in paths["html"].read_text()


def test_html_escapes_names_and_config(tmp_path):
    copies = ("static-10", "<script>alert(1)</script>", "khaos")
    seconds, failures, reconfigs, table, meta = inputs(copies=copies, config="evil: <script>alert(2)</script>\n")
    paths = evalreport.write_report(tmp_path, seconds, failures, reconfigs, table, meta)
    page = paths["html"].read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "evil: &lt;script&gt;alert(2)" in page
    assert paths["timeline_<script>alert(1)</script>"].parent == tmp_path  # no "/" from the name in the file name
    assert page.count("data:image/png;base64,") == 4


def test_nothing_breaks_without_failures_reconfigurations_or_latency(tmp_path):
    seconds, _, _, table, meta = inputs(latency=False)
    table.loc[0, ["latency_mean_ms", "latency_p99_ms"]] = math.nan
    del meta["notes"]
    paths = evalreport.write_report(tmp_path, seconds, [], [], table, meta)
    assert paths["timeline_khaos"].read_bytes().startswith(PNG_SIGNATURE)
    page = paths["html"].read_text()
    assert page.count("<p>none</p>") == 2 and "<h2>Notes</h2>" not in page
    row = md_rows(paths["table_md"].read_text())[2]
    assert row[0] == "static-10" and row[list(table.columns).index("latency_p99_ms")] == "-"


def test_markdown_table_escapes_pipes():
    table = pd.DataFrame({"copy": ["a|b"], "violation_s": [3]})
    assert evalreport.markdown_table(table).splitlines()[2] == "| a\\|b | 3 |"
