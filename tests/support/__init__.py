"""Shared test helpers: data files, models with a known answer, labs, the OpenStack simulator."""

from pathlib import Path

DATA = Path(__file__).parent / "data"
PROFILE = DATA / "profile-lab-results.csv"  # the first lab profile: 8 failures (docs/results/model-fits.md)
# a small experiment file: 2 intervals x 2 rates x 2 modes, units u01-ci12-r1000 .. u04-ci4-r3000
SMALL_EXPERIMENT = """
name: t
job: {jar: build/jobs/iot-vehicles.jar}
checkpoint_intervals: [4, 12]
workload: {rates: [1000, 3000]}
failures: {modes: [process, host], margin_s: 1.5}
"""


def one_line(e: Exception, limit: int = 600) -> str:
    """The text of a user-facing error: one line, not a stack trace."""
    text = str(e)
    assert "\n" not in text and len(text) < limit, text
    return text
