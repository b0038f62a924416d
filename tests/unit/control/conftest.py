"""Fixtures of the control package's unit tests: a model file, frozen clocks (doubles: support/daemon.py)."""

from __future__ import annotations

import time

import pytest
from support.models import rate_model
from support.steps import T

from khaos_controller.model import store


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return store.save(rate_model(), tmp_path_factory.mktemp("model") / "model.json")


@pytest.fixture
def frozen(monkeypatch):
    """Every clock a step reads stands still at T (journal ts, loop and playbook seconds, observations)."""
    monkeypatch.setattr(time, "time", lambda: T)
    monkeypatch.setattr(time, "monotonic", lambda: 5000.0)
    return lambda: T
