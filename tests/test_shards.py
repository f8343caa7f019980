"""feeder.shards: the raw shard layout (paths, sealed shards, reading) and atomic REST shards.

The collector's hourly writer is tested in test_collector_writer.py, start-up recovery in
test_collector_recovery.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from shard_records import T0, rec

from feeder import shards as S

H = S.HOUR_MS


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
