"""Benchmarks. Prints a table of measured figures; nothing here asserts a target.

    python -m bench.run [--symbols 50] [--days 30] [--repeat 3]

Scenario "rebuild": a seeded store of N symbols x D days of 1m stream shards (bench/workload.py)
is turned into a Qlib directory by `snakemake --cores 2` (all configured frequencies), with the
local simulator serving the REST side (instrument list, daily turnover for the universe). The
stream covers every minute, so the backfill rule finds nothing to fetch and the figure is the
raw -> Qlib throughput. Reported: wall time (median of --repeat runs, each from scratch but
reusing the generated shards), candles/s, and the peak RSS of any job.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.workload import generate
from harness.processes import REPO, simulator, write_config

SEED = 7
HISTORY_START = "2024-01-01"


def run_rebuild(*, symbols: int, days: int, repeat: int, workdir: Path) -> dict[str, object]:
    first = dt.date(2024, 2, 1)
    day_list = [first + dt.timedelta(days=i) for i in range(days)]
    raw = workdir / "raw"
    if raw.exists():
        shutil.rmtree(raw)
    gen = generate(raw_root=raw, seed=SEED, history_start=HISTORY_START, days=day_list, n_symbols=symbols)
    print(f"workload: {gen['symbols']} symbols x {days} days = {gen['candles']:,} candles, "
          f"{gen['lines']:,} lines, {gen['bytes'] / 1e6:.0f} MB (generated in {gen['seconds']:.1f}s)", flush=True)
    clock = (day_list[-1] + dt.timedelta(days=1)).isoformat() + "T01:00:00Z"
    walls: list[float] = []
    rss_kb = 0
    with simulator(seed=SEED, clock_start=clock, speed=1, history_start=HISTORY_START,
                   cert_dir=workdir / "certs", log_path=workdir / "simulator.log") as sim:
        for i in range(repeat):
            run_dir = workdir / f"run{i}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            cfg = run_dir / "config.yaml"
            write_config(cfg, endpoints=sim, data_dir=run_dir, start=day_list[0].isoformat(),
                         end=day_list[-1].isoformat(), size=symbols)
            # share the generated stream shards with every run
            (run_dir / "raw").mkdir(parents=True, exist_ok=True)
            (run_dir / "raw" / "ws").symlink_to(raw / "ws")
            t0 = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(run_dir),
                 "--configfile", str(cfg), "--cores", "2", "--quiet", "all"],
                cwd=REPO, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if res.returncode != 0:
                raise SystemExit(f"snakemake failed:\n{res.stderr[-3000:]}")
            rss_kb = max(rss_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            print(f"  run {i + 1}/{repeat}: {walls[-1]:.1f}s", flush=True)
    wall = statistics.median(walls)
    return {"scenario": "rebuild raw->qlib (snakemake --cores 2)", "symbols": gen["symbols"], "days": days,
            "candles": gen["candles"], "median_s": wall, "candles_per_s": gen["candles"] / wall,
            "peak_rss_mb": rss_kb / 1024, "runs": walls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = run_rebuild(symbols=args.symbols, days=args.days, repeat=args.repeat, workdir=args.workdir.resolve())
    print()
    print(f"{'scenario':45} {'symbols':>7} {'days':>5} {'candles':>10} {'median s':>9} {'candles/s':>11} {'peak RSS MB':>12}")
    print(f"{result['scenario']:45} {result['symbols']:>7} {result['days']:>5} {result['candles']:>10,} "
          f"{result['median_s']:>9.1f} {result['candles_per_s']:>11,.0f} {result['peak_rss_mb']:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
