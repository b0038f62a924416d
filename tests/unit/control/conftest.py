"""Fixtures of the control package's unit tests: a model file, frozen clocks, the daemon's log records
(doubles: support/daemon.py)."""

from __future__ import annotations

import logging
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


class Records(logging.Handler):
    """Keeps what the daemon logs: (level, event, fields)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str, dict]] = []

    def emit(self, record):
        self.seen.append((record.levelname, record.getMessage(), dict(record.kv)))


@pytest.fixture
def logs():
    """The records of the daemon's logger while the test runs: (level, event, fields)."""
    h = Records()
    logger = logging.getLogger("khaos.daemon")
    level = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    yield h.seen
    logger.removeHandler(h)
    logger.setLevel(level)
