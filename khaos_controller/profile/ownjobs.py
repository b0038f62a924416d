"""The profiler touches only the jobs it submitted itself.

A profiling cluster must run no job the profile run did not submit (a production inventory named by
mistake would otherwise be cancelled, every week by the re-profile timer): such a cluster is refused
before anything is done to it, in one line naming the jobs. Between units the profiler and the capacity
probe cancel only their own jobs of this run, by id.
"""

from __future__ import annotations

import threading
import time

from ..errors import KhaosError
from ..flink.client import TERMINAL, FlinkClient, FlinkError


class OwnJobs:
    """The ids of the jobs this profile run submitted (shared by its cluster threads)."""

    def __init__(self, noun: str = "profiler", verb: str = "profile"):
        self.noun, self.verb = noun, verb  # who refuses, in its one-line error
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, job_id: str) -> None:
        """A job this run submitted."""
        with self._lock:
            self._ids.add(job_id)

    def __contains__(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._ids

    def check(self, client: FlinkClient, cluster: str) -> None:
        """KhaosError naming every live job on the cluster that this run did not submit."""
        jobs = [j for j in client.get("/jobs/overview")["jobs"] if j["state"] not in TERMINAL]
        foreign = [j for j in jobs if j["jid"] not in self]
        if foreign:
            names = ", ".join(f"{j['jid']} ({j['name']})" for j in foreign)
            raise KhaosError(
                f"cluster {cluster} ({client.url}) runs jobs the {self.noun} did not submit: {names}; "
                f"{self.verb} only clusters of its own (nothing was done to it)"
            )

    def clear(self, client: FlinkClient, cluster: str, timeout: float = 60) -> None:
        """Check the cluster, then cancel this run's jobs still live on it (a unit that failed half-way)
        and wait until they have ended."""
        self.check(client, cluster)
        mine = [jid for jid in client.running_jobs() if jid in self]
        for jid in mine:
            client.cancel(jid)
        deadline = time.monotonic() + timeout
        while set(mine) & set(client.running_jobs()) and time.monotonic() < deadline:
            time.sleep(0.5)


def check_clusters(own: OwnJobs, clusters: list, deployed: bool) -> None:
    """Refuse the first cluster (``name``, ``rest_url``) that runs jobs this run did not submit. Before
    flink_cluster.yml (``deployed`` False) a JobManager that gives no answer at all is taken for one not
    deployed yet; the check is made again once it is, before any job is submitted."""
    for c in clusters:
        try:
            own.check(FlinkClient(c.rest_url), c.name)
        except FlinkError as e:
            if deployed or e.status is not None:
                raise KhaosError(
                    f"cluster {c.name}: cannot tell which jobs run on it ({e}): nothing was done to it"
                ) from None
