"""The Qlib export alone: full build versus appending one day, at several history lengths.

    python -m bench.export_append [--instruments 50] [--days 30,180,365] [--repeat 3]
                                  [--workdir bench-data/export-append]

What the ``qlib`` rule does (feeder.qlib_export.export_day_blocks), without Snakemake around
it, on synthetic day blocks of every configured frequency (1min, 5min, 60min, day; the default
fields): N instruments, every slot of every day holds a bar. For each history length D:

* full build of D days (the denominator): every bin written from the day blocks;
* one-day add: the published D-1 day dataset is the base, day D is appended (what a daily run
  does when the history is unchanged).

Each timed step runs in a fresh process (``step`` below): wall time and that process's peak RSS.
Figures are medians of ``--repeat``. After the runs, the appended dataset must equal the full
build byte for byte (every file but the build ledger), or the script exits non-zero.
Nothing here asserts a speed target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from feeder.qlib_blocks import day_block, write_block
from feeder.qlib_export import BUILD_LEDGER, DEFAULT_FIELDS

REPO = Path(__file__).resolve().parent.parent
FREQS = ("1min", "5min", "60min", "day")
FIRST_DAY = dt.date(2024, 1, 1)
MARKET = "top50"


def _bars(insts: list[str], day: dt.date, minutes: int, rng: np.random.Generator) -> pl.DataFrame:
    n = 1440 // minutes
    start = dt.datetime.combine(day, dt.time())
    ts = pl.datetime_range(start, start + dt.timedelta(minutes=minutes * (n - 1)), dt.timedelta(minutes=minutes),
                           time_unit="ms", eager=True)
    frames = []
    for inst in insts:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        frame = {"inst": [inst] * n, "ts": ts, "close": close, "open": close * 0.999, "high": close * 1.001,
                 "low": close * 0.998, "volume": rng.gamma(2.0, 5.0, n)}
        frames.append(pl.DataFrame(frame))
    bars = pl.concat(frames)
    extra = {f: pl.lit(float(i)) for i, f in enumerate(DEFAULT_FIELDS)
             if f not in (*bars.columns, "amount", "factor")}
    return bars.with_columns((pl.col("volume") * pl.col("close")).alias("amount"), **extra)


def generate(workdir: Path, *, instruments: int, days: int) -> dict[str, dict[dt.date, Path]]:
    """Day blocks of ``days`` days (kept between runs: generated once per size)."""
    insts = [f"C{i:03d}-USDT-SWAP" for i in range(instruments)]
    blocks: dict[str, dict[dt.date, Path]] = {f: {} for f in FREQS}
    rng = np.random.default_rng(7)
    for i in range(days):
        day = FIRST_DAY + dt.timedelta(days=i)
        for freq in FREQS:
            path = workdir / "blocks" / f"{instruments}" / freq / f"{day}.arrow"
            blocks[freq][day] = path
            if not path.exists():
                minutes = 1440 if freq == "day" else int(freq.removesuffix("min"))
                write_block(day_block(_bars(insts, day, minutes, rng), day=day, freq=freq, fields=DEFAULT_FIELDS),
                            path)
        if (i + 1) % 30 == 0:
            print(f"  day blocks: {i + 1}/{days} days", file=sys.stderr, flush=True)
    return blocks


def _universe(workdir: Path, insts: int, days: int) -> list[Path]:
    names = [f"C{i:03d}-USDT-SWAP" for i in range(insts)]
    paths = []
    for i in range(days):
        day = FIRST_DAY + dt.timedelta(days=i)
        path = workdir / "universe" / f"{insts}" / f"{day}.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"day": [day] * insts, "inst": names, "member": [True] * insts}).write_parquet(path)
        paths.append(path)
    return paths


def step(args: list[str]) -> None:
    """``step WORKDIR INSTRUMENTS DAYS OUT [PUBLISHED]``: one export in this process → JSON on stdout."""
    from feeder.publish import mark_dataset
    from feeder.qlib_export import export_day_blocks

    workdir, insts, days, out = Path(args[0]), int(args[1]), int(args[2]), Path(args[3])
    published = Path(args[4]) if len(args) > 4 else None
    blocks = {f: {d: p for d, p in b.items() if (d - FIRST_DAY).days < days}
              for f, b in generate(workdir, instruments=insts, days=days).items()}
    universe = _universe(workdir, insts, days)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    export_day_blocks(blocks=blocks, universe_paths=universe, days=[FIRST_DAY + dt.timedelta(days=i) for i in range(days)],
                      market_name=MARKET, out_dir=out, published=published)
    wall = time.perf_counter() - t0
    mark_dataset(out)  # as the qlib rule does: the next step may take it as its base
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    print(json.dumps({"wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "written_mb": written / 2**20,
                      "dataset_mb": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20}))


def _run_step(*args: object) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.export_append", "step", *map(str, args)], cwd=REPO,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same_files(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != BUILD_LEDGER)
    if files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != BUILD_LEDGER):
        return False
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["step"]:
        step(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.export_append", description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=50)
    parser.add_argument("--days", default="30,180,365", help="history lengths, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data" / "export-append")
    opts = parser.parse_args(argv)
    lengths = sorted(int(d) for d in opts.days.split(","))
    print(f"generating day blocks: {opts.instruments} instruments x {max(lengths)} days x {len(FREQS)} frequencies",
          file=sys.stderr, flush=True)
    generate(opts.workdir, instruments=opts.instruments, days=max(lengths))
    rows, equal = [], True
    for days in lengths:
        full_dir, base_dir, add_dir = (opts.workdir / "out" / f"{days}-{k}" for k in ("full", "base", "add"))
        full = [_run_step(opts.workdir, opts.instruments, days, full_dir) for _ in range(opts.repeat)]
        _run_step(opts.workdir, opts.instruments, days - 1, base_dir)  # the published D-1 days (untimed)
        add = [_run_step(opts.workdir, opts.instruments, days, add_dir, base_dir) for _ in range(opts.repeat)]
        equal &= _same_files(add_dir, full_dir)
        med = {k: statistics.median(r[k] for r in full) for k in ("wall_s", "rss_mb", "dataset_mb")}
        amed = {k: statistics.median(r[k] for r in add) for k in ("wall_s", "rss_mb", "written_mb")}
        rows.append((days, med, amed))
        print(f"  {days} days done", file=sys.stderr, flush=True)
    print(f"\nQlib export alone ({opts.instruments} instruments, {', '.join(FREQS)}, {len(DEFAULT_FIELDS)} fields; "
          f"medians of {opts.repeat}; {os.cpu_count()} cores)\n")
    print("| days | dataset | full build | per day | peak RSS | one-day add | written | add / full | add RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for days, med, amed in rows:
        print(f"| {days} | {med['dataset_mb']:,.0f} MB | {med['wall_s']:.2f} s | {1000 * med['wall_s'] / days:.1f} ms "
              f"| {med['rss_mb']:,.0f} MB | {amed['wall_s']:.2f} s | {amed['written_mb']:,.0f} MB "
              f"| {100 * amed['wall_s'] / med['wall_s']:.1f}% | {amed['rss_mb']:,.0f} MB |")
    print(f"\nappended datasets equal the full builds byte for byte: {'yes' if equal else 'NO'}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
