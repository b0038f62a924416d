"""Build the official Flink binary tarball layout offline, from the PyPI wheels.

apache-flink-libraries carries the jars (lib/ opt/ plugins/ bin/bash-java-utils.jar),
apache-flink the scripts (bin/) and conf/. Both are downloaded with --no-deps and only
unzipped, never installed. The result is flink-<v>-bin-scala_2.12.tgz plus a .sha512 file
in the Apache format, cached, and byte-for-byte reproducible (fixed mtimes and order).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from ..errors import KhaosError

FLINK_VERSION = "2.3.0"
_TOP_DIRS = ("bin", "conf", "lib", "opt", "plugins", "licenses")
_MTIME = 1_700_000_000  # fixed, for reproducible archives


def cache_dir() -> Path:
    """Where built distributions and downloaded wheels are cached (KHAOS_CACHE)."""
    return Path(os.environ.get("KHAOS_CACHE", Path.home() / ".cache" / "khaos"))


def dist_path(version: str = FLINK_VERSION) -> Path:
    """The cached Flink tarball of ``version``."""
    return cache_dir() / "dist" / f"flink-{version}-bin-scala_2.12.tgz"


def download_wheels(version: str, dest: Path) -> list[Path]:
    """pip download --no-deps the two wheels (only when not cached)."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {"apache_flink-": None, "apache_flink_libraries-": None}
    for prefix in wanted:
        hits = sorted(dest.glob(f"{prefix}{version}-*.whl"))
        wanted[prefix] = hits[0] if hits else None
    if None in wanted.values():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(dest),
            f"apache-flink=={version}",
            f"apache-flink-libraries=={version}",
        ]
        print(f"khaos dist: downloading apache-flink {version} wheels from PyPI (~330 MB)", flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise KhaosError(f"pip download of apache-flink=={version} failed (is PyPI reachable?)")
        return download_wheels(version, dest)
    return list(wanted.values())


def _members(wheels: list[Path]):
    """Yield (path inside FLINK_HOME, bytes, mode) from both wheels, pyflink/<top>/... only."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                parts = info.filename.split("/")
                if len(parts) < 3 or parts[0] != "pyflink" or parts[1] not in _TOP_DIRS or info.is_dir():
                    continue
                rel = "/".join(parts[1:])
                if rel.endswith(".bat"):
                    continue
                executable = (parts[1] == "bin" and not rel.endswith(".jar")) or rel.endswith(".sh")
                yield rel, zf.read(info), 0o755 if executable else 0o644


def build(version: str = FLINK_VERSION, force: bool = False) -> Path:
    """Return the cached tarball, building it first if needed."""
    out = dist_path(version)
    sha = out.with_name(out.name + ".sha512")
    if out.exists() and sha.exists() and not force:
        return out
    wheels = download_wheels(version, cache_dir() / "wheels")
    top = f"flink-{version}"
    files = dict()
    for rel, data, mode in _members(wheels):
        files[rel] = (data, mode)
    missing = [
        d
        for d in (
            "bin/jobmanager.sh",
            "bin/taskmanager.sh",
            "bin/config.sh",
            "conf/config.yaml",
            f"lib/flink-dist-{version}.jar",
            "bin/bash-java-utils.jar",
        )
        if d not in files
    ]
    if missing:
        raise KhaosError(f"wheels for Flink {version} lack {', '.join(missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    digest = hashlib.sha512()

    class _Hashing(io.RawIOBase):
        def __init__(self, fh):
            self.fh = fh

        def writable(self):
            return True

        def write(self, b):
            digest.update(b)
            return self.fh.write(b)

    print(f"khaos dist: packing {len(files)} files into {out}", flush=True)
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(fileobj=_Hashing(raw), mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar,
    ):
        dirs = sorted({"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)} | {"log"})
        for d in ["", *dirs]:
            ti = tarfile.TarInfo(f"{top}/{d}".rstrip("/"))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, _MTIME
            tar.addfile(ti)
        for rel in sorted(files):
            data, mode = files[rel]
            ti = tarfile.TarInfo(f"{top}/{rel}")
            ti.size, ti.mode, ti.mtime = len(data), mode, _MTIME
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, out)
    sha.write_text(f"{digest.hexdigest()}  {out.name}\n")
    return out


def verify(archive: Path) -> None:
    """Check the archive against its .sha512 file."""
    sha = archive.with_name(archive.name + ".sha512")
    if not archive.exists():
        raise KhaosError(f"Flink archive {archive} does not exist (run `khaos dist`)")
    expected = sha.read_text().split()[0]
    h = hashlib.sha512()
    with open(archive, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise KhaosError(f"{archive}: sha512 mismatch (expected {expected[:16]}..., got {h.hexdigest()[:16]}...)")
