"""Run the project's playbooks through ansible-runner.

One private_data_dir and ident per run (parallel runs never share artifacts); results are
read from job events, not from stdout; a failed run raises KhaosError naming the host,
the task and Ansible's own message. Every string passed as an extra var is data, never a
template (:func:`literal`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner

from .. import REPO_ROOT
from ..errors import KhaosError

PLAYBOOKS = REPO_ROOT / "playbooks"


@dataclass
class PlaybookResult:
    """What a playbook run did (from ansible-runner's events)."""

    playbook: str
    status: str
    rc: int
    stats: dict
    artifacts: Path
    failures: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # what the playbook published with set_stats

    def changed(self, host: str | None = None) -> int:
        """Tasks that changed something (on ``host``, or on all)."""
        per_host = self.stats.get("changed", {}) or {}
        return per_host.get(host, 0) if host else sum(per_host.values())

    def unreachable(self) -> list[str]:
        """Hosts that were unreachable."""
        return sorted((self.stats.get("dark", {}) or {}).keys())


def literal(value):
    """``value`` with every string in it (in lists and dicts, at any depth) marked unsafe for Ansible,
    ``{"__ansible_unsafe": s}``: Ansible uses it as is and never templates it. ansible-runner writes the
    extra vars as JSON to env/extravars and passes ``-e @env/extravars``; ansible-core 2.19 trusts a file
    given that way as templates, so a job name like ``x{{ lookup('pipe', 'id') }}`` (from a config file
    or from Flink) would otherwise run its lookup. Keys and non-strings stay as they are."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    return value


def _env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)  # ansible-playbook lives beside this python
    return {
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        # ansible-runner sets it to False when unset, and Ansible then puts StrictHostKeyChecking=no
        # before the inventory's own SSH options: every host key must match the inventory's known_hosts
        "ANSIBLE_HOST_KEY_CHECKING": "True",
    }


DEFAULT_BASE = Path.home() / ".cache" / "khaos" / "ansible"  # per user; never a shared /tmp path
KEEP_RUNS = 50  # run directories kept per base directory (the newest)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter: created 0700; refused when it is a link or
    belongs to someone else (a prepared directory could inject ansible-runner settings)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(path)
    except OSError as e:
        raise KhaosError(f"cannot create the private directory {path}: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise KhaosError(f"{path} is not a plain directory (a link?): refusing to run playbooks from it")
    if st.st_uid != os.geteuid():
        raise KhaosError(f"{path} belongs to uid {st.st_uid}, not to us: refusing to run playbooks from it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def run_dir(base_dir: Path | None, ident: str) -> Path:
    """A fresh private directory for one ansible-runner run (mkdtemp under a private base); the oldest
    beyond KEEP_RUNS are removed."""
    base = private_dir(base_dir or DEFAULT_BASE)
    runs = sorted((p for p in base.iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - KEEP_RUNS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{ident}-", dir=base))


def _prepare(
    playbook: str,
    inventory: str | Path,
    extravars: dict | None,
    limit: str | None,
    tags: str | None,
    ident: str | None,
    quiet: bool,
    base_dir: Path | None,
    cancel: Callable[[], bool] | None,
    event_handler: Callable[[dict], None] | None,
) -> dict:
    path = Path(playbook) if Path(playbook).is_absolute() else PLAYBOOKS / playbook
    if not path.suffix:
        path = path.with_suffix(".yml")
    if not path.exists():
        raise KhaosError(f"no playbook {path}")
    inventory = Path(inventory)
    if not inventory.exists():
        raise KhaosError(f"inventory {inventory} does not exist (for the lab: `khaos lab up` writes it)")
    # a file name: a job name in it may hold anything but '/'
    ident = re.sub(r"[^A-Za-z0-9._-]", "_", ident or f"{path.stem}-{uuid.uuid4().hex[:8]}")
    pdd = run_dir(base_dir, ident)
    return dict(
        private_data_dir=str(pdd),
        playbook=str(path),
        inventory=str(inventory.resolve()),
        extravars=literal(extravars or {}),
        limit=limit,
        tags=tags,
        ident=ident,
        quiet=quiet,
        envvars=_env(),
        project_dir=str(REPO_ROOT),
        cancel_callback=cancel,
        event_handler=event_handler,
        settings={"suppress_ansible_output": quiet},
    )


def _result(runner, playbook: str) -> PlaybookResult:
    failures, data = [], {}
    for ev in runner.events:
        if ev.get("event") == "playbook_on_stats":
            data = ev["event_data"].get("artifact_data") or {}
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable") and not ev["event_data"].get(
            "ignore_errors"
        ):
            data = ev["event_data"]
            res = data.get("res", {}) or {}
            msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
            failures.append(
                {
                    "host": data.get("host"),
                    "task": data.get("task"),
                    "unreachable": ev["event"] == "runner_on_unreachable",
                    "msg": " ".join(str(msg).split()),
                }
            )
    return PlaybookResult(
        playbook=playbook,
        status=runner.status,
        rc=runner.rc or 0,
        stats=runner.stats or {},
        artifacts=Path(runner.config.artifact_dir),
        failures=failures,
        data=data,
    )


def check(result: PlaybookResult) -> PlaybookResult:
    """Raise a one-line KhaosError for a failed run."""
    if result.status == "successful" and result.rc == 0:
        return result
    name = Path(result.playbook).name
    if result.status == "canceled":
        raise KhaosError(f"{name} was cancelled")
    if result.failures:
        f = result.failures[0]
        what = "unreachable" if f["unreachable"] else f"failed at task '{f['task']}'"
        raise KhaosError(f"{name}: {f['host']} {what}: {f['msg'][:400]}")
    stdout = result.artifacts / "stdout"
    tail = stdout.read_text(errors="replace").strip().splitlines()[-1:] if stdout.exists() else []
    raise KhaosError(f"{name} {result.status} (rc {result.rc})" + (f": {tail[0][:300]}" if tail else ""))


def run_playbook(
    playbook: str,
    inventory: str | Path,
    extravars: dict | None = None,
    limit: str | None = None,
    tags: str | None = None,
    ident: str | None = None,
    quiet: bool = True,
    base_dir: Path | None = None,
    cancel: Callable[[], bool] | None = None,
    event_handler: Callable[[dict], None] | None = None,
    raise_on_failure: bool = True,
) -> PlaybookResult:
    """Run a playbook to completion."""
    kw = _prepare(playbook, inventory, extravars, limit, tags, ident, quiet, base_dir, cancel, event_handler)
    runner = ansible_runner.run(**kw)
    result = _result(runner, kw["playbook"])
    return check(result) if raise_on_failure else result


def run_playbook_async(playbook: str, inventory: str | Path, **kw) -> tuple[threading.Thread, object]:
    """Start a playbook in the background; returns (thread, runner). Use result_of() after join()."""
    args = _prepare(
        playbook,
        inventory,
        kw.get("extravars"),
        kw.get("limit"),
        kw.get("tags"),
        kw.get("ident"),
        kw.get("quiet", True),
        kw.get("base_dir"),
        kw.get("cancel"),
        kw.get("event_handler"),
    )
    return ansible_runner.run_async(**args)


def result_of(runner, raise_on_failure: bool = True) -> PlaybookResult:
    """The result of a run_playbook_async run (after its thread ended)."""
    result = _result(runner, runner.config.playbook)
    return check(result) if raise_on_failure else result


def inventory_list(inventory: str | Path) -> dict:
    """`ansible-inventory --list` of any inventory (static or a plugin's): groups and every host's vars."""
    import json
    import subprocess

    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(Path(inventory).resolve()), "--list"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        # a source no plugin parses is an error (Ansible's default: a warning and an empty inventory)
        env=os.environ | _env() | {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"},
    )
    if proc.returncode != 0:
        raise KhaosError(f"inventory {inventory}: {_inventory_error(proc.stderr + proc.stdout)}")
    # values an inventory plugin set come out tagged unsafe: {"__ansible_unsafe": value}
    return json.loads(proc.stdout, object_hook=lambda d: d["__ansible_unsafe"] if set(d) == {"__ansible_unsafe"} else d)


def _inventory_error(text: str) -> str:
    """The first plugin's reason from ansible-inventory's output (else its last line), in one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fails = [ln for ln in lines if ln.startswith("[WARNING]: Failed to parse")]
    if fails:
        return "not an Ansible inventory: " + fails[0].removeprefix("[WARNING]: ")[:300]
    return (lines[-1].removeprefix("[ERROR]: ") if lines else "ansible-inventory failed")[:300]


def ping(inventory: str | Path, pattern: str = "all", base_dir: Path | None = None) -> dict[str, bool]:
    """Ansible ping over the inventory's real SSH settings: {host: reachable}."""
    pdd = run_dir(base_dir, "ping")
    runner = ansible_runner.run(
        private_data_dir=str(pdd),
        inventory=str(Path(inventory).resolve()),
        host_pattern=pattern,
        module="ansible.builtin.ping",
        quiet=True,
        envvars=_env(),
        project_dir=str(REPO_ROOT),
    )
    reach: dict[str, bool] = {}
    for ev in runner.events:
        host = ev.get("event_data", {}).get("host")
        if ev.get("event") == "runner_on_ok":
            reach[host] = True
        elif ev.get("event") in ("runner_on_unreachable", "runner_on_failed"):
            reach[host] = False
    return reach
