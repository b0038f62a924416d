"""`khaos tradeoff`: the tables of a profile, per deployment and per interval."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from support.models import costly_profile

from khaos_controller.errors import KhaosError
from khaos_controller.profile import tradeoff


def profile() -> pd.DataFrame:
    df = costly_profile().assign(recovery_rule="bands", late_share=0.25, checkpoint_size_bytes=190e6)
    over = df["ci_s"].eq(2) & df["utilization_target"].eq(0.55)
    df.loc[over, ["recovered", "recovery_s", "recovery_rule"]] = [False, float("nan"), "overloaded"]
    return df


def test_one_row_per_deployment_with_its_capacity_latency_recovery_and_status():
    u = tradeoff.units(profile())
    assert len(u) == 20 and list(u["status"].value_counts().items()) == [("ok", 19), ("overloaded", 1)]
    short = u[(u["ci_s"] == 2) & (u["level_pct"] == 30)].iloc[0]
    assert short["capacity_pct"] == pytest.approx(65, abs=4)  # 1 - 0.35: a 6 s snapshot every 2 s
    assert short["late_pct"] == 25 and short["recovery_process_s"] < short["recovery_host_s"]
    assert pd.isna(u[u["status"] == "overloaded"].iloc[0]["recovery_process_s"])


def test_checkpoints_per_interval_and_the_markdown():
    c = tradeoff.checkpoints(profile()).set_index("ci_s")
    assert c.loc[120, "size_mb"] == 190 and c.loc[120, "mb_per_h"] == pytest.approx(190 * 30)
    assert c.loc[2, "mb_per_h"] == pytest.approx(190 * 3600 / c.loc[2, "duration_s"])  # back to back
    text = tradeoff.markdown(profile())
    assert text.splitlines()[0].startswith("| CI s | level % | rate/s | capacity % of ref |")
    assert "| 2 | 55 | 1925 |" in text and text.count("overloaded") == 1


def test_the_command_prints_the_tables_and_refuses_a_file_that_is_no_profile(tmp_path):
    path = tmp_path / "results.csv"
    profile().to_csv(path, index=False)
    out = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "tradeoff", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0 and "| CI s | checkpoint s | size MB | MB written per hour |" in out.stdout
    with pytest.raises(KhaosError, match="lack column"):
        tradeoff.units(pd.DataFrame({"ci_s": [1]}))
