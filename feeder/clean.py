"""Clean one UTC day of raw 1-minute candles into per-instrument Parquet files.

One Snakemake job per day: it reads the day's shards once (WebSocket hours 00-23 of day D,
hour 00 of D+1 because shards are partitioned by *receipt* hour, and the REST backfill file),
keeps the bars that open inside D, deduplicates and validates them, and writes
``clean/<D>/<instId>.parquet`` plus ``quality/<D>.json`` (see docs/ARCHITECTURE.md).

Accounting invariant (tested): ``rows_read == kept + duplicates + rejected_total``, where a row
is one raw record (one candle) and bars of other days are rejected as ``outside_day`` (so each
day's reasons describe that day's bars). Lines that are not records at all (not JSON, not an
object, or fields of the wrong JSON type) are not rows: they are counted in ``malformed_lines``.

Validation is feeder.checks.validate_candles, the same code the backfill uses to decide which
minutes the stream has: a candle cleaning rejects is never counted as streamed, so its minute is
fetched from REST.

Deduplication policy, natural key ``(inst, ts)``: REST beats WebSocket (REST history is the
exchange's archived value, WebSocket may have been caught mid-reconnect); within one source the
copy received last wins (the latest state the exchange published); remaining ties are broken on
the values so the result never depends on input order. ``duplicates`` counts the discarded
copies; ``conflicts`` counts keys whose copies disagree on any of open/high/low/close/volume/amount
(the ``conflict`` flags below; a spike REST corrected counts as a spike only).

Flags (:func:`flag_bars`, listed in the quality JSON under ``flags`` and logged at WARNING): a
conflict, an implausible streamed bar (a spike) and a bar of an instrument that was not listed
are never decided by this module alone. The backfill fetches conflicting and implausible
minutes from REST (feeder.checks.stream_suspects), the exchange's copy is kept, and each flag
says how it was resolved: ``rest``/``unresolved`` for conflicts, ``confirmed`` (REST agrees:
a real wick is kept), ``corrected`` (REST differs) or ``unverified`` (no REST copy) otherwise.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_json
from feeder.checks import (
    CANDLE_CHANNEL,
    DEFAULT_SPIKE_FACTOR,
    RECORD_REJECT_REASONS,
    VALUE_COLUMNS,
    conflict_keys,
    deduplicate,
    kept_copies,
    rank_copies,
    stream_suspects,
    stream_view,
    validate_candles,
)
from feeder.identifiers import inst_path_stem
from feeder.raw import RAW_SCHEMA, read_raw_records, reason_counts
from feeder.registry import EXCHANGE_COPIES

log = logging.getLogger(__name__)

__all__ = [
    "CANDLE_CHANNEL",
    "CLEAN_SCHEMA",
    "FLAG_CHECKS",
    "FLAG_RESOLUTIONS",
    "VALUE_COLUMNS",
    "clean_candles",
    "clean_day",
    "deduplicate",
    "flag_bars",
    "flags_json",
    "read_instruments",
    "replace_directory",
]

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


# Reasons clean reports, in reporting order (feeder.checks.validate_candles decides them).
CLEAN_REJECT_REASONS: tuple[str, ...] = RECORD_REJECT_REASONS


# --------------------------------------------------------------------------------------------
# Cleaning (pure)
# --------------------------------------------------------------------------------------------


FLAG_CHECKS: tuple[str, ...] = ("conflict", "spike", "not_listed")
FLAG_RESOLUTIONS: tuple[str, ...] = ("exchange", "unresolved", "confirmed", "corrected", "unverified")
MAX_FLAG_LOG_LINES = 50  # WARNING lines per day; the quality JSON lists every flag

_FLAG_SCHEMA: dict[str, pl.DataType] = {
    "check": pl.Utf8(), "inst": pl.Utf8(), "ts": pl.Datetime("ms"), "resolution": pl.Utf8(), "detail": pl.Utf8(),
}


def _versions(valid: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """Per key of ``keys``: every distinct (source, values) among its valid copies, with copy counts."""
    return (
        valid.join(keys.select("inst", "ts").unique(), on=["inst", "ts"], how="semi")
        .group_by("inst", "ts", "source", *VALUE_COLUMNS)
        .agg(pl.len().alias("copies"))
        .sort("inst", "ts", "source", *VALUE_COLUMNS, nulls_last=True)
        .group_by("inst", "ts", maintain_order=True)
        .agg(pl.struct("source", *VALUE_COLUMNS, "copies").alias("values"))
    )


def _stream_against_rest(valid: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """``keys`` (inst, ts, ...) plus ``resolution``: what the exchange's REST copy says of the stream's bar.

    ``confirmed``: REST has the same values as the stream (or the bar came from REST only);
    ``corrected``: REST differs, and its copy is the one kept; ``unverified``: no REST copy.
    """
    ws = stream_view(valid).select("inst", "ts", *[pl.col(c).alias(f"_ws_{c}") for c in VALUE_COLUMNS],
                                   _ws=pl.lit(True))
    rest = deduplicate(valid.filter(pl.col("source").is_in(EXCHANGE_COPIES)))[0].select(
        "inst", "ts", *[pl.col(c).alias(f"_rest_{c}") for c in VALUE_COLUMNS], _rest=pl.lit(True))
    same = ~pl.any_horizontal([pl.col(f"_ws_{c}").ne_missing(pl.col(f"_rest_{c}")) for c in VALUE_COLUMNS])
    resolution = (
        pl.when(pl.col("_rest").is_null()).then(pl.lit("unverified"))
        .when(pl.col("_ws").is_null() | same).then(pl.lit("confirmed"))
        .otherwise(pl.lit("corrected"))
    )
    return (
        keys.join(ws, on=["inst", "ts"], how="left").join(rest, on=["inst", "ts"], how="left")
        .with_columns(resolution.alias("resolution"))
        .select(*keys.columns, "resolution")
    )


def _listing_problems(kept: pl.DataFrame, instruments: pl.DataFrame) -> pl.DataFrame:
    """(inst, ts, detail) of kept bars of an instrument absent from the list, or outside [listTime, expTime)."""
    listing = instruments.select(
        pl.col("instId").cast(pl.Utf8).alias("inst"),
        pl.col("listTime").cast(pl.Int64, strict=False).cast(pl.Datetime("ms")).alias("_list"),
        pl.col("expTime").cast(pl.Int64, strict=False).cast(pl.Datetime("ms")).alias("_exp"),
        pl.lit(True).alias("_known"),
    ).unique("inst", keep="last")
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    detail = (
        pl.when(pl.col("_known").is_null()).then(pl.lit("absent from the instrument list"))
        .when(pl.col("ts") < pl.col("_list")).then(pl.format("before listTime {}", pl.col("_list").dt.strftime(fmt)))
        .when(pl.col("ts") >= pl.col("_exp")).then(pl.format("at or after expTime {}", pl.col("_exp").dt.strftime(fmt)))
    )
    return (
        kept.select("inst", "ts").join(listing, on="inst", how="left")
        .with_columns(detail.alias("detail"))
        .filter(pl.col("detail").is_not_null())
        .select("inst", "ts", "detail")
    )


def flag_bars(
    *,
    valid: pl.DataFrame,
    kept: pl.DataFrame,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
    instruments: pl.DataFrame | None = None,
    ranked: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every bar cleaning must report, with how it was resolved; one row per (check, inst, ts).

    ``valid``: all usable copies (inst, ts, VALUE_COLUMNS, source, recv_ts); ``kept``: the
    deduplicated bars. Checks (FLAG_CHECKS):

    * ``conflict``: valid copies of one bar disagree. Resolution ``exchange`` when the exchange's
      own copy decided (from the archive, or from REST: the backfill fetches such minutes), ``unresolved`` when there is none
      (the last copy received is kept, as before). A bar flagged below whose stream copies agree
      and which REST corrected is not listed again as a conflict (its resolution says it).
    * ``spike``: the stream's bar is implausible (feeder.checks.stream_suspects, the same rule
      the backfill uses to fetch it). ``confirmed`` when REST has the same bar (a real wick: it
      is kept), ``corrected`` when REST differs (REST's copy is kept), ``unverified`` without REST.
    * ``not_listed``: a bar of an instrument absent from ``instruments`` (the OKX instrument list,
      columns instId/listTime/expTime), or outside its [listTime, expTime). Resolved like spikes.
      Skipped when ``instruments`` is None or empty (nothing known to check against).

    Columns: check, inst, ts, resolution, detail, ``values`` (every distinct copy: source, values,
    number of copies) and ``kept`` (the bar that went into the output). Nothing is dropped here.
    ``ranked``: ``rank_copies(valid)`` when the caller has it (it is sorted once per day).
    """
    ranked = rank_copies(valid) if ranked is None else ranked
    suspects = stream_suspects(valid, spike_factor=spike_factor, ranked=ranked)
    checked = [suspects.filter(pl.col("check") == "spike").select(
        "check", "inst", "ts",
        pl.format("jump of {} typical ranges (limit {})", pl.col("score").round(1), pl.lit(spike_factor))
        .alias("detail"),
    )]
    if instruments is not None and instruments.height:
        checked.append(_listing_problems(kept, instruments).select(pl.lit("not_listed").alias("check"), "inst", "ts",
                                                                   "detail"))
    others = pl.concat(checked, how="vertical")
    others = (_stream_against_rest(valid, others) if others.height
              else others.with_columns(pl.lit(None, pl.Utf8).alias("resolution")))
    # A flagged bar REST corrected differs from its REST copy by definition: that is reported once,
    # as `corrected`, not again as a conflict, unless the stream's own copies disagree as well.
    corrected_only = others.select("inst", "ts").join(
        suspects.filter(pl.col("check") == "conflict"), on=["inst", "ts"], how="anti")
    conflicts = conflict_keys(ranked).join(corrected_only, on=["inst", "ts"], how="anti")
    rest_keys = valid.filter(pl.col("source").is_in(EXCHANGE_COPIES)).select("inst", "ts").unique().with_columns(_r=pl.lit(True))
    conflict_rows = conflicts.join(rest_keys, on=["inst", "ts"], how="left").select(
        pl.lit("conflict").alias("check"), "inst", "ts",
        pl.when(pl.col("_r")).then(pl.lit("exchange")).otherwise(pl.lit("unresolved")).alias("resolution"),
        pl.lit(None, pl.Utf8).alias("detail"),
    )
    flags = pl.concat([f.select(list(_FLAG_SCHEMA)).cast(_FLAG_SCHEMA)  # type: ignore[arg-type]
                       for f in (conflict_rows, others)])
    if flags.is_empty():
        return flags.with_columns(
            pl.lit(None, pl.List(pl.Struct({"source": pl.Utf8, **{c: pl.Float64 for c in VALUE_COLUMNS},
                                            "copies": pl.UInt32}))).alias("values"),
            pl.lit(None, pl.Struct({"source": pl.Utf8, **{c: pl.Float64 for c in VALUE_COLUMNS}})).alias("kept"),
        )
    kept_values = kept.select("inst", "ts", pl.struct("source", *VALUE_COLUMNS).alias("kept"))
    return (
        flags.join(_versions(valid, flags), on=["inst", "ts"], how="left")
        .join(kept_values, on=["inst", "ts"], how="left")
        .sort("inst", "ts", "check")
    )


def flags_json(flags: pl.DataFrame) -> list[dict[str, Any]]:
    """Flags as the quality JSON lists them: ``minute`` (ISO, UTC) instead of ``ts``."""
    return flags.select(
        "check", "inst", pl.col("ts").dt.strftime("%Y-%m-%dT%H:%MZ").alias("minute"), "resolution", "detail",
        "values", "kept",
    ).to_dicts()


def clean_candles(
    records: pl.DataFrame,
    day: dt.date,
    *,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
    instruments: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Validate, restrict to ``day``, deduplicate raw candle records and flag what needs a look.

    ``records`` follows RAW_SCHEMA (``channel``, ``recv_ts`` optional). Returns the kept bars
    (``inst`` + CLEAN_SCHEMA columns, sorted by inst then ts, unique on (inst, ts), every ts
    inside ``day``) and the counts for the quality report, with ``flags`` (see :func:`flag_bars`;
    ``instruments`` is the OKX instrument list for the ``not_listed`` check).
    """
    parsed = validate_candles(records, day=day)
    by_reason = reason_counts(parsed, reasons=CLEAN_REJECT_REASONS)

    valid = parsed.filter(pl.col("reject").is_null()).select("inst", "ts", *VALUE_COLUMNS, "source", "recv_ts")
    ranked = rank_copies(valid)
    kept = kept_copies(ranked)
    duplicates = valid.height - kept.height
    flags = flag_bars(valid=valid, kept=kept, spike_factor=spike_factor, instruments=instruments, ranked=ranked)
    kept = kept.select("inst", *[pl.col(c).cast(t) for c, t in CLEAN_SCHEMA.items()])

    per_inst = kept.group_by("inst").len().sort("inst")
    per_source = kept.group_by("source").len().sort("source")
    flag_counts: dict[str, dict[str, int]] = {}
    for check, resolution, n in flags.group_by("check", "resolution").len().sort("check", "resolution").iter_rows():
        flag_counts.setdefault(check, {})[resolution] = n
    stats: dict[str, Any] = {
        "day": day.isoformat(),
        "rows_read": parsed.height,
        "kept": kept.height,
        "duplicates": duplicates,
        "conflicts": flags.filter(pl.col("check") == "conflict").height,
        "rejected_total": sum(by_reason.values()),
        "rejected": by_reason,
        "kept_by_source": dict(zip(per_source["source"].to_list(), per_source["len"].to_list(), strict=True)),
        "instruments": dict(zip(per_inst["inst"].to_list(), per_inst["len"].to_list(), strict=True)),
        "checks": {"spike_factor": spike_factor, "listing": instruments is not None and instruments.height > 0},
        "flag_counts": flag_counts,
        "flags": flags_json(flags),
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
            # lz4, not polars' default zstd: a day's 50 files in 82 ms against 131 ms (one thread),
            # 3.5 MB against 2.8 MB; they are the workflow's own intermediate files
            part.drop("inst").write_parquet(tmp / f"{inst_path_stem(inst)}.parquet", statistics=True,
                                            compression="lz4")
        tmp.chmod(0o755)  # mkdtemp creates 0700
        replace_directory(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_RESOLUTION_TEXT = {
    "exchange": "kept the exchange's copy (REST or archive)",
    "unresolved": "no REST copy: kept the copy received last; if the backfill failed for this day run the "
                  "workflow again (only members are fetched, and the exchange may have no candle there)",
    "confirmed": "REST has the same bar: kept (a real move)",
    "corrected": "REST differs: kept the exchange's REST copy",
    "unverified": "no REST copy to check against: kept as streamed; if the backfill failed for this day run "
                  "the workflow again, else check the bar and the instrument on the exchange",
}


def _copy_text(copy: dict[str, Any]) -> str:
    values = "/".join("" if copy[c] is None else f"{copy[c]:g}" for c in VALUE_COLUMNS)
    return f"{copy['source']} {values}" + (f" x{copy['copies']}" if copy.get("copies", 1) > 1 else "")


def log_flags(flags: list[dict[str, Any]], *, day: dt.date, limit: int = MAX_FLAG_LOG_LINES) -> None:
    """One WARNING per flag (at most ``limit``, then one line with the rest's count)."""
    for flag in flags[:limit]:
        copies = "; ".join(_copy_text(c) for c in flag["values"] or [])
        log.warning(
            "clean %s %s %s: %s%s; copies (o/h/l/c/vol/amount): %s; resolution %s: %s",
            day, flag["inst"], flag["minute"], flag["check"], f" ({flag['detail']})" if flag["detail"] else "",
            copies, flag["resolution"], _RESOLUTION_TEXT.get(flag["resolution"], ""),
        )  # fmt: skip
    if len(flags) > limit:
        log.warning("clean %s: %d more flagged bars, all listed under 'flags' in the quality JSON",
                    day, len(flags) - limit)


def read_instruments(path: Path | None) -> pl.DataFrame | None:
    """The OKX instrument list (``reference/instruments/<day>.parquet``) as instId/listTime/expTime, or None."""
    if path is None:
        return None
    frame = pl.read_parquet(Path(path))
    missing = [pl.lit(None, pl.Utf8).alias(c) for c in ("instId", "listTime", "expTime") if c not in frame.columns]
    return frame.with_columns(missing).select("instId", "listTime", "expTime")


def clean_day(
    *,
    shard_paths: list[Path],
    day: dt.date,
    out_dir: Path,
    quality_path: Path,
    instruments_path: Path | None = None,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
) -> dict[str, Any]:
    """Clean day ``day`` from the given candle1m shards; return the quality report it writes.

    ``shard_paths``: sealed ``raw/ws/candle1m/<day>/<HH>/*.jsonl``, hour 00 of the next day and
    ``raw/rest/candle1m/<day>.jsonl`` (may be empty). ``out_dir`` (``clean/<day>``) always
    exists afterwards, empty when there is no data, so Snakemake's directory output is made.
    ``instruments_path``: the instrument list for the ``not_listed`` check (skipped without it);
    ``spike_factor``: config ``clean.spike_factor``, the same value the backfill was given.
    """
    paths = sorted(Path(p) for p in shard_paths or [])
    records, malformed = read_raw_records(paths, RAW_SCHEMA)
    instruments = read_instruments(instruments_path)
    bars, stats = clean_candles(records, day, spike_factor=spike_factor, instruments=instruments)
    _write_instrument_files(bars, Path(out_dir))
    quality = {"files": len(paths), "malformed_lines": malformed, **stats}
    write_json(quality, Path(quality_path))
    rejected = {k: v for k, v in quality["rejected"].items() if v}
    log_flags(quality["flags"], day=day)
    log.info(
        "clean %s: %d files, %d rows read, %d kept (%d instruments), %d duplicates, %d conflicts, "
        "%d malformed lines, rejected %s, flagged %s",
        day, len(paths), quality["rows_read"], quality["kept"], len(quality["instruments"]),
        quality["duplicates"], quality["conflicts"], malformed, rejected, quality["flag_counts"],
    )  # fmt: skip
    return quality
