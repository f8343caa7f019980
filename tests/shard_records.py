"""Helpers shared by the raw-shard tests (test_shards, test_collector_writer, test_collector_recovery):
a candle record in the raw record format and a clock the tests move by hand."""

from __future__ import annotations

T0 = 1_709_589_600_000  # 2024-03-04T22:00:00Z


class FakeClock:
    """A receipt clock (seconds) the test sets: ``clock.ms = ...``."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def rec(recv_ts: int, *, channel: str = "candle1m", inst: str = "BTC-USDT-SWAP", n: int = 0) -> dict:
    """A raw WebSocket candle record received at ``recv_ts`` (its minute is the candle's open)."""
    return {"v": 1, "source": "ws", "channel": channel, "inst": inst, "ts": recv_ts - recv_ts % 60_000,
            "recv_ts": recv_ts, "data": [str(recv_ts), str(n), "1", "1", "1", "1", "1", "1", "1"]}
