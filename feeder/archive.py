"""OKX's official historical-data archive: listing, downloading and reading 1-minute candle files.

Why an archive client: OKX publishes every instrument's 1-minute candles as daily and monthly zip
files (``GET /api/v5/public/market-data-history``, module 2). One file holds a day (or a month)
that the REST ``history-candles`` endpoint serves 300 rows per request, 20 requests per 2 s:
a long history costs a few file downloads instead of hours of paging. The archive has its own
shape, and each of its quirks is handled here, in one place:

* **Dates are UTC+8.** A file dated ``2024-03-05`` covers ``[2024-03-04 16:00Z, 2024-03-05 16:00Z)``;
  a UTC day D needs the files dated D and D+1 (:func:`utc8_dates_of_utc_day`), and a monthly file
  covers the UTC+8 month. :class:`ArchiveFile` carries the UTC span it covers, so nothing
  downstream has to know.
* **Published at T+2, listed slowly.** The listing allows 5 requests per 2 s, 10 instruments per
  request, 20 days or 20 months per request (past that it silently answers the part nearest
  ``end``). :func:`list_candle_files` chunks and batches within those limits, uses one monthly
  listing for each month already fully published, and caches those listings (they never change), so
  a daily re-run over a long history lists only the current month.
* **What comes from the exchange is checked before it is used.** Every ``instId`` and file name of
  a listing is checked before it becomes part of a path (a refused entry is logged and skipped); a
  download is checked for size and zip CRC before it is renamed into place; every row of a file is
  checked (header by name, instrument, minute inside the file's span, finite numbers) and a file
  that fails is refused whole with :class:`ArchiveFormatError`, so its minutes are fetched from
  REST instead of being taken half on trust.
* **Downloads are resumable, retried, bounded and never doubled.** :func:`download_files` writes
  into ``.part`` files, resumes with ``Range``, retries throttling and server errors with
  exponential backoff, runs a few downloads at once, and holds a per-file ``flock`` so two
  Snakemake jobs never download the same file at the same time.

Records made from a file have the raw record format (docs/ARCHITECTURE.md) with ``source``
``"archive"`` and ``data`` identical to the REST candle row of the same minute, so cleaning treats
archive, REST and stream bars alike.
"""

from __future__ import annotations

import codecs
import datetime as dt
import fcntl
import json
import logging
import math
import os
import random
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import requests

from feeder.atomic import write_json, write_parquet
from feeder.identifiers import is_inst_id
from feeder.registry import DAY_MS, MINUTE_MS, day_bounds_ms
from feeder.rest import OkxApiError, OkxRestClient, OkxUnavailableError

log = logging.getLogger(__name__)

ARCHIVE_LISTING = "/api/v5/public/market-data-history"
#: The listing's module number of 1-minute candles (1 = trades, 3 = funding).
CANDLE_MODULE = "2"
#: The CSV header of a candle file; columns are read by these names, in any order.
CANDLE_HEADER = ("instrument_name", "open", "high", "low", "close", "vol", "vol_ccy", "vol_quote",
                 "open_time", "confirm")
#: A raw candle record's ``data``: REST ``history-candles`` order, so an archive bar and a REST bar
#: of the same minute are the same record apart from ``source`` and ``recv_ts``.
REST_ORDER = ("open_time", "open", "high", "low", "close", "vol", "vol_ccy", "vol_quote", "confirm")
NUMERIC_COLUMNS = ("open", "high", "low", "close", "vol", "vol_ccy", "vol_quote")

INST_TYPES = frozenset({"SPOT", "SWAP", "FUTURES", "OPTION"})
DAILY, MONTHLY = "daily", "monthly"
#: OKX's per-request limits of the listing (docs): items per list, days / months per range.
MAX_NAMES_PER_REQUEST = 10
MAX_DAYS_PER_REQUEST = 20
MAX_MONTHS_PER_REQUEST = 20
#: Files are published at T+2 (UTC+8 dates): a day (or a month) is complete 2 days after its end.
PUBLISH_DELAY_DAYS = 2
UTC8_OFFSET_MS = 8 * 3_600_000
#: A CSV member larger than this is refused unread (a monthly file of 1-minute bars is ~4 MB).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
LISTING_CACHE_VERSION = 1

_DAILY_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTHLY_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")
_FILENAME = re.compile(r"(?P<inst>.+)-candlesticks-(?P<period>[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?)\.zip")
_DECIMAL = r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"
_INTEGER = r"^[0-9]{1,16}$"


# --------------------------------------------------------------------------- types and errors


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive, as a listing announced it (checked: safe to use in paths)."""

    inst: str
    inst_type: str
    inst_family: str
    aggregation: str            # "daily" | "monthly"
    period: str                 # "2024-03-05" (UTC+8 date) or "2024-03" (UTC+8 month)
    filename: str
    url: str
    size_mb: float | None
    start_ms: int               # the UTC span the file covers, [start, end)
    end_ms: int


class ArchiveFormatError(ValueError):
    """A file is not what the archive's format promises; it is refused whole.

    Names the file, the line (0 = the zip itself), what was expected and what was found, so the
    message alone tells an operator what is wrong with which file.
    """

    def __init__(self, filename: str, *, line: int, expected: str, found: str) -> None:
        self.filename, self.line, self.expected, self.found = filename, line, expected, found
        where = f"line {line}" if line else "the zip"
        super().__init__(f"archive file {filename}, {where}: expected {expected}, found {found}; "
                         "the file is refused (none of its bars are used)")


class ArchiveUnavailableError(RuntimeError):
    """The archive's listing could not be obtained (after the REST client's retries)."""


@dataclass
class DownloadResult:
    """What :func:`download_files` did, per file and in total."""

    paths: dict[ArchiveFile, Path] = field(default_factory=dict)   # downloaded (or already here) and verified
    missing: dict[ArchiveFile, str] = field(default_factory=dict)  # 404 (after a retry): not published
    failed: dict[ArchiveFile, str] = field(default_factory=dict)   # gave up, with the reason
    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------- UTC+8 dates


def utc8_dates_of_utc_day(day: dt.date) -> tuple[dt.date, dt.date]:
    """The UTC+8 file dates a UTC day needs: ``(D, D+1)``.

    File D covers ``[D-1 16:00Z, D 16:00Z)``, so it holds the first 16 hours of UTC day D, and
    file D+1 holds its last 8.
    """
    return day, day + dt.timedelta(days=1)


def utc8_day_start_ms(day: dt.date) -> int:
    """00:00 UTC+8 of ``day`` (= 16:00 UTC of the day before) in epoch ms."""
    return day_bounds_ms(day)[0] - UTC8_OFFSET_MS


def utc8_date_of_ms(ms: int) -> dt.date:
    """The UTC+8 calendar date of an instant."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=(ms + UTC8_OFFSET_MS) // DAY_MS)


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def period_span_ms(*, aggregation: str, period: str) -> tuple[int, int]:
    """The UTC ``[start, end)`` a file of ``period`` covers (a UTC+8 day or a UTC+8 month)."""
    if aggregation == DAILY:
        day = dt.date.fromisoformat(period)
        return utc8_day_start_ms(day), utc8_day_start_ms(day + dt.timedelta(days=1))
    month = dt.date.fromisoformat(period + "-01")
    return utc8_day_start_ms(month), utc8_day_start_ms(_next_month(month))


def month_published(month: dt.date, *, now_ms: int) -> bool:
    """True when the whole UTC+8 ``month`` is published (its monthly file exists): T+2 after its end."""
    return now_ms >= utc8_day_start_ms(_next_month(month) + dt.timedelta(days=PUBLISH_DELAY_DAYS))


def last_published_day(*, now_ms: int) -> dt.date:
    """The newest UTC+8 date whose daily files are published at ``now_ms`` (T+2)."""
    return utc8_date_of_ms(now_ms) - dt.timedelta(days=PUBLISH_DELAY_DAYS)


def _valid_period(aggregation: str, period: object) -> bool:
    if not isinstance(period, str):
        return False
    pattern = _DAILY_PERIOD if aggregation == DAILY else _MONTHLY_PERIOD if aggregation == MONTHLY else None
    if pattern is None or not pattern.fullmatch(period):
        return False
    try:
        dt.date.fromisoformat(period if aggregation == DAILY else period + "-01")
    except ValueError:
        return False
    return True


def _expected_filename(inst: str, period: str) -> str:
    return f"{inst}-candlesticks-{period}.zip"


def file_problem(file: ArchiveFile) -> str | None:
    """Why ``file`` may not name a path (None when it may): the last check before a path is built."""
    if not is_inst_id(file.inst):
        return f"instId {file.inst[:100]!r} is not an OKX instrument id"
    if not _valid_period(file.aggregation, file.period):
        return f"period {file.period[:40]!r} is not a {file.aggregation or '?'} period"
    if file.filename != _expected_filename(file.inst, file.period):
        return f"file name {file.filename[:120]!r} is not {_expected_filename(file.inst, file.period)!r}"
    return None


# --------------------------------------------------------------------------- listing


def list_candle_files(client: OkxRestClient, *, inst_type: str, first: dt.date, last: dt.date,
                      names: Sequence[str] | None, now_ms: int, cache_dir: Path) -> list[ArchiveFile]:
    """The archive's 1-minute candle files covering UTC+8 dates ``first..last`` (inclusive).

    ``names`` are instrument families (SWAP, FUTURES, OPTION) or instIds (SPOT), as the listing
    takes them; ``None`` lists every instrument. Every month of the range that is fully published
    at ``now_ms`` is listed monthly (one file per instrument instead of ~30, and the listing is
    cached under ``cache_dir/listings/`` because it never changes); the other days are listed
    daily, up to the last published day (T+2). For ``names=None`` a month's names are first
    discovered with a daily ``ANY`` listing (the listing refuses ``ANY`` with monthly); an
    instrument that has daily files but no monthly file there keeps its daily files.

    Raises :class:`ArchiveUnavailableError` when the listing cannot be obtained.
    """
    if inst_type not in INST_TYPES:
        raise ValueError(f"inst_type {inst_type!r} is not one of {sorted(INST_TYPES)}")
    wanted = None if names is None else _checked_names(names)
    last = min(last, last_published_day(now_ms=now_ms))
    if first > last or wanted == []:
        return []
    months = _months(first, last)
    monthly = [m for m in months if month_published(m, now_ms=now_ms)]
    daily_days = [d for d in _days(first, last) if _month_start(d) not in monthly]
    found: list[ArchiveFile] = []
    for lo, hi in _day_runs(daily_days):
        found += _list_range(client, inst_type=inst_type, aggregation=DAILY, lo=lo, hi=hi, names=wanted)
    cache = ListingCache(Path(cache_dir) / "listings", inst_type=inst_type)
    found += _list_published_months(client, cache, inst_type=inst_type, months=monthly, names=wanted)
    return _unique(found)


def _checked_names(names: Sequence[str]) -> list[str]:
    """The names that may be sent to the listing (and cached); the others are refused with a warning."""
    kept: list[str] = []
    for name in names:
        if is_inst_id(name):
            if name not in kept:
                kept.append(name)
        else:
            log.warning("archive listing: refused instrument name %r: not of OKX's shape; not listed", str(name)[:100])
    return kept


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _months(first: dt.date, last: dt.date) -> list[dt.date]:
    months, month = [], _month_start(first)
    while month <= last:
        months.append(month)
        month = _next_month(month)
    return months


def _day_runs(days: Sequence[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days grouped into runs of at most MAX_DAYS_PER_REQUEST (the listing's limit)."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if runs and day == runs[-1][1] + dt.timedelta(days=1) and (day - runs[-1][0]).days < MAX_DAYS_PER_REQUEST:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _batches(names: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(names), MAX_NAMES_PER_REQUEST):
        yield list(names[i:i + MAX_NAMES_PER_REQUEST])


def _name_of(file: ArchiveFile) -> str:
    """The name a listing request uses for ``file``'s instrument: instId (SPOT) or instFamily."""
    return file.inst if file.inst_type == "SPOT" else file.inst_family


def _list_range(client: OkxRestClient, *, inst_type: str, aggregation: str, lo: dt.date, hi: dt.date,
                names: list[str] | None) -> list[ArchiveFile]:
    """One listing range (<= 20 days or <= 20 months), in batches of <= 10 names (or ``ANY``)."""
    found: list[ArchiveFile] = []
    for batch in ([["ANY"]] if names is None else _batches(names)):
        params = {"module": CANDLE_MODULE, "instType": inst_type, "dateAggrType": aggregation,
                  "begin": str(utc8_day_start_ms(lo)), "end": str(utc8_day_start_ms(hi)),
                  ("instIdList" if inst_type == "SPOT" else "instFamilyList"): ",".join(batch)}
        data = _get_listing(client, params)
        lo_period, hi_period = (lo.isoformat(), hi.isoformat()) if aggregation == DAILY else (
            lo.isoformat()[:7], hi.isoformat()[:7])
        for file in parse_listing(data, inst_type=inst_type, aggregation=aggregation):
            if not lo_period <= file.period <= hi_period:
                continue  # the listing answers the part of a too-long range nearest `end`; never used
            if batch != ["ANY"] and _name_of(file) not in batch:
                log.warning("archive listing: %s was not asked for (asked %s); ignored", file.filename, ",".join(batch))
                continue
            found.append(file)
    return found


def _get_listing(client: OkxRestClient, params: dict[str, str]) -> list[Any]:
    what = "Run the same command again later (finished downloads are kept), or set history.source: rest in " \
           "config.yaml to fetch these days from the REST candle endpoint instead."
    try:
        return client.get(ARCHIVE_LISTING, params)
    except OkxUnavailableError as exc:
        raise ArchiveUnavailableError(
            f"OKX's historical-data archive listing could not be obtained: {exc} {what}") from exc
    except OkxApiError as exc:
        raise ArchiveUnavailableError(
            f"OKX's historical-data archive refused the listing request {params} with code {exc.code}: "
            f"{exc.msg or '(no message)'}. {what}") from exc


def parse_listing(data: Any, *, inst_type: str, aggregation: str) -> list[ArchiveFile]:
    """The files of one listing answer that may be used; every other entry is logged and skipped.

    Checked, because these strings become paths and URLs: the instId is of OKX's shape, the file
    name is exactly ``{instId}-candlesticks-{period}.zip`` for the aggregation asked, the date
    (``dateTs``, or ``dataTs`` as OKX's docs spell it) is that period's UTC+8 start, the URL is
    http(s). The size is informational (checked loosely after the download).
    """
    files: list[ArchiveFile] = []
    for group in data if isinstance(data, list) else []:
        details = group.get("details") if isinstance(group, dict) else None
        for detail in details if isinstance(details, list) else []:
            if not isinstance(detail, dict):
                continue
            inst = detail.get("instId")
            if not is_inst_id(inst):
                log.warning("archive listing: refused instId %r: not an OKX instrument id; its files are not used",
                            str(inst)[:100])
                continue
            family = detail.get("instFamily") or ""
            if detail.get("instType", inst_type) != inst_type or (family and not is_inst_id(family)):
                log.warning("archive listing: refused %s (instType %r, instFamily %r; asked %s)", inst,
                            str(detail.get("instType"))[:20], str(family)[:100], inst_type)
                continue
            groups = detail.get("groupDetails")
            for entry in groups if isinstance(groups, list) else []:
                file = _file_of(entry, inst=inst, inst_type=inst_type, family=family, aggregation=aggregation)
                if file is not None:
                    files.append(file)
    return files


def _file_of(entry: Any, *, inst: str, inst_type: str, family: str, aggregation: str) -> ArchiveFile | None:
    if not isinstance(entry, dict):
        return None
    filename = entry.get("filename")
    match = _FILENAME.fullmatch(filename) if isinstance(filename, str) else None
    problem = ""
    if match is None or match["inst"] != inst or not _valid_period(aggregation, match["period"]):
        problem = f"not a {aggregation} candle file name of {inst} ({inst}-candlesticks-<period>.zip)"
    else:
        period = match["period"]
        start_ms, end_ms = period_span_ms(aggregation=aggregation, period=period)
        stamp = entry.get("dateTs", entry.get("dataTs"))
        url = entry.get("url")
        if stamp is not None and str(stamp) != str(start_ms):
            problem = f"its date {str(stamp)[:20]!r} is not {period}'s start in UTC+8 ({start_ms})"
        elif not isinstance(url, str) or not url.startswith(("https://", "http://")):
            problem = f"its url {str(url)[:100]!r} is not http(s)"
    if problem:
        log.warning("archive listing: refused file %r of %s: %s; not used", str(filename)[:120], inst, problem)
        return None
    try:
        size_mb: float | None = float(entry.get("sizeMB"))
        if not (math.isfinite(size_mb) and size_mb >= 0):  # type: ignore[arg-type]
            size_mb = None
    except (TypeError, ValueError):
        size_mb = None
    return ArchiveFile(inst=inst, inst_type=inst_type, inst_family=family, aggregation=aggregation, period=period,
                       filename=filename, url=url, size_mb=size_mb, start_ms=start_ms, end_ms=end_ms)


def _unique(files: Sequence[ArchiveFile]) -> list[ArchiveFile]:
    """One entry per (instrument, aggregation, period), ordered by instrument, then time."""
    seen: dict[tuple[str, str, str], ArchiveFile] = {}
    for file in files:
        seen.setdefault((file.inst, file.aggregation, file.period), file)
    return sorted(seen.values(), key=lambda f: (f.inst, f.start_ms, f.aggregation))


class ListingCache:
    """Listings of fully published months, one JSON file per month: they never change.

    ``names`` maps each listed name to the files it has that month (an empty list is a listed
    "none"); ``any`` says the names are every instrument of the month (an ``ANY`` listing was
    done). Updates are merged under a ``flock`` and written atomically, so concurrent jobs never
    lose each other's entries and a reader never sees half a file.
    """

    def __init__(self, root: Path, *, inst_type: str) -> None:
        self.root = Path(root) / inst_type

    def path(self, month: dt.date) -> Path:
        return self.root / f"{month.isoformat()[:7]}.json"

    def load(self, month: dt.date) -> dict[str, Any]:
        path = self.path(month)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            names = {name: [ArchiveFile(**item) for item in items] for name, items in payload["names"].items()}
            if payload.get("version") != LISTING_CACHE_VERSION:
                raise ValueError(f"version {payload.get('version')!r}")
            return {"names": names, "any": bool(payload.get("any"))}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("archive listing cache %s is unreadable (%s); listing that month again", path, exc)
        return {"names": {}, "any": False}

    def merge(self, month: dt.date, *, names: dict[str, list[ArchiveFile]], complete: bool) -> None:
        path = self.path(month)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.load(month)
            merged = {**current["names"], **names}
            write_json({"version": LISTING_CACHE_VERSION, "month": month.isoformat()[:7],
                        "any": current["any"] or complete,
                        "names": {name: [asdict(f) for f in files] for name, files in sorted(merged.items())}},
                       path)


def _list_published_months(client: OkxRestClient, cache: ListingCache, *, inst_type: str, months: list[dt.date],
                            names: list[str] | None) -> list[ArchiveFile]:
    """The files of fully published months: from the cache, else listed monthly (then cached).

    Uncached names are listed for up to 20 consecutive months per request. For ``names=None``
    each month's names are first discovered with daily ``ANY`` listings (``ANY`` works with daily
    listings only); a name with daily files but no monthly file keeps its daily files, which that
    listing has already given.
    """
    loaded = {m: cache.load(m) for m in months}
    known = {m: dict(loaded[m]["names"]) for m in months}
    daily: dict[dt.date, dict[str, list[ArchiveFile]]] = {}
    if names is None:
        for month in (m for m in months if not loaded[m]["any"]):
            daily[month] = _discover_month(client, inst_type=inst_type, month=month)
        todo = {m: [n for n in sorted(daily[m]) if n not in known[m]] for m in daily}
    else:
        todo = {m: [n for n in names if n not in known[m]] for m in months if not loaded[m]["any"]}
    fresh: dict[dt.date, dict[str, list[ArchiveFile]]] = {m: {n: [] for n in todo[m]} for m in todo}
    for chunk in _month_runs([m for m in months if todo.get(m)]):
        union = sorted({n for m in chunk for n in todo[m]})
        for file in _list_range(client, inst_type=inst_type, aggregation=MONTHLY, lo=chunk[0], hi=chunk[-1],
                                names=union):
            entry = fresh.get(dt.date.fromisoformat(file.period + "-01"), {})
            if _name_of(file) in entry:
                entry[_name_of(file)].append(file)
    for month, entries in fresh.items():
        for name, files in entries.items():
            monthly_insts = {f.inst for f in files}
            files += [f for f in daily.get(month, {}).get(name, []) if f.inst not in monthly_insts]
        cache.merge(month, names=entries, complete=names is None)
        known[month].update(entries)
    if names is None:
        return [f for m in months for files in known[m].values() for f in files]
    return [f for m in months for n in names for f in known[m].get(n, [])]


def _month_runs(months: Sequence[dt.date]) -> list[list[dt.date]]:
    """Consecutive months grouped into runs of at most MAX_MONTHS_PER_REQUEST (the listing's limit)."""
    runs: list[list[dt.date]] = []
    for month in months:
        if runs and month == _next_month(runs[-1][-1]) and len(runs[-1]) < MAX_MONTHS_PER_REQUEST:
            runs[-1].append(month)
        else:
            runs.append([month])
    return runs


def _discover_month(client: OkxRestClient, *, inst_type: str, month: dt.date) -> dict[str, list[ArchiveFile]]:
    """Every name with daily files in ``month`` (a daily ``ANY`` listing), with those files."""
    days = _days(month, _next_month(month) - dt.timedelta(days=1))
    daily: dict[str, list[ArchiveFile]] = {}
    for lo, hi in _day_runs(days):
        for file in _list_range(client, inst_type=inst_type, aggregation=DAILY, lo=lo, hi=hi, names=None):
            daily.setdefault(_name_of(file), []).append(file)
    return daily


# --------------------------------------------------------------------------- downloads


#: HTTP statuses worth asking again: CDN throttling (403/429) and server trouble.
RETRY_STATUSES = frozenset({403, 408, 425, 429, 500, 502, 503, 504})
_CHUNK_BYTES = 256 * 1024


def archive_path(*, cache_dir: Path, file: ArchiveFile) -> Path:
    """``cache_dir/files/{aggregation}/{period}/{filename}``; raises ValueError for a name that is not safe."""
    problem = file_problem(file)
    if problem:
        raise ValueError(f"refusing to store archive file {file.filename[:120]!r}: {problem}")
    return Path(cache_dir) / "files" / file.aggregation / file.period / file.filename


def size_plausible(size_bytes: int, size_mb: float | None) -> bool:
    """Whether a file of ``size_bytes`` matches a listing's ``sizeMB``.

    Loose on purpose: OKX does not say whether its MB is 10^6 or 2^20 bytes, and rounds it; a
    truncated download is caught here most of the time, and always by the zip's CRC check.
    """
    if size_mb is None:
        return True
    return any(abs(size_bytes - size_mb * unit) <= max(0.05 * size_mb * unit, 10_000) for unit in (1e6, 2**20))


def zip_problem(path: Path) -> str | None:
    """None when ``path`` is a complete zip whose members pass their CRC check, else what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, ValueError,
            RuntimeError) as exc:
        return f"not a complete zip ({exc})"
    return f"member {bad[:100]!r} fails its CRC check" if bad else None


class _Stats:
    """Counters shared by the download threads (for the result and the progress line)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def add(self, *, requests: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.bytes += nbytes


@dataclass
class _Outcome:
    kind: str      # "ok" | "missing" | "failed"
    detail: str = ""


def download_files(files: Sequence[ArchiveFile], *, cache_dir: Path, concurrency: int = 4, ca_file: str | None = None,
                   timeout_s: float = 30, retries: int = 5,
                   progress: Callable[[str], None] | None = log.info,
                   backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0,
                   progress_every_s: float = 5.0) -> DownloadResult:
    """Download ``files`` into ``cache_dir/files/...`` (see :func:`archive_path`), verified.

    A file already there was verified when it got there and is not downloaded again. Each
    download goes into a ``.part`` file (resumed with ``Range`` after a cut), is checked
    (:func:`size_plausible`, :func:`zip_problem`; a bad one is deleted and downloaded again) and
    then renamed into place. A per-file ``flock`` makes a second job wait for the first one's
    download instead of fetching the same bytes. 403/429/5xx answers, connection errors and bad
    downloads are retried ``retries`` times with exponential backoff and jitter; a 404 is asked
    once more (a CDN may lag the listing), then reported as ``missing``. ``progress`` gets a line
    every ``progress_every_s`` and at the end.
    """
    started = time.monotonic()
    result = DownloadResult()
    stats = _Stats()
    todo: list[tuple[ArchiveFile, Path]] = []
    seen: set[Path] = set()
    for file in files:
        try:
            path = archive_path(cache_dir=cache_dir, file=file)
        except ValueError as exc:
            result.failed[file] = str(exc)
            continue
        if path in seen:
            continue
        seen.add(path)
        if path.exists():
            result.paths[file] = path
        else:
            todo.append((file, path))
    already = len(result.paths)
    sessions: list[requests.Session] = []
    local = threading.local()
    sessions_lock = threading.Lock()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["User-Agent"] = "crypto-data-feeder/0.1"
            with sessions_lock:
                sessions.append(local.session)
        return local.session

    def fetch(file: ArchiveFile, path: Path) -> _Outcome:
        return _fetch_file(file, path, session=session, verify=ca_file or True, timeout_s=timeout_s,
                           retries=retries, backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s, stats=stats)

    expected_total = sum((f.size_mb or 0) * 2**20 for f, _ in todo)
    done_bytes_expected = 0.0
    last_report = started
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="archive-dl") as pool:
            pending: dict[Future[_Outcome], tuple[ArchiveFile, Path]] = {
                pool.submit(fetch, file, path): (file, path) for file, path in todo}
            while pending:
                finished, _ = wait(pending, timeout=progress_every_s, return_when=FIRST_COMPLETED)
                for future in finished:
                    file, path = pending.pop(future)
                    outcome = future.result()
                    done_bytes_expected += (file.size_mb or 0) * 2**20
                    if outcome.kind == "ok":
                        result.paths[file] = path
                    elif outcome.kind == "missing":
                        result.missing[file] = outcome.detail
                    else:
                        result.failed[file] = outcome.detail
                now = time.monotonic()
                if progress and pending and now - last_report >= progress_every_s:
                    last_report = now
                    progress(_progress_line(result, total=len(todo) + already, already=already, stats=stats,
                                            elapsed=now - started, left_bytes=expected_total - done_bytes_expected,
                                            left_files=len(pending)))
    finally:
        for s in sessions:
            s.close()
    result.requests, result.bytes, result.seconds = stats.requests, stats.bytes, time.monotonic() - started
    if progress:
        progress(_progress_line(result, total=len(todo) + already, already=already, stats=stats,
                                elapsed=result.seconds, left_bytes=0, left_files=0))
    return result


def _progress_line(result: DownloadResult, *, total: int, already: int, stats: _Stats, elapsed: float,
                   left_bytes: float, left_files: int) -> str:
    done = len(result.paths) + len(result.missing) + len(result.failed)
    mb = stats.bytes / 1e6
    rate = mb / elapsed if elapsed > 0 else 0.0
    if left_files == 0:
        eta = "done"
    elif left_bytes > 0 and rate > 0:
        eta = f"ETA {left_bytes / 1e6 / rate:.0f} s"
    else:
        fetched = done - already
        eta = f"ETA {elapsed / fetched * left_files:.0f} s" if fetched > 0 else "ETA unknown"
    extra = "".join(f", {n} {what}" for n, what in ((already, "already here"), (len(result.missing), "missing"),
                                                     (len(result.failed), "failed")) if n)
    return f"archive downloads: {done}/{total} files{extra}, {mb:.1f} MB in {elapsed:.0f} s, {rate:.2f} MB/s, {eta}"


def _fetch_file(file: ArchiveFile, path: Path, *, session: Callable[[], requests.Session], verify: str | bool,
                timeout_s: float, retries: int, backoff_base_s: float, backoff_cap_s: float,
                stats: _Stats) -> _Outcome:
    """Download one file under its lock, retrying; never leaves anything but a verified file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job downloading it: wait, then find it done
        if path.exists():
            return _Outcome("ok")
        part = path.with_name(path.name + ".part")
        not_found = 0
        problem = ""
        for attempt in range(retries + 1):
            kind, problem = _attempt(file, part, session=session(), verify=verify, timeout_s=timeout_s, stats=stats)
            if kind == "ok":
                os.replace(part, path)
                return _Outcome("ok")
            if kind == "fatal":
                return _Outcome("failed", f"{file.url}: {problem}; not retried")
            if kind == "not_found":
                not_found += 1
                if not_found >= 2:
                    return _Outcome("missing", f"{file.url}: HTTP 404 twice: not published (the listing named it)")
            if attempt < retries:
                pause = random.uniform(0.5, 1.0) * min(backoff_cap_s, backoff_base_s * 2**attempt)
                log.warning("archive %s: %s; retry %d/%d in %.2fs", file.filename, problem, attempt + 1, retries, pause)
                time.sleep(pause)
        return _Outcome("failed", f"{file.url}: {problem} (gave up after {retries} retries)")


def _attempt(file: ArchiveFile, part: Path, *, session: requests.Session, verify: str | bool, timeout_s: float,
             stats: _Stats) -> tuple[str, str]:
    """One request for ``file`` into ``part``: ("ok"|"retry"|"not_found"|"fatal", problem)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with session.get(file.url, headers=headers, stream=True, timeout=timeout_s, verify=verify) as resp:
            stats.add(requests=1)
            status = resp.status_code
            if status == 404:
                return "not_found", "HTTP 404"
            if status == 416:  # the part is complete or longer than the file: start again
                part.unlink(missing_ok=True)
                return "retry", "HTTP 416 for a resumed download; starting over"
            if status in RETRY_STATUSES:
                return "retry", f"HTTP {status}"
            if status not in (200, 206):
                return "fatal", f"HTTP {status}"
            if status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                part.unlink(missing_ok=True)
                return "retry", f"HTTP 206 with Content-Range {resp.headers.get('Content-Range')!r} for bytes={have}-"
            length = resp.headers.get("Content-Length")
            got = 0
            with open(part, "ab" if status == 206 else "wb") as out:
                for chunk in resp.iter_content(_CHUNK_BYTES):
                    out.write(chunk)
                    got += len(chunk)
                    stats.add(nbytes=len(chunk))
            if length is not None and length.isdigit() and got < int(length):
                return "retry", f"cut off after {got} of {length} bytes (resumed next time)"
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as exc:
        return "retry", f"connection problem ({str(exc)[:200]}); resumed next time"
    problem = None
    size = part.stat().st_size
    if not size_plausible(size, file.size_mb):
        problem = f"{size} bytes, but the listing says {file.size_mb} MB"
    else:
        problem = zip_problem(part)
    if problem:
        part.unlink(missing_ok=True)
        return "retry", f"bad download ({problem}); deleted, downloading again"
    return "ok", ""


# --------------------------------------------------------------------------- reading files


def read_candle_file(path: Path, *, file: ArchiveFile, recv_ts: int) -> list[dict[str, Any]]:
    """The raw candle records of a downloaded file, every row checked; :class:`ArchiveFormatError` if any fails.

    ``recv_ts`` is when the file was downloaded (ms). ``data`` holds the file's strings verbatim
    in REST candle order, so the record equals the REST record of the same minute.
    """
    return _records(read_candle_frame(path, file=file), inst=file.inst, recv_ts=recv_ts)


def _records(frame: pl.DataFrame, *, inst: str, recv_ts: int) -> list[dict[str, Any]]:
    columns = [frame[c].to_list() for c in REST_ORDER]  # column lists + zip: ~3x faster than iter_rows
    return [{"v": 1, "source": "archive", "channel": "candle1m", "inst": inst, "ts": ts, "recv_ts": recv_ts,
             "data": list(row)}
            for ts, row in zip(frame["_ts"].to_list(), zip(*columns))]


def read_candle_frame(path: Path, *, file: ArchiveFile) -> pl.DataFrame:
    """The checked rows of a candle file: the CSV's columns (strings) in REST order plus ``_ts`` (int), by time.

    Columnar (polars) because a monthly file has ~43,000 rows and every row is checked.
    """
    name = file.filename
    raw = _member_bytes(Path(path), name=name)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveFormatError(name, line=raw[:exc.start].count(b"\n") + 1, expected="UTF-8 text",
                                 found=f"byte {raw[exc.start:exc.start + 1]!r}") from None
    header_line, _, body = raw.partition(b"\n")
    columns = [c.strip() for c in header_line.decode("utf-8").strip().split(",")]
    if sorted(columns) != sorted(CANDLE_HEADER):
        raise ArchiveFormatError(name, line=1, expected=f"the header {','.join(CANDLE_HEADER)} (any order)",
                                 found=repr(header_line[:300].decode("utf-8")))
    if not body.strip():
        return pl.DataFrame({c: [] for c in ("_ts", *REST_ORDER)},
                            schema={"_ts": pl.Int64, **{c: pl.String for c in REST_ORDER}})
    try:
        frame = pl.read_csv(body, has_header=False, schema={c: pl.String for c in columns}, quote_char='"')
    except pl.exceptions.PolarsError as exc:
        line, found = _ragged_line(body, len(columns))
        raise ArchiveFormatError(name, line=line, expected=f"{len(columns)} comma-separated fields",
                                 found=found or str(exc)[:200]) from None
    if frame.null_count().sum_horizontal().item():  # an empty field, or a short or empty line: which?
        line, found = _ragged_line(body, len(columns))
        if line:
            raise ArchiveFormatError(name, line=line, expected=f"{len(columns)} comma-separated fields", found=found)
    return _checked(frame.with_row_index("_row"), file=file)


def _member_bytes(path: Path, *, name: str) -> bytes:
    """The bytes of the zip's only member (a file of any other shape is refused)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) != 1:
                raise ArchiveFormatError(name, line=0, expected="exactly one CSV member",
                                         found=f"{len(members)} members {[m.filename[:80] for m in members[:5]]}")
            member = members[0]
            bad = ("/" in member.filename or "\\" in member.filename or "\0" in member.filename
                   or member.filename.startswith(".") or ".." in member.filename or member.is_dir())
            if bad or not member.filename.endswith(".csv"):
                raise ArchiveFormatError(name, line=0, expected="one member named <name>.csv without separators",
                                         found=repr(member.filename[:120]))
            if member.file_size > MAX_MEMBER_BYTES:
                raise ArchiveFormatError(name, line=0, expected=f"a CSV of at most {MAX_MEMBER_BYTES} bytes",
                                         found=f"{member.file_size} bytes")
            return archive.read(member)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ArchiveFormatError(name, line=0, expected="a readable zip", found=str(exc)[:200]) from None


def _ragged_line(body: bytes, width: int) -> tuple[int, str]:
    """The first line of ``body`` (numbered as in the file) without ``width`` fields, and what it holds."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the last line's "\n"
    for number, line in enumerate(lines, 2):
        fields = line.rstrip(b"\r").split(b",")
        if not line.strip():
            return number, "an empty line"
        if len(fields) != width:
            return number, f"{len(fields)} fields: {line[:200].decode('utf-8', 'replace')!r}"
    return 0, ""


def _checked(frame: pl.DataFrame, *, file: ArchiveFile) -> pl.DataFrame:
    """``frame`` with every rule checked, or the first broken row as :class:`ArchiveFormatError`."""
    name = file.filename
    ts = pl.col("open_time").str.strip_chars()
    rules: list[tuple[str, pl.Expr]] = [
        (f"instrument_name {file.inst}", pl.col("instrument_name").str.strip_chars() == file.inst),
        ("open_time as integer epoch ms", ts.str.contains(_INTEGER)),
        ("confirm 0 or 1", pl.col("confirm").str.strip_chars().is_in(["0", "1"])),
        *((f"{c} as a finite decimal number", pl.col(c).str.strip_chars().str.contains(_DECIMAL))
          for c in NUMERIC_COLUMNS),
    ]
    for expected, ok in rules:
        _raise_first(frame, ok.fill_null(False), name=name, expected=expected)
    frame = frame.with_columns(_ts=ts.cast(pl.Int64))
    _raise_first(frame, pl.col("_ts") % MINUTE_MS == 0, name=name, expected="open_time on a minute boundary",
                 column="open_time")
    span = f"open_time inside the file's span [{file.start_ms}, {file.end_ms}) ({file.period} UTC+8)"
    _raise_first(frame, pl.col("_ts").is_between(file.start_ms, file.end_ms, closed="left"), name=name,
                 expected=span, column="open_time")
    _raise_first(frame, pl.col("_ts").is_first_distinct(), name=name, expected="one row per minute",
                 column="open_time")
    return frame.sort("_ts").select("_ts", *REST_ORDER)


def _raise_first(frame: pl.DataFrame, ok: pl.Expr, *, name: str, expected: str, column: str | None = None) -> None:
    bad = frame.filter(~ok).head(1)
    if bad.height:
        row = bad.row(0, named=True)
        shown = {k: v for k, v in row.items() if not k.startswith("_")}
        found = repr(row[column]) if column else ",".join(
            "" if shown[c] is None else str(shown[c]) for c in CANDLE_HEADER)
        raise ArchiveFormatError(name, line=int(row["_row"]) + 2, expected=expected, found=found[:300])


# --------------------------------------------------------------------------- one UTC day


def archive_minutes(*, files: Sequence[ArchiveFile], paths: dict[ArchiveFile, Path], day: dt.date,
                    recv_ts: int) -> tuple[list[dict[str, Any]], dict[str, list[list[int]]], dict[str, str]]:
    """What the archive gives for one UTC ``day``: ``(records, covered, refused)``.

    ``records``: the day's raw records from the given files (a monthly file or a UTC+8 daily file
    covers more than the day; only the day's minutes are kept), one per instrument and minute,
    sorted. ``covered``: per instrument, the merged ``[start, end)`` ms ranges the archive
    answered for (each read file's span cut to the day), minus the minutes whose bar is not
    confirmed (``confirm`` "0": cleaning drops those, so REST must be asked for them): inside a
    covered range, a minute without a record had no trade. ``refused``: filename -> the
    :class:`ArchiveFormatError` message; a refused file covers nothing, so the caller asks REST
    for its minutes. A file missing from ``paths`` (not downloaded) covers nothing either.
    """
    day_lo, day_hi = day_bounds_ms(day)
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    spans: dict[str, list[tuple[int, int]]] = {}
    holes: dict[str, list[int]] = {}
    refused: dict[str, str] = {}
    for file in sorted(files, key=lambda f: (f.inst, f.start_ms, f.aggregation)):
        lo, hi = max(file.start_ms, day_lo), min(file.end_ms, day_hi)
        if lo >= hi or file not in paths:
            continue
        try:
            frame = checked_frame_between(paths[file], file=file, lo=lo, hi=hi)
        except ArchiveFormatError as exc:
            log.warning("%s", exc)
            refused[file.filename] = str(exc)
            continue
        spans.setdefault(file.inst, []).append((lo, hi))
        holes.setdefault(file.inst, []).extend(frame.filter(pl.col("confirm") != "1")["_ts"].to_list())
        for record in _records(frame, inst=file.inst, recv_ts=recv_ts):
            key = (file.inst, record["ts"])
            if key not in seen:
                seen.add(key)
                records.append(record)
    records.sort(key=lambda r: (r["inst"], r["ts"]))
    covered = {inst: _minus_minutes(_merge(ranges), holes.get(inst, [])) for inst, ranges in sorted(spans.items())}
    return records, {inst: ranges for inst, ranges in covered.items() if ranges}, refused


def checked_frame_between(path: Path, *, file: ArchiveFile, lo: int, hi: int) -> pl.DataFrame:
    """The rows of ``file`` with ``lo <= open_time < hi``, checked (:func:`read_candle_frame`).

    Why a cache: a monthly file serves ~30 UTC days, each built by its own job; parsing and
    checking its ~44,000 rows every time cost ~0.1 s per file and day (5 s per day for 50
    members). The checked frame is kept once as ``<file>.zip.parquet`` beside the zip (written
    atomically, only after every check passed), and later days read just their rows from it. A
    refused file has no such copy: it is checked (and refused) again each time.
    """
    checked = path.with_name(path.name + ".parquet")
    if not checked.exists():
        write_parquet(read_candle_frame(path, file=file), checked)
    return pl.scan_parquet(checked).filter(pl.col("_ts").is_between(lo, hi, closed="left")).collect()


def _merge(ranges: Sequence[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def _minus_minutes(ranges: list[list[int]], minutes: Sequence[int]) -> list[list[int]]:
    """``ranges`` without the one-minute slots starting at ``minutes``."""
    out = [list(r) for r in ranges]
    for minute in sorted(set(minutes)):
        for i, (lo, hi) in enumerate(out):
            if lo <= minute < hi:
                out[i:i + 1] = [r for r in ([lo, minute], [minute + MINUTE_MS, hi]) if r[0] < r[1]]
                break
    return out



# --------------------------------------------------------------------------- the archive stage


class ArchiveIncomplete(RuntimeError):
    """Some archive files could not be downloaded (throttled, server errors, truncated after every
    retry). Nothing is written for the day; files already downloaded stay in the cache."""


def listing_names(instruments: Sequence[str], *, inst_type: str) -> list[str]:
    """What the listing takes for ``instruments``: instIds for SPOT, instrument families otherwise
    (``BTC-USDT-SWAP`` -> ``BTC-USDT``; a FUTURES ``BTC-USD-240329`` -> ``BTC-USD``)."""
    if inst_type == "SPOT":
        return list(dict.fromkeys(instruments))
    return list(dict.fromkeys(inst.rsplit("-", 1)[0] for inst in instruments))


def day_files(client: OkxRestClient, *, exchange: dict[str, Any], inst_type: str, day: dt.date,
              instruments: Sequence[str], cache_dir: Path, concurrency: int, now_ms: int,
              retries: int = 5, backoff_base_s: float = 0.5) -> tuple[list[ArchiveFile], DownloadResult]:
    """The archive files covering UTC ``day`` for ``instruments`` (the UTC+8 dates D and D+1:
    their daily files, or their months' files), downloaded and verified in ``cache_dir``.

    Raises :class:`ArchiveIncomplete` when a file could not be downloaded after its retries: a
    re-run downloads only what is still missing. A file the archive lists but the CDN does not
    have (404) is only reported: the minutes it would cover are asked of REST.
    """
    first, last = utc8_dates_of_utc_day(day)
    wanted = set(instruments)
    listed = list_candle_files(client, inst_type=inst_type, first=first, last=last,
                               names=listing_names(instruments, inst_type=inst_type), now_ms=now_ms,
                               cache_dir=cache_dir)
    files = [f for f in listed if f.inst in wanted and f.start_ms < day_bounds_ms(day)[1]
             and f.end_ms > day_bounds_ms(day)[0]]
    result = download_files(files, cache_dir=cache_dir, concurrency=concurrency, ca_file=exchange.get("ca_file"),
                            timeout_s=float(exchange.get("timeout_s", 30)) * 3, retries=retries,
                            backoff_base_s=backoff_base_s)
    for file, why in sorted(result.missing.items(), key=lambda item: item[0].filename):
        log.warning("archive %s: %s is listed but not served (%s): its minutes are asked of REST",
                    day, file.filename, why)
    if result.failed:
        lines = [f"  {file.filename}: {why}" for file, why in sorted(result.failed.items(),
                                                                     key=lambda item: item[0].filename)]
        raise ArchiveIncomplete(
            f"archive {day}: {len(result.failed)} file(s) could not be downloaded, so the day's archive shard is "
            "not written:\n" + "\n".join(lines) + f"\nThe {len(result.paths)} files downloaded are kept in "
            f"{cache_dir}. Run the same command again later: only what is missing is downloaded (or set "
            "history.source: rest in config.yaml to fetch these days from REST only).")
    return files, result


def day_bars(client: OkxRestClient, *, exchange: dict[str, Any], inst_type: str, day: dt.date,
             instruments: Sequence[str], cache_dir: Path, concurrency: int) -> pl.DataFrame:
    """The confirmed archive bars of UTC ``day`` for ``instruments``: (inst, ts, vol_quote as the
    file's string). What the universe needs to rank an instrument OKX no longer lists."""
    files, result = day_files(client, exchange=exchange, inst_type=inst_type, day=day, instruments=instruments,
                              cache_dir=cache_dir, concurrency=concurrency, now_ms=client.server_time_ms())
    records, _, _ = archive_minutes(files=files, paths=result.paths, day=day, recv_ts=0)
    return pl.DataFrame(
        [(r["inst"], r["ts"], r["data"][7]) for r in records if r["data"][8] == "1"],
        schema={"inst": pl.Utf8, "ts": pl.Int64, "vol_quote": pl.Utf8}, orient="row")


def listed_instruments(client: OkxRestClient, *, inst_type: str, first: dt.date, last: dt.date,
                       cache_dir: Path) -> dict[str, str]:
    """Every instrument the archive has a daily file for on UTC+8 dates ``first..last``: instId ->
    instrument family ("" for SPOT). Delisted instruments included: what the universe needs to
    see instruments OKX's instrument list no longer holds.

    One ``ANY`` daily listing per call (a day's file names are all one request needs); dates
    already published are cached under ``cache_dir/listings/<instType>/days/`` (a published
    day's files do not change). Dates not published yet (T+2) have no files to list.
    """
    root = Path(cache_dir) / "listings" / inst_type / "days"
    found: dict[str, str] = {}
    todo: list[dt.date] = []
    newest = last_published_day(now_ms=client.server_time_ms())
    for day in _days(first, min(last, newest)):
        path = root / f"{day.isoformat()}.json"
        if path.exists():
            found.update(json.loads(path.read_text()))
        else:
            todo.append(day)
    for lo, hi in _day_runs(todo):
        files = _list_range(client, inst_type=inst_type, aggregation=DAILY, lo=lo, hi=hi, names=None)
        for day in _days(lo, hi):
            on_day = {f.inst: f.inst_family for f in files if f.period == day.isoformat()}
            write_json(on_day, root / f"{day.isoformat()}.json")
            found.update(on_day)
    return dict(sorted(found.items()))


def run_archive(*, exchange: dict[str, Any], day: dt.date, universe_path: Path, inst_type: str, cache_dir: Path,
                concurrency: int, out_path: Path, summary_path: Path, retries: int = 5,
                backoff_base_s: float = 0.5) -> dict[str, Any]:
    """Workflow entry point: the archive's bars of ``day`` for the day's universe members -> a raw
    shard (source ``"archive"``) and a summary.

    The summary says per member which ranges of the day the archive settled (``covered``: the
    spans of the files read, minus minutes whose bar is unconfirmed) and how many bars it gave;
    and which files were missing at the CDN or refused as of an unknown layout (their minutes are
    asked of REST by the backfill, never taken half on trust). Raises :class:`ArchiveIncomplete`
    (nothing written) when downloads kept failing, :class:`ArchiveUnavailableError` when the
    listing could not be obtained.
    """
    from feeder.shards import write_shard_atomically
    from feeder.universe import members

    instruments = members(pl.read_parquet(universe_path))
    started = time.monotonic()
    with OkxRestClient.from_exchange(exchange) as client:
        now_ms = client.server_time_ms()
        files, result = day_files(client, exchange=exchange, inst_type=inst_type, day=day, instruments=instruments,
                                  cache_dir=cache_dir, concurrency=concurrency, now_ms=now_ms, retries=retries,
                                  backoff_base_s=backoff_base_s)
        listing_requests = client.requests_sent
    records, covered, refused = archive_minutes(files=files, paths=result.paths, day=day, recv_ts=now_ms)
    bars: dict[str, int] = {}
    for record in records:
        bars[record["inst"]] = bars.get(record["inst"], 0) + 1
    write_shard_atomically(out_path, records)
    summary = {
        "day": day.isoformat(),
        "instruments": {inst: {"covered": covered.get(inst, []), "bars": bars.get(inst, 0),
                               "files": sorted(f.filename for f in files if f.inst == inst)}
                        for inst in instruments},
        "missing_at_cdn": sorted(f.filename for f in result.missing),
        "refused": refused,
        "listing_requests": listing_requests,
        "download_requests": result.requests,
        "bytes_downloaded": result.bytes,
        "seconds": round(time.monotonic() - started, 3),
    }
    write_json(summary, summary_path)
    settled = sum(hi - lo for ranges in covered.values() for lo, hi in ranges) // MINUTE_MS
    log.info("archive %s: %d bars for %d members from %d files (%d minutes settled, %d files missing, %d refused); "
             "%d listing requests, %d downloads, %.1f MB", day, len(records), len(instruments), len(files), settled,
             len(result.missing), len(refused), listing_requests, result.requests, result.bytes / 1e6)
    return summary
