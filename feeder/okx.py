"""Vectorised parsing of OKX v5 market-data payloads into typed polars frames.

Every parser here takes a polars frame of *raw* exchange values (strings, as OKX sends them and
as the raw JSONL records keep them verbatim) and returns one output row per input row, typed,
with a ``reject`` column: ``null`` for a usable row, otherwise a short reason string. Rows are
never dropped silently here; callers filter on ``reject`` and count reasons (``feeder.clean``
writes the counts into the day's quality report). Keeping rejection as data instead of
exceptions keeps everything vectorised: no Python loop ever looks at a single row.

Units (see tests/fixtures/okx-samples/README.md):

* candle ``vol`` is contracts for SWAP/FUTURES/OPTION and base coin for SPOT;
* candle ``volCcy`` is base coin for derivatives but **quote** for SPOT;
* candle ``volCcyQuote`` (2023+, 9-element rows) is always quote.

So ``volume`` (base coin) is ``volCcy`` for derivatives and ``vol`` for SPOT, and ``amount``
(quote turnover, USDT for the USDT-margined universe) is ``volCcyQuote``. For the pre-2023
7-element rows, which have no ``volCcyQuote``, SPOT ``amount`` is ``volCcy`` (already quote) and
derivative ``amount`` is null: it is unknown and must not be invented.

Confirm flag decision: 9-element rows carry ``confirm`` ("1" closed, "0" still forming). A
``"0"`` row is rejected as ``unconfirmed`` whatever its source: a WebSocket push of a forming bar
and the newest row of a REST ``candles`` page are equally incomplete. 7-element rows (pre-2023)
carry no flag; they are accepted as closed (``confirm`` null = unknown). Rationale: these rows
only come from historical captures where no better information exists, REST history rows of past
minutes are closed by construction, and ``feeder.clean`` keeps, among several WebSocket copies
of one bar, the last one received, i.e. the bar's final state.
"""

from __future__ import annotations

import polars as pl

from feeder.registry import SOURCES

__all__ = [
    "CANDLE_REJECT_REASONS",
    "FUNDING_REJECT_REASONS",
    "OPEN_INTEREST_REJECT_REASONS",
    "SETTLED_FUNDING_REJECT_REASONS",
    "TRADE_REJECT_REASONS",
    "inst_type_expr",
    "parse_candles",
    "parse_funding",
    "parse_open_interest",
    "parse_settled_funding",
    "parse_trades",
]

# Reject reasons in the order they are checked (the first matching reason is reported).
CANDLE_REJECT_REASONS: tuple[str, ...] = (
    "bad_record",  # no inst, no source, or source not ws/rest
    "wrong_element_count",  # data is not a 7- or 9-element array
    "unknown_inst_type",  # instId matches no SPOT/SWAP/FUTURES/OPTION pattern
    "unparsable_number",  # a number (or the confirm flag) does not parse
    "non_finite",  # inf / nan
    "unconfirmed",  # confirm == "0": the bar is still forming
    "high_below_low",
    "open_close_outside_range",  # open or close outside [low, high]
    "non_positive_price",
    "negative_volume",
)
FUNDING_REJECT_REASONS: tuple[str, ...] = (
    "bad_record",
    "missing_funding_time",
    "missing_funding_rate",
    "unparsable_number",
    "non_finite",
)
OPEN_INTEREST_REJECT_REASONS: tuple[str, ...] = (
    "bad_record",
    "missing_ts",
    "unparsable_number",
    "non_finite",
    "negative_open_interest",
)
SETTLED_FUNDING_REJECT_REASONS: tuple[str, ...] = (
    "bad_record",  # no inst, or source not ws/rest
    "not_settled",  # ws push whose settState is not "settled" (e.g. "processing", or pre-2023 frames)
    "missing_funding_time",
    "missing_funding_rate",  # rest fundingRate / ws settFundingRate empty or absent
    "unparsable_number",
    "non_finite",
)
TRADE_REJECT_REASONS: tuple[str, ...] = (
    "bad_record",
    "unknown_inst_type",
    "missing_ts",
    "missing_trade_id",
    "unparsable_number",
    "non_finite",
    "bad_side",
    "non_positive",  # px <= 0, sz <= 0 or count < 1
)

# instIds are built from letters, digits, '_' and '.', joined by '-'. Anything else (a path
# separator, spaces, an empty part) is refused before it can become a file name downstream.
_INST_RE = r"^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)+$"

_CANDLE_PRICE_COLS = ("open", "high", "low", "close")


def inst_type_expr(inst: pl.Expr) -> pl.Expr:
    """OKX instType inferred from an instId expression (null when no pattern matches).

    Candle records carry no instType, yet the volume columns mean different things per type,
    so it must be inferred: ``X-Y-SWAP`` is SWAP, ``X-Y`` is SPOT, ``X-Y-<6 digits>`` is FUTURES
    (also ``BTC-USD_UM_XPERP-310404``), ``X-Y-<date>-<strike>-C|P`` is OPTION.
    """
    parts = inst.str.split("-")
    n_parts = parts.list.len()
    last = parts.list.last()
    well_formed = inst.str.contains(_INST_RE)
    return (
        pl.when(~well_formed)
        .then(pl.lit(None, dtype=pl.Utf8))
        .when(inst.str.ends_with("-SWAP"))
        .then(pl.lit("SWAP"))
        .when(n_parts == 2)
        .then(pl.lit("SPOT"))
        .when((n_parts == 3) & last.str.contains(r"^\d{6}$"))
        .then(pl.lit("FUTURES"))
        .when((n_parts == 5) & last.is_in(["C", "P"]))
        .then(pl.lit("OPTION"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )


def _num(expr: pl.Expr) -> pl.Expr:
    """String → Float64, null when unparsable (the empty string included)."""
    return expr.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)


def _epoch_ms(expr: pl.Expr) -> pl.Expr:
    """Epoch-ms string (or integer) → Int64, null when unparsable."""
    return expr.cast(pl.Utf8).str.strip_chars().cast(pl.Int64, strict=False)


def _ensure_columns(frame: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """Add the missing optional columns as typed nulls.

    Payload generations differ in their field sets (2021 funding frames have no ``ts``, 2022
    open interest no ``oiUsd``), so parsers must accept frames lacking some columns.
    """
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in columns.items() if name not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def _ms_datetime(expr: pl.Expr) -> pl.Expr:
    """Epoch-ms Int64 → Datetime[ms] (naive UTC), the contract's timestamp type.

    A plain cast, because ``pl.from_epoch`` returns microsecond precision.
    """
    return expr.cast(pl.Datetime("ms"))


def _first_reason(conditions: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """The reason of the first true condition, else null (null conditions count as false)."""
    expr: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    for cond, reason in reversed(conditions):
        expr = pl.when(cond.fill_null(False)).then(pl.lit(reason)).otherwise(expr)
    return expr


def parse_candles(records: pl.DataFrame) -> pl.DataFrame:
    """Type raw candle records; one output row per input row, invalid ones flagged in ``reject``.

    ``records`` needs ``inst`` (instId) and ``data`` (List[Utf8], the exchange's candle array
    verbatim); ``source`` ("ws"/"rest", default "ws") and ``recv_ts`` (epoch ms) are optional
    and passed through for deduplication. Output columns: ``inst, inst_type, source, recv_ts,
    ts`` (Datetime[ms], naive UTC bar open), ``open, high, low, close, volume`` (base coin),
    ``amount`` (quote turnover, null when unknown), ``contracts`` (raw ``vol``), ``confirm``
    (Boolean; null for 7-element rows), ``n_elements``, ``reject`` (see CANDLE_REJECT_REASONS).
    """
    frame = _ensure_columns(records, {"source": pl.Utf8, "recv_ts": pl.Int64})
    if "source" not in records.columns:
        frame = frame.with_columns(pl.lit("ws").alias("source"))
    data = pl.col("data").cast(pl.List(pl.Utf8))
    n_el = data.list.len()

    def el(i: int) -> pl.Expr:
        return data.list.get(i, null_on_oob=True)

    typed = frame.select(
        pl.col("inst").cast(pl.Utf8),
        inst_type_expr(pl.col("inst").cast(pl.Utf8)).alias("inst_type"),
        pl.col("source").cast(pl.Utf8),
        pl.col("recv_ts").cast(pl.Int64, strict=False),
        _epoch_ms(el(0)).alias("ts_ms"),
        _num(el(1)).alias("open"),
        _num(el(2)).alias("high"),
        _num(el(3)).alias("low"),
        _num(el(4)).alias("close"),
        _num(el(5)).alias("contracts"),
        _num(el(6)).alias("vol_ccy"),
        pl.when(n_el == 9).then(_num(el(7))).alias("vol_ccy_quote"),
        pl.when(n_el == 9).then(el(8)).alias("confirm_raw"),
        n_el.fill_null(0).alias("n_elements"),
    )
    is_spot = pl.col("inst_type") == "SPOT"
    nine = pl.col("n_elements") == 9
    typed = typed.with_columns(
        pl.when(is_spot).then(pl.col("contracts")).otherwise(pl.col("vol_ccy")).alias("volume"),
        pl.when(nine)
        .then(pl.col("vol_ccy_quote"))
        .when(is_spot)
        .then(pl.col("vol_ccy"))
        .otherwise(pl.lit(None, dtype=pl.Float64))
        .alias("amount"),
        pl.col("confirm_raw").replace_strict({"1": True, "0": False}, default=None, return_dtype=pl.Boolean).alias(
            "confirm"
        ),
    )
    numbers = [*_CANDLE_PRICE_COLS, "contracts", "vol_ccy"]
    any_null = pl.any_horizontal([pl.col(c).is_null() for c in numbers]) | pl.col("ts_ms").is_null()
    bad_nine = nine & (pl.col("vol_ccy_quote").is_null() | pl.col("confirm").is_null())
    any_non_finite = pl.any_horizontal([~pl.col(c).is_finite() for c in [*numbers, "vol_ccy_quote"]])
    lo, hi = pl.col("low"), pl.col("high")
    outside = (pl.col("open") < lo) | (pl.col("open") > hi) | (pl.col("close") < lo) | (pl.col("close") > hi)
    reject = _first_reason(
        [
            (pl.col("inst").is_null() | ~pl.col("source").is_in(list(SOURCES)).fill_null(False), "bad_record"),
            (~pl.col("n_elements").is_in([7, 9]), "wrong_element_count"),
            (pl.col("inst_type").is_null(), "unknown_inst_type"),
            (any_null | bad_nine, "unparsable_number"),
            (any_non_finite, "non_finite"),
            (pl.col("confirm").not_(), "unconfirmed"),
            (hi < lo, "high_below_low"),
            (outside, "open_close_outside_range"),
            (lo <= 0, "non_positive_price"),
            (
                pl.any_horizontal([pl.col(c) < 0 for c in ("contracts", "vol_ccy", "vol_ccy_quote")]),
                "negative_volume",
            ),
        ]
    )
    return typed.with_columns(
        _ms_datetime(pl.col("ts_ms")).alias("ts"),
        reject.alias("reject"),
    ).select(
        "inst",
        "inst_type",
        "source",
        "recv_ts",
        "ts",
        *_CANDLE_PRICE_COLS,
        "volume",
        "amount",
        "contracts",
        "confirm",
        "n_elements",
        "reject",
    )


_FUNDING_FIELDS: dict[str, pl.DataType] = {
    "instId": pl.Utf8,
    "instType": pl.Utf8,
    "fundingRate": pl.Utf8,
    "fundingTime": pl.Utf8,
    "nextFundingRate": pl.Utf8,
    "nextFundingTime": pl.Utf8,
    "method": pl.Utf8,
    "ts": pl.Utf8,
}


def parse_funding(rows: pl.DataFrame) -> pl.DataFrame:
    """Type funding-rate data objects (one row per element of OKX's ``data`` array).

    ``rows`` has the exchange's field names as columns (e.g. ``records["data"].struct.unnest()``
    or a REST body's ``data`` list); any field may be missing, because 2021-22 frames lack
    ``ts`` and one real frame even lacks ``fundingRate``. Output: ``inst, inst_type, ts``
    (the frame's ``ts``; for old frames without one, ``fundingTime``, as the raw-record contract
    does), ``ts_is_funding_time``, ``funding_time, funding_rate, next_funding_rate`` (null when
    OKX sends ``""``), ``next_funding_time, method, reject`` (see FUNDING_REJECT_REASONS).
    A missing ``ts`` alone is not a reject: ``fundingTime`` identifies the period.
    """
    frame = _ensure_columns(rows, _FUNDING_FIELDS)
    inst = pl.col("instId").cast(pl.Utf8)
    typed = frame.select(
        inst.alias("inst"),
        pl.coalesce(pl.col("instType").cast(pl.Utf8), inst_type_expr(inst)).alias("inst_type"),
        _epoch_ms(pl.col("ts")).alias("ts_ms"),
        _epoch_ms(pl.col("fundingTime")).alias("funding_time_ms"),
        _epoch_ms(pl.col("nextFundingTime")).alias("next_funding_time_ms"),
        _num(pl.col("fundingRate")).alias("funding_rate"),
        _num(pl.col("nextFundingRate")).alias("next_funding_rate"),
        pl.col("method").cast(pl.Utf8),
        pl.col("fundingRate").cast(pl.Utf8).str.strip_chars().replace("", None).alias("_rate_raw"),
        pl.col("fundingTime").cast(pl.Utf8).str.strip_chars().replace("", None).alias("_time_raw"),
    )
    reject = _first_reason(
        [
            (pl.col("inst").is_null(), "bad_record"),
            (pl.col("_time_raw").is_null(), "missing_funding_time"),
            (pl.col("_rate_raw").is_null(), "missing_funding_rate"),
            (pl.col("funding_time_ms").is_null() | pl.col("funding_rate").is_null(), "unparsable_number"),
            (~pl.col("funding_rate").is_finite(), "non_finite"),
        ]
    )
    return typed.select(
        "inst",
        "inst_type",
        _ms_datetime(pl.coalesce("ts_ms", "funding_time_ms")).alias("ts"),
        pl.col("ts_ms").is_null().alias("ts_is_funding_time"),
        _ms_datetime(pl.col("funding_time_ms")).alias("funding_time"),
        "funding_rate",
        "next_funding_rate",
        _ms_datetime(pl.col("next_funding_time_ms")).alias("next_funding_time"),
        "method",
        reject.alias("reject"),
    )


_OI_FIELDS: dict[str, pl.DataType] = {
    "instId": pl.Utf8,
    "instType": pl.Utf8,
    "oi": pl.Utf8,
    "oiCcy": pl.Utf8,
    "oiUsd": pl.Utf8,
    "ts": pl.Utf8,
}


def parse_open_interest(rows: pl.DataFrame) -> pl.DataFrame:
    """Type open-interest data objects (one row per element of OKX's ``data`` array).

    Output: ``inst, inst_type, ts`` (Datetime[ms]), ``oi`` (contracts), ``oi_ccy`` (base coin),
    ``oi_usd`` (null before OKX added it in 2023-24), ``reject`` (see
    OPEN_INTEREST_REJECT_REASONS). Values such as "2663107.29999999861" carry float noise from
    the exchange; Float64 keeps them to ~16 significant digits, which is all they mean.
    """
    frame = _ensure_columns(rows, _OI_FIELDS)
    inst = pl.col("instId").cast(pl.Utf8)
    typed = frame.select(
        inst.alias("inst"),
        pl.coalesce(pl.col("instType").cast(pl.Utf8), inst_type_expr(inst)).alias("inst_type"),
        _epoch_ms(pl.col("ts")).alias("ts_ms"),
        pl.col("ts").cast(pl.Utf8).str.strip_chars().replace("", None).alias("_ts_raw"),
        _num(pl.col("oi")).alias("oi"),
        _num(pl.col("oiCcy")).alias("oi_ccy"),
        _num(pl.col("oiUsd")).alias("oi_usd"),
        pl.col("oiUsd").cast(pl.Utf8).str.strip_chars().replace("", None).alias("_usd_raw"),
    )
    values = ("oi", "oi_ccy", "oi_usd")
    reject = _first_reason(
        [
            (pl.col("inst").is_null(), "bad_record"),
            (pl.col("_ts_raw").is_null(), "missing_ts"),
            (
                pl.col("ts_ms").is_null()
                | pl.col("oi").is_null()
                | pl.col("oi_ccy").is_null()
                | (pl.col("_usd_raw").is_not_null() & pl.col("oi_usd").is_null()),
                "unparsable_number",
            ),
            (pl.any_horizontal([~pl.col(c).is_finite() for c in values]), "non_finite"),
            (pl.any_horizontal([pl.col(c) < 0 for c in values]), "negative_open_interest"),
        ]
    )
    return typed.select(
        "inst",
        "inst_type",
        _ms_datetime(pl.col("ts_ms")).alias("ts"),
        *values,
        reject.alias("reject"),
    )


_SETTLED_FIELDS: dict[str, pl.DataType] = {
    "instId": pl.Utf8,
    "fundingRate": pl.Utf8,
    "fundingTime": pl.Utf8,
    "realizedRate": pl.Utf8,
    "nextFundingTime": pl.Utf8,
    "prevFundingTime": pl.Utf8,
    "settFundingRate": pl.Utf8,
    "settState": pl.Utf8,
    "ts": pl.Utf8,
    "source": pl.Utf8,
    "recv_ts": pl.Int64,
    "inst": pl.Utf8,
}


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Utf8).str.strip_chars().replace("", None)


def parse_settled_funding(rows: pl.DataFrame) -> pl.DataFrame:
    """*Settled* funding rates from REST history rows and WebSocket pushes, one row per input row.

    ``rows``: the exchange's fields as columns (``records["data"].struct.unnest()``) plus the
    record's ``source`` ("rest"/"ws"), ``recv_ts`` and ``inst``. What each source says:

    * REST ``funding-rate-history`` row: ``fundingTime`` T and the rate settled at T
      (``fundingRate``; ``realizedRate`` is what was actually charged, kept alongside).
    * WebSocket ``funding-rate`` push: ``fundingTime`` is the NEXT settlement and ``fundingRate``
      that period's *forecast*, which is never used here. With ``settState == "settled"``,
      ``settFundingRate`` is the rate of the PREVIOUS settlement; its time is ``prevFundingTime``
      when OKX sends it (2025+), else it must be derived across pushes (``feeder.clean_funding``):
      this parser gives ``funding_time`` null then, plus ``period_end`` (the push's
      ``fundingTime``) and ``next_funding_time`` to derive it from.

    Output: ``inst, source, recv_ts, funding_time, period_end, next_funding_time, published``
    (the push's ``ts``; for REST the settlement time), ``funding_rate, realized_rate, reject``
    (see SETTLED_FUNDING_REJECT_REASONS). Times are Datetime[ms], naive UTC.
    """
    frame = _ensure_columns(rows, _SETTLED_FIELDS)
    if "source" not in rows.columns:
        frame = frame.with_columns(pl.lit("rest").alias("source"))
    is_ws = pl.col("source") == "ws"
    typed = frame.select(
        pl.coalesce(_blank_to_null(pl.col("inst")), _blank_to_null(pl.col("instId"))).alias("inst"),
        pl.col("source").cast(pl.Utf8),
        pl.col("recv_ts").cast(pl.Int64, strict=False),
        _blank_to_null(pl.col("fundingTime")).alias("_ft_raw"),
        _blank_to_null(pl.col("prevFundingTime")).alias("_prev_raw"),
        pl.when(pl.col("source") == "ws")
        .then(_blank_to_null(pl.col("settFundingRate")))
        .otherwise(_blank_to_null(pl.col("fundingRate")))
        .alias("_rate_raw"),
        _blank_to_null(pl.col("settState")).alias("sett_state"),
        _epoch_ms(pl.col("fundingTime")).alias("_ft"),
        _epoch_ms(pl.col("prevFundingTime")).alias("_prev"),
        _epoch_ms(pl.col("nextFundingTime")).alias("_next"),
        _epoch_ms(pl.col("ts")).alias("_ts"),
        _num(pl.col("realizedRate")).alias("realized_rate"),
    ).with_columns(_num(pl.col("_rate_raw")).alias("funding_rate"))
    typed = typed.with_columns(
        pl.when(is_ws).then(pl.col("_prev")).otherwise(pl.col("_ft")).alias("_funding_time"),
        pl.when(is_ws).then(pl.col("_ft")).alias("_period_end"),
        pl.when(is_ws).then(pl.col("_next")).alias("_next_time"),
        pl.when(is_ws).then(pl.col("_ts")).otherwise(pl.col("_ft")).alias("_published"),
    )
    reject = _first_reason(
        [
            (pl.col("inst").is_null() | ~pl.col("source").is_in(list(SOURCES)).fill_null(False), "bad_record"),
            (is_ws & (pl.col("sett_state") != "settled").fill_null(True), "not_settled"),
            (pl.col("_ft_raw").is_null(), "missing_funding_time"),
            (pl.col("_rate_raw").is_null(), "missing_funding_rate"),
            (
                pl.col("_ft").is_null()
                | pl.col("funding_rate").is_null()
                | (is_ws & pl.col("_ts").is_null())
                | (pl.col("_prev_raw").is_not_null() & pl.col("_prev").is_null()),
                "unparsable_number",
            ),
            (~pl.col("funding_rate").is_finite() | ~pl.col("realized_rate").is_finite(), "non_finite"),
        ]
    )
    return typed.select(
        "inst",
        "source",
        "recv_ts",
        _ms_datetime(pl.col("_funding_time")).alias("funding_time"),
        _ms_datetime(pl.col("_period_end")).alias("period_end"),
        _ms_datetime(pl.col("_next_time")).alias("next_funding_time"),
        _ms_datetime(pl.col("_published")).alias("published"),
        "funding_rate",
        "realized_rate",
        reject.alias("reject"),
    )


_TRADE_FIELDS: dict[str, pl.DataType] = {
    "instId": pl.Utf8,
    "tradeId": pl.Utf8,
    "px": pl.Utf8,
    "sz": pl.Utf8,
    "side": pl.Utf8,
    "ts": pl.Utf8,
    "count": pl.Utf8,
    "inst": pl.Utf8,
}


def parse_trades(rows: pl.DataFrame) -> pl.DataFrame:
    """Type ``trades`` channel elements (one row per element).

    Output: ``inst, inst_type, trade_id, ts`` (Datetime[ms]), ``px``, ``sz`` (contracts for
    derivatives, base coin for SPOT, as OKX sends it), ``side`` (the TAKER's side), ``count``
    (fills aggregated into the element; OKX added it in 2024-25, absent = 1), ``reject``
    (see TRADE_REJECT_REASONS).
    """
    frame = _ensure_columns(rows, _TRADE_FIELDS)
    inst = pl.coalesce(_blank_to_null(pl.col("inst")), _blank_to_null(pl.col("instId")))
    typed = frame.select(
        inst.alias("inst"),
        inst_type_expr(inst).alias("inst_type"),
        _blank_to_null(pl.col("tradeId")).alias("trade_id"),
        _blank_to_null(pl.col("ts")).alias("_ts_raw"),
        _epoch_ms(pl.col("ts")).alias("_ts"),
        _num(pl.col("px")).alias("px"),
        _num(pl.col("sz")).alias("sz"),
        _blank_to_null(pl.col("side")).str.to_lowercase().alias("side"),
        _blank_to_null(pl.col("count")).alias("_count_raw"),
    ).with_columns(
        pl.coalesce(pl.col("_count_raw").cast(pl.Int64, strict=False), pl.when(pl.col("_count_raw").is_null()).then(1))
        .alias("count")
    )
    reject = _first_reason(
        [
            (pl.col("inst").is_null(), "bad_record"),
            (pl.col("inst_type").is_null(), "unknown_inst_type"),
            (pl.col("_ts_raw").is_null(), "missing_ts"),
            (pl.col("trade_id").is_null(), "missing_trade_id"),
            (
                pl.col("_ts").is_null() | pl.col("px").is_null() | pl.col("sz").is_null() | pl.col("count").is_null(),
                "unparsable_number",
            ),
            (~pl.col("px").is_finite() | ~pl.col("sz").is_finite(), "non_finite"),
            (~pl.col("side").is_in(["buy", "sell"]).fill_null(False), "bad_side"),
            ((pl.col("px") <= 0) | (pl.col("sz") <= 0) | (pl.col("count") < 1), "non_positive"),
        ]
    )
    return typed.select(
        "inst",
        "inst_type",
        "trade_id",
        _ms_datetime(pl.col("_ts")).alias("ts"),
        "px",
        "sz",
        "side",
        "count",
        reject.alias("reject"),
    )
