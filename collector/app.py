"""The collector process: ``python -m collector --config config.yaml``.

Lifecycle (why each step is where it is):

1. **Recover** every ``.jsonl.open`` left by a dead collector before writing anything, so the
   raw layer is consistent whatever happened last time (``collector.recovery.recover``).
2. **REST, once**: instruments (for cryptofeed's symbol table and the universe filters) and,
   without a universe file, the live ranking of ``universe.rank_by`` (tickers or funding rates).
   Done before the event loop starts; cryptofeed's own blocking REST calls are avoided by
   filling its symbol table ourselves.
3. **Stream**: one ``OkxFeed`` (public + business connections), every frame captured raw
   into hourly shards; the loop flushes/seals every 0.25 s, so data reaches the OS within
   ``flush_interval_s`` and hours are sealed on time even for quiet channels.
4. **Stop** on SIGTERM/SIGINT or ``--duration-s``: stop cryptofeed, then seal every open
   shard and exit 0. A shard write failure (disk full, permissions) stops the collector
   with exit code 3 and a message saying what to do (sealed shards are untouched; the open
   ones are cut back to complete lines and sealed); the supervisor restarts it.

Before anything is written, the raw directory is test-written (:func:`collector.writer.probe_writable`);
while that fails (disk still full) the collector waits and retries instead of exiting, so a
supervisor does not crash-loop it, and it resumes by itself when space returns. Metrics are
served from the first moment, so ``python -m collector status`` can say what is wrong.

Universe hot-swap: every ``collector.universe_poll_s`` the newest universe file is checked;
when its members differ, a feed for the new set is started *before* the old one is stopped,
and the old one is stopped only once every new connection is subscribed and answering, so
the switch loses nothing (records of instruments in both sets can be written twice during
the overlap; cleaning deduplicates on (inst, ts)). The delay between publishing a universe
and streaming it is at most ``universe_poll_s`` plus the time to connect.

S3 (``collector.s3``): right after recovery a :class:`collector.s3.ShardUploader` thread starts
copying sealed shards to S3 (the ones a previous process left unuploaded first); the writer's
seal hook queues each new one. It never blocks the loop; on stop it drains for at most
``DRAIN_TIMEOUT_S`` and whatever is left is found again by the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

from cryptofeed import FeedHandler

from feeder.logs import setup_logging as feeder_setup_logging
from feeder.rest import OkxRestClient
from feeder.shards import ShardWriteError

from collector.capture import RawCapture
from collector.clock import ExchangeClock, LocalClock, ReceiptClock, choose_clock
from collector.metrics import Metrics
from collector.okx_feed import OkxFeed
from collector.recovery import RecoveryReport, recover
from collector.s3 import DRAIN_TIMEOUT_S, ShardUploader
from collector.settings import CHANNEL_MAP, CollectorSettings, ConfigError, load_settings
from collector.universe import (
    Selection,
    install_symbols,
    newest_universe_file,
    select_instruments,
    std_symbol,
    universe_members,
)
from collector.writer import ShardWriter, probe_writable

log = logging.getLogger("collector")

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_CONFIG = 2
EXIT_SHARD_WRITE = 3

#: cryptofeed FeedHandler config: no feedhandler.log in the cwd (our logging goes to stderr,
#: the supervisor keeps it), plain asyncio (uvloop 0.23 needs a loop set up front; not needed).
CRYPTOFEED_CONFIG: dict[str, Any] = {"uvloop": False, "log": {"disabled": True}}

TICK_S = 0.25
CLOCK_RESYNC_S = 30.0
DISK_RETRY_S = 2.0           # while the raw directory cannot be written: re-test this often
DISK_LOG_EVERY_S = 60.0      # ... and repeat the critical log line this often
HANDOVER_TIMEOUT_S = 30.0    # universe change: longest wait for the new feed before the old one goes
HANDOVER_MARGIN_S = 1.0      # ... and the overlap kept after the new feed answers
SWAP_ONLY_CHANNELS = frozenset({"funding-rate", "open-interest"})
#: OkxFeed counters kept across universe changes (their metrics must not go back)
RETIRED_FEED_COUNTERS = ("upgrade_notices", "handovers", "refused_resubscribes")


class _StopDuringStartup(BaseException):
    """SIGTERM/SIGINT before the loop runs. A BaseException so no ``except Exception`` on the
    start-up path (REST retries, clock calibration fallback) can swallow it."""


def ssl_context(ca_file: str | None) -> ssl.SSLContext | None:
    """TLS context trusting ``ca_file`` (the simulator's CA); None = websockets' default."""
    if not ca_file:
        return None
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def _inst_type_of(inst_id: str) -> str:
    parts = inst_id.split("-")
    if parts[-1] == "SWAP":
        return "SWAP"
    if len(parts) == 2:
        return "SPOT"
    return "FUTURES"


class CollectorApp:
    def __init__(
        self,
        settings: CollectorSettings,
        *,
        duration_s: float | None = None,
        clock_mode: str = "auto",
        forward_to_cryptofeed: bool = False,
        candle_updates: bool = False,
    ) -> None:
        self.settings = settings
        self.duration_s = duration_s
        self.clock_mode = clock_mode
        self.forward = forward_to_cryptofeed
        self.candle_updates = candle_updates
        self.metrics = Metrics()
        self.metrics.bind(self)
        self.phase = "starting"
        self.disk_problem: str | None = None
        self.recovery: RecoveryReport | None = None
        self.retired_connects: dict[str, int] = {}
        self.retired_reconnects: dict[str, int] = {}
        # OkxFeed counters (RETIRED_FEED_COUNTERS) of feeds replaced by universe changes
        self.retired_counters: dict[str, dict[Any, int]] = {}
        self.universe_switches = 0
        self.clock: ReceiptClock = LocalClock()
        self.exit_code = EXIT_OK
        self._stop: asyncio.Event | None = None
        self._stop_reason = ""
        self._client: Any = None
        self._instruments: list[dict[str, Any]] = []
        self.selection: Selection | None = None
        self.writer: ShardWriter | None = None
        self.capture: RawCapture | None = None
        self.uploader: ShardUploader | None = None
        self.feed: OkxFeed | None = None
        self._retiring: OkxFeed | None = None       # the old feed during a universe hand-over
        self._swap_task: asyncio.Task[None] | None = None

    # -- start-up (blocking, before the loop) ------------------------------------------

    def _wait_for_disk(self) -> None:
        """Block (sleeping, SIGTERM still works) until the raw directory can be written."""
        problem = probe_writable(self.settings.raw_root)
        if problem is None:
            return
        self.phase, self.disk_problem = "waiting_for_disk", str(problem)
        log.critical("%s Waiting until it can be written (re-testing every %gs); nothing is recorded meanwhile, "
                     "the workflow's repair path fetches the missed bars later.", problem, DISK_RETRY_S)
        last_log = time.monotonic()
        while problem is not None:
            time.sleep(DISK_RETRY_S)
            problem = probe_writable(self.settings.raw_root)
            if problem is not None:
                self.disk_problem = str(problem)
                if time.monotonic() - last_log >= DISK_LOG_EVERY_S:
                    last_log = time.monotonic()
                    log.critical("still cannot write raw shards: %s", problem)
        log.info("%s is writable again; starting", self.settings.raw_root)
        self.phase, self.disk_problem = "starting", None

    def _startup(self) -> None:
        s = self.settings
        self._wait_for_disk()
        report = self.recovery = recover(s.raw_root, compress_channels=s.compress_channels)
        log.info("start-up recovery under %s: %s", s.raw_root, report.summary())
        for shard in report.sealed:
            if shard.cut_lines:
                log.warning("recovery cut %d partial line(s) (%d bytes) from %s", shard.cut_lines, shard.cut_bytes,
                            shard.path)
        for path in report.in_use:
            log.warning("recovery skipped %s: a live writer holds it (is another collector running on %s?)",
                        path, s.raw_root)
        if s.s3 is not None:  # after recovery: the shards it sealed are uploaded too
            self.uploader = ShardUploader(s.raw_root, s.s3)
            self.uploader.start()

        self._client = OkxRestClient(base_url=s.rest_url, ca_file=s.ca_file, timeout_s=s.timeout_s)
        self.clock = choose_clock(self.clock_mode, self._client.server_time_ms)
        self._instruments = self._fetch_instruments()
        today = dt.datetime.fromtimestamp(self.clock.now(), tz=dt.timezone.utc).date()
        from feeder.universe import live_snapshot  # polars: imported only once the collector starts

        self.selection = select_instruments(
            symbols=s.symbols, work_root=s.work_root, universe_cfg=s.universe, instruments=self._instruments,
            live_snapshot=lambda: live_snapshot(self._client, universe_cfg=s.universe), today=today)
        unsupported = [i for i in self.selection.instruments if std_symbol(i) is None]
        if unsupported:
            raise ValueError(f"{unsupported}: only SWAP (BASE-QUOTE-SWAP) and SPOT (BASE-QUOTE) instruments can be "
                             "recorded; remove the others from --symbols")
        install_symbols(self._instruments)
        log.info("recording %s for %d instrument(s) from %s: %s", ", ".join(s.channels),
                 len(self.selection.instruments), self.selection.origin, ", ".join(self.selection.instruments))

    def _fetch_instruments(self) -> list[dict[str, Any]]:
        types = {self.settings.universe.get("inst_type", "SWAP")}
        types |= {_inst_type_of(i) for i in self.settings.symbols or ()}
        instruments: list[dict[str, Any]] = []
        for inst_type in sorted(types):
            instruments.extend(self._client.instruments(inst_type))
        return instruments

    # -- feed ----------------------------------------------------------------------------

    def _make_feed(self, instruments: Sequence[str]) -> OkxFeed:
        s = self.settings
        std = []
        for inst in instruments:
            sym = std_symbol(inst)
            if sym is None:
                raise ValueError(f"instrument {inst} is not a SWAP or SPOT id this collector can subscribe")
            std.append(sym)
        assert self.capture is not None
        return OkxFeed(
            public_url=s.ws_public_url,
            business_url=s.ws_business_url,
            frame_sink=self.capture,
            ssl_context=ssl_context(s.ca_file),
            subscribe_chunk=s.subscribe_chunk,
            forward_to_cryptofeed=self.forward,
            symbols=std,
            channels=[CHANNEL_MAP[c] for c in s.channels],
            candle_interval="1m",
            config=CRYPTOFEED_CONFIG,
        )

    def _expect(self, instruments: Sequence[str]) -> None:
        """Tell the capture which (channel, instId) pairs should now deliver data (health check)."""
        assert self.capture is not None
        self.capture.expect((channel, inst) for channel in self.settings.channels for inst in instruments
                            if channel not in SWAP_ONLY_CHANNELS or inst.endswith("-SWAP"))

    # -- the loop ------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self._stop is not None and not self._stop.is_set():
            self._stop_reason = reason
            log.info("stopping: %s", reason)
            self._stop.set()

    def _on_fatal(self, exc: BaseException) -> None:
        self.exit_code = EXIT_SHARD_WRITE
        self.disk_problem = str(exc)
        self.request_stop(f"shard write failed (exit code {EXIT_SHARD_WRITE})")

    async def _supervise(self) -> None:
        assert self._stop is not None and self.capture is not None
        started = time.monotonic()
        next_resync = started + 2.0
        next_universe = started + self.settings.universe_poll_s
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK_S)
            self.capture.tick()
            now = time.monotonic()
            if self.duration_s is not None and now - started >= self.duration_s:
                self.request_stop(f"--duration-s {self.duration_s:g} reached")
            if isinstance(self.clock, ExchangeClock) and now >= next_resync:
                # 2, 4, 8, ... s then every 30 s: the rate estimate sharpens with a longer baseline
                next_resync = now + min(CLOCK_RESYNC_S, max(2.0, now - started))
                try:
                    await loop.run_in_executor(None, self.clock.resync)
                except Exception as exc:
                    log.warning("exchange clock resync failed (%s); keeping the current estimate", exc)
            swapping = self._swap_task is not None and not self._swap_task.done()
            if self.settings.symbols is None and now >= next_universe and not swapping:
                # a task: the hand-over takes seconds, and the loop must keep flushing, sealing and
                # answering SIGTERM meanwhile
                next_universe = now + self.settings.universe_poll_s
                self._swap_task = loop.create_task(self._swap_safely(loop))

    async def _swap_safely(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await self._maybe_swap_universe(loop)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let a hand-over problem pass silently (or stop the collector)
            log.exception("universe switch failed; still recording the current set")

    async def _maybe_swap_universe(self, loop: asyncio.AbstractEventLoop) -> None:
        """Switch to a newer universe file's members (start new feed, then stop the old one)."""
        assert self.selection is not None and self.feed is not None
        today = dt.datetime.fromtimestamp(self.clock.now(), tz=dt.timezone.utc).date()
        path = newest_universe_file(self.settings.work_root, today=today)
        if path is None or self.selection.origin == f"universe file {path}":
            return
        try:
            members = await loop.run_in_executor(None, universe_members, path)
            if set(members) == set(self.selection.instruments):
                self.selection = Selection(self.selection.instruments, f"universe file {path}")
                return
            instruments = await loop.run_in_executor(None, self._fetch_instruments)
            selection = select_instruments(symbols=None, work_root=self.settings.work_root,
                                           universe_cfg=self.settings.universe, instruments=instruments, today=today)
            install_symbols(instruments)
            new_feed = self._make_feed(selection.instruments)
        except Exception as exc:
            log.error("universe %s: cannot switch to it (%s); still recording the current set", path, exc)
            return
        added = sorted(set(selection.instruments) - set(self.selection.instruments))
        removed = sorted(set(self.selection.instruments) - set(selection.instruments))
        log.info("universe changed (%s): +%d %s, -%d %s; starting the new subscriptions before dropping the old",
                 path.name, len(added), added, len(removed), removed)
        t0 = time.monotonic()
        new_feed.start(loop)
        old, self.feed, self.selection = self.feed, new_feed, selection
        self._retiring = old
        self._expect(selection.instruments)
        if await new_feed.wait_ready(HANDOVER_TIMEOUT_S):
            await asyncio.sleep(HANDOVER_MARGIN_S)  # let the acks of every subscribe message arrive
            log.info("universe switch: new connections streaming after %.1fs; closing the old ones",
                     time.monotonic() - t0)
        else:
            log.warning("universe switch: the new connections are not streaming after %gs (still retrying); "
                        "closing the old ones anyway", HANDOVER_TIMEOUT_S)
        old.stop()
        for endpoint, n in old.connects.items():
            self.retired_connects[endpoint] = self.retired_connects.get(endpoint, 0) + n
        for endpoint, n in old.reconnects.items():
            self.retired_reconnects[endpoint] = self.retired_reconnects.get(endpoint, 0) + n
        for name in RETIRED_FEED_COUNTERS:
            kept = self.retired_counters.setdefault(name, {})
            for key, n in getattr(old, name).items():
                kept[key] = kept.get(key, 0) + n
        self.universe_switches += 1
        await old.shutdown()
        self._retiring = None

    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        def startup_signal(signum: int, _frame: Any) -> None:
            raise _StopDuringStartup(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, startup_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        s = self.settings
        self.metrics.serve(s.metrics_host, s.metrics_port)
        try:
            self._startup()
        except _StopDuringStartup as exc:
            log.info("stopped by %s during start-up; nothing to seal", exc)
            self._stop_uploader()
            return EXIT_OK
        except Exception as exc:
            log.error("start-up failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self._stop_uploader()
            return EXIT_STARTUP
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        assert self.selection is not None
        self.writer = ShardWriter(s.raw_root, "ws", self.clock.now, flush_interval_s=s.flush_interval_s,
                                  flush_clock=time.monotonic, on_io=self.metrics.observe_io,
                                  on_seal=self.uploader.notify if self.uploader is not None else None,
                                  compress_channels=s.compress_channels)
        self.capture = RawCapture(self.writer, clock=self.clock, channels=s.channels, on_fatal=self._on_fatal,
                                  candle_updates=self.candle_updates)
        self._expect(self.selection.instruments)
        self.phase = "running"

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        fh = FeedHandler(config=CRYPTOFEED_CONFIG)
        try:
            self.feed = self._make_feed(self.selection.instruments)
            fh.add_feed(self.feed)
            fh.run(start_loop=False, install_signal_handlers=False)
            loop.run_until_complete(self._supervise())
        except Exception as exc:
            log.error("collector failed: %s", exc, exc_info=True)
            self.exit_code = self.exit_code or EXIT_STARTUP
        finally:
            self._shutdown(loop, fh)
        return self.exit_code

    def _shutdown(self, loop: asyncio.AbstractEventLoop, fh: FeedHandler) -> None:
        self.phase = "stopping"
        # the current feed (after a universe swap too), and the old one if a hand-over is under way
        fh.feeds = [f for f in (self.feed, self._retiring) if f is not None]
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(fh.stop_async(loop=loop), 10))
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        if self.capture is not None:
            self.capture.finish()   # the books5 sampler's held books, before the shards are sealed
            log.info("capture: %s", self.capture.summary())
        if self.writer is not None:
            # sealing takes milliseconds: a second SIGTERM must not cut it short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                sealed = self.writer.close()
                log.info("sealed %d shard(s) on exit; %d records, %d bytes written in total", len(sealed),
                         self.writer.stats.records, self.writer.stats.bytes)
            except ShardWriteError as exc:
                st = self.writer.stats
                log.critical("exiting with code %d: %s (%d record(s) the disk refused are lost here; the "
                             "workflow's backfill restores those bars from REST)", EXIT_SHARD_WRITE, exc,
                             st.lost_records)
                self.exit_code = EXIT_SHARD_WRITE
        self._stop_uploader()
        if self._client is not None:
            self._client.close()

    def _stop_uploader(self) -> None:
        """Give the uploader up to DRAIN_TIMEOUT_S for the backlog (the shards just sealed on exit);
        what is left stays on disk for the next start, so cutting the drain short loses nothing. A
        second SIGTERM is ignored (the drain is bounded; SIGKILL still works); a Ctrl-C ends it."""
        if self.uploader is None:
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.uploader.stop(DRAIN_TIMEOUT_S)
        except (KeyboardInterrupt, _StopDuringStartup):
            log.warning("S3: upload of the backlog interrupted; the next start uploads what is left")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m collector",
        description="Record OKX WebSocket market data into hourly raw JSONL shards (paths.raw/ws): losslessly, "
                    "except books5, which is sampled (the last book of each second). "
                    "'python -m collector status --config config.yaml' reports a running collector's health.",
        epilog="Exit codes: 0 stopped normally (SIGTERM/SIGINT/--duration-s), 1 start-up failed, 2 bad "
               "configuration, 3 a shard could not be written (disk full, permissions). See docs/collector.md.")
    p.add_argument("--config", required=True, help="config.yaml (relative paths are taken from the working directory)")
    p.add_argument("--duration-s", type=float, default=None, help="stop (and seal) after this many seconds")
    p.add_argument("--symbols", default=None,
                   help="comma-separated OKX instrument ids (e.g. BTC-USDT-SWAP,ETH-USDT-SWAP) instead of the universe")
    p.add_argument("--clock", choices=("auto", "local", "exchange"), default="auto",
                   help="time base of recv_ts and shard hours. 'exchange' follows /api/v5/public/time (the "
                        "simulator's clock starts in the past and runs fast); 'local' is this machine's clock; "
                        "'auto' (default) measures the exchange clock at start-up and uses it only if it differs "
                        "from the local one by more than 5 s or runs at another rate")
    p.add_argument("--metrics-port", type=int, default=None, help="override collector.metrics_port (0 = off)")
    p.add_argument("--candle-updates", action="store_true",
                   help="record every candle push, not only closed bars (benchmarks, studies of the forming bar; "
                        "the workflow ignores unconfirmed rows)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p.parse_args(argv)


class _QuietReconnects(logging.Filter):
    """Drop the traceback cryptofeed attaches to every expected disconnect (one line is enough);
    unexpected exceptions ("encountered an exception") keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "encountered connection issue" in record.msg:
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(level: str) -> None:
    """The project's logging (stderr, :mod:`feeder.logs`) plus cryptofeed's logger tamed."""
    feeder_setup_logging(level=getattr(logging, level))
    feedhandler = logging.getLogger("feedhandler")
    # cryptofeed logs every reconnect with a traceback at WARNING and a lot at INFO
    feedhandler.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    if level != "DEBUG":
        feedhandler.addFilter(_QuietReconnects())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        from collector.status import main as status_main

        return status_main(argv[1:])
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = load_settings(args.config, symbols=args.symbols.split(",") if args.symbols else None,
                                 metrics_port=args.metrics_port)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    if args.duration_s is not None and args.duration_s <= 0:
        log.error("--duration-s must be > 0")
        return EXIT_CONFIG
    return CollectorApp(settings, duration_s=args.duration_s, clock_mode=args.clock,
                        candle_updates=args.candle_updates).run()
