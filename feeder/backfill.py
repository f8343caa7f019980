"""Backfill and gap repair: one mechanism.

For a UTC day and the instruments that need it, find the 1-minute bars the live stream does not
have (all of them, for days before the collector ran) and fetch exactly those from OKX's
``history-candles``. What is fetched is written as a raw shard with ``source: "rest"``, in the
collector's record format, so cleaning treats both sources alike.

Why fetch only the missing minutes: a day the collector recorded fully costs no request, and a
day with a one-hour disconnect costs one page instead of five.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.records import records_from_rest
from feeder.rest import OkxApiError, OkxRestClient
from feeder.shards import write_shard_atomically

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def day_bounds_ms(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch milliseconds."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    return start, start + DAY_MS


def streamed_minutes(shard_paths: Sequence[Path], day: dt.date) -> pl.DataFrame:
    """(inst, ts) of every *closed* 1m candle the stream recorded for ``day``.

    Only ``confirm == "1"`` rows count: an unconfirmed update is not a bar. Lines that are not
    JSON are skipped here (cleaning counts them); at worst a minute is fetched twice, never lost.
    """
    start, end = day_bounds_ms(day)
    keys: list[tuple[str, int]] = []
    for path in shard_paths:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    data = rec["data"]
                    if rec.get("channel") != "candle1m" or len(data) < 9 or data[8] != "1":
                        continue
                    ts = int(rec["ts"])
                except (ValueError, KeyError, TypeError):
                    continue
                if start <= ts < end:
                    keys.append((rec["inst"], ts))
    return pl.DataFrame(keys, schema={"inst": pl.Utf8, "ts": pl.Int64}, orient="row").unique()


def missing_ranges(have_ts: Iterable[int], *, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Contiguous [from, to) millisecond ranges of minutes in [start_ms, end_ms) not in ``have_ts``."""
    have = set(have_ts)
    ranges: list[tuple[int, int]] = []
    run_start: int | None = None
    for minute in range(start_ms, end_ms, MINUTE_MS):
        if minute in have:
            if run_start is not None:
                ranges.append((run_start, minute))
                run_start = None
        elif run_start is None:
            run_start = minute
    if run_start is not None:
        ranges.append((run_start, end_ms))
    return ranges


def backfill_day(
    *,
    client: OkxRestClient,
    day: dt.date,
    instruments: Sequence[str],
    stream_shards: Sequence[Path],
    out_path: Path,
    not_after_ms: int | None = None,
) -> dict[str, Any]:
    """Fetch the 1m bars of ``instruments`` on ``day`` that the stream lacks; write one rest shard.

    ``not_after_ms`` caps the range at the exchange's "now" so a day still running is not
    fetched past its present. Returns a summary (requests, bars fetched per instrument, errors).
    Instruments OKX does not know (delisted before we asked, typo) are reported, not fatal.
    """
    start, end = day_bounds_ms(day)
    if not_after_ms is not None:
        end = min(end, not_after_ms - not_after_ms % MINUTE_MS)
    have = streamed_minutes(stream_shards, day)
    have_by_inst = {inst: set(group["ts"].to_list()) for (inst,), group in have.group_by("inst")} if have.height else {}
    records: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"day": day.isoformat(), "instruments": len(instruments), "fetched": {},
                               "streamed": {}, "errors": {}}
    requests_before = client.requests_sent
    t0 = time.monotonic()
    for i, inst in enumerate(instruments, 1):
        ranges = missing_ranges(have_by_inst.get(inst, ()), start_ms=start, end_ms=end)
        summary["streamed"][inst] = len(have_by_inst.get(inst, ()))
        fetched = 0
        for lo, hi in ranges:
            try:
                rows = client.history_candles(inst, "1m", start_ms=lo, end_ms=hi)
            except OkxApiError as exc:
                summary["errors"][inst] = f"{exc.code}: {exc.msg}"
                log.warning("backfill %s %s: %s", day, inst, exc)
                break
            parsed = records_from_rest("candle1m", rows, recv_ts=int(time.time() * 1000), inst=inst)
            for reject in parsed.rejects:  # cleaning would drop these too; say so where they came from
                log.warning("backfill %s %s: REST row rejected: %s", day, inst, reject)
            records.extend(parsed.records)
            fetched += len(parsed.records)
        summary["fetched"][inst] = fetched
        if i % 10 == 0 or i == len(instruments):
            log.info("backfill %s: %d/%d instruments, %d bars fetched, %d requests, %.1fs",
                     day, i, len(instruments), len(records), client.requests_sent - requests_before,
                     time.monotonic() - t0)
    summary["requests"] = client.requests_sent - requests_before
    summary["bars_fetched"] = len(records)
    write_shard_atomically(out_path, records)
    return summary


def run_backfill(
    *,
    exchange: dict[str, Any],
    day: dt.date,
    universe_path: Path,
    stream_shards: Sequence[Path],
    out_path: Path,
) -> dict[str, Any]:
    """Workflow entry point: backfill the members of ``day``'s universe."""
    from feeder.universe import members

    instruments = members(pl.read_parquet(universe_path))
    with OkxRestClient.from_exchange(exchange) as client:
        summary = backfill_day(client=client, day=day, instruments=instruments,
                               stream_shards=stream_shards, out_path=out_path)
    log.info("backfill %s done: %d bars fetched with %d requests for %d instruments (%d errors)",
             day, summary["bars_fetched"], summary["requests"], len(instruments), len(summary["errors"]))
    return summary
