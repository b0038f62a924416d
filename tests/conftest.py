"""Test suite root: lab tests need root (network namespaces); shared helpers live in tests/support.

`make test` runs the suite in two lanes at once, then the measuring lab modules alone (tests/lanes.py):
the modules on the shared Flink cluster (marker ``shared_cluster``, given here to every module that uses
the fixture ``cluster``) beside lab modules that bring up labs of their own and the unit tests. The lab lock, the removal of stale
test labs and the final "nothing left behind" check run once per machine-wide session: here for a plain
``pytest`` run, in tests/lanes.py for the lanes (which set KHAOS_LAB_LOCK_HELD for their pytest runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LOCK_HELD_ENV = "KHAOS_LAB_LOCK_HELD"


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers given here
def pytest_collection_modifyitems(config, items):
    """Everything under tests/lab is a lab test; without root those are expected failures (not run),
    never silently skipped. The modules on the shared cluster are marked ``shared_cluster``."""
    shared = {item.module for item in items if "cluster" in getattr(item, "fixturenames", ())}
    for item in items:
        if "lab" in item.path.parts[-3:-1] and item.get_closest_marker("lab") is None:
            item.add_marker(pytest.mark.lab)  # (the directory name is a keyword, not a marker: -m needs this)
        if "lab" in item.keywords and os.geteuid() != 0:
            item.add_marker(pytest.mark.xfail(reason="lab tests need root", run=False, strict=True))
        if item.module in shared:
            item.add_marker(pytest.mark.shared_cluster)


def _runs_lab_tests(config) -> bool:
    """Some argument (or the default test path) selects tests/lab or a directory above it."""
    lab = (Path(config.rootpath) / "tests" / "lab").resolve()
    for arg in config.args or ["tests"]:
        path = (Path(config.invocation_params.dir) / arg.split("::")[0]).resolve()
        if path == lab or lab in path.parents or path in lab.parents:
            return True
    return False


def pytest_sessionstart(session):
    """As root, with lab tests selected and no lane runner holding it for us: hold the machine's lab
    test lock and remove stale test labs; note what could not be removed."""
    config = session.config
    if os.environ.get(LOCK_HELD_ENV) or os.geteuid() != 0 or not _runs_lab_tests(config):
        return
    from support.labs import lab_session

    config._khaos_lab_session = lab_session()
    config._khaos_left_behind = config._khaos_lab_session.__enter__()


def pytest_sessionfinish(session, exitstatus):
    """After every test and fixture teardown: no test lab, JVM, namespace or mount remains."""
    config = session.config
    held = getattr(config, "_khaos_lab_session", None)
    if held is None:
        return
    try:
        left = config._khaos_left_behind()
        if left:
            print(f"\nFAILED: the lab tests left behind: {left}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    finally:
        held.__exit__(None, None, None)


@pytest.fixture
def jar_built():
    """The sample job's jar (make job)."""
    from khaos_controller import REPO_ROOT

    jar = REPO_ROOT / "build" / "jobs" / "iot-vehicles.jar"
    assert jar.exists(), "build the sample job first: make job"
    return jar
