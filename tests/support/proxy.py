"""A fault-injecting HTTP proxy in front of a real JobManager's REST API (for the hardening tests).

Requests go to the real Flink unless a rule matches. A rule is (method, path regex, action, times):

* ``garbage``: answer 200 with a body that is not JSON (Flink is not asked).
* ``garbage_after``: forward to Flink (the request takes effect), then answer garbage.
* ``error``: answer ``status`` (default 500) with a Flink-like error body (Flink is not asked).
* ``hang``: wait ``delay`` s, then forward (the client's timeout fires first).
* ``lose``: forward to Flink, then wait ``delay`` s before answering (the request took effect, the
  client never hears so: a lost answer).
* ``after``: forward, answer, then call ``hook()`` (e.g. fill a disk right after the stop).
* ``shift``: forward, then move every epoch-ms time in the JSON answer by ``shift_ms`` (keys ending in
  ``time``/``timestamp``, e.g. ``start-time``, ``trigger_timestamp``, ``now``, and the per-state
  ``timestamps``): a JobManager whose clock is ahead of (or behind) ours.

``times`` is how often a rule fires (None: always). ``hits`` counts what fired.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass
class Rule:
    method: str
    path: str
    action: str
    times: int | None = 1
    delay: float = 0.0
    hook: Callable[[], None] | None = None
    status: int = 500  # the ``error`` action's HTTP status
    shift_ms: int = 0  # the ``shift`` action's clock offset
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.method == method
            and re.search(self.path, path) is not None
            and (self.times is None or self.hits < self.times)
        )


TIME_KEY = re.compile(r"(time|timestamp|heartbeat|^now)$", re.IGNORECASE)
EPOCH_MS = 10**12  # smaller numbers are durations or -1 (no end yet), not times


def shift_times(value, ms: int):
    """``value`` (parsed JSON) with every epoch-ms time moved by ``ms``."""
    if isinstance(value, list):
        return [shift_times(v, ms) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if isinstance(v, int) and v > EPOCH_MS and TIME_KEY.search(key):
            out[key] = v + ms
        elif key == "timestamps" and isinstance(v, dict):  # /jobs/:id: when the job entered each state
            out[key] = {s: t + ms if isinstance(t, int) and t > EPOCH_MS else t for s, t in v.items()}
        else:
            out[key] = shift_times(v, ms)
    return out


def shifted(content: bytes, ms: int) -> bytes:
    """A JSON answer with its times moved by ``ms``; anything else as it is."""
    try:
        return json.dumps(shift_times(json.loads(content), ms)).encode()
    except ValueError:
        return content


@dataclass
class FaultProxy:
    target: str
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                rule = proxy._take(self.command, self.path)
                if rule and rule.action == "garbage":
                    return self._send(200, b"<html>not json</html>", "text/html")
                if rule and rule.action == "error":
                    return self._send(rule.status, b'{"errors": ["injected by the test proxy"]}', "application/json")
                if rule and rule.action == "hang":
                    time.sleep(rule.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, proxy.target + self.path, data=body, headers=headers, timeout=120)
                if rule and rule.action == "lose":
                    time.sleep(rule.delay)
                if rule and rule.action == "garbage_after":
                    return self._send(200, b"\x00garbled", "application/json")
                content = shifted(resp.content, rule.shift_ms) if rule and rule.action == "shift" else resp.content
                self._send(resp.status_code, content, resp.headers.get("Content-Type", "application/json"))
                if rule and rule.action == "after" and rule.hook:
                    rule.hook()

            def _send(self, code, data, ctype):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (its timeout): that is the point of some rules

            do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server names

            def log_message(self, *args):
                pass

        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for r in self.rules:
                if r.matches(method, path):
                    r.hits += 1
                    return r
        return None

    def add(self, *rules: Rule) -> None:
        with self._lock:
            self.rules[:] = list(rules)

    def clear(self) -> None:
        self.add()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
