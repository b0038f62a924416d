"""The REST client's transport: one HTTP session per thread."""

from __future__ import annotations

from khaos_controller.flink.client import FlinkClient


def test_each_thread_has_its_own_http_session():
    import threading

    client = FlinkClient("jm:8081")
    seen = []
    t = threading.Thread(target=lambda: seen.append(client.session))
    t.start()
    t.join()
    assert client.session is client.session and seen[0] is not client.session
