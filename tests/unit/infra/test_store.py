"""The checkpoint store without a lab: the S3 client's signatures (AWS's own examples), its one-line errors and
its listing, `khaos dist s3proxy` / `flink-s3`, the lab inventory of a store host, and the tc plans of the
checkpoint_store role's link module (what it changes for what tc reports)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import tarfile
from datetime import UTC, datetime

import pytest
import requests
import yaml

from khaos_controller import REPO_ROOT
from khaos_controller.errors import KhaosError
from khaos_controller.infra import dist, s3
from khaos_controller.infra import lab as labmod

AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "url, signature",
    [  # the "GET Bucket (List Objects)" and "GET Bucket Lifecycle" examples of AWS's Signature V4 documentation
        ("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", "34b48302e7b5fa45bde8084f4b7868a86f0a534b"),
        ("https://examplebucket.s3.amazonaws.com/?lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c69"),
    ],
)
def test_signature_v4_matches_the_aws_examples(url, signature):
    headers = s3.sign("GET", url, AWS_KEY, AWS_SECRET, s3._EMPTY_SHA256, datetime(2013, 5, 24, tzinfo=UTC))
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AWS_KEY}/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + signature
    )


def test_signature_encodes_query_values_once():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    sign = lambda url: s3.sign("GET", url, AWS_KEY, AWS_SECRET, s3._EMPTY_SHA256, now)["Authorization"]  # noqa: E731
    # the client sends prefix=a%2Fb (what the server decodes to a/b): the signature is that of a/b, not of a%252Fb
    assert sign("http://h:9000/k?list-type=2&prefix=a%2Fb") == sign("http://h:9000/k?prefix=a/b&list-type=2")
    assert sign("http://h:9000/k?prefix=a%2Fb") != sign("http://h:9000/k?prefix=a%252Fb")


def test_bad_endpoints_buckets_and_keys_are_one_line():
    for bad in ("", "10.0.0.5:9000", "ftp://x:1", "http://x:9000/path", "http://:9000"):
        with pytest.raises(KhaosError, match="is not http"):
            s3.check_endpoint(bad)
    assert s3.check_endpoint(" http://10.0.0.5:9000/ ") == "http://10.0.0.5:9000"
    for bad in ("ab", "Upper", "a..b", "-ab", "a" * 64):
        with pytest.raises(KhaosError, match="bucket name"):
            s3.check_bucket(bad)
    with pytest.raises(KhaosError, match="an access key and a secret key are needed"):
        s3.S3("http://10.0.0.5:9000", "key", "")


class FakeResponse:
    def __init__(self, status: int, body: str):
        self.status_code, self.content = status, body.encode()


LISTING = (
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>{more}</IsTruncated>'
    "<Contents><Key>{key}</Key><Size>{size}</Size></Contents>{token}</ListBucketResult>"
)


def test_listing_follows_pages_and_errors_name_the_s3_code(monkeypatch):
    store = s3.S3("http://10.0.0.5:9000", "key", "secret-key")
    pages = [
        LISTING.format(more="true", key="a/1", size=3, token="<NextContinuationToken>t1</NextContinuationToken>"),
        LISTING.format(more="false", key="a/2", size=5, token=""),
    ]
    asked = []

    def answer(method, url, headers, timeout):
        asked.append(url)
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=key/")
        return FakeResponse(200, pages[len(asked) - 1])

    monkeypatch.setattr(store.session, "request", answer)
    assert store.objects("khaos", "a/") == {"a/1": 3, "a/2": 5}
    assert asked[1].endswith("continuation-token=t1") and "prefix=a%2F" in asked[0]
    answers = [FakeResponse(500, ""), FakeResponse(200, pages[1])]  # a server error is asked again
    monkeypatch.setattr(s3.time, "sleep", lambda _: None)
    monkeypatch.setattr(store.session, "request", lambda *a, **k: answers.pop(0))
    assert store.objects("khaos") == {"a/2": 5} and answers == []
    denied = "<Error><Code>SignatureDoesNotMatch</Code><Message>Forbidden</Message></Error>"
    monkeypatch.setattr(store.session, "request", lambda *a, **k: FakeResponse(403, denied))
    with pytest.raises(KhaosError, match=r"HTTP 403 SignatureDoesNotMatch Forbidden \(wrong access key") as e:
        s3.wait_ready(store, timeout=30)  # at once: waiting does not mend a wrong key
    assert "secret-key" not in str(e.value)


def test_an_unreachable_store_is_waited_for_then_one_line(monkeypatch):
    store = s3.S3("http://127.0.0.1:9", "key", "secret-key", timeout=0.5)
    monkeypatch.setattr(s3.time, "sleep", lambda _: None)
    with pytest.raises(KhaosError, match=r"not ready after 0 s: .*unreachable \(connection refused\)"):
        s3.wait_ready(store, timeout=0)


def test_a_connection_kept_from_before_a_store_restart_is_replaced(monkeypatch):
    """The pool's connection to a store that was restarted is dead: the request goes out once more on a
    fresh one; a second failure is the one-line error."""
    store = s3.S3("http://store:9000", "key", "secret-key")
    calls = []

    def request(*a, **k):
        calls.append(a[0])
        if len(calls) == 1:
            raise requests.ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))")
        return FakeResponse(200, "<ListAllMyBucketsResult></ListAllMyBucketsResult>")

    monkeypatch.setattr(store.session, "request", request)
    assert store.buckets() == [] and calls == ["GET", "GET"]

    def always(*a, **k):
        calls.append(a[0])
        raise requests.ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))")

    monkeypatch.setattr(store.session, "request", always)
    with pytest.raises(KhaosError, match=r"^S3 endpoint http://store:9000 is unreachable \(ConnectionError\)$"):
        store.buckets()
    assert len(calls) == 4  # the second request, too, was tried twice, not more


# ---- khaos dist s3proxy / flink-s3 ----------------------------------------------------------------------
def test_s3proxy_tarball_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("KHAOS_CACHE", str(tmp_path))

    def resolve(pom_dir, props, dest, what, needed):
        assert pom_dir == dist.S3PROXY_DIST_DIR and needed == ["s3proxy-2.6.0.jar"] and what == "S3Proxy 2.6.0"
        dest.mkdir(parents=True)
        for name in (*needed, "jclouds-core-2.7.0.jar"):
            (dest / name).write_bytes(name.encode() * 50)
        return sorted(dest.glob("*.jar"))

    monkeypatch.setattr(dist, "_resolve_jars", resolve)
    out = dist.build_s3proxy()
    assert out == tmp_path / "dist" / "s3proxy-2.6.0.tgz"
    dist.verify(out)
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["s3proxy-2.6.0/bin/s3proxy-run"].mode == 0o755
    assert {"s3proxy-2.6.0/config/logback.xml", "s3proxy-2.6.0/libs.sha256"} <= set(members)
    assert "s3proxy-2.6.0/libs/s3proxy-2.6.0.jar" in members
    with pytest.raises(KhaosError, match=r"run `khaos dist s3proxy`"):
        dist.verify(tmp_path / "s3proxy-9.9.9.tgz")
    with pytest.raises(KhaosError, match=r"run `khaos dist flink-s3`"):
        dist.verify(tmp_path / "flink-s3-fs-hadoop-9.9.9.jar")
    with pytest.raises(KhaosError, match="S3Proxy version '2.x' is not a release number like 2.6.0"):
        dist.s3proxy_dist_path("2.x")


def test_flink_s3_plugin_fetch_is_cached_and_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KHAOS_CACHE", str(tmp_path))
    mvn = tmp_path / "mvn"
    mvn.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) out=${a#-DoutputDirectory=};; esac; done\n'
        'echo jar >"$out/flink-s3-fs-hadoop-2.3.0.jar"; echo "$@" >>"$out/../calls"\n'
    )
    mvn.chmod(0o755)
    monkeypatch.setattr(dist.shutil, "which", lambda _: str(mvn))
    jar = dist.build_flink_s3_plugin()
    assert jar == tmp_path / "dist" / "flink-s3-fs-hadoop-2.3.0.jar" and jar.read_text() == "jar\n"
    dist.verify(jar)  # the .sha256 beside it
    assert dist.build_flink_s3_plugin() == jar  # cached: Maven is not asked again
    calls = (tmp_path / "flink-s3-plugin" / "calls").read_text().splitlines()
    assert len(calls) == 1 and "-Dartifact=org.apache.flink:flink-s3-fs-hadoop:2.3.0" in calls[0]
    mvn.write_text(
        "#!/bin/sh\necho '[ERROR] Could not find artifact org.apache.flink:flink-s3-fs-hadoop:9.9.9'\nexit 1\n"
    )
    with pytest.raises(KhaosError) as e:
        dist.build_flink_s3_plugin("9.9.9")
    assert str(e.value) == (
        "mvn could not resolve org.apache.flink:flink-s3-fs-hadoop:9.9.9 (is Maven Central reachable?): "
        "Could not find artifact org.apache.flink:flink-s3-fs-hadoop:9.9.9"
    )


def test_cached_store_dist_runs_s3proxy():
    archive = dist.build_s3proxy()  # cached by `make store-dist`
    dist.verify(archive)
    dist.verify(dist.build_flink_s3_plugin())
    with tarfile.open(archive) as tar:
        tar.extractall(archive.parent / ".check", filter="data")
    home = archive.parent / ".check" / "s3proxy-2.6.0"
    try:
        proc = subprocess.run([str(home / "bin" / "s3proxy-run"), "version"], capture_output=True, text=True)
        assert proc.returncode == 0 and "2.6.0" in proc.stdout + proc.stderr, proc.stderr[-500:]
    finally:
        subprocess.run(["rm", "-rf", str(archive.parent / ".check")], check=True)


# ---- the lab's inventory --------------------------------------------------------------------------------
def test_lab_inventory_with_a_store_host(tmp_path, monkeypatch):
    monkeypatch.setattr(labmod, "INVENTORY_DIR", tmp_path)
    lab = labmod.Lab("tunits")
    lab.inventory, lab.dir, lab.octet = tmp_path / "tunits.yml", tmp_path / "lab", 42
    for name in ("tunits-1", "tunits-2"):
        lab._plan_host(name)
    lab._plan_host("tunits-store").role = "store"
    inv = yaml.safe_load(lab.write_inventory().read_text())["all"]
    assert inv["children"]["checkpoint_store"] == {"hosts": {"tunits-store": {"ansible_host": "10.213.42.13"}}}
    assert list(inv["children"]["flink"]["children"]["flink_taskmanager"]["hosts"]) == ["tunits-2"]
    assert inv["vars"]["flink_checkpoint_dir"] == "s3://khaos/checkpoints" and lab.store_endpoint.endswith(":9000")
    keys = json.loads((tmp_path / "lab" / "store-keys.json").read_text())
    assert inv["vars"]["checkpoint_store_secret_key"] == keys["secret_key"] and len(keys["secret_key"]) >= 24
    assert stat.S_IMODE(os.stat(lab.inventory).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "lab" / "store-keys.json").st_mode) == 0o600
    again = yaml.safe_load(lab.write_inventory().read_text())["all"]
    assert again == inv  # the same key pair: a rewritten inventory does not reconfigure the store


# ---- the link module's plans ----------------------------------------------------------------------------
def _link_module():
    path = REPO_ROOT / "roles" / "checkpoint_store" / "library" / "checkpoint_store_link.py"
    spec = importlib.util.spec_from_file_location("checkpoint_store_link", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeTc:
    """What tc -j and ip -j report (as on the lab host, tc 6.1); the changes are only recorded."""

    def __init__(self, root=None, ifb_rate=None, redirect=False):
        self.actions, self.root, self.ifb_rate, self.redirect = [], root, ifb_rate, redirect

    def json(self, *args):
        if args[:3] == ("ip", "-j", "link"):
            return [{"ifname": "eth0"}] + ([{"ifname": "ifb-ckpt"}] if self.ifb_rate is not None else [])
        if args[:4] == ("tc", "-j", "filter", "show"):
            mirred = {"kind": "mirred", "to_dev": "ifb-ckpt"} if self.redirect else {"kind": "gact"}
            return [{"kind": "u32"}, {"kind": "u32", "options": {"actions": [mirred]}}]
        if args[-1] == "ifb-ckpt":
            return [{"kind": "tbf", "handle": "c0de:", "root": True, "options": {"rate": self.ifb_rate}}]
        qdiscs = [self.root] if self.root else [{"kind": "noqueue", "handle": "0:", "root": True}]
        return qdiscs + ([{"kind": "ingress", "handle": "ffff:", "options": {}}] if self.redirect else [])

    def change(self, *args):
        self.actions.append(" ".join(args))


def test_link_plans_change_only_what_differs():
    link = _link_module()
    tbf40 = {"kind": "tbf", "handle": "c0de:", "root": True, "options": {"rate": 5_000_000}}
    shaped = FakeTc(root=tbf40, ifb_rate=5_000_000, redirect=True)
    link.shape_egress(shaped, "eth0", 40_000_000, 0)
    link.shape_ingress(shaped, "eth0", "ifb-ckpt", 40_000_000)
    assert shaped.actions == []  # as wanted: a second run changes nothing
    fresh = FakeTc()
    link.shape_egress(fresh, "eth0", 40_000_000, 0)
    link.shape_ingress(fresh, "eth0", "ifb-ckpt", 20_000_000)
    assert fresh.actions == [
        "tc qdisc add dev eth0 root handle c0de: tbf rate 40000000bit burst 50000 latency 100ms",
        "ip link add ifb-ckpt type ifb",
        "ip link set ifb-ckpt up",
        "tc qdisc add dev ifb-ckpt root handle c0de: tbf rate 20000000bit burst 32768 latency 100ms",
        "tc qdisc add dev eth0 handle ffff: ingress",
        "tc filter add dev eth0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect "
        "dev ifb-ckpt",
    ]
    link.shape_egress(shaped, "eth0", 0, 0)
    link.shape_ingress(shaped, "eth0", "ifb-ckpt", 0)
    assert shaped.actions == ["tc qdisc del dev eth0 root", "tc qdisc del dev eth0 ingress", "ip link del ifb-ckpt"]
    foreign = FakeTc(root={"kind": "fq_codel", "handle": "0:", "root": True, "options": {}})
    link.shape_egress(foreign, "eth0", 0, 0)
    link.shape_ingress(foreign, "eth0", "ifb-ckpt", 0)
    assert foreign.actions == []  # unshaped: a root qdisc that is not the module's stays
    delayed = FakeTc(root=tbf40)
    link.shape_egress(delayed, "eth0", 40_000_000, 25)
    assert delayed.actions[-1] == "tc qdisc add dev eth0 parent c0de:1 handle c0df: netem delay 25ms limit 100000"
