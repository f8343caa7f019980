"""The books5 cleaning job (feeder.clean_books) on sampled order books: time, peak RSS, bytes.

    python -m bench.books_clean [--instruments 50] [--hours 1,6,24] [--workdir bench-data/books-clean]

Writes H hours of sampled books (one book per instrument and second, what the collector keeps;
5-level random-walk books from bench/collector_ingest.BookModel) as the collector seals them
(``.jsonl.zst``, one shard per receipt hour) plus the same bytes uncompressed, then runs the
``clean_books`` job's function on each, in a fresh process: wall time and that process's peak RSS.
A full UTC day is 24 hours. Nothing here asserts a speed target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

from bench.collector_ingest import BookModel
from feeder.records import encode_record, record_from_element

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2024, 3, 4)
DAY_MS = int(dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc).timestamp() * 1000)


def write_hours(root: Path, *, instruments: int, hours: int) -> tuple[list[Path], list[Path]]:
    """``hours`` receipt hours of sampled books → (zstd shards, plain shards); kept between runs."""
    models = [BookModel(f"C{i}-USDT-SWAP", i + 1) for i in range(instruments)]
    zst, plain = [], []
    for hour in range(hours):
        z = root / "zst" / f"{hour:02d}.jsonl.zst"
        p = root / "plain" / f"{hour:02d}.jsonl"
        zst.append(z)
        plain.append(p)
        if z.exists() and p.exists():
            continue
        lines = []
        for second in range(3600):
            ts = DAY_MS + (hour * 3600 + second) * 1000 + 650
            for model in models:
                record = record_from_element("books5", model.element(ts), recv_ts=ts + 40)
                lines.append(encode_record(record))
        data = b"".join(lines)
        p.parent.mkdir(parents=True, exist_ok=True)
        z.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        with pa.CompressedOutputStream(str(z), "zstd") as out:
            out.write(data)
        print(f"  wrote hour {hour + 1}/{hours}", file=sys.stderr, flush=True)
    return zst, plain


def instruments_file(root: Path, instruments: int) -> Path:
    path = root / "instruments.parquet"
    pl.DataFrame({"instId": [f"C{i}-USDT-SWAP" for i in range(instruments)], "ctVal": ["0.01"] * instruments,
                  "ctType": ["linear"] * instruments, "instType": ["SWAP"] * instruments}).write_parquet(path)
    return path


def step(args: list[str]) -> None:
    """``step OUT_DIR INSTRUMENTS_FILE SHARD...``: one clean_books job in this process → JSON."""
    from feeder.clean_books import clean_books_day

    out, instruments, shards = Path(args[0]), Path(args[1]), [Path(a) for a in args[2:]]
    t0 = time.perf_counter()
    stats = clean_books_day(shard_paths=shards, day=DAY, instruments_path=instruments,
                            out_path=out / "books.parquet", quality_path=out / "quality.json")
    print(json.dumps({"wall_s": time.perf_counter() - t0, "samples": stats.get("samples"),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["step"]:
        step(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.books_clean", description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=50)
    parser.add_argument("--hours", default="1,6,24")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data" / "books-clean")
    opts = parser.parse_args(argv)
    lengths = sorted(int(h) for h in opts.hours.split(","))
    root = opts.workdir / f"{opts.instruments}"
    zst, plain = write_hours(root, instruments=opts.instruments, hours=max(lengths))
    instruments = instruments_file(root, opts.instruments)
    rows = []
    for hours in lengths:
        for kind, shards in (("zstd", zst[:hours]), ("jsonl", plain[:hours])):
            out = subprocess.run([sys.executable, "-m", "bench.books_clean", "step", str(root / "out"),
                                  str(instruments), *map(str, shards)], cwd=REPO, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((hours, kind, sum(p.stat().st_size for p in shards), result))
    print(f"\nclean_books on sampled books5 ({opts.instruments} instruments, 1 book per instrument-second)\n")
    print("| hours | shards | bytes | books | job wall | peak RSS |")
    print("|---|---|---|---|---|---|")
    for hours, kind, size, r in rows:
        print(f"| {hours} | {kind} | {size / 2**20:,.0f} MB | {r['samples']:,} | {r['wall_s']:.1f} s "
              f"| {r['rss_mb']:,.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
