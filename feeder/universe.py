"""Point-in-time universes: which instruments are "the top N" on each UTC day.

Why point-in-time: a backtest that picks today's top coins and runs them over last year is
survivorship- and look-ahead-biased. Here the universe of day D is computed only from data
that existed before D: the trailing mean of daily USDT turnover over ``window_days`` days
before D (from OKX's ``1Dutc`` candles' ``volCcyQuote``). Every day's full ranking is kept
with its metric, so membership can be audited and re-derived for another N without refetching.

Eligibility is config (``universe`` block): instrument type, settlement currency, contract type,
OKX ``instCategory`` (``"1"`` = crypto; stocks and commodities perpetuals are others) and
excluded base currencies such as stablecoins.

What ranks a day is ``universe.rank_by``, one entry of :data:`RANKINGS` each: the daily metric
the workflow fetches per instrument and the live snapshot the collector ranks by before the
workflow has written a universe file. Adding a ranking is one entry there (plus its metric
function and test) and its name in the schema's ``rank_by`` enum.

Survivorship: OKX's instrument list holds only live instruments. Every run records it (the
union of all snapshots keeps instruments delisted later), and with ``history.source:
archive+rest`` the archive's listing names every instrument that traded on a day, delisted ones
included: an instrument the snapshots never held is added from it (:func:`archive_instruments_frame`)
and ranked by the USDT turnover of its archive candles (:func:`archive_turnover`), the same
quantity OKX's ``1Dutc`` candles give for live ones. With ``history.source: rest``, an instrument
delisted before the first snapshot stays unknown and cannot be ranked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_parquet
from feeder.identifiers import inst_path_stem, split_inst_ids
from feeder.registry import DAY_MS, day_start_ms

log = logging.getLogger(__name__)

RANKING_SCHEMA = {
    "day": pl.Date,
    "inst": pl.Utf8,
    "rank": pl.Int32,
    "metric": pl.Float64,
    "days_observed": pl.Int32,
    "member": pl.Boolean,
}

INSTRUMENT_COLUMNS = ("instId", "instType", "settleCcy", "ctType", "ctVal", "ctValCcy", "baseCcy",
                      "quoteCcy", "instCategory", "listTime", "expTime", "state")


def instruments_frame(instruments: list[dict[str, Any]]) -> pl.DataFrame:
    """OKX ``/public/instruments`` items as a typed frame (missing fields become null).

    ``base`` is derived from the instrument id (``BTC-USDT-SWAP`` → ``BTC``) because SWAP items
    leave ``baseCcy`` empty. ``instCategory`` is absent from older payloads; null there means
    "not stated", which :func:`eligible` treats as crypto (the only kind OKX listed then).
    """
    ids, _ = split_inst_ids([item.get("instId") for item in instruments], where="instruments")
    valid = set(ids)  # an instId becomes file names downstream: anything else is refused here
    rows = [{col: (str(item[col]) if item.get(col) not in (None, "") else None) for col in INSTRUMENT_COLUMNS}
            for item in instruments if item.get("instId") in valid]
    frame = pl.DataFrame(rows, schema={col: pl.Utf8 for col in INSTRUMENT_COLUMNS}, orient="row")
    return frame.with_columns(base=pl.col("instId").str.split("-").list.first())


def eligible(instruments: pl.DataFrame, universe_cfg: dict[str, Any]) -> pl.DataFrame:
    """Instruments that may enter the universe under the config's filters."""
    cond = pl.col("instType") == universe_cfg.get("inst_type", "SWAP")
    if universe_cfg.get("settle_ccy"):
        cond &= pl.col("settleCcy") == universe_cfg["settle_ccy"]
    if universe_cfg.get("ct_type"):
        cond &= pl.col("ctType") == universe_cfg["ct_type"]
    categories = universe_cfg.get("inst_category") or []
    if categories:
        cond &= pl.col("instCategory").is_null() | pl.col("instCategory").is_in(categories)
    excluded = [b.upper() for b in universe_cfg.get("exclude_bases") or []]
    if excluded:
        cond &= ~pl.col("base").str.to_uppercase().is_in(excluded)
    return instruments.filter(cond)


def daily_metric_frame(rows_by_inst: dict[str, list[list[str]]]) -> pl.DataFrame:
    """``1Dutc`` candle rows per instrument → (inst, day, quote_volume).

    Only closed bars count (``confirm == "1"`` where present): the running bar of today is not
    a day's turnover.
    """
    frames = []
    for inst, rows in rows_by_inst.items():
        if not rows:
            continue
        frames.append(pl.DataFrame({
            "inst": [inst] * len(rows),
            "ts": [int(r[0]) for r in rows],
            "quote_volume": [r[7] if len(r) > 7 else None for r in rows],
            "confirm": [r[8] if len(r) > 8 else "1" for r in rows],
        }, schema={"inst": pl.Utf8, "ts": pl.Int64, "quote_volume": pl.Utf8, "confirm": pl.Utf8}))
    if not frames:
        return pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
    return (
        pl.concat(frames)
        .filter(pl.col("confirm") == "1")
        .select(
            "inst",
            day=pl.from_epoch("ts", time_unit="ms").dt.date(),
            metric=pl.col("quote_volume").cast(pl.Float64, strict=False),
        )
        .drop_nulls("metric")
        .unique(["inst", "day"], keep="last")
        .sort("inst", "day")
    )


def archive_instruments_frame(found: dict[str, str], *, seen_through: dt.date) -> pl.DataFrame:
    """Instruments known only from the archive's listing, as rows of the instrument frame.

    ``found`` maps instId to instType, as the archive listing gives them (validated ids). The
    listing says nothing else, so the fields eligibility needs are read from the id, by OKX's
    naming: ``BASE-QUOTE-SWAP`` (or a FUTURES ``BASE-QUOTE-YYMMDD``) settles in QUOTE as a linear
    contract when QUOTE is a stablecoin (USDT, USDC) and in BASE as an inverse one when QUOTE is
    USD; a spot pair ``BASE-QUOTE`` has neither. ``instCategory`` stays null (not stated: treated as
    crypto, like older payloads). Not live now (``live_now`` false) and last seen on
    ``seen_through``: :func:`listed_on` then counts it as listed up to the day after.
    """
    rows = []
    for inst, inst_type in sorted(found.items()):
        parts = inst.split("-")
        base, quote = parts[0], parts[1] if len(parts) > 1 else None
        derivative = inst_type in ("SWAP", "FUTURES")
        linear = quote in ("USDT", "USDC")
        rows.append({
            "instId": inst, "instType": inst_type,
            "settleCcy": (quote if linear else base) if derivative else None,
            "ctType": ("linear" if linear else "inverse") if derivative else None,
            "baseCcy": None if derivative else base, "quoteCcy": None if derivative else quote,
        })
    frame = pl.DataFrame(rows, schema={col: pl.Utf8 for col in INSTRUMENT_COLUMNS}, orient="row") if rows else \
        pl.DataFrame(schema={col: pl.Utf8 for col in INSTRUMENT_COLUMNS})
    return frame.with_columns(
        base=pl.col("instId").str.split("-").list.first(),
        first_seen=pl.lit(None, pl.Date), last_seen=pl.lit(seen_through, pl.Date), live_now=pl.lit(False),
    )


def archive_turnover(bars: pl.DataFrame, *, day: dt.date) -> pl.DataFrame:
    """Daily USDT turnover from archive 1m candles: (inst, day, metric = sum of ``vol_quote``).

    ``bars``: (inst, ts epoch ms, vol_quote as the file's string). Why the sum: OKX's ``1Dutc``
    candle (what live instruments are ranked by) is the day's 1m candles aggregated, and its
    ``volCcyQuote`` their quote volume. An instrument with no bar that day has no metric.
    """
    start = day_start_ms(day)
    return (
        bars.filter((pl.col("ts") >= start) & (pl.col("ts") < start + DAY_MS))
        .group_by("inst")
        # summed in time order: the same bars always give the same bits (see rank_day)
        .agg(metric=pl.col("vol_quote").cast(pl.Float64, strict=False).sort_by(pl.col("ts")).cum_sum().last())
        .drop_nulls("metric")
        .select("inst", day=pl.lit(day, pl.Date), metric="metric")
        .sort("inst")
    )


def listed_on(instruments: pl.DataFrame, day: dt.date) -> list[str]:
    """Instruments known to be listed at the start of ``day`` (UTC) and not delisted before it.

    Uses only what was published before ``day``: ``listTime``, and the delisting time OKX
    announces in ``expTime`` days ahead. An instrument that vanished from our snapshots without
    an ``expTime`` is taken as delisted the day after it was last seen.
    """
    start = day_start_ms(day)
    end = start + DAY_MS
    list_ms = pl.col("listTime").cast(pl.Int64, strict=False)
    exp_ms = pl.col("expTime").cast(pl.Int64, strict=False)
    if "last_seen" in instruments.columns:
        vanished_ms = pl.when(pl.col("live_now")).then(None).otherwise(
            (pl.col("last_seen").cast(pl.Datetime("ms")).dt.epoch("ms") + DAY_MS))
        delist_ms = pl.coalesce(exp_ms, vanished_ms)
    else:
        delist_ms = exp_ms
    return instruments.filter(
        (list_ms.is_null() | (list_ms < end)) & (delist_ms.is_null() | (delist_ms > start))
    )["instId"].to_list()


def rank_day(daily: pl.DataFrame, *, day: dt.date, size: int, window_days: int,
             listed: list[str] | None = None) -> pl.DataFrame:
    """The full ranking for ``day`` from daily metrics strictly before ``day``.

    Instruments with fewer than ``window_days`` observed days (new listings) are averaged over
    the days they have; an instrument with no observation in the window is not ranked, and
    neither is one not in ``listed`` (when given: see :func:`listed_on`), so a coin delisted
    yesterday does not ride its trailing turnover into today's universe.
    Ties break on the instrument id so the result is deterministic.
    """
    window_start = day - dt.timedelta(days=window_days)
    frame = daily.lazy()
    if listed is not None:
        frame = frame.filter(pl.col("inst").is_in(listed))
    ranked = (
        frame
        .filter((pl.col("day") >= window_start) & (pl.col("day") < day))
        .group_by("inst")
        # the mean adds the days in date order: polars' group sums add in an order that depends
        # on how the rows are laid out, and a last-bit difference can swap two neighbours in
        # the ranking (seen in the look-ahead property test); the same inputs, the same ranking
        .agg(metric=pl.col("metric").sort_by("day").cum_sum().last() / pl.len(),
             days_observed=pl.len().cast(pl.Int32))
        .sort(["metric", "inst"], descending=[True, False])
        .with_row_index("rank", offset=1)
        .select(
            day=pl.lit(day, dtype=pl.Date),
            inst="inst",
            rank=pl.col("rank").cast(pl.Int32),
            metric="metric",
            days_observed="days_observed",
            member=pl.col("rank") <= size,
        )
        .collect()
    )
    return ranked.cast(RANKING_SCHEMA)  # type: ignore[arg-type]


def members(ranking: pl.DataFrame) -> list[str]:
    """Instrument ids that are members in a ranking, best first."""
    return ranking.filter(pl.col("member")).sort("rank")["inst"].to_list()


def rank_live(snapshot: list[dict[str, Any]], instruments: pl.DataFrame, universe_cfg: dict[str, Any]) -> list[str]:
    """Top-N eligible instruments of a live snapshot, scored as ``universe.rank_by`` says.

    Used by the collector before the workflow has produced any universe file: ``snapshot`` is the
    answer of :attr:`Ranking.live_path` (:func:`live_snapshot`). Items without a usable score are
    left out; ties break on the instrument id, as in :func:`rank_day`.
    """
    ranking = ranking_for(universe_cfg.get("rank_by", DEFAULT_RANK_BY))
    allowed = set(eligible(instruments, universe_cfg)["instId"].to_list())
    scored = []
    for item in snapshot:
        inst = item.get("instId")
        if inst not in allowed:
            continue
        score = ranking.live_score(item)
        if score is not None and score == score:  # not NaN
            scored.append((-score, inst))
    scored.sort()
    return [inst for _, inst in scored[: int(universe_cfg["size"])]]


def live_snapshot(client: Any, *, universe_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The live snapshot ``universe.rank_by`` ranks from (:func:`rank_live`), fetched with ``client``."""
    ranking = ranking_for(universe_cfg.get("rank_by", DEFAULT_RANK_BY))
    return client.get(ranking.live_path, ranking.live_params(universe_cfg.get("inst_type", "SWAP")))


# -- stage entry points (called by workflow/scripts) -------------------------------------------


def record_instruments(client: Any, *, inst_type: str, snapshot_dir: Path) -> pl.DataFrame:
    """Archive the instrument list as OKX publishes it now; return the union of all snapshots.

    OKX lists only live instruments. Each call archives the list, dated by the exchange's clock,
    as ``<snapshot_dir>/<YYYY-MM-DD>.jsonl`` (raw, one item per line); the frame returned holds
    every instrument ever seen, with ``first_seen``, ``last_seen`` and ``live_now``, so
    instruments delisted later stay in history.
    """
    from feeder.shards import write_shard_atomically

    items = client.instruments(inst_type)
    now_ms = client.server_time_ms()
    day = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).date()
    write_shard_atomically(
        snapshot_dir / f"{day.isoformat()}.jsonl",
        ({"v": 1, "source": "rest", "channel": "instruments", "inst": item.get("instId"), "ts": now_ms,
          "recv_ts": now_ms, "data": item} for item in items),
    )
    frame = instruments_union(snapshot_dir)
    log.info("instruments: %d %s listed now; %d known from %d snapshots", len(items), inst_type,
             frame.height, len(list(snapshot_dir.glob("*.jsonl"))))
    return frame


def instruments_union(snapshot_dir: Path) -> pl.DataFrame:
    """Every instrument in the archived snapshots: latest fields, first/last day seen, live now."""
    frames = []
    paths = sorted(snapshot_dir.glob("*.jsonl"))
    for path in paths:
        items = [json.loads(line)["data"] for line in path.read_text().splitlines() if line.strip()]
        frames.append(instruments_frame(items).with_columns(seen=pl.lit(dt.date.fromisoformat(path.stem))))
    if not frames:
        return instruments_frame([]).with_columns(first_seen=pl.lit(None, pl.Date), last_seen=pl.lit(None, pl.Date),
                                                  live_now=pl.lit(None, pl.Boolean))
    latest_day = dt.date.fromisoformat(paths[-1].stem)
    return (
        pl.concat(frames)
        .sort("seen")
        .group_by("instId", maintain_order=True)
        .agg(pl.all().exclude("seen").last(), first_seen=pl.col("seen").min(), last_seen=pl.col("seen").max())
        .with_columns(live_now=pl.col("last_seen") == latest_day)
        .sort("instId")
    )


class DailyMetricCache:
    """Per-instrument daily metric history with the span of days it is known to cover.

    Why: a day's ranking input must be one file per day (so that adding a day never rewrites,
    and so never rebuilds, the days before it), but fetching per day would cost one request per
    instrument per day. One paged fetch per instrument fills the cache for every day of a build;
    each later day costs one request per instrument. Past daily turnover never changes.

    The span has both ends (``covered_from``, ``covered_through``): a day outside it is fetched,
    never read as "no turnover that day". Otherwise moving ``start`` earlier would rank the new
    days without every instrument the cache had seen from the old ``start`` on: a wrong universe,
    silently. Files written before ``covered_from`` existed count from their first row.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, inst: str) -> Path:
        return self.root / f"{inst_path_stem(inst)}.parquet"

    def load(self, inst: str) -> tuple[tuple[dt.date, dt.date] | None, pl.DataFrame]:
        """(covered_from, covered_through) or None, and the cached history (inst, day, metric)."""
        path = self._path(inst)
        empty = pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
        if not path.exists():
            return None, empty
        frame = pl.read_parquet(path)
        if not frame.height:
            return None, empty
        through = frame["covered_through"][0]
        since = frame["covered_from"][0] if "covered_from" in frame.columns else frame["day"].min()
        return (since, through), frame.select("inst", "day", "metric")

    def store(self, inst: str, covered: tuple[dt.date, dt.date], frame: pl.DataFrame) -> None:
        write_parquet(frame.with_columns(covered_from=pl.lit(covered[0], pl.Date),
                                         covered_through=pl.lit(covered[1], pl.Date)), self._path(inst))


def fetch_daily_metrics(
    *,
    exchange: dict[str, Any],
    universe_cfg: dict[str, Any],
    day: dt.date,
    history_start: dt.date,
    snapshot_dir: Path,
    cache_dir: Path,
    out_path: Path,
    instruments_out: Path,
    archive_cache: Path | None = None,
    download_concurrency: int = 4,
) -> pl.DataFrame:
    """The ranking metric of every eligible instrument on ``day`` → ``out_path``.

    Also archives today's instrument list and writes the union of every snapshot so far to
    ``instruments_out`` (the listing facts the universe of the next day uses). With
    ``archive_cache`` (``history.source: archive+rest``), instruments the archive lists for the
    day but no snapshot holds (delisted before the first one) are added, with their turnover from
    archive candles (:func:`archive_only_instruments`).

    The metric is ``universe.rank_by``'s entry of :data:`RANKINGS` (an unknown value is refused
    before anything is fetched; the config check refuses it earlier still).
    """
    from feeder.rest import OkxApiError, OkxRestClient

    rank_by = universe_cfg.get("rank_by", DEFAULT_RANK_BY)
    ranking = ranking_for(rank_by)
    cache = DailyMetricCache(cache_dir / rank_by)
    frames: list[pl.DataFrame] = []
    with OkxRestClient.from_exchange(exchange) as client:
        union = record_instruments(client, inst_type=universe_cfg.get("inst_type", "SWAP"), snapshot_dir=snapshot_dir)
        from_archive = pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
        if archive_cache is not None:
            only_archive, from_archive = archive_only_instruments(
                client, exchange=exchange, universe_cfg=universe_cfg, day=day, known=set(union["instId"].to_list()),
                cache_dir=archive_cache, concurrency=download_concurrency)
            union = pl.concat([union, only_archive], how="diagonal_relaxed")
            frames.append(from_archive)
        write_parquet(union, instruments_out)
        now_ms = client.server_time_ms()
        newest_complete = (dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc) - dt.timedelta(days=1)).date()
        if day > newest_complete:
            raise ValueError(f"daily metrics for {day}: the day is not over at the exchange yet (its time is "
                             f"{dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc):%Y-%m-%d %H:%M} UTC).")
        candidates = [inst for inst in eligible(union, universe_cfg)["instId"].to_list()
                      if inst not in set(from_archive["inst"].to_list())]
        fetched = 0
        for i, inst in enumerate(candidates, 1):
            covered, history = cache.load(inst)
            if covered is None or not covered[0] <= day <= covered[1]:
                # what the cache lacks: everything, the days after it, or (start moved earlier) before it
                lo = min(history_start, day) if covered is None or day < covered[0] else \
                    covered[1] + dt.timedelta(days=1)
                hi = newest_complete if covered is None or day > covered[1] else covered[0] - dt.timedelta(days=1)
                try:
                    new = ranking.daily_history(client, inst, start_ms=day_start_ms(lo),
                                                end_ms=day_start_ms(hi + dt.timedelta(days=1)))
                except OkxApiError as exc:
                    log.warning("daily metrics: skipping %s: %s", inst, exc)
                    continue
                history = pl.concat([history, new]).unique(["inst", "day"], keep="last").sort("day")
                span = (lo, hi) if covered is None else (min(lo, covered[0]), max(hi, covered[1]))
                cache.store(inst, span, history)
                fetched += 1
            frames.append(history.filter(pl.col("day") == day))
            if i % 20 == 0 or i == len(candidates):
                log.info("daily metrics %s (%s): %d/%d instruments, %d fetched, %d requests", day, rank_by, i,
                         len(candidates), fetched, client.requests_sent)
    daily = pl.concat(frames) if frames else pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
    write_parquet(daily, out_path)
    return daily


def archive_only_instruments(
    client: Any,
    *,
    exchange: dict[str, Any],
    universe_cfg: dict[str, Any],
    day: dt.date,
    known: set[str],
    cache_dir: Path,
    concurrency: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Instruments OKX's archive lists for ``day`` that no instrument snapshot holds, and their metric.

    Why: OKX's instrument list holds only live instruments, so a coin delisted before the project
    first recorded it would be missing from every universe of its time (survivorship bias). The
    archive lists every instrument that traded on a day. Returns (their instrument rows, see
    :func:`archive_instruments_frame`; their daily metric for ``day`` from archive candles, for the
    eligible ones). Only ``quote_volume`` can be computed from candles: another ``rank_by`` leaves
    them unranked, with a warning.
    """
    from feeder import archive

    inst_type = universe_cfg.get("inst_type", "SWAP")
    first, last = archive.utc8_dates_of_utc_day(day)
    listed = archive.listed_instruments(client, inst_type=inst_type, first=first, last=last, cache_dir=cache_dir)
    frame = archive_instruments_frame({inst: inst_type for inst in listed if inst not in known}, seen_through=last)
    wanted = eligible(frame, universe_cfg)["instId"].to_list()
    empty = pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
    if not wanted:
        return frame, empty
    rank_by = universe_cfg.get("rank_by", DEFAULT_RANK_BY)
    if rank_by != "quote_volume":
        log.warning("daily metrics %s: %d instruments known only from OKX's archive (%s) are not ranked: "
                    "rank_by %s cannot be computed from archive candles", day, len(wanted), ", ".join(wanted[:5]),
                    rank_by)
        return frame, empty
    bars = archive.day_bars(client, exchange=exchange, inst_type=inst_type, day=day, instruments=wanted,
                            cache_dir=cache_dir, concurrency=concurrency)
    daily = archive_turnover(bars, day=day)
    log.info("daily metrics %s: %d instruments known only from OKX's archive (delisted before the first "
             "instrument snapshot), %d with turnover that day: %s", day, len(wanted), daily.height,
             ", ".join(wanted[:5]))
    return frame, daily


def funding_metric_frame(inst: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Funding-rate history rows → (inst, day, metric = mean |rate| of that UTC day)."""
    if not rows:
        return pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
    return (
        pl.DataFrame({"ts": [int(r["fundingTime"]) for r in rows],
                      "rate": [r.get("realizedRate") or r.get("fundingRate") for r in rows]},
                     schema={"ts": pl.Int64, "rate": pl.Utf8})
        .select(day=pl.from_epoch("ts", time_unit="ms").dt.date(),
                rate=pl.col("rate").cast(pl.Float64, strict=False).abs())
        .drop_nulls()
        .group_by("day").agg(metric=pl.col("rate").mean())
        .select(inst=pl.lit(inst), day="day", metric="metric")
        .sort("day")
    )


# -- the rankings: one entry per universe.rank_by value ----------------------------------------


def quote_volume_history(client: Any, inst: str, *, start_ms: int, end_ms: int) -> pl.DataFrame:
    """Daily USDT turnover of ``inst``: the ``volCcyQuote`` of its closed OKX ``1Dutc`` candles."""
    return daily_metric_frame({inst: client.history_candles(inst, "1Dutc", start_ms=start_ms, end_ms=end_ms)})


def abs_funding_rate_history(client: Any, inst: str, *, start_ms: int, end_ms: int) -> pl.DataFrame:
    """Mean absolute settled funding rate of ``inst`` per UTC day (OKX funding-rate-history)."""
    return funding_metric_frame(inst, client.funding_rate_history(inst, start_ms=start_ms, end_ms=end_ms))


def ticker_turnover(ticker: dict[str, Any]) -> float | None:
    """24h quote turnover of a ``/market/tickers`` item: for SWAP, ``volCcy24h`` is in base coin, so
    turnover ≈ ``volCcy24h × last``; for SPOT, ``volCcy24h`` is already quote currency."""
    try:
        vol_ccy, last = float(ticker.get("volCcy24h") or "nan"), float(ticker.get("last") or "nan")
    except ValueError:
        return None
    return vol_ccy if ticker.get("instType") == "SPOT" else vol_ccy * last


def last_settled_abs_funding_rate(item: dict[str, Any]) -> float | None:
    """|last settled funding rate| of a ``/public/funding-rate`` item (``settFundingRate``; the
    current estimate ``fundingRate`` where the exchange gives no settled one)."""
    try:
        return abs(float(item.get("settFundingRate") or item.get("fundingRate") or "nan"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Ranking:
    """How one ``universe.rank_by`` value ranks instruments.

    ``daily_history`` gives the workflow's metric: one value per instrument and UTC day, averaged
    over the ``window_days`` before a day by :func:`rank_day`. ``live_*`` say how the collector
    ranks before the workflow has written a universe file: one REST snapshot of the whole market
    and a score per item that stands for the same metric.
    """

    metric: str                                            # in words, for logs and messages
    daily_history: Callable[..., pl.DataFrame]              # (client, inst, *, start_ms, end_ms) -> inst, day, metric
    live_name: str                                          # what the live snapshot is, in words
    live_metric: str                                        # what its score is, in words
    live_path: str                                          # its OKX REST endpoint
    live_params: Callable[[str], dict[str, str]]            # inst_type -> the request's parameters
    live_score: Callable[[dict[str, Any]], float | None]    # one snapshot item -> score (higher ranks first)


#: universe.rank_by -> its ranking. The schema's rank_by enum lists the same names in this order
#: (tests/test_universe.py), the first being the default.
RANKINGS: dict[str, Ranking] = {
    "quote_volume": Ranking(
        metric="mean daily USDT turnover",
        daily_history=quote_volume_history,
        live_name="live tickers", live_metric="24h quote turnover", live_path="/api/v5/market/tickers",
        live_params=lambda inst_type: {"instType": inst_type},
        live_score=ticker_turnover),
    "abs_funding_rate": Ranking(
        metric="mean absolute settled funding rate",
        daily_history=abs_funding_rate_history,
        live_name="live funding rates", live_metric="|last settled funding rate|",
        live_path="/api/v5/public/funding-rate",
        live_params=lambda _inst_type: {"instId": "ANY"},  # every perpetual swap in one answer
        live_score=last_settled_abs_funding_rate),
}
DEFAULT_RANK_BY = next(iter(RANKINGS))


def ranking_for(rank_by: str) -> Ranking:
    """The :data:`RANKINGS` entry of ``rank_by``; an unknown value is refused with the valid ones.

    Never a fallback: a value no entry builds must not rank by something else without a word.
    """
    try:
        return RANKINGS[rank_by]
    except KeyError:
        choices = ", ".join(f"{name} ({entry.metric})" for name, entry in RANKINGS.items())
        raise ValueError(f"universe.rank_by: {rank_by!r} is not a ranking this project builds; use one of "
                         f"{choices}.") from None


def live_origin(universe_cfg: dict[str, Any]) -> str:
    """How the collector's fallback ranking is described in its start-up log, e.g.
    ``live tickers (24h quote turnover)``."""
    ranking = ranking_for(universe_cfg.get("rank_by", DEFAULT_RANK_BY))
    return f"{ranking.live_name} ({ranking.live_metric})"


def build_universe_day(*, daily_paths: list[Path], instruments_path: Path, day: dt.date, size: int,
                       window_days: int, out_path: Path) -> pl.DataFrame:
    """Rank day ``day`` from the daily metric files of the days before it; write its full ranking."""
    listed = listed_on(pl.read_parquet(instruments_path), day)
    daily = pl.concat([pl.read_parquet(p) for p in daily_paths]) if daily_paths else \
        pl.DataFrame(schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
    ranking = rank_day(daily, day=day, size=size, window_days=window_days, listed=listed)
    log.info("universe %s: %d ranked, %d members; top: %s", day, ranking.height,
             int(ranking["member"].sum()), ", ".join(members(ranking)[:5]))
    write_parquet(ranking, out_path)
    return ranking


def read_memberships(paths: list[Path]) -> pl.DataFrame:
    """Concatenate per-day universe files → (day, inst, member)."""
    frames = [pl.read_parquet(p, columns=["day", "inst", "member"]) for p in paths]
    if not frames:
        return pl.DataFrame(schema={"day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean})
    return pl.concat(frames)


