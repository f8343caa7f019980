"""``python -m okxsim``: run the simulator until SIGTERM/SIGINT.

Prints exactly one JSON line on stdout when ready:
``{"rest": ..., "ws_public": ..., "ws_business": ..., "ca_file": ..., "pid": ...}``.
Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from .server import SimConfig, SimServer
from .ws import PushConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="okxsim", description="Local OKX v5 exchange simulator (TLS REST + WebSocket).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (printed in the ready line)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--clock-start", default="2024-03-04T22:00:00Z",
                   help="simulated time at start-up (ISO-8601, epoch ms, or 'now')")
    p.add_argument("--speed", type=float, default=300.0, help="simulated seconds per real second (0 = frozen)")
    p.add_argument("--history-start", default="2024-02-01", help="first UTC day with candles")
    p.add_argument("--cert-dir", default=None, help="where ca.pem lives (default: a temporary directory)")
    p.add_argument("--n-swaps", type=int, default=80, help="number of USDT-margined crypto perpetuals")
    p.add_argument("--rate-limit-scale", type=float, default=1.0,
                   help="multiply OKX's per-IP rate limits (<= 0 disables them)")
    p.add_argument("--history-limit-max", type=int, default=100, help="max limit of /market/history-candles")
    p.add_argument("--archive-bandwidth-mbps", type=float, default=0.0,
                   help="archive file downloads: megabytes (10^6 bytes) per second each (0 = unlimited)")
    p.add_argument("--idle-timeout", type=float, default=30.0,
                   help="close WebSockets without subscriptions after this many real seconds (code 4004)")
    p.add_argument("--books-mean-interval", type=float, default=2.0,
                   help="books5: mean simulated seconds between two books of one instrument")
    p.add_argument("--books-max-per-real-s", type=float, default=25.0,
                   help="books5: at most this many books per real second per instrument on average (the mean "
                        "interval becomes speed / this when that is longer; <= 0: no cap)")
    p.add_argument("--books-quiet-prob", type=float, default=0.05,
                   help="books5: probability that a block of --books-quiet-block simulated seconds has no book")
    p.add_argument("--books-quiet-block", type=int, default=180, help="books5: quiet block length (simulated s)")
    p.add_argument("--books-burst-prob", type=float, default=0.1,
                   help="books5: probability that a book is followed by 1-3 more in the same second")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def _amain(args: argparse.Namespace) -> None:
    cfg = SimConfig(seed=args.seed, clock_start=args.clock_start, speed=args.speed,
                    history_start=args.history_start, host=args.host, port=args.port, cert_dir=args.cert_dir,
                    n_swaps=args.n_swaps, rate_limit_scale=args.rate_limit_scale,
                    history_limit_max=args.history_limit_max,
                    archive_bandwidth_bps=args.archive_bandwidth_mbps * 1_000_000,
                    push=PushConfig(idle_timeout_s=args.idle_timeout, books_mean_interval_s=args.books_mean_interval,
                                    books_max_per_real_s=args.books_max_per_real_s,
                                    books_quiet_prob=args.books_quiet_prob, books_quiet_block_s=args.books_quiet_block,
                                    books_burst_prob=args.books_burst_prob))
    server = SimServer(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    info = await server.start()
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_amain(args))


if __name__ == "__main__":
    main()
