"""Models and profiles for tests: the lab profile's fit with a recovery that grows with the rate; a synthetic costly profile."""

from __future__ import annotations

import numpy as np
import pandas as pd

from khaos_controller.model import fit
from khaos_controller.model.store import Model

from . import PROFILE

BACKLOG_COEF = 5e-4  # s of recovery per (s behind x event/s)


def rate_model() -> Model:
    """The model fitted from the lab profile, with a recovery that grows with the rate.

    The lab data alone do not separate the rate's effect (its L0*rate coefficient fits to 0), so the
    backlog term is set by hand: recovery = 9.25 + (0.337 + 5e-4 * rate) * L0, L0 = CI + 3.2 s.
    With R_max 25 s: at 300 events/s every CI up to 20 s is fine (20 s -> 20.6 s), at 1500 events/s
    only CIs up to 11 s are (20 s -> 34.5 s)."""
    m = fit.fit(fit.load_results(PROFILE))
    spec = m.recovery.physics
    assert "L0*rate" in spec.features, spec.features
    spec.coef[spec.features.index("L0*rate")] = BACKLOG_COEF
    return m


def hand_model(lat=(100.0, 1000.0), rec=(5.0, 1.0), ckpt_s=0.5, modes=("host", "process")) -> Model:
    """A model with a known answer: latency = lat[0] + lat[1] / ci (ms); recovery = rec[0] + rec[1] * ci (s)."""
    from khaos_controller.model import store

    spec_l = {"name": "t", "features": ["1/ci"], "coef": [lat[1]], "intercept": lat[0]}
    spec_r = {"name": "t", "features": ["ci"], "coef": [rec[1]], "intercept": rec[0]}
    err = {"mape": 0.1, "mae": 1.0, "n": 1}
    cv_t = {"protocol": "hand-made", "folds": 1, "baseline": err, "physics": err, "candidates": {"t": err}}
    return store.parse(
        {
            "schema": store.SCHEMA,
            "schema_version": store.SCHEMA_VERSION,
            "created": "2024-01-01T00:00:00+00:00",
            "data_hash": "sha256:test",
            "sources": [],
            "rows": {"input": 1, "recovery_used": 1, "recovery_dropped": {}, "latency_used": 1, "latency_dropped": {}},
            "cv": {"recovery": cv_t, "latency": cv_t, "heldout": {"recovery": [], "latency": []}},
            "ranges": {"ci_s": [1.0, 120.0], "rate": [100.0, 10000.0], "modes": list(modes)},
            "checkpoint_duration_s": {"mean": ckpt_s, "min": ckpt_s, "max": ckpt_s, "n": 1},
            "latency": {"baseline": spec_l, "physics": spec_l},
            "recovery": {"baseline": spec_r, "physics": spec_r},
        }
    )


def drain_model(capacity: float = 5000.0, lat=(100.0, 1000.0), queue_ms: float = 0.0, downtime_s: float = 5.0) -> Model:
    """A model with a known capacity: recovery = downtime + (ci + downtime) * rate / (capacity - rate) s (the
    drain law: the input since the checkpoint and the downtime, replayed at the spare capacity; inf at or
    above capacity); latency = lat[0] + lat[1] / ci + queue_ms * u / (1 - u) ms, u = rate / capacity."""
    from khaos_controller.model.store import Spec

    m = hand_model(lat=lat)
    constants = {"margin_s": 0.0, "downtime_s": {"*": downtime_s}, "capacity": capacity}
    m.recovery.physics = Spec.model_validate(
        {
            "name": "drain",
            "features": ["L0*rate/(cap-rate)"],
            "coef": [1.0],
            "intercept": downtime_s,
            "constants": constants,
        }
    )
    m.latency.physics = Spec.model_validate(
        {
            "name": "queue",
            "features": ["1/ci", "u/(1-u)"],
            "coef": [lat[1], queue_ms],
            "intercept": lat[0],
            "constants": constants,
        }
    )
    return m


def costly_profile(k=0.35, ckpt=6.0, ref=3500.0, noise=0.02, seed=5) -> pd.DataFrame:
    """A profile whose capacity column is the probed reference while the job runs at cap(ci) = ref (1 - k d):
    recovery by the catch-up law at u_eff = rate / cap(ci) (downtime 8 s, age = the interval)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ci in (2, 5, 15, 45, 120):
        d = min(1.0, ckpt / ci)
        for level in (0.3, 0.4, 0.5, 0.55):
            rate = level * ref
            cap = ref * (1 - k * d)
            u = rate / cap
            for mode in ("process", "host"):
                down = 8.0 + 4.0 * (mode == "host")
                rec = down + (down + ci) * u / (1 - u)
                rows.append(
                    {
                        "trial": f"u-ci{ci}-u{level}-{mode}0",
                        "ci_s": ci,
                        "rate": rate,
                        "mode": mode,
                        "recovered": True,
                        "recovery_s": rec * rng.normal(1, noise),
                        "latency_p99_ms": 200.0 * rng.normal(1, noise),
                        "since_checkpoint_s": ci - 1.0,
                        "running_s": down,
                        "restored_checkpoint_age_s": ci,
                        "checkpoint_duration_ms": 1000 * ckpt * rng.normal(1, noise),
                        "capacity_busy": cap * rng.normal(1, noise),
                        "capacity_probe": ref,
                        "capacity": ref,
                        "utilization_target": level,
                        "latency_mean_ms": 90 + 60 * d / (1 - u),
                    }
                )
    return pd.DataFrame(rows)
