"""collector.recovery: sealing the .jsonl.open shards a dead writer left (and a real SIGKILL)."""

from __future__ import annotations

import hashlib
import os
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from shard_records import T0, FakeClock, rec

from collector.recovery import recover
from collector.writer import ShardWriter
from feeder import shards as S
from feeder.records import encode_record


def digest(paths: list[Path]) -> dict[Path, tuple[str, int]]:
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}


# --------------------------------------------------------------------------- recovery


def _open_shard(root: Path, name: str, content: bytes, hour: str = "22") -> Path:
    d = root / "ws" / "candle1m" / "2024-03-04" / hour
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(content)
    return p


def test_recover_cuts_partial_last_line_and_seals(tmp_path: Path) -> None:
    good = encode_record(rec(T0 + 1)) + encode_record(rec(T0 + 2))
    p = _open_shard(tmp_path, "100-1.jsonl.open", good + b'{"v":1,"source":"ws","chan')
    report = recover(tmp_path)
    final = p.with_name("100-1.jsonl")
    assert not p.exists() and final.read_bytes() == good
    [r] = report.sealed
    assert (r.path, r.cut_lines, r.kept_bytes) == (final, 1, len(good))
    assert report.cut_lines == 1 and report.cut_bytes == len(b'{"v":1,"source":"ws","chan')
    assert "cut 1 partial line" in report.summary()


def test_recover_cuts_complete_but_invalid_last_line(tmp_path: Path) -> None:
    good = encode_record(rec(T0 + 1))
    p = _open_shard(tmp_path, "100-1.jsonl.open", good + b"\x00\x00\x00\n")
    report = recover(tmp_path)
    assert p.with_name("100-1.jsonl").read_bytes() == good and report.cut_lines == 1


def test_recover_keeps_clean_file_whole_and_removes_empty(tmp_path: Path) -> None:
    good = encode_record(rec(T0 + 1))
    clean = _open_shard(tmp_path, "100-1.jsonl.open", good)
    empty = _open_shard(tmp_path, "100-2.jsonl.open", b"")
    only_partial = _open_shard(tmp_path, "100-3.jsonl.open", b'{"v":1', hour="23")
    report = recover(tmp_path)
    assert clean.with_name("100-1.jsonl").read_bytes() == good
    assert report.cut_lines == 1
    assert set(report.removed_empty) == {empty, only_partial}
    assert not list(tmp_path.rglob("*.open"))


def test_recover_never_touches_sealed_files_or_live_writers(tmp_path: Path) -> None:
    sealed = _open_shard(tmp_path, "100-1.jsonl", encode_record(rec(T0)) + b"garbage-without-newline")
    conflict_open = _open_shard(tmp_path, "100-1.jsonl.open", encode_record(rec(T0 + 5)))
    live = ShardWriter(tmp_path, clock=FakeClock(T0 + 10))
    live.write(rec(T0 + 10))
    live.flush()
    before = digest([sealed])
    report = recover(tmp_path)
    assert digest([sealed]) == before
    assert report.in_use == live.open_paths
    assert report.conflicts == [conflict_open] and conflict_open.exists()
    assert report.sealed == []
    live.close()


def test_recover_on_missing_root(tmp_path: Path) -> None:
    assert recover(tmp_path / "nope").sealed == []


# --------------------------------------------------------------------------- real SIGKILL

_CHILD = textwrap.dedent("""
    import os, sys, time
    from feeder.records import encode_record
    from collector.writer import ShardWriter
    root, torn_at = sys.argv[1], int(sys.argv[2])
    w = ShardWriter(root, flush_interval_s=0.005, buffer_size=1000)
    i = 0
    while True:
        now = int(time.time() * 1000)
        r = {"v": 1, "source": "ws", "channel": "trades", "inst": "BTC-USDT-SWAP", "ts": now,
             "recv_ts": now, "data": {"seq": i, "pad": "x" * (i % 97)}}
        if i == torn_at:   # a write the kill cuts in half (what a short write looks like on disk)
            w.flush()
            shard = next(iter(w._open.values()))
            line = encode_record(r)
            os.write(shard.fd, line[: len(line) // 2])
            print("torn", flush=True)
            time.sleep(60)
        w.write(r)
        i += 1
        if i % 50 == 0:
            w.flush()
            print(i, flush=True)   # every record before i is in the OS now
""")


@pytest.mark.parametrize("torn", [False, True], ids=["kill-while-writing", "kill-after-torn-write"])
def test_sigkill_mid_write_loses_at_most_the_unflushed_tail(tmp_path: Path, torn: bool) -> None:
    target = 3000
    args = [sys.executable, "-c", _CHILD, str(tmp_path), str(target if torn else -1)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    confirmed = 0
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if not line or line == "torn":
                break
            confirmed = int(line)
            if not torn and confirmed >= target:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert confirmed >= target, "child did not write fast enough"
    assert list(tmp_path.rglob("*.jsonl.open"))
    report = recover(tmp_path)
    assert report.cut_lines == (1 if torn else report.cut_lines) and report.cut_lines <= 1
    assert not list(tmp_path.rglob("*.open"))
    got = [r["data"]["seq"] for r in S.read_records(S.sealed_shards(tmp_path, "ws", "trades"))]
    assert got == list(range(len(got)))          # in order, no gaps, no duplicates
    assert len(got) >= confirmed                 # every flushed record survived the kill
    if torn:
        assert len(got) == target
    for path in S.sealed_shards(tmp_path, "ws", "trades"):
        data = path.read_bytes()
        assert data.endswith(b"\n")
        for line in data.splitlines():
            json.loads(line)


# --------------------------------------------------------------------------- compressed channels (books5)


def _books_open(root: Path, name: str, content: bytes) -> Path:
    d = root / "ws" / "books5" / "2024-03-04" / "22"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(content)
    return d / name


def test_recover_seals_an_open_books_shard_as_zst_and_cuts_its_torn_tail(tmp_path: Path) -> None:
    good = [rec(T0 + i, channel="books5", n=i) for i in range(50)]
    body = b"".join(encode_record(r) for r in good)
    p = _books_open(tmp_path, "1-1.jsonl.open", body + b'{"v":1,"channel":"bo')
    (p.parent / ".1-1.jsonl.zst.tmp").write_bytes(b"\x28\xb5\x2f\xfd half")    # a compression cut by the kill
    candle = _open_shard(tmp_path, "1-1.jsonl.open", encode_record(rec(T0)))
    report = recover(tmp_path, compress_channels=["books5"])
    zst = p.with_name("1-1.jsonl.zst")
    assert sorted(s.path for s in report.sealed) == sorted([zst, candle.with_name("1-1.jsonl")])
    assert report.cut_lines == 1 and not report.conflicts and not report.errors
    assert sorted(x.name for x in p.parent.iterdir()) == [zst.name]            # no .open, no temporary file
    assert list(S.read_records([zst])) == good
    assert S.sealed_shards(tmp_path, "ws", "books5") == [zst]


def test_recover_after_a_kill_between_the_rename_and_the_removal_of_the_open_file(tmp_path: Path) -> None:
    body = b"".join(encode_record(rec(T0 + i, channel="books5")) for i in range(20))
    p = _books_open(tmp_path, "2-1.jsonl.open", body)
    zst = p.with_name("2-1.jsonl.zst")
    fd = os.open(p, os.O_RDONLY)
    S.compress_sealed(fd, len(body), zst)      # the writer got this far, then was killed
    os.close(fd)
    before = digest([zst])
    report = recover(tmp_path, compress_channels=["books5"])
    assert [s.path for s in report.sealed] == [zst] and not p.exists() and digest([zst]) == before
    # a .open whose lines differ from its .zst: a conflict, both left alone
    q = _books_open(tmp_path, "3-1.jsonl.open", body)
    fd = os.open(q, os.O_RDONLY)
    S.compress_sealed(fd, len(body) - 10, q.with_name("3-1.jsonl.zst"))
    os.close(fd)
    report = recover(tmp_path, compress_channels=["books5"])
    assert report.conflicts == [q] and q.exists() and report.sealed == []
