"""Qlib's on-disk format: feature bins, calendars, instrument spans (pure functions).

The format as Qlib 0.9.7 reads it, and the traps avoided on purpose:

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
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from feeder.registry import freq_minutes

__all__ = [
    "DAY_FORMAT",
    "INTRADAY_FORMAT",
    "MAX_SLOTS",
    "SPAN_END",
    "SPAN_START",
    "calendar_frame",
    "decode_feature",
    "dense_series",
    "encode_feature",
    "membership_spans",
    "span_text",
    "write_tsv",
]

DAY_FORMAT = "%Y-%m-%d"
INTRADAY_FORMAT = "%Y-%m-%d %H:%M:%S"
SPAN_START = dt.time(0, 0)
SPAN_END = dt.time(23, 59)
# float32 represents every integer up to 2**24 exactly: the start index must survive the trip.
MAX_SLOTS = 2**24


# --------------------------------------------------------------------------------------------
# The bin format
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


def span_text(day: pl.Expr, time: dt.time) -> pl.Expr:
    """``<day> HH:MM:SS``: an instrument span's start or end as Qlib reads it."""
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
            span_text(pl.col("first"), SPAN_START).alias("start"),
            span_text(pl.col("last"), SPAN_END).alias("end"),
        )
    )
    return members.collect()


def write_tsv(frame: pl.DataFrame, path: Path) -> None:
    """A calendar or instrument file as Qlib reads it: tab-separated, no header, no quoting."""
    frame.write_csv(path, include_header=False, separator="\t", quote_style="never")
