"""The costly profile committed with the project (examples/profile-costly-results.csv): `khaos fit` prints
the held-out lines that docs/results/checkpoint-cost.md quotes, recomputed here from the data."""

from __future__ import annotations

import pytest

from khaos_controller import REPO_ROOT
from khaos_controller.model import bounds, fit, overhead, report

PROFILE = REPO_ROOT / "examples" / "profile-costly-results.csv"
QUOTED = (REPO_ROOT / "docs" / "results" / "checkpoint-cost.md").read_text()


@pytest.fixture(scope="module")
def costly():
    df = fit.load_results(PROFILE)
    return df, fit.fit(df)


def test_the_recovery_and_latency_lines_are_the_ones_quoted(costly):
    _df, model = costly
    lines = [ln for ln in report.format_report(model).splitlines() if " held-out: MAPE " in ln]
    assert [ln.split(":")[0] for ln in lines] == ["recovery held-out", "latency held-out"]
    for line in lines:
        assert f"    {line}\n" in QUOTED, line


def test_the_recovery_floor_is_the_one_quoted(costly):
    df, _model = costly
    assert f"    {bounds.line(df)}\n" in QUOTED


def test_the_overhead_lines_are_the_ones_quoted(costly):
    df, _model = costly
    lines = overhead.report(df)
    assert lines and lines[0].startswith("overhead: capacity = cap_ref x (1 - ")
    for line in lines[:2]:
        assert f"    {line}\n" in QUOTED, line
