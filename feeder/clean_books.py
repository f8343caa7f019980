"""Cleaning order books: per-minute sums of the book features from the ``books5`` channel (optional).

Only used when ``collector.channels`` includes ``books5``. One job per UTC day reads the day's
book shards plus the last hour(s) of the day before (a book seen at 23:59:30 is still the state
at 00:00:10) and writes, per instrument and minute, the SUMS over the minute's seconds with a
book of each feature and the number of those seconds. feeder.resample divides the sums of a
bar's minutes by their seconds, so every frequency is the mean over all covered seconds of the
bar, never a mean of minute means.

The rules (docs/fields.md, "Order-book fields"):

* One sample per second: of the books with ``ts // 1000 == s``, the one with the greatest
  (``ts``, ``seqId``) (the collector already keeps only that one; copies from overlapping
  writers are exact duplicates and are dropped).
* The state at second s is the sample of the greatest s' <= s having one, if
  ``s - s' < max_age_s``; else there is no book at s. A sample whose bids or asks are empty or
  whose best ask <= best bid is unusable: the seconds whose state it is have no book (it is
  not skipped in favour of an older book).
* Per-second values from the state book (floats from the exchange's strings): ``spread_bps =
  (ask1 - bid1) / mid * 1e4``; ``depth_bid_25bps`` / ``depth_ask_25bps`` = base-coin quantity
  of the levels within 25 bps of the mid; ``imbalance = (Σbid - Σask) / (Σbid + Σask)`` over
  the (at most 5) levels. Quantity: SPOT ``sz``; linear SWAP/FUTURES ``sz × ctVal``; inverse
  contracts ``sz × ctVal / px`` (ctVal is USD).
* Point-in-time: a book belongs to the second of its ``ts``, so a book with ``ts >= close``
  never reaches a bar ending at ``close``.

The state of a sample lasts from its second to the next sample's second, at most ``max_age_s``
seconds: each sample is a run of identical seconds on the 1-second grid, so the sums are the
run's length times the sample's values, split over the minutes the run crosses.

Memory: a day of sampled books for the top-50 universe is 4.3 M books, ~2 GB of JSON. The job
reads and parses one shard (one receipt hour) at a time and keeps of each valid book only a
compact row (:data:`COMPACT_BOOK_SCHEMA`, ~70 bytes: key, receipt, a hash of its levels and the
per-second values); rows read and rejects add up shard by shard. Dedup, the last book of each
second and the sums need the whole day (the same book can sit in two shards; a second's books
can straddle two receipt hours), so they run over the compact rows once every shard is in, and
give byte for byte what one frame of all the records would give.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from feeder.clean_trades import contract_values
from feeder.okx import inst_type_expr
from feeder.raw import (
    RAW_SCHEMA,
    cleaning_stats,
    deduplicate_by_key,
    read_raw_records,
    reason_counts,
    write_cleaned,
)
from feeder.registry import DAY_MS, EXCHANGE_COPIES, day_start_ms
from feeder.shards import previous_day_hours

log = logging.getLogger(__name__)

__all__ = [
    "BOOKS_CHANNEL",
    "BOOK_FEATURES",
    "BOOK_MINUTES_SCHEMA",
    "BOOK_RAW_SCHEMA",
    "COMPACT_BOOK_SCHEMA",
    "DEFAULT_MAX_AGE_S",
    "BookTally",
    "book_day_reject",
    "book_minutes",
    "book_samples",
    "books_from_tally",
    "books_of_day",
    "clean_books_day",
    "parse_books",
    "previous_day_hours",
]

BOOKS_CHANNEL = "books5"
#: Levels per side a ``books5`` book has; extra levels (none on OKX's wire) are ignored.
BOOK_LEVELS = 5
#: The depth band: levels within 25 bps (0.25 %) of the mid.
DEPTH_BAND = 25e-4
#: Default of config ``books.max_age_s``: how long a book stays the state without a newer one.
#: OKX re-sends an unchanged book about every 60 s.
DEFAULT_MAX_AGE_S = 60
#: The four per-second features, in the order of the registry (feeder.registry.FIELDS).
BOOK_FEATURES: tuple[str, ...] = ("spread_bps", "depth_bid_25bps", "depth_ask_25bps", "imbalance")

#: The raw record contract with ``data`` as a books5 element: levels are arrays of strings
#: (``[px, sz, "0", orderCount]``); ``seqId`` is a JSON integer (read as its text).
BOOK_RAW_SCHEMA: dict[str, pl.DataType] = {
    **RAW_SCHEMA,
    "data": pl.Struct({
        "asks": pl.List(pl.List(pl.Utf8())),
        "bids": pl.List(pl.List(pl.Utf8())),
        "instId": pl.Utf8(),
        "ts": pl.Utf8(),
        "seqId": pl.Utf8(),
    }),
}  # fmt: skip
#: work/books/<day>.parquet: per instrument and minute (open), the seconds with a book and the
#: sums over those seconds of each feature.
BOOK_MINUTES_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "ts": pl.Datetime("ms"),  # minute open
    "covered_s": pl.Int64(),
    **{f"{name}_sum": pl.Float64() for name in BOOK_FEATURES},
}
# Reject reasons in the order they are checked (the first matching reason is reported).
BOOK_REJECT_REASONS: tuple[str, ...] = (
    "wrong_channel",  # a record of another channel in a books5 shard
    "bad_record",  # no instId
    "unknown_inst_type",  # instId matches no SPOT/SWAP/FUTURES/OPTION pattern
    "missing_ts",  # neither the record's ts nor the element's ts is an epoch-ms integer
    "bad_levels",  # bids or asks absent, or a level (of the first 5) without a finite positive px and sz
    "unknown_contract_value",  # a contract without a usable ctVal in the instrument list (or an option)
    "outside_day",  # its second is after the day, or too old to be the state at the day's first second
)


def _levels(side: str, part: int) -> pl.Expr:
    """Prices (``part`` 0) or sizes (1) of the first BOOK_LEVELS levels of ``side`` as floats (null: unparsable)."""
    return (
        pl.col(side)
        .list.head(BOOK_LEVELS)
        .list.eval(pl.element().list.get(part, null_on_oob=True).str.strip_chars().cast(pl.Float64, strict=False))
    )


def _bad_levels(px: str, sz: str) -> pl.Expr:
    """True when the side is absent or one of its levels has no finite positive price and size."""
    bad = pl.element().is_null() | ~pl.element().is_finite() | (pl.element() <= 0)
    return (
        pl.col(px).is_null()
        | pl.col(px).list.eval(bad).list.any().fill_null(False)
        | pl.col(sz).list.eval(bad).list.any().fill_null(False)
    )


def parse_books(records: pl.DataFrame, contracts: pl.DataFrame) -> pl.DataFrame:
    """Raw books5 records (BOOK_RAW_SCHEMA) → one typed row per record.

    Output: ``inst, source, recv_ts, ts`` (Int64 ms), ``seq_id`` (Int64, null when absent),
    ``levels`` (the book's levels as text, to tell copies apart), ``usable``, the four
    per-second features (null when unusable) and ``reject`` (BOOK_REJECT_REASONS order, null
    for a valid book). An unusable book (empty side, crossed or touching) is valid: it is a
    sample, whose seconds have no book.
    """
    data = records.get_column("data").struct.unnest()
    inst = pl.coalesce(pl.col("inst").str.strip_chars().replace("", None),
                       pl.col("instId").str.strip_chars().replace("", None))  # fmt: skip
    frame = data.with_columns(
        records.get_column("inst"), records.get_column("channel"), records.get_column("source"),
        records.get_column("recv_ts"), records.get_column("ts").alias("_record_ts"),
    ).select(
        inst.alias("inst"),
        inst_type_expr(inst).alias("inst_type"),
        "channel", "source", "recv_ts",
        pl.coalesce(pl.col("_record_ts"), pl.col("ts").str.strip_chars().cast(pl.Int64, strict=False)).alias("ts"),
        pl.col("seqId").str.strip_chars().cast(pl.Int64, strict=False).alias("seq_id"),
        pl.concat_str(pl.col("bids").cast(pl.List(pl.List(pl.Utf8))).list.eval(pl.element().list.join(",")).list.join(";"),
                      pl.col("asks").list.eval(pl.element().list.join(",")).list.join(";"),
                      separator="|", ignore_nulls=True).alias("levels"),
        _levels("bids", 0).alias("bid_px"), _levels("bids", 1).alias("bid_sz"),
        _levels("asks", 0).alias("ask_px"), _levels("asks", 1).alias("ask_sz"),
    )  # fmt: skip
    frame = frame.join(contract_values(contracts), on="inst", how="left", maintain_order="left")
    derivative = pl.col("inst_type").is_in(["SWAP", "FUTURES"])
    inverse = pl.col("ct_type") == "inverse"
    ct_ok = pl.col("ct_val").is_not_null() & pl.col("ct_val").is_finite() & (pl.col("ct_val") > 0)
    known_size = (pl.col("inst_type") == "SPOT") | (derivative & ct_ok)

    def qty(side: str, i: int) -> pl.Expr:
        """Base-coin quantity of level ``i`` of ``side`` (null when the side has fewer levels)."""
        px = pl.col(f"{side}_px").list.get(i, null_on_oob=True)
        sz = pl.col(f"{side}_sz").list.get(i, null_on_oob=True)
        return (pl.when(pl.col("inst_type") == "SPOT").then(sz)
                .when(inverse).then(sz * pl.col("ct_val") / px)
                .otherwise(sz * pl.col("ct_val")))  # fmt: skip

    reject = pl.lit(None, dtype=pl.Utf8)
    for cond, reason in reversed([
        (pl.col("channel").is_not_null() & (pl.col("channel") != BOOKS_CHANNEL), "wrong_channel"),
        (pl.col("inst").is_null(), "bad_record"),
        (pl.col("inst_type").is_null(), "unknown_inst_type"),
        (pl.col("ts").is_null(), "missing_ts"),
        (_bad_levels("bid_px", "bid_sz") | _bad_levels("ask_px", "ask_sz"), "bad_levels"),
        (~known_size, "unknown_contract_value"),
    ]):  # fmt: skip
        reject = pl.when(cond.fill_null(False)).then(pl.lit(reason)).otherwise(reject)
    bid1 = pl.col("bid_px").list.first()
    ask1 = pl.col("ask_px").list.first()
    mid = (ask1 + bid1) / 2
    n_bid, n_ask = pl.col("bid_px").list.len(), pl.col("ask_px").list.len()
    usable = (n_bid > 0) & (n_ask > 0) & (ask1 > bid1)
    # Σ level by level in book order (0.0 for a level outside the band or absent)
    bid_total = pl.sum_horizontal([qty("bid", i).fill_null(0.0) for i in range(BOOK_LEVELS)])
    ask_total = pl.sum_horizontal([qty("ask", i).fill_null(0.0) for i in range(BOOK_LEVELS)])
    low, high = pl.col("_mid") * (1 - DEPTH_BAND), pl.col("_mid") * (1 + DEPTH_BAND)
    bid_band = pl.sum_horizontal([
        pl.when(pl.col("bid_px").list.get(i, null_on_oob=True) >= low).then(qty("bid", i)).otherwise(0.0)
        for i in range(BOOK_LEVELS)])  # fmt: skip
    ask_band = pl.sum_horizontal([
        pl.when(pl.col("ask_px").list.get(i, null_on_oob=True) <= high).then(qty("ask", i)).otherwise(0.0)
        for i in range(BOOK_LEVELS)])  # fmt: skip
    valid_usable = pl.col("reject").is_null() & pl.col("usable")
    return (
        frame.with_columns(reject.alias("reject"), usable.fill_null(False).alias("usable"), mid.alias("_mid"))
        .with_columns(
            pl.when(valid_usable).then((ask1 - bid1) / pl.col("_mid") * 1e4).alias("spread_bps"),
            pl.when(valid_usable).then(bid_band).alias("depth_bid_25bps"),
            pl.when(valid_usable).then(ask_band).alias("depth_ask_25bps"),
            pl.when(valid_usable).then((bid_total - ask_total) / (bid_total + ask_total)).alias("imbalance"),
        )
        .with_columns(pl.col("usable") & pl.col("reject").is_null())
        .select("inst", "source", "recv_ts", "ts", "seq_id", "levels", "usable", *BOOK_FEATURES, "reject")
    )


def book_day_reject(parsed: pl.DataFrame, *, day: dt.date, max_age_s: int) -> pl.DataFrame:
    """Parsed books (:func:`parse_books`) with ``outside_day`` for valid books that cannot matter to ``day``.

    A book outside [first second that can still be the state at 00:00:00, end of day) is counted
    as ``outside_day``; rejected books never become numbers.
    """
    first_s = day_start_ms(day) // 1000 - int(max_age_s) + 1
    end_ms = day_start_ms(day) + DAY_MS
    return parsed.with_columns(
        pl.when(pl.col("reject").is_null() & ((pl.col("ts") // 1000 < first_s) | (pl.col("ts") >= end_ms)))
        .then(pl.lit("outside_day"))
        .otherwise(pl.col("reject"))
        .alias("reject")
    )


#: A valid book once its shard is parsed: the dedup key and order (``inst, ts, seq_id``; source
#: and ``recv_ts``), a hash of its levels text (copies that disagree), and its per-second values.
#: The levels themselves are dropped, so a day of books is ~70 bytes a book, not its JSON.
COMPACT_BOOK_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Categorical(),
    "source": pl.Categorical(),
    "recv_ts": pl.Int64(),
    "ts": pl.Int64(),
    "seq_id": pl.Int64(),
    "levels_hash": pl.UInt64(),
    "usable": pl.Boolean(),
    **{name: pl.Float64() for name in BOOK_FEATURES},
}
_KEY = ["inst", "ts", "seq_id"]
#: Records parsed at once (:meth:`BookTally.add`).
PARSE_ROWS = 32_768


@dataclass
class BookTally:
    """What a day's records have given so far, one shard at a time: rows read, rejects by
    reason, and the compact valid books (:data:`COMPACT_BOOK_SCHEMA`) in read order.

    Rows and rejects are per-record facts, so they add up across shards; dedup and the
    last-of-second choice are not (a book can sit in two shards), so they wait for the day.
    """

    rows: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOOK_REJECT_REASONS, 0))
    books: list[pl.DataFrame] = field(default_factory=list)

    def add(self, records: pl.DataFrame, *, day: dt.date, contracts: pl.DataFrame, max_age_s: int) -> None:
        """Parse raw records (BOOK_RAW_SCHEMA, e.g. one shard's) and keep only their compact form.

        Parsed a slice of PARSE_ROWS records at a time: parsing makes several columns per level,
        so a whole shard at once would cost far more than its records.
        """
        for offset in range(0, records.height, PARSE_ROWS):
            parsed = book_day_reject(parse_books(records.slice(offset, PARSE_ROWS), contracts), day=day,
                                     max_age_s=max_age_s)  # fmt: skip
            self.rows += parsed.height
            for reason, n in reason_counts(parsed, reasons=BOOK_REJECT_REASONS).items():
                self.by_reason[reason] += n
            self.books.append(
                parsed.filter(pl.col("reject").is_null())
                .with_columns(pl.col("levels").hash().alias("levels_hash"))
                .select([pl.col(c).cast(t) for c, t in COMPACT_BOOK_SCHEMA.items()])
            )

    def take_books(self) -> pl.DataFrame:
        """All compact books in read order; the tally lets go of them (the caller owns the memory)."""
        books = pl.concat(self.books, how="vertical") if self.books else pl.DataFrame(schema=COMPACT_BOOK_SCHEMA)
        self.books = []
        return books


def _levels_ties(copies: pl.DataFrame) -> pl.DataFrame:
    """``inst, ts, seq_id, levels_hash`` of copies of one book that dedup orders by their levels text.

    Dedup keeps, per key, the exchange's copy, then the one received last, then the smallest
    levels text. Only copies that agree on the first two and differ in levels need the text
    (the exchange sent two different books under one (ts, seqId) and both arrived in the same
    millisecond): that is rare, so the text is read again for them only (:func:`_levels_ranks`).
    """
    return (
        copies.group_by(*_KEY, pl.col("source").is_in(EXCHANGE_COPIES).alias("_exchange"), "recv_ts")
        .agg(pl.col("levels_hash").unique())
        .filter(pl.col("levels_hash").list.len() > 1)
        .explode("levels_hash")
        .select(*_KEY, "levels_hash")
        .unique()
    )


def _levels_ranks(
    ties: pl.DataFrame, records_again: Iterable[pl.DataFrame], *, contracts: pl.DataFrame
) -> pl.DataFrame:
    """``inst, ts, seq_id, levels_hash, _rank``: the order of the tied copies' levels texts per key."""
    texts = [
        parse_books(records.slice(offset, PARSE_ROWS), contracts)
        .filter(pl.col("reject").is_null())
        .select(pl.col("inst").cast(pl.Categorical()), "ts", "seq_id", "levels",
                pl.col("levels").hash().alias("levels_hash"))
        .join(ties, on=[*_KEY, "levels_hash"], how="semi", nulls_equal=True)
        .unique()
        for records in records_again
        for offset in range(0, records.height, PARSE_ROWS)
    ]  # fmt: skip
    return (
        pl.concat(texts, how="vertical")
        .unique([*_KEY, "levels_hash"])
        .with_columns(pl.col("levels").rank("dense").over(_KEY).cast(pl.UInt32).alias("_rank"))
        .select(*_KEY, "levels_hash", "_rank")
    )


def _repeated(frame: pl.DataFrame, key: Sequence[pl.Expr]) -> pl.Series:
    """True for the rows whose ``key`` may occur more than once (a superset: hash collisions included).

    Hashes the key and sorts the hashes (16 bytes a row) instead of grouping the key itself,
    which for a day of books costs hundreds of MB. Callers treat the flagged rows exactly, so a
    collision costs time, never a wrong row.
    """
    hashes = frame.select(pl.struct(*key).hash()).to_series()
    ordered = hashes.sort()
    again = ordered.filter((ordered == ordered.shift(1)) | (ordered == ordered.shift(-1))).unique()
    return hashes.is_in(again.implode())


def _deduplicate_books(
    books: pl.DataFrame, *, records_again: Callable[[], Iterable[pl.DataFrame]], contracts: pl.DataFrame
) -> tuple[pl.DataFrame, int, int]:
    """feeder.raw.deduplicate_by_key on compact books: (kept, duplicates, conflicts).

    Only books whose key may occur more than once are sorted; the levels text is stood for by
    its 64-bit hash (equal texts, equal hashes; two different texts of one key would have to
    collide to be counted as one) and, where copies tie before it, by its rank.
    """
    repeated = _repeated(books, [pl.col(c) for c in _KEY])
    if not repeated.any():
        return books, 0, 0
    copies = books.filter(repeated)
    ties = _levels_ties(copies)
    if ties.is_empty():
        copies = copies.with_columns(pl.lit(0, dtype=pl.UInt32).alias("_rank"))
    else:
        ranks = _levels_ranks(ties, records_again(), contracts=contracts)
        copies = copies.join(ranks, on=[*_KEY, "levels_hash"], how="left", nulls_equal=True, maintain_order="left")
        copies = copies.with_columns(pl.col("_rank").fill_null(0))
    kept, duplicates, conflicts = deduplicate_by_key(copies, key=_KEY, values=["_rank", "levels_hash"])
    return pl.concat([books.filter(~repeated), kept.drop("_rank")], how="vertical"), duplicates, conflicts


def book_samples(books: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Valid books (deduplicated) → one sample per (inst, second): the greatest (ts, seqId).

    Returns (``inst, sec, usable`` + the features, in no particular order; the number of books
    a later book of the same second replaced). Only the books that share a second with another
    one are sorted (the collector already keeps one book a second), so a day of books is not
    copied whole.
    """
    columns = [pl.col("inst"), (pl.col("ts") // 1000).alias("sec"), pl.col("usable"), *map(pl.col, BOOK_FEATURES)]
    shared = _repeated(books, [pl.col("inst"), pl.col("ts") // 1000])
    if not shared.any():
        return books.select(columns), 0
    latest = (
        books.filter(shared)
        .with_columns((pl.col("ts") // 1000).alias("sec"))
        .sort("inst", "sec", "ts", "seq_id", "recv_ts", nulls_last=False, maintain_order=True)
        .unique(["inst", "sec"], keep="last", maintain_order=True)
    )
    samples = pl.concat([books.filter(~shared).select(columns), latest.select(columns)], how="vertical")
    return samples, books.height - samples.height


def _instrument_minutes(
    keys: pl.DataFrame, samples: pl.DataFrame, *, start_s: int, end_s: int, max_age_s: int
) -> pl.DataFrame:
    """One instrument's sample keys (``inst, sec, usable, _row``, sorted by sec) → its minutes' sums.

    ``_row`` is the sample's row in ``samples``: the features are looked up for the (run, minute)
    pieces only.
    """
    pieces = (
        keys.lazy()
        .with_columns(
            pl.max_horizontal(pl.col("sec"), pl.lit(start_s)).alias("_from"),
            pl.min_horizontal(pl.col("sec").shift(-1), pl.col("sec") + int(max_age_s), pl.lit(end_s)).alias("_to"),
        )
        .filter(pl.col("usable") & (pl.col("_to") > pl.col("_from")))
        .with_columns(pl.int_ranges(pl.col("_from") // 60, (pl.col("_to") - 1) // 60 + 1).alias("_minute"))
        .explode("_minute")
        .select("inst", "_row", "_minute", "_from",
                (pl.min_horizontal(pl.col("_to"), (pl.col("_minute") + 1) * 60)
                 - pl.max_horizontal(pl.col("_from"), pl.col("_minute") * 60)).alias("_n"))
        .collect()
    )  # fmt: skip
    rows = pieces.get_column("_row")
    in_order = [pl.col("_n").sum().alias("covered_s")] + [
        (pl.col("_n").cast(pl.Float64) * pl.col(f)).sort_by("_from").cum_sum().last().alias(f"{f}_sum")
        for f in BOOK_FEATURES
    ]
    return (
        pieces.with_columns(samples.get_column(f).gather(rows) for f in BOOK_FEATURES)
        .group_by("inst", "_minute")
        .agg(in_order)
        .with_columns((pl.col("_minute") * 60_000).cast(pl.Datetime("ms")).alias("ts"))
        .select([pl.col(c).cast(t) for c, t in BOOK_MINUTES_SCHEMA.items()])
    )


def book_minutes(samples: pl.DataFrame, *, day: dt.date, max_age_s: int) -> pl.DataFrame:
    """Samples (:func:`book_samples`) → BOOK_MINUTES_SCHEMA for the minutes of ``day`` with a book.

    A sample is the state from its second until the next sample's second, at most ``max_age_s``
    seconds, clipped to the day; only usable samples count. Each such run of seconds adds
    (its seconds in the minute) and (those seconds × each feature) to every minute it crosses.
    Sums are added in time order, so a rebuild gives the same bytes.

    Runs and sums are made one instrument at a time (a run never crosses instruments; only the
    row numbers of the whole day are sorted, by instrument), so the working set is one
    instrument's day, not every one's.
    """
    start_s = day_start_ms(day) // 1000
    by_inst = samples.select(pl.arg_sort_by(pl.col("inst").to_physical()).cast(pl.UInt32)).to_series()
    lengths = samples.select(pl.col("inst").to_physical().gather(by_inst).rle()).unnest("inst").get_column("len")
    per_instrument = []
    offset = 0
    for length in lengths.to_list():
        rows = by_inst.slice(offset, length).alias("_row")
        keys = samples.select(pl.col("inst", "sec", "usable").gather(rows)).with_columns(rows).sort("sec")
        per_instrument.append(_instrument_minutes(keys, samples, start_s=start_s, end_s=start_s + DAY_MS // 1000,
                                                  max_age_s=max_age_s))  # fmt: skip
        offset += length
    if not per_instrument:
        return pl.DataFrame(schema=BOOK_MINUTES_SCHEMA)
    return pl.concat(per_instrument, how="vertical").sort("inst", "ts")


def books_from_tally(
    tally: BookTally,
    *,
    day: dt.date,
    contracts: pl.DataFrame,
    max_age_s: int,
    records_again: Callable[[], Iterable[pl.DataFrame]],
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A day's tally (every shard added) → the day's per-minute sums (BOOK_MINUTES_SCHEMA) and quality counts.

    ``records_again`` gives the same raw records once more, one frame at a time; it is called
    only when copies of one book differ in levels and nothing else orders them (:func:`_levels_ties`).
    """
    kept, duplicates, conflicts = _deduplicate_books(tally.take_books(), records_again=records_again,
                                                     contracts=contracts)  # fmt: skip
    stats = cleaning_stats(day=day, rows=tally.rows, kept=kept.select("inst", "source"), duplicates=duplicates,
                           conflicts=conflicts, by_reason=dict(tally.by_reason))  # fmt: skip
    samples, superseded = book_samples(kept.select("inst", "ts", "seq_id", "recv_ts", "usable", *BOOK_FEATURES))
    del kept
    minutes = book_minutes(samples, day=day, max_age_s=max_age_s)
    stats.update(
        max_age_s=int(max_age_s),
        superseded=superseded,
        samples=samples.height,
        unusable_samples=samples.filter(~pl.col("usable")).height,
        minutes=minutes.height,
        covered_s=int(minutes["covered_s"].sum()),
    )
    return minutes, stats


def books_of_day(
    records: pl.DataFrame, *, day: dt.date, contracts: pl.DataFrame, max_age_s: int = DEFAULT_MAX_AGE_S
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Raw books5 records → the day's per-minute sums (BOOK_MINUTES_SCHEMA) and quality counts.

    ``records``: the day's records and those of the day before that may carry into it, in one
    frame (the job itself adds them shard by shard: :func:`clean_books_day`).
    """
    tally = BookTally()
    tally.add(records, day=day, contracts=contracts, max_age_s=max_age_s)
    return books_from_tally(tally, day=day, contracts=contracts, max_age_s=max_age_s,
                            records_again=lambda: [records])  # fmt: skip


def _shard_records(paths: Sequence[Path]) -> Iterator[tuple[pl.DataFrame, int]]:
    """Each shard's raw books5 records and malformed-line count, one shard at a time (feeder.raw)."""
    for path in paths:
        yield read_raw_records([path], BOOK_RAW_SCHEMA)


def clean_books_day(
    *,
    shard_paths: Sequence[Path],
    day: dt.date,
    instruments_path: Path,
    out_path: Path,
    quality_path: Path,
    max_age_s: int = DEFAULT_MAX_AGE_S,
) -> dict[str, Any]:
    """Clean ``day``'s books5 shards (and the previous day's last hours) → work/books/<day>.parquet + quality.

    One shard (one receipt hour) is read and parsed at a time and reduced to compact books
    (:class:`BookTally`) before the next is read, so the job's memory is one shard's records
    plus ~70 bytes per book of the day, not the day's JSON. Files are read once each, in path
    order, and counted like every cleaning job (feeder.raw.run_cleaning_job).
    """
    contracts = pl.read_parquet(instruments_path)
    paths = sorted(dict.fromkeys(Path(p) for p in shard_paths))
    tally = BookTally()
    malformed = 0
    for records, bad in _shard_records(paths):
        tally.add(records, day=day, contracts=contracts, max_age_s=max_age_s)
        malformed += bad
        del records
    minutes, stats = books_from_tally(tally, day=day, contracts=contracts, max_age_s=max_age_s,
                                      records_again=lambda: (records for records, _ in _shard_records(paths)))
    quality = {"files": len(paths), "malformed_lines": malformed, **stats}
    write_cleaned(minutes, out_path=out_path, quality=quality, quality_path=quality_path)
    log.info("books %s: %d files, %d rows read, %d books kept, %d samples (%d unusable), %d minutes with a book, "
             "%d duplicates, rejected %s", day, quality["files"], quality["rows_read"], quality["kept"],
             quality["samples"], quality["unusable_samples"], quality["minutes"], quality["duplicates"],
             {k: v for k, v in quality["rejected"].items() if v})  # fmt: skip
    return quality
