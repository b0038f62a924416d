"""No service user can make root act on a path it controls (symlink attacks), on real lab hosts.

One lab: a JobManager, a TaskManager, a bastion and a Kafka host. Flink (playbooks/flink_cluster.yml), Kafka
(kafka.yml) and the Khaos daemon (controller.yml, with a job to watch) run as ``nobody:nogroup``: the machine
has them and a lab host shares its /etc/passwd, which must be unchanged at the end.

A chaos kill of the broker works as nobody too. Then, acting as ``nobody``, the test replaces every path
the roles gave that user with a link to a victim. The paths are found on each host: what nobody owns below the
roles' directories, the topmost such paths and the files in them. Each victim is a fresh root-owned 0700
directory in the host's private /srv. It holds a 0600 file with the PID of a root process named ``java``, so a
pid file that root followed would aim its kill there. A directory's link points at the victim, any other
path's at the file in it.

Every root action of the roles runs again:

- the three deploy playbooks, with a changed restart delay (so their restart handlers run too);
- a chaos kill of the TaskManager and of the broker (inject_failure.yml);
- the teardown's stops (teardown.yml) and the daemon's stop (its ctl, as controller.yml's stop runs it).

Each victim must be unchanged afterwards (owner, mode, contents; a refusal or EACCES counts as defended), and
its process alive. Then nobody puts its own files back (a broker does not survive its data dir swapped; its
supervisor starts it again), and each service runs as nobody and answers.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.labs import fresh_lab, on_host
from support.models import rate_model

from khaos_controller.flink.client import FlinkClient
from khaos_controller.infra import ansible, bastion
from khaos_controller.kafka import admin as kafka
from khaos_controller.model import store

pytestmark = pytest.mark.lab

LAB = "tsym"
JM, TM, BASTION, BROKER = f"{LAB}-1", f"{LAB}-2", f"{LAB}-3", f"{LAB}-kafka1"
JOB = "sym"
NOBODY = {
    "flink_user": "nobody",
    "flink_group": "nogroup",
    "kafka_user": "nobody",
    "kafka_user_group": "nogroup",
    "khaos_controller_user": "nobody",
    "khaos_controller_user_group": "nogroup",
}
ETC = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
METRICS_PORT = 9790
# The "restart" round changes these, so that every restart handler runs as well.
RESTART = {"flink_restart_delay": 3, "kafka_restart_delay": 3, "khaos_controller_restart_delay": 3}


def roles_dirs(lab) -> dict[str, list[str]]:
    """Where each host's role keeps its files: the install dirs, and the data and state dirs the lab's
    group_vars put on the lab's shared dir (Kafka's log.dirs, the daemon's state dir)."""
    return {
        JM: ["/opt/flink"],
        TM: ["/opt/flink"],
        BROKER: ["/opt/kafka", f"{lab.shared_dir}/kafka"],
        BASTION: ["/opt/khaos", str(lab.dir / "state")],
    }


def etc_digest() -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in ETC if Path(p).exists()}


def given_to_nobody(lab, host: str, dirs: list[str]) -> list[tuple[str, str]]:
    """(kind, path) of what the roles gave nobody on the host: the topmost paths nobody owns, and what
    lies directly in them; deepest first (a directory's files are swapped before the directory)."""
    out = on_host(lab, host, f"find {' '.join(map(shlex.quote, dirs))} -user nobody -printf '%y\\t%p\\n'").stdout
    owned = dict(reversed(line.split("\t", 1)) for line in out.splitlines())
    tops = {p for p in owned if os.path.dirname(p) not in owned}
    given = [p for p in owned if p in tops or os.path.dirname(p) in tops]
    return [(owned[p], p) for p in sorted(given, key=lambda p: (-p.count("/"), p))]


ATTACK = r"""
set -u
mkdir -p /srv/victims && chmod 0755 /srv/victims
cp /bin/sleep /srv/victims/java
setsid -f sh -c 'echo $$ > /srv/victims/pid; exec /srv/victims/java 100000' </dev/null >/dev/null 2>&1
for _ in $(seq 50); do [ -s /srv/victims/pid ] && break; sleep 0.1; done
vpid=$(cat /srv/victims/pid)
echo "pid $vpid"
i=0
attack() {  # attack KIND PATH: a victim as root, then as nobody PATH becomes a link to it
  i=$((i + 1))
  v=/srv/victims/v$i
  mkdir -m 0700 "$v" && echo "$vpid" >"$v/f" && chmod 0600 "$v/f"
  if [ "$1" = d ]; then target=$v; else target=$v/f; fi
  if err=$(setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
    sh -c 'mv -T "$1" "$1.orig" && ln -s "$2" "$1"' sh "$2" "$target" 2>&1); then
    echo "swapped $i $2"
  else
    echo "refused $i $2 ${err//$'\n'/ }"
  fi
}
"""

CHECK = r"""
vpid=$(cat /srv/victims/pid)
echo "alive $(cat /proc/$vpid/comm 2>/dev/null)"
for v in /srv/victims/v*; do
  echo "$v $(stat -c '%U:%G:%a' "$v") $(ls -A "$v" | tr '\n' ,) $(stat -c '%U:%G:%a' "$v/f") $(cat "$v/f")"
done
"""


def attack(lab, host: str, paths: list[tuple[str, str]]) -> dict:
    """As nobody, swap each path for a link to a victim of its own; the victims' paths and the outcomes."""
    script = ATTACK + "".join(f"attack {kind} {shlex.quote(path)}\n" for kind, path in paths)
    lines = on_host(lab, host, "bash -s", stdin=script).stdout.splitlines()
    pid = lines[0].split()[1]
    swapped = [ln.split(" ", 2)[2] for ln in lines if ln.startswith("swapped ")]
    refused = [ln.split(" ", 3)[2] for ln in lines if ln.startswith("refused ")]
    victims = {f"/srv/victims/v{i}": path for i, (_kind, path) in enumerate(paths, 1)}
    return {"pid": pid, "swapped": swapped, "refused": refused, "victims": victims}


def hijacked(lab, host: str, done: dict) -> list[str]:
    """What root did to the host's victims: each victim whose owner, mode or contents changed (with the
    path it stood behind), and the victim process if it died."""
    lines = on_host(lab, host, "bash -s", stdin=CHECK).stdout.splitlines()
    found = [] if lines[0] == "alive java" else [f"{host}: the root process {done['pid']} was killed"]
    intact = f"root:root:700 f, root:root:600 {done['pid']}"
    for line in lines[1:]:
        victim, state = line.split(" ", 1)
        if state != intact:
            found.append(f"{host}: {done['victims'][victim]} -> {victim} is now {state}")
    return found


def play(lab, playbook: str, extravars: dict) -> ansible.PlaybookResult:
    """One playbook run on the lab (with the bastion), failed or not."""
    return ansible.run_playbook(
        playbook, lab.inventory_bastion, base_dir=lab.base, extravars=extravars, raise_on_failure=False
    )


def at_once(**steps) -> dict:
    """Run functions at once (name=function); their results by name."""
    with ThreadPoolExecutor(len(steps)) as pool:
        futures = {name: pool.submit(fn) for name, fn in steps.items()}
    return {name: f.result() for name, f in futures.items()}


def outcome(result: ansible.PlaybookResult) -> str:
    if result.status == "successful" and result.rc == 0:
        return "ok"
    f = result.failures[0] if result.failures else {"host": "?", "task": "?", "msg": result.status}
    return f"failed on {f['host']} at '{f['task']}': {f['msg'][:200]}"


def process_users(lab, host: str, pattern: str) -> list[str]:
    """Users of the processes whose command line holds ``pattern`` on the host."""
    out = on_host(lab, host, f"ps -eo user:20=,args= | grep -F -- {shlex.quote(pattern)} | grep -v grep", check=False)
    return [line.split()[0] for line in out.stdout.splitlines()]


def services(lab) -> dict[str, str]:
    """Each service's answer and the users its processes run as ('' when fine)."""
    found = {}
    try:
        ov = FlinkClient(f"http://{lab.host(JM).ip}:8081", timeout=5).overview()
        users = process_users(lab, JM, "org.apache.flink") + process_users(lab, TM, "org.apache.flink")
        found["flink"] = "" if ov["taskmanagers"] == 1 and set(users) == {"nobody"} else f"{ov} {users}"
    except Exception as e:  # noqa: BLE001 - reported with the others below
        found["flink"] = repr(e)
    try:
        facts = kafka.cluster(kafka.admin(lab.kafka_bootstrap, timeout=10))
        users = process_users(lab, BROKER, "kafka.Kafka")
        found["kafka"] = "" if list(facts["brokers"]) == [1] and set(users) == {"nobody"} else f"{facts} {users}"
    except Exception as e:  # noqa: BLE001
        found["kafka"] = repr(e)
    try:
        url = f"http://{lab.host(BASTION).ip}:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            up = "khaos_up" in r.read().decode()
        users = process_users(lab, BASTION, f"/bin/khaos run /opt/khaos/etc/{JOB}.yml")
        found["khaos"] = "" if up and set(users) == {"nobody"} else f"khaos_up served: {up}, users {users}"
    except Exception as e:  # noqa: BLE001
        found["khaos"] = repr(e)
    return found


def answering(lab, timeout: float) -> dict[str, str]:
    """services(), once every service answers (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while any((found := services(lab)).values()) and time.monotonic() < deadline:
        time.sleep(3)
    return found


def deploy(lab, model: Path) -> dict[str, str]:
    """All as nobody: Flink and Kafka, while the daemon is installed on the bastion; the job, while a chaos
    kill of the broker runs (its supervisor, nobody's too, starts it again); then the daemon starts."""
    (lab.shared_dir / "jobs" / JOB / "out").mkdir(parents=True)
    for sub in ("checkpoints", "savepoints", "jobs", f"jobs/{JOB}", f"jobs/{JOB}/out"):
        os.lchown(lab.shared_dir / sub, 65534, 65534)  # the shared storage is the Flink user's
    done = at_once(
        flink=lambda: play(lab, "flink_cluster", NOBODY),
        kafka=lambda: play(lab, "kafka", NOBODY),
        install=lambda: play(lab, "controller", controller_vars(model, khaos_controller_start=False)),
    )
    job = {"checkpoint_interval": "10s", "flink_job_name": JOB, "flink_job_rate": 100}
    done |= at_once(
        deploy_job=lambda: play(lab, "deploy_job", job),
        chaos=lambda: play(lab, "inject_failure", {**NOBODY, "chaos_component": "kafka"}),
    )
    done["controller"] = play(lab, "controller", controller_vars(model))
    killed = [k["dead"] for k in done["chaos"].data.get("chaos_kills", [])]
    return {name: outcome(r) for name, r in done.items()} | {"killed": str(killed)}


def controller_vars(model: Path, **over) -> dict:
    return {
        **NOBODY,
        "khaos_controller_model": str(model),
        "khaos_controller_job": JOB,
        "khaos_controller_config": {"metrics": {"host": "0.0.0.0", "port": METRICS_PORT}},
        **over,
    }


RESTORE = r"""
while read -r path; do
  setpriv --reuid=nobody --regid=nogroup --clear-groups -- sh -c 'rm "$1" && mv -T "$1.orig" "$1"' sh "$path"
done
"""


def test_no_service_user_can_make_root_follow_a_link(tmp_path):
    etc_before = etc_digest()
    model = store.save(rate_model(), tmp_path / "model.json")
    lab = fresh_lab(LAB, hosts=3, kafka=1)
    try:
        lab.inventory_bastion, lab.base = bastion.lab_inventory(lab), tmp_path / "ansible"
        t0 = time.monotonic()
        setup = deploy(lab, model)
        t_setup = time.monotonic() - t0

        dirs = roles_dirs(lab)
        attacks = {host: attack(lab, host, given_to_nobody(lab, host, dirs[host])) for host in dirs}
        ctl = f"/opt/khaos/bin/khaos-{JOB}-ctl"
        rounds = [
            at_once(  # the deploys, each with a restart
                flink=lambda: play(lab, "flink_cluster", {**NOBODY, **RESTART}),
                kafka=lambda: play(lab, "kafka", {**NOBODY, **RESTART}),
                controller=lambda: play(lab, "controller", controller_vars(model, **RESTART)),
            ),
            at_once(  # the kills and stops
                chaos_taskmanager=lambda: play(lab, "inject_failure", {**NOBODY, "chaos_target": TM}),
                chaos_kafka=lambda: play(lab, "inject_failure", {**NOBODY, "chaos_component": "kafka"}),
                teardown=lambda: play(lab, "teardown", NOBODY),
                daemon_stop=lambda: on_host(lab, BASTION, f"{ctl} stop", check=False),  # controller.yml's stop
            ),
        ]
        found = [line for host in dirs for line in hijacked(lab, host, attacks[host])]

        # nobody stops sabotaging its own files (a broker does not survive its data dir swapped; its
        # supervisor, nobody's, starts it again): each service runs as nobody and answers
        for host, a in attacks.items():
            on_host(lab, host, "bash -s", stdin=RESTORE + "".join(f"{p}\n" for p in reversed(a["swapped"])))
        answers = answering(lab, timeout=120)

        report = [f"setup {t_setup:.0f}s: {setup}"]
        for host, a in attacks.items():
            report.append(f"{host}: {len(a['swapped'])} swapped for links {a['swapped']}, refused {a['refused']}")
        for results in rounds:
            report += [f"{n}: {describe(r)}" for n, r in results.items()]
        report.append(f"services: {answers}; {time.monotonic() - t0:.0f}s in all")
        print("\n" + "\n".join(report))
        assert etc_digest() == etc_before, "the roles changed the machine's users or groups"
        assert found == [], "root acted through nobody's links:\n" + "\n".join(found)
        assert all(a["swapped"] for a in attacks.values()), attacks  # every host had something to swap
        assert setup == dict.fromkeys(("flink", "kafka", "install", "deploy_job", "chaos", "controller"), "ok") | {
            "killed": "[True]"
        }, setup
        assert answers == {"flink": "", "kafka": "", "khaos": ""}, answers
    finally:
        lab.down(quiet=True)


def describe(result) -> str:
    if isinstance(result, ansible.PlaybookResult):
        return outcome(result)
    return f"rc {result.returncode}: {(result.stdout + result.stderr).strip()[-200:]}"
