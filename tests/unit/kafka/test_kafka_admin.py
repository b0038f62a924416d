"""Log-end offsets of a new topic: a partition whose leader is not elected yet is asked again, a lasting
error is one line."""

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from khaos_controller.errors import KhaosError
from khaos_controller.kafka import admin


class Client:
    """list_offsets answers from a script: one entry per call, each an offset or a KafkaError."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def list_offsets(self, requests, request_timeout):
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        out = {}
        for tp in requests:
            f = Future()
            if isinstance(answer, KafkaError):
                f.set_exception(KafkaException(answer))
            else:
                f.set_result(SimpleNamespace(offset=answer + tp.partition))
            out[tp] = f
        return out


@pytest.fixture(autouse=True)
def two_partitions(monkeypatch):
    monkeypatch.setattr(admin, "partitions", lambda client, topic, timeout=5.0: [0, 1])
    monkeypatch.setattr(admin, "RETRY_S", 0.01)


def test_a_leader_not_elected_yet_is_asked_again():
    client = Client(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION), KafkaError(KafkaError.LEADER_NOT_AVAILABLE), 7)
    assert admin.end_offsets(client, "out") == {0: 7, 1: 8}
    assert client.calls == 3


def test_a_lasting_retriable_error_ends_at_the_timeout_in_one_line():
    client = Client(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
    with pytest.raises(KhaosError, match=r"^kafka topic out: offsets: .*[Nn]ot leader") as e:
        admin.end_offsets(client, "out", timeout=0.2)
    assert "\n" not in str(e.value) and client.calls > 2


def test_an_error_that_is_not_retriable_is_not_asked_again():
    client = Client(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    with pytest.raises(KhaosError, match="kafka topic out: offsets: "):
        admin.start_offsets(client, "out")
    assert client.calls == 1
