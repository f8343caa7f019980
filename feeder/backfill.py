"""Backfill and gap repair: one mechanism, three sources.

For a UTC day and the instruments that need it, find the 1-minute bars that neither OKX's data
archive (feeder.archive: the minutes of every archive file read for the day) nor the live stream
has (all of them, for days before the collector ran and the archive published) and fetch exactly
those from OKX's ``history-candles``. A minute an archive file leaves out is a minute without
trades (OKX omits those in files and REST alike): it is not asked again; what the archive has
not published (the newest days, a missing or unreadable file) is. What is fetched is written as a raw shard with ``source: "rest"``, in the
collector's record format, so cleaning treats both sources alike.

Why fetch only the missing minutes: a day the collector recorded fully costs no request, and a
day with a one-hour disconnect costs one page instead of five.

Nothing lost, nothing invented: a day's shard is written only when every instrument was answered.
An instrument OKX refused, answered with something that is not its JSON, or said "no candle"
for without that being confirmed fails the day (after the other instruments are done, so their
pages are kept); a re-run asks only for what is still missing. The one refusal that is an answer
is 51001 for an instrument OKX no longer lists: it is delisted, recorded as
``unknown_to_exchange``.
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

from feeder.atomic import write_json
from feeder.checks import DEFAULT_SPIKE_FACTOR, VALUE_COLUMNS, stream_suspects, validate_candles
from feeder.identifiers import inst_path_stem, is_inst_id
from feeder.raw import read_raw_records
from feeder.records import records_from_rest
from feeder.registry import MINUTE_MS, day_bounds_ms
from feeder.rest import (UNKNOWN_INSTRUMENT, OkxApiError, OkxEmptyAnswerError, OkxRestClient, OkxUnavailableError,
                         OkxUnreachableError)
from feeder.shards import read_records, write_shard_atomically

log = logging.getLogger(__name__)


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


def archive_minutes_to_keep(
    archive_shards: Sequence[Path], day: dt.date, covered: dict[str, list[list[int]]]
) -> tuple[pl.DataFrame, dict[str, list[tuple[int, int]]]]:
    """What the archive settles for ``day``: its valid minutes, and per instrument the ranges not to ask REST for.

    ``covered`` (the archive stage's summary) holds per instrument the ranges of the day spanned
    by archive files that were read: a minute there is settled by the archive, with a bar or
    without (no trade). Except a minute whose archive row cleaning rejects (e.g. ``confirm`` "0"):
    the exchange's copy is unusable, so REST is asked for that minute. Returns (inst, ts) of the
    valid archive minutes (they count like streamed ones) and the settled ranges.
    """
    records, _ = read_raw_records([Path(p) for p in archive_shards])
    judged = validate_candles(records, day=day).filter(pl.col("source") == "archive")
    valid = (judged.filter(pl.col("reject").is_null())
             .select("inst", pl.col("ts").dt.epoch("ms").alias("ts")).unique().sort("inst", "ts"))
    rejected: dict[str, list[tuple[int, int]]] = {}
    for inst, ts in (judged.filter(pl.col("reject").is_not_null() & pl.col("ts").is_not_null())
                     .select("inst", pl.col("ts").dt.epoch("ms")).join(valid, on=["inst", "ts"], how="anti")
                     .unique().iter_rows()):
        rejected.setdefault(inst, []).append((ts, ts + MINUTE_MS))
    settled = {inst: subtract_ranges([(int(lo), int(hi)) for lo, hi in ranges], rejected.get(inst, []))
               for inst, ranges in covered.items()}
    return valid, settled


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
    """Some instruments could not be fetched (refused, garbled, unconfirmed empty answers, outage).

    What was fetched is kept in the fetch log; the day's shard is not written. ``summary`` is the
    day's summary as far as it got.
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


def _piece_path(fetched_dir: Path, inst: str, lo: int, hi: int) -> Path:
    return fetched_dir / f"{inst_path_stem(inst)}.{lo}-{hi}.jsonl"


def fetch_log(fetched_dir: Path) -> dict[str, list[tuple[int, int, Path]]]:
    """Ranges already fetched per instrument: ``{inst: [(lo, hi, piece_path), ...]}``.

    The fetch log is a directory of immutable pieces, one per fetched range, named
    ``<instId>.<lo>-<hi>.jsonl``: the name records what was asked, the content what OKX had
    (an empty piece means "the exchange has no candle there", written only once that is
    confirmed, see :meth:`OkxRestClient.history_candle_pages`). A piece is written atomically
    as soon as its range is fetched, so an interrupted backfill resumes where it stopped and
    never asks for a range twice. The one exception: with ``recheck_absent``, empty pieces are
    asked again (and removed once answered), for absences recorded by an older version.
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
    recheck_absent: bool = False,
    archive_shards: Sequence[Path] = (),
    archive_covered: dict[str, list[list[int]]] | None = None,
) -> dict[str, Any]:
    """Fetch the 1m bars of ``instruments`` on ``day`` that neither the archive, the stream nor an
    earlier fetch has; write every fetched bar of these instruments as one rest shard at ``out_path``.

    ``archive_shards`` / ``archive_covered``: the day's archive shard and, per instrument, the
    ranges its files spanned (see :func:`archive_minutes_to_keep`); empty with ``history.source: rest``.

    Returns a summary per instrument (bars streamed, fetched now, ranges attempted), and the
    instruments OKX no longer knows (``unknown_to_exchange``: 51001 for an instrument it does not
    list any more). Any other failure (a refusal, an answer that is not JSON, an empty answer
    that could not be confirmed, an outage) is collected while the other instruments are
    finished, then :class:`BackfillIncomplete` is raised and no shard is written: run again to
    fetch only what is missing. If the endpoint stops answering altogether (the client's circuit
    breaker), the remaining instruments are not asked at all. ``recheck_absent`` asks again the
    ranges an earlier run recorded as "the exchange has none".
    """
    start, end = day_bounds_ms(day)
    streamed = streamed_minutes(stream_shards, day, spike_factor=spike_factor)  # what cleaning will keep as streamed
    archived, settled = archive_minutes_to_keep(archive_shards, day, archive_covered or {})
    have = pl.concat([streamed, archived]).unique()
    have_by_inst = {inst: set(group["ts"].to_list()) for (inst,), group in have.group_by("inst")} if have.height else {}
    streamed_by_inst = dict(streamed.group_by("inst").len().iter_rows()) if streamed.height else {}
    archived_by_inst = dict(archived.group_by("inst").len().iter_rows()) if archived.height else {}
    fetched_dir.mkdir(parents=True, exist_ok=True)
    earlier = fetch_log(fetched_dir)
    summary: dict[str, Any] = {"day": day.isoformat(), "instruments": {}, "errors": {}, "unavailable": {},
                               "unknown_to_exchange": {}, "not_attempted": []}
    requests_before = client.requests_sent
    t0 = time.monotonic()
    fetched_now = 0
    unreachable: OkxUnreachableError | None = None
    for i, inst in enumerate(instruments, 1):
        if unreachable is not None:
            summary["not_attempted"].append(inst)
            continue
        pieces = earlier.get(inst, [])
        recheck = [path for _, _, path in pieces if recheck_absent and path.stat().st_size == 0]
        done = [(lo, hi) for lo, hi, path in pieces if path not in recheck] + settled.get(inst, [])
        todo = subtract_ranges(missing_ranges(have_by_inst.get(inst, ()), start_ms=start, end_ms=end), done)
        inst_now = 0
        written: set[Path] = set()
        try:
            for lo, hi in todo:
                for page_lo, page_hi, rows in client.history_candle_pages(inst, "1m", start_ms=lo, end_ms=hi):
                    # closed bars only: a range ending "now" would otherwise record a forming bar
                    closed = [row for row in rows if len(row) < 9 or row[8] == "1"]
                    parsed = records_from_rest("candle1m", closed, recv_ts=int(time.time() * 1000), inst=inst)
                    for reject in parsed.rejects:  # cleaning drops these too; say where they came from
                        log.warning("backfill %s %s: REST row rejected: %s", day, inst, reject)
                    # one immutable piece per page: an interruption loses at most the page in flight
                    piece = _piece_path(fetched_dir, inst, page_lo, page_hi)
                    write_shard_atomically(piece, parsed.records)
                    written.add(piece)
                    inst_now += len(parsed.records)
            for path in set(recheck) - written:  # asked again and answered: the old claim is replaced
                path.unlink(missing_ok=True)
        except OkxApiError as exc:
            _record_refusal(summary, client=client, day=day, inst=inst, exc=exc)
        except OkxUnreachableError as exc:
            summary["unavailable"][inst] = str(exc)
            unreachable = exc
            log.error("backfill %s %s: %s", day, inst, exc)
        except (OkxUnavailableError, OkxEmptyAnswerError) as exc:
            summary["unavailable"][inst] = str(exc)
            log.error("backfill %s %s: %s", day, inst, exc)
        fetched_now += inst_now
        summary["instruments"][inst] = {
            "streamed": streamed_by_inst.get(inst, 0),
            "from_archive": archived_by_inst.get(inst, 0),
            "fetched_now": inst_now,
            "ranges_fetched_now": len(todo),
        }
        if i % 10 == 0 or i == len(instruments):
            log.info("backfill %s: %d/%d instruments, %d bars fetched, %d requests, %.1fs",
                     day, i, len(instruments), fetched_now, client.requests_sent - requests_before,
                     time.monotonic() - t0)
    pieces = fetch_log(fetched_dir)
    wanted = set(instruments)
    summary["attempted"] = {inst: sorted([lo, hi] for lo, hi, _ in items) for inst, items in pieces.items()
                            if inst in wanted}
    # ranges the archive settled: a minute there without a bar is one without trades (coverage says so)
    summary["archive_settled"] = {inst: sorted([lo, hi] for lo, hi in ranges)
                                  for inst, ranges in sorted(settled.items()) if inst in wanted and ranges}
    summary["requests"] = client.requests_sent - requests_before
    summary["bars_fetched_now"] = fetched_now
    if summary["errors"] or summary["unavailable"] or summary["not_attempted"]:
        raise BackfillIncomplete(_incomplete_message(summary, day=day, fetched_dir=fetched_dir), summary)
    records = [rec for inst, items in sorted(pieces.items()) if inst in wanted
               for _, _, path in sorted(items) for rec in read_records([path])]
    summary["bars_in_shard"] = len(records)
    write_shard_atomically(out_path, records)
    return summary


def _record_refusal(summary: dict[str, Any], *, client: OkxRestClient, day: dt.date, inst: str,
                    exc: OkxApiError) -> None:
    """Sort an OKX refusal: 51001 for an instrument OKX no longer lists is an answer (delisted:
    its candles are gone from the API); anything else is a failure of the day."""
    said = f"{exc.code}: {exc.msg or '(no message)'}"
    if exc.code == UNKNOWN_INSTRUMENT:
        try:
            listed = client.instrument(inst)
        except (OkxApiError, OkxUnavailableError) as lookup:
            summary["errors"][inst] = (f"OKX refused ({said}), and checking whether it still lists {inst} "
                                       f"failed: {lookup}")
            log.error("backfill %s %s: %s", day, inst, summary["errors"][inst])
            return
        if listed is None:
            summary["unknown_to_exchange"][inst] = f"{said} (OKX no longer lists {inst}: delisted)"
            log.warning("backfill %s %s: OKX no longer knows this instrument (%s); its minutes are recorded "
                        "as unknown_to_exchange", day, inst, said)
            return
        said += f" although OKX lists {inst} as {listed.get('state') or 'an instrument'}"
    summary["errors"][inst] = f"OKX refused {exc.path}: {said}"
    log.error("backfill %s %s: %s", day, inst, summary["errors"][inst])


def _incomplete_message(summary: dict[str, Any], *, day: dt.date, fetched_dir: Path) -> str:
    """Which instruments failed and what OKX said, one line each, and what to do."""
    failed = {**summary["unavailable"], **summary["errors"]}
    lines = [f"backfill {day}: {len(failed)} instrument(s) failed, so the day's REST shard is not written:"]
    lines += [f"  {inst}: {why}" for inst, why in sorted(failed.items())]
    if summary["not_attempted"]:
        lines.append(f"  not asked, as OKX REST stopped answering: {', '.join(summary['not_attempted'])}")
    lines.append(f"The {summary['bars_fetched_now']} bars fetched now are kept in {fetched_dir}. "
                 "Run the same command again: only what is still missing will be fetched.")
    return "\n".join(lines)


def run_backfill(
    *,
    exchange: dict[str, Any],
    day: dt.date,
    universe_path: Path,
    stream_shards: Sequence[Path],
    out_path: Path,
    summary_path: Path,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
    recheck_absent: bool = False,
    archive_shard: Path | None = None,
    archive_summary_path: Path | None = None,
) -> dict[str, Any]:
    """Workflow entry point: backfill the members of ``day``'s universe.

    ``archive_shard`` / ``archive_summary_path``: the archive stage's output for the day
    (``history.source: archive+rest``); None with ``history.source: rest``.

    ``spike_factor`` (config ``clean.spike_factor``) decides which streamed bars are implausible
    enough to be cross-checked with REST; it must be the value cleaning uses.

    ``recheck_absent`` (config ``backfill.recheck_absent``) asks OKX again for ranges an earlier
    run recorded as having no candle.
    """
    from feeder.universe import members

    instruments = members(pl.read_parquet(universe_path))
    fetched_dir = out_path.with_name(out_path.name.replace(".jsonl", ".fetched"))
    with OkxRestClient.from_exchange(exchange) as client:
        summary = backfill_day(client=client, day=day, instruments=instruments, stream_shards=stream_shards,
                               fetched_dir=fetched_dir, out_path=out_path, spike_factor=spike_factor,
                               recheck_absent=recheck_absent,
                               archive_shards=[archive_shard] if archive_shard is not None else [],
                               archive_covered=_archive_covered(archive_summary_path))
    write_json(summary, summary_path)
    log.info("backfill %s done: %d bars fetched with %d requests for %d instruments (%d unknown to OKX)",
             day, summary["bars_fetched_now"], summary["requests"], len(instruments),
             len(summary["unknown_to_exchange"]))
    return summary


def _archive_covered(summary_path: Path | None) -> dict[str, list[list[int]]]:
    """Per instrument, the ranges of the day the archive's files spanned (the archive stage's summary)."""
    if summary_path is None:
        return {}
    summary = json.loads(Path(summary_path).read_text())
    return {inst: entry.get("covered", []) for inst, entry in summary.get("instruments", {}).items()}
