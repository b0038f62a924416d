"""Build the distributions the roles install, offline and byte-for-byte reproducible (fixed mtimes
and order; one tar writer, `_pack`), cached under cache_dir()/dist.

Flink: the official binary tarball layout from the PyPI wheels. apache-flink-libraries carries the
jars (lib/ opt/ plugins/ bin/bash-java-utils.jar), apache-flink the scripts (bin/) and conf/. Both
are downloaded with --no-deps and only unzipped, never installed. The result is
flink-<v>-bin-scala_2.12.tgz plus a .sha512 file in the Apache format.

Kafka (KRaft): the broker and its runtime dependencies resolved from Maven Central with
jobs/kafka-dist/pom.xml, plus that directory's config templates and start script (bin/kafka-run).
The result is kafka-<v>.tgz plus a .sha256 file; libs.sha256 inside records every jar's sha256.

S3Proxy (the checkpoint store): the same way from jobs/s3proxy-dist/pom.xml, as s3proxy-<v>.tgz. Flink's
S3 filesystem plugin (flink-s3-fs-hadoop-<flink version>.jar, for s3:// checkpoints): the jar from Maven
Central as it is, with a .sha256 beside it; roles/flink copies it into plugins/s3-fs-hadoop/.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from .. import REPO_ROOT
from ..errors import KhaosError

FLINK_VERSION = "2.3.0"
KAFKA_VERSION = "4.4.0"  # the newest kafka_2.13 on Maven Central that resolves whole (jobs/kafka-dist/README.md)
KAFKA_DIST_DIR = REPO_ROOT / "jobs" / "kafka-dist"  # pom.xml, config templates, bin/kafka-run
S3PROXY_VERSION = "2.6.0"
S3PROXY_DIST_DIR = REPO_ROOT / "jobs" / "s3proxy-dist"  # pom.xml, logback.xml, bin/s3proxy-run
_MVN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_TOP_DIRS = ("bin", "conf", "lib", "opt", "plugins", "licenses")
_MTIME = 1_700_000_000  # fixed, for reproducible archives
_VERSION_RE = re.compile(r"^\d+(\.\d+){1,3}([.-]?(a|b|rc|dev|post)\d*)?$")  # 2.3.0, 2.0.0rc1, ...


def cache_dir() -> Path:
    """Where built distributions and downloaded wheels are cached (KHAOS_CACHE)."""
    return Path(os.environ.get("KHAOS_CACHE", Path.home() / ".cache" / "khaos"))


def check_version(version: str, product: str = "Flink") -> str:
    """``version`` if it looks like a release of ``product`` (it becomes a file name and a pip or Maven version)."""
    if not _VERSION_RE.match(version):
        example = {"Kafka": KAFKA_VERSION, "S3Proxy": S3PROXY_VERSION}.get(product, FLINK_VERSION)
        raise KhaosError(f"{product} version {version!r} is not a release number like {example}")
    return version


def dist_path(version: str = FLINK_VERSION) -> Path:
    """The cached Flink tarball of ``version``."""
    check_version(version)
    return cache_dir() / "dist" / f"flink-{version}-bin-scala_2.12.tgz"


def download_wheels(version: str, dest: Path) -> list[Path]:
    """pip download --no-deps the two wheels (only when not cached)."""
    check_version(version)
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
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()] or ["no output"]
            why = next((ln for ln in lines if ln.lower().startswith("error")), lines[-1])
            raise KhaosError(f"pip download of apache-flink=={version} failed (is PyPI reachable?): {why[:300]}")
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


def _pack(out: Path, top: str, files: dict[str, tuple[bytes, int]], algo: str, empty_dirs: tuple = ()) -> Path:
    """Write ``files`` ({path inside ``top``: (bytes, mode)}) as the reproducible tarball ``out``: every
    directory first, then the files, both sorted, fixed mtimes, owner root, gzip without a timestamp.
    ``out.<algo>`` beside it holds "<hex digest>  <name>" (what sha512sum/sha256sum -c read).
    Written to a temporary file and renamed: a crash never leaves a partial archive under ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    digest = hashlib.new(algo)

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
        parents = {"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)}
        for d in ["", *sorted(parents | set(empty_dirs))]:
            ti = tarfile.TarInfo(f"{top}/{d}".rstrip("/"))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, _MTIME
            tar.addfile(ti)
        for rel in sorted(files):
            data, mode = files[rel]
            ti = tarfile.TarInfo(f"{top}/{rel}")
            ti.size, ti.mode, ti.mtime = len(data), mode, _MTIME
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, out)
    out.with_name(f"{out.name}.{algo}").write_text(f"{digest.hexdigest()}  {out.name}\n")
    return out


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
    return _pack(out, top, files, "sha512", empty_dirs=("log",))


def _kind(archive: Path) -> tuple[str, str, str]:
    """(checksum algorithm, product, command that builds it) of a cached archive, by its name."""
    for prefix, product, command in (
        ("kafka-", "Kafka", "khaos dist kafka"),
        ("s3proxy-", "S3Proxy", "khaos dist s3proxy"),
        ("flink-s3-fs-hadoop-", "Flink S3 plugin", "khaos dist flink-s3"),
    ):
        if archive.name.startswith(prefix):
            return "sha256", product, command
    return "sha512", "Flink", "khaos dist"


def verify(archive: Path) -> None:
    """Check the archive against the checksum file beside it (Flink: .sha512, the others: .sha256)."""
    algo, product, command = _kind(archive)
    sha = archive.with_name(f"{archive.name}.{algo}")
    if not archive.exists():
        raise KhaosError(f"{product} archive {archive} does not exist (run `{command}`)")
    if not sha.exists():
        raise KhaosError(f"{archive} has no {sha.name} beside it (rebuild it with --force)")
    expected, got = sha.read_text().split()[0], _digest(archive, algo)
    if got != expected:
        raise KhaosError(f"{archive}: {algo} mismatch (expected {expected[:16]}..., got {got[:16]}...)")


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _mvn(args: list[str], what: str, cwd: Path | None = None) -> None:
    """Run Maven quietly; a failure is one line naming ``what`` and Maven's first [ERROR]."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KhaosError(f"resolving {what} needs Maven (mvn): run `make deps` (Debian package maven)")
    print(f"khaos dist: resolving {what} from Maven Central (mvn)", flush=True)
    proc = subprocess.run([mvn, "-q", "-B", *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()] or ["no output"]
        why = next((ln for ln in lines if ln.startswith("[ERROR]")), lines[-1]).removeprefix("[ERROR]").strip()
        raise KhaosError(f"mvn could not resolve {what} (is Maven Central reachable?): {why[:300]}")


def _resolve_jars(pom_dir: Path, props: dict[str, str], dest: Path, what: str, needed: list[str]) -> list[Path]:
    """The runtime jars of ``pom_dir``/pom.xml, copied by Maven into ``dest``, emptied first so that no jar of
    another version stays; Maven's own cache (~/.m2) makes a second resolve offline."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    defines = [f"-D{k}={v}" for k, v in props.items()]
    _mvn(["-f", str(pom_dir / "pom.xml"), "dependency:copy-dependencies", *defines], what)
    missing = [n for n in needed if not (dest / n).is_file()]
    if missing:
        raise KhaosError(f"Maven resolved {what} without {', '.join(missing)}")
    return sorted(dest.glob("*.jar"))


def _pack_with_libs(top: str, dist_dir: Path, layout: dict, jars: list[Path], out: Path) -> Path:
    """``top``.tgz (+ .sha256): the files of ``layout`` ({path in the tarball: (file in dist_dir, mode)}),
    libs/*.jar and libs.sha256 (every jar's sha256, as `sha256sum -c` reads it inside ``top``/)."""
    files = {rel: ((dist_dir / src).read_bytes(), mode) for rel, (src, mode) in layout.items()}
    sums = []
    for jar in sorted(jars, key=lambda j: j.name):
        data = jar.read_bytes()
        files[f"libs/{jar.name}"] = (data, 0o644)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  libs/{jar.name}\n")
    files["libs.sha256"] = ("".join(sums).encode(), 0o644)
    return _pack(out, top, files, "sha256")


# ---- Kafka ----------------------------------------------------------------------------------
# jars that must be among the resolved ones (the broker, its server and raft layers, the clients, the tools)
_KAFKA_NEEDED = (
    "kafka_2.13-{v}.jar",
    "kafka-server-{v}.jar",
    "kafka-raft-{v}.jar",
    "kafka-clients-{v}.jar",
    "kafka-tools-{v}.jar",
)
# path in the tarball -> (file in jobs/kafka-dist, mode)
_KAFKA_FILES = {
    "bin/kafka-run": ("bin/kafka-run", 0o755),
    "config/server.properties": ("server.properties", 0o644),
    "config/log4j2.properties": ("log4j2.properties", 0o644),
}


def kafka_dist_path(version: str = KAFKA_VERSION) -> Path:
    """The cached Kafka tarball of ``version``."""
    check_version(version, "Kafka")
    return cache_dir() / "dist" / f"kafka-{version}.tgz"


def resolve_kafka_jars(version: str, dest: Path) -> list[Path]:
    """The broker's runtime jars (jobs/kafka-dist/pom.xml), copied by Maven into ``dest``."""
    check_version(version, "Kafka")
    needed = [n.format(v=version) for n in _KAFKA_NEEDED]
    props = {"kafka.version": version, "kafka.dist.libs": str(dest)}
    return _resolve_jars(KAFKA_DIST_DIR, props, dest, f"Kafka {version}", needed)


def pack_kafka(version: str, jars: list[Path], out: Path | None = None) -> Path:
    """kafka-<v>.tgz (+ .sha256) from resolved jars and jobs/kafka-dist's config templates and start script:
    bin/kafka-run, config/server.properties, config/log4j2.properties, libs/*.jar and libs.sha256."""
    return _pack_with_libs(f"kafka-{version}", KAFKA_DIST_DIR, _KAFKA_FILES, jars, out or kafka_dist_path(version))


def build_kafka(version: str = KAFKA_VERSION, force: bool = False) -> Path:
    """Return the cached Kafka tarball, resolving the jars and packing it first if needed."""
    out = kafka_dist_path(version)
    if out.exists() and out.with_name(out.name + ".sha256").exists() and not force:
        return out
    jars = resolve_kafka_jars(version, cache_dir() / "kafka-libs" / version)
    return pack_kafka(version, jars, out)


# ---- S3Proxy (the checkpoint store) and Flink's S3 plugin -----------------------------------
# path in the tarball -> (file in jobs/s3proxy-dist, mode)
_S3PROXY_FILES = {
    "bin/s3proxy-run": ("bin/s3proxy-run", 0o755),
    "config/logback.xml": ("logback.xml", 0o644),
}


def s3proxy_dist_path(version: str = S3PROXY_VERSION) -> Path:
    """The cached S3Proxy tarball of ``version``."""
    check_version(version, "S3Proxy")
    return cache_dir() / "dist" / f"s3proxy-{version}.tgz"


def build_s3proxy(version: str = S3PROXY_VERSION, force: bool = False) -> Path:
    """Return the cached S3Proxy tarball (bin/s3proxy-run, config/logback.xml, libs/*.jar, libs.sha256),
    resolving the jars (jobs/s3proxy-dist/pom.xml) and packing it first if needed."""
    out = s3proxy_dist_path(version)
    if out.exists() and out.with_name(out.name + ".sha256").exists() and not force:
        return out
    dest = cache_dir() / "s3proxy-libs" / version
    props = {"s3proxy.version": version, "s3proxy.dist.libs": str(dest)}
    jars = _resolve_jars(S3PROXY_DIST_DIR, props, dest, f"S3Proxy {version}", [f"s3proxy-{version}.jar"])
    return _pack_with_libs(f"s3proxy-{version}", S3PROXY_DIST_DIR, _S3PROXY_FILES, jars, out)


def flink_s3_plugin_path(version: str = FLINK_VERSION) -> Path:
    """The cached flink-s3-fs-hadoop jar of Flink ``version``."""
    check_version(version)
    return cache_dir() / "dist" / f"flink-s3-fs-hadoop-{version}.jar"


def build_flink_s3_plugin(version: str = FLINK_VERSION, force: bool = False) -> Path:
    """Return the cached org.apache.flink:flink-s3-fs-hadoop jar (+ .sha256), fetched with Maven if needed."""
    out = flink_s3_plugin_path(version)
    sha = out.with_name(out.name + ".sha256")
    if out.exists() and sha.exists() and not force:
        return out
    work = cache_dir() / "flink-s3-plugin" / version
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)  # no pom.xml there: Maven runs without a project
    artifact = f"org.apache.flink:flink-s3-fs-hadoop:{version}"
    _mvn([f"{_MVN_DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={work}"], artifact, cwd=work)
    jar = work / out.name
    if not jar.is_file():
        raise KhaosError(f"Maven resolved {artifact} without {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(jar, out)
    sha.write_text(f"{_digest(out, 'sha256')}  {out.name}\n")
    return out
