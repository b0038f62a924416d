"""The daemon around its steps (control/daemon.py): a pending change reconciled, the start against a
Flink REST stub (the job, one daemon per job), run with signals, run once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.daemon import FakeCollector, FakePlaybook, journal, make_daemon, restart, write_config

from khaos_controller.control import config as daemon_config
from khaos_controller.control import daemon, log
from khaos_controller.errors import KhaosError
from khaos_controller.signals import on_stop


def test_reconcile_finishes_a_pending_change(tmp_path, model_file):
    d = make_daemon(tmp_path, model_file)
    d.cfg.record.parent.mkdir(parents=True)
    d.cfg.record.write_text(
        json.dumps({"name": "tj", "pending": {"savepoint": "file:///sp", "old_s": 20.0, "new_s": 11.0}, "history": []})
    )
    result = d.reconcile()
    assert d.playbook.reconciled == 1 and d.calls == [] and result.interval_s == 11.0
    assert d.metrics.get("khaos_reconciliations_total") == 1
    assert [e["event"] for e in journal(d)] == ["reconcile_started", "reconcile"]
    assert d.reconcile() is None  # nothing pending any more
    # in advisor mode nothing is changed, but the pending change is reported
    d2 = make_daemon(tmp_path, model_file, advisor=True)
    d2.cfg.record.write_text(json.dumps({"name": "tj", "pending": {"old_s": 20.0, "new_s": 11.0}, "history": []}))
    assert d2.reconcile() is None and d2.calls == []


def test_every_step_finishes_a_pending_change_and_alerts_when_it_cannot(tmp_path, model_file):
    # no cooldown, and 20 s breaks R_max at this rate: every step would move the job to 10 s
    d = make_daemon(tmp_path, model_file, collector=FakeCollector(rate=1600, ci_s=20), ci={"cooldown_s": 0})
    d.cfg.record.parent.mkdir(parents=True)
    pending = {"name": "tj", "pending": {"phase": "stopping", "old_s": 20.0, "new_s": 11.0}, "history": []}
    d.cfg.record.write_text(json.dumps(pending))
    d.step()
    assert d.playbook.reconciled == 1 and json.loads(d.cfg.record.read_text())["pending"] is None
    d.step()
    assert d.playbook.reconciled == 1  # nothing pending: no playbook run
    d.cfg.record.write_text(json.dumps(pending))
    d.playbook.fail = "reconfigure.yml: flink_reconfigure: the stop has no known outcome yet"
    d.playbook.calls.clear()
    steps = [d.step(), d.step()]  # a failure is an alert, not the end of the daemon; the next step tries again
    assert d.playbook.reconciled == 3 and d.metrics.get("khaos_reconciliation_failures_total") == 2
    assert [e["status"] for e in journal(d) if e["event"] == "reconcile"] == ["ok", "failed", "failed"]
    # no new change is started on top of the pending one: the failed reconciliation is the step's outcome
    assert d.playbook.calls == []
    assert all(s.decision.alert for s in steps)
    changes = [s for s in steps if s.decision.action == "change"]
    assert changes, [s.decision.action for s in steps]
    assert all(s.realization.status == "failed" and "no known outcome" in s.realization.error for s in changes)


class FlinkStub:
    """A Flink REST stub on a local port: /jobs/overview and the checkpoints of finished jobs."""

    def __init__(self, jobs):
        stub = self
        self.jobs = jobs

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/jobs/overview":
                    body = {"jobs": stub.jobs}
                elif self.path.endswith("/checkpoints"):
                    body = {"latest": {"savepoint": {"external_path": "file:/sp/savepoint-1"}}}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flink_stub():
    stubs = []

    def make(jobs):
        stubs.append(FlinkStub(jobs))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def test_unknown_job_at_start_is_one_clear_line(tmp_path, model_file, flink_stub):
    stub = flink_stub(
        [
            {"jid": "a1", "name": "other", "state": "RUNNING"},
            {"jid": "b2", "name": "tj", "state": "FINISHED", "end-time": 5},
        ]
    )
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}))
    d = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    with pytest.raises(KhaosError) as e:
        d.start()
    d.close()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{cfg.path}: job: no running job named 'tj' on {stub.url}")
    assert "the last one (b2) is FINISHED with savepoint file:/sp/savepoint-1" in msg
    assert not d.collector.started  # nothing started


def test_two_jobs_of_the_name_refuse_to_start(tmp_path, model_file, flink_stub):
    stub = flink_stub(
        [{"jid": "a1", "name": "tj", "state": "RUNNING"}, {"jid": "a2", "name": "tj", "state": "RUNNING"}]
    )
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}))
    d = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    with pytest.raises(KhaosError, match="job: 2 jobs named 'tj' run"):
        d.start()
    d.close()


def test_unreachable_flink_at_start(tmp_path, model_file):
    cfg = daemon_config.load_config(write_config(tmp_path, model_file))  # http://127.0.0.1:1: nothing listens
    d = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    with pytest.raises(KhaosError, match=r"flink.rest_url: Flink REST at http://127.0.0.1:1 is unreachable"):
        d.start()
    d.close()


def test_one_daemon_per_job(tmp_path, model_file, flink_stub):
    stub = flink_stub([{"jid": "a1", "name": "tj", "state": "RUNNING"}])
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}))
    cfg.record.parent.mkdir(parents=True, exist_ok=True)
    cfg.record.write_text(json.dumps({"name": "tj", "pending": None, "history": []}))
    d1 = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
    d1.start()
    try:
        d2 = daemon.Daemon(cfg, collector=FakeCollector(), realizer=restart(cfg))
        with pytest.raises(KhaosError, match=f"another khaos daemon \\(pid {os.getpid()}\\) already controls job 'tj'"):
            d2.start()
    finally:
        d1.close()


@pytest.fixture
def own_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def fast_config(tmp_path, model_file, flink_stub):
    """A config on a Flink stub with one running job 'tj', deciding twice a second, with its record."""
    stub = flink_stub([{"jid": "a1", "name": "tj", "state": "RUNNING"}])
    loop = {"period_s": 0.5, "window_s": 0.5, "sample_s": 0.25}
    cfg = daemon_config.load_config(write_config(tmp_path, model_file, flink={"rest_url": stub.url}, loop=loop))
    cfg.record.parent.mkdir(parents=True, exist_ok=True)
    cfg.record.write_text(json.dumps({"name": "tj", "pending": None, "history": []}))
    return cfg


def test_sigterm_lets_the_reconfiguration_finish_then_exits_0(tmp_path, model_file, flink_stub, own_signals, caplog):
    cfg = fast_config(tmp_path, model_file, flink_stub)
    finished = []

    def during():  # two signals arrive while the playbook runs; it must still complete
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        finished.append(True)

    d = daemon.Daemon(
        cfg, collector=FakeCollector(rate=1500, ci_s=20), realizer=restart(cfg, FakePlaybook(during=during))
    )
    with caplog.at_level("INFO", logger="khaos"), on_stop(d.on_signal):
        logging_prop = log.log.parent.propagate
        log.log.parent.propagate = True
        try:
            rc = d.run()
        finally:
            log.log.parent.propagate = logging_prop
    assert rc == 0 and finished == [True] and d.realizer.playbook.calls == [11.0]
    assert d.metrics.get("khaos_reconfigurations_total") == 1
    events = [e["event"] for e in journal(d)]
    assert events == ["start", "reconfigure_started", "decision", "stop"]
    msgs = [r.getMessage() for r in caplog.records]
    assert "stopping" in msgs and "still_finishing" in msgs
    assert d.collector.stopped


def test_once_runs_one_iteration(tmp_path, model_file, flink_stub, own_signals):
    cfg = fast_config(tmp_path, model_file, flink_stub)
    d = daemon.Daemon(cfg, advisor=True, collector=FakeCollector(rate=300, ci_s=20))
    assert d.run(once=True) == 0
    assert [e["event"] for e in journal(d)] == ["start", "decision", "stop"]


def test_an_answer_of_an_unexpected_shape_is_an_alert_not_the_end(
    tmp_path, model_file, flink_stub, own_signals, caplog
):
    """A proxy's page or another Flink version: the step fails with one line, the daemon keeps running."""
    cfg = fast_config(tmp_path, model_file, flink_stub)
    odd = FakeCollector(rate=300, ci_s=20)
    odd.snapshot = lambda window_s: [][0]  # what indexing a list where a dict was expected does
    d = daemon.Daemon(cfg, advisor=True, collector=odd)
    assert d.run(once=True) == 0
    failed = [r for r in caplog.records if r.getMessage() == "step_failed"]
    assert failed, [r.getMessage() for r in caplog.records]
    assert [e["event"] for e in journal(d)] == ["start", "stop"]


def test_a_json_array_error_body_is_one_line():
    import requests

    from khaos_controller.flink.client import _error_text

    resp = requests.Response()
    resp.status_code, resp.reason = 502, "Bad Gateway"
    resp._content = b'["upstream timed out", "retry later"]'
    assert _error_text(resp) == "upstream timed out"
    resp._content = b"42"
    assert _error_text(resp) == "42"
