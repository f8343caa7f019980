"""Funding rates and open interest: REST history fetch, cleaning, one UTC day per job.

Field semantics (docs/fields.md has the user-facing version):

* **Funding**: the Qlib field carries the last *settled* rate whose settlement time T is at or
  before the bar's close. A rate settled at T is published at T, so it is known at any close
  >= T: the 08:00 settlement first appears in the bar that closes at 08:00. The forecast that
  OKX pushes for the running period (the push's ``fundingRate``) is never used: it changes
  until T and would leak the future into earlier bars.
* Sources of settled rates: REST ``funding-rate-history`` (the ground truth, about three
  months deep) and, to extend past it, the WebSocket pushes' ``settFundingRate`` when
  ``settState == "settled"``. A push names the settlement it refers to by ``prevFundingTime``
  (2025+ frames); without it the time is derived (see :func:`_derive_ws_settlement_time`).
  Inside the range REST covers for an instrument, REST alone is used.
* **Open interest**: WebSocket only (OKX keeps no history). One row per push, keyed by the
  exchange's ``ts``; the Qlib field is the last value with ``ts <= close`` no older than
  :data:`OI_MAX_AGE`. Missing stream → NaN, never a carried-forward guess.

Fetching funding history for one day costs at most one paged request per instrument the
first time, then nothing: every response (up to the exchange's present) is kept in a small
per-instrument cache beside the work directory, with the time range it is known to cover, so
the jobs of the following days are served from it. Settled rates never change, so a cached
range stays valid.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_bytes, write_json, write_parquet
from feeder.clean import RAW_SCHEMA, read_raw_records
from feeder.identifiers import inst_path_stem
from feeder.okx import (
    OPEN_INTEREST_REJECT_REASONS,
    SETTLED_FUNDING_REJECT_REASONS,
    parse_open_interest,
    parse_settled_funding,
)

log = logging.getLogger(__name__)

__all__ = [
    "FUNDING_CHANNEL",
    "FUNDING_MAX_AGE",
    "FUNDING_SCHEMA",
    "OI_CHANNEL",
    "OI_MAX_AGE",
    "OPEN_INTEREST_SCHEMA",
    "clean_funding_day",
    "clean_open_interest",
    "clean_open_interest_day",
    "fetch_funding_day",
    "funding_window",
    "oi_window",
    "run_funding_history",
    "settled_funding",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
FUNDING_CHANNEL = "funding-rate"
OI_CHANNEL = "open-interest"

#: OKX funding intervals are 1, 2, 4, 6 or 8 hours: the last settlement before any instant is at
#: most 8 h old. A bar whose close has no settlement in the 8 h before it lacks data (stream and
#: REST both missed it) and gets NaN instead of an older, wrong rate.
FUNDING_MAX_AGE = dt.timedelta(hours=8)
#: Open interest older than this at a bar's close is not "known at the close": NaN instead.
#: OKX pushes open interest every few seconds while it changes; 15 minutes without a push means
#: the stream was down (or the instrument is asleep), and a stale number is not carried on.
OI_MAX_AGE = dt.timedelta(minutes=15)
#: A REST history fetch at exchange time `now` is trusted to hold every settlement up to
#: `now - PUBLISH_MARGIN` (a settlement may reach the history endpoint a little after T).
PUBLISH_MARGIN_MS = 10 * MINUTE_MS
#: A cache miss fetches from this far before the day's window up to the present: more than the
#: ~3 months OKX serves, so one fetch per instrument serves every day of a build, whatever order
#: Snakemake runs the days in (a few pages per instrument, once).
FETCH_LOOKBACK_MS = 100 * DAY_MS

_FUNDING_DATA_FIELDS = (
    "instId", "instType", "fundingRate", "fundingTime", "realizedRate", "nextFundingTime", "prevFundingTime",
    "settFundingRate", "settState", "method", "ts",
)  # fmt: skip
_OI_DATA_FIELDS = ("instId", "instType", "oi", "oiCcy", "oiUsd", "ts")


def _raw_schema(fields: Sequence[str]) -> dict[str, pl.DataType]:
    """The raw record contract (clean.RAW_SCHEMA) with ``data`` as an object of string fields."""
    return {**RAW_SCHEMA, "data": pl.Struct({f: pl.Utf8() for f in fields})}


FUNDING_RAW_SCHEMA = _raw_schema(_FUNDING_DATA_FIELDS)
OI_RAW_SCHEMA = _raw_schema(_OI_DATA_FIELDS)

#: work/funding/<day>.parquet: settled rates with funding_time in funding_window(day).
FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "funding_time": pl.Datetime("ms"),
    "funding_rate": pl.Float64(),
    "realized_rate": pl.Float64(),
    "source": pl.Utf8(),
}
#: work/open_interest/<day>.parquet: one row per (inst, exchange ts) inside oi_window(day).
OPEN_INTEREST_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "ts": pl.Datetime("ms"),
    "oi": pl.Float64(),  # contracts
    "oi_ccy": pl.Float64(),  # base coin
    "oi_usd": pl.Float64(),  # USD (null before OKX added it)
}

FUNDING_CLEAN_REASONS: tuple[str, ...] = (
    "wrong_channel",
    *SETTLED_FUNDING_REJECT_REASONS,
    "unknown_settlement_time",  # a ws push that names no settlement time and none can be derived
    "settled_after_push",  # derived settlement time later than the push itself: inconsistent
    "outside_window",
    "superseded_by_rest",  # a ws-derived settlement inside the range REST covers, at a time REST does not have
)
OI_CLEAN_REASONS: tuple[str, ...] = ("wrong_channel", *OPEN_INTEREST_REJECT_REASONS, "outside_window")


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def _day_start_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def funding_window(day: dt.date) -> tuple[int, int]:
    """[start, end) in epoch ms of the settlements day ``day``'s bars can use.

    A bar of ``day`` closes in (D 00:00, D+1 00:00] and uses the last settlement at or before
    its close, at most FUNDING_MAX_AGE old: so [D 00:00 - 8 h, D+1 00:00] (end inclusive, hence
    ``+ 1`` ms for the half-open form).
    """
    start = _day_start_ms(day)
    return start - int(FUNDING_MAX_AGE.total_seconds() * 1000), start + DAY_MS + 1


def oi_window(day: dt.date) -> tuple[int, int]:
    """[start, end) in epoch ms of the open-interest pushes day ``day``'s bars can use."""
    start = _day_start_ms(day)
    return start - int(OI_MAX_AGE.total_seconds() * 1000), start + DAY_MS + 1


# --------------------------------------------------------------------------------------------
# Fetching funding history (REST)
# --------------------------------------------------------------------------------------------


class FundingHistoryCache:
    """Per-instrument store of fetched funding-rate-history records and the range they cover.

    ``<dir>/<instId>.json``: ``{"covered": [start_ms, end_ms], "records": [...]}`` where
    ``records`` are raw records (``source: "rest"``) and "covered" means: the exchange had
    exactly these settlements in [start_ms, end_ms) when asked. A cache miss only costs a
    fetch; deleting the directory is always safe.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, inst: str) -> Path:
        return self.directory / f"{inst_path_stem(inst)}.json"

    def load(self, inst: str) -> tuple[tuple[int, int] | None, list[dict[str, Any]]]:
        try:
            payload = json.loads(self._path(inst).read_text(encoding="utf-8"))
            covered = payload.get("covered")
            records = payload.get("records") or []
            return (int(covered[0]), int(covered[1])) if covered else None, list(records)
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            return None, []

    def store(self, inst: str, covered: tuple[int, int] | None, records: list[dict[str, Any]]) -> None:
        payload = {"covered": list(covered) if covered else None, "records": records}
        write_bytes(json.dumps(payload, separators=(",", ":")).encode("utf-8"), self._path(inst))


def _merge_ranges(old: tuple[int, int] | None, new: tuple[int, int] | None) -> tuple[int, int] | None:
    """Union of two covered ranges if they touch; otherwise the newer one."""
    if new is None or new[0] >= new[1]:
        return old
    if old is None or old[1] < new[0] or new[1] < old[0]:
        return new
    return min(old[0], new[0]), max(old[1], new[1])


def fetch_funding_day(
    *,
    client: Any,
    day: dt.date,
    instruments: Sequence[str],
    out_path: Path,
    cache_dir: Path,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Write ``raw/rest/funding-rate/<day>.jsonl``: the settled rates of ``instruments`` in
    :func:`funding_window` ``(day)``, as raw records with ``source: "rest"``.

    An instrument whose cached range covers the window costs no request; otherwise its history
    from FETCH_LOOKBACK before the window to the exchange's present is fetched (paged, newest
    first) and cached, which covers every other day of a build too. Instruments OKX rejects
    (unknown, delisted) are reported in the summary, not fatal.
    """
    from feeder.records import records_from_rest
    from feeder.rest import OkxApiError
    from feeder.shards import write_shard_atomically

    start, end = funding_window(day)
    requests_before = getattr(client, "requests_sent", 0)
    now = None if now_ms is None else int(now_ms)  # the exchange's clock, asked on the first miss only
    cache = FundingHistoryCache(cache_dir)
    summary: dict[str, Any] = {"day": day.isoformat(), "instruments": len(instruments), "from_cache": 0,
                               "fetched": 0, "rows": {}, "errors": {}}  # fmt: skip
    out: list[dict[str, Any]] = []
    for inst in instruments:
        covered, records = cache.load(inst)
        if covered is not None and covered[0] <= start and end <= covered[1]:
            summary["from_cache"] += 1
        else:
            if now is None:
                now = int(client.server_time_ms())
            trusted_until = now - PUBLISH_MARGIN_MS + 1  # exclusive
            fetch_start, fetch_end = start - FETCH_LOOKBACK_MS, max(end, now + 1)
            try:
                rows = client.funding_rate_history(inst, start_ms=fetch_start, end_ms=fetch_end)
            except OkxApiError as exc:
                summary["errors"][inst] = f"{exc.code}: {exc.msg}"
                log.warning("funding history %s %s: %s", day, inst, exc)
                rows = None
            if rows is not None:
                parsed = records_from_rest(FUNDING_CHANNEL, rows, recv_ts=int(time.time() * 1000), inst=inst)
                for reject in parsed.rejects:
                    log.warning("funding history %s %s: REST row rejected: %s", day, inst, reject)
                by_ts = {int(r["ts"]): r for r in records}
                by_ts.update({int(r["ts"]): r for r in parsed.records})
                records = [by_ts[k] for k in sorted(by_ts)]
                covered = _merge_ranges(covered, (fetch_start, min(fetch_end, trusted_until)))
                cache.store(inst, covered, records)
                summary["fetched"] += 1
        day_records = [r for r in records if start <= int(r["ts"]) < end]
        summary["rows"][inst] = len(day_records)
        out.extend(day_records)
    summary["requests"] = getattr(client, "requests_sent", 0) - requests_before
    write_shard_atomically(out_path, out)
    log.info("funding history %s: %d rows for %d instruments (%d from cache, %d fetched, %d requests, %d errors)",
             day, len(out), len(instruments), summary["from_cache"], summary["fetched"], summary["requests"],
             len(summary["errors"]))  # fmt: skip
    return summary


def run_funding_history(
    *, exchange: dict[str, Any], day: dt.date, universe_path: Path, out_path: Path, cache_dir: Path
) -> dict[str, Any]:
    """Workflow entry point: funding history of ``day``'s universe members."""
    from feeder.rest import OkxRestClient
    from feeder.universe import members

    instruments = members(pl.read_parquet(universe_path))
    with OkxRestClient.from_exchange(exchange) as client:
        return fetch_funding_day(client=client, day=day, instruments=instruments, out_path=Path(out_path),
                                 cache_dir=Path(cache_dir))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Cleaning (pure)
# --------------------------------------------------------------------------------------------


def _typed_records(records: pl.DataFrame) -> pl.DataFrame:
    """Raw records (data as a Struct) → the exchange fields as columns + source/recv_ts/inst/channel."""
    data = records.get_column("data").struct.unnest()
    return data.with_columns(
        records.get_column("source").alias("source"),
        records.get_column("recv_ts").alias("recv_ts"),
        records.get_column("inst").alias("inst"),
        records.get_column("channel").alias("channel"),
    )


def _reason_counts(frame: pl.DataFrame, reasons: Sequence[str]) -> dict[str, int]:
    counts = frame.filter(pl.col("reject").is_not_null()).get_column("reject").value_counts()
    out = {r: 0 for r in reasons}
    out.update(dict(zip(counts["reject"].to_list(), counts["count"].to_list(), strict=True)))
    return out


def _deduplicate(frame: pl.DataFrame, key: list[str], values: list[str]) -> tuple[pl.DataFrame, int, int]:
    """Keep one row per ``key``: REST over WebSocket, then the copy received last, then values.

    Returns (kept sorted by key, duplicates dropped, keys whose copies disagree on ``values``).
    """
    ordered = frame.sort(
        [*key, (pl.col("source") == "rest").cast(pl.Int8), "recv_ts", *values],
        descending=[*([False] * len(key)), True, True, *([False] * len(values))],
        nulls_last=True,
        maintain_order=True,
    )
    kept = ordered.filter(pl.struct(key).is_first_distinct())
    duplicates = ordered.height - kept.height
    conflicts = 0
    if duplicates:
        conflicts = (
            ordered.group_by(key).agg(pl.struct(values).n_unique().alias("n")).filter(pl.col("n") > 1).height
        )
    return kept, duplicates, conflicts


def _derive_ws_settlement_time(parsed: pl.DataFrame) -> pl.DataFrame:
    """Fill ``funding_time`` of WebSocket rows that did not name their settlement.

    A settled push with ``fundingTime`` F (the next settlement) refers to the settlement just
    before F. Two estimates, the later one is used:

    * ``F - (nextFundingTime - F)``: exact while the interval does not change, LATE when it
      shrinks (8 h → 4 h), early when it grows;
    * the greatest earlier F' any push of this instrument announced as its next settlement
      (that settlement happened): exact when the stream saw the previous period, early if not.

    Taking the later of the two (ignoring an interval estimate later than the push itself) is
    exact in the usual cases, late rather than early when the interval shrank, and exact when
    it grew if the stream saw the period before. Only a grown interval *and* a whole period
    missed by the stream can place a rate early; REST history, when it covers the time,
    replaces stream-derived values anyway (``superseded_by_rest``).
    """
    observed = (
        parsed.filter(
            (pl.col("source") == "ws")
            & pl.col("period_end").is_not_null()
            & pl.col("inst").is_not_null()
            & (pl.col("reject").is_null() | (pl.col("reject") == "not_settled"))  # a forecast push announces F too
        )
        .select("inst", pl.col("period_end").alias("prev_announced"))
        .unique()
        .sort("prev_announced")
    )
    need = (pl.col("source") == "ws") & pl.col("funding_time").is_null() & pl.col("reject").is_null()
    rows = parsed.with_row_index("_row").sort("period_end", nulls_last=True)
    with_prev = rows.join_asof(
        observed,
        left_on="period_end",
        right_on="prev_announced",
        by="inst",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    ).sort("_row")
    by_interval = pl.col("period_end") - (pl.col("next_funding_time") - pl.col("period_end"))
    # an estimate after the push itself is impossible (the interval shrank): drop it
    by_interval = pl.when(by_interval <= pl.col("published")).then(by_interval)
    derived = pl.max_horizontal(by_interval, pl.col("prev_announced"))
    return with_prev.with_columns(
        pl.when(need).then(derived).otherwise(pl.col("funding_time")).alias("funding_time")
    ).drop("_row", "prev_announced")


def settled_funding(records: pl.DataFrame, day: dt.date) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Settled funding rates usable by ``day``'s bars, deduplicated on (inst, funding_time).

    ``records``: raw records (FUNDING_RAW_SCHEMA) from REST history shards and WebSocket
    ``funding-rate`` shards. Returns FUNDING_SCHEMA rows sorted by inst, funding_time, all inside
    :func:`funding_window`, and the counts for the quality report (rows_read == kept +
    duplicates + rejected_total).
    """
    start_ms, end_ms = funding_window(day)
    typed = _typed_records(records)
    parsed = parse_settled_funding(typed.drop("channel")).with_columns(typed.get_column("channel"))
    parsed = parsed.with_columns(
        pl.when(pl.col("channel").is_not_null() & (pl.col("channel") != FUNDING_CHANNEL))
        .then(pl.lit("wrong_channel"))
        .otherwise(pl.col("reject"))
        .alias("reject")
    )
    parsed = _derive_ws_settlement_time(parsed)
    ft_ms = pl.col("funding_time").cast(pl.Int64)
    reject = (
        pl.when(pl.col("reject").is_not_null())
        .then(pl.col("reject"))
        .when(pl.col("funding_time").is_null())
        .then(pl.lit("unknown_settlement_time"))
        .when(pl.col("funding_time") > pl.col("published"))
        .then(pl.lit("settled_after_push"))
        .when((ft_ms < start_ms) | (ft_ms >= end_ms))
        .then(pl.lit("outside_window"))
    )
    parsed = parsed.with_columns(reject.alias("reject"))
    # Inside the range REST covers for an instrument, REST is the truth: a ws-derived time that
    # REST does not list there is a mis-derived one (an interval change), not a new settlement.
    rest_last = (
        parsed.filter(pl.col("reject").is_null() & (pl.col("source") == "rest"))
        .group_by("inst")
        .agg(pl.col("funding_time").max().alias("_rest_last"))
    )
    rest_keys = (
        parsed.filter(pl.col("reject").is_null() & (pl.col("source") == "rest"))
        .select("inst", "funding_time", pl.lit(True).alias("_rest_has"))
        .unique()
    )
    parsed = (
        parsed.with_row_index("_row")
        .join(rest_last, on="inst", how="left")
        .join(rest_keys, on=["inst", "funding_time"], how="left")
        .sort("_row")
    )
    superseded = (
        pl.col("reject").is_null()
        & (pl.col("source") == "ws")
        & (pl.col("funding_time") <= pl.col("_rest_last")).fill_null(False)
        & pl.col("_rest_has").is_null()
    )
    parsed = parsed.with_columns(
        pl.when(superseded).then(pl.lit("superseded_by_rest")).otherwise(pl.col("reject")).alias("reject")
    ).drop("_row", "_rest_last", "_rest_has")

    by_reason = _reason_counts(parsed, FUNDING_CLEAN_REASONS)
    valid = parsed.filter(pl.col("reject").is_null())
    kept, duplicates, conflicts = _deduplicate(valid, ["inst", "funding_time"], ["funding_rate"])
    kept = kept.select([pl.col(c).cast(t) for c, t in FUNDING_SCHEMA.items()]).sort("inst", "funding_time")
    stats = _stats(day, parsed.height, kept, duplicates, conflicts, by_reason)
    return kept, stats


def clean_open_interest(
    records: pl.DataFrame, day: dt.date, *, max_age: dt.timedelta = OI_MAX_AGE
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Open-interest pushes usable by ``day``'s bars, deduplicated on (inst, ts).

    Keeps rows with exchange ``ts`` in [D 00:00 - max_age, D+1 00:00]; the copy received last
    wins among duplicates (a replay after a reconnect).
    """
    start = _day_start_ms(day)
    start_ms, end_ms = start - int(max_age.total_seconds() * 1000), start + DAY_MS + 1
    typed = _typed_records(records)
    parsed = parse_open_interest(
        typed.with_columns(pl.coalesce(pl.col("instId").replace("", None), pl.col("inst")).alias("instId"))
    ).with_columns(typed.get_column("channel"), typed.get_column("recv_ts"), typed.get_column("source"))
    ts_ms = pl.col("ts").cast(pl.Int64)
    reject = (
        pl.when(pl.col("channel").is_not_null() & (pl.col("channel") != OI_CHANNEL))
        .then(pl.lit("wrong_channel"))
        .when(pl.col("reject").is_not_null())
        .then(pl.col("reject"))
        .when((ts_ms < start_ms) | (ts_ms >= end_ms))
        .then(pl.lit("outside_window"))
    )
    parsed = parsed.with_columns(reject.alias("reject"))
    by_reason = _reason_counts(parsed, OI_CLEAN_REASONS)
    valid = parsed.filter(pl.col("reject").is_null())
    kept, duplicates, conflicts = _deduplicate(valid, ["inst", "ts"], ["oi", "oi_ccy", "oi_usd"])
    kept = kept.select([pl.col(c).cast(t) for c, t in OPEN_INTEREST_SCHEMA.items()]).sort("inst", "ts")
    stats = _stats(day, parsed.height, kept, duplicates, conflicts, by_reason)
    return kept, stats


def _stats(
    day: dt.date, rows: int, kept: pl.DataFrame, duplicates: int, conflicts: int, by_reason: dict[str, int]
) -> dict[str, Any]:
    per_inst = kept.group_by("inst").len().sort("inst")
    out: dict[str, Any] = {
        "day": day.isoformat(),
        "rows_read": rows,
        "kept": kept.height,
        "duplicates": duplicates,
        "conflicts": conflicts,
        "rejected_total": sum(by_reason.values()),
        "rejected": by_reason,
        "instruments": dict(zip(per_inst["inst"].to_list(), per_inst["len"].to_list(), strict=True)),
    }
    if "source" in kept.columns:
        per_source = kept.group_by("source").len().sort("source")
        out["kept_by_source"] = dict(zip(per_source["source"].to_list(), per_source["len"].to_list(), strict=True))
    return out


# --------------------------------------------------------------------------------------------
# The jobs
# --------------------------------------------------------------------------------------------


def _write_outputs(frame: pl.DataFrame, out_path: Path, quality: dict[str, Any], quality_path: Path) -> None:
    write_parquet(frame, Path(out_path))
    write_json(quality, Path(quality_path))


def clean_funding_day(
    *, shard_paths: Sequence[Path], day: dt.date, out_path: Path, quality_path: Path
) -> dict[str, Any]:
    """Clean ``day``'s settled funding rates (REST history shard + WebSocket shards) → Parquet."""
    paths = sorted(dict.fromkeys(Path(p) for p in shard_paths))
    records, malformed = read_raw_records(paths, FUNDING_RAW_SCHEMA)
    kept, stats = settled_funding(records, day)
    quality = {"files": len(paths), "malformed_lines": malformed, **stats}
    _write_outputs(kept, out_path, quality, quality_path)
    log.info("funding %s: %d files, %d rows read, %d settlements kept (%s), %d duplicates, %d conflicts, rejected %s",
             day, len(paths), stats["rows_read"], stats["kept"], stats.get("kept_by_source"), stats["duplicates"],
             stats["conflicts"], {k: v for k, v in stats["rejected"].items() if v})  # fmt: skip
    return quality


def clean_open_interest_day(
    *, shard_paths: Sequence[Path], day: dt.date, out_path: Path, quality_path: Path
) -> dict[str, Any]:
    """Clean ``day``'s open-interest pushes (WebSocket shards) → Parquet."""
    paths = sorted(dict.fromkeys(Path(p) for p in shard_paths))
    records, malformed = read_raw_records(paths, OI_RAW_SCHEMA)
    kept, stats = clean_open_interest(records, day)
    quality = {"files": len(paths), "malformed_lines": malformed, **stats}
    _write_outputs(kept, out_path, quality, quality_path)
    log.info("open interest %s: %d files, %d rows read, %d kept, %d duplicates, %d conflicts, rejected %s",
             day, len(paths), stats["rows_read"], stats["kept"], stats["duplicates"], stats["conflicts"],
             {k: v for k, v in stats["rejected"].items() if v})  # fmt: skip
    return quality


def read_funding(path: Path | None) -> pl.DataFrame:
    """A work/funding/<day>.parquet (or an empty FUNDING_SCHEMA frame for None)."""
    return pl.read_parquet(path) if path else pl.DataFrame(schema=FUNDING_SCHEMA)


def read_open_interest(path: Path | None) -> pl.DataFrame:
    return pl.read_parquet(path) if path else pl.DataFrame(schema=OPEN_INTEREST_SCHEMA)
