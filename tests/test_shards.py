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


# --------------------------------------------------------------------------- compressed (.jsonl.zst) shards


def _zst_shard(root: Path, hour: str, name: str, records: list[dict]) -> Path:
    """A sealed .jsonl.zst shard made by the seal path itself (compress_sealed)."""
    import os

    from feeder.records import encode_record

    d = root / "ws" / "books5" / "2024-03-04" / hour
    d.mkdir(parents=True, exist_ok=True)
    src = d / f"{name}.jsonl.open"
    src.write_bytes(b"".join(encode_record(r) for r in records))
    fd = os.open(src, os.O_RDONLY)
    try:
        S.compress_sealed(fd, src.stat().st_size, d / f"{name}.jsonl.zst")
    finally:
        os.close(fd)
    src.unlink()
    return d / f"{name}.jsonl.zst"


def test_zst_shards_are_listed_and_streamed_like_plain_ones(tmp_path: Path) -> None:
    a = [rec(T0 + i, channel="books5") for i in range(5000)]
    b = [rec(T0 + H + i, channel="books5") for i in range(3)]
    zst = _zst_shard(tmp_path, "22", f"{T0}-1", a)
    plain = tmp_path / "ws" / "books5" / "2024-03-04" / "23" / f"{T0 + H}-1.jsonl"
    plain.parent.mkdir(parents=True)
    S.write_shard_atomically(plain, b)
    (plain.parent / f"{T0 + H}-2.jsonl.open").write_bytes(b"{}\n")           # never listed
    (zst.parent / f".{T0}-3.jsonl.zst.tmp").write_bytes(b"partial")         # a compression under way
    assert S.sealed_shards(tmp_path, "ws", "books5") == [zst, plain]
    assert S.sealed_shards(tmp_path, "ws", "books5", "2024-03-04") == [zst, plain]
    assert S.all_sealed_shards(tmp_path) == [zst, plain]
    assert zst.stat().st_size < sum(len(S.encode_record(r)) for r in a) / 5
    assert list(S.read_records([zst, plain])) == a + b


@pytest.mark.parametrize("damage", ["torn", "garbled", "empty", "partial_line"])
def test_a_torn_or_garbled_zst_shard_is_an_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    records = [rec(T0 + i, channel="books5") for i in range(2000)]
    zst = _zst_shard(tmp_path, "22", f"{T0}-1", records)
    data = zst.read_bytes()
    if damage == "torn":
        zst.write_bytes(data[: len(data) // 2])
    elif damage == "garbled":
        zst.write_bytes(data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:])
    elif damage == "empty":
        zst.write_bytes(b"")
    else:   # a complete zstd stream whose content ends without a newline
        import pyarrow as pa

        with pa.output_stream(str(zst), compression="zstd") as out:
            out.write(S.encode_record(records[0]) + b'{"v":1')
    with pytest.raises(ValueError) as info:
        list(S.read_records([zst]))
    assert str(zst) in str(info.value)
    assert "restore it" in str(info.value) or "not a record" in str(info.value)
