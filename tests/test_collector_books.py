"""The ``books5`` channel in the collector (BOOKS-CONTRACT sections 1-2): OKX's books5 pushes
(contract-shaped frames: 4-string levels, ``ts`` a string, ``seqId`` a JSON integer, no ``action``,
no ``checksum``) go through the real capture, sampler and shard writer; the subscription is built
by the real cryptofeed feed (``OkxFeed.connect`` and ``subscribe``) up to the subscribe message.

The simulator serves books5 in its own branch; here the frames are made from the contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from test_collector import STANDIN_INSTRUMENTS, FakeConn

from collector.capture import RawCapture
from collector.sampler import BookSampler
from collector.writer import ShardWriter
from feeder import shards as S
from feeder.records import decode_frame

T0 = 1_709_589_600_000   # 2024-03-04T22:00:00Z, a second boundary


class Clock:
    """A receipt clock (seconds) for RawCapture and ShardWriter that the test moves."""

    name = "test"

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now(self) -> float:
        return self.ms / 1000

    def at(self, _local: float) -> float:
        return self.ms / 1000


def book(inst: str, ts: int, seq: int, *, bid: str = "100.0") -> dict[str, Any]:
    """A books5 element as OKX pushes it (contract section 1)."""
    return {"asks": [[f"{float(bid) + 0.1 * (i + 1):.1f}", f"{i + 3}", "0", f"{i + 1}"] for i in range(5)],
            "bids": [[f"{float(bid) - 0.1 * i:.1f}", f"{i + 2}", "0", f"{i + 1}"] for i in range(5)],
            "instId": inst, "ts": str(ts), "seqId": seq}


def frame(element: dict[str, Any]) -> str:
    return json.dumps({"arg": {"channel": "books5", "instId": element["instId"]}, "data": [element]},
                      separators=(",", ":"))


def run_capture(tmp_path: Path, pushes: list[tuple[int, dict[str, Any]]], *, close_at: int) -> tuple[RawCapture, list[dict]]:
    """Feed (receipt ms, element) pushes through RawCapture + ShardWriter; tick as the app does; stop at close_at."""
    clock = Clock(pushes[0][0])
    writer = ShardWriter(tmp_path, "ws", clock.now, seal_grace_s=2.0, pid=7, compress_channels=["books5"])
    cap = RawCapture(writer, clock=clock, channels=["books5", "candle1m"])  # type: ignore[arg-type]
    for recv_ms, element in pushes:
        clock.ms = recv_ms
        cap(frame(element), "c1", "wss://x/ws/v5/public", recv_ms / 1000)
        cap.tick()
    clock.ms = close_at
    cap.tick()
    cap.finish()
    writer.close()
    assert not list(tmp_path.rglob("*.open")) and not list(tmp_path.rglob("*.tmp"))
    records = list(S.read_records(S.sealed_shards(tmp_path, "ws", "books5")))
    return cap, records


def test_only_the_last_book_of_each_exchange_second_is_written_verbatim(tmp_path: Path) -> None:
    inst, other = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
    pushes: list[tuple[int, dict[str, Any]]] = []
    seq = 1000
    for i in range(30):                      # 3 s of 100 ms books for BTC, received 40 ms later
        ts = T0 + 100 * i + 5
        seq += 3
        pushes.append((ts + 40, book(inst, ts, seq, bid=f"{100 + i}.0")))
        if i % 10 == 9:                      # ETH: one book a second
            pushes.append((ts + 41, book(other, ts - 50, seq, bid="50.0")))
    # same ts, a greater seqId, arriving last in its second: it is the second's book
    last = book(inst, T0 + 2_995, seq + 1, bid="777.0")
    pushes.append((T0 + 3_039, last))
    # an exact duplicate of an earlier book (a second connection during a hand-over): never written
    pushes.append((T0 + 3_050, pushes[3][1]))
    cap, records = run_capture(tmp_path, pushes, close_at=T0 + 4_000)

    by = {(r["inst"], r["ts"] // 1000): r for r in records}
    assert len(by) == len(records) == 6      # one record per (instrument, second)
    for s in range(3):
        want = max((e for _, e in pushes if e["instId"] == inst and int(e["ts"]) // 1000 == T0 // 1000 + s),
                   key=lambda e: (int(e["ts"]), e["seqId"]))
        got = by[(inst, T0 // 1000 + s)]
        assert got["data"] == want and got["ts"] == int(want["ts"])   # the element verbatim
        assert got["data"]["seqId"] == want["seqId"] and isinstance(got["data"]["seqId"], int)
        assert got["channel"] == "books5" and got["source"] == "ws" and got["v"] == 1
    assert by[(inst, T0 // 1000 + 2)]["data"] == last
    # the written lines are byte-for-byte the exchange's element
    line = next(S.shard_lines(S.sealed_shards(tmp_path, "ws", "books5")[0]))
    assert json.dumps(last, separators=(",", ":")).encode() in b"".join(S.shard_lines(
        S.sealed_shards(tmp_path, "ws", "books5")[0])) and line.endswith(b"\n")
    # counted: 31 BTC books, 3 written, 1 exact duplicate stale, the rest sampled away
    assert cap.received["books5"] == 31 + 3 + 1
    assert cap.written["books5"] == 6
    assert cap.skipped["books5_sampled"] == 31 - 3 and cap.skipped["books5_stale"] == 1
    assert S.sealed_shards(tmp_path, "ws", "books5")[0].name.endswith(".jsonl.zst")


def test_held_book_is_written_into_its_receipt_hour_before_that_hour_is_sealed(tmp_path: Path) -> None:
    inst = "BTC-USDT-SWAP"
    end = T0 + S.HOUR_MS
    # the last book of the hour arrives 300 ms before its end; the book is unchanged for 30 s after
    pushes = [(end - 1_300, book(inst, end - 1_350, 1)), (end - 300, book(inst, end - 350, 2)),
              (end + 30_000, book(inst, end + 29_950, 3))]
    clock = Clock(pushes[0][0])
    writer = ShardWriter(tmp_path, "ws", clock.now, seal_grace_s=2.0, pid=7, compress_channels=["books5"])
    cap = RawCapture(writer, clock=clock, channels=["books5"])  # type: ignore[arg-type]
    for recv_ms, element in pushes[:2]:
        clock.ms = recv_ms
        cap(frame(element), "c1", "a", 0.0)
    sealed: list[Path] = []
    for ms in range(end - 250, end + 3_000, 250):   # the app's 0.25 s ticks across the hour's end
        clock.ms = ms
        sealed += cap.tick()
    sealed += writer.wait_compressed()
    assert [p.parent.name for p in sealed] == ["22"] and sealed[0].name.endswith(".jsonl.zst")
    hour22 = [(r["ts"], r["data"]["seqId"]) for r in S.read_records(sealed)]
    assert hour22 == [(end - 1_350, 1), (end - 350, 2)]   # the held book is in hour 22's sealed shard
    assert writer.stats.late_reopens == 0
    clock.ms = pushes[2][0]
    cap(frame(pushes[2][1]), "c1", "a", 0.0)
    cap.finish()                                          # shutdown: the held book is written
    writer.close()
    hour23 = list(S.read_records(S.sealed_shards(tmp_path, "ws", "books5", "2024-03-04")))[2:]
    assert [(r["ts"], r["data"]["seqId"]) for r in hour23] == [(end + 29_950, 3)]


def test_sampler_keeps_greatest_ts_then_seq_id_and_drops_older_books() -> None:
    def rec(ts: int, seq: Any, recv: int = 0) -> dict[str, Any]:
        return {"inst": "X-USDT-SWAP", "ts": ts, "recv_ts": recv, "data": {"ts": str(ts), "seqId": seq}}

    s = BookSampler()
    assert s.offer(rec(1_000, 5)) == []
    assert s.offer(rec(1_900, 4)) == []          # later ts wins even with a smaller seqId (a reset)
    assert s.offer(rec(1_900, 3)) == [] and s.stale == 1
    assert s.offer(rec(1_500, 9)) == [] and s.stale == 2   # an earlier ts of the same second
    out = s.offer(rec(2_000, 6))                 # a later second: the held book goes out
    assert [(r["ts"], r["data"]["seqId"]) for r in out] == [(1_900, 4)]
    assert s.offer(rec(1_950, 7)) == [] and s.stale == 3   # a second already written
    assert s.held == 1 and [r["ts"] for r in s.drain()] == [2_000] and s.held == 0
    assert s.offer(rec(2_000, 6)) == [] and s.stale == 4   # duplicate of the written one
    assert s.offer(rec(2_001, None)) == []       # no seqId: ts alone (a later ts, same second) → held
    assert [r["ts"] for r in s.drain()] == [2_001] and s.sampled == 1


def test_books5_is_subscribed_as_okx_books5_and_never_reaches_cryptofeeds_book_handler(
        caplog: pytest.LogCaptureFixture) -> None:
    from cryptofeed.defines import CANDLES, L2_BOOK

    from collector.okx_feed import OkxFeed
    from collector.settings import CHANNEL_MAP
    from collector.universe import install_symbols

    install_symbols(STANDIN_INSTRUMENTS)
    got: list[Any] = []
    feed = OkxFeed(public_url="wss://127.0.0.1:1/ws/v5/public", business_url="wss://127.0.0.1:1/ws/v5/business",
                   frame_sink=lambda *a: got.append(a), symbols=["BTC-USDT-PERP", "ETH-USDT-PERP"],
                   channels=[CHANNEL_MAP["books5"], CANDLES], config={"log": {"disabled": True}},
                   forward_to_cryptofeed=True)
    assert CHANNEL_MAP["books5"] == L2_BOOK
    by_address = {c.address: c.subscription for c, *_ in feed.connect()}
    assert set(by_address["wss://127.0.0.1:1/ws/v5/public"]) == {"books5"}
    assert set(by_address["wss://127.0.0.1:1/ws/v5/business"]) == {"candle"}

    elem = book("BTC-USDT-SWAP", T0, 1)
    text = frame(elem)

    async def run() -> list[dict[str, Any]]:
        conn = FakeConn(by_address["wss://127.0.0.1:1/ws/v5/public"])
        await feed.subscribe(conn)  # type: ignore[arg-type]
        with caplog.at_level(logging.DEBUG):
            await feed.message_handler(text, conn, 12.5)  # type: ignore[arg-type]
        await feed.shutdown()
        return [json.loads(m) for m in conn.sent]

    msgs = asyncio.run(run())
    assert [m["op"] for m in msgs] == ["subscribe"]
    assert sorted(msgs[0]["args"], key=lambda a: a["instId"]) == [
        {"channel": "books5", "instId": "BTC-USDT-SWAP"}, {"channel": "books5", "instId": "ETH-USDT-SWAP"}]
    assert got == [(text, "c1", "wss://fake", 12.5)]          # recorded raw
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text  # cryptofeed not fed
    frame_obj = decode_frame(text)
    assert isinstance(frame_obj, dict) and "action" not in frame_obj and "checksum" not in frame_obj["data"][0]


def test_books5_and_compression_are_read_from_the_config(tmp_path: Path) -> None:
    import yaml

    from collector.settings import ConfigError, load_settings

    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    base["collector"]["channels"] = ["candle1m", "books5"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(base))
    s = load_settings(cfg)
    assert s.channels == ("candle1m", "books5") and s.compress_channels == frozenset({"books5"})
    base["collector"]["compress_channels"] = []
    cfg.write_text(yaml.safe_dump(base))
    assert load_settings(cfg).compress_channels == frozenset()
    base["collector"]["compress_channels"] = ["books"]
    cfg.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError, match="compress_channels"):
        load_settings(cfg)

