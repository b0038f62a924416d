#!/usr/bin/env python3
"""Benchmark: the daemon for 30 minutes on a lab job whose rate keeps stepping, with a forced failed
reconfiguration in the middle.

A 3-host lab, the sample job on a trace that alternates 300 and 1500 events/s every 4 minutes (the
recovery limit is met at 20 s only at the low rate, so the daemon keeps moving the interval), and
`khaos run` whose Flink URL goes through a fault-injecting proxy. After --break-at seconds the next
stop-with-savepoint the daemon asks for is accepted by Flink but answered with garbage: the change
fails with no known outcome, the job is stopped, the record keeps the change pending. The daemon
must alert, reconcile on its next step (bring the job back from the recorded savepoint) and go on.
At the end the daemon is stopped, the job stopped with a savepoint and its sink audited.

Run as root: .venv/bin/python bench/daemon_soak.py [--minutes 30] [--break-at 720]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]
from common import cluster_lab, header
from support.models import rate_model
from support.proxy import FaultProxy, Rule

from khaos_controller.flink import audit
from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible
from khaos_controller.infra.inventory import cluster_facts
from khaos_controller.infra.lab import Lab
from khaos_controller.journal import read
from khaos_controller.model import store
from khaos_controller.profile import workload

JOB = "soak"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30, help="how long the daemon runs (default 30)")
    ap.add_argument("--break-at", type=float, default=720, help="s after start: the next stop fails (default 720)")
    args = ap.parse_args()
    header("daemon_soak")
    lab = Lab("bsoak")
    tmp = Path(tempfile.mkdtemp(prefix="khaos-bench-soak-"))
    daemon = proxy = None
    try:
        lab = cluster_lab("bsoak", 3, tmp / "ansible")
        trace = lab.shared_dir / "traces" / "soak.txt"
        trace.parent.mkdir(parents=True, exist_ok=True)
        steps = [300.0] * 240 + [1500.0] * 240
        workload.write_trace(pd.Series(steps * 12), trace)
        start_ms = int(time.time() * 1000)
        out = lab.shared_dir / "jobs" / JOB / "out"
        ansible.run_playbook(
            "deploy_job",
            lab.inventory,
            base_dir=tmp / "ansible",
            extravars={
                "checkpoint_interval": "20s",
                "flink_job_name": JOB,
                "flink_job_start_ms": start_ms,
                "flink_job_args": ["--trace", str(trace), "--output", str(out), "--start", str(start_ms)],
            },
        )
        rest = cluster_facts(lab.inventory).rest_url
        proxy = FaultProxy(rest)
        model = store.save(rate_model(), tmp / "model.json")
        journal = tmp / "journal.jsonl"
        cfg = {
            "job": JOB,
            "flink": {"rest_url": proxy.url},
            "inventory": str(lab.inventory),
            "model": str(model),
            "limits": {"latency_ms": 1000, "recovery_s": 25},
            "mtbf_h": 0.01,  # a recovery excess outweighs a restart: the daemon keeps moving
            # slack 1e6: the longest feasible interval, which follows the rate (with failures every 36 s
            # the slack rule would hold the fastest recovery, 2 s, and the soak would make no changes)
            "ci": {"min": 2, "max": 20, "dead_band_s": 3, "cooldown_s": 120, "slack_s_per_h": 1e6},
            "realize": {"mode": "restart"},  # the soak is of stop-with-savepoint changes
            "loop": {"period_s": 30, "window_s": 20, "min_uptime_s": 30, "forecast_step_s": 5, "stuck_s": 60},
            "journal": str(journal),
            "metrics": {"port": 0},
            "state_dir": str(lab.dir / "state"),
        }
        (tmp / "soak.yml").write_text(yaml.safe_dump(cfg))
        log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - the daemon's log until the end
        daemon = subprocess.Popen(
            [sys.executable, "-m", "khaos_controller.cli", "run", str(tmp / "soak.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        t0 = time.monotonic()
        broken = False
        while time.monotonic() - t0 < args.minutes * 60:
            assert daemon.poll() is None, (tmp / "daemon.log").read_text()[-3000:]
            if not broken and time.monotonic() - t0 >= args.break_at:
                proxy.add(Rule("POST", r"^/jobs/[0-9a-f]{32}/stop$", "garbage_after"))
                broken = True
                print(f"[{time.monotonic() - t0:5.0f}s] armed: the next stop is answered with garbage", flush=True)
            time.sleep(5)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=900)
        entries = read(journal)
        client = FlinkClient(rest)
        live = client.live_jobs(JOB)
        location = client.stop_with_savepoint(live[0]["jid"], timeout=120) if len(live) == 1 else None
        result = audit.audit(out)
        decisions = [e for e in entries if e["event"] == "decision"]
        realized = [e["realize"] for e in decisions if "realize" in e]
        reconciles = [e for e in entries if e["event"] == "reconcile"]
        alerts = [e for e in entries if e["event"] == "job_alert"]
        print(f"daemon exit {daemon.returncode}; {len(decisions)} decisions over {args.minutes:g} min")
        print(
            f"changes: {sum(r['status'] == 'ok' for r in realized)} ok, "
            f"{sum(r['status'] == 'failed' for r in realized)} failed; forced failure fired {proxy_hits(proxy)}x"
        )
        for r in realized:
            if r["status"] == "failed":
                print(f"  failed change: {r['error'][:200]}")
        print(f"reconciles: {[(e['status'], e.get('action') or e.get('error', '')[:80]) for e in reconciles]}")
        print(
            f"job alerts: {[(a['kind'], a['since_s']) for a in alerts]}; decisions with an alert: "
            f"{sum(bool(e['decision'].get('alert')) for e in decisions)}"
        )
        print(f"at the end: {len(live)} live job(s) named {JOB}; stopped with savepoint {location}")
        print(f"sink audit: {result.records} records, lost {result.lost}, duplicated {result.duplicated}")
        print(json.dumps({"journal": str(journal), "log": str(tmp / "daemon.log")}))
        ok = (
            len(live) == 1
            and result.lost == 0
            and result.duplicated == 0
            and any(e["status"] == "ok" for e in reconciles)
        )
        return 0 if ok else 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        if proxy is not None:
            proxy.close()
        lab.down(quiet=True)


def proxy_hits(proxy: FaultProxy) -> int:
    return sum(r.hits for r in proxy.rules)


if __name__ == "__main__":
    sys.exit(main())
