"""Small shared helpers: stable hashing, exact decimal formatting, time parsing.

Everything the simulator generates must be reproducible across processes and Python
versions, so randomness is derived from ``hashlib.blake2b`` of explicit keys, never from
Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import math
import struct
from datetime import date, datetime, timezone

import numpy as np

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Day index 0 of every per-day series (price anchors, turnover drift).
EPOCH_MS = int(datetime(2017, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
# Series run until this many days after EPOCH_MS (2040-ish): far beyond any test clock.
N_DAYS = 8_500


def stable_u64(*key: object) -> int:
    """64-bit integer derived from ``key`` with blake2b (stable across runs and machines)."""
    text = "\x1f".join(str(k) for k in key).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def rng_for(*key: object) -> np.random.Generator:
    """A numpy Generator seeded from a stable hash of ``key``."""
    return np.random.Generator(np.random.PCG64(stable_u64(*key)))


def hash_unit(*key: object) -> float:
    """Uniform float in (0, 1) from ``key``: cheap (no Generator) for per-call noise."""
    return (stable_u64(*key) >> 11) * (1.0 / (1 << 53)) + 0.5 / (1 << 53)


def hash_normal(*key: object) -> float:
    """Standard normal from ``key`` (Box-Muller over two hashed uniforms)."""
    raw = hashlib.blake2b("\x1f".join(str(k) for k in key).encode(), digest_size=16).digest()
    a, b = struct.unpack("<QQ", raw)
    u1 = ((a >> 11) + 0.5) / (1 << 53)
    u2 = ((b >> 11) + 0.5) / (1 << 53)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def fmt_scaled(n: int, exp: int) -> str:
    """Exact decimal string of ``n * 10**exp`` without exponent or trailing zeros.

    OKX sends numbers as strings; generating them from integers keeps sums and
    products exact (e.g. ``volCcy == vol * ctVal`` digit for digit).
    """
    n = int(n)
    if exp >= 0:
        return str(n * 10**exp)
    neg = n < 0
    digits = str(-n if neg else n).rjust(-exp + 1, "0")
    int_part, frac = digits[:exp], digits[exp:].rstrip("0")
    out = f"{int_part}.{frac}" if frac else int_part
    return "-" + out if neg and out != "0" else out


def fmt_rate(x: float) -> str:
    """Funding-rate style string: 16 decimal places, like ``"0.0001000000000000"``."""
    s = f"{x:.16f}"
    return "0.0000000000000000" if s == "-0.0000000000000000" else s


def parse_time_ms(value: str | int | float | date | datetime) -> int:
    """Epoch ms from an ISO date/datetime string (``Z`` allowed), a date, or a number.

    A bare date means 00:00 UTC of that day; naive datetimes are taken as UTC.
    ``"now"`` means the current wall-clock time.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp() * 1000)
    text = str(value).strip()
    if text.lower() == "now":
        return int(datetime.now(timezone.utc).timestamp() * 1000)
    if text.isdigit():
        return int(text)
    if len(text) == 10:
        return parse_time_ms(date.fromisoformat(text))
    return parse_time_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


def iso_ms(ms: int) -> str:
    """``2024-03-04T22:00:00.000Z`` for logs and /sim/state."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def day_start(ms: int) -> int:
    """00:00 UTC of the day containing ``ms``."""
    return ms - ms % DAY_MS


def day_index(ms: int) -> int:
    """Index of the UTC day containing ``ms`` in the per-day series."""
    return (ms - EPOCH_MS) // DAY_MS
