"""One name for each concept: time units, the Qlib fields, the frequencies, the market name.

Every stage, rule, the research code and the docs read these from here, so a concept is
spelled once:

* **Fields** (:data:`FIELDS`): one entry per Qlib field: its unit, the stage output it is
  computed from, how a bar's minutes make it, the collector channel without which it would be
  all NaN (so it is not exported), and the sentence docs/fields.md shows.
  :func:`qlib_fields` is the list the workflow exports for the configured channels.
  Adding a field: an entry here, its computation (feeder.resample) and its test.
* **Frequencies**: ``day`` or ``<N>min`` with N dividing a day's 1440 minutes, so no bar
  straddles midnight and every day's bars stand on their own. :func:`freq_minutes` is what the
  stages use, :func:`frequency_problems` what the config check reports, and
  :data:`FREQ_PATTERN` the same set as one regular expression (the config schema's pattern and
  the workflow's ``freq`` wildcard).
* **Market name** (:func:`market_name`): the Qlib market of the point-in-time universe,
  ``top<size>``.

``python -m feeder.registry`` prints the fields table of docs/fields.md (tests/test_registry.py
checks that the page holds exactly this table).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DAY_MS",
    "DEFAULT_CHANNELS",
    "FIELDS",
    "FREQ_PATTERN",
    "MINUTES_PER_DAY",
    "MINUTE_MS",
    "SUPPORTED_FREQ_MINUTES",
    "Field",
    "bar_fields",
    "check_fields",
    "check_market_name",
    "day_start_ms",
    "field",
    "fields_table",
    "freq_minutes",
    "frequency_problems",
    "market_name",
    "qlib_fields",
    "slots_per_day",
]

# --------------------------------------------------------------------------------------------
# Time units
# --------------------------------------------------------------------------------------------

#: One minute and one UTC day in epoch milliseconds; OKX timestamps are epoch ms.
MINUTE_MS = 60_000
DAY_MS = 86_400_000
#: 1-minute bars in a UTC day (crypto trades 24/7: every day has all of them).
MINUTES_PER_DAY = 1440


def day_start_ms(day: dt.date) -> int:
    """00:00 UTC of ``day`` in epoch milliseconds."""
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def day_bounds_ms(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch milliseconds."""
    start = day_start_ms(day)
    return start, start + DAY_MS


# --------------------------------------------------------------------------------------------
# Sources of a raw record
# --------------------------------------------------------------------------------------------

#: Where a raw record came from: the collector's WebSocket stream, REST (backfill and repair), or
#: OKX's official data archive (daily/monthly zip files).
SOURCES: tuple[str, ...] = ("ws", "rest", "archive")
#: The exchange's own copies of history: they decide over a streamed copy of the same bar (the
#: stream may have been caught mid-reconnect). REST is fetched only where the archive has no
#: usable copy, so the two rarely meet; when they do, the one received last wins.
EXCHANGE_COPIES: tuple[str, ...] = ("rest", "archive")


# --------------------------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One Qlib field (``$name`` in ``D.features``).

    ``source``: the stage output it is computed from: ``candles`` (work/clean, 1-minute bars),
    ``funding`` (work/funding), ``open_interest`` (work/open_interest), ``trades``
    (work/trades), ``books`` (work/books: per-minute sums over the seconds with an order book)
    or ``export`` (written by the Qlib export itself).
    ``aggregation``: how a bar's 1-minute values make the bar's value: ``first``, ``max``,
    ``min``, ``last``, ``sum`` (null when any minute is unknown, except ``volume``), ``ratio``
    (vwap), ``share`` (coverage, book_coverage), ``time_mean`` (the mean over every second of
    the bar with an order book: the sums of its minutes / their seconds), ``as_of`` (the last value at or before the bar's close, not
    an aggregate of its minutes) or ``constant`` (factor).
    ``channel``: the collector channel without which the field would be all NaN, so it is
    exported only when ``collector.channels`` has it; None: always exported.
    """

    name: str
    unit: str
    source: str
    aggregation: str
    channel: str | None
    description: str


#: Every Qlib field, in the order the workflow lists them (the order of the day blocks' columns
#: and of the rules' ``fields`` param: reordering would re-run every resample job).
FIELDS: tuple[Field, ...] = (
    Field("open", "quote (USDT) price", "candles", "first", None,
          "open of the bar's first 1-minute candle"),
    Field("high", "quote price", "candles", "max", None,
          "highest high of the bar's 1-minute candles"),
    Field("low", "quote price", "candles", "min", None,
          "lowest low of the bar's 1-minute candles"),
    Field("close", "quote price", "candles", "last", None,
          "last trade price: close of the bar's last 1-minute candle"),
    Field("volume", "**base coin**", "candles", "sum", None,
          "sum of 1-minute volumes; SWAP contracts are converted with `ctVal` (OKX `volCcy` = contracts × ctVal), "
          "SPOT `vol` is base coin already"),
    Field("amount", "**USDT** turnover", "candles", "sum", None,
          "sum of OKX `volCcyQuote`; NaN if any minute of the bar lacks it (pre-2023 candles), never a partial sum"),
    Field("vwap", "quote price", "candles", "ratio", None,
          "`amount / volume`; NaN when nothing traded"),
    Field("factor", "1.0", "export", "constant", None,
          "no splits or dividends in crypto; 1.0 where a bar exists, NaN elsewhere"),
    Field("coverage", "share (0–1]", "candles", "share", None,
          "1-minute bars present / minutes in the bar: 1.0 for a complete bar, 0.2 for a `5min` bar built from "
          "one minute"),
    Field("funding_rate", "rate per funding interval (decimal: `0.0001` = 0.01 %)", "funding", "as_of", None,
          "**the last settled rate known at the bar's close** (see below); REST history, extended by the "
          "`funding-rate` channel when collected"),
    Field("open_interest", "**base coin** (OKX `oiCcy`)", "open_interest", "as_of", "open-interest",
          "**the last open interest known at the bar's close** (see below)"),
    Field("n_trades", "count", "trades", "sum", "trades",
          "fills in the bar (OKX `count` per trade message, 1 for older messages)"),
    Field("taker_buy_volume", "base coin", "trades", "sum", "trades",
          "volume of trades whose taker bought (`side == \"buy\"`), contracts × ctVal"),
    Field("spread_bps", "basis points of the mid (1 bp = 0.01 %)", "books", "time_mean", "books5",
          "`(ask1 − bid1) / mid × 10⁴`, mean over the bar's seconds with a book (see below); NaN when none"),
    Field("depth_bid_25bps", "**base coin**", "books", "time_mean", "books5",
          "quantity of the bid levels (of 5) priced at or above `mid × (1 − 0.0025)`, mean over the bar's seconds "
          "with a book; SWAP contracts × ctVal"),
    Field("depth_ask_25bps", "**base coin**", "books", "time_mean", "books5",
          "quantity of the ask levels (of 5) priced at or below `mid × (1 + 0.0025)`, mean over the bar's seconds "
          "with a book; SWAP contracts × ctVal"),
    Field("imbalance", "ratio in [−1, 1]", "books", "time_mean", "books5",
          "`(Σ bid − Σ ask) / (Σ bid + Σ ask)` over the 5 levels of each side, mean over the bar's seconds with a "
          "book"),
    Field("book_coverage", "share [0–1]", "books", "share", "books5",
          "seconds of the bar with a book / seconds in the bar; 0.0 when none (the four book fields are then NaN)"),
)
_BY_NAME = {f.name: f for f in FIELDS}

#: ``collector.channels`` when the config does not say (the schema's default).
DEFAULT_CHANNELS: tuple[str, ...] = ("candle1m", "funding-rate", "open-interest")


def field(name: str) -> Field:
    """The registry entry of ``name`` (KeyError for a field that does not exist)."""
    return _BY_NAME[name]


def qlib_fields(channels: Iterable[str] = DEFAULT_CHANNELS) -> list[str]:
    """The fields exported when the collector records ``channels``, in :data:`FIELDS` order.

    A field whose channel is not collected would be all NaN, so it is left out.
    """
    collected = set(channels)
    return [f.name for f in FIELDS if f.channel is None or f.channel in collected]


def bar_fields() -> list[str]:
    """The field columns of a bars file (feeder.resample), in the order its files have them.

    Every field but the ones the export writes; the aggregates of the bar's minutes first, then
    the as-of values at its close (attached last, by feeder.resample.attach_point_in_time).
    """
    bars = [f for f in FIELDS if f.source != "export"]
    return [f.name for f in bars if f.aggregation != "as_of"] + [f.name for f in bars if f.aggregation == "as_of"]


def check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """``fields`` lower-cased, or ValueError naming the ones that are not Qlib fields of this project."""
    fields = tuple(f.lower() for f in fields)
    unknown = sorted(set(fields) - set(_BY_NAME))
    if not fields or unknown:
        raise ValueError(f"fields {unknown or '()'} not exportable; known: {sorted(_BY_NAME)}")
    return fields


def fields_table() -> str:
    """The fields table of docs/fields.md (markdown), one row per entry of :data:`FIELDS`."""
    lines = ["| field | unit | from | per bar | needs channel | value |", "|---|---|---|---|---|---|"]
    for f in FIELDS:
        channel = f"`{f.channel}`" if f.channel else "(always)"
        lines.append(f"| `{f.name}` | {f.unit} | {f.source} | {f.aggregation} | {channel} | {f.description} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Frequencies
# --------------------------------------------------------------------------------------------

#: Bar lengths in minutes a ``<N>min`` frequency may have: the divisors of a day, so every
#: bucket starts and ends inside one UTC day. (Qlib parses ``day`` and ``<N>min``; ``1h`` or
#: ``60m`` raise inside Qlib and ``1d`` silently reads nothing.)
SUPPORTED_FREQ_MINUTES: tuple[int, ...] = tuple(n for n in range(1, MINUTES_PER_DAY + 1) if MINUTES_PER_DAY % n == 0)
#: Every supported frequency name as one regular expression (no anchors): the config schema's
#: ``frequencies`` pattern (anchored) and the workflow's ``freq`` wildcard constraint.
FREQ_PATTERN = "day|(?:" + "|".join(map(str, SUPPORTED_FREQ_MINUTES)) + ")min"
_FREQ_RE = re.compile(FREQ_PATTERN)
_NMIN = re.compile(r"([0-9]+)min")
_ALIAS = re.compile(r"([0-9]+)\s*(m|t|mins?|minutes?|h|hr|hours?|d|days?)", re.IGNORECASE)
_WORD_ALIASES = {"h": "60min", "hour": "60min", "hourly": "60min", "d": "day", "daily": "day", "1dutc": "day"}
_ALLOWED = ("'day' or '<N>min' with N dividing a day's 1440 minutes ("
            + ", ".join(map(str, SUPPORTED_FREQ_MINUTES)) + "), e.g. 1min, 5min, 15min, 60min, 240min")


def _advice(freq: str) -> tuple[str | None, str]:
    """(the supported name meant, or None; why ``freq`` is not one) for an unsupported ``freq``."""
    text = freq.strip().lower()
    if text in _WORD_ALIASES:
        return _WORD_ALIASES[text], "not a Qlib frequency name"
    nmin = _NMIN.fullmatch(text)
    if nmin and int(nmin.group(1)) > 0 and f"{int(nmin.group(1))}min" != freq:
        meant = f"{int(nmin.group(1))}min"
        return (meant if _FREQ_RE.fullmatch(meant) else None), "not a Qlib frequency name"
    if nmin and int(nmin.group(1)) > MINUTES_PER_DAY:
        return None, f"longer than a day ({MINUTES_PER_DAY} minutes): multi-day frequencies are not supported"
    if nmin and int(nmin.group(1)) > 0:
        return None, (f"{int(nmin.group(1))} minutes does not divide a day ({MINUTES_PER_DAY} min), so buckets "
                      "would straddle midnight")
    alias = _ALIAS.fullmatch(text)
    if alias and int(alias.group(1)) > 0:
        n, unit = int(alias.group(1)), alias.group(2)
        if unit.startswith("d"):
            return ("day" if n == 1 else None), ("not a Qlib frequency name" if n == 1
                                                 else "multi-day frequencies are not supported")
        minutes = n * 60 if unit.startswith("h") else n
        meant = f"{minutes}min"
        if _FREQ_RE.fullmatch(meant):
            return meant, "not a Qlib frequency name"
        return None, (f"not a Qlib frequency name, and {minutes} minutes does not divide a day "
                      f"({MINUTES_PER_DAY} min)")
    return None, "not a frequency name"


def freq_minutes(freq: str) -> int:
    """Minutes per bar of a supported frequency; ValueError saying what to write for anything else."""
    if freq == "day":
        return MINUTES_PER_DAY
    if isinstance(freq, str) and _FREQ_RE.fullmatch(freq):
        return int(freq[: -len("min")])
    meant, why = _advice(str(freq))
    if meant:
        raise ValueError(f"unknown frequency {freq!r}: {why}; use {meant}")
    raise ValueError(f"unknown frequency {freq!r}: {why}; supported: {_ALLOWED}")


def slots_per_day(freq: str) -> int:
    """Calendar slots of ``freq`` in one UTC day (every supported frequency divides the day)."""
    return MINUTES_PER_DAY // freq_minutes(freq)


def frequency_problems(freqs: Any) -> list[str]:
    """One sentence per configured frequency this project cannot build (config ``frequencies``).

    Checked when the config is loaded: a frequency that is not a divisor of the day would
    otherwise pass the schema and fail only when a job meets it. Entries that are not text
    are left to the schema.
    """
    if not isinstance(freqs, list):
        return []
    problems = []
    for freq in freqs:
        if not isinstance(freq, str) or _FREQ_RE.fullmatch(freq):
            continue
        meant, why = _advice(freq)
        fix = f"; use '{meant}'" if meant else ""
        problems.append(f"frequencies: '{freq}': {why}{fix}. Supported: {_ALLOWED}.")
    return problems


# --------------------------------------------------------------------------------------------
# Market name
# --------------------------------------------------------------------------------------------

_MARKET_RE = re.compile(r"^[A-Za-z0-9_]+$")


def market_name(size: int) -> str:
    """Qlib market name of the point-in-time universe of ``size`` instruments, e.g. ``top50``."""
    return f"top{int(size)}"


def check_market_name(name: str) -> None:
    """ValueError unless ``name`` can be a Qlib market (its file is ``instruments/<name lowercase>.txt``)."""
    if not _MARKET_RE.match(name) or name.lower() == "all":
        raise ValueError(f"market name {name!r}: use letters, digits, '_' (and not 'all')")


if __name__ == "__main__":
    print(fields_table(), end="")
