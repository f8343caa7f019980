"""Seeded standard workload: N symbols x D days of 1m candles as sealed WebSocket shards.

Written through the project's own shard writer (collector.writer.ShardWriter) with a simulated
receipt clock, so the benchmark measures the real pipeline on real-format input. Candle values
come from the simulator's market model (okxsim.Market), the same world the simulator serves over
REST, so the workflow's universe and backfill steps see a consistent exchange. A share of lines
is written twice (duplicates, as after a reconnect replay), which cleaning must remove.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

from collector.writer import ShardWriter
from feeder.records import encode_record
from okxsim import Market

MINUTE_MS = 60_000


def generate(*, raw_root: Path, seed: int, history_start: str, days: list[dt.date], n_symbols: int,
             duplicate_share: float = 0.01, clock_start: str | None = None) -> dict[str, Any]:
    """Write the workload; return counts (candles, lines, bytes, seconds, candles_by_day).

    ``clock_start``: the clock of the simulator the workload is built against. The simulator's
    market depends on it (its volumes do), so a store generated for another clock disagrees with
    that simulator's REST and archive copies of the same minutes (every such bar a conflict).
    """
    market = Market(seed=seed, history_start=history_start, **({"clock_start": clock_start} if clock_start else {}))
    members = {day: top_by_turnover(market, day, n_symbols) for day in days}
    swaps = sorted({inst for day_members in members.values() for inst in day_members})
    rng = random.Random(seed)
    now = {"t": 0.0}
    writer = ShardWriter(raw_root, "ws", clock=lambda: now["t"], flush_interval_s=3600)
    candles = lines = 0
    by_day: dict[str, int] = {}
    t0 = time.perf_counter()
    for day in days:
        rows = {inst: market.candles_1m(inst, day.isoformat()) for inst in members[day]}
        by_day[day.isoformat()] = sum(len(inst_rows) for inst_rows in rows.values())
        by_minute: dict[int, list[tuple[str, list[str]]]] = {}
        for inst, inst_rows in rows.items():
            for row in inst_rows:
                by_minute.setdefault(int(row[0]), []).append((inst, row))
        for minute in sorted(by_minute):
            recv = minute + MINUTE_MS + 150
            now["t"] = recv / 1000
            for inst, row in by_minute[minute]:
                line = encode_record({"v": 1, "source": "ws", "channel": "candle1m", "inst": inst, "ts": minute,
                                      "recv_ts": recv, "data": row})
                writer.write_line("candle1m", recv, line)
                candles += 1
                lines += 1
                if rng.random() < duplicate_share:
                    writer.write_line("candle1m", recv, line)
                    lines += 1
    now["t"] += 7200
    writer.tick()
    writer.close()
    size = sum(p.stat().st_size for p in raw_root.rglob("*.jsonl"))
    return {"symbols": n_symbols, "distinct_symbols": len(swaps), "candles": candles, "lines": lines, "bytes": size,
            "seconds": time.perf_counter() - t0, "candles_by_day": by_day}


STABLE_BASES = {"USDT", "USDC", "DAI", "FDUSD", "TUSD", "USDE", "PYUSD", "USDD", "USDP", "BUSD", "EURT", "USTC"}


def top_by_turnover(market: Market, day: dt.date, size: int, window_days: int = 7) -> list[str]:
    """The day's top-N the workflow will pick (trailing mean daily turnover), computed here
    independently from the market model, so the stream covers every member and the backfill
    has nothing to fetch."""
    at_ms = int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp() * 1000)
    scores = []
    for item in market.instruments(at_ms, "SWAP"):
        inst = item["instId"]
        if (item.get("settleCcy") != "USDT" or item.get("ctType") != "linear" or item.get("instCategory", "1") != "1"
                or inst.split("-")[0] in STABLE_BASES):
            continue
        vols = [market.day_quote_volume(inst, (day - dt.timedelta(days=k)).isoformat()) for k in range(1, window_days + 1)]
        vols = [v for v in vols if v > 0]
        if vols:
            scores.append((-sum(vols) / len(vols), inst))
    return [inst for _, inst in sorted(scores)[:size]]
