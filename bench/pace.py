#!/usr/bin/env python3
"""Benchmark: change a running job's checkpoint interval 10 times in 10 minutes by pacing.

A 3-host lab, the sample job at a steady rate with a 60 s configured interval (the safety net), and the
pacer (control/pacer.py) driven through a schedule of 10 intervals, one minute each. Reported:
restarts and job ids (expected: 0 and one), paced triggers and their results, the gaps between the
checkpoints Flink completed in each minute against the interval asked for, the sink's p99 latency in
the second of each change against the 5 seconds on either side (no data gap: the same), and the audit
of the exactly-once sink (0 lost, 0 duplicated).

Run as root: .venv/bin/python bench/pace.py [--rate 1000] [--minutes-each 1]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from common import cluster_lab, header

from khaos_controller.control.metrics import Metrics
from khaos_controller.control.pacer import Pacer
from khaos_controller.flink import audit
from khaos_controller.flink.client import FlinkClient, FlinkError
from khaos_controller.flink.sampler import JobSampler
from khaos_controller.infra import ansible
from khaos_controller.infra.inventory import cluster_facts
from khaos_controller.infra.lab import Lab
from khaos_controller.journal import Journal, read

JOB = "paced"
NET_S = 60
SCHEDULE = [2, 10, 4, 20, 3, 15, 5, 30, 8, 2]  # s: the 10 paced intervals, in order


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000, help="events/s of the job (default 1000)")
    ap.add_argument("--minutes-each", type=float, default=1.0, help="minutes at each interval (default 1)")
    args = ap.parse_args()
    header("pace")
    lab = Lab("bpace")
    tmp = Path(tempfile.mkdtemp(prefix="khaos-bench-pace-"))
    pacer = sampler = None
    try:
        lab = cluster_lab("bpace", 3, tmp / "ansible")
        start_ms = int(time.time() * 1000)
        out = lab.shared_dir / "jobs" / JOB / "out"
        ansible.run_playbook(
            "deploy_job",
            lab.inventory,
            base_dir=tmp / "ansible",
            extravars={
                "checkpoint_interval": f"{NET_S}s",
                "flink_job_name": JOB,
                "flink_job_start_ms": start_ms,
                "flink_job_rate": args.rate,
                "flink_job_output_dir": str(out),
            },
        )
        client = FlinkClient(cluster_facts(lab.inventory).rest_url)
        [job_id] = [j["jid"] for j in client.live_jobs(JOB)]
        journal = tmp / "journal.jsonl"
        pacer = Pacer(client, JOB, Journal(journal), Metrics({"flink_job": JOB})).start()
        sampler = JobSampler(client, JOB, period=0.5).start()  # 2 Hz: every sink second is seen
        seen: dict[int, dict] = {}  # every completed checkpoint (Flink's history keeps only the last 10)
        stop_poll = threading.Event()

        def poll() -> None:
            while not stop_poll.wait(0.5):
                try:
                    for c in client.checkpoints(job_id).get("history") or []:
                        if c.get("status") == "COMPLETED":
                            seen.setdefault(c["id"], c)
                except FlinkError:
                    pass

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        time.sleep(30)  # warm up at the safety net alone
        changes = []
        for ci in SCHEDULE:
            changes.append((time.time(), ci))
            pacer.set_interval(ci)  # every interval of the schedule is below the safety net
            print(f"[{time.strftime('%H:%M:%S')}] paced at {ci:g} s (safety net {pacer.safety_net_s} s)", flush=True)
            time.sleep(args.minutes_each * 60)
        end = time.time()
        pacer.stop()
        sampler.stop()
        stop_poll.set()
        poller.join()
        live = client.live_jobs(JOB)
        restarts = client.job_metrics(job_id, ["numRestarts"]).get("numRestarts")
        hist = client.checkpoints(job_id)
        location = client.stop_with_savepoint(live[0]["jid"], timeout=120) if len(live) == 1 else None
        result = audit.audit(out)

        triggers = [e for e in read(journal) if e["event"] == "checkpoint_trigger"]
        done = sorted(seen.values(), key=lambda c: c["trigger_timestamp"])
        print(f"job ids: {sorted({j['jid'] for j in live})} (deployed {job_id}); numRestarts {restarts:g}")
        print(
            f"paced triggers: {sum(e['status'] == 'completed' for e in triggers)} completed, "
            f"{sum(e['status'] == 'failed' for e in triggers)} failed; "
            f"trigger->complete median {statistics.median(e['seconds'] for e in triggers):.2f}s"
        )
        print(f"Flink: {hist['counts']['completed']} checkpoints completed, {hist['counts']['failed']} failed")
        print("interval asked | checkpoints | median gap | max gap  (Flink's completed checkpoints, trigger times)")
        bounds = [*changes, (end, None)]
        for (t0, ci), (t1, _) in itertools.pairwise(bounds):
            ts = [c["trigger_timestamp"] / 1000 for c in done if t0 + ci < c["trigger_timestamp"] / 1000 <= t1]
            gaps = [b - a for a, b in itertools.pairwise(ts)]
            med = f"{statistics.median(gaps):6.1f}s" if gaps else "     -"
            print(f"{ci:>13g}s | {len(ts):>11} | {med:>10} | {max(gaps, default=0):6.1f}s")
        frame = sampler.frame().dropna(subset=["sink_second", "latency_p99_ms"])
        per_s = frame.groupby("sink_second")["latency_p99_ms"].last()
        print("change second | p99 that second | p99 of the 10 s around (mean, min-max)")
        for t, ci in changes:
            s = int(t)
            around = [per_s[x] for x in range(s - 5, s + 6) if x != s and x in per_s.index]
            at = per_s.get(s)
            print(
                f"{time.strftime('%H:%M:%S', time.localtime(s))} -> {ci:>3g}s | "
                f"{'-' if at is None else f'{at:.0f} ms':>15} | "
                f"{statistics.mean(around):.0f} ms ({min(around):.0f}-{max(around):.0f})"
                if around
                else "no samples around"
            )
        seconds = per_s.index[(per_s.index >= changes[0][0]) & (per_s.index <= end - 2)]
        missing = sorted(set(range(int(changes[0][0]), int(end) - 2)) - set(int(x) for x in seconds))
        print(f"sink seconds with a p99 sample during the schedule: {len(seconds)}, missing {len(missing)}")
        print(f"stopped with savepoint {location}")
        print(f"sink audit: {result.records} records, lost {result.lost}, duplicated {result.duplicated}")
        ok = len(live) == 1 and restarts == 0 and result.lost == 0 and result.duplicated == 0
        return 0 if ok else 1
    finally:
        if pacer is not None:
            pacer.stop()
        if sampler is not None:
            sampler.stop()
        lab.down(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
