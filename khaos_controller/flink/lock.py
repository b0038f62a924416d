"""One owner per job: an flock on ``STATE_DIR/.<job>.<what>.lock`` that holds the owner's pid."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import KhaosError


class JobLock:
    """``lock = JobLock(state_dir, job, "daemon").acquire()`` ... ``lock.release()``; the kernel drops it
    when the process dies, so a killed owner never leaves it behind."""

    def __init__(self, state_dir: Path, job: str, what: str = "daemon"):
        self.path = Path(state_dir) / f".{job}.{what}.lock"
        self.job, self.what = job, what
        self._fh = None

    def acquire(self) -> JobLock:
        """Take the lock now or raise KhaosError naming the pid that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+")  # noqa: SIM115 - held (with its flock) until release()
        except OSError as e:
            raise KhaosError(f"cannot create {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            other = fh.read().strip() or "?"
            fh.close()
            raise KhaosError(
                f"another khaos {self.what} (pid {other}) already controls job {self.job!r} ({self.path})"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Give the lock up (closing the file drops the flock)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
