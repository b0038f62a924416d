"""Record values for replay: generated iot-vehicles and YSB events, and recorded records re-stamped.

Every maker turns a block of replay indices ``ids`` (0, 1, 2, ... per topic) and their due times into
``(keys, values, basis)``: lists of bytes/str (None: no key) and an int array from which each target topic
takes the partition (``basis % partitions``). Generated events are pure functions of the id, so every copy
(and the sample job's own replay source) sees the same events.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import numpy as np

from ..errors import KhaosError

FORMATS = ("iot", "ysb", "raw")
_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S = {k: np.uint64(k) for k in (1, 11, 20, 27, 30, 31, 33, 40, 48)}


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 (VehicleEvent.mix in the job, bit for bit)."""
    with np.errstate(over="ignore"):
        z = np.asarray(z).astype(np.uint64) + _M1
        z = (z ^ (z >> _S[30])) * _M2
        z = (z ^ (z >> _S[27])) * _M3
    return z ^ (z >> _S[31])


def zipf(h: np.ndarray, n: int, s: float) -> np.ndarray:
    """Ranks in [0, n) with density ~ x^-s from 64-bit hashes (VehicleEvent.zipf: the bounded continuous
    power law's inverse CDF; rank 0 the hottest)."""
    u = ((h >> _S[11]) + np.uint64(1)).astype(np.float64) * 2.0**-53  # (0, 1]
    top = n + 1.0
    if abs(s - 1.0) < 1e-9:
        x = np.power(top, u)
    else:
        a = 1.0 - s
        x = np.power(1.0 + u * (top**a - 1.0), 1.0 / a)
    return np.clip(np.floor(x).astype(np.int64) - 1, 0, n - 1)


def check_skew(skew: float) -> float:
    """The skew exponent, 0..10 as the job's --skew."""
    if not 0 <= skew <= 10:
        raise KhaosError(f"--skew must be between 0 and 10, got {skew:g}")
    return float(skew)


class IotFormat:
    """iot-vehicles CSV ``id,vehicleId,speed,area,eventTimeMs``, key = vehicleId: VehicleEvent.of(i, vehicles,
    skew, due) of the job's replay source, so a Kafka copy and a replay copy see the same events."""

    name = "iot"

    def __init__(self, vehicles: int = 10_000, skew: float = 0.0):
        if vehicles < 1:
            raise KhaosError(f"--vehicles must be >= 1, got {vehicles}")
        self.vehicles, self.skew = vehicles, check_skew(skew)

    def fields(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vehicleId, speed, area) of events ``ids``."""
        h = mix(ids)
        vid = zipf(mix(h), self.vehicles, self.skew) if self.skew > 0 else np.asarray(ids) % self.vehicles
        return vid, (h >> _S[1]) % np.uint64(121) + np.uint64(30), (h >> _S[33]) % np.uint64(10)

    def make(self, ids: np.ndarray, due_ms: np.ndarray):
        """(keys, values, partition basis) of events ``ids`` due at ``due_ms``."""
        vid, speed, area = (a.tolist() for a in self.fields(ids))
        values = [f"{i},{v},{s},{a},{t}" for i, v, s, a, t in zip(ids.tolist(), vid, speed, area, due_ms.tolist())]
        return [str(v) for v in vid], values, ids


def ysb_uuid(name: str) -> str:
    """Java's UUID.nameUUIDFromBytes (a v3 UUID of the UTF-8 name), as the YSB job derives its ids."""
    return str(uuid.UUID(bytes=hashlib.md5(name.encode()).digest(), version=3))


class YsbFormat:
    """YSB ad events as JSON; ``ad_id`` from the job's generated mapping (``--campaigns``, ``--ads-per-campaign``,
    ``--seed``), so every view joins a campaign. From hashes of the id: ad (uniform, or Zipf-like with skew),
    event_type (view/click/purchase, a third each), ad_type, page; user = id mod users (Zipf-like with skew).
    ``event_time`` = the due time (a string, as YSB writes it). No key."""

    name = "ysb"
    EVENT_TYPES = ("view", "click", "purchase")
    AD_TYPES = ("banner", "modal", "sponsored-search", "mail", "mobile")

    def __init__(self, campaigns: int = 100, ads_per_campaign: int = 10, seed: int = 0, users: int = 10_000, skew=0.0):
        if campaigns < 1 or ads_per_campaign < 1 or users < 1:
            raise KhaosError("ysb: campaigns, ads per campaign and users must be >= 1")
        self.skew = check_skew(skew)
        self.ads = [ysb_uuid(f"ysb:{seed}:ad:{c}:{j}") for c in range(campaigns) for j in range(ads_per_campaign)]
        self.campaign_of = {
            ad: ysb_uuid(f"ysb:{seed}:campaign:{k // ads_per_campaign}") for k, ad in enumerate(self.ads)
        }
        self.users = [ysb_uuid(f"ysb:{seed}:user:{u}") for u in range(users)]
        self.pages = [ysb_uuid(f"ysb:{seed}:page:{p}") for p in range(100)]
        self.ips = [f"10.{k // 16}.{k % 16}.1" for k in range(256)]

    def make(self, ids: np.ndarray, due_ms: np.ndarray):
        """(keys, values, partition basis) of events ``ids`` due at ``due_ms``."""
        h = mix(ids)
        n_ads, n_users = len(self.ads), len(self.users)
        if self.skew > 0:
            ad, user = zipf(mix(h ^ _M3), n_ads, self.skew), zipf(mix(h), n_users, self.skew)
        else:
            ad, user = (h >> _S[1]) % np.uint64(n_ads), np.asarray(ids) % n_users
        et, at = (h >> _S[33]) % np.uint64(3), (h >> _S[40]) % np.uint64(5)
        page, ip = (h >> _S[20]) % np.uint64(100), (h >> _S[48]) % np.uint64(256)
        A, U, P, IP, ET, AT = self.ads, self.users, self.pages, self.ips, self.EVENT_TYPES, self.AD_TYPES
        values = [
            f'{{"user_id":"{U[u]}","page_id":"{P[p]}","ad_id":"{A[a]}","ad_type":"{AT[t]}",'
            f'"event_type":"{ET[e]}","event_time":"{ms}","ip_address":"{IP[i]}"}}'
            for u, p, a, t, e, ms, i in zip(
                user.tolist(), page.tolist(), ad.tolist(), at.tolist(), et.tolist(), due_ms.tolist(), ip.tolist()
            )
        ]
        return [None] * len(values), values, ids


_MARK = "@@khaos-due-time@@"


def _iot_template(value: bytes) -> tuple[bytes, bytes]:
    fields = value.split(b",")
    if len(fields) != 5 or not all(f.strip().lstrip(b"-").isdigit() for f in fields):
        raise ValueError("not 5 integers id,vehicleId,speed,area,eventTimeMs")
    return b"," + b",".join(fields[1:4]) + b",", b""


def _ysb_template(value: bytes) -> tuple[bytes, bytes]:
    event = json.loads(value)
    if not isinstance(event, dict) or "ad_id" not in event or "event_type" not in event:
        raise ValueError("not a YSB JSON event with ad_id and event_type")
    event["event_time"] = _MARK
    head, _, tail = json.dumps(event, separators=(",", ":")).partition(json.dumps(_MARK))
    return head.encode(), tail.encode()


class RecordedFormat:
    """Recorded records played back: ``raw`` = key and value as recorded; ``iot`` = the recorded vehicleId,
    speed and area with ``id`` = the replay index (0, 1, 2, ... per topic: the copy's audit works) and
    ``eventTimeMs`` = the due time; ``ysb`` = the recorded event with ``event_time`` = the due time. The
    partition is the recorded one (mod the target's partitions). ``rows(ids)`` maps replay indices to rows."""

    def __init__(self, table, fmt: str, rows, where: str):
        if fmt not in FORMATS:
            raise KhaosError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.name, self.rows = fmt, rows
        self.keys = table.column("key").to_pylist()
        self.partition = table.column("partition").to_numpy(zero_copy_only=False).astype(np.int64)
        values = table.column("value").to_pylist()
        if fmt == "raw":
            self.values = values
            return
        parse = _iot_template if fmt == "iot" else _ysb_template
        self.heads, self.tails = [], []
        offsets = table.column("offset").to_pylist()
        for k, v in enumerate(values):
            try:
                head, tail = parse(v if v is not None else b"")
            except (ValueError, UnicodeDecodeError) as e:
                shown = (v or b"")[:60]
                raise KhaosError(
                    f"{where}: the record at partition {self.partition[k]} offset {offsets[k]} is not a {fmt} "
                    f"record ({str(e).splitlines()[0][:80]}): {shown!r} (replay it with --format raw)"
                ) from None
            self.heads.append(head)
            self.tails.append(tail)

    def make(self, ids: np.ndarray, due_ms: np.ndarray):
        """(keys, values, partition basis) of replay indices ``ids`` due at ``due_ms``."""
        rows = self.rows(ids).tolist()
        keys = [self.keys[r] for r in rows]
        if self.name == "raw":
            values = [self.values[r] for r in rows]
        elif self.name == "iot":
            H = self.heads
            values = [b"%d%s%d" % (i, H[r], t) for i, r, t in zip(ids.tolist(), rows, due_ms.tolist())]
        else:
            H, T = self.heads, self.tails
            values = [H[r] + b'"%d"' % t + T[r] for r, t in zip(rows, due_ms.tolist())]
        return keys, values, self.partition[rows]
