"""How long the restarted tasks spent deploying and restoring state, from Flink's status-duration."""

from __future__ import annotations

from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.profile.measure import restart_phases


class Answers(FlinkClient):
    """A client whose GETs come from a dict (path -> JSON), as Flink 2.3 answers them."""

    def __init__(self, answers: dict):
        super().__init__("http://jm:8081")
        self.answers = answers

    def get(self, path, **kw):
        if path not in self.answers:
            raise FlinkError(f"Flink REST GET {path}: HTTP 404", status=404)
        return self.answers[path]


def sub(initializing_ms: int, deploying_ms: int = 90) -> dict:
    durations = {"CREATED": 5, "SCHEDULED": 40, "DEPLOYING": deploying_ms, "INITIALIZING": initializing_ms}
    return {"subtask": 0, "status": "RUNNING", "status-duration": {**durations, "RUNNING": 60000}}


JOB = {
    "/jobs/j": {"vertices": [{"id": "src"}, {"id": "state"}]},
    "/jobs/j/vertices/src": {"subtasks": [sub(300)]},
    "/jobs/j/vertices/state": {"subtasks": [sub(5299, 120), sub(4100)]},
}


def test_the_longest_subtask_of_every_vertex_gives_each_phase():
    s = Answers(JOB).phase_seconds("j")
    assert s["INITIALIZING"] == 5.299 and s["DEPLOYING"] == 0.12 and s["RUNNING"] == 60.0


def test_restore_and_deploy_columns_and_none_when_flink_does_not_say():
    assert restart_phases(Answers(JOB), "j") == {"deploy_s": 0.04 + 0.12, "restore_s": 5.299}
    assert restart_phases(Answers({}), "j") == {"deploy_s": None, "restore_s": None}
    older = {"/jobs/j": {"vertices": [{"id": "v"}]}, "/jobs/j/vertices/v": {"subtasks": [{"subtask": 0}]}}
    assert restart_phases(Answers(older), "j") == {"deploy_s": None, "restore_s": None}
