"""The daemon's log lines (control/log.py): key=value and JSON."""

from __future__ import annotations

import json

from khaos_controller.control import log


def test_log_formats():
    rec = log.log.makeRecord(
        "khaos.daemon",
        20,
        __file__,
        1,
        "decision",
        None,
        None,
        extra={"kv": {"action": "keep", "reason": "a b", "rate": 1234.5678, "n": None}},
    )
    kv = log.Formatter("kv").format(rec)
    assert kv.split(" ", 1)[1] == 'level=info event=decision action=keep reason="a b" rate=1234.57 n=None'
    js = json.loads(log.Formatter("json").format(rec))
    assert js["event"] == "decision" and js["reason"] == "a b" and js["n"] is None
