"""The checkpoint store as the controller sees it: a small S3 client (path-style requests signed with AWS
Signature Version 4) for what the checkpoint_store role and the tests need: is the store up and do the
credentials work, make a bucket so, list what is in it. The role's module (roles/checkpoint_store/library:
checkpoint_store_bucket) runs this on the controller with the khaos venv's Python, like the kafka role's.

Every failure is one line (KhaosError); the secret key never appears in one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

import requests

from ..errors import KhaosError

DEFAULT_PORT = 9000  # the checkpoint_store role's checkpoint_store_port (roles/khaos_defaults)
STORE_GROUP = "checkpoint_store"  # the inventory group of the store host (checkpoint_store_group)
REGION = "us-east-1"  # what an S3-compatible store without regions accepts in a signature
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# S3 error codes that waiting does not mend: the credentials or the request are wrong
_FATAL = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidBucketName"}


def check_endpoint(endpoint: str) -> str:
    """``http(s)://host:port`` without a trailing slash, or a KhaosError saying what is wrong with it."""
    text = str(endpoint or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise KhaosError(f"S3 endpoint {endpoint!r} is not http(s)://host[:port] (e.g. http://10.0.0.5:9000)")
    return text


def check_bucket(name: str) -> str:
    """``name`` if it is a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')."""
    if not _BUCKET.match(str(name or "")) or ".." in name:
        raise KhaosError(f"bucket name {name!r}: 3-63 lowercase letters, digits, '.' or '-', not starting with '.'")
    return name


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(method: str, url: str, access_key: str, secret_key: str, payload_sha256: str, now: datetime) -> dict:
    """The headers that sign one request with AWS Signature Version 4 (service s3, REGION)."""
    parts = urlsplit(url)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    query = sorted(  # each name and value encoded exactly once, as the server decodes them
        (quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
        for k, _, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_sha256, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(unquote(parts.path or "/"), safe="/-_.~"),
            "&".join(f"{k}={v}" for k, v in query),
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), REGION), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return {"Authorization": auth, "x-amz-content-sha256": payload_sha256, "x-amz-date": stamp}


def _error_code(body: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 error document ('' when the body is not one)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    return root.findtext("Code") or "", root.findtext("Message") or ""


class S3Error(KhaosError):
    """The store answered with an S3 error (``code``: its Code, e.g. NoSuchBucket)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


class S3:
    """One S3 endpoint with one key pair; path-style requests (``endpoint/bucket/key``)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, timeout: float = 10.0):
        self.endpoint = check_endpoint(endpoint)
        if not access_key or not secret_key:
            raise KhaosError(f"S3 endpoint {self.endpoint}: an access key and a secret key are needed")
        self.access_key, self.secret_key, self.timeout = access_key, secret_key, timeout
        self.session = requests.Session()

    def request(self, method: str, path: str, query: str = "", ok: tuple = (200,)) -> requests.Response:
        """One signed request; the response when its status is in ``ok``, else a one-line KhaosError. A server
        error (5xx) is asked again, four times in 3.7 s (S3Proxy answers 500 to a listing that races a delete,
        and Flink deletes a checkpoint every second or two)."""
        url = f"{self.endpoint}{quote(path, safe='/-_.~')}" + (f"?{query}" if query else "")
        for pause in (0.2, 0.5, 1.0, 2.0, None):
            resp = self._send(method, url)
            if resp.status_code < 500 or pause is None:
                break
            time.sleep(pause)
        if resp.status_code not in ok:
            code, message = _error_code(resp.content)
            raise S3Error(
                f"S3 {method} {path} at {self.endpoint}: HTTP {resp.status_code} {code} {message}".strip(), code
            )
        return resp

    def buckets(self) -> list[str]:
        """Names of the buckets this key pair sees (ListBuckets)."""
        root = ET.fromstring(self.request("GET", "/").content)
        return sorted(e.findtext("./{*}Name") or "" for e in root.iter() if e.tag.rpartition("}")[2] == "Bucket")

    def ensure_bucket(self, name: str, check_mode: bool = False) -> bool:
        """Create bucket ``name`` unless it exists; True when it was (or would be) created."""
        check_bucket(name)
        if self.request("HEAD", f"/{name}", ok=(200, 404)).status_code == 200:
            return False
        if not check_mode:
            self.request("PUT", f"/{name}")
        return True

    def _send(self, method: str, url: str) -> requests.Response:
        """One signed request. A connection the pool kept from before a store restart is dropped by the new
        server: the request is sent once more on a fresh connection (every request here is idempotent)."""
        for attempt in (1, 2):
            headers = sign(method, url, self.access_key, self.secret_key, _EMPTY_SHA256, datetime.now(UTC))
            try:
                return self.session.request(method, url, headers=headers, timeout=self.timeout)
            except requests.RequestException as e:
                refused = "refused" in str(e).lower()
                if attempt == 1 and isinstance(e, requests.ConnectionError) and not refused:
                    self.session.close()  # forget the pooled connections
                    continue
                why = "connection refused" if refused else type(e).__name__
                raise KhaosError(f"S3 endpoint {self.endpoint} is unreachable ({why})") from None
        raise KhaosError(f"S3 endpoint {self.endpoint} is unreachable")

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` in ``bucket``: {key: size} (ListObjectsV2, all pages)."""
        found, token = {}, ""
        while True:
            query = "list-type=2" + (f"&prefix={quote(prefix, safe='')}" if prefix else "")
            query += f"&continuation-token={quote(token, safe='')}" if token else ""
            root = ET.fromstring(self.request("GET", f"/{check_bucket(bucket)}", query=query).content)
            ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
            for item in root.iter(f"{ns}Contents"):
                found[item.findtext(f"{ns}Key")] = int(item.findtext(f"{ns}Size") or 0)
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return found


def wait_ready(store: S3, timeout: float = 120.0) -> float:
    """Wait until the store answers a signed ListBuckets; the seconds waited. Wrong credentials fail at once."""
    t0 = time.monotonic()
    while True:
        try:
            store.buckets()
            return round(time.monotonic() - t0, 1)
        except S3Error as e:
            if e.code in _FATAL:
                raise KhaosError(f"{e} (wrong access key or secret key?)") from None
            last = str(e)
        except KhaosError as e:
            last = str(e)
        if time.monotonic() - t0 > timeout:
            raise KhaosError(f"S3 endpoint {store.endpoint} not ready after {timeout:g} s: {last}")
        time.sleep(1.0)
