"""cryptofeed's OKX feed, fixed for how OKX works today (cryptofeed 2.4.1).

What stock 2.4.1 gets wrong (read in cryptofeed's source), and what this subclass does instead:

1. **Candles live on ``/ws/v5/business``** since 2023; 2.4.1 subscribes them on ``/public``
   and gets error 60018/64001, i.e. no candles at all. Here candle channels go to the
   business endpoint and everything else to the public one. Endpoints come from config, so
   the same code talks to OKX or to the simulator.
2. **Subscribe per connection**: 2.4.1 iterates the feed's whole subscription on every
   connection (each connection subscribes every channel) and re-sends earlier args with each
   channel. Here each connection subscribes only its own channels, in messages of at most
   ``subscribe_chunk`` args (OKX limits requests per connection and hour).
3. **Closed candles**: cryptofeed's ``Candle.closed`` is always truthy on OKX. The raw capture
   (``collector.capture``) reads ``confirm`` from the frame itself.
4. **Order books are ``books5``** here: cryptofeed maps ``L2_BOOK`` to OKX's ``books`` (400 levels,
   incremental updates with ``action`` and ``checksum``). This feed maps ``L2_BOOK`` to ``books5``
   (5-level snapshots every 100 ms, no ``action``, no ``checksum``) and subscribes
   ``{"channel": "books5", "instId": ...}`` on the public endpoint. cryptofeed's book handler
   would fail on those frames (it reads ``action``), so they are never forwarded to it
   (``forward_to_cryptofeed``): they are recorded raw (and sampled, ``collector.sampler``) only.
5. **Reconnects forever** (``retries=-1``): the default (10 retries, then the feed dies
   silently) would leave a collector running that records nothing.

Also:

* The message handler hands the **raw frame text** to a sink (the shard writer path) before
  cryptofeed parses anything: shards keep the exchange's strings, not cryptofeed's
  ``Decimal``s, and a frame cryptofeed would choke on (a funding push without
  ``fundingRate``) is still recorded. cryptofeed's own parsing runs only if callbacks are
  registered (``forward_to_cryptofeed``), isolated so its exceptions cannot drop a connection.
* OKX closes connections that receive nothing for 30 s; a per-connection task sends OKX's
  text ``ping`` after ``keepalive_s`` of silence (the server answers ``pong``).
* TLS: ``ssl_context`` (the simulator's CA) goes through the endpoint options straight to
  ``websockets.connect``.

At OKX's edges:

* **Service upgrade (64008).** OKX announces ``{"event":"notice","code":"64008",...}`` 60 s
  before it closes a connection for an upgrade and asks clients to reconnect first. Waiting
  for the close would lose what is pushed until cryptofeed has reconnected (about 1.5 s after a
  hard drop; candles can be repaired from REST, open interest cannot). So the notice starts a
  *hand-over*: a replacement socket to the same address subscribes the same arguments, its
  frames are recorded as they come, and once every one of its subscribe requests is answered
  (plus ``HANDOVER_OVERLAP_S``) it takes the old socket's place inside the same cryptofeed
  connection object (:class:`SwappableConn`), and the old socket is closed. Frames pushed
  during the overlap are recorded twice, verbatim; cleaning deduplicates on ``(inst, ts)``.
  If the replacement cannot be set up in ``HANDOVER_TIMEOUT_S``, it is dropped and cryptofeed
  reconnects when the exchange closes the old one (as before).
* **Refused instruments.** OKX checks a subscribe request as a whole: one instId it does not
  know (delisted since the instrument list was read) and it answers one 60018 error naming
  that instId and subscribes *none* of the request's arguments. Every request carries an
  ``id`` (OKX echoes it in acks and errors), so the refusal is matched to its request: the
  refused (channel, instId) is dropped for the life of this feed (logged at WARNING, in
  :attr:`OkxFeed.refused` for the metrics and ``status``), and the request's other arguments
  are sent again at once. Later reconnects and hand-overs do not ask for it again; a restart
  or a universe change (a new feed) tries it once more.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptofeed.connection import AsyncConnection, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import CANDLES, FUNDING, L2_BOOK, LIQUIDATIONS, OPEN_INTEREST, TICKER, TRADES
from cryptofeed.exceptions import ConnectionClosed as FeedConnectionClosed
from cryptofeed.exchanges import OKX
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.protocol import State
from yapic import json as yjson

from collector.capture import refused_pair

log = logging.getLogger(__name__)

#: OKX's notice code: "The connection will soon be closed for a service upgrade. Please reconnect."
UPGRADE_NOTICE_CODE = "64008"
#: Longest wait for a replacement to be connected and every subscribe request answered (OKX
#: closes 60 s after the notice).
HANDOVER_TIMEOUT_S = 20.0
#: Both sockets are read this long after the replacement is fully subscribed, so frames already
#: on their way on the old one arrive before it is closed.
HANDOVER_OVERLAP_S = 0.5
Pair = tuple[str, str]   # (OKX channel, instId)
#: OKX's 5-level order-book channel (snapshots; docs/collector.md, "Order books").
BOOKS5 = "books5"
_BOOKS5_HEAD = '"channel":"books5"'


def _pair(arg: Mapping[str, Any]) -> Pair:
    return str(arg.get("channel", "")), str(arg.get("instId", ""))


def _event_of(msg: str | bytes) -> dict[str, Any] | None:
    """The parsed frame if it is an OKX event (``{"event": ...}``), else None.

    Data frames start with ``{"arg":``; an event's key comes first or after an ``id`` of at most
    32 characters, so looking at the head keeps the hot path free of a second JSON parse."""
    head = msg[:80]
    if (b'"event"' if isinstance(head, bytes) else '"event"') not in head:
        return None
    try:
        frame = json.loads(msg)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) and "event" in frame else None


def _is_books5(msg: str | bytes) -> bool:
    """A books5 data frame (``{"arg":{"channel":"books5",...``): never handed to cryptofeed, whose book
    handler expects ``books``' ``action``/``checksum``."""
    head = msg[:40]
    return (_BOOKS5_HEAD.encode() if isinstance(head, bytes) else _BOOKS5_HEAD) in head


@dataclass
class _Request:
    """One subscribe request in flight: its args and those not yet acknowledged."""

    args: list[dict[str, str]]
    pending: set[Pair]


class SwappableConn(WSAsyncConn):
    """cryptofeed's WebSocket connection whose socket can be replaced while it is being read.

    cryptofeed's connection handler reads ``read()`` until the socket closes, then reconnects.
    Here, when the socket ends *because* :meth:`hand_over` put a replacement in its place, reading
    goes on with the replacement: no reconnect, no gap, same connection id."""

    @classmethod
    def adopt(cls, conn: WSAsyncConn) -> SwappableConn:
        """The same connection (address, id, subscription, options) as this class."""
        new = cls.__new__(cls)
        new.__dict__.update(conn.__dict__)
        return new

    def hand_over(self, replacement: ClientConnection) -> ClientConnection | None:
        """Make ``replacement`` this connection's socket; returns the old one (still open)."""
        old, self.conn = self.conn, replacement
        return old

    async def read(self) -> AsyncIterator[str | bytes]:
        while True:
            ws = self.conn
            if ws is None or ws.state is State.CLOSED:
                raise FeedConnectionClosed
            try:
                async for data in ws:
                    self.received += 1
                    self.last_message = time.time()
                    if self.raw_data_callback:
                        await self.raw_data_callback(data, self.last_message, self.id)
                    yield data
            except WsConnectionClosed:
                if self.conn is ws or self.conn is None:
                    raise
            else:
                if self.conn is ws or self.conn is None:
                    return
            # the socket was handed over: go on with the replacement


class _Replacement:
    """The replacement socket while it is being subscribed: what ``message_handler`` and the
    subscribe code need of a connection (``uuid``, ``address``, ``write``)."""

    def __init__(self, conn: SwappableConn) -> None:
        self.conn = conn
        self.uuid = f"{conn.uuid}.next"
        self.address = conn.address
        self.subscription = conn.subscription
        self.ws: ClientConnection | None = None
        self.last_message: float | None = None

    @property
    def is_open(self) -> bool:
        return self.ws is not None and self.ws.state is not State.CLOSED

    async def write(self, data: str) -> None:
        if self.ws is None:
            raise FeedConnectionClosed
        await self.ws.send(data)


#: Receives (raw frame text, connection id, connection address, local receipt time in s).
FrameSink = Callable[[str | bytes, str, str, float], None]


class OkxFeed(OKX):
    """OKX feed with configurable endpoints, per-connection chunked subscriptions and raw capture.

    Call :func:`collector.universe.install_symbols` before constructing it: the feed checks
    its symbols against cryptofeed's table and would otherwise fetch that table itself.
    """

    #: cryptofeed's channel table with order books on OKX's ``books5`` (module docstring, 4).
    websocket_channels = {**OKX.websocket_channels, L2_BOOK: BOOKS5}
    PUBLIC_CHANNELS = (BOOKS5,) + tuple(OKX.websocket_channels[c] for c in (TRADES, TICKER, FUNDING, OPEN_INTEREST,
                                                                             LIQUIDATIONS))
    BUSINESS_CHANNELS = (OKX.websocket_channels[CANDLES],)

    def __init__(
        self,
        *,
        public_url: str,
        business_url: str,
        frame_sink: FrameSink,
        ssl_context: ssl.SSLContext | None = None,
        subscribe_chunk: int = 20,
        keepalive_s: float = 20.0,
        forward_to_cryptofeed: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", -1)
        kwargs.setdefault("candle_interval", "1m")
        kwargs.setdefault("timeout", 60)          # no message (not even a pong) for 60 s → reconnect
        kwargs.setdefault("timeout_interval", 10)
        super().__init__(**kwargs)
        if subscribe_chunk < 1:
            raise ValueError("subscribe_chunk must be >= 1")
        options: dict[str, Any] = {"compression": None}
        if ssl_context is not None:
            options["ssl"] = ssl_context
        # Instance attribute shadows the class attribute cryptofeed's connect() reads.
        self.websocket_endpoints = [
            WebsocketEndpoint(public_url, channel_filter=self.PUBLIC_CHANNELS, options=dict(options)),
            WebsocketEndpoint(business_url, channel_filter=self.BUSINESS_CHANNELS, options=dict(options)),
        ]
        self.subscribe_chunk = int(subscribe_chunk)
        self.keepalive_s = float(keepalive_s)
        self._sink = frame_sink
        self._forward = forward_to_cryptofeed
        self._keepalive_tasks: dict[str, asyncio.Task[None]] = {}
        self.subscribe_messages_sent = 0
        # connection bookkeeping for metrics and the universe hand-over (endpoint = "public"/"business")
        self.connects: dict[str, int] = {}
        self.reconnects: dict[str, int] = {}
        self._conns: dict[str, AsyncConnection] = {}
        self._awaiting_first: set[str] = set()   # conn uuids subscribed but not yet answered
        self._answered: set[str] = set()         # conn uuids that got a frame after subscribing
        # subscribe requests in flight per connection uuid, by the request id OKX echoes
        self._requests: dict[str, dict[str, _Request]] = {}
        self._ids = itertools.count(1)
        #: (channel, instId) the exchange refused → its error code; never asked for again by this feed
        self.refused: dict[Pair, str] = {}
        # counters for the metrics, by endpoint ("public"/"business")
        self.upgrade_notices: Counter[str] = Counter()
        self.handovers: Counter[tuple[str, str]] = Counter()   # (endpoint, "replaced" | "failed")
        self.refused_resubscribes: Counter[str] = Counter()
        self._handover_tasks: dict[str, asyncio.Task[None]] = {}

    def connect(self) -> list[Any]:
        """cryptofeed's connections, each as a :class:`SwappableConn` (hand-over on 64008)."""
        out = []
        for conn, sub, handler, auth in super().connect():
            if type(conn) is WSAsyncConn:
                conn = SwappableConn.adopt(conn)
            out.append((conn, sub, handler, auth))
        return out

    # -- subscription ------------------------------------------------------------------

    def subscription_args(self, subscription: dict[str, Iterable[str]]) -> list[dict[str, str]]:
        """OKX ``args`` for one connection's subscription (exchange channel → instIds)."""
        args = []
        for channel, inst_ids in subscription.items():
            if channel == LIQUIDATIONS:
                continue  # REST-polled in cryptofeed; not recorded here
            for inst_id in inst_ids:
                arg = self.build_subscription(channel, inst_id)
                if _pair(arg) not in self.refused:  # refused once: the exchange does not know it
                    args.append(arg)
        return args

    @staticmethod
    def endpoint_name(connection: AsyncConnection) -> str:
        address = getattr(connection, "address", "") or ""
        return address.rstrip("/").rsplit("/", 1)[-1] or "?"

    def connection_states(self) -> dict[str, bool]:
        """endpoint → whether its connection is open now (only connections that ever connected)."""
        return {self.endpoint_name(c): bool(c.is_open) for c in list(self._conns.values())}

    def ready(self) -> bool:
        """Every connection has subscribed and received a frame (an ack) since: streaming."""
        expected = len(self.connection_handlers)
        return expected > 0 and len(self._answered) >= expected

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until :meth:`ready` (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def subscribe(self, connection: AsyncConnection) -> None:
        endpoint = self.endpoint_name(connection)
        if connection.uuid in self._conns:
            self.reconnects[endpoint] = self.reconnects.get(endpoint, 0) + 1
            log.info("%s: reconnected to %s", connection.uuid, getattr(connection, "address", "?"))
        self.connects[endpoint] = self.connects.get(endpoint, 0) + 1
        self._conns[connection.uuid] = connection
        self._answered.discard(connection.uuid)
        self._awaiting_first.add(connection.uuid)
        self._requests[connection.uuid] = {}  # a new socket: earlier requests will never be answered
        args = self.subscription_args(connection.subscription or {})
        sent = await self._send_subscribe(connection, args)
        log.info("%s: subscribed %d channel/instrument pair(s) on %s in %d message(s)", connection.uuid,
                 len(args), getattr(connection, "address", "?"), sent)
        self._start_keepalive(connection)

    async def _send_subscribe(self, connection: Any, args: list[dict[str, str]]) -> int:
        """Send ``args`` in requests of at most ``subscribe_chunk``, each with an ``id`` (OKX echoes
        it in the acks and in an error), tracked until answered. Returns the number of requests."""
        requests = self._requests.setdefault(connection.uuid, {})
        sent = 0
        for start in range(0, len(args), self.subscribe_chunk):
            chunk = args[start:start + self.subscribe_chunk]
            req_id = str(next(self._ids))
            requests[req_id] = _Request(chunk, {_pair(a) for a in chunk})
            await connection.write(yjson.dumps({"id": req_id, "op": "subscribe", "args": chunk}))
            self.subscribe_messages_sent += 1
            sent += 1
        return sent

    def _all_answered(self, conn_uuid: str) -> bool:
        return not any(r.pending for r in self._requests.get(conn_uuid, {}).values())

    # -- keepalive ---------------------------------------------------------------------

    def _start_keepalive(self, connection: AsyncConnection) -> None:
        old = self._keepalive_tasks.pop(connection.uuid, None)
        if old is not None:
            old.cancel()
        self._keepalive_tasks[connection.uuid] = asyncio.get_running_loop().create_task(self._keepalive(connection))

    async def _keepalive(self, connection: AsyncConnection) -> None:
        opened = time.time()
        try:
            while connection.is_open:
                await asyncio.sleep(min(5.0, self.keepalive_s / 4))
                last = connection.last_message or opened
                if connection.is_open and time.time() - last >= self.keepalive_s:
                    await connection.write("ping")
                    opened = time.time()  # wait another period for the pong before pinging again
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection went away between the check and the write
            log.debug("%s: keepalive stopped: %s", connection.uuid, exc)

    # -- messages ----------------------------------------------------------------------

    async def message_handler(self, msg: str, conn: AsyncConnection, timestamp: float) -> None:
        if self._awaiting_first and conn.uuid in self._awaiting_first:
            self._awaiting_first.discard(conn.uuid)
            self._answered.add(conn.uuid)
        self._sink(msg, conn.uuid, getattr(conn, "address", ""), timestamp)
        event = _event_of(msg)
        if event is not None:
            try:
                await self._on_event(event, conn)
            except Exception:  # never let event bookkeeping drop the connection
                log.exception("%s: failed to act on %.300s", conn.uuid, msg)
        if self._forward and msg != "pong" and not _is_books5(msg):
            try:
                await super().message_handler(msg, conn, timestamp)
            except Exception:
                log.exception("%s: cryptofeed failed to parse a frame (already recorded raw): %.300s",
                              conn.uuid, msg)

    # -- events: acks, refusals, the service-upgrade notice -----------------------------

    async def _on_event(self, event: dict[str, Any], conn: Any) -> None:
        kind = event.get("event")
        if kind == "subscribe":
            self._acked(conn.uuid, event)
        elif kind == "error":
            await self._on_error(conn, event)
        elif kind == "notice" and str(event.get("code")) == UPGRADE_NOTICE_CODE:
            self._on_upgrade_notice(conn, event)

    def _request_of(self, conn_uuid: str, event: Mapping[str, Any], pair: Pair | None) -> tuple[str, _Request] | None:
        """The request an ack or error answers: by the echoed ``id``, else the oldest one still
        waiting for ``pair``."""
        requests = self._requests.get(conn_uuid, {})
        req_id = event.get("id")
        if req_id is not None and str(req_id) in requests:
            return str(req_id), requests[str(req_id)]
        for rid, req in requests.items():
            if pair is not None and pair in req.pending:
                return rid, req
        return None

    def _acked(self, conn_uuid: str, event: Mapping[str, Any]) -> None:
        arg = event.get("arg")
        pair = _pair(arg) if isinstance(arg, Mapping) else None
        found = self._request_of(conn_uuid, event, pair)
        if found is None or pair is None:
            return
        rid, req = found
        req.pending.discard(pair)
        if not req.pending:
            del self._requests[conn_uuid][rid]

    async def _on_error(self, conn: Any, event: Mapping[str, Any]) -> None:
        """A refused instrument: drop it and send the rest of its request again at once."""
        pair = refused_pair(event)
        if pair is None:
            return  # counted and logged by the capture; nothing to drop
        code = str(event.get("code", "?"))
        self.refused[pair] = code
        found = self._request_of(conn.uuid, event, pair)
        rest: list[dict[str, str]] = []
        if found is not None:
            rid, req = found
            del self._requests[conn.uuid][rid]
            rest = [a for a in req.args if _pair(a) in req.pending and _pair(a) not in self.refused]
        endpoint = self.endpoint_name(conn)
        log.warning("%s %s: the exchange refused %s %s (code %s: %s). OKX refuses the whole subscribe request "
                    "then; dropping %s from this collector's subscriptions (reconnects will not ask for it; a "
                    "restart or a universe change tries it again) and subscribing the other %d of that request "
                    "now.%s", conn.uuid, getattr(conn, "address", "?"), pair[0], pair[1], code,
                    str(event.get("msg", ""))[:200], pair[1], len(rest),
                    "" if found is not None else " (the refused request was not found: nothing to resend)")
        if rest:
            await self._send_subscribe(conn, rest)
            self.refused_resubscribes[endpoint] += 1

    def _on_upgrade_notice(self, conn: Any, event: Mapping[str, Any]) -> None:
        endpoint = self.endpoint_name(conn)
        self.upgrade_notices[endpoint] += 1
        if not isinstance(conn, SwappableConn) or conn.conn is None:
            log.warning("%s %s: service-upgrade notice (64008) on a connection that cannot be replaced now; it is "
                        "reconnected when the exchange closes it", conn.uuid, getattr(conn, "address", "?"))
            return
        running = self._handover_tasks.get(conn.uuid)
        if running is not None and not running.done():
            log.info("%s: another 64008 notice; the replacement is already being set up", conn.uuid)
            return
        log.warning("%s %s: the exchange will close this connection for a service upgrade (64008: %s); opening a "
                    "replacement and subscribing it before the close", conn.uuid, conn.address,
                    str(event.get("msg", ""))[:200])
        self._handover_tasks[conn.uuid] = asyncio.get_running_loop().create_task(self._hand_over(conn, conn.conn))

    async def _hand_over(self, conn: SwappableConn, old_ws: ClientConnection) -> None:
        """Make before break: connect and subscribe a replacement, record its frames, then put it
        in the old socket's place and close the old one (module docstring)."""
        endpoint = self.endpoint_name(conn)
        started = time.monotonic()
        side = _Replacement(conn)
        try:
            side.ws = await asyncio.wait_for(ws_connect(conn.address, **conn.ws_kwargs), HANDOVER_TIMEOUT_S)
            await self._send_subscribe(side, self.subscription_args(conn.subscription or {}))
            overlap_until: float | None = None
            while True:
                now = time.monotonic()
                if overlap_until is None and self._all_answered(side.uuid):
                    overlap_until = now + HANDOVER_OVERLAP_S
                until = overlap_until if overlap_until is not None else started + HANDOVER_TIMEOUT_S
                if now >= until:
                    if overlap_until is None:
                        raise TimeoutError(f"its subscribe requests were not all answered within "
                                           f"{HANDOVER_TIMEOUT_S:g}s")
                    break
                try:
                    msg = await asyncio.wait_for(side.ws.recv(), until - now)
                except asyncio.TimeoutError:
                    continue
                side.last_message = time.time()
                await self.message_handler(msg, side, side.last_message)
            if conn.conn is not old_ws or old_ws.state is not State.OPEN:
                raise ConnectionError("the old connection closed before the replacement was ready")
            self._requests[conn.uuid] = self._requests.pop(side.uuid, {})
            conn.hand_over(side.ws)
            side.ws = None  # the connection owns it now
            self.handovers[(endpoint, "replaced")] += 1
            log.info("%s: replacement subscribed and streaming after %.2fs; closing the old socket (64008 "
                     "hand-over done)", conn.uuid, time.monotonic() - started)
            await old_ws.close()
        except asyncio.CancelledError:
            if side.ws is not None:
                await side.ws.close()
            raise
        except Exception as exc:
            self.handovers[(endpoint, "failed")] += 1
            log.warning("%s %s: could not replace the connection ahead of the service upgrade (%s); it is "
                        "reconnected when the exchange closes it (pushes in between are lost: candles are "
                        "repaired from REST by the backfill, other channels are not)", conn.uuid, conn.address,
                        exc)
            if side.ws is not None:
                await side.ws.close()
        finally:
            self._requests.pop(side.uuid, None)

    async def shutdown(self) -> None:
        for task in self._keepalive_tasks.values():
            task.cancel()
        self._keepalive_tasks.clear()
        handovers = [t for t in self._handover_tasks.values() if not t.done()]
        for task in handovers:
            task.cancel()
        if handovers:
            await asyncio.gather(*handovers, return_exceptions=True)
        self._handover_tasks.clear()
        await super().shutdown()
