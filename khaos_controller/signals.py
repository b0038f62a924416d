"""The one way Khaos reacts to SIGINT / SIGTERM: a context manager that routes both to a callback.

Long runs (profile, evaluate, demo) cancel and clean up; the daemon lets the step in flight finish.
Outside the main thread (where Python cannot install handlers) it does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_stop(callback: Callable[[int], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call ``callback(signum)``; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, lambda signum, _frame: callback(signum))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def interrupt(_signum: int) -> None:
    """A callback for :func:`on_stop` that makes SIGTERM behave like Ctrl-C (KeyboardInterrupt)."""
    raise KeyboardInterrupt


def name(signum: int) -> str:
    """SIGTERM, SIGINT, ..."""
    return signal.Signals(signum).name
