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
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_json
from feeder.checks import DEFAULT_SPIKE_FACTOR, VALUE_COLUMNS, stream_suspects, validate_candles
from feeder.clean import read_raw_records
from feeder.identifiers import inst_path_stem, is_inst_id
from feeder.records import records_from_rest
from feeder.rest import OkxApiError, OkxRestClient, OkxUnavailableError
from feeder.shards import read_records, write_shard_atomically

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def day_bounds_ms(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch milliseconds."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    return start, start + DAY_MS


def streamed_minutes(
    shard_paths: Sequence[Path], day: dt.date, *, spike_factor: float = DEFAULT_SPIKE_FACTOR
) -> pl.DataFrame:
    """(inst, ts) of every minute of ``day`` whose streamed candle cleaning will keep as streamed.

    The stream's records are judged by feeder.checks, the code cleaning uses, never by a copy of
    its rules: a candle cleaning rejects (unconfirmed, unparsable or negative price, high < low,
    no valid timestamp in ``data``...) does not count, and the minute is the candle's own
    ``data[0]``, not the record's ``ts``. Nor do minutes cleaning must cross-check with REST
    (feeder.checks.stream_suspects): the stream's confirmed copies disagree, or its bar is
    implausible by more than ``spike_factor``. Every minute not returned is fetched; lines that
    are not records are skipped (cleaning counts them): at worst a minute is fetched, never lost.
    """
    records, _ = read_raw_records([Path(p) for p in shard_paths])
    valid = (
        validate_candles(records, day=day)
        .filter(pl.col("reject").is_null() & (pl.col("source") == "ws"))
        .select("inst", "ts", *VALUE_COLUMNS, "source", "recv_ts")
    )
    suspects = stream_suspects(valid, spike_factor=spike_factor).select("inst", "ts")
    return (
        valid.select("inst", "ts").unique()
        .join(suspects, on=["inst", "ts"], how="anti")
        .select("inst", pl.col("ts").dt.epoch("ms").alias("ts"))
        .sort("inst", "ts")
    )


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


class BackfillIncomplete(RuntimeError):
    """Some ranges could not be fetched (network, exchange overloaded). What was fetched is kept."""


def _piece_path(fetched_dir: Path, inst: str, lo: int, hi: int) -> Path:
    return fetched_dir / f"{inst_path_stem(inst)}.{lo}-{hi}.jsonl"


def fetch_log(fetched_dir: Path) -> dict[str, list[tuple[int, int, Path]]]:
    """Ranges already fetched per instrument: ``{inst: [(lo, hi, piece_path), ...]}``.

    The fetch log is a directory of immutable pieces, one per fetched range, named
    ``<instId>.<lo>-<hi>.jsonl``: the name records what was asked, the content what OKX had
    (an empty piece means "the exchange has no candle there"). A piece is written atomically
    as soon as its range is fetched, so an interrupted backfill resumes where it stopped and
    never asks for a range twice.
    """
    pieces: dict[str, list[tuple[int, int, Path]]] = {}
    if not fetched_dir.is_dir():
        return pieces
    for path in fetched_dir.glob("*.jsonl"):
        inst, _, span = path.name[: -len(".jsonl")].rpartition(".")
        lo, _, hi = span.partition("-")
        if is_inst_id(inst) and lo.isdigit() and hi.isdigit():
            pieces.setdefault(inst, []).append((int(lo), int(hi), path))
    return pieces


def subtract_ranges(ranges: list[tuple[int, int]], done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Minute ranges in ``ranges`` not covered by any range in ``done`` (all [lo, hi) in ms)."""
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        cuts = sorted((max(lo, a), min(hi, b)) for a, b in done if a < hi and b > lo)
        cursor = lo
        for a, b in cuts:
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < hi:
            out.append((cursor, hi))
    return out


def backfill_day(
    *,
    client: OkxRestClient,
    day: dt.date,
    instruments: Sequence[str],
    stream_shards: Sequence[Path],
    fetched_dir: Path,
    out_path: Path,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
) -> dict[str, Any]:
    """Fetch the 1m bars of ``instruments`` on ``day`` that neither the stream nor an earlier
    fetch has; write every fetched bar of these instruments as one rest shard at ``out_path``.

    Returns a summary per instrument (bars streamed, fetched now, fetched earlier, ranges
    attempted, errors). Instruments OKX does not know (error 51001) are reported, not fatal.
    If a range still fails after the client's retries, the other instruments are finished,
    then :class:`BackfillIncomplete` is raised: run again to fetch only what is missing.
    """
    start, end = day_bounds_ms(day)
    have = streamed_minutes(stream_shards, day, spike_factor=spike_factor)  # what cleaning will keep as streamed
    have_by_inst = {inst: set(group["ts"].to_list()) for (inst,), group in have.group_by("inst")} if have.height else {}
    fetched_dir.mkdir(parents=True, exist_ok=True)
    earlier = fetch_log(fetched_dir)
    summary: dict[str, Any] = {"day": day.isoformat(), "instruments": {}, "errors": {}, "unavailable": {}}
    requests_before = client.requests_sent
    t0 = time.monotonic()
    fetched_now = 0
    for i, inst in enumerate(instruments, 1):
        done = [(lo, hi) for lo, hi, _ in earlier.get(inst, [])]
        todo = subtract_ranges(missing_ranges(have_by_inst.get(inst, ()), start_ms=start, end_ms=end), done)
        inst_now = 0
        try:
            for lo, hi in todo:
                for page_lo, page_hi, rows in client.history_candle_pages(inst, "1m", start_ms=lo, end_ms=hi):
                    # closed bars only: a range ending "now" would otherwise record a forming bar
                    closed = [row for row in rows if len(row) < 9 or row[8] == "1"]
                    parsed = records_from_rest("candle1m", closed, recv_ts=int(time.time() * 1000), inst=inst)
                    for reject in parsed.rejects:  # cleaning drops these too; say where they came from
                        log.warning("backfill %s %s: REST row rejected: %s", day, inst, reject)
                    # one immutable piece per page: an interruption loses at most the page in flight
                    write_shard_atomically(_piece_path(fetched_dir, inst, page_lo, page_hi), parsed.records)
                    inst_now += len(parsed.records)
        except OkxApiError as exc:
            summary["errors"][inst] = f"{exc.code}: {exc.msg}"
            log.warning("backfill %s %s: OKX refused: %s", day, inst, exc)
        except OkxUnavailableError as exc:
            summary["unavailable"][inst] = str(exc)
            log.error("backfill %s %s: %s", day, inst, exc)
        fetched_now += inst_now
        summary["instruments"][inst] = {
            "streamed": len(have_by_inst.get(inst, ())),
            "fetched_now": inst_now,
            "ranges_fetched_now": len(todo),
        }
        if i % 10 == 0 or i == len(instruments):
            log.info("backfill %s: %d/%d instruments, %d bars fetched, %d requests, %.1fs",
                     day, i, len(instruments), fetched_now, client.requests_sent - requests_before,
                     time.monotonic() - t0)
    pieces = fetch_log(fetched_dir)
    wanted = set(instruments)
    records = [rec for inst, items in sorted(pieces.items()) if inst in wanted
               for _, _, path in sorted(items) for rec in read_records([path])]
    summary["attempted"] = {inst: sorted([lo, hi] for lo, hi, _ in items) for inst, items in pieces.items()
                            if inst in wanted}
    summary["requests"] = client.requests_sent - requests_before
    summary["bars_fetched_now"] = fetched_now
    summary["bars_in_shard"] = len(records)
    if summary["unavailable"]:
        raise BackfillIncomplete(
            f"backfill {day}: {len(summary['unavailable'])} instrument(s) could not be fetched "
            f"({', '.join(sorted(summary['unavailable']))}); {fetched_now} bars fetched now are kept in "
            f"{fetched_dir}. Run the same command again: only what is still missing will be fetched."
        )
    write_shard_atomically(out_path, records)
    return summary


def run_backfill(
    *,
    exchange: dict[str, Any],
    day: dt.date,
    universe_path: Path,
    stream_shards: Sequence[Path],
    out_path: Path,
    summary_path: Path,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
) -> dict[str, Any]:
    """Workflow entry point: backfill the members of ``day``'s universe (``spike_factor``: clean.spike_factor)."""
    from feeder.universe import members

    instruments = members(pl.read_parquet(universe_path))
    fetched_dir = out_path.with_name(out_path.name.replace(".jsonl", ".fetched"))
    with OkxRestClient.from_exchange(exchange) as client:
        summary = backfill_day(client=client, day=day, instruments=instruments, stream_shards=stream_shards,
                               fetched_dir=fetched_dir, out_path=out_path, spike_factor=spike_factor)
    write_json(summary, summary_path)
    log.info("backfill %s done: %d bars fetched with %d requests for %d instruments (%d refused)",
             day, summary["bars_fetched_now"], summary["requests"], len(instruments), len(summary["errors"]))
    return summary
