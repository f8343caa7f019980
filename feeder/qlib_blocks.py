"""Day blocks: one day of one frequency as dense, calendar-aligned float32 rows.

Each resample job also writes its day as a *day block* (:func:`day_block`, an Arrow IPC file);
the Qlib export (feeder.qlib_export) concatenates the blocks into bins, a byte copy per day and
instrument, never a re-read of the bars. So adding one day to a year does not rewrite the
year's work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from feeder.atomic import write_atomically
from feeder.registry import DAY_MS, MINUTE_MS, check_fields, day_start_ms, freq_minutes, slots_per_day

if TYPE_CHECKING:
    import numpy as np

__all__ = ["block_instruments", "copy_block_rows", "day_block", "write_block", "write_day_blocks"]


def day_block(bars: pl.DataFrame, *, day: dt.date, freq: str, fields: Sequence[str]) -> pl.DataFrame:
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
        (pl.col("ts").cast(pl.Datetime("ms")).cast(pl.Int64) - day_start_ms(day)).alias("offset"),
        *[pl.col(f).cast(pl.Float32).fill_null(float("nan")) for f in columns if f != "factor"],
    )
    off_grid, outside = frame.select(
        (pl.col("offset") % step_ms != 0).any(),
        ((pl.col("offset") < 0) | (pl.col("offset") >= DAY_MS)).any().alias("outside"),
    ).row(0)
    if off_grid:
        raise ValueError(f"{freq} bars of {day} not aligned on the {step_ms // MINUTE_MS}-minute calendar grid")
    if outside:
        raise ValueError(f"{freq} bars outside {day} in that day's bars (resample writes one file per UTC day)")
    # Built with polars alone (each field's NaN-filled day, its bars scattered into their slots):
    # the resample job then imports neither pyarrow (pa.array() would also import pandas) nor
    # numpy, 56 ms of a job's start-up (measured).
    names = frame["inst"].unique().sort()
    positions = frame.select(
        pl.col("inst").cast(pl.Enum(names)).to_physical().cast(pl.Int64) * spd + pl.col("offset") // step_ms
    ).to_series()
    if positions.n_unique() != positions.len():  # on the grid and inside the day: a slot per (inst, ts)
        raise ValueError(f"duplicate (inst, ts) {freq} bars on {day}")
    out = [names]
    empty_day = pl.repeat(float("nan"), len(names) * spd, dtype=pl.Float32, eager=True)
    for field in columns:
        dense = empty_day.clone().alias(field)
        dense.scatter(positions, 1.0 if field == "factor" else frame[field])
        out.append(dense.reshape((len(names), spd)))
    return pl.DataFrame(out)


def write_block(block: pl.DataFrame, path: Path) -> None:
    """Arrow IPC file, uncompressed and in one record batch, so the export can memory-map it and
    read only the rows it needs (``field``: a fixed-size list of the day's slots per instrument)."""
    write_atomically(Path(path), lambda tmp: block.rechunk().write_ipc(
        tmp, compression="uncompressed", compat_level=pl.CompatLevel.oldest()))


def write_day_blocks(
    frames: dict[str, pl.DataFrame], *, day: dt.date, fields: Sequence[str], out_paths: dict[str, Path]
) -> None:
    """The resample job's second output: each frequency's bars of ``day`` as a day block."""
    fields = check_fields(fields)
    for freq, path in out_paths.items():
        write_block(day_block(frames[freq], day=day, freq=freq, fields=fields), path)


def _pyarrow() -> Any:
    """pyarrow with its IPC reader: imported by the export's readers only (see :func:`day_block`)."""
    import pyarrow as pa
    import pyarrow.ipc  # noqa: F401  (pa.ipc)

    return pa


def block_instruments(path: Path) -> list[str]:
    """The instruments of a day block, in row order."""
    pa = _pyarrow()
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all().column("inst").to_pylist()


def copy_block_rows(path: Path, names: list[str], spd: int, field: str, rows_of: dict[str, int],
                     out: np.ndarray, day_index: int) -> None:
    """Copy ``field`` of the instruments in ``rows_of`` into ``out[row, day's slots]``.

    ``names``: the block's instruments in row order (read once per export, not per pass).
    The file is memory-mapped: only the pages of this field's wanted rows are read, and they
    are unmapped again before the next day (resident memory stays one buffer, not the history).
    """
    import numpy as np  # the export's side only: the resample job never imports numpy

    picked = [(r, rows_of[name]) for r, name in enumerate(names) if name in rows_of]
    if not picked:
        return
    rows, targets = np.array([p[0] for p in picked]), np.array([p[1] for p in picked])
    pa = _pyarrow()
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
