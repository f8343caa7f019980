"""Checks of 1-minute candles shared by the backfill (what to fetch) and cleaning (what to keep, what to flag).

Why one module: a minute the backfill counts as "streamed" is never fetched from REST, so the
backfill must judge the stream's candles exactly as cleaning does. If cleaning rejected a candle
the backfill trusted, the minute would be lost; if the two disagreed on which bars are suspect,
a suspect bar would reach the output without the exchange's answer. Both stages therefore call
the functions here, on the same records, and nothing else decides.

* :func:`validate_candles`: the record-level rules (:func:`feeder.okx.parse_candles` plus
  channel, day and minute alignment), one ``reject`` reason per record, null when usable.
* :func:`stream_suspects`: minutes whose streamed bar must be cross-checked with REST: the
  stream's confirmed copies disagree (``conflict``) or its bar is implausible (``spike``,
  :func:`spike_scores`). The backfill fetches them, cleaning keeps the exchange's copy and
  reports how each was resolved.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from feeder.okx import CANDLE_REJECT_REASONS, parse_candles
from feeder.registry import EXCHANGE_COPIES, MINUTE_MS, day_bounds_ms

__all__ = [
    "CANDLE_CHANNEL",
    "DEFAULT_SPIKE_FACTOR",
    "MIN_RANGE_FRACTION",
    "RECORD_REJECT_REASONS",
    "SPIKE_WINDOW",
    "VALUE_COLUMNS",
    "conflict_keys",
    "deduplicate",
    "disagreeing_keys",
    "kept_copies",
    "rank_copies",
    "spike_scores",
    "stream_ranking",
    "stream_suspects",
    "stream_view",
    "validate_candles",
]

VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")
CANDLE_CHANNEL = "candle1m"

# Reasons added on top of feeder.okx's, in reporting order (the first matching one is reported).
RECORD_REJECT_REASONS: tuple[str, ...] = ("wrong_channel", "outside_day", "misaligned_ts", *CANDLE_REJECT_REASONS)

# The plausibility check (spike_scores). The factor is config (`clean.spike_factor`); this is the
# schema's default. 50 typical one-minute ranges is far beyond ordinary trading, yet a x100 or
# /100 price (a decimal slip) scores in the thousands.
DEFAULT_SPIKE_FACTOR = 50.0
# Neighbours on each side of a bar (by position in the instrument's bars of the day).
SPIKE_WINDOW = 15
# Fewer bars than this in the window (the bar included): too little to judge, never flagged.
MIN_WINDOW_BARS = 5
# Floor of the typical range, as a log-price range (0.1 %): in a stretch of minutes without
# trades high == low, and any later tick would otherwise be an infinite multiple of nothing.
MIN_RANGE_FRACTION = 1e-3


def validate_candles(records: pl.DataFrame, *, day: dt.date) -> pl.DataFrame:
    """Type raw candle records of ``day``; one row per record, ``reject`` null for a usable bar.

    ``records`` follows the raw record contract (``inst``, ``data``; ``source``, ``recv_ts``,
    ``channel`` optional). The bar's minute is the exchange's own timestamp ``data[0]``, never
    the record's ``ts``: a record whose ``data`` has no valid timestamp is rejected. Output: the
    columns of :func:`feeder.okx.parse_candles` with ``reject`` one of RECORD_REJECT_REASONS.
    A bar of another day is reported as ``outside_day`` even if it is also invalid, so day D's
    reasons describe day D's data only.
    """
    start_ms, end_ms = day_bounds_ms(day)
    parsed = parse_candles(records)
    ts_ms = pl.col("ts").cast(pl.Int64)
    has_ts = pl.col("ts").is_not_null()
    wrong_channel = pl.lit(False)
    if "channel" in records.columns:
        parsed = parsed.with_columns(records.get_column("channel").alias("channel"))
        wrong_channel = pl.col("channel").is_not_null() & (pl.col("channel") != CANDLE_CHANNEL)
    reject = (
        pl.when(wrong_channel)
        .then(pl.lit("wrong_channel"))
        .when(has_ts & ((ts_ms < start_ms) | (ts_ms >= end_ms)))
        .then(pl.lit("outside_day"))
        .when(has_ts & (ts_ms % MINUTE_MS != 0))
        .then(pl.lit("misaligned_ts"))
        .otherwise(pl.col("reject"))
    )
    return parsed.with_columns(reject.alias("reject"))


def rank_copies(bars: pl.DataFrame) -> pl.DataFrame:
    """``bars`` in the order :func:`deduplicate` prefers them, each (inst, ts) one run, best copy first.

    Adds ``_first`` (the run's preferred copy, the one kept) and ``_differs`` (the copy differs from
    the one before it in its run in some VALUE_COLUMNS value, nulls comparing equal: a run has such
    a row iff its copies disagree). One sort serves the kept bars, the duplicates and the
    conflicts, and (:func:`stream_ranking`) the stream's own view: cleaning sorted the day's copies
    four times before (0.1 s of a day's 0.5 s of cleaning).
    """
    key = ["inst", "ts"]
    recv = ["recv_ts"] if "recv_ts" in bars.columns else []
    ordered = bars.sort(
        [*key, pl.col("source").is_in(EXCHANGE_COPIES).cast(pl.Int8), *recv, *VALUE_COLUMNS],
        descending=[False, False, True, *([True] * len(recv)), *([False] * len(VALUE_COLUMNS))],
        nulls_last=True,
        maintain_order=True,
    )
    return _mark_runs(ordered)


def _mark_runs(ordered: pl.DataFrame) -> pl.DataFrame:
    first = pl.col("inst").ne_missing(pl.col("inst").shift(1)) | pl.col("ts").ne_missing(pl.col("ts").shift(1))
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in VALUE_COLUMNS]) & ~first
    return ordered.with_columns(first.alias("_first"), differs.alias("_differs"))


def stream_ranking(ranked: pl.DataFrame) -> pl.DataFrame:
    """The ``ws`` copies of a :func:`rank_copies` result, ranked among themselves (no new sort: the
    stream's copies keep their relative order, which is the order ranking them alone gives)."""
    return _mark_runs(ranked.filter(pl.col("source") == "ws").drop("_first", "_differs"))


def kept_copies(ranked: pl.DataFrame) -> pl.DataFrame:
    """The preferred copy of each (inst, ts) of a :func:`rank_copies` result, sorted by inst, ts."""
    return ranked.filter(pl.col("_first")).drop("_first", "_differs")


def conflict_keys(ranked: pl.DataFrame) -> pl.DataFrame:
    """(inst, ts) of a :func:`rank_copies` result whose copies differ in any of VALUE_COLUMNS."""
    return ranked.filter(pl.col("_differs")).select("inst", "ts").unique(maintain_order=True)


def disagreeing_keys(copies: pl.DataFrame) -> pl.DataFrame:
    """(inst, ts) whose copies in ``copies`` differ in any of VALUE_COLUMNS (nulls compare equal)."""
    return conflict_keys(rank_copies(copies))


def deduplicate(bars: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Keep one row per (inst, ts); return (kept rows sorted by inst, ts, duplicates, conflicts).

    ``bars`` holds valid typed bars: inst, ts, VALUE_COLUMNS, source, and optionally recv_ts.
    Preference: the exchange's copies (registry.EXCHANGE_COPIES: REST, archive) > ws, then latest
    recv_ts (the latest state the exchange published), then values (a deterministic tie-break,
    so the result never depends on input order). ``conflicts`` counts keys whose copies
    disagree. Idempotent: deduplicating the output again changes nothing.
    """
    ranked = rank_copies(bars)
    kept = kept_copies(ranked)
    return kept, bars.height - kept.height, conflict_keys(ranked).height


def stream_view(valid: pl.DataFrame) -> pl.DataFrame:
    """The bars the stream alone gives: per (inst, ts), the ``ws`` copy :func:`deduplicate` keeps."""
    return deduplicate(valid.filter(pl.col("source") == "ws"))[0]


def spike_scores(bars: pl.DataFrame, *, window: int = SPIKE_WINDOW) -> pl.DataFrame:
    """``bars`` (inst, ts, high, low, close; one row per (inst, ts)) plus how far each bar jumps.

    Adds ``reference`` (median close of the bar's neighbourhood: ``window`` bars either side and
    the bar itself, so one wild bar cannot move it), ``typical_range`` (median log(high/low)
    there, at least MIN_RANGE_FRACTION) and ``score`` = the bar's largest log distance from
    ``reference`` (its high above, its low below) over ``typical_range``. Log prices make x100
    and /100 equally far. ``score`` is null with fewer than MIN_WINDOW_BARS bars in the window.
    Pure and vectorised; sorted by inst, ts.
    """
    size = 2 * window + 1
    ref = pl.col("close").rolling_median(window_size=size, center=True, min_samples=MIN_WINDOW_BARS).over("inst")
    log_range = (pl.col("high") / pl.col("low")).log()
    typical = log_range.rolling_median(window_size=size, center=True, min_samples=MIN_WINDOW_BARS).over("inst")
    scored = bars.sort("inst", "ts").with_columns(
        ref.alias("reference"),
        pl.max_horizontal(typical, pl.lit(MIN_RANGE_FRACTION)).alias("typical_range"),
    )
    jump = pl.max_horizontal(
        (pl.col("high") / pl.col("reference")).log(), (pl.col("reference") / pl.col("low")).log(), pl.lit(0.0)
    )
    return scored.with_columns(
        pl.when(pl.col("reference").is_not_null()).then(jump / pl.col("typical_range")).alias("score")
    )


def stream_suspects(
    valid: pl.DataFrame, *, spike_factor: float = DEFAULT_SPIKE_FACTOR, ranked: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Minutes whose streamed bar must be cross-checked with the exchange's REST history.

    ``valid``: usable typed bars (inst, ts, VALUE_COLUMNS, source, recv_ts), any sources; only
    the ``ws`` ones are judged. ``ranked``: ``rank_copies(valid)`` when the caller has it (saves a
    sort). Returns (inst, ts, check, score): ``conflict`` where the stream's
    confirmed copies disagree, ``spike`` where the stream's bar (:func:`stream_view`) scores
    above ``spike_factor`` (:func:`spike_scores`). A minute can appear under both checks.
    """
    schema = {"inst": pl.Utf8, "ts": valid.schema["ts"], "check": pl.Utf8, "score": pl.Float64}
    ws = stream_ranking(rank_copies(valid) if ranked is None else ranked)
    if ws.is_empty():
        return pl.DataFrame(schema=schema)
    conflicts = conflict_keys(ws).with_columns(check=pl.lit("conflict"), score=pl.lit(None, pl.Float64))
    spikes = (
        spike_scores(kept_copies(ws).select("inst", "ts", "high", "low", "close"))
        .filter(pl.col("score") > spike_factor)
        .select("inst", "ts", check=pl.lit("spike"), score=pl.col("score"))
    )
    both = pl.concat([conflicts, spikes], how="vertical")
    return both.cast(schema).sort("inst", "ts", "check")  # type: ignore[arg-type]
