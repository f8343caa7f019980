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

How it is built, so that adding one day to a year does not rewrite the year's work: each
resample job also writes its day as a *day block* (dense, calendar-aligned float32 rows per
instrument and field, :func:`day_block`); the export concatenates the blocks into bins
(:func:`assemble_qlib`), a byte copy per day and instrument, never a re-read of the bars.

Publishing is atomic and versioned: each export is linked into ``<qlib_dir>.versions/<id>/`` and
``qlib_dir`` is a symbolic link switched to it in one ``rename``. A reader (a notebook, a running
backtest) never sees a half-written provider, and one that resolved the link keeps a consistent
version: the previous version is kept until the next publish.

Publishing only ever moves or deletes what this project published: every version directory
carries :data:`DATASET_MARKER` and the versions directory :data:`VERSIONS_MARKER`; a
``qlib_dir`` that is someone else's directory, file or link is refused
(:class:`PublishRefusedError`) before anything is changed, and pruning removes marked versions
only.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc  # noqa: F401  (pa.ipc)

from feeder.atomic import write_atomically
from feeder.identifiers import inst_path_stem
from feeder.resample import BARS_SCHEMA, MINUTE_MS, MINUTES_PER_DAY, freq_minutes

log = logging.getLogger(__name__)

__all__ = [
    "DATASET_MARKER",
    "DEFAULT_FIELDS",
    "PublishRefusedError",
    "TRADE_FIELDS",
    "VERSIONS_MARKER",
    "calendar_frame",
    "decode_feature",
    "dense_series",
    "encode_feature",
    "assemble_qlib",
    "day_block",
    "export_from_workflow",
    "export_qlib",
    "membership_spans",
    "check_publish_target",
    "check_summary_matches",
    "is_our_dataset",
    "mark_dataset",
    "publish_dataset",
    "publish_version",
    "write_manifest",
    "write_day_blocks",
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
# Day blocks: the export's unit of work
# --------------------------------------------------------------------------------------------

#: Bytes of float32 values the assembly holds at once (bounds peak memory whatever the history
#: length: a longer history means more, smaller instrument batches, not a bigger buffer).
ASSEMBLY_BUDGET_BYTES = 256 * 2**20
DAY_MS = 86_400_000


def slots_per_day(freq: str) -> int:
    """Calendar slots of ``freq`` in one UTC day (frequencies divide the day: see freq_minutes)."""
    return MINUTES_PER_DAY // freq_minutes(freq)


def day_block(bars: pl.DataFrame, *, day: dt.date, freq: str, fields: Sequence[str]) -> pa.Table:
    """One day of one frequency as dense, calendar-aligned float32 rows: what the export concatenates.

    One row per instrument with at least one bar that day; one column per field, a fixed-size
    list of the day's slots (1440 at 1min, 1 at day), NaN where there is no bar; ``factor`` is
    1.0 where a bar exists, so it doubles as the "bar present" mask. Because a day's block
    depends on that day's bars alone, adding a day to a year of history builds one block and
    the export only concatenates bytes, instead of re-reading and re-scattering every bar.

    A bar off the frequency's grid, outside the day or twice in one slot is a broken contract
    upstream and raises: a wrong slot would shift every value after it.
    """
    spd = slots_per_day(freq)
    step_ms = freq_minutes(freq) * MINUTE_MS
    factor_only = ["factor"] if "factor" not in fields else []
    columns = [*fields, *factor_only]
    frame = bars.select(
        pl.col("inst").cast(pl.Utf8),
        (pl.col("ts").cast(pl.Datetime("ms")).cast(pl.Int64) - _epoch_ms(day)).alias("offset"),
        *[pl.col(f).cast(pl.Float32).fill_null(float("nan")) for f in columns if f != "factor"],
    )
    offsets = frame["offset"].to_numpy()
    if (offsets % step_ms != 0).any():
        raise ValueError(f"{freq} bars of {day} not aligned on the {step_ms // MINUTE_MS}-minute calendar grid")
    if ((offsets < 0) | (offsets >= DAY_MS)).any():
        raise ValueError(f"{freq} bars outside {day} in that day's bars (resample writes one file per UTC day)")
    names = sorted(frame["inst"].unique().to_list())
    codes = frame["inst"].cast(pl.Enum(names)).to_physical().to_numpy().astype(np.int64)
    pos = codes * spd + offsets // step_ms
    if np.bincount(pos, minlength=len(names) * spd).max(initial=0) > 1:
        raise ValueError(f"duplicate (inst, ts) {freq} bars on {day}")
    table: dict[str, pa.Array] = {"inst": pa.array(names, pa.string())}
    for field in columns:
        flat = np.full(len(names) * spd, np.nan, dtype="<f4")
        flat[pos] = 1.0 if field == "factor" else frame[field].to_numpy()
        table[field] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), spd)
    return pa.table(table)


def write_block(table: pa.Table, path: Path) -> None:
    """Arrow IPC file (memory-mappable: the export reads only the rows it needs)."""

    def write(tmp: str) -> None:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    write_atomically(Path(path), write)


def write_day_blocks(
    frames: dict[str, pl.DataFrame], *, day: dt.date, fields: Sequence[str], out_paths: dict[str, Path]
) -> None:
    """The resample job's second output: each frequency's bars of ``day`` as a day block."""
    fields = _checked_fields(fields)
    for freq, path in out_paths.items():
        write_block(day_block(frames[freq], day=day, freq=freq, fields=fields), path)


def _block_instruments(path: Path) -> list[str]:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all().column("inst").to_pylist()


def _copy_block_rows(path: Path, names: list[str], spd: int, field: str, rows_of: dict[str, int],
                     out: np.ndarray, day_index: int) -> None:
    """Copy ``field`` of the instruments in ``rows_of`` into ``out[row, day's slots]``.

    ``names``: the block's instruments in row order (read once per export, not per pass).
    The file is memory-mapped: only the pages of this field's wanted rows are read, and they
    are unmapped again before the next day (resident memory stays one buffer, not the history).
    """
    picked = [(r, rows_of[name]) for r, name in enumerate(names) if name in rows_of]
    if not picked:
        return
    rows, targets = np.array([p[0] for p in picked]), np.array([p[1] for p in picked])
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        # blocks are written as one record batch; reading it alone skips building a Table
        table = reader.get_batch(0) if reader.num_record_batches == 1 else reader.read_all()
        if field not in table.schema.names:
            raise ValueError(f"day block {path} has no {field!r}: the fields changed; rerun the resample rule")
        column = table.column(field)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if column.type.list_size != spd:
            raise ValueError(f"day block {path} has {column.type.list_size} slots a day, expected {spd}")
        out[targets, day_index * spd : (day_index + 1) * spd] = column.flatten().to_numpy().reshape(-1, spd)[rows]
        del table, column, reader


def _assemble_frequency(
    *, freq: str, blocks: dict[dt.date, Path], fields: Sequence[str], first_day: dt.date, last_day: dt.date,
    out_dir: Path,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Calendar and feature bins of one frequency from its day blocks → (summary, data days).

    Each instrument's bin runs from its first bar to its last (NaN holes in between, days
    without a block count as holes). One field at a time, ``factor`` (the bar-present mask)
    first: so each pass maps every day block once and reads one column of it, and the buffer
    is one field of the history (instruments in batches sized to ASSEMBLY_BUDGET_BYTES).

    A frequency without a single bar raises: Qlib would answer every query with an empty
    frame and no error. A field without a single value is reported (logged, ``empty_fields``).
    """
    spd = slots_per_day(freq)
    calendar = calendar_frame(first_day, last_day, freq)
    _write_tsv(calendar, out_dir / "calendars" / f"{freq}.txt")
    n_slots = calendar.height
    inside = {day: path for day, path in sorted(blocks.items()) if first_day <= day <= last_day}
    listing = {day: _block_instruments(path) for day, path in inside.items()}
    names = sorted({name for day_names in listing.values() for name in day_names})
    if not names:
        raise ValueError(
            f"no {freq} bar inside {first_day}..{last_day} ({len(blocks)} day blocks): Qlib would return empty "
            "frames without an error. Check the clean and resample logs."
        )
    batch_size = min(len(names), max(1, ASSEMBLY_BUDGET_BYTES // (n_slots * 4)))
    values = dict.fromkeys(fields, 0)
    n_bars = 0
    spans: list[tuple[str, int, int]] = []
    # one buffer for every pass: a fresh allocation each time would pay the page faults again
    whole = np.empty((batch_size, n_slots), dtype="<f4")
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        rows_of = {name: i for i, name in enumerate(batch)}
        buffer = whole[: len(batch)]

        def load(field: str) -> None:
            buffer.fill(np.nan)
            for day, path in inside.items():
                _copy_block_rows(path, listing[day], spd, field, rows_of, buffer, (day - first_day).days)

        load("factor")
        bounds = []
        for i, name in enumerate(batch):
            present = np.flatnonzero(~np.isnan(buffer[i]))
            bounds.append((int(present[0]), int(present[-1])))
            n_bars += present.size
            (out_dir / "features" / inst_path_stem(name).lower()).mkdir(parents=True, exist_ok=True)
            spans.append((name, bounds[-1][0] // spd, bounds[-1][1] // spd))
        for field in sorted(fields, key=lambda f: f != "factor"):  # factor is loaded already
            if field != "factor":
                load(field)
            for i, name in enumerate(batch):
                first, last = bounds[i]
                series = buffer[i, first : last + 1]
                (out_dir / "features" / name.lower() / f"{field}.{freq}.bin").write_bytes(encode_feature(first, series))
                values[field] += int(np.count_nonzero(~np.isnan(series)))
    empty = [f for f, n in values.items() if n == 0]
    if empty:
        log.warning("qlib export %s: fields without any value: %s (all NaN)", freq, empty)
    data_days = pl.DataFrame(spans, schema={"inst": pl.Utf8, "first": pl.Int64, "last": pl.Int64}, orient="row")
    summary = {"slots": n_slots, "bars": n_bars, "instruments": len(names), "values": values,
               "empty_fields": empty}
    return summary, data_days


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def _checked_fields(fields: Sequence[str]) -> tuple[str, ...]:
    fields = tuple(f.lower() for f in fields)
    known = {c for c in BARS_SCHEMA if c not in ("inst", "ts")} | {"factor"}
    if not fields or set(fields) - known:
        raise ValueError(f"fields {sorted(set(fields) - known) or '()'} not exportable; known: {sorted(known)}")
    return fields


def _check_market(market_name: str) -> None:
    if not _MARKET_RE.match(market_name) or market_name.lower() == "all":
        raise ValueError(f"market name {market_name!r}: use letters, digits, '_' (and not 'all')")


def assemble_qlib(
    *,
    blocks: dict[str, dict[dt.date, Path]],
    days: Sequence[dt.date],
    membership: pl.DataFrame,
    market_name: str,
    out_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """Write a complete Qlib provider directory at ``out_dir`` from day blocks.

    ``blocks``: Qlib freq name → day → that day's block file (a day without a block has no
    bars). ``membership``: ``day`` (Date), ``inst`` (Utf8), ``member`` (Bool), the point-in-time
    universe; written as ``instruments/<market_name lowercase>.txt`` (Qlib lowercases the market
    name when it looks for the file). ``instruments/all.txt`` lists every instrument with data:
    its first data day 00:00:00 to its last data day 23:59:00. Instrument names are OKX instIds
    verbatim; feature directories are their lowercase form. Returns a summary dict.
    """
    if not days:
        raise ValueError("qlib export: no days")
    _check_market(market_name)
    fields = _checked_fields(fields)
    for freq in blocks:
        freq_minutes(freq)  # validate every name before writing anything
    first_day, last_day = min(days), max(days)
    out_dir = Path(out_dir)
    for sub in ("calendars", "instruments", "features"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"first_day": first_day.isoformat(), "last_day": last_day.isoformat(), "freqs": {}}
    data_days: list[pl.DataFrame] = []
    for freq, freq_blocks in blocks.items():
        freq_summary, spans = _assemble_frequency(freq=freq, blocks=freq_blocks, fields=fields,
                                                  first_day=first_day, last_day=last_day, out_dir=out_dir)
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
    _write_tsv(all_spans, out_dir / "instruments" / "all.txt")
    market = membership_spans(membership, first_day, last_day)
    _write_tsv(market, out_dir / "instruments" / f"{market_name.lower()}.txt")
    summary["instruments"] = all_spans.height
    summary["market_spans"] = market.height
    log.info("qlib export %s: %s", out_dir, summary)
    return summary


def _blocks_from_bar_files(
    paths: Sequence[Path], *, freq: str, days: Sequence[dt.date], fields: Sequence[str], out_dir: Path
) -> tuple[dict[dt.date, Path], int]:
    """Day blocks from bar files of any split (each bar goes to its UTC day) → (blocks, bars outside days)."""
    first_day, last_day = min(days), max(days)
    if not paths:
        return {}, 0
    bars = pl.read_parquet([Path(p) for p in paths]).with_columns(_day=pl.col("ts").dt.date())
    inside = bars.filter(pl.col("_day").is_between(first_day, last_day))
    blocks: dict[dt.date, Path] = {}
    for (day,), frame in inside.partition_by("_day", as_dict=True, maintain_order=False).items():
        blocks[day] = out_dir / freq / f"{day}.arrow"
        write_block(day_block(frame, day=day, freq=freq, fields=fields), blocks[day])
    return blocks, bars.height - inside.height


def export_qlib(
    *,
    bars_paths: dict[str, list[Path]],
    days: list[dt.date],
    membership: pl.DataFrame,
    market_name: str,
    qlib_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """Build the whole Qlib provider directory for ``days`` from bar files and swap it in at ``qlib_dir``.

    The one-call form (tests, research examples): ``bars_paths`` maps a Qlib freq name to bar
    Parquet files split any way; bars outside ``days`` are dropped and counted. The workflow
    instead builds day blocks in the resample jobs and calls :func:`assemble_qlib` and
    :func:`publish_dataset` from two rules. Same output, byte for byte.
    """
    if not days:
        raise ValueError("export_qlib: no days")
    _check_market(market_name)
    fields = _checked_fields(fields)
    for freq in bars_paths:
        freq_minutes(freq)
    check_publish_target(qlib_dir)  # before any work: a refused target is known now, not after the build
    qlib_dir = Path(qlib_dir)
    qlib_dir.parent.mkdir(parents=True, exist_ok=True)
    # built beside qlib_dir (same file system: publishing links the files), gone afterwards;
    # nothing is written at qlib_dir until the dataset is complete
    with tempfile.TemporaryDirectory(prefix=f".{qlib_dir.name}.build-", dir=qlib_dir.parent) as scratch:
        blocks, outside = {}, {}
        for freq, paths in bars_paths.items():
            blocks[freq], outside[freq] = _blocks_from_bar_files(paths, freq=freq, days=days, fields=fields,
                                                                 out_dir=Path(scratch) / "blocks")
        dataset = Path(scratch) / "dataset"
        summary = assemble_qlib(blocks=blocks, days=days, membership=membership, market_name=market_name,
                                out_dir=dataset, fields=fields)
        for freq, n in outside.items():
            summary["freqs"][freq]["bars_outside_calendar"] = n
        version = publish_dataset(dataset, qlib_dir)
    log.info("qlib export published %s -> %s", qlib_dir, version)
    return summary


def _read_membership(universe_paths: Sequence[Path]) -> pl.DataFrame:
    """Point-in-time membership from the daily universe files (only day/inst/member are read)."""
    schema = {"day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean}
    if not universe_paths:
        return pl.DataFrame(schema=schema)
    return pl.scan_parquet([Path(p) for p in universe_paths]).select(
        [pl.col(c).cast(t) for c, t in schema.items()]).collect()


def export_from_workflow(
    *,
    block_paths: Sequence[Path],
    universe_paths: Sequence[Path],
    freqs: Sequence[str],
    days: Sequence[dt.date],
    market_name: str,
    out_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """Adapter for the ``qlib`` rule: day blocks ``qlib-blocks/<freq>/<day>.arrow`` → ``out_dir``."""
    by_freq: dict[str, dict[dt.date, Path]] = {freq: {} for freq in freqs}
    for path in map(Path, block_paths):
        if path.parent.name not in by_freq:
            raise ValueError(f"day block outside qlib-blocks/<freq>/ for freqs {list(freqs)}: {path}")
        by_freq[path.parent.name][dt.date.fromisoformat(path.stem)] = path
    summary = assemble_qlib(blocks=by_freq, days=list(days), membership=_read_membership(universe_paths),
                            market_name=market_name, out_dir=Path(out_dir), fields=fields)
    for freq in freqs:
        summary["freqs"][freq]["bars_outside_calendar"] = 0  # day blocks hold their own day only
    return summary


# --------------------------------------------------------------------------------------------
# Publishing: only ever move or prune what this project published
# --------------------------------------------------------------------------------------------

#: In every provider directory this project builds and publishes (fixed content: every copy is
#: byte-identical). Publishing moves or prunes a directory only when it carries this file.
DATASET_MARKER = ".feeder-qlib-dataset"
#: In ``<paths.qlib>.versions/``: the directory holds versions this project published.
VERSIONS_MARKER = ".feeder-qlib-versions"
_DATASET_MARKER_TEXT = (
    "Qlib provider directory built by crypto-data-feeder (feeder.qlib_export).\n"
    "Publishing moves or prunes a directory only when it carries this file.\n"
)
_VERSIONS_MARKER_TEXT = (
    "Versions of the Qlib dataset published by crypto-data-feeder; paths.qlib is a symbolic link to one of them.\n"
    "Only subdirectories carrying .feeder-qlib-dataset are ever pruned.\n"
)
#: Version names publish_version gives (UTC time of the publish).
_VERSION_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
KEEP_VERSIONS = 2  # the current one and the one before it (readers still on it stay consistent)


class PublishRefusedError(ValueError):
    """Publishing would move, replace or delete something this project did not publish."""


def mark_dataset(directory: Path) -> None:
    """Mark ``directory`` as a provider directory this project built (idempotent)."""
    marker = Path(directory) / DATASET_MARKER
    if not marker.is_file():
        marker.write_text(_DATASET_MARKER_TEXT, encoding="utf-8")


def is_our_dataset(directory: Path) -> bool:
    """True for a real directory carrying :data:`DATASET_MARKER` (a regular file, not a link)."""
    directory, marker = Path(directory), Path(directory) / DATASET_MARKER
    return directory.is_dir() and not directory.is_symlink() and marker.is_file() and not marker.is_symlink()


def _publish_path(qlib_dir: Path) -> Path:
    """``qlib_dir`` absolute, its parent resolved (its own last component is the link we switch)."""
    qlib_dir = Path(qlib_dir)
    if qlib_dir.name in ("", ".", ".."):
        raise PublishRefusedError(
            f"paths.qlib {str(qlib_dir)!r} names no directory of its own (publishing replaces paths.qlib by a "
            "symbolic link, so it must end in a new name); nothing was published. Set paths.qlib to e.g. "
            "'data/qlib'.")
    return Path(os.path.abspath(qlib_dir.parent)).resolve() / qlib_dir.name


def _versions_dir(qlib_dir: Path) -> Path:
    return qlib_dir.with_name(qlib_dir.name + ".versions")


def _listing(directory: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in directory.iterdir())
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
    return shown or "nothing"


def _old_layout(versions: Path, qlib_dir: Path) -> bool:
    """A versions directory written before the markers existed: only our names, and the link points into it."""
    if not qlib_dir.is_symlink() or Path(qlib_dir.parent, os.readlink(qlib_dir)).parent.resolve() != versions:
        return False
    return all(p.is_dir() and not p.is_symlink()
               and (_VERSION_NAME.match(p.name) or p.name == "legacy" or p.name.startswith("build-"))
               for p in versions.iterdir())


def _check_versions_dir(versions: Path, qlib_dir: Path) -> None:
    """Refuse a ``<paths.qlib>.versions`` that this project did not create."""
    if versions.is_symlink() or (versions.exists() and not versions.is_dir()):
        raise PublishRefusedError(
            f"{versions} exists and is not a directory this project created (publishing keeps the dataset's "
            f"versions there); nothing was published. Move it away, or set paths.qlib to another path.")
    if (not versions.is_dir() or (versions / VERSIONS_MARKER).is_file() or not any(versions.iterdir())
            or _old_layout(versions, qlib_dir)):
        return
    raise PublishRefusedError(
        f"{versions} holds files this project did not publish ({_listing(versions)}) and no {VERSIONS_MARKER}; "
        f"publishing keeps the dataset's versions there and prunes old ones, so nothing was published. Move "
        f"{versions} away, or set paths.qlib to another path.")


def _check_target(qlib_dir: Path, versions: Path) -> str:
    """What sits at ``qlib_dir``: ``"absent"``, ``"link"`` (ours) or ``"legacy"`` (a real directory we built).

    Anything else (someone's directory or file, a link elsewhere) raises: publishing would move
    it away or replace it.
    """
    if qlib_dir.is_symlink():
        target = os.readlink(qlib_dir)
        points_to = Path(qlib_dir.parent, target)
        if points_to.parent.resolve() == versions and points_to.name not in ("", ".", ".."):
            return "link"
        raise PublishRefusedError(
            f"paths.qlib {qlib_dir} is a symbolic link to {target} ({points_to.resolve()}), not to a version this "
            f"project published (those live in {versions}/); nothing was changed. If the link is stale, remove it "
            f"(rm {qlib_dir}) and rerun; otherwise set paths.qlib to another path.")
    if not qlib_dir.exists():
        return "absent"
    if qlib_dir.is_dir() and is_our_dataset(qlib_dir):
        legacy = versions / "legacy"
        if legacy.exists() and not is_our_dataset(legacy):
            raise PublishRefusedError(
                f"paths.qlib {qlib_dir} is a dataset this project built, to be moved to {legacy}, but {legacy} "
                f"already holds something else ({_listing(legacy) if legacy.is_dir() else 'a file'}); nothing "
                "was changed. Move it away and rerun.")
        return "legacy"
    what = (f"an existing directory holding {_listing(qlib_dir)}" if qlib_dir.is_dir()
            else "an existing file" if qlib_dir.is_file() else "something other than a directory")
    raise PublishRefusedError(
        f"paths.qlib {qlib_dir} is {what}, which this project did not publish (no {DATASET_MARKER} in it); "
        "publishing would replace it by a symbolic link, so nothing was changed. Move it away (e.g. "
        f"mv {qlib_dir} {qlib_dir}.old) or set paths.qlib to a path that does not exist yet.")


def _claim_versions_dir(versions: Path) -> None:
    """Create (or adopt) the versions directory and mark it; versions from before the markers get theirs."""
    versions.mkdir(parents=True, exist_ok=True)
    if (versions / VERSIONS_MARKER).is_file():
        return
    for old in versions.iterdir():
        # built and published by this project before the markers existed ("legacy" may be anybody's: unmarked)
        if _VERSION_NAME.match(old.name) and old.is_dir() and not old.is_symlink() and (old / "calendars").is_dir():
            mark_dataset(old)
    (versions / VERSIONS_MARKER).write_text(_VERSIONS_MARKER_TEXT, encoding="utf-8")


def check_publish_target(qlib_dir: Path) -> None:
    """Raise :class:`PublishRefusedError` unless publishing at ``qlib_dir`` touches only what we published.

    Called before anything is written, so a refused publish leaves every file where it was.
    """
    qlib_dir = _publish_path(qlib_dir)
    versions = _versions_dir(qlib_dir)
    _check_versions_dir(versions, qlib_dir)
    _check_target(qlib_dir, versions)


def publish_dataset(dataset_dir: Path, qlib_dir: Path) -> Path:
    """Publish a finished provider directory at ``qlib_dir`` as a new version (hard links, no copy).

    Hard links share the files' data with the workflow's own output: nothing is copied, and
    when Snakemake later replaces its output for a rebuild, the published version keeps its
    files. Across file systems (another disk, storage mounted elsewhere) the files are copied.
    Refuses (:class:`PublishRefusedError`, nothing written) when ``qlib_dir`` or the versions
    directory beside it holds something this project did not publish.
    """
    qlib_dir = _publish_path(qlib_dir)
    check_publish_target(qlib_dir)
    versions = _versions_dir(qlib_dir)
    _claim_versions_dir(versions)
    tmp = Path(tempfile.mkdtemp(prefix="build-", suffix=".tmp", dir=versions))
    try:
        tmp.rmdir()
        # .snakemake_timestamp: Snakemake's marker in directory outputs, not part of the dataset
        shutil.copytree(dataset_dir, tmp, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(".snakemake_timestamp"))
        tmp.chmod(0o755)
        return publish_version(tmp, qlib_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_manifest(path: Path, *, qlib_dir: Path, version: Path, summary: dict[str, Any],
                   request: dict[str, Any]) -> None:
    """Record what was published where, and what the run asked for (the ``publish_qlib`` rule's output).

    ``request`` (days, freqs, market, fields) is what the workflow wanted in the dataset; with the
    built ``summary`` beside it, a reader (the scheduler, a person) can see whether they agree.
    """
    from feeder.atomic import write_json

    write_json({"qlib_dir": str(_publish_path(qlib_dir)), "version_dir": str(Path(version).resolve()),
                "version": Path(version).name,
                "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "request": request, **summary}, path)


def check_summary_matches(summary: dict[str, Any], *, days: Sequence[str], freqs: Sequence[str],
                          market: str) -> None:
    """Raise unless the built dataset's summary covers exactly the requested days and frequencies.

    Publishing a dataset built for another request would leave Qlib without the asked days while
    the workflow reports success.
    """
    first, last = min(days), max(days)
    built = (summary.get("first_day"), summary.get("last_day"), sorted(summary.get("freqs", {})))
    if built != (first, last, sorted(freqs)):
        raise ValueError(
            f"the built Qlib dataset covers {built[0]}..{built[1]} at {built[2]}, but this run asks for "
            f"{first}..{last} at {sorted(freqs)} (market {market}); nothing was published. Rerun the workflow: "
            "the qlib rule rebuilds the dataset.")


def publish_version(build: Path, qlib_dir: Path) -> Path:
    """Atomically point ``qlib_dir`` (a symlink) at the finished ``build``; prune old versions.

    Only what this project published is ever moved or deleted: ``qlib_dir`` must be absent, our
    link, or a real directory carrying :data:`DATASET_MARKER` (a dataset built by an older
    version of this project, moved to ``<versions>/legacy`` in the switch); pruning removes
    only marked version directories. Anything else raises :class:`PublishRefusedError` before a
    thing is changed.
    """
    qlib_dir = _publish_path(qlib_dir)
    versions = _versions_dir(qlib_dir)
    _check_versions_dir(versions, qlib_dir)
    state = _check_target(qlib_dir, versions)
    _claim_versions_dir(versions)
    mark_dataset(build)
    previous = Path(os.readlink(qlib_dir)).name if state == "link" else None
    final = versions / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    os.replace(build, final)
    link_tmp = qlib_dir.with_name(f".{qlib_dir.name}.link-{final.name}.tmp")
    os.symlink(os.path.relpath(final, qlib_dir.parent), link_tmp)
    try:
        if state == "legacy":
            legacy = versions / "legacy"
            if legacy.exists():
                shutil.rmtree(legacy)  # checked above: a dataset of ours
            os.replace(qlib_dir, legacy)  # an instant without qlib_dir: only when migrating a real directory
        os.replace(link_tmp, qlib_dir)
    finally:
        link_tmp.unlink(missing_ok=True)
    _prune_versions(versions, keep={final.name, previous})
    return final


def _prune_versions(versions: Path, *, keep: set[str | None]) -> None:
    """Delete marked versions beyond the newest :data:`KEEP_VERSIONS` (and never one in ``keep``)."""
    ours = sorted((p for p in versions.iterdir() if not p.name.startswith("build-") and is_our_dataset(p)),
                  key=lambda p: (p.name != "legacy", p.name))  # a migrated legacy dataset is the oldest
    for old in ours[:-KEEP_VERSIONS]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
