"""What the bastion role needs from the package: an offline bundle of wheels, playbooks and roles.

`khaos bundle --out FILE.tar`: one tar with every wheel of requirements.txt plus the khaos wheel
(wheels/) and the project files the daemon runs (playbooks/, roles/, ansible.cfg, docs/), so that
roles/khaos_controller installs on a bastion with no internet (`pip install --no-index`) by copying
ONE file. The wheels are downloaded once and cached (`khaos wheelhouse`); the tar is byte-identical
when nothing changed, so a second playbook run copies and installs nothing.

`khaos promote` (the model swap the re-profile timer runs) lives in model/store.py.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from .. import REPO_ROOT, __version__
from ..errors import KhaosError
from ..jsonio import write_atomic


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True, text=True
    )
    if proc.returncode:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()] or ["(no output)"]
        why = next((ln for ln in lines if ln.lower().startswith("error")), lines[-1])
        raise KhaosError(f"pip {args[0]} failed: {why}")


def wheelhouse(out: str | Path, requirements: str | Path | None = None) -> Path:
    """Fill `out` with the wheels of requirements.txt and khaos; return it. Idempotent."""
    from ..schema import out_dir  # not at import: `khaos lab kill` must start fast

    out = out_dir(out, "wheelhouse")
    req = Path(requirements or REPO_ROOT / "requirements.txt")
    if not req.is_file():
        raise KhaosError(f"{req} does not exist" if not req.exists() else f"{req} is not a file")
    stamp = out / ".khaos-wheelhouse.json"
    want = {
        "requirements_sha256": hashlib.sha256(req.read_bytes()).hexdigest(),
        "khaos": __version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    src_mtime = max(p.stat().st_mtime for p in (REPO_ROOT / "khaos_controller").rglob("*.py"))
    own = sorted(out.glob("khaos_controller-*.whl"))
    if stamp.is_file() and json.loads(stamp.read_text()) == want and own and own[-1].stat().st_mtime >= src_mtime:
        return out
    out.mkdir(parents=True, exist_ok=True)
    _pip("download", "--only-binary=:all:", "-d", str(out), "-r", str(req))
    for old in own:
        old.unlink()
    _pip("wheel", "--no-deps", "-w", str(out), str(REPO_ROOT))
    stamp.write_text(json.dumps(want))
    return out


DEFAULT_WHEELHOUSE = Path.home() / ".cache" / "khaos" / "wheelhouse"
BUNDLE_FILES = ("ansible.cfg", "requirements.txt", "playbooks", "roles", "docs")


def bundle(out: str | Path, wheel_dir: str | Path | None = None) -> Path:
    """Write the bastion bundle `out` (plain tar: wheels are compressed already); unchanged bytes when
    nothing changed (sorted entries, mtime 0, root-owned)."""
    from ..schema import out_file

    out = out_file(out, "bundle")
    wh = wheelhouse(wheel_dir or DEFAULT_WHEELHOUSE)
    entries = [(f"wheels/{p.name}", p) for p in wh.glob("*.whl")]
    for name in BUNDLE_FILES:
        top = REPO_ROOT / name
        if not top.exists():
            raise KhaosError(f"{top} does not exist: run khaos bundle from a khaos source tree")
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        entries += [
            (str(p.relative_to(REPO_ROOT)), p) for p in files if "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:  # streamed: ~170 MB of wheels
            for arc, path in sorted(entries):
                info = tar.gettarinfo(str(path), arcname=arc)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    except OSError as e:  # e.g. the disk is full
        tmp.unlink(missing_ok=True)
        raise KhaosError(f"bundle {out}: cannot write {tmp}: {e.strerror or e}") from None
    if out.is_file() and filecmp.cmp(tmp, out, shallow=False):
        tmp.unlink()  # same bytes: keep the old file (and its mtime)
    else:
        tmp.replace(out)
    return out


def _cli_wheelhouse(args) -> None:
    from ..schema import out_dir

    out_dir(args.out, "--out")
    print(wheelhouse(args.out, args.requirements))


def _cli_bundle(args) -> None:
    from ..schema import out_dir, out_file

    out_file(args.out, "--out")  # both paths before a wheel is downloaded
    if args.wheelhouse:
        out_dir(args.wheelhouse, "--wheelhouse")
    print(bundle(args.out, args.wheelhouse))


def add_cli(subparsers) -> None:
    """Register ``khaos wheelhouse`` and ``khaos bundle``."""
    w = subparsers.add_parser("wheelhouse", help="download every wheel khaos needs (for an offline bastion)")
    w.add_argument("--out", required=True, help="directory to fill (cached: a second call does nothing)")
    w.add_argument("--requirements", help="requirements file (default: the project's requirements.txt)")
    w.set_defaults(func=_cli_wheelhouse)
    b = subparsers.add_parser("bundle", help="one tar with the wheels and playbooks a bastion installs offline")
    b.add_argument("--out", required=True, help="tar file to write (unchanged bytes when nothing changed)")
    b.add_argument("--wheelhouse", help=f"wheel cache (default {DEFAULT_WHEELHOUSE})")
    b.set_defaults(func=_cli_bundle)


def lab_inventory(lab, bastion: str | None = None) -> Path:
    """An inventory of a lab in which one host (default: the last) is the bastion: it leaves the
    TaskManager group for the controller's group (khaos_controller_group). A directory inside the lab (removed with it) whose
    group_vars are the lab's, so inventories/local/group_vars/khaos_controller.yml applies."""
    import yaml

    from .inventory import GroupNames
    from .lab import INVENTORY_DIR

    names = GroupNames.of()  # the lab's inventory uses the default names
    inv = yaml.safe_load(lab.inventory.read_text())
    flink = inv["all"]["children"][names.flink]["children"]
    tms = flink[names.taskmanager]["hosts"]
    name = bastion or list(tms)[-1]
    if name not in tms or len(tms) < 2:
        raise KhaosError(f"lab {lab.name}: {name} is not one of at least 2 TaskManager hosts ({', '.join(tms)})")
    inv["all"]["children"][names.controller] = {"hosts": {name: tms.pop(name)}}
    out = lab.dir / "inventory-bastion"
    out.mkdir(exist_ok=True)
    write_atomic(out / "hosts.yml", yaml.safe_dump(inv, sort_keys=False), durable=False, mode=0o600)  # may hold keys
    link = out / "group_vars"
    if not link.is_symlink():
        link.symlink_to(INVENTORY_DIR / "group_vars")
    return out
