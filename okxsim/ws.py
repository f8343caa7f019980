"""OKX v5 WebSocket endpoints (``/ws/v5/public`` and ``/ws/v5/business``) and the pusher.

Protocol details copied from OKX: ``{"op":"subscribe","args":[...]}`` requests, one ack
per arg with an 8-hex ``connId`` (and the request ``id`` echoed), candle channels only on
``/business`` (64001 on ``/public``), other channels only on ``/public`` (64002 on
``/business``), 60018 for unknown channels/instruments, text ``ping`` → ``pong``, and
close code 4004 after 30 s without any subscription. A subscribe request naming an unknown or
delisted instId is refused as a whole: one 60018 error naming that instId, no arg of the
request subscribed (the other args have to be sent again without it). The service-upgrade
notice (64008) is sent on request of the control API, and the connection closed a set delay
later (``Hub.upgrade_notice``).

``Hub.ws_log`` keeps what happened on the WebSocket side (connections opened and closed,
subscribe requests acked or refused, notices sent, forced closes), with monotonic times, so
tests can check the order of events (a replacement subscribed before the old one closed).

One pusher task serves every connection: each pass it computes what became due at the
simulated time (final candles of bars that just closed, partial candles, tickers, books5
books with ts up to now, ...), builds each frame once per (channel, instId) and appends it to
the subscribers' send queues. A writer task per connection drains its queue, writing every
queued frame in one go, so one slow client never stalls the pusher and no per-message sleeps
exist. books5 frames carry a callback that records the book in ``Hub.book_log`` once written
(the ground truth of ``/sim/books/features`` counts only books that were sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import WSMsgType, web

from .books import BookFeed, BookLog, BookModel, BookOptions
from .common import DAY_MS, MINUTE_MS, day_index
from .control import FaultState, SimClock, WsFaults
from .market import BARS, Market

log = logging.getLogger("okxsim.ws")

PUBLIC_CHANNELS = {"tickers", "trades", "funding-rate", "open-interest", "books5"}
BOOKS = "books5"
SWAP_ONLY = {"funding-rate", "open-interest"}
MSG_64001 = ("This channel has been migrated to the '/business' URL. Please subscribe using the new URL. "
             "More details can refer to: "
             "https://www.okx.com/help-center/changes-to-v5-api-websocket-subscription-parameter-and-url.")
MSG_64002 = ('This channel is not supported by "/business" URL. Please use "/private" URL(for private channels), '
             'or "/public" URL(for public channels). More details can refer to: '
             "https://www.okx.com/help-center/changes-to-v5-api-websocket-subscription-parameter-and-url.")
MSG_64008 = "The connection will soon be closed for a service upgrade. Please reconnect."
#: control-API fault kinds handled by :meth:`Hub.apply_ws_fault`
WS_FAULT_KINDS = frozenset({"ws_upgrade_notice", "ws_refuse_inst", "book_at_close"})
MALFORMED_FRAME = '{"arg":{"channel":"candle1m","instId":'  # deliberately invalid JSON


def candle_bar(channel: str) -> str | None:
    """``"candle1m"`` → ``"1m"``; None for non-candle channels or unknown bars."""
    if channel.startswith("candle") and channel[6:] in BARS:
        return channel[6:]
    return None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class PushConfig:
    """Cadences in simulated seconds, each with a real-time floor so high speeds stay cheap."""

    max_sleep_s: float = 0.02
    partial_every_sim_s: float = 15.0
    partial_min_real_s: float = 0.03
    ticker_every_sim_s: float = 5.0
    ticker_min_real_s: float = 0.1
    oi_every_sim_s: float = 15.0
    oi_min_real_s: float = 0.1
    trades_every_sim_s: float = 2.0
    trades_min_real_s: float = 0.25
    funding_every_sim_s: float = 60.0
    funding_min_real_s: float = 0.1
    idle_timeout_s: float = 30.0
    max_backlog: int = 200_000
    # books5 (see okxsim/books.py): mean simulated seconds between books per instrument, capped at
    # books_max_per_real_s books per real second per instrument (at 300x the mean interval becomes
    # 300 / 25 = 12 simulated seconds); the chance that a book is followed by 1-3 more in the same
    # second; the chance that a quiet block of books_quiet_block_s simulated seconds has no book;
    # books more than books_max_lag_real_s real seconds old (speed x that in simulated time) when the
    # pusher gets to them are dropped (not sent, not logged: a pusher that fell behind catches up
    # instead of spiralling); the push log's size per instrument
    books_mean_interval_s: float = 2.0
    books_max_per_real_s: float = 25.0
    books_burst_prob: float = 0.1
    books_quiet_prob: float = 0.05
    books_quiet_block_s: int = 180
    books_max_lag_real_s: float = 1.0
    books_log_max_per_inst: int = 5_000_000

    def book_options(self, speed: float) -> BookOptions:
        """The books5 model's options at clock ``speed`` (the mean interval after the real-time cap)."""
        interval = self.books_mean_interval_s
        if speed > 0 and self.books_max_per_real_s > 0:
            interval = max(interval, speed / self.books_max_per_real_s)
        return BookOptions(interval, self.books_burst_prob, self.books_quiet_prob,
                           int(self.books_quiet_block_s)).check()


class Conn:
    """One client connection: its subscriptions and an outgoing frame queue."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, kind: str, max_backlog: int) -> None:
        self.ws = ws
        self.request = request
        self.kind = kind  # "public" | "business"
        self.conn_id = os.urandom(4).hex()
        self.subs: set[tuple[str, str]] = set()
        # a frame, or (frame, callback, args): the callback runs once the frame went out
        self.queue: deque[Any] = deque()
        self.wake = asyncio.Event()
        self.idle_since: float | None = time.monotonic()
        self.closing = False
        self.max_backlog = max_backlog
        self.frames_sent = 0
        self._close_task: asyncio.Future[bool] | None = None

    def send(self, frame: str, on_sent: tuple[Callable[..., None], tuple[Any, ...]] | None = None) -> None:
        """Queue ``frame``; ``on_sent = (callback, args)`` is called once it was written."""
        if self.closing:
            return
        self.queue.append(frame if on_sent is None else (frame, *on_sent))
        self.wake.set()
        if len(self.queue) > self.max_backlog:
            self.close_soon(4007, "Buffer is full, cannot write data")

    def close_soon(self, code: int, message: str) -> None:
        if not self.closing:
            self.closing = True
            self.queue.clear()
            self._close_task = asyncio.ensure_future(self.ws.close(code=code, message=message.encode()))

    async def writer(self) -> None:
        """Drain the queue: every frame waiting is written in one go as unmasked, unfragmented text
        frames (one TLS write per batch instead of one per frame: books5 at high speed sends
        thousands of small frames a second), then wait while the transport holds over 1 MiB."""
        try:
            while not self.ws.closed:
                await self.wake.wait()
                self.wake.clear()
                while self.queue and not self.ws.closed:
                    transport = self.request.transport
                    if transport is None or transport.is_closing():
                        return
                    parts: list[bytes] = []
                    done: list[tuple[Any, ...]] = []
                    size = 0
                    while self.queue and size < WRITE_BATCH_BYTES:
                        item = self.queue.popleft()
                        data = (item if isinstance(item, str) else item[0]).encode()
                        parts.append(_text_frame_header(len(data)))
                        parts.append(data)
                        size += len(data)
                        if not isinstance(item, str):
                            done.append(item)
                    transport.write(b"".join(parts))
                    self.frames_sent += len(parts) // 2
                    for _, callback, args in done:
                        callback(*args)
                    while transport.get_write_buffer_size() > 1 << 20 and not transport.is_closing():
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(0)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass


WRITE_BATCH_BYTES = 256 * 1024


def _text_frame_header(n: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame of ``n`` payload bytes (server to client)."""
    if n < 126:
        return bytes((0x81, n))
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big")
    return bytes((0x81, 127)) + n.to_bytes(8, "big")


class Hub:
    """Connections, the subscription index and the pusher loop."""

    def __init__(self, market: Market, clock: SimClock, faults: FaultState, cfg: PushConfig | None = None) -> None:
        self.market = market
        self.clock = clock
        self.faults = faults
        self.cfg = cfg or PushConfig()
        self.conns: set[Conn] = set()
        self.subs: dict[tuple[str, str], set[Conn]] = {}
        self.stats: dict[str, float] = {"frames": 0, "finals": 0, "max_final_lag_sim_ms": 0,
                                        "max_final_lag_real_ms": 0.0, "passes": 0}
        self._stop = asyncio.Event()
        self._warm_day: int | None = None
        self.ws_faults = WsFaults()
        self.ws_log: deque[dict[str, Any]] = deque(maxlen=50_000)
        self.books = BookFeed(BookModel(market, self.cfg.book_options(clock.speed)))
        self.book_log = BookLog(self.cfg.books_log_max_per_inst)
        self._book_cursor: dict[str, int] = {}  # books5 instId -> books with ts <= this were handled

    def _log(self, conn: Conn, event: str, **detail: Any) -> None:
        """Append one WebSocket event to ``ws_log`` (see the module docstring)."""
        self.ws_log.append({"mono": time.monotonic(), "sim_ms": self.clock.now_ms(), "conn_id": conn.conn_id,
                            "kind": conn.kind, "event": event, **detail})

    def ws_events(self, event: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """``ws_log`` entries, oldest first, optionally only one ``event`` / connection ``kind``."""
        return [e for e in list(self.ws_log)
                if (event is None or e["event"] == event) and (kind is None or e["kind"] == kind)]

    # ------------------------------------------------------------------ connections
    async def handle(self, request: web.Request, kind: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Conn(ws, request, kind, self.cfg.max_backlog)
        self.conns.add(conn)
        self._log(conn, "open")
        writer = asyncio.ensure_future(conn.writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if msg.data == "ping":
                        conn.send("pong")
                    else:
                        self._on_request(conn, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._drop(conn)
            writer.cancel()
        return ws

    def _drop(self, conn: Conn) -> None:
        if conn in self.conns:
            self._log(conn, "close")
        self.conns.discard(conn)
        for key in conn.subs:
            s = self.subs.get(key)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[key]
        conn.subs.clear()

    def _error(self, conn: Conn, req_id: Any, code: str, msg: str) -> None:
        frame: dict[str, Any] = {"id": req_id} if req_id is not None else {}
        frame.update({"event": "error", "msg": msg, "code": code, "connId": conn.conn_id})
        conn.send(_dumps(frame))

    def _on_request(self, conn: Conn, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict) or req.get("op") not in ("subscribe", "unsubscribe"):
            self._error(conn, req.get("id") if isinstance(req, dict) else None, "60012",
                        f"Invalid request: {text}")
            return
        req_id = req.get("id")
        args = req.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
            self._error(conn, req_id, "60013", "Invalid args")
            return
        now = self.clock.now_ms()
        if req["op"] == "subscribe":
            for arg in args:
                channel, inst_id = str(arg.get("channel", "")), arg.get("instId")
                problem = self._check(conn, channel, inst_id, now)
                if problem is not None and problem[0] == "60018":
                    # OKX checks the request as a whole: one unknown instId, and no arg of it is subscribed
                    self._error(conn, req_id, *problem)
                    self._log(conn, "refused", code=problem[0], inst=inst_id, channel=channel,
                              args=[[str(a.get("channel", "")), str(a.get("instId"))] for a in args])
                    return
        acked: list[list[str]] = []
        for arg in args:
            channel, inst_id = str(arg.get("channel", "")), arg.get("instId")
            problem = self._check(conn, channel, inst_id, now)
            if problem:
                self._error(conn, req_id, *problem)
                continue
            key = (channel, str(inst_id))
            ack: dict[str, Any] = {"id": req_id} if req_id is not None else {}
            ack.update({"event": req["op"], "arg": {"channel": channel, "instId": inst_id},
                        "connId": conn.conn_id})
            conn.send(_dumps(ack))
            acked.append([channel, str(inst_id)])
            if req["op"] == "subscribe":
                conn.subs.add(key)
                self.subs.setdefault(key, set()).add(conn)
                conn.idle_since = None
                if channel == BOOKS:
                    self._send_current_book(conn, str(inst_id), now)
                else:
                    frame = self._safe_frame(key, now)  # the current state right after the ack, like OKX
                    if frame:
                        conn.send(frame)
            else:
                conn.subs.discard(key)
                if key in self.subs:
                    self.subs[key].discard(conn)
                    if not self.subs[key]:
                        del self.subs[key]
                if not conn.subs:
                    conn.idle_since = time.monotonic()
        if acked:
            self._log(conn, req["op"], args=acked)

    def _check(self, conn: Conn, channel: str, inst_id: Any, now: int) -> tuple[str, str] | None:
        """(code, msg) if the subscription is invalid on this connection."""
        wrong = (f"Wrong URL or channel:{channel}, instId:{inst_id} doesn't exist. "
                 "Please use the correct URL, channel and parameters referring to API document.")
        if channel.startswith("candle"):
            if conn.kind == "public":
                return "64001", MSG_64001
            if candle_bar(channel) is None:
                return "60018", wrong
        elif channel in PUBLIC_CHANNELS:
            if conn.kind == "business":
                return "64002", MSG_64002
        else:
            return "60018", wrong
        spec = self.market.by_id.get(inst_id) if isinstance(inst_id, str) else None
        if spec is None or spec.state_at(now) is None or (channel in SWAP_ONLY and not spec.is_swap):
            return "60018", wrong
        if self.ws_faults.is_refused(inst_id):  # ws_refuse_inst: unknown to the WebSocket from now on
            return "60018", wrong
        return None

    # ------------------------------------------------------------------ frames
    def _frame(self, key: tuple[str, str], now: int, final_boundary: int | None = None) -> str | None:
        """The push frame for ``key`` at ``now`` (None when there is nothing to send).

        For candles, ``final_boundary`` selects the bar that closed at that instant;
        otherwise the bar in progress is sent as a partial (``confirm "0"``).
        """
        channel, inst_id = key
        spec = self.market.by_id[inst_id]
        bar = candle_bar(channel)
        data: Any
        if bar is not None:
            bar_ms, off = BARS[bar]
            if final_boundary is not None:
                start = final_boundary - bar_ms
                got = self.market.bar_agg(spec, bar_ms, start, max(now, final_boundary))
            else:
                start = now - (now - off) % bar_ms
                got = self.market.bar_agg(spec, bar_ms, start, now)
                if got is not None and got[1]:
                    return None
            if got is None:
                return None
            data = self.market.format_row(spec, start, got[0], got[1])
        else:
            if spec.state_at(now) != "live":
                return None
            if channel == "tickers":
                data = self.market.ticker(inst_id, now)
            elif channel == "funding-rate":
                data = self.market.funding_rate(inst_id, now)
            elif channel == "open-interest":
                data = self.market.open_interest(inst_id, now)
            else:
                data = self.market.trade(inst_id, now)
            if data is None:
                return None
        return _dumps({"arg": {"channel": channel, "instId": inst_id}, "data": [data]})

    def _safe_frame(self, key: tuple[str, str], now: int, final_boundary: int | None = None) -> str | None:
        """``_frame`` that logs instead of raising, so one bad instrument cannot stop the others."""
        try:
            return self._frame(key, now, final_boundary)
        except Exception:
            log.exception("building a frame for %s failed", key)
            return None

    def _fanout(self, key: tuple[str, str], frame: str) -> None:
        for conn in list(self.subs.get(key, ())):
            conn.send(frame)
            self.stats["frames"] += 1

    def _push_class(self, pred: Callable[[str], bool], now: int) -> None:
        for key in list(self.subs):
            if pred(key[0]):
                frame = self._safe_frame(key, now)
                if frame:
                    self._fanout(key, frame)

    def _push_finals(self, boundary: int, now: int, mono: float) -> None:
        for key in list(self.subs):
            bar = candle_bar(key[0])
            if bar is None:
                continue
            bar_ms, off = BARS[bar]
            if (boundary - off) % bar_ms:
                continue
            frame = self._safe_frame(key, now, final_boundary=boundary)
            if frame:
                self._fanout(key, frame)
                self.stats["finals"] += 1
        lag_real = (mono - self.clock.mono_at(boundary)) * 1000.0
        self.stats["max_final_lag_sim_ms"] = max(self.stats["max_final_lag_sim_ms"], now - boundary)
        if lag_real != float("-inf"):
            self.stats["max_final_lag_real_ms"] = max(self.stats["max_final_lag_real_ms"], lag_real)

    # ------------------------------------------------------------------ books5
    def _book_frame(self, inst_id: str, element: str) -> str:
        return '{"arg":{"channel":"books5","instId":"' + inst_id + '"},"data":[' + element + "]}"

    def _log_book(self, inst_id: str, seq: int) -> None:
        self.book_log.add(inst_id, seq)

    def _send_current_book(self, conn: Conn, inst_id: str, now: int) -> None:
        """On subscribe: the instrument's current book with its original ts (the last one at or
        before what the pusher already handled, so the next pass does not send it again)."""
        cursor = self._book_cursor.setdefault(inst_id, now)
        try:
            got = self.books.current(inst_id, cursor)
        except Exception:
            log.exception("building the current book of %s failed", inst_id)
            return
        if got is not None:
            seq, element = got
            conn.send(self._book_frame(inst_id, element), (self._log_book, (inst_id, seq)))

    def _push_books(self, now: int, silent: bool) -> None:
        """Every subscribed instrument's books with ts in (cursor, now], one frame each, in
        order; during a silence they are lost (not sent, not logged)."""
        subscribed = {k[1] for k in self.subs if k[0] == BOOKS}
        for inst_id in [i for i in self._book_cursor if i not in subscribed]:
            del self._book_cursor[inst_id]
        oldest = now - int(self.cfg.books_max_lag_real_s * self.clock.speed * 1000)
        for inst_id in subscribed:
            lo = self._book_cursor.setdefault(inst_id, now)
            if now <= lo:
                continue
            self._book_cursor[inst_id] = now
            if silent:
                continue
            if lo < oldest:  # the pusher fell behind: books that old are dropped, not sent late
                self.stats["books_skipped_sim_ms"] = self.stats.get("books_skipped_sim_ms", 0) + oldest - lo
                lo = oldest
            try:
                books = self.books.between(inst_id, lo, now)
            except Exception:
                log.exception("building books of %s failed", inst_id)
                continue
            conns = list(self.subs.get((BOOKS, inst_id), ()))
            for seq, element in books:
                frame = self._book_frame(inst_id, element)
                for conn in conns:
                    conn.send(frame, (self._log_book, (inst_id, seq)))
                self.stats["frames"] += len(conns)
                self.stats["books"] = self.stats.get("books", 0) + 1

    def books_sent(self, inst_id: str) -> list[dict[str, Any]]:
        """The books5 elements sent for ``inst_id`` (on any connection), in (ts, seqId) order."""
        return [json.loads(self.books.element(inst_id, seq)) for seq in self.book_log.seqs(inst_id)]

    # ------------------------------------------------------------------ fault actions
    async def drop_all(self, abort: bool = True) -> int:
        """Cut every connection now (abort = no close handshake, like a network failure)."""
        conns = list(self.conns)
        for conn in conns:
            conn.closing = True
            transport = conn.request.transport
            if abort and transport is not None:
                transport.abort()
            else:
                await conn.ws.close(code=1001, message=b"going away")
        return len(conns)

    def upgrade_notice(self, endpoint: str = "*", close_after_s: float = 60.0, abort: bool = True) -> list[str]:
        """OKX's service-upgrade notice (64008) on every open connection of ``endpoint``
        (``"public"``, ``"business"`` or ``"*"``), then close each one ``close_after_s`` real
        seconds later if the client has not left by then (``abort``: cut the TCP connection,
        like a node going away; else a close handshake with code 1001). OKX sends it 60 s ahead.
        Returns the connIds notified."""
        loop = asyncio.get_running_loop()
        conns = [c for c in list(self.conns) if not c.closing and endpoint in ("*", "", c.kind)]
        for conn in conns:
            conn.send(_dumps({"event": "notice", "msg": MSG_64008, "code": "64008", "connId": conn.conn_id}))
            self._log(conn, "notice", code="64008", close_after_s=float(close_after_s))
            loop.call_later(max(0.0, float(close_after_s)), self._close_after_notice, conn, abort)
        return [c.conn_id for c in conns]

    def _close_after_notice(self, conn: Conn, abort: bool) -> None:
        if conn not in self.conns:
            return  # the client left first, as the notice asks
        self._log(conn, "upgrade_close", abort=abort)
        conn.closing = True
        conn.queue.clear()
        transport = conn.request.transport
        if abort and transport is not None:
            transport.abort()
        else:
            asyncio.ensure_future(conn.ws.close(code=1001, message=b"service upgrade"))

    async def apply_ws_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The control API's WebSocket faults of :data:`WS_FAULT_KINDS`:

        * ``ws_upgrade_notice``: ``endpoint`` (``"public"``/``"business"``/``"*"``, default ``"*"``),
          ``close_after_s`` (default 60, as OKX), ``abort`` (default true): see :meth:`upgrade_notice`
        * ``ws_refuse_inst``: ``inst_ids`` (list): from now on a subscribe request naming one of them is
          refused as a whole (60018), as after a delisting; REST still lists them
        * ``book_at_close``: ``inst_ids`` (list), ``count`` (minute boundaries, default 1; 0 = every one
          until ``clear``), ``spread_mult`` (default 50), ``hold_s`` (default 1): at each of the next
          ``count`` minute boundaries B after now, an extra extreme books5 book with ``ts == B`` exactly
          (spread ``spread_mult`` times wider around the same mid, 1 lot per bid level, asks 50 times
          deeper); the instrument's regular books with ts in [B, B + hold_s) are withheld, so the
          extreme book is the sample of its second. It belongs to the bar opening at B.
        """
        kind = spec.get("kind")
        if kind == "ws_upgrade_notice":
            ids = self.upgrade_notice(str(spec.get("endpoint", "*")), float(spec.get("close_after_s", 60.0)),
                                      bool(spec.get("abort", True)))
            return {"noticed": len(ids), "conn_ids": ids}
        if kind == "ws_refuse_inst":
            inst_ids = spec.get("inst_ids")
            if not isinstance(inst_ids, list) or not inst_ids:
                raise ValueError("ws_refuse_inst needs inst_ids: a non-empty list of instIds")
            self.ws_faults.refuse([str(i) for i in inst_ids])
            return {"ok": True, "refused_insts": self.ws_faults.snapshot()["refused_insts"]}
        if kind == "book_at_close":
            inst_ids = spec.get("inst_ids")
            if not isinstance(inst_ids, list) or not inst_ids:
                raise ValueError("book_at_close needs inst_ids: a non-empty list of instIds")
            unknown = [i for i in inst_ids if i not in self.market.by_id]
            if unknown:
                raise ValueError(f"book_at_close: unknown instIds {unknown}")
            count = int(spec.get("count", 1))
            mult = float(spec.get("spread_mult", 50.0))
            if count < 0 or not mult >= 1:
                raise ValueError("book_at_close: count must be >= 0 and spread_mult >= 1")
            first = self.books.faults.add([str(i) for i in inst_ids], self.clock.now_ms(), count, mult,
                                          float(spec.get("hold_s", 1.0)))
            return {"ok": True, "first_boundary": first, "book_faults": self.books.faults.snapshot()}
        raise ValueError(f"unknown WebSocket fault kind {kind!r}")

    def send_malformed(self) -> int:
        for conn in list(self.conns):
            conn.send(MALFORMED_FRAME)
        return len(self.conns)

    # ------------------------------------------------------------------ pusher
    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """The pusher loop (see the module docstring)."""
        cfg = self.cfg
        classes: dict[str, tuple[float, float, Callable[[str], bool]]] = {
            "partial": (cfg.partial_every_sim_s, cfg.partial_min_real_s, lambda ch: candle_bar(ch) is not None),
            "tickers": (cfg.ticker_every_sim_s, cfg.ticker_min_real_s, lambda ch: ch == "tickers"),
            "oi": (cfg.oi_every_sim_s, cfg.oi_min_real_s, lambda ch: ch == "open-interest"),
            "trades": (cfg.trades_every_sim_s, cfg.trades_min_real_s, lambda ch: ch == "trades"),
            "funding": (cfg.funding_every_sim_s, cfg.funding_min_real_s, lambda ch: ch == "funding-rate"),
        }
        now = self.clock.now_ms()
        boundary = now - now % MINUTE_MS
        next_due = {name: now for name in classes}
        last_real = {name: 0.0 for name in classes}
        burst_acc = 0.0
        last_pass = time.monotonic()
        last_idle_check = 0.0
        while not self._stop.is_set():
            try:
                mono = time.monotonic()
                now = self.clock.now_ms(mono)
                silent = self.faults.is_silent(mono)
                self.stats["passes"] += 1
                while boundary + MINUTE_MS <= now:  # every minute boundary crossed, in order
                    boundary += MINUTE_MS
                    if not silent:
                        self._push_finals(boundary, now, mono)
                self._push_books(now, silent)
                for name, (every_s, min_real, pred) in classes.items():
                    if now >= next_due[name] and mono - last_real[name] >= min_real:
                        if not silent:
                            self._push_class(pred, now)
                        last_real[name] = mono
                        every = int(every_s * 1000)
                        next_due[name] = now - now % every + every
                rate = self.faults.burst_at(mono)
                if rate > 0 and not silent:
                    burst_acc += rate * (mono - last_pass)
                    n = int(burst_acc)
                    burst_acc -= n
                    if n:
                        self._burst(n, now)
                else:
                    burst_acc = 0.0
                last_pass = mono
                if mono - last_idle_check > 0.5:
                    last_idle_check = mono
                    self._close_idle(mono)
                self._prewarm(now)
                pass_ms = (time.monotonic() - mono) * 1000.0
                self.stats["max_pass_real_ms"] = max(self.stats.get("max_pass_real_ms", 0.0), pass_ms)
            except Exception:  # keep pushing: one bad frame must not silence the simulator
                log.exception("pusher pass failed")
                mono = time.monotonic()
            await self._sleep(boundary + MINUTE_MS, next_due, last_real, classes, mono)

    async def _sleep(self, next_boundary: int, next_due: dict[str, int], last_real: dict[str, float],
                     classes: dict[str, tuple[float, float, Any]], mono: float) -> None:
        wake = self.clock.mono_at(next_boundary) + 0.0002
        for name, (_, min_real, _) in classes.items():
            wake = min(wake, max(self.clock.mono_at(next_due[name]), last_real[name] + min_real))
        delay = min(max(wake - time.monotonic(), 0.0005), self.cfg.max_sleep_s)
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass

    def _burst(self, n: int, now: int) -> None:
        """Burst fault: ``n`` extra partial candle frames to every connection with candle subs."""
        frames: dict[tuple[str, str], str | None] = {}
        for conn in list(self.conns):
            keys = [k for k in conn.subs if candle_bar(k[0]) is not None]
            if not keys:
                continue
            for i in range(n):
                key = keys[i % len(keys)]
                if key not in frames:
                    frames[key] = self._safe_frame(key, now)
                if frames[key]:
                    conn.send(frames[key])  # type: ignore[arg-type]

    def _close_idle(self, mono: float) -> None:
        for conn in list(self.conns):
            if conn.idle_since is not None and mono - conn.idle_since > self.cfg.idle_timeout_s:
                conn.close_soon(4004, "No data received in 30s")

    def _prewarm(self, now: int) -> None:
        """Generate tomorrow's candles shortly before midnight, two instruments per pass
        (subscribed ones first), so the day rollover does not stall the pusher."""
        if now % DAY_MS < DAY_MS - 30 * MINUTE_MS:
            return
        nxt = day_index(now) + 1
        if self._warm_day == nxt:
            return
        subscribed = {k[1] for k in self.subs}
        order = sorted(self.market.specs, key=lambda s: s.inst_id not in subscribed)
        done = 0
        for spec in order:
            if self.market.is_cached(spec, nxt):
                continue
            if done >= 2:
                return
            self.market.day_data(spec, nxt)
            done += 1
        self._warm_day = nxt
