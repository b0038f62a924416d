"""A fault-injecting HTTP proxy in front of a real JobManager's REST API (for the hardening tests).

Requests go to the real Flink unless a rule matches. A rule is (method, path regex, action, times):

* ``garbage``: answer 200 with a body that is not JSON (Flink is not asked).
* ``garbage_after``: forward to Flink (the request takes effect), then answer garbage.
* ``error``: answer 500 (Flink is not asked).
* ``hang``: wait ``delay`` s, then forward (the client's timeout fires first).
* ``lose``: forward to Flink, then wait ``delay`` s before answering (the request took effect, the
  client never hears so: a lost answer).
* ``after``: forward, answer, then call ``hook()`` (e.g. fill a disk right after the stop).

``times`` is how often a rule fires (None: always). ``hits`` counts what fired.
"""

from __future__ import annotations

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
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.method == method
            and re.search(self.path, path) is not None
            and (self.times is None or self.hits < self.times)
        )


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
                    return self._send(500, b'{"errors": ["injected by the test proxy"]}', "application/json")
                if rule and rule.action == "hang":
                    time.sleep(rule.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, proxy.target + self.path, data=body, headers=headers, timeout=120)
                if rule and rule.action == "lose":
                    time.sleep(rule.delay)
                if rule and rule.action == "garbage_after":
                    return self._send(200, b"\x00garbled", "application/json")
                self._send(resp.status_code, resp.content, resp.headers.get("Content-Type", "application/json"))
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
