"""feeder.shards: the raw shard layout (paths, sealed shards, reading) and atomic REST shards.

The collector's hourly writer is tested in test_collector_writer.py, start-up recovery in
test_collector_recovery.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from feeder import shards as S

H = S.HOUR_MS
T0 = 1_709_589_600_000  # 2024-03-04T22:00:00Z


def rec(recv_ts: int, *, channel: str = "candle1m", inst: str = "BTC-USDT-SWAP", n: int = 0) -> dict:
    return {"v": 1, "source": "ws", "channel": channel, "inst": inst, "ts": recv_ts - recv_ts % 60_000,
            "recv_ts": recv_ts, "data": [str(recv_ts), str(n), "1", "1", "1", "1", "1", "1", "1"]}


# --------------------------------------------------------------------------- atomic shards


def test_write_shard_atomically(tmp_path: Path) -> None:
    path = S.rest_shard_path(tmp_path, "candle1m", "2024-03-04")
    assert path == tmp_path / "rest" / "candle1m" / "2024-03-04.jsonl"
    records = [dict(rec(T0 + i), source="rest") for i in range(3)]
    assert S.write_shard_atomically(path, records) == 3
    assert list(S.read_records([path])) == records
    before = path.read_bytes()

    def failing():
        yield records[0]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(S.ShardWriteError) as info:
        S.write_shard_atomically(path, failing())
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # temp file cleaned up
