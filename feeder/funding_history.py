"""Fetching settled funding rates from OKX REST: one UTC day per job (the ``funding_history`` rule).

Fetching funding history for one day costs at most one paged request per instrument the
first time, then nothing: every response (up to the exchange's present) is kept in a small
per-instrument cache beside the work directory, with the time range it is known to cover, so
the jobs of the following days are served from it. Settled rates never change, so a cached
range stays valid. Cleaning what is fetched is feeder.clean_funding.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_bytes
from feeder.clean_funding import FUNDING_CHANNEL, funding_window
from feeder.identifiers import inst_path_stem
from feeder.registry import DAY_MS, MINUTE_MS

log = logging.getLogger(__name__)

__all__ = ["FundingHistoryCache", "fetch_funding_day", "run_funding_history"]

#: A REST history fetch at exchange time `now` is trusted to hold every settlement up to
#: `now - PUBLISH_MARGIN` (a settlement may reach the history endpoint a little after T).
PUBLISH_MARGIN_MS = 10 * MINUTE_MS
#: A cache miss fetches from this far before the day's window up to the present: more than the
#: ~3 months OKX serves, so one fetch per instrument serves every day of a build, whatever order
#: Snakemake runs the days in (a few pages per instrument, once).
FETCH_LOOKBACK_MS = 100 * DAY_MS


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
