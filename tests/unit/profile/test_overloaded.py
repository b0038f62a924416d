"""A unit whose job never catches up with its input: no failure injected (it would never recover), its
steady columns still measured, and the fit leaves its rows out of recovery and latency, naming why."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from support.models import costly_profile

from khaos_controller.model import fit as model_fit
from khaos_controller.model import overhead
from khaos_controller.profile.measure import overloaded_row


def steady(n=60, lat=(900.0, 1300.0)) -> pd.DataFrame:
    t = 1_800_000_000.0 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {"t": t, "rate_in": 2190.0, "latency_p99_ms": np.where(np.arange(n) % 2, *lat), "sink_second": t}
    )


def test_the_row_of_a_failure_not_injected_says_why_and_keeps_the_steady_columns():
    unit = SimpleNamespace(ident="u13-ci5-u85", ci_s=5.0, rate=3007.0)
    summary = {"end_to_end_duration": {"avg": 6100}, "state_size": {"avg": 190e6}}
    row = overloaded_row(unit, "cr1", "host", 0, 1_800_000_060.0, steady(), summary, limit_ms=1000)
    assert (row["trial"], row["recovered"], row["recovery_s"], row["recovery_rule"]) == (
        "u13-ci5-u85-host0",
        False,
        None,
        "overloaded",
    )
    assert row["pre_rate"] == 2190.0 and row["checkpoint_duration_ms"] == 6100
    assert row["latency_mean_ms"] == pytest.approx(1100.0) and row["late_share"] == pytest.approx(0.5)
    empty = overloaded_row(unit, "cr1", "host", 0, 0.0, steady().iloc[:0], {}, limit_ms=None)
    assert empty["latency_mean_ms"] is None and empty["pre_rate"] is None


def test_the_fit_and_the_overhead_model_leave_overloaded_rows_out_where_they_have_no_steady_state():
    df = costly_profile()
    n = len(df)
    over = df.iloc[:2].assign(recovered=False, recovery_s=np.nan, recovery_rule="overloaded", latency_mean_ms=5e4)
    over["trial"] = ["u99-ci2-u99-process0", "u99-ci2-u99-host0"]
    over["capacity_busy"] = 0.6 * 3500
    m = model_fit.fit(pd.concat([df.assign(recovery_rule="bands"), over], ignore_index=True))
    why = "overloaded (the job did not keep up: no failure injected)"
    assert m.rows.recovery_dropped == {why: 2} and m.rows.recovery_used == n
    assert m.rows.latency_dropped == {"overloaded (the job did not keep up: no steady state)": 2}
    rows = overhead.deployments(pd.concat([df, over], ignore_index=True))
    assert len(rows) == 21 and rows["lat"].isna().sum() == 1  # its capacity counts, its latency does not
    assert np.isfinite(overhead.heldout(rows)["latency"]["model"]["mape"])


def test_the_overhead_baseline_is_fitted_on_the_deployments_with_a_steady_latency():
    df = costly_profile()
    over = df.iloc[:2].assign(recovery_rule="overloaded", latency_mean_ms=5e4, capacity_busy=0.6 * 3500)
    over["trial"] = ["u99-ci2-u99-process0", "u99-ci2-u99-host0"]
    cv = overhead.heldout(overhead.deployments(pd.concat([df, over], ignore_index=True)))
    assert np.isfinite(cv["latency"]["baseline"]["mape"]) and np.isfinite(cv["latency"]["model"]["mape"])


def test_a_job_still_working_off_its_deploy_backlog_is_waited_for_one_whose_lag_grows_is_not():
    from khaos_controller.profile import waves

    def rows(lag_at):  # one sample a second for 200 s
        return [{"t": 1000.0 + s, "lag_ms": lag_at(s), "all_running": True, "throughput": 2000.0} for s in range(200)]

    assert waves.falling(rows(lambda s: 60_000 - 250 * s))  # 4 s of lag worked off a second
    assert not waves.falling(rows(lambda s: 20_000 + 100 * s))  # behind more and more: overloaded
    assert not waves.falling(rows(lambda s: 30_000.0))  # flat: not catching up either
    assert not waves.falling(rows(lambda s: 1000.0)[:30])  # under a minute of samples: no trend yet
    assert not waves.falling([{"t": 1.0}, {"t": 90.0, "lag_ms": float("nan")}])
