"""The demo's pure parts: the recovery limit it sets and its timeline plot (the loop itself runs in `make demo`)."""

from __future__ import annotations

import pytest
from support.models import rate_model

from khaos_controller import demo
from khaos_controller.model.predict import predict


def test_limit_is_met_at_the_low_rate_and_broken_at_the_high_one():
    m = rate_model()  # recovery grows with the rate
    r_max, why = demo.choose_r_max(m, 300, 1500, 20)
    assert predict(m, 300, 20)[1] <= r_max < predict(m, 1500, 20)[1], why
    assert why.startswith("between the predicted")


def test_limit_without_a_rate_effect_forces_a_shorter_interval():
    m = rate_model()
    spec = m.recovery.physics
    spec.coef = [0.0 if "rate" in f else c for f, c in zip(spec.features, spec.coef)]
    r_max, why = demo.choose_r_max(m, 300, 1500, 20)
    assert r_max < predict(m, 1500, 20)[1] and "about the same recovery" in why


def test_timeline_plot_survives_the_gap_of_a_reconfiguration(tmp_path):
    samples = [
        {
            "t": 100.0 + i,
            "job_id": "a" if i < 5 else ("b" if i > 6 else None),
            "ci_s": 20.0 if i < 5 else (11.0 if i > 6 else None),
            "rate_in": None if i in (5, 6) else 800.0 + 100 * i,
            "lag_ms": 0.0,
            "latency_p99_ms": None if i in (5, 6) else 100.0,
            "all_running": i not in (5, 6),
        }
        for i in range(12)
    ]
    entries = [
        {"event": "decision", "ts": 104.0, "realize": {"status": "ok"}},
        {"event": "decision", "ts": 110.0, "decision": {"action": "keep"}},
        {"event": "start", "ts": 99.0},
    ]
    png = demo.plot_timeline(samples, entries, step_at=103.0, r_max=16.0, png=tmp_path / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_paced_interval_is_the_one_in_force_and_summarised(capsys):
    import pandas as pd

    samples = pd.DataFrame({"t": [100.0, 101.0, 102.0, 103.0, 104.0], "ci_s": [20.0, 20.0, None, 20.0, 20.0]})
    paced = {"status": "ok", "seconds": 0.0, "interval_s": 7.0, "safety_net_s": 20.0, "target_ci_s": 7.0}
    entries = [
        {
            "event": "decision",
            "ts": 101.5,
            "time": "t1",
            "realize": paced,
            "explain": "rate up",
            "decision": {"current_ci_s": 20.0, "ci_s": 7.0},
        },
        {"event": "decision", "ts": 103.5, "decision": {"action": "keep"}},
    ]
    held = demo.ci_timeline(samples, entries)
    assert list(held) == [20.0, 20.0, 7.0, 7.0, 7.0]  # the job's own 20 s until the paced change, then 7 s
    assert demo.summarise(entries) == 1
    out = capsys.readouterr().out
    assert "20 s -> 7 s (paced every 7 s over REST, no restart; safety net 20 s)" in out


def test_a_restart_change_is_summarised_with_its_savepoint(capsys):
    entries = [
        {
            "event": "decision",
            "ts": 1.0,
            "time": "t1",
            "explain": "x",
            "decision": {"current_ci_s": 20.0, "ci_s": 9.0},
            "realize": {  # what the restart realizer journals
                "status": "ok",
                "target_ci_s": 9.0,
                "seconds": 3.2,
                "job_id": "j2",
                "interval_s": 9.0,
                "savepoint": "file:///sp/1",
                "down_s": 0.3,
            },
        },
        {"event": "decision", "ts": 2.0, "realize": {"status": "failed"}, "decision": {}},
    ]
    assert demo.summarise(entries) == 1
    assert "reconfigure.yml 3.2 s, savepoint file:///sp/1" in capsys.readouterr().out


def _journal(name: str) -> list[dict]:
    """A golden daemon journal of tests/unit/control/test_step_journal.py (as the demo reads the bastion's)."""
    from support import DATA

    from khaos_controller import journal

    return journal.read(DATA / "steps" / f"{name}.jsonl")


@pytest.mark.parametrize(
    "name, changes",
    [
        ("advisor", []),  # an advisor changes nothing
        (
            "pace",
            [
                "20 s -> 11 s (paced every 11 s over REST, no restart; safety net 20 s)",
                "11 s -> 20 s (paced every 20 s over REST, no restart; safety net 20 s)",
                "20 s -> 11 s (paced every 11 s over REST, no restart; safety net 20 s)",
            ],
        ),
        (
            "restart",
            [
                "20 s -> 11 s (reconfigure.yml 0.0 s, savepoint file:///sp/savepoint-2)",
                "11 s -> 5 s (reconfigure.yml 0.0 s, savepoint file:///sp/savepoint-3)",
            ],
        ),
        ("restart-failed", []),  # a failed change is not one
    ],
)
def test_the_summary_of_each_realizers_journal(name, changes, capsys):
    entries = _journal(name)
    assert demo.summarise(entries) == len(changes)
    lines = capsys.readouterr().out.splitlines()
    assert [x.split(": ", 1)[1] for x in lines if x.startswith("  change at ")] == changes
    explained = [x.strip() for x in lines if x.startswith("    ")]
    assert len(explained) == len(changes) and all(x.startswith("At ") for x in explained)


def test_a_restart_change_is_not_taken_for_a_paced_one_in_the_timeline():
    """After a restart change the job's own interval is the one in force (the samples read it once the new
    job runs); only paced changes hold the job to a shorter interval than its own."""
    import pandas as pd

    def spaced(name):  # the golden journals are written on a frozen clock: one second between lines here
        return [{**e, "ts": e["ts"] + i} for i, e in enumerate(_journal(name))]

    t = _journal("restart")[0]["ts"]
    restart = spaced("restart")  # line 5 (t + 4): the change to 11 s, realized
    samples = pd.DataFrame({"t": [t + 3, t + 5, t + 6], "ci_s": [20.0, 20.0, 11.0]})  # the new job from t + 6
    assert list(demo.ci_timeline(samples, restart)) == [20.0, 20.0, 11.0]
    pace = spaced("pace")  # paced to 11 s at t + 1, back to the safety net at t + 3
    samples = pd.DataFrame({"t": [t + 0.5, t + 1.5, t + 3.5], "ci_s": [20.0, 20.0, 20.0]})
    assert list(demo.ci_timeline(samples, pace)) == [20.0, 11.0, 20.0]
