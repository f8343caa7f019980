"""OKX's historical-data archive, served from the same ``Market`` as REST and WebSocket.

Two parts, like OKX:

* the listing ``GET /api/v5/public/market-data-history`` (module 2 = 1-minute candles), a REST
  endpoint behind the simulator's usual faults, rate limit (5 requests / 2 s per IP) and log;
* the files ``/cdn/okex/traderecords/candlesticks/{daily|monthly}/{stamp}/{instId}-candlesticks-{period}.zip``:
  one CSV per zip, the rows of one UTC+8 day or UTC+8 month, oldest first, each value the exact
  string REST ``history-candles`` serves for that minute.

Files are built on first use (listing sizes need them too) and kept in a temporary directory
bounded in bytes; the zip bytes are a pure function of (world, file, persistent faults), so a
rebuilt file is byte-identical.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
from aiohttp import web

from .common import DAY_MS, HOUR_MS, MINUTE_MS
from .control import RequestLog, RequestRecord, SimClock
from .instruments import InstrumentSpec
from .market import Market
from .rest import _bad, _missing

log = logging.getLogger("okxsim.archive")

UTC8_MS = 8 * HOUR_MS
LISTING_PATH = "/api/v5/public/market-data-history"
CDN_ROOT = "/cdn/okex/traderecords/candlesticks"
CSV_HEADER = "instrument_name,open,high,low,close,vol,vol_ccy,vol_quote,open_time,confirm"
MAX_ITEMS = 10          # instIdList / instFamilyList entries per listing request
MAX_PERIODS = 20        # days (daily) or months (monthly) per listing request
MIB = 1_048_576
ZIP_LEVEL = 1           # deflate level: fast to build; the product checks the CRC, not the ratio
LOG_ENDPOINT = "archive-file"

_FILE_RE = re.compile(r"^(?P<inst>[A-Za-z0-9-]+)-candlesticks-(?P<period>\d{4}-\d{2}(?:-\d{2})?)\.zip$")


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """One archive file's time span: a UTC+8 day (daily) or a UTC+8 month (monthly)."""

    agg: str      # "daily" | "monthly"
    first: date   # the day, or the first day of the month

    @classmethod
    def parse(cls, label: str) -> "Period":
        """``"2024-03-05"`` (daily) or ``"2024-03"`` (monthly); ``ValueError`` otherwise."""
        text = str(label)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return cls("daily", date.fromisoformat(text))
        if re.fullmatch(r"\d{4}-\d{2}", text):
            return cls("monthly", date.fromisoformat(text + "-01"))
        raise ValueError(f"archive period {label!r} is neither YYYY-MM-DD (daily) nor YYYY-MM (monthly)")

    @property
    def label(self) -> str:
        return self.first.isoformat() if self.agg == "daily" else self.first.strftime("%Y-%m")

    @property
    def stamp(self) -> str:
        """The URL's directory part: ``20240305`` or ``202403``."""
        return self.label.replace("-", "")

    @property
    def end_date(self) -> date:
        """First day after the period."""
        if self.agg == "daily":
            return self.first + timedelta(days=1)
        y, m = self.first.year, self.first.month
        return date(y + (m == 12), m % 12 + 1, 1)

    @property
    def start_ms(self) -> int:
        """UTC+8 midnight of ``first`` in UTC epoch ms (the listing's ``dateTs``)."""
        return utc8_midnight_ms(self.first)

    @property
    def end_ms(self) -> int:
        return utc8_midnight_ms(self.end_date)

    @property
    def published_ms(self) -> int:
        """T+2: a day d appears at UTC+8 midnight of d+2; a month two days after it ends."""
        return utc8_midnight_ms(self.first + timedelta(days=2)) if self.agg == "daily" else self.end_ms + 2 * DAY_MS

    def file_name(self, inst_id: str) -> str:
        return f"{inst_id}-candlesticks-{self.label}.zip"

    def url_path(self, inst_id: str) -> str:
        return f"{CDN_ROOT}/{self.agg}/{self.stamp}/{self.file_name(inst_id)}"


def utc8_midnight_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000) - UTC8_MS


def utc8_date(ms: int) -> date:
    """The UTC+8 calendar date of ``ms`` (OKX uses only this date part of begin/end)."""
    return datetime.fromtimestamp((ms + UTC8_MS) / 1000, tz=timezone.utc).date()


def periods_for(agg: str, begin_ms: int, end_ms: int) -> list[Period]:
    """The periods a listing covers, newest first: at most 20, the ones closest to ``end``."""
    lo, hi = utc8_date(begin_ms), utc8_date(end_ms)
    out: list[Period] = []
    if agg == "daily":
        d = hi
        while d >= lo and len(out) < MAX_PERIODS:
            out.append(Period("daily", d))
            d -= timedelta(days=1)
        return out
    y, m = hi.year, hi.month
    while (y, m) >= (lo.year, lo.month) and len(out) < MAX_PERIODS:
        out.append(Period("monthly", date(y, m, 1)))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out


# --------------------------------------------------------------------------- faults


@dataclass
class _Counted:
    remaining: int
    status: int
    inst_id: str
    period: str

    def matches(self, inst_id: str, period: str) -> bool:
        return (self.remaining > 0 and (not self.inst_id or self.inst_id == inst_id)
                and (not self.period or self.period == period))


class ArchiveFaults:
    """Archive faults: counted ones (error, truncated) are consumed by matching file requests;
    persistent ones (missing, header, unconfirmed) change what a file is until cleared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: list[_Counted] = []
        self.truncations: list[_Counted] = []
        self.missing: set[tuple[str, str]] = set()
        self.headers: dict[tuple[str, str], str] = {}
        self.unconfirmed: dict[tuple[str, str], set[int]] = {}

    def clear(self) -> None:
        with self._lock:
            self.errors = []
            self.truncations = []
            self.missing = set()
            self.headers = {}
            self.unconfirmed = {}

    def add_error(self, count: int, status: int, inst_id: str = "", period: str = "") -> None:
        if not 400 <= int(status) <= 599:
            raise ValueError(f"archive_error status must be an HTTP error (403, 404, 429, 500), got {status!r}")
        with self._lock:
            self.errors.append(_Counted(int(count), int(status), inst_id or "", _label(period)))

    def add_truncated(self, count: int, inst_id: str = "", period: str = "") -> None:
        with self._lock:
            self.truncations.append(_Counted(int(count), 0, inst_id or "", _label(period)))

    def add_missing(self, inst_id: str, period: str) -> None:
        with self._lock:
            self.missing.add((_need(inst_id, "inst_id"), _label(_need(period, "period"))))

    def add_header(self, inst_id: str, period: str, header: str) -> None:
        if "\n" in str(header):
            raise ValueError("archive_header: header must be one line")
        with self._lock:
            self.headers[(_need(inst_id, "inst_id"), _label(_need(period, "period")))] = str(header)

    def add_unconfirmed(self, inst_id: str, period: str, minute_ms: int) -> None:
        key = (_need(inst_id, "inst_id"), _label(_need(period, "period")))
        with self._lock:
            self.unconfirmed.setdefault(key, set()).add(int(minute_ms))

    def _take(self, items: list[_Counted], inst_id: str, period: str) -> _Counted | None:
        with self._lock:
            for f in items:
                if f.matches(inst_id, period):
                    f.remaining -= 1
                    items[:] = [x for x in items if x.remaining > 0]
                    return f
        return None

    def take_error(self, inst_id: str, period: str) -> int | None:
        f = self._take(self.errors, inst_id, period)
        return f.status if f else None

    def take_truncated(self, inst_id: str, period: str) -> bool:
        return self._take(self.truncations, inst_id, period) is not None

    def is_missing(self, inst_id: str, period: str) -> bool:
        with self._lock:
            return (inst_id, period) in self.missing

    def variant(self, inst_id: str, period: str) -> tuple[str | None, tuple[int, ...]]:
        """(replacement header, unconfirmed minutes) of one file: part of its cache key."""
        with self._lock:
            return (self.headers.get((inst_id, period)),
                    tuple(sorted(self.unconfirmed.get((inst_id, period), ()))))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"errors": [vars(f).copy() for f in self.errors],
                    "truncations": [vars(f).copy() for f in self.truncations],
                    "missing": sorted(f"{i} {p}" for i, p in self.missing),
                    "headers": {f"{i} {p}": h for (i, p), h in sorted(self.headers.items())},
                    "unconfirmed": {f"{i} {p}": sorted(m) for (i, p), m in sorted(self.unconfirmed.items())}}


def _need(value: Any, name: str) -> str:
    if not value:
        raise ValueError(f"archive fault needs {name}")
    return str(value)


def _label(period: Any) -> str:
    """Normalised period label ("" = any); ``ValueError`` for a malformed one."""
    return Period.parse(str(period)).label if period else ""


# --------------------------------------------------------------------------- CSV and zip


def _ndigits(v: np.ndarray) -> np.ndarray:
    """Decimal digit count of each non-negative value (0 has one digit)."""
    nd = np.ones(v.shape, dtype=np.int64)
    vmax = int(v.max()) if v.size else 0
    t = 10
    while t <= vmax:
        nd += v >= t
        t *= 10
    return nd


def _digit_matrix(v: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of each value, zero-padded to ``width`` (one row per value)."""
    out = np.empty((v.size, width), dtype=np.uint8)
    x = v.copy()
    for j in range(width - 1, -1, -1):
        out[:, j] = x % 10 + 48
        x //= 10
    return out


def _scaled_field(v: np.ndarray, exp: int) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, keep-mask) rendering ``v * 10**exp`` like ``common.fmt_scaled``: no exponent,
    no trailing zeros, no dot for whole numbers. ``v`` must be non-negative."""
    if exp >= 0:
        ip, k, fr = v * 10**exp, 0, None
    else:
        k = -exp
        ip, fr = np.divmod(v, np.int64(10**k))
    width = int(_ndigits(np.array([ip.max() if ip.size else 0]))[0])
    mat = _digit_matrix(ip, width)
    keep = np.arange(width)[None, :] >= (width - _ndigits(ip))[:, None]
    if fr is None:
        return mat, keep
    tz = np.zeros(v.shape, dtype=np.int64)  # trailing zeros of the fraction's k digits
    for j in range(1, k):
        tz += fr % np.int64(10**j) == 0
    has = fr != 0
    frac_keep = (np.arange(k)[None, :] < (k - tz)[:, None]) & has[:, None]
    dot = np.full((v.size, 1), ord("."), dtype=np.uint8)
    return np.hstack([mat, dot, _digit_matrix(fr, k)]), np.hstack([keep, has[:, None], frac_keep])


def _const_field(n: int, text: str) -> tuple[np.ndarray, np.ndarray]:
    b = np.frombuffer(text.encode(), dtype=np.uint8)
    return np.broadcast_to(b, (n, b.size)), np.ones((n, b.size), dtype=bool)


def csv_rows(market: Market, inst_id: str, lo_ms: int, hi_ms: int, unconfirmed: tuple[int, ...] = ()) -> bytes:
    """The CSV body (no header) of every 1m candle in [lo_ms, hi_ms), oldest first."""
    return csv_pieces(market, inst_id, [(lo_ms, hi_ms)], unconfirmed)[0]


def csv_pieces(market: Market, inst_id: str, spans: list[tuple[int, int]],
               unconfirmed: tuple[int, ...] = ()) -> list[bytes]:
    """The CSV bodies (no header) of several adjacent or disjoint [lo, hi) spans, oldest row first.

    Built column-wise with numpy in one pass over all spans (a month is ~44,640 rows; row-by-row
    ``format_row`` takes ~0.4 s per month, and many small files cost mostly per-call overhead),
    then each piece's first and last rows are checked against ``Market.format_row``, the
    formatter REST uses, so the two can never silently drift apart.
    """
    lo_all, hi_all = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    spec = market.spec(inst_id)
    ts, cols = market.minute_columns(inst_id, lo_all, hi_all)
    n = ts.size
    if n == 0:
        return [b"" for _ in spans]
    te, ve, ce, qe = market.value_exps(spec)
    exps = (te, te, te, te, ve, ce, qe)
    if any(int(c.min()) < 0 for c in cols) or any(e > 0 and int(c.max()) * 10**e >= 2**62 for c, e in zip(cols, exps)):
        body = _csv_rows_slow(market, spec, ts, cols, unconfirmed)
        return [_slice_rows(ts, lo, hi, body, None) for lo, hi in spans]
    fields = [_const_field(n, inst_id + ",")]
    for c, e in zip(cols, exps):
        fields += [_scaled_field(c, e), _const_field(n, ",")]
    fields.append(_scaled_field(ts, 0))
    confirm = np.full((n, 1), ord("1"), dtype=np.uint8)
    if unconfirmed:
        confirm[np.isin(ts, np.array(unconfirmed, dtype=np.int64)), 0] = ord("0")
    fields += [_const_field(n, ","), (confirm, np.ones((n, 1), dtype=bool)), _const_field(n, "\n")]
    mat = np.hstack([f[0] for f in fields])
    keep = np.hstack([f[1] for f in fields])
    body = mat[keep].tobytes()
    ends = np.cumsum(keep.sum(axis=1))  # byte offset just past each row
    pieces = [_slice_rows(ts, lo, hi, body, ends) for lo, hi in spans]
    for lo, hi in spans:
        i0, i1 = np.searchsorted(ts, lo), np.searchsorted(ts, hi)
        for i in {int(i0), int(i1) - 1} if i1 > i0 else ():
            line = body[(int(ends[i - 1]) if i else 0): int(ends[i]) - 1].decode()
            row = market.format_row(spec, int(ts[i]), tuple(int(c[i]) for c in cols), True)  # type: ignore[arg-type]
            want = _csv_line(inst_id, row, int(ts[i]) in unconfirmed)
            if line != want:
                raise AssertionError(f"archive CSV row {line!r} differs from REST's {want!r} ({inst_id})")
    return pieces


def _slice_rows(ts: np.ndarray, lo: int, hi: int, body: bytes, ends: np.ndarray | None) -> bytes:
    """The rows of ``body`` whose open time is in [lo, hi) (``ends``: byte end of each row)."""
    i0, i1 = int(np.searchsorted(ts, lo)), int(np.searchsorted(ts, hi))
    if i1 <= i0:
        return b""
    if ends is None:  # the slow path's body: split lines
        return b"".join(line + b"\n" for line in body.split(b"\n")[i0:i1])
    return body[(int(ends[i0 - 1]) if i0 else 0): int(ends[i1 - 1])]


def _csv_line(inst_id: str, row: list[str], unconfirmed: bool) -> str:
    """One CSV line (no newline) from a REST candle row [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]."""
    return ",".join([inst_id, *row[1:8], row[0], "0" if unconfirmed else "1"])


def _csv_rows_slow(market: Market, spec: InstrumentSpec, ts: np.ndarray, cols: list[np.ndarray],
                   unconfirmed: tuple[int, ...]) -> bytes:
    lines = [_csv_line(spec.inst_id, market.format_row(spec, int(t), tuple(int(c[i]) for c in cols), True),  # type: ignore[arg-type]
                       int(t) in unconfirmed) + "\n" for i, t in enumerate(ts.tolist())]
    return "".join(lines).encode()


def build_zip(market: Market, inst_id: str, period: Period, header: str | None = None,
              unconfirmed: tuple[int, ...] = (), rows: bytes | None = None) -> bytes:
    """The zip file OKX would publish: one member ``{instId}-candlesticks-{period}.csv``.

    Byte-identical on every call: the member's timestamp is the period's first day, the
    compression level and attributes are fixed. ``rows``: the CSV body if already formatted.
    """
    if rows is None:
        rows = csv_rows(market, inst_id, period.start_ms, period.end_ms, unconfirmed)
    text = (header if header is not None else CSV_HEADER).encode() + b"\n" + rows
    info = zipfile.ZipInfo(f"{inst_id}-candlesticks-{period.label}.csv",
                           date_time=(period.first.year, period.first.month, period.first.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, text, compress_type=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL)
    return buf.getvalue()


# --------------------------------------------------------------------------- file cache


class FileCache:
    """Built zips in a temporary directory, least recently used evicted past ``max_bytes``.

    A file being sent stays readable after eviction (the open handle keeps it on POSIX).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self._dir: str | None = None
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[str, int]] = OrderedDict()
        self._building: dict[tuple[Any, ...], threading.Lock] = {}
        self._total = 0
        self.builds = 0
        self.build_seconds = 0.0

    def contains(self, key: tuple[Any, ...]) -> bool:
        with self._lock:
            hit = self._entries.get(key)
            return hit is not None and os.path.exists(hit[0])

    def get(self, key: tuple[Any, ...], build: Any) -> tuple[str, int]:
        """(path, size) of ``key``'s file, calling ``build()`` -> bytes once if absent."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and os.path.exists(hit[0]):
                self._entries.move_to_end(key)
                return hit
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:  # one build per file even when the listing and a download race
            with self._lock:
                hit = self._entries.get(key)
                if hit is not None and os.path.exists(hit[0]):
                    return hit
                if self._dir is None:
                    self._dir = tempfile.mkdtemp(prefix="okxsim-archive-")
                path = os.path.join(self._dir, f"{len(self._entries)}-{abs(hash(key)):x}-{time.monotonic_ns()}.zip")
            t0 = time.perf_counter()
            data = build()
            elapsed = time.perf_counter() - t0
            tmp = path + ".part"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
            with self._lock:
                self.builds += 1
                self.build_seconds += elapsed
                self._entries[key] = (path, len(data))
                self._total += len(data)
                self._building.pop(key, None)
                while self._total > self.max_bytes and len(self._entries) > 1:
                    _, (old, size) = self._entries.popitem(last=False)
                    self._total -= size
                    try:
                        os.unlink(old)
                    except OSError:
                        pass
            return path, len(data)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"files": len(self._entries), "bytes": self._total, "builds": self.builds,
                    "build_seconds": round(self.build_seconds, 3)}

    def close(self) -> None:
        with self._lock:
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._entries.clear()
            self._total = 0


# --------------------------------------------------------------------------- the archive


class Archive:
    """Listing + files for module 2 (1-minute candles) from ``market`` at the simulated time."""

    def __init__(self, market: Market, clock: SimClock, log_: RequestLog, *, bandwidth_bps: float = 0.0,
                 cache_bytes: int = 1 << 30) -> None:
        self.market = market
        self.clock = clock
        self.log = log_
        self.bandwidth_bps = float(bandwidth_bps or 0.0)
        self.faults = ArchiveFaults()
        self.cache = FileCache(cache_bytes)
        self.base_url = ""  # "https://host:port", set once the server listens

    # ------------------------------------------------------------------ truth
    def has_candles(self, spec: InstrumentSpec, period: Period) -> bool:
        """Whether the instrument had at least one candle in the period (REST would serve one)."""
        lo = max(period.start_ms, self.market.first_minute(spec))
        hi = period.end_ms if spec.delist_ms is None else min(period.end_ms, spec.delist_ms)
        if lo >= hi:
            return False
        if hi - lo >= 9 * MINUTE_MS:  # gaps without candles last <= 4 minutes per UTC day
            return True
        ts, _ = self.market.minute_columns(spec.inst_id, lo, hi)
        return ts.size > 0

    def exists(self, inst_id: str, period: Period, sim_ms: int) -> bool:
        """The file is published (T+2), has rows, and is not removed by ``archive_missing``."""
        spec = self.market.by_id.get(inst_id)
        return (spec is not None and sim_ms >= period.published_ms
                and not self.faults.is_missing(inst_id, period.label) and self.has_candles(spec, period))

    def _key(self, inst_id: str, period: Period) -> tuple[Any, ...]:
        return (inst_id, period.agg, period.label, *self.faults.variant(inst_id, period.label))

    def file(self, inst_id: str, period: Period, rows: bytes | None = None) -> tuple[str, int]:
        """(path, size) of the built zip (with its persistent faults applied)."""
        key = self._key(inst_id, period)
        return self.cache.get(key, lambda: build_zip(self.market, inst_id, period, key[3], key[4], rows))

    def prebuild(self, inst_id: str, periods: list[Period]) -> None:
        """Build the not-yet-cached daily files of one instrument from one formatting pass
        (a listing of 20 days x 10 instruments would otherwise pay numpy's per-call overhead 200 times)."""
        todo = [p for p in periods if p.agg == "daily" and not self.cache.contains(self._key(inst_id, p))]
        if len(todo) < 2:
            return
        unconfirmed = tuple(sorted({m for p in todo for m in self._key(inst_id, p)[4]}))
        pieces = csv_pieces(self.market, inst_id, [(p.start_ms, p.end_ms) for p in todo], unconfirmed)
        for p, rows in zip(todo, pieces):
            self.file(inst_id, p, rows)

    # ------------------------------------------------------------------ listing
    def listing(self, params: dict[str, str], sim_ms: int) -> tuple[int, dict[str, Any]]:
        """``GET /api/v5/public/market-data-history`` (may build files: run it off the event loop)."""
        for name in ("module", "instType", "dateAggrType", "begin", "end"):
            if not params.get(name):
                raise _missing(name)
        module, inst_type, agg = params["module"], params["instType"], params["dateAggrType"]
        if module not in ("1", "2", "3"):
            raise _bad("module")
        if inst_type not in ("SPOT", "SWAP", "FUTURES", "OPTION"):
            raise _bad("instType")
        if agg not in ("daily", "monthly"):
            raise _bad("dateAggrType")
        begin, end = _ms(params, "begin"), _ms(params, "end")
        if begin > end:
            raise _bad("begin")
        list_name, other = ("instIdList", "instFamilyList") if inst_type == "SPOT" else ("instFamilyList", "instIdList")
        if params.get(other):
            raise _bad(other)
        raw = params.get(list_name, "")
        if not raw:
            raise _missing(list_name)
        items = [x.strip() for x in raw.split(",") if x.strip()]
        if not items or len(items) > MAX_ITEMS:
            raise _bad(list_name)
        if "ANY" in items and (len(items) > 1 or agg != "daily"):
            raise _bad(list_name if len(items) > 1 else "dateAggrType")
        if module != "2" or inst_type not in ("SPOT", "SWAP"):
            return 200, {"code": "0", "msg": "", "data": []}  # trades, funding, futures, options: not simulated
        specs = self._specs(inst_type, items)
        periods = periods_for(agg, begin, end)
        details, total = [], 0
        for spec in specs:
            present = [p for p in periods if self.exists(spec.inst_id, p, sim_ms)]  # newest first
            self.prebuild(spec.inst_id, present)
            files = [(p, self.file(spec.inst_id, p)[1]) for p in present]
            if not files:
                continue
            group = sum(s for _, s in files)
            total += group
            details.append({
                "instId": spec.inst_id, "instFamily": _family(spec), "instType": spec.inst_type,
                "dateRangeStart": str(files[-1][0].start_ms), "dateRangeEnd": str(files[0][0].start_ms),
                "groupSizeMB": _mb(group),
                "groupDetails": [{"filename": p.file_name(spec.inst_id), "dateTs": str(p.start_ms),
                                  "sizeMB": _mb(size), "url": self.base_url + p.url_path(spec.inst_id)}
                                 for p, size in files]})
        if not details:
            return 200, {"code": "0", "msg": "", "data": []}
        return 200, {"code": "0", "msg": "", "data": [{"ts": str(sim_ms), "totalSizeMB": _mb(total),
                                                       "dateAggrType": agg, "details": details}]}

    def _specs(self, inst_type: str, items: list[str]) -> list[InstrumentSpec]:
        """Instruments named by the request, in its order (``ANY`` = every one of the type)."""
        of_type = [s for s in self.market.specs if s.inst_type == inst_type]
        if items == ["ANY"]:
            return of_type
        out: list[InstrumentSpec] = []
        for item in items:
            out += [s for s in of_type if (s.inst_id if inst_type == "SPOT" else _family(s)) == item and s not in out]
        return out

    # ------------------------------------------------------------------ files
    def routes(self) -> list[web.RouteDef]:
        return [web.get(CDN_ROOT + "/{agg}/{stamp}/{name}", self.handle_file)]

    async def handle_file(self, request: web.Request) -> web.StreamResponse:
        mono = time.monotonic()
        sim = self.clock.now_ms(mono)
        ip = request.remote or ""
        range_header = request.headers.get("Range", "")
        logged: dict[str, str] = {"path": request.path, "range": range_header}

        def record(status: int, fault: str = "", sent: int = 0) -> None:
            self.log.add(RequestRecord(LOG_ENDPOINT, {**logged, "bytes": str(sent)}, sim, mono, status, "", ip, fault))

        target = self._parse(request.match_info["agg"], request.match_info["stamp"], request.match_info["name"])
        inst_id, period = target if target else ("", None)
        status = self.faults.take_error(inst_id, period.label) if period else None
        if status is not None:
            record(status, "archive_error")
            return web.Response(status=status, text=_ERROR_BODY.get(status, "Error"), content_type="text/plain")
        if period is None or not self.exists(inst_id, period, sim):
            record(404)
            return web.Response(status=404, text="Not Found", content_type="text/plain")
        path, size = await asyncio.get_running_loop().run_in_executor(None, self.file, inst_id, period)
        start, stop = 0, size
        if range_header:
            got = _parse_range(range_header, size)
            if got is None:
                record(416)
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            start, stop = got
        truncated = self.faults.take_truncated(inst_id, period.label)
        send_stop = start + (stop - start) // 2 if truncated else stop
        status = 206 if range_header else 200
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/zip",
                                                          "Accept-Ranges": "bytes",
                                                          "Content-Length": str(send_stop - start)})
        if range_header:
            resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        sent = 0
        try:
            await resp.prepare(request)
            with open(path, "rb") as fh:
                fh.seek(start)
                sent = await self._send(resp, fh, send_stop - start)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            record(status, "archive_truncated" if truncated else "", sent)
            raise
        record(status, "archive_truncated" if truncated else "", sent)
        return resp

    async def _send(self, resp: web.StreamResponse, fh: Any, n: int) -> int:
        """Write ``n`` bytes from ``fh``, no faster than ``bandwidth_bps`` when it is set."""
        bps = self.bandwidth_bps
        chunk = 256 * 1024 if bps <= 0 else max(1024, min(256 * 1024, int(bps / 20)))
        t0 = time.monotonic()
        sent = 0
        while sent < n:
            data = fh.read(min(chunk, n - sent))
            if not data:
                break
            await resp.write(data)
            sent += len(data)
            if bps > 0:
                lag = sent / bps - (time.monotonic() - t0)
                if lag > 0:
                    await asyncio.sleep(lag)
        return sent

    def _parse(self, agg: str, stamp: str, name: str) -> tuple[str, Period] | None:
        """(instId, period) of a CDN path, or None when it names no possible file."""
        m = _FILE_RE.match(name)
        if agg not in ("daily", "monthly") or m is None:
            return None
        try:
            period = Period.parse(m["period"])
        except ValueError:
            return None
        if period.agg != agg or period.stamp != stamp:
            return None
        return m["inst"], period


_ERROR_BODY = {403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, stop) of ``bytes=N-`` or ``bytes=N-M``; None if unsatisfiable or malformed."""
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
    if m is None:
        return None
    start = int(m[1])
    stop = min(size, int(m[2]) + 1) if m[2] else size
    if start >= size or stop <= start:
        return None
    return start, stop


def _family(spec: InstrumentSpec) -> str:
    return f"{spec.asset.name}-{spec.quote_ccy}" if spec.is_swap else ""


def _mb(size: int) -> str:
    return f"{size / MIB:.4f}"


def _ms(params: dict[str, str], name: str) -> int:
    try:
        return int(params[name])
    except ValueError:
        raise _bad(name) from None


