"""Shared test helpers: data files, models with a known answer, labs, the OpenStack simulator."""

from pathlib import Path

DATA = Path(__file__).parent / "data"
PROFILE = DATA / "profile-lab-results.csv"  # a quiet 30-failure lab profile (session 2)


def one_line(e: Exception, limit: int = 600) -> str:
    """The text of a user-facing error: one line, not a stack trace."""
    text = str(e)
    assert "\n" not in text and len(text) < limit, text
    return text
