"""Export resampled bars as a Qlib provider directory (calendars, instruments, feature bins).

Qlib 0.9.7's on-disk format (STACK-FACTS.md) and the traps this module avoids on purpose:

* Calendars are 24/7 and complete: every slot from the first built day's 00:00 to the last slot
  of the last day, not the union of observed timestamps (Qlib's dump_bin does that, and a minute
  where no symbol traded would vanish, making the bars around it neighbours).
* Every frequency gets its own calendar and bins; a missing one would be resampled by Qlib
  through a stock exchange's trading sessions.
* Instrument spans carry full datetimes (``... 23:59:00``): a date-only end clips intraday
  queries at 00:00 of the last day.
* ``features/<inst lowercase>/<field>.<freq>.bin`` is little-endian float32: element 0 is the
  index of the instrument's first bar in that calendar, then one value per slot through its
  last bar, NaN where there is no bar. ``factor`` is 1.0 where a bar exists (no adjustments
  in crypto), so Qlib's adjusted-price logic sees real bars and NaN holes alike.

Publishing is atomic and versioned: each export is built in ``<qlib_dir>.versions/<id>/`` and
``qlib_dir`` is a symbolic link switched to it in one ``rename``. A reader (a notebook, a running
backtest) never sees a half-written provider, and one that resolved the link keeps a consistent
version: the previous version is kept until the next publish.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feeder.resample import BARS_SCHEMA, MINUTE_MS, freq_minutes

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FIELDS",
    "TRADE_FIELDS",
    "calendar_frame",
    "decode_feature",
    "dense_series",
    "encode_feature",
    "export_from_workflow",
    "export_qlib",
    "membership_spans",
]

DEFAULT_FIELDS: tuple[str, ...] = (
    "open", "high", "low", "close", "volume", "amount", "vwap", "factor", "coverage", "funding_rate", "open_interest",
)  # fmt: skip
#: Exported only when the `trades` channel is collected (otherwise they would be all NaN).
TRADE_FIELDS: tuple[str, ...] = ("n_trades", "taker_buy_volume")
DAY_FORMAT = "%Y-%m-%d"
INTRADAY_FORMAT = "%Y-%m-%d %H:%M:%S"
SPAN_START = dt.time(0, 0)
SPAN_END = dt.time(23, 59)
# float32 represents every integer up to 2**24 exactly: the start index must survive the trip.
MAX_SLOTS = 2**24
# Instruments exported per pass over a frequency's bar files (bounds peak memory).
INSTRUMENTS_PER_PASS = 16
_MARKET_RE = re.compile(r"^[A-Za-z0-9_]+$")


# --------------------------------------------------------------------------------------------
# The bin format (pure)
# --------------------------------------------------------------------------------------------


def encode_feature(start_index: int, values: np.ndarray) -> bytes:
    """Qlib feature bin bytes: little-endian float32 ``[start_index, values...]``."""
    if not 0 <= start_index < MAX_SLOTS:
        raise ValueError(f"start index {start_index} not representable exactly as float32")
    head = np.asarray([start_index], dtype="<f4")
    return head.tobytes() + np.asarray(values).astype("<f4", copy=False).tobytes()


def decode_feature(payload: bytes) -> tuple[int, np.ndarray]:
    """Inverse of encode_feature (what Qlib's FileFeatureStorage reads)."""
    arr = np.frombuffer(payload, dtype="<f4")
    return int(arr[0]), arr[1:]


def dense_series(slots: np.ndarray, values: np.ndarray) -> tuple[int, np.ndarray]:
    """Sparse (slot index, value) pairs → (first slot, float32 array through the last, NaN holes)."""
    slots = np.asarray(slots, dtype=np.int64)
    if slots.size == 0:
        raise ValueError("dense_series: no bars")
    first = int(slots.min())
    dense = np.full(int(slots.max()) - first + 1, np.nan, dtype=np.float32)
    dense[slots - first] = np.asarray(values, dtype=np.float32)
    return first, dense


# --------------------------------------------------------------------------------------------
# Calendars, spans
# --------------------------------------------------------------------------------------------


def _epoch_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86_400_000


def calendar_frame(first_day: dt.date, last_day: dt.date, freq: str) -> pl.DataFrame:
    """Every slot of ``freq`` from first_day 00:00 through the last slot of last_day (24/7).

    Column ``slot``: the text Qlib reads (``%Y-%m-%d`` for day, else ``%Y-%m-%d %H:%M:%S``).
    """
    minutes = freq_minutes(freq)
    start = dt.datetime.combine(first_day, dt.time())
    end = dt.datetime.combine(last_day, dt.time()) + dt.timedelta(days=1) - dt.timedelta(minutes=minutes)
    n_slots = int((end - start) / dt.timedelta(minutes=minutes)) + 1
    if n_slots > MAX_SLOTS:
        raise ValueError(f"{freq} calendar of {n_slots} slots exceeds float32's exact integer range")
    slots = pl.datetime_range(start, end, dt.timedelta(minutes=minutes), time_unit="ms", eager=True)
    fmt = DAY_FORMAT if freq == "day" else INTRADAY_FORMAT
    return pl.DataFrame({"slot": slots.dt.strftime(fmt)})


def _span_text(day: pl.Expr, time: dt.time) -> pl.Expr:
    return day.dt.strftime(DAY_FORMAT) + pl.lit(" " + time.strftime("%H:%M:%S"))


def membership_spans(membership: pl.DataFrame, first_day: dt.date, last_day: dt.date) -> pl.DataFrame:
    """One (inst, start, end) per contiguous run of member days inside [first_day, last_day].

    Spans are point-in-time universe membership: Qlib's ``D.instruments(market)`` then selects an
    instrument only on the days it was a member. start = run's first day 00:00:00, end = run's
    last day 23:59:00 (full datetimes, so intraday queries are not clipped at midnight).
    """
    members = (
        membership.lazy()
        .filter(pl.col("member").fill_null(False))
        .select(pl.col("inst").cast(pl.Utf8), pl.col("day").cast(pl.Date))
        .filter(pl.col("day").is_between(first_day, last_day))
        .unique()
        .sort("inst", "day")
        # consecutive days minus their rank are constant within a run
        .with_columns(
            (pl.col("day").cast(pl.Int64) - pl.int_range(pl.len()).over("inst")).alias("run"),
        )
        .group_by("inst", "run")
        .agg(pl.col("day").min().alias("first"), pl.col("day").max().alias("last"))
        .sort("inst", "first")
        .select(
            "inst",
            _span_text(pl.col("first"), SPAN_START).alias("start"),
            _span_text(pl.col("last"), SPAN_END).alias("end"),
        )
    )
    return members.collect()


def _write_tsv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path, include_header=False, separator="\t", quote_style="never")


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _instrument_names(paths: Sequence[Path]) -> list[str]:
    """Sorted instrument names in bar files (reads only the dictionary-encoded inst column)."""
    if not paths:
        return []
    names = pl.scan_parquet([Path(p) for p in paths]).select(pl.col("inst").cast(pl.Utf8).unique()).collect()
    return names.to_series().drop_nulls().sort().to_list()


def _load_bars(
    paths: Sequence[Path], names: list[str], fields: Sequence[str], start_ms: int, n_slots: int, step_ms: int
) -> tuple[pl.DataFrame, int]:
    """Read the bars of instruments ``names`` → (inst as Enum, slot, stored fields as float32), outside.

    Kept lean because a year of minutes for 50 instruments is ~26 M rows: ``inst`` is an Enum
    over ``names`` (dense codes, 4 bytes a row), slots are Int32, and nothing is sorted or hashed
    row-wise (see _write_features). Bars off the calendar grid are a broken contract upstream
    and raise; bars outside the calendar's days are dropped and counted.
    """
    stored = [f for f in fields if f != "factor"]
    offset = pl.col("ts").cast(pl.Datetime("ms")).cast(pl.Int64) - start_ms
    bars = (
        pl.scan_parquet([Path(p) for p in paths])
        .filter(pl.col("inst").is_in(names))
        .select(
            pl.col("inst").cast(pl.Utf8).cast(pl.Enum(names)),
            offset.alias("offset"),
            *[pl.col(f).cast(pl.Float32).fill_null(float("nan")) for f in stored],
        )
        .collect()
    )
    if bars.select((pl.col("offset") % step_ms != 0).any()).item():
        raise ValueError(f"bars not aligned on the {step_ms // MINUTE_MS}-minute calendar grid")
    total = bars.height
    bars = bars.with_columns((pl.col("offset") // step_ms).alias("offset")).filter(
        pl.col("offset").is_between(0, n_slots - 1)
    )
    bars = bars.with_columns(pl.col("offset").cast(pl.Int32)).rename({"offset": "slot"})
    return bars, total - bars.height


def _write_features(bars: pl.DataFrame, fields: Iterable[str], freq: str, features_dir: Path) -> None:
    """Scatter every instrument's bars into its dense slot range and write one bin per field.

    All instruments' dense ranges [first, last] lie back to back in one buffer; a bar's position
    is its slot plus its instrument's (buffer offset - first slot), looked up by Enum code. So one
    numpy scatter per field does the work, with no row-wise sort; Python only loops over
    (instrument, field) to write files. Two bars landing on one position are duplicates upstream.
    """
    if bars.is_empty():
        return
    codes = bars["inst"].to_physical().to_numpy().astype(np.int64)
    slots = bars["slot"].to_numpy().astype(np.int64)
    names = bars["inst"].dtype.categories.to_list()  # type: ignore[attr-defined]
    n = len(names)
    firsts = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    lasts = np.full(n, -1, dtype=np.int64)
    np.minimum.at(firsts, codes, slots)
    np.maximum.at(lasts, codes, slots)
    present = np.flatnonzero(lasts >= 0)
    lengths = np.where(lasts >= 0, lasts - firsts + 1, 0)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    pos = slots + (offsets - firsts)[codes]
    total = int(lengths.sum())
    if np.bincount(pos, minlength=total).max() > 1:
        raise ValueError("duplicate (inst, ts) bars across bar files")
    for i in present:
        (features_dir / names[i].lower()).mkdir(parents=True, exist_ok=True)
    for field in fields:
        buffer = np.full(total, np.nan, dtype="<f4")
        buffer[pos] = 1.0 if field == "factor" else bars[field].to_numpy()
        for i in present:
            chunk = buffer[offsets[i] : offsets[i] + lengths[i]]
            path = features_dir / names[i].lower() / f"{field}.{freq}.bin"
            path.write_bytes(encode_feature(int(firsts[i]), chunk))


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def _export_frequency(
    *, freq: str, paths: Sequence[Path], fields: Sequence[str], first_day: dt.date, last_day: dt.date, out_dir: Path
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Calendar and feature bins of one frequency → (summary, per-instrument first/last data day).

    Instruments are processed INSTRUMENTS_PER_PASS at a time so peak memory stays bounded
    (about a year of 1min bars for 16 instruments) whatever the universe size; each pass
    re-reads only its instruments' rows.

    A frequency without a single bar raises: Qlib would answer every query with an empty
    frame and no error. A field without a single value is reported (logged, ``empty_fields``).
    """
    step_ms = freq_minutes(freq) * MINUTE_MS
    calendar = calendar_frame(first_day, last_day, freq)
    _write_tsv(calendar, out_dir / "calendars" / f"{freq}.txt")
    names = _instrument_names(paths)
    spans: list[pl.DataFrame] = [pl.DataFrame(schema={"inst": pl.Utf8, "first": pl.Int64, "last": pl.Int64})]
    n_bars = outside = 0
    values = dict.fromkeys(fields, 0)
    for i in range(0, len(names), INSTRUMENTS_PER_PASS):
        batch = names[i : i + INSTRUMENTS_PER_PASS]
        bars, dropped = _load_bars(paths, batch, fields, _epoch_ms(first_day), calendar.height, step_ms)
        _write_features(bars, fields, freq, out_dir / "features")
        n_bars, outside = n_bars + bars.height, outside + dropped
        for f in fields:
            values[f] += bars.height if f == "factor" else int(bars.select(pl.col(f).is_not_nan().sum()).item())
        spans.append(
            bars.group_by("inst")
            .agg(
                # slot → day number since first_day
                (pl.col("slot").cast(pl.Int64).min() * step_ms // 86_400_000).alias("first"),
                (pl.col("slot").cast(pl.Int64).max() * step_ms // 86_400_000).alias("last"),
            )
            .with_columns(pl.col("inst").cast(pl.Utf8))
        )
    data_days = pl.concat(spans)
    if n_bars == 0:
        raise ValueError(
            f"no {freq} bar inside {first_day}..{last_day} ({len(paths)} bar files, {outside} bars outside the "
            "calendar): Qlib would return empty frames without an error. Check the clean and resample logs."
        )
    empty = [f for f, n in values.items() if n == 0]
    if empty:
        log.warning("qlib export %s: fields without any value: %s (all NaN)", freq, empty)
    summary = {
        "slots": calendar.height,
        "bars": n_bars,
        "instruments": data_days.height,
        "bars_outside_calendar": outside,
        "values": values,
        "empty_fields": empty,
    }
    return summary, data_days


def export_qlib(
    *,
    bars_paths: dict[str, list[Path]],
    days: list[dt.date],
    membership: pl.DataFrame,
    market_name: str,
    qlib_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """Build the whole Qlib provider directory for ``days`` and swap it in at ``qlib_dir``.

    ``bars_paths``: Qlib freq name → that frequency's ``bars/<freq>/<day>.parquet`` files.
    ``membership``: ``day`` (Date), ``inst`` (Utf8), ``member`` (Bool), the point-in-time
    universe; written as ``instruments/<market_name lowercase>.txt`` (Qlib lowercases the market
    name when it looks for the file). ``instruments/all.txt`` lists every instrument with data:
    its first data day 00:00:00 to its last data day 23:59:00. Instrument names are OKX instIds
    verbatim; feature directories are their lowercase form. Returns a summary dict.
    """
    if not days:
        raise ValueError("export_qlib: no days")
    if not _MARKET_RE.match(market_name) or market_name.lower() == "all":
        raise ValueError(f"market name {market_name!r}: use letters, digits, '_' (and not 'all')")
    fields = tuple(f.lower() for f in fields)
    known = {c for c in BARS_SCHEMA if c not in ("inst", "ts")} | {"factor"}
    if not fields or set(fields) - known:
        raise ValueError(f"fields {sorted(set(fields) - known) or '()'} not exportable; known: {sorted(known)}")
    first_day, last_day = min(days), max(days)
    for freq in bars_paths:
        freq_minutes(freq)  # validate every name before writing anything

    qlib_dir = Path(qlib_dir)
    versions = _versions_dir(qlib_dir)
    versions.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", suffix=".tmp", dir=versions))
    summary: dict[str, Any] = {"first_day": first_day.isoformat(), "last_day": last_day.isoformat(), "freqs": {}}
    try:
        tmp.chmod(0o755)
        for sub in ("calendars", "instruments", "features"):
            (tmp / sub).mkdir()
        data_days: list[pl.DataFrame] = []
        for freq, paths in bars_paths.items():
            freq_summary, spans = _export_frequency(
                freq=freq, paths=paths, fields=fields, first_day=first_day, last_day=last_day, out_dir=tmp
            )
            summary["freqs"][freq] = freq_summary
            data_days.append(spans)
        all_spans = (
            pl.concat(data_days)
            .group_by("inst")
            .agg(pl.col("first").min(), pl.col("last").max())
            .sort("inst")
            .select(
                "inst",
                _span_text(pl.lit(first_day) + pl.duration(days=pl.col("first")), SPAN_START).alias("start"),
                _span_text(pl.lit(first_day) + pl.duration(days=pl.col("last")), SPAN_END).alias("end"),
            )
            if data_days
            else pl.DataFrame(schema={"inst": pl.Utf8, "start": pl.Utf8, "end": pl.Utf8})
        )
        _write_tsv(all_spans, tmp / "instruments" / "all.txt")
        market = membership_spans(membership, first_day, last_day)
        _write_tsv(market, tmp / "instruments" / f"{market_name.lower()}.txt")
        summary["instruments"] = all_spans.height
        summary["market_spans"] = market.height
        version = publish_version(tmp, qlib_dir)
        log.info("qlib export published %s -> %s", qlib_dir, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not any(versions.iterdir()):
            versions.rmdir()  # a failed first export leaves nothing behind
        raise
    log.info("qlib export %s: %s", qlib_dir, summary)
    return summary


def export_from_workflow(
    *,
    bar_paths: Sequence[Path],
    universe_paths: Sequence[Path],
    freqs: Sequence[str],
    days: Sequence[dt.date],
    market_name: str,
    qlib_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """Adapter for the Snakemake rule: flat file lists in, ``export_qlib`` out.

    Bar files are grouped by their directory (``bars/<freq>/<day>.parquet``). Membership comes
    from the daily universe files (``universe/<day>.parquet``, columns day/inst/member among
    others, written by feeder.universe); only those three columns are read.
    """
    paths = [Path(p) for p in bar_paths]
    by_freq = {freq: sorted(p for p in paths if p.parent.name == freq) for freq in freqs}
    unassigned = set(paths) - {p for ps in by_freq.values() for p in ps}
    if unassigned:
        raise ValueError(f"bar files outside bars/<freq>/ for freqs {list(freqs)}: {sorted(map(str, unassigned))[:3]}")
    membership_schema = {"day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean}
    membership = (
        pl.scan_parquet([Path(p) for p in universe_paths])
        .select([pl.col(c).cast(t) for c, t in membership_schema.items()])
        .collect()
        if universe_paths
        else pl.DataFrame(schema=membership_schema)
    )
    return export_qlib(
        bars_paths=by_freq,
        days=list(days),
        membership=membership,
        market_name=market_name,
        qlib_dir=Path(qlib_dir),
        fields=fields,
    )


def write_manifest(path: Path, *, qlib_dir: Path, summary: dict[str, Any]) -> None:
    """Record what was published where (the workflow's output for the export rule)."""
    from feeder.atomic import write_json

    write_json({"qlib_dir": str(Path(qlib_dir).resolve()),
                "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **summary}, path)


KEEP_VERSIONS = 2  # the current one and the one before it (readers still on it stay consistent)


def _versions_dir(qlib_dir: Path) -> Path:
    return qlib_dir.with_name(qlib_dir.name + ".versions")


def publish_version(build: Path, qlib_dir: Path) -> Path:
    """Atomically point ``qlib_dir`` (a symlink) at the finished ``build``; prune old versions.

    A pre-existing real directory at ``qlib_dir`` (older layout) is moved into the versions
    directory first, then replaced by the link in the same atomic step where the kernel allows.
    """
    import os

    versions = _versions_dir(qlib_dir)
    final = versions / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    os.replace(build, final)
    link_tmp = qlib_dir.with_name(f".{qlib_dir.name}.link.tmp")
    link_tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(final, qlib_dir.parent), link_tmp)
    if qlib_dir.exists() and not qlib_dir.is_symlink():
        legacy = versions / "legacy"
        shutil.rmtree(legacy, ignore_errors=True)
        os.replace(qlib_dir, legacy)  # an instant without qlib_dir: only when migrating a real directory
    os.replace(link_tmp, qlib_dir)
    current = {final.name}
    kept = sorted((p for p in versions.iterdir() if p.is_dir() and not p.name.startswith("build-")),
                  key=lambda p: p.name)
    for old in kept[:-KEEP_VERSIONS]:
        if old.name not in current:
            shutil.rmtree(old, ignore_errors=True)
    return final
