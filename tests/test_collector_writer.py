"""collector.writer: hourly shards, flushing, sealing, write errors (the layout is feeder.shards)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shard_records import T0, FakeClock, rec

from collector import writer as W
from feeder import shards as S
from feeder.records import encode_record

H = S.HOUR_MS


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def digest(paths: list[Path]) -> dict[Path, tuple[str, int]]:
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}


# --------------------------------------------------------------------------- writer


def test_layout_write_flush_seal_and_hour_rollover(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 5_000)
    w = W.ShardWriter(tmp_path, "ws", clock, flush_interval_s=1.0, seal_grace_s=2.0, pid=4242)
    assert w.writer_id == f"{T0 + 5_000}-4242"
    r1, r2 = rec(T0 + 5_000, n=1), rec(T0 + 6_000, channel="funding-rate", n=2)
    w.write(r1)
    w.write(r2)
    hour22 = tmp_path / "ws" / "candle1m" / "2024-03-04" / "22"
    open_file = hour22 / f"{w.writer_id}.jsonl.open"
    assert open_file.exists()
    assert open_file.read_bytes() == b""  # buffered until a flush is due
    clock.ms += 1_000
    w.tick()
    assert open_file.read_bytes() == encode_record(r1)  # flushed within flush_interval_s
    # next hour: a record goes to hour 23; hour 22 stays open during the grace period
    clock.ms = T0 + H + 500
    r3 = rec(T0 + H + 500, n=3)
    w.write(r3)
    assert open_file.exists()
    clock.ms = T0 + H + 2_000
    sealed = w.tick()
    assert sorted(p.name for p in sealed) == [f"{w.writer_id}.jsonl"] * 2
    assert not open_file.exists()
    assert (hour22 / f"{w.writer_id}.jsonl").read_bytes() == encode_record(r1)
    assert (tmp_path / "ws" / "funding-rate" / "2024-03-04" / "22" / f"{w.writer_id}.jsonl").exists()
    w.close()
    hour23 = tmp_path / "ws" / "candle1m" / "2024-03-04" / "23" / f"{w.writer_id}.jsonl"
    assert hour23.read_bytes() == encode_record(r3)
    assert not list(tmp_path.rglob("*.open"))
    assert w.close() == []  # idempotent


def test_receipt_hour_not_exchange_ts_decides_the_shard(tmp_path: Path) -> None:
    # the 23:59 candle received at 00:00:00.2 of the next day goes into that day's 00 shard
    recv = T0 + 2 * H + 200  # 2024-03-05T00:00:00.200Z
    r = dict(rec(recv), ts=T0 + 2 * H - 60_000)
    with W.ShardWriter(tmp_path, clock=FakeClock(recv)) as w:
        w.write(r)
    [path] = S.sealed_shards(tmp_path, "ws", "candle1m")
    assert path.parent.name == "00" and path.parent.parent.name == "2024-03-05"
    assert S.sealed_shards(tmp_path, "ws", "candle1m", "2024-03-05") == [path]
    assert list(S.read_records([path])) == [r]


def test_day_rollover_and_quiet_channel_sealed_by_tick(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 2 * H - 10)  # 23:59:59.990
    w = W.ShardWriter(tmp_path, clock=clock, seal_grace_s=0)
    w.write(rec(clock.ms, channel="open-interest"))
    clock.ms += 10
    assert [p.parent.name for p in w.tick()] == ["23"]  # no new record needed
    assert w.open_paths == []
    w.close()


def test_late_record_after_seal_never_touches_the_sealed_file(tmp_path: Path) -> None:
    clock = FakeClock(T0 + H - 1_000)
    w = W.ShardWriter(tmp_path, clock=clock, seal_grace_s=0, pid=7)
    w.write(rec(T0 + H - 1_000, n=1))
    clock.ms = T0 + H + 10
    [sealed] = w.tick()
    before = digest([sealed])
    w.write(rec(T0 + H - 500, n=2))  # received in hour 22, processed after its seal
    w.close()
    assert digest([sealed]) == before
    files = S.sealed_shards(tmp_path, "ws", "candle1m")
    assert len(files) == 2 and files[0] == sealed
    assert files[1].name.endswith("-7.jsonl") and files[1].name != sealed.name
    assert [r["data"][1] for r in S.read_records(files)] == ["1", "2"]
    assert w.stats.late_reopens == 1


def test_restart_within_the_hour_gets_a_new_file(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1_000)
    with W.ShardWriter(tmp_path, clock=clock) as w1:
        w1.write(rec(T0 + 1_000, n=1))
    [first] = all_files(tmp_path)
    before = digest([first])
    clock.ms += 5_000
    with W.ShardWriter(tmp_path, clock=clock) as w2:
        w2.write(rec(T0 + 6_000, n=2))
    assert w2.writer_id != w1.writer_id
    assert digest([first]) == before
    assert [r["data"][1] for r in S.read_records(S.sealed_shards(tmp_path, "ws", "candle1m"))] == ["1", "2"]


def test_bad_names_and_lines_are_refused(tmp_path: Path) -> None:
    w = W.ShardWriter(tmp_path, clock=FakeClock(T0))
    for channel in ("../etc", "Candle1m", "", "a/b"):
        with pytest.raises(ValueError):
            w.write(rec(T0, channel=channel))
    with pytest.raises(ValueError):
        w.write_line("trades", T0, b'{"a":1}')  # no newline
    with pytest.raises(ValueError):
        w.write_line("trades", T0, b'{"a":1}\n{"b":2}\n')
    w.close()
    with pytest.raises(RuntimeError):
        w.write(rec(T0))


# --------------------------------------------------------------------------- errors


def test_enospc_raises_clear_error_and_keeps_sealed_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(T0 + 1_000)
    w = W.ShardWriter(tmp_path, clock=clock, seal_grace_s=0)
    w.write(rec(T0 + 1_000))
    clock.ms = T0 + H + 1
    sealed = w.tick()
    before = digest(sealed)
    first = rec(T0 + H + 1)
    w.write(first)
    w.flush()
    shard = next(iter(w._open.values()))
    real_write = os.write

    def half_then_full(fd: int, data) -> int:   # a short write, then the disk is full
        if fd == shard.fd and not getattr(half_then_full, "done", False):
            half_then_full.done = True  # type: ignore[attr-defined]
            return real_write(fd, bytes(data[: len(data) // 2]))
        if fd == shard.fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(S.os, "write", half_then_full)
    w.write(rec(T0 + H + 2))
    with pytest.raises(S.ShardWriteError) as info:
        w.flush()
    err = info.value
    assert err.errno == errno.ENOSPC
    assert str(shard.open_path) in str(err) and "Free space" in str(err) and "paths.raw" in str(err)
    # the torn half line was cut off again: the file holds complete lines only
    assert shard.open_path.read_bytes() == encode_record(first)
    with pytest.raises(S.ShardWriteError):  # the writer stays failed
        w.write(rec(T0 + H + 3))
    with pytest.raises(S.ShardWriteError):
        w.close()
    assert digest(sealed) == before
    # close() sealed what was on disk (complete lines), and counted what the disk refused
    [second] = [p for p in S.sealed_shards(tmp_path, "ws", "candle1m") if p not in sealed]
    assert second.read_bytes() == encode_record(first)
    assert w.stats.lost_records == 1 and w.stats.write_errors >= 1
    assert not list(tmp_path.rglob("*.open"))


def test_efbig_hint_and_probe_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = S.ShardWriteError(tmp_path / "x.jsonl.open", OSError(errno.EFBIG, "File too large"))
    assert "file size limit" in str(err) and "Sealed shards are untouched" in str(err)
    (tmp_path / "raw").mkdir()
    stale = tmp_path / "raw" / ".write-probe-999999999"   # left by a process killed while probing
    stale.write_bytes(b"\0" * 10)
    assert W.probe_writable(tmp_path / "raw") is None
    assert not [p for p in (tmp_path / "raw").iterdir()]  # the probe file is removed, the stale one too

    def full(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S.os, "write", full)
    problem = W.probe_writable(tmp_path / "raw")
    assert problem is not None and problem.errno == errno.ENOSPC and "is full" in str(problem)
    assert not [p for p in (tmp_path / "raw").iterdir()]


def test_eacces_on_create_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def deny(path, flags, *args):
        if str(path).endswith(".jsonl.open"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(S.os, "open", deny)
    w = W.ShardWriter(tmp_path, clock=FakeClock(T0))
    with pytest.raises(S.ShardWriteError) as info:
        w.write(rec(T0))
    assert info.value.errno == errno.EACCES
    assert "no permission" in str(info.value) and "2024-03-04/22" in str(info.value)


# --------------------------------------------------------------------------- properties

record_sequences = st.lists(
    st.tuples(
        st.one_of(st.integers(min_value=0, max_value=3 * H),  # gap to the previous record
                  st.integers(min_value=-H // 2, max_value=0)),  # the clock stepping back
        st.sampled_from(["candle1m", "funding-rate", "trades"]),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8),
    ),
    max_size=60,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=record_sequences, grace=st.sampled_from([0.0, 2.0]), tick_every=st.integers(1, 5))
def test_sealed_shards_replay_exactly_what_was_written(tmp_path_factory, seq, grace, tick_every) -> None:
    root = tmp_path_factory.mktemp("prop")
    clock = FakeClock(T0 - 7_000)
    w = W.ShardWriter(root, clock=clock, seal_grace_s=grace, buffer_size=128)
    written: dict[str, list[dict]] = {}
    for i, (gap, channel, text) in enumerate(seq):
        clock.ms += gap
        r = {"v": 1, "source": "ws", "channel": channel, "inst": f"I-{text}", "ts": clock.ms // 60_000 * 60_000,
             "recv_ts": clock.ms, "data": {"n": i, "s": text, "ts": str(clock.ms)}}
        w.write(r)
        written.setdefault(channel, []).append(r)
        if i % tick_every == 0:
            w.tick()
    w.close()
    assert not list(root.rglob("*.open"))
    for channel, expected in written.items():
        got = list(S.read_records(S.sealed_shards(root, "ws", channel)))
        # write order within each receipt hour; hours in order (identical if the clock only advances)
        assert got == sorted(expected, key=lambda r: S.hour_of(r["recv_ts"]))
        for path in S.sealed_shards(root, "ws", channel):  # every record sits in its receipt hour
            hours = {S.hour_of(r["recv_ts"]) for r in S.read_records([path])}
            assert len(hours) == 1 and S.hour_dir(root, "ws", channel, hours.pop()) == path.parent


# --------------------------------------------------------------------------- compressed channels


def test_compressed_channel_is_sealed_as_jsonl_zst_and_the_open_file_removed_only_after(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 5_000)
    seen: list[tuple[Path, int]] = []
    w = W.ShardWriter(tmp_path, "ws", clock, seal_grace_s=2.0, pid=4242, compress_channels=["books5"],
                      on_seal=lambda p, n: seen.append((p, n)))
    books = [rec(T0 + 5_000 + i, channel="books5", n=i) for i in range(3000)]
    candles = [rec(T0 + 6_000, n=1)]
    for r in books + candles:
        w.write(r)
    clock.ms = T0 + H + 2_000
    sealed = w.tick() + w.wait_compressed()
    hour22 = tmp_path / "ws" / "books5" / "2024-03-04" / "22"
    zst = hour22 / f"{T0 + 5_000}-4242.jsonl.zst"
    candle = tmp_path / "ws" / "candle1m" / "2024-03-04" / "22" / f"{T0 + 5_000}-4242.jsonl"
    assert sorted(sealed) == sorted([zst, candle])
    assert sorted(p.name for p in hour22.iterdir()) == [zst.name]          # no .open, no temporary file
    assert list(S.read_records([zst])) == books and list(S.read_records([candle])) == candles
    plain = sum(len(encode_record(r)) for r in books)
    assert zst.stat().st_size < plain / 5
    assert sorted(seen) == sorted([(zst, zst.stat().st_size), (candle, candle.stat().st_size)])
    st = w.stats
    assert (st.shards_compressed, st.bytes_compressed_in, st.bytes_compressed_out) == (1, plain, zst.stat().st_size)
    # a late record of the sealed hour: a fresh writer id, the compressed shard is never touched
    before = digest([zst])
    w.write(rec(T0 + 9_000, channel="books5", n=99))
    closed = w.close()                                 # waits for the compression
    late = S.sealed_shards(tmp_path, "ws", "books5")
    assert len(late) == 2 and late[0] == zst and closed == [late[1]] and late[1].name.endswith(".jsonl.zst")
    assert digest([zst]) == before and [r["data"][1] for r in S.read_records([late[1]])] == ["99"]
    assert w.stats.late_reopens == 1

