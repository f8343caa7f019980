"""cryptofeed's OKX feed, fixed for how OKX works today (cryptofeed 2.4.1).

What stock 2.4.1 gets wrong, and what this subclass does instead
(/work/shared/reference/STACK-FACTS.md, read in cryptofeed's source):

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
4. **Reconnects forever** (``retries=-1``): the default (10 retries, then the feed dies
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
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

from cryptofeed.connection import AsyncConnection, WebsocketEndpoint
from cryptofeed.defines import CANDLES, FUNDING, L2_BOOK, LIQUIDATIONS, OPEN_INTEREST, TICKER, TRADES
from cryptofeed.exchanges import OKX
from yapic import json as yjson

log = logging.getLogger(__name__)

#: Receives (raw frame text, connection id, connection address, local receipt time in s).
FrameSink = Callable[[str | bytes, str, str, float], None]


class OkxFeed(OKX):
    """OKX feed with configurable endpoints, per-connection chunked subscriptions and raw capture.

    Call :func:`collector.universe.install_symbols` before constructing it: the feed checks
    its symbols against cryptofeed's table and would otherwise fetch that table itself.
    """

    PUBLIC_CHANNELS = tuple(OKX.websocket_channels[c] for c in (L2_BOOK, TRADES, TICKER, FUNDING, OPEN_INTEREST, LIQUIDATIONS))
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

    # -- subscription ------------------------------------------------------------------

    def subscription_args(self, subscription: dict[str, Iterable[str]]) -> list[dict[str, str]]:
        """OKX ``args`` for one connection's subscription (exchange channel → instIds)."""
        args = []
        for channel, inst_ids in subscription.items():
            if channel == LIQUIDATIONS:
                continue  # REST-polled in cryptofeed; not recorded here
            for inst_id in inst_ids:
                args.append(self.build_subscription(channel, inst_id))
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
        args = self.subscription_args(connection.subscription or {})
        for start in range(0, len(args), self.subscribe_chunk):
            chunk = args[start:start + self.subscribe_chunk]
            await connection.write(yjson.dumps({"op": "subscribe", "args": chunk}))
            self.subscribe_messages_sent += 1
        log.info("%s: subscribed %d channel/instrument pair(s) on %s in %d message(s)", connection.uuid,
                 len(args), getattr(connection, "address", "?"), -(-len(args) // self.subscribe_chunk))
        self._start_keepalive(connection)

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
        if self._forward and msg != "pong":
            try:
                await super().message_handler(msg, conn, timestamp)
            except Exception:
                log.exception("%s: cryptofeed failed to parse a frame (already recorded raw): %.300s",
                              conn.uuid, msg)

    async def shutdown(self) -> None:
        for task in self._keepalive_tasks.values():
            task.cancel()
        self._keepalive_tasks.clear()
        await super().shutdown()
