"""Progress of long runs (profile, evaluate, demo): a bar with ETA on a terminal, plain lines elsewhere.

Messages (``say``) always print, one line each, so logs and CI output keep the story; the bar itself
shows only when stderr is a terminal.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Bar:
    """``with Bar(total, "failures") as bar: bar.advance(); bar.say("...")``."""

    def __init__(self, total: float, what: str, quiet: bool = False, stream=None):
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.t0 = time.monotonic()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=quiet or not self.console.is_terminal,
        )
        self._task = self._progress.add_task(what, total=total)

    def __enter__(self) -> Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def advance(self, n: float = 1.0) -> None:
        """Move the bar by ``n``."""
        self._progress.advance(self._task, n)

    def update(self, completed: float) -> None:
        """Set the bar to ``completed``."""
        self._progress.update(self._task, completed=completed)

    def say(self, text: str) -> None:
        """One line above the bar (or just the line, without a terminal)."""
        if not self.quiet:
            self.console.print(text, markup=False)

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.monotonic() - self.t0
