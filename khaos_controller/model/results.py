"""Profile results as a fit reads them: one or more results files (``results.csv`` / ``.parquet`` written
by ``khaos profile``) checked against the physical bounds of their numbers, cleaned into the recovery and
the latency rows with an account of the rows dropped and why, and the hash of the rows used."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import KhaosError
from ..schema import FAILURE_MODES, MAX_INTERVAL_S, MAX_LATENCY_MS, MAX_RATE, MAX_RECOVERY_S, MIN_INTERVAL_S

MIN_RECOVERED_ROWS = 4  # below this a 3-4 parameter model is not a fit but an interpolation
MIN_LATENCY_ROWS = 4
REQUIRED_COLUMNS = ("ci_s", "rate", "mode", "recovered", "recovery_s", "latency_p99_ms")
# Read only where present (profile/capacity.py writes them), so an older results file gives the same frame.
CAPACITY_COLUMNS = {"cap": "capacity", "u_target": "utilization_target", "age_s": "restored_checkpoint_age_s"}
_NAN = float("nan")
# The physical bounds of a results file's numbers: column -> (low or None, low excluded, high, unit). A number
# outside them is an error; an empty or non-numeric cell is missing (its row is dropped and counted).
ROW_BOUNDS = {
    "ci_s": (MIN_INTERVAL_S, False, MAX_INTERVAL_S, "s"),
    "rate": (0, True, MAX_RATE, "events/s"),
    "recovery_s": (0, True, MAX_RECOVERY_S, "s"),
    "latency_p99_ms": (0, True, MAX_LATENCY_MS, "ms"),
    "capacity": (0, True, MAX_RATE, "events/s"),
    "since_checkpoint_s": (None, False, MAX_RECOVERY_S, "s"),
    "running_s": (None, False, MAX_RECOVERY_S, "s"),
    "restored_checkpoint_age_s": (None, False, MAX_RECOVERY_S, "s"),
    "checkpoint_duration_ms": (None, False, MAX_LATENCY_MS, "ms"),
}


def load_results(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read one or more profile results (CSV or Parquet) into one frame; KhaosError if unusable."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise KhaosError("no results file given")
    frames = []
    for p in map(Path, paths):
        if not p.is_file():
            raise KhaosError(f"results file {p} " + ("is not a file" if p.exists() else "does not exist"))
        try:
            df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's file
            raise KhaosError(f"cannot read results file {p}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise KhaosError(
                f"results file {p} lacks column(s) {', '.join(missing)} (is it a khaos profile results.csv?)"
            )
        check_rows(df, p)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    key = [c for c in ("trial", "t_fail") if c in df.columns]
    if len(key) == 2:  # the same failure read twice (a file given twice) must not count twice
        df = df.drop_duplicates(subset=key, keep="first").reset_index(drop=True)
    return df


def check_rows(df: pd.DataFrame, source: Path) -> None:
    """Every number of a results file within its physical bounds (ROW_BOUNDS) and every failure mode one
    Khaos profiles; else KhaosError naming the file, the line (CSV) or row (Parquet) and the column."""
    at = (lambda i: f"row {i + 1}") if source.suffix == ".parquet" else (lambda i: f"line {i + 2}")
    for col, (low, open_low, high, unit) in ROW_BOUNDS.items():
        if col not in df.columns:
            continue
        v = _num(df, col)
        below = np.zeros(len(v), bool) if low is None else (v <= low if open_low else v < low)
        bad = np.flatnonzero(np.isfinite(v) & (below | (v > high)))
        if len(bad):
            span = f"<= {high:g}" if low is None else f"in {'(' if open_low else '['}{low:g}, {high:g}]"
            i = int(bad[0])
            raise KhaosError(f"results file {source}: {at(i)}: {col} {v[i]:g} is not {span} {unit}")
    given = df["mode"].notna() & df["mode"].astype(str).str.strip().ne("")
    unknown = np.flatnonzero(given & ~df["mode"].astype(str).str.strip().str.lower().isin(FAILURE_MODES))
    if len(unknown):
        i = int(unknown[0])
        raise KhaosError(
            f"results file {source}: {at(i)}: mode {df['mode'].iloc[i]!r} is not a failure mode "
            f"({', '.join(FAILURE_MODES)})"
        )


def _as_bool(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def recovered(df: pd.DataFrame) -> pd.Series:
    """The rows' recovered flag as booleans (the fit's reading: true, 1, yes)."""
    return df["recovered"].map(_as_bool).astype(bool)


def numeric(df: pd.DataFrame, col: str) -> pd.Series:
    """A results column as floats (NaN where missing or not a number; all NaN without the column)."""
    if col not in df.columns:
        return pd.Series(_NAN, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return numeric(df, col).to_numpy()


def _prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Clean input -> (recovery rows, latency rows, row accounting)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise KhaosError(f"results lack column(s) {', '.join(missing)}")
    d = pd.DataFrame(
        {
            "ci": _num(df, "ci_s"),
            "rate": _num(df, "rate"),
            "mode": df["mode"].astype(str).str.strip().str.lower(),
            "recovered": [_as_bool(v) for v in df["recovered"]],
            "recovery_s": _num(df, "recovery_s"),
            "latency_ms": _num(df, "latency_p99_ms"),
            "since_s": _num(df, "since_checkpoint_s"),
            "running_s": _num(df, "running_s"),
            "ckpt_s": _num(df, "checkpoint_duration_ms") / 1000.0,
        }
    )
    for col, src in CAPACITY_COLUMNS.items():
        if src in df.columns:
            d[col] = _num(df, src)
    if "cap" in d:
        with np.errstate(divide="ignore", invalid="ignore"):
            d["u"] = d["rate"] / d["cap"]  # what features.py computes from the same columns
    if "checkpoint_size_bytes" in df.columns:
        d["state_gb"] = _num(df, "checkpoint_size_bytes") / 1e9
    base_ok = (
        np.isfinite(d["ci"])
        & (d["ci"] > 0)
        & np.isfinite(d["rate"])
        & (d["rate"] > 0)
        & d["mode"].ne("")
        & d["mode"].ne("nan")
    )
    rec_drop: dict[str, int] = {}
    lat_drop: dict[str, int] = {}

    def count(drop, mask, why):
        n = int(mask.sum())
        if n:
            drop[why] = drop.get(why, 0) + n

    bad = ~base_ok
    count(rec_drop, bad, "ci_s/rate/mode missing or not positive")
    count(lat_drop, bad, "ci_s/rate/mode missing or not positive")
    over = base_ok & _overloaded(df)  # no failure injected: the job never caught up (profile/measure.py)
    count(rec_drop, over, "overloaded (the job did not keep up: no failure injected)")
    count(lat_drop, over, "overloaded (the job did not keep up: no steady state)")
    base_ok &= ~over
    not_rec = base_ok & ~d["recovered"]
    count(rec_drop, not_rec, "not recovered within the profile's timeout")
    bad_rec = base_ok & d["recovered"] & ~(np.isfinite(d["recovery_s"]) & (d["recovery_s"] > 0))
    count(rec_drop, bad_rec, "recovery_s missing or not positive")
    rec_ok = base_ok & d["recovered"] & np.isfinite(d["recovery_s"]) & (d["recovery_s"] > 0)
    lat_ok = base_ok & np.isfinite(d["latency_ms"]) & (d["latency_ms"] > 0)
    count(lat_drop, base_ok & ~lat_ok, "latency_p99_ms missing or not positive")
    rows = {
        "input": len(d),
        "recovery_used": int(rec_ok.sum()),
        "recovery_dropped": rec_drop,
        "latency_used": int(lat_ok.sum()),
        "latency_dropped": lat_drop,
    }
    used = rec_ok | lat_ok
    return d[rec_ok].reset_index(drop=True), d[lat_ok].reset_index(drop=True), {**rows, "_used": used, "_clean": d}


def _overloaded(df: pd.DataFrame) -> np.ndarray:
    """Rows of a unit whose job never caught up with its input (``recovery_rule`` overloaded)."""
    if "recovery_rule" not in df:
        return np.zeros(len(df), bool)
    return df["recovery_rule"].astype(str).eq("overloaded").to_numpy()


def data_hash(clean: pd.DataFrame, used: pd.Series) -> str:
    """sha256 over the rows used (the fitted columns, one JSON line each, lines sorted): order-independent."""
    cols = ["ci", "rate", "mode", "recovered", "recovery_s", "latency_ms", "since_s", "running_s", "ckpt_s"]
    extra = [c for c in ("age_s", "cap", "u_target") if c in clean and np.isfinite(clean.loc[used, c]).any()]
    cols += extra + (["state_gb"] if "cap" in extra and "state_gb" in clean else [])  # state: greybox only
    lines = []
    for rec in clean.loc[used, cols].to_dict("records"):
        rec = {
            k: (
                None
                if isinstance(v, float) and not math.isfinite(v)
                else (round(v, 9) if isinstance(v, float) else (bool(v) if isinstance(v, (bool, np.bool_)) else v))
            )
            for k, v in rec.items()
        }
        lines.append(json.dumps(rec, sort_keys=True))
    return "sha256:" + hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def usable(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(recovery rows, latency rows, row accounting) of profile results; KhaosError if too few rows
    are usable to fit (what an evaluation's dry run checks before it builds anything)."""
    rec, lat, rows = _prepare(results)
    if len(rec) < MIN_RECOVERED_ROWS:
        why = "; ".join(f"{n} {w}" for w, n in rows["recovery_dropped"].items()) or "none dropped"
        raise KhaosError(
            f"too few recovered failures to fit: {len(rec)} of {rows['input']} rows usable "
            f"(need >= {MIN_RECOVERED_ROWS}; dropped: {why})"
        )
    if len(lat) < MIN_LATENCY_ROWS:
        raise KhaosError(f"too few rows with a latency_p99_ms to fit: {len(lat)} (need >= {MIN_LATENCY_ROWS})")
    return rec, lat, rows
