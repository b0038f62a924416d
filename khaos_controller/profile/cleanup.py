"""What a finished unit leaves behind: its savepoint is disposed through Flink (the JobManager deletes it
from the shared directory or the store with its own access), and the disk the labs use is sampled, so
that a long profile of GB-sized state stays bounded and reports its peak."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from ..flink.client import FlinkClient, FlinkError


def disk_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (links not followed; files that vanish are skipped)."""
    total = 0
    for base, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


class Cleanup:
    """Disposes unit savepoints and keeps the peak disk use of the profile's labs."""

    def __init__(self, journal):
        self.journal = journal
        self.peak_bytes = 0
        self._lock = threading.Lock()

    def unit_done(self, cluster, client: FlinkClient, unit: str, savepoint: str | None) -> None:
        """Sample the labs' disk (with the unit's savepoint still there), then dispose of the savepoint; a
        failed disposal is a journal line ``savepoint_kept`` with the reason, never a failed unit."""
        self.sample(cluster)
        if not savepoint:
            return
        try:
            client.dispose_savepoint(savepoint)
            self.journal.write("savepoint_disposed", cluster=cluster.name, unit=unit, savepoint=savepoint)
        except FlinkError as e:
            self.journal.write("savepoint_kept", cluster=cluster.name, unit=unit, savepoint=savepoint, error=str(e))

    def sample(self, cluster) -> None:
        """The lab's disk use now (a cluster of an inventory has no lab directory to measure)."""
        if cluster.lab is None:
            return
        used = disk_bytes(cluster.lab.dir)
        with self._lock:
            self.peak_bytes = max(self.peak_bytes, used)
        self.journal.write("disk", cluster=cluster.name, bytes=used)
