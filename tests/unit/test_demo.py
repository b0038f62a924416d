"""The demo's pure parts: the recovery limit it sets and its timeline plot (the loop itself runs in `make demo`)."""

from __future__ import annotations

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
