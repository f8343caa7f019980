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
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.workload import generate
from harness.processes import REPO, simulator, write_config

SEED = 7
HISTORY_START = "2024-01-01"


def measured(args: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.measure", *args], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench step {args[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rebuild(*, symbols: int, days: int, repeat: int, workdir: Path, baselines: bool) -> list[dict[str, object]]:
    first = dt.date(2024, 2, 1)
    day_list = [first + dt.timedelta(days=i) for i in range(days)]
    raw = workdir / "raw"
    stamp = workdir / f"workload-{symbols}x{days}.json"
    if not stamp.exists():
        shutil.rmtree(raw, ignore_errors=True)
        gen = generate(raw_root=raw, seed=SEED, history_start=HISTORY_START, days=day_list, n_symbols=symbols)
        stamp.write_text(json.dumps(gen))
    gen = json.loads(stamp.read_text())
    print(f"workload: {gen['symbols']} symbols/day x {days} days = {gen['candles']:,} candles, "
          f"{gen['lines']:,} lines, {gen['bytes'] / 1e6:.0f} MB", flush=True)
    clock = (day_list[-1] + dt.timedelta(days=1)).isoformat() + "T01:00:00Z"
    results: list[dict[str, object]] = []
    with simulator(seed=SEED, clock_start=clock, speed=1, history_start=HISTORY_START,
                   cert_dir=workdir / "certs", log_path=workdir / "simulator.log") as sim:
        run_dir = workdir / "pipeline"
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = run_dir / "config.yaml"
        write_config(cfg, endpoints=sim, data_dir=run_dir, start=day_list[0].isoformat(),
                     end=day_list[-1].isoformat(), size=symbols)
        (run_dir / "raw").mkdir(parents=True, exist_ok=True)
        (run_dir / "raw" / "ws").symlink_to(raw / "ws")
        base = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                str(run_dir), "--configfile", str(cfg), "--cores", "2", "--quiet"]
        # Warm-up (not timed): the REST side once (instrument list, daily turnover, funding
        # history, backfill of the few minutes the stream lacks). Timed runs then rebuild
        # everything downstream of the raw shards: clean, resample, coverage, export.
        warm = measured(["cmd", "--", *base])
        print(f"  warm-up run (with REST fetches): {warm['wall_s']:.1f}s", flush=True)
        runs = []
        for i in range(repeat):
            runs.append(measured(["cmd", "--", *base, "--forcerun", "clean"]))
            print(f"  snakemake run {i + 1}/{repeat}: {runs[-1]['wall_s']:.1f}s", flush=True)
        results.append(summarise("full rebuild raw->qlib, snakemake --cores 2", runs, gen["candles"]))
    if baselines:
        for name, kind in (("pandas per symbol-day (seed approach)", "pandas"), ("polars single process (limit)", "polars")):
            runs = []
            for i in range(repeat):
                runs.append(measured([kind, str(raw / "ws"), str(workdir / f"out-{kind}"), day_list[0].isoformat(), str(days)]))
                print(f"  {kind} run {i + 1}/{repeat}: {runs[-1]['wall_s']:.1f}s", flush=True)
            results.append(summarise(name, runs, gen["candles"]))
    return results


def run_dag(*, days: int, instruments: int, workdir: Path, repeat: int) -> dict[str, object]:
    """`snakemake -n` DAG build time for a config of `days` days x `instruments` instruments.

    The workflow's DAG does not depend on the instrument count (jobs are per day; instruments
    live inside each day's files), so this is the cost of a long history.
    """
    run_dir = workdir / "dag"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = run_dir / "config.yaml"
    endpoints = type("E", (), {"rest": "https://127.0.0.1:9", "ws_public": "wss://127.0.0.1:9/ws/v5/public",
                               "ws_business": "wss://127.0.0.1:9/ws/v5/business", "ca_file": None})()
    first = dt.date(2023, 1, 1)
    write_config(cfg, endpoints=endpoints, data_dir=run_dir, start=first.isoformat(),
                 end=(first + dt.timedelta(days=days - 1)).isoformat(), size=instruments)
    runs = [measured(["cmd", "--", sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                      "--directory", str(run_dir), "--configfile", str(cfg), "-n", "--quiet"])
            for _ in range(repeat)]
    wall = statistics.median(r["wall_s"] for r in runs)
    return {"scenario": f"snakemake -n, {days} days x {instruments} instruments", "median_s": wall,
            "candles_per_s": float("nan"), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "runs": [round(r["wall_s"], 1) for r in runs]}


def summarise(name: str, runs: list[dict[str, float]], candles: int) -> dict[str, object]:
    wall = statistics.median(r["wall_s"] for r in runs)
    return {"scenario": name, "median_s": wall, "candles_per_s": candles / wall,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": [round(r["wall_s"], 1) for r in runs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data")
    parser.add_argument("--no-baselines", action="store_true", help="only the pipeline")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = run_rebuild(symbols=args.symbols, days=args.days, repeat=args.repeat, workdir=args.workdir.resolve(),
                          baselines=not args.no_baselines)
    results.append(run_dag(days=365, instruments=300, workdir=args.workdir.resolve(), repeat=args.repeat))
    limit = next((r["median_s"] for r in results if "limit" in str(r["scenario"])), None)
    print()
    print(f"{args.symbols} symbols x {args.days} days, medians of {args.repeat} run(s)")
    print(f"{'scenario':45} {'median s':>9} {'candles/s':>11} {'peak RSS MB':>12} {'x limit':>8}  runs")
    for r in results:
        ratio = f"{r['median_s'] / limit:.1f}" if limit else "-"
        print(f"{r['scenario']:45} {r['median_s']:>9.1f} {r['candles_per_s']:>11,.0f} {r['peak_rss_mb']:>12.0f} "
              f"{ratio:>8}  {r['runs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
