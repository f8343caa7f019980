"""Clean one UTC day of raw 1-minute candles into per-instrument Parquet files.

One Snakemake job per day: it reads the day's shards once (WebSocket hours 00-23 of day D,
hour 00 of D+1 because shards are partitioned by *receipt* hour, and the REST backfill file),
keeps the bars that open inside D, deduplicates and validates them, and writes
``clean/<D>/<instId>.parquet`` plus ``quality/<D>.json`` (see docs/ARCHITECTURE.md).

Accounting invariant (tested): ``rows_read == kept + duplicates + rejected_total``, where a row
is one raw record (one candle) and bars of other days are rejected as ``outside_day`` (so each
day's reasons describe that day's bars). Lines that are not records at all (not JSON, not an
object, or fields of the wrong JSON type) are not rows: they are counted in ``malformed_lines``.

Deduplication policy, natural key ``(inst, ts)``: REST beats WebSocket (REST history is the
exchange's archived value, WebSocket may have been caught mid-reconnect); within one source the
copy received last wins (the latest state the exchange published); remaining ties are broken on
the values so the result never depends on input order. ``duplicates`` counts the discarded
copies; ``conflicts`` counts keys whose copies disagree on any of open/high/low/close/volume/amount.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_json
from feeder.identifiers import inst_path_stem
from feeder.okx import CANDLE_REJECT_REASONS, parse_candles

log = logging.getLogger(__name__)

__all__ = [
    "CLEAN_SCHEMA",
    "RAW_SCHEMA",
    "clean_candles",
    "clean_day",
    "deduplicate",
    "read_raw_records",
    "replace_directory",
]

# The raw record contract (docs/ARCHITECTURE.md) as read for candles: `data` is the array.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "v": pl.Int64(),
    "source": pl.Utf8(),
    "channel": pl.Utf8(),
    "inst": pl.Utf8(),
    "ts": pl.Int64(),
    "recv_ts": pl.Int64(),
    "data": pl.List(pl.Utf8()),
}

# clean/<day>/<instId>.parquet columns (the contract), without the `inst` carried in memory.
CLEAN_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("ms"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "amount": pl.Float64(),
    "source": pl.Utf8(),
}

VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")
DAY_MS = 86_400_000
MINUTE_MS = 60_000
CANDLE_CHANNEL = "candle1m"

# Reasons clean adds on top of feeder.okx's, in reporting order.
CLEAN_REJECT_REASONS: tuple[str, ...] = ("wrong_channel", "outside_day", "misaligned_ts", *CANDLE_REJECT_REASONS)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _empty_raw(schema: dict[str, pl.DataType] = RAW_SCHEMA) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _read_ndjson_lines(lines: list[str], schema: dict[str, pl.DataType] = RAW_SCHEMA) -> pl.DataFrame:
    return pl.read_ndjson("\n".join(lines).encode("utf-8"), schema=schema) if lines else _empty_raw(schema)


def _bisect_lines(lines: list[str], schema: dict[str, pl.DataType] = RAW_SCHEMA) -> tuple[list[pl.DataFrame], int]:
    """Parse lines that failed as a block by halving: returns (frames, malformed count).

    Costs O(bad · log n) parser calls, so a shard with a handful of bad lines is still parsed
    at polars speed, and no line is ever looked at one by one by Python code.
    """
    if not lines:
        return [], 0
    try:
        return [_read_ndjson_lines(lines, schema)], 0
    except Exception:  # noqa: BLE001 (polars raises ComputeError/SchemaError/... for bad lines)
        if len(lines) == 1:
            return [], 1
    mid = len(lines) // 2
    left, bad_left = _bisect_lines(lines[:mid], schema)
    right, bad_right = _bisect_lines(lines[mid:], schema)
    return left + right, bad_left + bad_right


def _read_file_robust(path: Path, schema: dict[str, pl.DataType] = RAW_SCHEMA) -> tuple[pl.DataFrame, int]:
    """Read one shard, isolating malformed lines instead of failing on them.

    Invalid UTF-8 is replaced (U+FFFD), so such a line fails validation later instead of
    aborting the read. Syntactically invalid lines and non-objects are removed in one
    vectorised pass (polars' JSON path matcher returns null for them); lines that are JSON
    objects but break the record schema (an object as ``data``, a string ``ts``...) are
    isolated by bisection. Blank lines are skipped, not counted.
    """
    text = pl.Series("line", path.read_bytes().decode("utf-8", errors="replace").split("\n"), dtype=pl.Utf8)
    text = text.filter(text.str.strip_chars() != "")
    is_object = text.str.json_path_match("$").str.starts_with("{").fill_null(False)
    candidates = text.filter(is_object).to_list()
    frames, bad = _bisect_lines(candidates, schema)
    records = pl.concat(frames, how="vertical") if frames else _empty_raw(schema)
    return records, bad + (text.len() - len(candidates))


def read_raw_records(
    paths: Sequence[Path], schema: dict[str, pl.DataType] = RAW_SCHEMA
) -> tuple[pl.DataFrame, int]:
    """Read raw JSONL shards into one frame (``schema``) plus the number of malformed lines.

    ``schema`` is RAW_SCHEMA (candles: ``data`` is a list of strings) by default; object
    channels pass a ``data`` Struct of Utf8 fields (absent fields read as null, unknown ones
    are ignored, JSON numbers become their text). Happy path: one multi-file polars NDJSON
    scan. If any file has a bad line the scan fails as a whole, so each file is then read on
    its own and only the failing ones go through the line-isolating reader. Empty files and
    blank lines are fine (not counted as malformed).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return _empty_raw(schema), 0
    try:
        return pl.scan_ndjson(paths, schema=schema).collect(), 0
    except Exception:  # noqa: BLE001 (fall back to per-file isolation)
        pass
    frames: list[pl.DataFrame] = []
    malformed = 0
    for path in paths:
        try:
            frames.append(pl.read_ndjson(path, schema=schema))
        except Exception:  # noqa: BLE001
            records, bad = _read_file_robust(path, schema)
            frames.append(records)
            malformed += bad
    return pl.concat(frames, how="vertical"), malformed


# --------------------------------------------------------------------------------------------
# Cleaning (pure)
# --------------------------------------------------------------------------------------------


def _day_bounds_ms(day: dt.date) -> tuple[int, int]:
    start = (day - dt.date(1970, 1, 1)).days * DAY_MS
    return start, start + DAY_MS


def deduplicate(bars: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Keep one row per (inst, ts); return (kept rows sorted by inst, ts, duplicates, conflicts).

    ``bars`` holds valid typed bars: inst, ts, VALUE_COLUMNS, source, and optionally recv_ts.
    Preference: source rest > ws, then latest recv_ts, then values (a deterministic tie-break).
    Idempotent: deduplicating the output again changes nothing.
    """
    key = ["inst", "ts"]
    recv = ["recv_ts"] if "recv_ts" in bars.columns else []
    ordered = bars.sort(
        [*key, (pl.col("source") == "rest").cast(pl.Int8), *recv, *VALUE_COLUMNS],
        descending=[False, False, True, *([True] * len(recv)), *([False] * len(VALUE_COLUMNS))],
        nulls_last=True,
        maintain_order=True,
    )
    # after the sort, each key is one run of rows; the run's first row is the preferred copy
    first_of_run = pl.col("inst").ne_missing(pl.col("inst").shift(1)) | pl.col("ts").ne_missing(pl.col("ts").shift(1))
    ordered = ordered.with_columns(first_of_run.alias("_first"))
    ordered = ordered.with_columns(pl.col("_first").cum_sum().alias("_run"))
    kept = ordered.filter(pl.col("_first")).drop("_first", "_run")
    duplicates = ordered.height - kept.height
    # a run disagrees iff some row differs from its predecessor in the run (nulls compare equal)
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in VALUE_COLUMNS]) & ~pl.col("_first")
    conflicts = ordered.filter(differs).get_column("_run").n_unique() if duplicates else 0
    return kept, duplicates, conflicts


def clean_candles(records: pl.DataFrame, day: dt.date) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Validate, restrict to ``day`` and deduplicate raw candle records.

    ``records`` follows RAW_SCHEMA (``channel``, ``recv_ts`` optional). Returns the kept bars
    (``inst`` + CLEAN_SCHEMA columns, sorted by inst then ts, unique on (inst, ts), every ts
    inside ``day``) and the counts for the quality report.
    """
    start_ms, end_ms = _day_bounds_ms(day)
    parsed = parse_candles(records)
    ts_ms = pl.col("ts").cast(pl.Int64)
    has_ts = pl.col("ts").is_not_null()
    wrong_channel = pl.lit(False)
    if "channel" in records.columns:
        parsed = parsed.with_columns(records.get_column("channel").alias("channel"))
        wrong_channel = pl.col("channel").is_not_null() & (pl.col("channel") != CANDLE_CHANNEL)
    # A bar of another day is that day's business: report it as outside_day even if it is
    # also invalid, so day D's reasons describe day D's data only.
    reject = (
        pl.when(wrong_channel)
        .then(pl.lit("wrong_channel"))
        .when(has_ts & ((ts_ms < start_ms) | (ts_ms >= end_ms)))
        .then(pl.lit("outside_day"))
        .when(has_ts & (ts_ms % MINUTE_MS != 0))
        .then(pl.lit("misaligned_ts"))
        .otherwise(pl.col("reject"))
    )
    parsed = parsed.with_columns(reject.alias("reject"))
    rejected_counts = parsed.filter(pl.col("reject").is_not_null()).get_column("reject").value_counts()
    by_reason = {r: 0 for r in CLEAN_REJECT_REASONS}
    by_reason.update(dict(zip(rejected_counts["reject"].to_list(), rejected_counts["count"].to_list(), strict=True)))

    valid = parsed.filter(pl.col("reject").is_null()).select("inst", "ts", *VALUE_COLUMNS, "source", "recv_ts")
    kept, duplicates, conflicts = deduplicate(valid)
    kept = kept.select("inst", *[pl.col(c).cast(t) for c, t in CLEAN_SCHEMA.items()])

    per_inst = kept.group_by("inst").len().sort("inst")
    per_source = kept.group_by("source").len().sort("source")
    stats: dict[str, Any] = {
        "day": day.isoformat(),
        "rows_read": parsed.height,
        "kept": kept.height,
        "duplicates": duplicates,
        "conflicts": conflicts,
        "rejected_total": sum(by_reason.values()),
        "rejected": by_reason,
        "kept_by_source": dict(zip(per_source["source"].to_list(), per_source["len"].to_list(), strict=True)),
        "instruments": dict(zip(per_inst["inst"].to_list(), per_inst["len"].to_list(), strict=True)),
    }
    return kept, stats


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_directory(new: Path, target: Path) -> None:
    """Move the fully written directory ``new`` to ``target``, replacing any old ``target``.

    Readers must never see a half-written directory: ``target`` is swapped in one atomic
    exchange where the kernel allows it, else by two renames (``target`` is then missing for
    an instant, but never partial). ``new`` must be on the same filesystem (build it beside).
    """
    if not target.exists():
        os.replace(new, target)
        return
    if _renameat2_exchange(new, target):
        shutil.rmtree(new)  # now holds the previous version
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_instrument_files(bars: pl.DataFrame, out_dir: Path) -> None:
    """Write one Parquet per instrument into a fresh directory, then swap it into place.

    Building beside ``out_dir`` and swapping means a reader (or a crashed re-run) never sees a
    day with some instruments missing, and files of instruments no longer present disappear.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for (inst,), part in bars.partition_by("inst", as_dict=True, maintain_order=True).items():
            part.drop("inst").write_parquet(tmp / f"{inst_path_stem(inst)}.parquet", statistics=True)
        tmp.chmod(0o755)  # mkdtemp creates 0700
        replace_directory(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_day(*, shard_paths: list[Path], day: dt.date, out_dir: Path, quality_path: Path) -> dict[str, Any]:
    """Clean day ``day`` from the given candle1m shards; return the quality report it writes.

    ``shard_paths``: sealed ``raw/ws/candle1m/<day>/<HH>/*.jsonl``, hour 00 of the next day and
    ``raw/rest/candle1m/<day>.jsonl`` (may be empty). ``out_dir`` (``clean/<day>``) always
    exists afterwards, empty when there is no data, so Snakemake's directory output is made.
    """
    paths = sorted(Path(p) for p in shard_paths or [])
    records, malformed = read_raw_records(paths)
    bars, stats = clean_candles(records, day)
    _write_instrument_files(bars, Path(out_dir))
    quality = {"files": len(paths), "malformed_lines": malformed, **stats}
    write_json(quality, Path(quality_path))
    rejected = {k: v for k, v in quality["rejected"].items() if v}
    log.info(
        "clean %s: %d files, %d rows read, %d kept (%d instruments), %d duplicates, %d conflicts, "
        "%d malformed lines, rejected %s",
        day, len(paths), quality["rows_read"], quality["kept"], len(quality["instruments"]),
        quality["duplicates"], quality["conflicts"], malformed, rejected,
    )  # fmt: skip
    return quality
