"""The golden journals of daemon steps (tests/support/data/steps/, written by the scenarios of
tests/unit/control/test_step_journal.py) and the comparison of journal lines."""

from __future__ import annotations

import math

import pytest

from khaos_controller import journal

from . import DATA

STEPS = DATA / "steps"
T = 1_796_000_000.0  # the frozen wall clock of every scenario (2026-11-30)
SCENARIOS = ("advisor", "pace", "restart", "restart-failed")


def same(got, want, where="") -> None:
    """Equal keys and values (floats to 1e-9 relative: the model's numbers through numpy)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float) and not (math.isnan(want) or math.isinf(want)):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want and type(got) is type(want), f"{where}: {got!r} != {want!r}"


def golden(name: str) -> list[dict]:
    return journal.read(STEPS / f"{name}.jsonl")
