"""khaos evaluate: the scoring rules on hand-made samples, the plan, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from support import one_line

from khaos_controller.errors import KhaosError
from khaos_controller.evaluate import config as ev_config
from khaos_controller.evaluate import plan, results, runner, score

T0 = 1_800_000_000


def samples(
    n: int = 60,
    fail_at: int | None = None,
    down_s: int = 3,
    slow_s: int = 4,
    jid: str = "a",
    skip: tuple[int, ...] = (),
) -> pd.DataFrame:
    """Two samples a second; a failure at `fail_at`: `down_s` seconds down, then `slow_s` seconds
    of p99 5000 ms (catch-up), then normal (50 ms). Seconds in `skip` have no sink measurement."""
    rows = []
    for i in range(n):
        for half in (0.1, 0.6):
            t = T0 + i + half
            down = fail_at is not None and fail_at <= i < fail_at + down_s
            slow = fail_at is not None and fail_at + down_s <= i < fail_at + down_s + slow_s
            restarts = 1 if fail_at is not None and i >= fail_at else 0
            second = None if down or i in skip else float(T0 + i)  # the sink reports the second itself
            rows.append(
                {
                    "t": t,
                    "job_id": jid,
                    "ci_s": 10.0,
                    "all_running": not down,
                    "restarts": restarts,
                    "checkpoints": i // 10,
                    "rate_in": 1000.0,
                    "lag_ms": 5.0,
                    "latency_p99_ms": 5000.0 if slow else 50.0,
                    "latency_max_ms": 60.0,
                    "sink_count": 1000.0,
                    "sink_second": second,
                }
            )
    return pd.DataFrame(rows)


def test_per_second_marks_latency_down_and_carried_seconds():
    df = samples(fail_at=20, skip=(10, 29))
    sec = score.per_second(df, T0, np.full(60, 1000.0), l_max_ms=1000)
    assert len(sec) == 60 and list(sec["t"]) == list(range(60))
    by_t = sec.set_index("t")
    assert list(by_t.loc[20:22, "reason"]) == ["down"] * 3
    assert list(by_t.loc[23:26, "reason"]) == ["latency"] * 4
    assert by_t.loc[10, "measured"] == 0 and by_t.loc[10, "violation"] == 0  # a missed second after a good one
    assert by_t.loc[27, "violation"] == 0
    assert by_t.loc[29, "violation"] == 0 and by_t.loc[29, "reason"] == ""
    assert sec["violation"].sum() == 7
    assert by_t.loc[23, "latency_p99_ms"] == 5000.0 and by_t.loc[5, "offered_rate"] == 1000.0


def test_a_missing_second_inside_an_outage_stays_violated():
    df = samples(fail_at=20, skip=(23,))  # the first catch-up second was not seen
    sec = score.per_second(df, T0, np.full(60, 1000.0), l_max_ms=1000).set_index("t")
    assert sec.loc[23, "reason"] == "carried" and sec.loc[23, "violation"] == 1
    assert sec["violation"].sum() == 7


def test_recovery_hit_and_score():
    s_fail, s_calm = samples(fail_at=20), samples()
    offered = np.full(60, 1000.0)
    secs = {
        "static-10": score.per_second(s_fail, T0, offered, 1000),
        "khaos": score.per_second(s_calm, T0, offered, 1000),
    }
    at = T0 + 20.3
    assert score.hit(s_fail, at) and not score.hit(s_calm, at)
    # violations 20..26, then 5 clean seconds from 27: back at 27 - 20.3 = 6.7 s
    assert score.recovery_s(secs["static-10"], at, T0 + 60, consecutive_s=5) == pytest.approx(6.7)
    assert score.recovery_s(secs["khaos"], at, T0 + 60, consecutive_s=5) == 0.0
    assert math.isnan(score.recovery_s(secs["static-10"], at, T0 + 30, consecutive_s=5))  # next failure first
    failures = [{"n": 1, "t": 20.3, "at": at, "mode": "process"}]
    table = score.score(
        secs,
        {"static-10": s_fail, "khaos": s_calm},
        failures,
        [{"copy": "khaos", "status": "ok"}, {"copy": "khaos", "status": "failed"}],
        {"static-10": {"records": 10, "lost": 0, "duplicated": 0}},
        {"latency_ms": 1000, "recovery_s": 5},
        5,
        {"static-10": "10 s", "khaos": "khaos"},
        T0 + 60,
    ).set_index("copy")
    assert failures[0]["hit"] == {"static-10": True, "khaos": False}
    assert table.loc["static-10", "violation_s"] == 7 and table.loc["static-10", "down_s"] == 3
    assert table.loc["static-10", "recoveries"] == 1 and table.loc["static-10", "recoveries_over_rmax"] == 1
    assert table.loc["static-10", "recovery_max_s"] == pytest.approx(6.7)
    assert table.loc["static-10", "recovery_excess_s"] == pytest.approx(1.7)  # 6.7 s against R_max 5 s
    assert table.loc["static-10", "latency_violation_s"] == 4  # 7 violation seconds, 3 of them down
    assert table.loc["khaos", "violation_s"] == 0 and table.loc["khaos", "recoveries"] == 0
    assert table.loc["khaos", "reconfigurations"] == 1
    assert table.loc["static-10", "checkpoints"] == 5 and table.loc["static-10", "audit_records"] == 10
    lat = secs["static-10"].query("measured == 1")["latency_p99_ms"]
    assert table.loc["static-10", "latency_mean_ms"] == pytest.approx(lat.mean(), abs=0.05)


def scores(copies: list[str], violation_s: list, latency_violation_s: list, recovery_excess_s: list) -> pd.DataFrame:
    """The columns of a score table that ratios() reads."""
    return pd.DataFrame(
        {
            "copy": copies,
            "violation_s": violation_s,
            "latency_violation_s": latency_violation_s,
            "recovery_excess_s": recovery_excess_s,
        }
    )


def test_ratios_best_and_median():
    t = scores(
        ["static-10", "static-30", "static-60", "khaos"], [20, 40, 90, 10], [15, 10, 5, 4], [0.0, 12.0, 60.0, 1.0]
    )
    r = score.ratios(t)
    assert r["best_static"] == "static-10" and r["median_static_violation_s"] == 40
    # (a)+(b) of the statics: 15, 22, 65 -> median 22; khaos 5
    assert r["median_static_a_plus_b"] == 22 and r["best_static_recovery_excess_s"] == 0
    assert r["khaos"]["khaos"] == {
        "violation_s": 10,
        "ratio_best": 0.5,
        "ratio_median": 0.25,
        "latency_violation_s": 4,
        "recovery_excess_s": 1.0,
        "a_le_best_static": True,
        "b_le_best_static": False,  # static-10 had no recovery excess
        "a_plus_b_ratio_median": round(5 / 22, 3),
    }
    t["violation_s"] = [0, 40, 90, 5]
    assert score.ratios(t)["khaos"]["khaos"]["ratio_best"] is None  # nothing to divide by: reported as n/a
    t["violation_s"] = [0, 40, 90, 0]
    assert score.ratios(t)["khaos"]["khaos"]["ratio_best"] == 0.0


def test_two_khaos_copies_are_each_set_against_the_same_statics():
    t = scores(
        ["static-5", "static-30", "khaos-pace", "khaos-restart"],
        [20, 60, 10, 30],
        [20, 8, 5, 30],
        [0.0, 50.0, 0.0, 0.0],
    )
    r = score.ratios(t)
    assert r["best_static"] == "static-5" and r["median_static_violation_s"] == 40
    pace, restart = r["khaos"]["khaos-pace"], r["khaos"]["khaos-restart"]
    assert (pace["ratio_best"], pace["ratio_median"], restart["ratio_best"], restart["ratio_median"]) == (
        0.5,
        0.25,
        1.5,
        0.75,
    )
    assert pace["a_le_best_static"] and pace["b_le_best_static"] and pace["a_plus_b_ratio_median"] == round(5 / 39, 3)
    assert not restart["a_le_best_static"] and restart["a_plus_b_ratio_median"] == round(30 / 39, 3)


def test_a_paced_copy_shows_the_interval_in_force_not_its_safety_net():
    sec = pd.DataFrame({"t": range(6), "ci_s": [60.0] * 6})
    changes = [
        {"copy": "khaos-pace", "t": 1.5, "to_ci_s": 8.0, "status": "ok"},
        {"copy": "khaos-pace", "t": 3.0, "to_ci_s": 90.0, "status": "ok"},  # above the net: the net paces
        {"copy": "khaos-pace", "t": 4.0, "to_ci_s": 5.0, "status": "failed"},
    ]
    assert score.paced(sec, changes)["ci_s"].tolist() == [60, 60, 8, 60, 60, 60]


def test_the_shared_target_takes_down_every_copy_with_the_fewest_hosts():
    assert plan.covering_hosts({"static-10": ["h2", "h3"], "khaos": ["h2", "h3"]}) == ["h2"]
    # after a host kill the restarted statics gathered on h3, the resubmitted Khaos job on h2
    assert plan.covering_hosts({"static-10": ["h3"], "static-30": ["h2", "h3"], "khaos": ["h2"]}) == ["h2", "h3"]
    assert plan.covering_hosts({"static-10": ["h3"], "static-30": ["h3"], "khaos": []}) == ["h3"]
    with pytest.raises(KhaosError, match="nothing to kill"):
        plan.covering_hosts({"khaos": []})


def test_failure_schedule_is_seeded_spaced_and_cycles_modes(tmp_path):
    ev = ev_config.load(
        write(
            tmp_path,
            "failures: {count: 5, modes: [process, host], first_s: 100, min_gap_s: 120}\nworkload: {seconds: 1200}\n",
        )
    )
    a, b = plan.failure_schedule(ev, 1200), plan.failure_schedule(ev, 1200)
    assert a == b and len(a) == 5
    times = [f["t"] for f in a]
    assert times[0] >= 100 and times[-1] <= 1200 - 90 and min(np.diff(times)) >= 120
    assert [f["mode"] for f in a] == ["process", "host", "process", "host", "process"]
    ev.seed += 1
    assert [f["t"] for f in plan.failure_schedule(ev, 1200)] != times
    ev.failures["count"] = 12
    with pytest.raises(KhaosError, match="do not fit"):
        plan.failure_schedule(ev, 1200)


def write(tmp_path, extra: str = "", base: bool = True) -> str:
    lines = (
        [
            "statics: [10, 30]\n",
            "limits: {latency_ms: 1000, recovery_s: 8}\n",
            "khaos: {results: examples/profile-lab-results.csv}\n",
        ]
        if base
        else []
    )
    given = {ln.split(":")[0] for ln in extra.splitlines() if ln[:1].isalpha()}  # a key twice is an error
    text = "".join(ln for ln in lines if ln.split(":")[0] not in given) + extra
    p = tmp_path / "eval.yml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "extra, base, message",
    [
        ("name: x\n", False, "statics: missing"),
        (
            "statics: [10, 10]\nlimits: {latency_ms: 1000, recovery_s: 8}\nkhaos: {results: examples/profile-lab-results.csv}\n",
            False,
            "statics: has duplicates",
        ),
        (
            "statics: [10]\nlimits: {latency_ms: 1000}\nkhaos: {results: examples/profile-lab-results.csv}\n",
            False,
            "limits.recovery_s: missing",
        ),
        ("statics: [10]\nlimits: {latency_ms: 1000, recovery_s: 8}\n", False, "khaos: missing (needs model"),
        (
            "khaos: {results: examples/profile-lab-results.csv, ci: {minimum: 3}}\n",
            True,
            "khaos.ci.minimum: unknown field",
        ),
        (
            "khaos: {results: examples/profile-lab-results.csv, mode: teleport}\n",
            True,
            "khaos.mode: 'teleport' is not one",
        ),
        ("khaos: {results: examples/profile-lab-results.csv, loop: {period_s: -5}}\n", True, "khaos.loop.period_s: -5"),
        ("cluster: {lab: BAD NAME!}\n", True, "cluster.lab: 'BAD NAME!' does not match"),
        ("failures: {first_s: .nan}\n", True, "failures.first_s: nan is not a finite number"),
        ("failures: {modes: [crash]}\n", True, "failures.modes"),
        ("workload: {trace: nope.txt}\n", True, "workload.trace: nope.txt does not exist"),
        ("workload: {low: 900, high: 100}\n", True, "low 900 > high 100"),
        ("colour: red\n", True, "colour: unknown field"),
        (
            "khaos: {results: examples/profile-lab-results.csv, realize: [pace, pace]}\n",
            True,
            "khaos.realize: a list names pace and/or restart, each once",
        ),
        ("khaos: {results: examples/profile-lab-results.csv, realize: [pace, teleport]}\n", True, "khaos.realize"),
    ],
)
def test_bad_evaluation_files_give_one_line(tmp_path, extra, base, message):
    with pytest.raises(KhaosError) as e:
        ev_config.load(write(tmp_path, extra, base))
    assert message in one_line(e.value)


def test_dry_run_prints_the_plan(tmp_path, capsys):
    assert runner.run(write(tmp_path), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "static-10 (eval-static-10), static-30 (eval-static-30), khaos (eval-khaos)" in out
    assert "6 slots per TaskManager" in out and "nothing started" in out


def test_two_khaos_copies_pace_and_restart_side_by_side(tmp_path, capsys):
    ev = ev_config.load(
        write(tmp_path, "khaos: {results: examples/profile-lab-results.csv, realize: [pace, restart]}\n")
    )
    assert ev.copies == ["static-10", "static-30", "khaos-pace", "khaos-restart"]
    assert ev.khaos_copies == {"khaos-pace": "pace", "khaos-restart": "restart"}
    # pace starts at its safety net (the longest static), restart at the middle static
    assert ev.interval("khaos-pace") == 30 and ev.interval("khaos-restart") == 30 and ev.interval("static-10") == 10
    assert runner.run(ev.path, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "khaos-pace (realize pace): starts at 30 s" in out and "khaos-restart (realize restart)" in out
    assert "8 slots per TaskManager" in out
    one = ev_config.load(write(tmp_path, "khaos: {results: examples/profile-lab-results.csv, realize: pace}\n"))
    assert one.copies == ["static-10", "static-30", "khaos"] and one.khaos_copies == {"khaos": "pace"}


def test_a_finished_run_is_scored_again_from_its_files(tmp_path, capsys):
    offered = np.full(60, 1000.0)
    raw = {"static-10": samples(fail_at=20), "khaos": samples(fail_at=20, down_s=1, slow_s=1, jid="k")}
    raw["khaos"]["all_running"] = raw["khaos"]["all_running"].astype(object)
    raw["khaos"].loc[raw["khaos"]["t"] > T0 + 50, ["job_id", "all_running"]] = [None, None]  # between two jobs
    secs = {c: score.per_second(df, T0, offered, 1000) for c, df in raw.items()}
    (tmp_path / "samples").mkdir()
    (tmp_path / "seconds").mkdir()
    for c in raw:
        raw[c].to_csv(tmp_path / "samples" / f"{c}.csv", index=False)
        secs[c].to_csv(tmp_path / "seconds" / f"{c}.csv", index=False)
    failures = [{"n": 1, "t": 20.3, "at": T0 + 20.3, "mode": "process", "target": "h2"}]
    limits = {"latency_ms": 1000.0, "recovery_s": 5.0}
    labels = {"static-10": "10 s", "khaos": "khaos pace 2-60 s"}
    audits = {c: {"records": 9, "lost": 0, "duplicated": 0} for c in raw}
    table = score.score(secs, raw, failures, [], audits, limits, 5, labels, T0 + 60)
    summary = {
        "name": "again",
        "seed": 1,
        "start": T0,
        "duration_s": 60,
        "started": "then",
        "machine": "test box",
        "limits": limits,
        "consecutive_s": 5,
        "failures": failures,
        "reconfigurations": [],
        "audits": audits,
        "ratio_best": 9.9,  # an old run's key: dropped
        **score.ratios(table),
    }
    results._write(tmp_path, summary, secs, table, "name: again\n")
    (tmp_path / "evaluation.yml").write_text("name: again\n")
    (tmp_path / "table.csv").write_text(table.drop(columns=["latency_violation_s"]).to_csv(index=False))  # older rules

    again = results.rescore(tmp_path)
    pd.testing.assert_frame_equal(again["table"], table)
    assert "ratio_best" not in again["summary"] and again["summary"]["labels"] == labels
    assert again["summary"]["khaos"]["khaos"]["recovery_excess_s"] == 0.0
    assert "khaos: (a) latency violation s" in capsys.readouterr().out
    with pytest.raises(KhaosError, match="not the output of a finished `khaos evaluate` run"):
        results.rescore(tmp_path / "samples")
