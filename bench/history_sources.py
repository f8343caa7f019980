"""Benchmark: acquiring a year of 1-minute candles from OKX's archive versus REST alone.

    python -m bench.history_sources [--instruments 50] [--days 365] [--rest-days 2]
                                    [--bandwidth-mb 20] [--workdir bench-data/history] [--no-prebuild]

Against the local simulator (a separate ``python -m okxsim`` process, clock frozen) at OKX's
published rate limits (history-candles 20 requests / 2 s, market-data-history 5 / 2 s), for
``--instruments`` swaps listed over the whole window and the ``--days`` UTC days before the
simulated clock's date, it measures

(a) ``history.source: archive+rest``: what the product does. ``feeder.archive.list_candle_files``
    for the instruments' families over the UTC+8 dates covering the UTC days (a monthly listing
    for each month already published, daily for the rest), ``feeder.archive.download_files``
    (concurrency 4), then ``feeder.backfill.backfill_day`` with the ranges the archive covers
    (``feeder.archive.archive_minutes``) for the UTC days the archive has not fully published
    (its files appear at T+2, UTC+8 dates).
(b) ``history.source: rest``: ``feeder.backfill.backfill_day`` per day (history-candles, 300 rows
    per page). A full year is ~91,000 requests (~2.8 h at the client's rate), so (b) runs on the
    first ``--rest-days`` days of the window and is extrapolated linearly per instrument-day (REST
    paging costs the same for every full day: ceil(1440 / 300) = 5 pages; its wall time is bound
    by the rate limit). The table says which figures are measured and which extrapolated.

Figures: requests (listing + file downloads + REST pages + other REST calls such as the server
time), bytes (archive file bytes; REST response bodies, counted by a response hook on the
client's session), wall time. Downloads are throttled per file by the simulator
(``archive_bandwidth_bps`` = ``--bandwidth-mb`` x 10^6 bytes/s), as a CDN would.

The simulator builds each archive zip on first use (a monthly file in ~0.2 s of CPU). OKX serves
ready files, so by default an untimed pre-build pass (a listing with a throwaway cache: the
simulator builds what it lists) runs first and its cost is printed; ``--no-prebuild`` times the
cold simulator instead. On a 2-core machine the simulator's CPU (TLS, throttled sends, builds)
competes with the client's, so wall times are an upper bound of what the client needs.

Only subdirectories this module creates under ``--workdir`` are ever deleted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import requests

from feeder.archive import (ArchiveFile, archive_minutes, download_files, last_published_day, list_candle_files,
                            listing_names)
from feeder.backfill import backfill_day
from feeder.registry import day_bounds_ms
from feeder.rest import HISTORY_CANDLES_LIMIT, RATE_LIMITS, OkxRestClient
from feeder.shards import write_shard_atomically
from harness.processes import simulator

SEED = 7
HISTORY_START = dt.date(2024, 1, 1)
#: Days between the window's first UTC day and the start of the simulated history: the window
#: starts a few days after the first candle, so REST paging of its first day has older rows.
LEAD_DAYS = 5
CLOCK_TIME = "T12:00:00Z"
MINUTES_PER_DAY = 1440
#: Subdirectories of --workdir this module owns (and clears at the start of a run).
OWNED_DIRS = ("sim", "prebuild", "archive", "rest-a", "rest-b", "probe")
LISTING = "/api/v5/public/market-data-history"
HISTORY = "/api/v5/market/history-candles"


# --------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class Figures:
    """What one approach cost. ``other``: REST calls that are neither listing nor candle pages."""

    listing: float = 0
    downloads: float = 0
    rest_pages: float = 0
    other: float = 0
    file_bytes: float = 0
    rest_bytes: float = 0
    seconds: float = 0.0

    @property
    def requests(self) -> float:
        return self.listing + self.downloads + self.rest_pages + self.other


def window(*, days: int, history_start: dt.date = HISTORY_START) -> tuple[dt.date, dt.date, str]:
    """``(first, last, clock_start)``: ``days`` UTC days ending the day before the simulated clock.

    The clock is at 12:00 UTC (20:00 UTC+8) of the day after ``last``, so the archive has
    published up to the UTC+8 date ``last - 1`` (T+2): the newest ~1.3 days are REST's.
    """
    first = history_start + dt.timedelta(days=LEAD_DAYS)
    last = first + dt.timedelta(days=days - 1)
    return first, last, (last + dt.timedelta(days=1)).isoformat() + CLOCK_TIME


def days_needing_rest(*, first: dt.date, last: dt.date, published: dt.date) -> list[dt.date]:
    """The UTC days not fully covered by published archive files.

    UTC day D needs the UTC+8 files dated D and D+1; ``published`` is the newest UTC+8 date
    with files (``feeder.archive.last_published_day``).
    """
    out, day = [], max(first, published)
    while day <= last:
        if day + dt.timedelta(days=1) > published:
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def pages_per_full_day(*, page_rows: int = HISTORY_CANDLES_LIMIT, minutes: int = MINUTES_PER_DAY) -> int:
    """history-candles pages for a full day of 1-minute bars when older rows exist (the last page
    reaches past the day's start, which proves the range complete at no extra request)."""
    return math.ceil(minutes / page_rows)


def extrapolate(sample: Figures, *, sample_units: int, full_units: int) -> Figures:
    """Scale every figure of ``sample`` (measured over ``sample_units`` instrument-days) linearly
    to ``full_units`` instrument-days."""
    if sample_units <= 0:
        raise ValueError("sample_units must be positive")
    k = full_units / sample_units
    return Figures(**{f.name: getattr(sample, f.name) * k for f in fields(Figures)})


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def human_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def figure_row(name: str, fig: Figures, *, how: str) -> list[str]:
    return [name, f"{fig.listing:,.0f}", f"{fig.downloads:,.0f}", f"{fig.rest_pages:,.0f}", f"{fig.other:,.0f}",
            f"{fig.requests:,.0f}", f"{fig.file_bytes / 1e6:,.1f}", f"{fig.rest_bytes / 1e6:,.1f}",
            human_seconds(fig.seconds), how]


TABLE_HEADERS = ("approach", "listing", "files", "REST pages", "other", "requests", "file MB", "REST MB", "wall",
                 "figures")


# --------------------------------------------------------------------------- measuring


class CountingClient:
    """An :class:`OkxRestClient` whose requests and response bytes are counted per endpoint path
    (a response hook on its session; the client itself is the product's, unchanged)."""

    def __init__(self, *, base_url: str, ca_file: str) -> None:
        self.client = OkxRestClient(base_url=base_url, ca_file=ca_file, timeout_s=600)
        self.counts: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client._session.hooks["response"].append(self._count)  # bench-only instrumentation

    def _count(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = requests.utils.urlparse(resp.url).path
        with self._lock:
            self.counts[path] = self.counts.get(path, 0) + 1
            self.bytes[path] = self.bytes.get(path, 0) + len(resp.content)

    def figures(self, *, seconds: float, downloads: int = 0, file_bytes: int = 0) -> Figures:
        other = sum(n for p, n in self.counts.items() if p not in (LISTING, HISTORY))
        return Figures(listing=self.counts.get(LISTING, 0), downloads=downloads, rest_pages=self.counts.get(HISTORY, 0),
                       other=other, file_bytes=file_bytes, rest_bytes=sum(self.bytes.values()), seconds=seconds)

    def close(self) -> None:
        self.client.close()


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def pick_instruments(*, n: int, n_swaps: int, first: dt.date, clock_start: str) -> list[str]:
    """``n`` swaps listed (live) from before the window's first day until the clock, never delisted:
    from the simulator's own universe (okxsim.Market with the server's arguments)."""
    import okxsim

    market = okxsim.Market(SEED, HISTORY_START.isoformat(), clock_start, n_swaps)
    start_ms = day_bounds_ms(first)[0]
    clock_ms = day_bounds_ms(dt.date.fromisoformat(clock_start[:10]))[0]
    live = {i["instId"] for at in (start_ms, clock_ms) for i in market.instruments(at) if i["state"] == "live"}
    chosen = [s.inst_id for s in market.specs
              if s.inst_type == "SWAP" and s.delist_ms is None and s.list_ms < start_ms - 86_400_000
              and s.inst_id in live]
    if len(chosen) < n:
        raise SystemExit(f"only {len(chosen)} swaps are listed over the whole window with --n-swaps {n_swaps}; "
                         f"ask for fewer --instruments or raise --n-swaps")
    return chosen[:n]


def sim_get(sim_rest: str, ca_file: str, path: str, **params: str) -> Any:
    return requests.get(sim_rest + path, params=params, verify=ca_file, timeout=120).json()


def prebuild(*, rest: str, ca_file: str, families: list[str], first: dt.date, last: dt.date, now_ms: int,
             workdir: Path) -> tuple[float, int]:
    """List every file once with a throwaway listing cache: the simulator builds what it lists.

    Returns (seconds, listing requests). Untimed in the figures: OKX serves ready-made files.
    """
    counting = CountingClient(base_url=rest, ca_file=ca_file)
    t0 = time.monotonic()
    try:
        list_candle_files(counting.client, inst_type="SWAP", first=first, last=last + dt.timedelta(days=1),
                          names=families, now_ms=now_ms, cache_dir=workdir / "prebuild")
    finally:
        counting.close()
    return time.monotonic() - t0, counting.counts.get(LISTING, 0)


@dataclass
class ArchiveRun:
    figures: Figures
    files: int
    monthly: int
    daily: int
    listing_s: float
    download_s: float
    rest_s: float
    rest_days: list[dt.date]
    listed: list[ArchiveFile]


def run_archive_rest(*, rest: str, ca_file: str, instruments: list[str], first: dt.date, last: dt.date,
                     workdir: Path, concurrency: int) -> ArchiveRun:
    """(a): the product's archive+rest path over the whole window."""
    counting = CountingClient(base_url=rest, ca_file=ca_file)
    client = counting.client
    t0 = time.monotonic()
    try:
        now_ms = client.server_time_ms()
        wanted = set(instruments)
        say(f"(a) listing the archive: {len(instruments)} instruments, UTC+8 dates "
            f"{first}..{last + dt.timedelta(days=1)}")
        files = [f for f in list_candle_files(client, inst_type="SWAP", first=first, last=last + dt.timedelta(days=1),
                                              names=listing_names(instruments, inst_type="SWAP"), now_ms=now_ms,
                                              cache_dir=workdir / "archive")
                 if f.inst in wanted]
        t_list = time.monotonic()
        monthly = sum(f.aggregation == "monthly" for f in files)
        say(f"(a) listed {len(files)} files ({monthly} monthly, {len(files) - monthly} daily, "
            f"{sum((f.size_mb or 0) for f in files) * 2**20 / 1e6:,.0f} MB) with {counting.counts.get(LISTING, 0)} "
            f"listing requests in {t_list - t0:.1f} s; downloading, concurrency {concurrency}")
        result = download_files(files, cache_dir=workdir / "archive", concurrency=concurrency, ca_file=ca_file,
                                timeout_s=600, progress=lambda line: say("(a) " + line), progress_every_s=10)
        if result.failed or result.missing:
            raise SystemExit(f"(a) {len(result.failed)} downloads failed, {len(result.missing)} missing: "
                             f"{list(result.failed.values())[:3]} {list(result.missing.values())[:3]}")
        t_dl = time.monotonic()
        todo = days_needing_rest(first=first, last=last, published=last_published_day(now_ms=now_ms))
        say(f"(a) REST for the days the archive has not fully published (T+2): {', '.join(map(str, todo))}")
        for day in todo:
            lo, hi = day_bounds_ms(day)
            day_files = [f for f in files if f.start_ms < hi and f.end_ms > lo]
            records, covered, refused = archive_minutes(files=day_files, paths=result.paths, day=day, recv_ts=now_ms)
            if refused:
                raise SystemExit(f"(a) archive files refused for {day}: {refused}")
            shard = workdir / "rest-a" / f"archive-{day}.jsonl"
            write_shard_atomically(shard, records)
            summary = backfill_day(client=client, day=day, instruments=instruments, stream_shards=[],
                                   fetched_dir=workdir / "rest-a" / f"{day}.fetched",
                                   out_path=workdir / "rest-a" / f"rest-{day}.jsonl", archive_shards=[shard],
                                   archive_covered=covered)
            say(f"(a) {day}: {len(records):,} bars from the archive, {summary['bars_fetched_now']:,} from REST "
                f"with {summary['requests']} requests")
        t_end = time.monotonic()
    finally:
        counting.close()
    return ArchiveRun(figures=counting.figures(seconds=t_end - t0, downloads=result.requests, file_bytes=result.bytes),
                      files=len(files), monthly=monthly, daily=len(files) - monthly, listing_s=t_list - t0,
                      download_s=t_dl - t_list, rest_s=t_end - t_dl, rest_days=todo, listed=files)


def run_rest_only(*, rest: str, ca_file: str, instruments: list[str], days: list[dt.date], workdir: Path) -> Figures:
    """(b): ``backfill_day`` per day for every instrument, nothing from the archive."""
    counting = CountingClient(base_url=rest, ca_file=ca_file)
    t0 = time.monotonic()
    try:
        for i, day in enumerate(days, 1):
            summary = backfill_day(client=counting.client, day=day, instruments=instruments, stream_shards=[],
                                   fetched_dir=workdir / "rest-b" / f"{day}.fetched",
                                   out_path=workdir / "rest-b" / f"rest-{day}.jsonl")
            say(f"(b) day {i}/{len(days)} {day}: {summary['bars_fetched_now']:,} bars with {summary['requests']} "
                f"requests; {time.monotonic() - t0:.0f} s so far")
        seconds = time.monotonic() - t0
    finally:
        counting.close()
    return counting.figures(seconds=seconds)


def probe_one_file(*, files: Sequence[ArchiveFile], ca_file: str, workdir: Path) -> tuple[int, float]:
    """Download the largest file alone (concurrency 1): (bytes, seconds) of one throttled download."""
    biggest = max(files, key=lambda f: f.size_mb or 0)
    result = download_files([biggest], cache_dir=workdir / "probe", concurrency=1, ca_file=ca_file, timeout_s=600,
                            progress=None)
    return result.bytes, result.seconds


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.history_sources", description=__doc__.split("\n")[0])
    p.add_argument("--instruments", type=int, default=50)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--rest-days", type=int, default=2, help="days of the REST-only sample (>= --days: run in full)")
    p.add_argument("--bandwidth-mb", type=float, default=20.0, help="per download, 10^6 bytes/s (0 = unthrottled)")
    p.add_argument("--concurrency", type=int, default=4, help="archive downloads at once (the product's default)")
    p.add_argument("--n-swaps", type=int, default=60, help="the simulator's universe size")
    p.add_argument("--workdir", type=Path, default=Path("bench-data/history"))
    p.add_argument("--no-prebuild", action="store_true",
                   help="time the cold simulator (it builds each file on first use) instead of ready-made files")
    return p.parse_args(argv)


def prepare_workdir(workdir: Path) -> None:
    """Create ``workdir``; clear only the subdirectories this module owns."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in OWNED_DIRS:
        shutil.rmtree(workdir / name, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("feeder.backfill").setLevel(logging.INFO)
    first, last, clock_start = window(days=args.days)
    rest_sample = [first + dt.timedelta(days=i) for i in range(min(args.rest_days, args.days))]
    rest_full = len(rest_sample) == args.days
    instruments = pick_instruments(n=args.instruments, n_swaps=args.n_swaps, first=first, clock_start=clock_start)
    families = listing_names(instruments, inst_type="SWAP")
    workdir = args.workdir.resolve()
    prepare_workdir(workdir)
    bandwidth_bps = args.bandwidth_mb * 1e6
    say(f"history sources: {len(instruments)} swaps x {args.days} UTC days ({first}..{last}), simulator clock "
        f"{clock_start} (frozen), seed {SEED}, history from {HISTORY_START}; workdir {workdir}")
    say(f"rate limits (OKX's, rate_limit_scale=1): history-candles {RATE_LIMITS[HISTORY][0]} req / "
        f"{RATE_LIMITS[HISTORY][1]:g} s, market-data-history {RATE_LIMITS[LISTING][0]} req / "
        f"{RATE_LIMITS[LISTING][1]:g} s; archive download bandwidth {args.bandwidth_mb:g} MB/s per file "
        f"(archive_bandwidth_bps={bandwidth_bps:.0f})")
    extra = ["--n-swaps", str(args.n_swaps), "--rate-limit-scale", "1", "--archive-bandwidth-mbps",
             str(args.bandwidth_mb)]
    with simulator(seed=SEED, clock_start=clock_start, speed=0, history_start=HISTORY_START.isoformat(),
                   cert_dir=workdir / "sim" / "certs", log_path=workdir / "sim" / "okxsim.log",
                   extra_args=extra) as sim:
        now_ms = int(sim_get(sim.rest, sim.ca_file, "/api/v5/public/time")["data"][0]["ts"])
        build_note = ""
        if not args.no_prebuild:
            say("pre-building the simulator's archive files (untimed: OKX serves ready-made files) ...")
            seconds, _ = prebuild(rest=sim.rest, ca_file=sim.ca_file, families=families, first=first, last=last,
                                  now_ms=now_ms, workdir=workdir)
            cache = sim_get(sim.rest, sim.ca_file, "/sim/state")["archive_cache"]
            build_note = (f"simulator file generation (untimed pre-build): {cache['builds']} files built in "
                          f"{cache['build_seconds']:.1f} s of build time ({seconds:.1f} s wall, listing included); "
                          f"cache {cache['bytes'] / 1e6:,.0f} MB")
            say(build_note)
            time.sleep(2.5)  # the server's 2 s rate windows of the pre-build are over before (a) starts
        before = sim_get(sim.rest, sim.ca_file, "/sim/state")["archive_cache"]
        a = run_archive_rest(rest=sim.rest, ca_file=sim.ca_file, instruments=instruments, first=first, last=last,
                             workdir=workdir, concurrency=args.concurrency)
        after = sim_get(sim.rest, sim.ca_file, "/sim/state")["archive_cache"]
        if args.no_prebuild:
            build_note = (f"simulator file generation during (a) (timed, cold simulator): {after['builds']} files "
                          f"built in {after['build_seconds']:.1f} s of build time")
        elif after["builds"] > before["builds"]:
            build_note += (f"; {after['builds'] - before['builds']} more built during (a) "
                           f"({after['build_seconds'] - before['build_seconds']:.1f} s: evicted from the "
                           "simulator's cache)")
        probe_bytes, probe_s = probe_one_file(files=a.listed, ca_file=sim.ca_file, workdir=workdir)
        time.sleep(2.5)
        say(f"(b) REST only: {len(instruments)} instruments x {len(rest_sample)} days "
            f"({'the whole window' if rest_full else 'sample: ' + ', '.join(map(str, rest_sample))})")
        b_sample = run_rest_only(rest=sim.rest, ca_file=sim.ca_file, instruments=instruments, days=rest_sample,
                                 workdir=workdir)
        server = {ep: len(sim_get(sim.rest, sim.ca_file, "/sim/requests", endpoint=ep)["requests"])
                  for ep in ("market-data-history", "archive-file", "history-candles")}
    sample_units = len(instruments) * len(rest_sample)
    full_units = len(instruments) * args.days
    b_full = b_sample if rest_full else extrapolate(b_sample, sample_units=sample_units, full_units=full_units)
    print(report(args=args, instruments=instruments, first=first, last=last, a=a, b_sample=b_sample, b_full=b_full,
                 rest_full=rest_full, rest_sample=rest_sample, build_note=build_note, probe=(probe_bytes, probe_s),
                 server=server, bandwidth_bps=bandwidth_bps), flush=True)


def report(*, args: argparse.Namespace, instruments: list[str], first: dt.date, last: dt.date, a: ArchiveRun,
           b_sample: Figures, b_full: Figures, rest_full: bool, rest_sample: list[dt.date], build_note: str,
           probe: tuple[int, float], server: dict[str, int], bandwidth_bps: float) -> str:
    n, days = len(instruments), args.days
    sample_how = "measured" if rest_full else f"measured ({n} x {len(rest_sample)} days)"
    rows = [figure_row(f"(a) archive+rest, {n} x {days} days", a.figures, how="measured"),
            figure_row(f"(b) rest only, {n} x {len(rest_sample)} days", b_sample, how=sample_how)]
    if not rest_full:
        rows.append(figure_row(f"(b) rest only, {n} x {days} days", b_full,
                               how=f"extrapolated x{days / len(rest_sample):g} per instrument-day"))
    req_ratio = ratio(b_full.requests, a.figures.requests)
    time_ratio = ratio(b_full.seconds, a.figures.seconds)
    rows.append(["ratio (b) / (a)", "", "", "", "", f"{req_ratio:,.1f}x", "", "", f"{time_ratio:,.1f}x",
                 "extrapolated" if not rest_full else "measured"])
    per_inst_day = b_sample.rest_pages / (n * len(rest_sample))
    limit, window_s = RATE_LIMITS[HISTORY]
    probe_bytes, probe_s = probe
    lines = [
        "",
        f"History acquisition of 1-minute candles: {n} swaps x {days} UTC days ({first}..{last}), local simulator "
        f"at OKX's rate limits (rate_limit_scale=1), archive download bandwidth {bandwidth_bps / 1e6:g} MB/s per file "
        f"(archive_bandwidth_bps={bandwidth_bps:.0f}), downloads {args.concurrency} at once.",
        "",
        format_table(TABLE_HEADERS, rows),
        "",
        f"target: >= 20x fewer requests -> {req_ratio:,.1f}x ({'met' if req_ratio >= 20 else 'NOT met'}); "
        f">= 10x less wall time -> {time_ratio:,.1f}x ({'met' if time_ratio >= 10 else 'NOT met'})",
        f"(a) {a.files} files ({a.monthly} monthly, {a.daily} daily): listing {a.listing_s:.1f} s, downloads "
        f"{a.download_s:.1f} s ({a.figures.file_bytes / 1e6 / a.download_s if a.download_s else 0:.1f} MB/s "
        f"aggregate, {a.figures.file_bytes / 1e6 / a.files if a.files else 0:.2f} MB per file), REST for "
        f"{', '.join(map(str, a.rest_days)) or 'no day'} (not yet published, T+2) {a.rest_s:.1f} s. That REST "
        "tail is the same for any window length, so the ratios grow with --days.",
        f"one file downloaded alone: {probe_bytes / 1e6:.2f} MB in {probe_s:.2f} s = "
        f"{probe_bytes / 1e6 / probe_s if probe_s else 0:.1f} MB/s (cap {bandwidth_bps / 1e6:g} MB/s); with "
        f"{args.concurrency} at once, the mean per file was "
        f"{a.figures.file_bytes / 1e6 / (a.download_s * args.concurrency) if a.download_s else 0:.1f} MB/s.",
        f"(b) REST paging: {per_inst_day:.2f} history-candles pages per instrument-day measured "
        f"(ceil({MINUTES_PER_DAY} / {HISTORY_CANDLES_LIMIT}) = {pages_per_full_day()} by paging arithmetic); "
        f"at {limit} req / {window_s:g} s the {b_full.rest_pages:,.0f} pages need >= "
        f"{human_seconds(b_full.rest_pages / limit * window_s)} (the client keeps 10% slack: "
        f"{human_seconds(b_full.rest_pages / limit * window_s * 1.1)}).",
    ]
    if not rest_full:
        lines.append(f"(b) for {days} days is extrapolated linearly from the measured sample ({n} instruments x "
                     f"{len(rest_sample)} days = {n * len(rest_sample)} instrument-days -> {n * days:,}): requests "
                     "and bytes by paging arithmetic, wall time because REST is rate-limit bound.")
    if build_note:
        lines.append(build_note + ". On this 2-core machine the simulator's own CPU (TLS, throttled sends, "
                     "builds) competes with the client's.")
    lines.append(f"server's request log (whole run, incl. pre-build and probe): market-data-history "
                 f"{server['market-data-history']}, archive-file {server['archive-file']}, history-candles "
                 f"{server['history-candles']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
