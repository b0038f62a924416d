"""JobProbe against a fake REST client: which second the sink's gauges describe, Flink's RUNNING time."""

from __future__ import annotations

from khaos_controller.flink.probe import JobProbe

SRC, SINK = "src", "sink"


class FakeClient:
    def __init__(self):
        self.seconds = (1000.0, 1000.0)  # latencySecond (min, max) over the sink's subtasks
        self.start = 5000  # vertices' start-time (first DEPLOYING of the current attempts), ms
        self.running = [7000, 7400]  # RUNNING timestamps of the sink's subtasks, ms
        self.asked_times = 0
        self.metric_requests: list[str] = []  # vertex of each metrics request

    def job(self, job_id):
        return {
            "state": "RUNNING",
            "vertices": [
                {
                    "id": SRC,
                    "name": "Source: Replay",
                    "status": "RUNNING",
                    "parallelism": 1,
                    "tasks": {"RUNNING": 1},
                    "start-time": self.start,
                },
                {
                    "id": SINK,
                    "name": "VehicleState -> Latency -> AuditSink: Writer",
                    "status": "RUNNING",
                    "parallelism": 2,
                    "tasks": {"RUNNING": 2},
                    "start-time": self.start,
                },
            ],
        }

    def checkpoints(self, job_id):
        return {"counts": {"completed": 3, "failed": 0}}

    def job_metrics(self, job_id, names):
        return {"numRestarts": 1}

    def vertex_metric_names(self, job_id, vid):
        if vid == SRC:
            return ["Source__Replay.emitted", "Source__Replay.backlog", "Source__Replay.eventTimeLagMs"]
        return [
            "Latency.latencyP99Ms",
            "Latency.latencyMaxMs",
            "Latency.latencyCount",
            "Latency.latencySecond",
            "numRecordsIn",
        ]

    def vertex_aggregates(self, job_id, vid, names, aggs):
        self.metric_requests.append(vid)
        values = {
            "Source__Replay.emitted": 10.0,
            "Source__Replay.backlog": 0.0,
            "Source__Replay.eventTimeLagMs": 0.0,
            "Latency.latencyP99Ms": 99.0,
            "Latency.latencyMaxMs": 120.0,
            "Latency.latencyCount": 1000.0,
            "numRecordsIn": 5.0,
        }
        out = {(n, a): values[n] for n in names if n in values for a in aggs}
        if "Latency.latencySecond" in names:
            out.update(
                {("Latency.latencySecond", "min"): self.seconds[0], ("Latency.latencySecond", "max"): self.seconds[1]}
            )
        return out

    def get(self, path):
        assert path.endswith("/subtasktimes")
        self.asked_times += 1
        running = [6000] if f"/{SRC}/" in path else self.running
        return {
            "subtasks": [
                {"subtask": i, "timestamps": {"DEPLOYING": self.start, "RUNNING": r}} for i, r in enumerate(running)
            ]
        }


def test_sink_second_only_when_every_subtask_describes_the_same_second():
    c = FakeClient()
    p = JobProbe(c, "j")
    s = p.sample()
    assert s.sink_second == 1000.0 and s.throughput == 1000.0 and s.latency_p99_ms == 99.0
    c.seconds = (1000.0, 1001.0)  # one subtask already rolled over: the sum mixes two seconds
    assert p.sample().sink_second is None
    c.seconds = (0.0, 0.0)  # a fresh attempt that has published no second yet
    assert p.sample().sink_second is None
    # once the gauges are known: one metrics request per vertex per sample, whatever the aggregations
    c.metric_requests.clear()
    p.sample()
    assert sorted(c.metric_requests) == [SINK, SRC]


def test_running_since_is_flinks_time_of_the_last_task_running():
    c = FakeClient()
    p = JobProbe(c, "j")
    assert p.sample().running_since == 7.4  # the later of the subtasks, in epoch s
    asked = c.asked_times
    assert p.sample().running_since == 7.4 and c.asked_times == asked  # same attempts: not asked again
    c.start, c.running = 9000, [9500, 0]  # restarted; one subtask not RUNNING yet in this attempt
    assert p.sample().running_since is None
    c.running = [9500, 9800]
    assert p.sample().running_since == 9.8
