"""Shared test helpers: data files, models with a known answer, labs, the OpenStack simulator."""

from pathlib import Path

DATA = Path(__file__).parent / "data"
PROFILE = DATA / "profile-lab-results.csv"  # the first lab profile: 8 failures (docs/results/model-fits.md)


def one_line(e: Exception, limit: int = 600) -> str:
    """The text of a user-facing error: one line, not a stack trace."""
    text = str(e)
    assert "\n" not in text and len(text) < limit, text
    return text
