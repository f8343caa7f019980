"""Assemble a Qlib provider directory (calendars, instruments, feature bins) from day blocks.

The format is feeder.qlib_format; the day blocks, which each resample job writes for its day,
are feeder.qlib_blocks: the export concatenates them (:func:`assemble_qlib`), a byte copy per
day and instrument, never a re-read of the bars. :func:`export_day_blocks` is what the
workflow's ``qlib`` rule calls (then ``publish_qlib`` publishes it with feeder.publish);
:func:`export_qlib` is the one-call form (bar files in, published dataset out) for tests and
the research examples. Both give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feeder.identifiers import inst_path_stem
from feeder.publish import check_publish_target, publish_dataset
from feeder.qlib_blocks import block_instruments, copy_block_rows, day_block, write_block
from feeder.qlib_format import (
    SPAN_END,
    SPAN_START,
    calendar_frame,
    encode_feature,
    membership_spans,
    slots_per_day,
    span_text,
    write_tsv,
)
from feeder.registry import check_fields, check_market_name, freq_minutes, qlib_fields

log = logging.getLogger(__name__)

__all__ = [
    "ASSEMBLY_BUDGET_BYTES",
    "DEFAULT_FIELDS",
    "assemble_qlib",
    "export_day_blocks",
    "export_qlib",
    "read_membership",
]

#: The fields exported with the default collector channels (feeder.registry.qlib_fields).
DEFAULT_FIELDS: tuple[str, ...] = tuple(qlib_fields())
#: Bytes of float32 values the assembly holds at once (bounds peak memory whatever the history
#: length: a longer history means more, smaller instrument batches, not a bigger buffer).
ASSEMBLY_BUDGET_BYTES = 256 * 2**20


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
    write_tsv(calendar, out_dir / "calendars" / f"{freq}.txt")
    n_slots = calendar.height
    inside = {day: path for day, path in sorted(blocks.items()) if first_day <= day <= last_day}
    listing = {day: block_instruments(path) for day, path in inside.items()}
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
                copy_block_rows(path, listing[day], spd, field, rows_of, buffer, (day - first_day).days)

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
    check_market_name(market_name)
    fields = check_fields(fields)
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
            span_text(pl.lit(first_day) + pl.duration(days=pl.col("first")), SPAN_START).alias("start"),
            span_text(pl.lit(first_day) + pl.duration(days=pl.col("last")), SPAN_END).alias("end"),
        )
        if data_days
        else pl.DataFrame(schema={"inst": pl.Utf8, "start": pl.Utf8, "end": pl.Utf8})
    )
    write_tsv(all_spans, out_dir / "instruments" / "all.txt")
    market = membership_spans(membership, first_day, last_day)
    write_tsv(market, out_dir / "instruments" / f"{market_name.lower()}.txt")
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
    check_market_name(market_name)
    fields = check_fields(fields)
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


def read_membership(universe_paths: Sequence[Path]) -> pl.DataFrame:
    """Point-in-time membership from the daily universe files (only day/inst/member are read)."""
    schema = {"day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean}
    if not universe_paths:
        return pl.DataFrame(schema=schema)
    return pl.scan_parquet([Path(p) for p in universe_paths]).select(
        [pl.col(c).cast(t) for c, t in schema.items()]).collect()


def export_day_blocks(
    *,
    blocks: dict[str, dict[dt.date, Path]],
    universe_paths: Sequence[Path],
    days: Sequence[dt.date],
    market_name: str,
    out_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """The ``qlib`` rule's build: day blocks (freq → day → file) and daily universe files → ``out_dir``.

    Like :func:`assemble_qlib`, with the point-in-time membership read from the universe files
    and the summary of :func:`export_qlib` (a day block holds its own day only, so no bar is
    ever outside the calendar).
    """
    summary = assemble_qlib(blocks=blocks, days=list(days), membership=read_membership(universe_paths),
                            market_name=market_name, out_dir=Path(out_dir), fields=fields)
    for freq in blocks:
        summary["freqs"][freq]["bars_outside_calendar"] = 0
    return summary
