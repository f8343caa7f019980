"""The demo: simulator -> collector -> Snakemake -> Qlib, offline, in a few minutes.

Run through ``bash scripts/demo.sh`` (which creates the virtual environment first). Every
process started here is stopped before it returns, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.processes import REPO, run_collector, simulator, snakemake, write_config
from harness.readback import read_sample

# The simulated clock starts at 22:30 UTC on the last demo day and runs 240x: the collector's
# 30 real seconds are two simulated hours, taking the stream past midnight, so the last day is
# complete (stream for its final 90 minutes, REST backfill for the rest) and days before it come
# from the backfill alone.
START, END = "2024-03-02", "2024-03-04"
CLOCK_START = "2024-03-04T22:30:00Z"
SPEED = 240.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=REPO / "demo-data")
    parser.add_argument("--size", type=int, default=10, help="universe size (top N)")
    parser.add_argument("--collect-seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep an existing demo-data directory")
    parser.add_argument("--no-research", action="store_true", help="skip the research example (model + backtest)")
    args = parser.parse_args(argv)
    data = args.data_dir.resolve()
    if data.exists() and not args.keep:
        shutil.rmtree(data)
    t0 = time.monotonic()
    with simulator(clock_start=CLOCK_START, speed=SPEED, cert_dir=data / "certs", log_path=data / "logs" / "simulator.log") as sim:
        print(f"[demo] OKX simulator up at {sim.rest} (clock {CLOCK_START}, {SPEED:g}x)", flush=True)
        cfg_path = data / "config.yaml"
        write_config(cfg_path, endpoints=sim, data_dir=data, start=START, end=END, size=args.size)
        print(f"[demo] collector streaming for {args.collect_seconds:g}s (~{args.collect_seconds * SPEED / 3600:.1f} simulated hours)", flush=True)
        code = run_collector(cfg_path, duration_s=args.collect_seconds, log_path=data / "logs" / "collector.log")
        print(f"[demo] collector stopped (exit {code}); shards in {data / 'raw'}", flush=True)
        print(f"[demo] snakemake --cores 8 (backfill {START}..{END}, universe, clean, resample, qlib)", flush=True)
        snakemake(cfg_path, "--directory", str(data), cores=8, log_path=data / "logs" / "snakemake.log")
    qlib_dir = data / "qlib"
    print(f"[demo] Qlib dataset: {qlib_dir}  (market top{args.size}, built in {time.monotonic() - t0:.0f}s)")
    for freq, start, end in (("day", START, END), ("1min", f"{END} 23:55:00", f"{END} 23:59:00")):
        frame = read_sample(qlib_dir, f"top{args.size}", freq=freq, start=start, end=end)
        print(f"\n[demo] D.features(top{args.size}, freq={freq!r}) -> {len(frame)} rows, e.g.:")
        print(frame.head(8).to_string())
    # the data quality report of the streamed build (offline: every input exists; mtime triggers
    # only, so a refreshed instrument list after midnight UTC cannot ask the stopped simulator)
    snakemake(cfg_path, "--directory", str(data), "quality_report", "--rerun-triggers", "mtime", cores=2,
              log_path=data / "logs" / "snakemake-report.log")
    print(f"\n[demo] data quality report: {data / 'work' / 'report' / 'quality.html'}", flush=True)
    if not args.no_research:
        research_step(data, streamed_qlib=qlib_dir, market=f"top{args.size}")
    return 0


# The research example (research/) needs history: Alpha158 looks back up to 60 days and the model
# needs train/valid/test days after that. The streamed demo covers 3 days, so the example runs on
# a year of daily bars of the same simulated market, written by the product's own resample,
# universe and export code (research.sample_data), ending the day before the demo's first day.
# Then the intraday config runs on the streamed demo dataset itself (3 days of 60-minute bars,
# Alpha158-style windows of 3/6/12 hours): a smoke run of the example on the pipeline's output.
RESEARCH_DAYS = 365
RESEARCH_SYMBOLS, RESEARCH_SIZE = 30, 20


def run_research_example(data: Path, name: str, *args: str) -> dict:
    """python -m research.run_example in a fresh interpreter (logs to a file); returns its summary."""
    out = data / "research" / name
    out.mkdir(parents=True, exist_ok=True)
    log_path = data / "logs" / f"research-{name}.log"
    with open(log_path, "w") as log:
        res = subprocess.run([sys.executable, "-m", "research.run_example", *args, "--mlflow-dir", str(out / "mlflow"),
                              "--summary-json", str(out / "summary.json")],
                             cwd=out, stdout=subprocess.PIPE, stderr=log, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    if res.returncode != 0:
        raise RuntimeError(f"research example {name} failed ({res.returncode}); see {log_path}")
    print(res.stdout.rstrip(), flush=True)
    return json.loads((out / "summary.json").read_text())


def research_step(data: Path, *, streamed_qlib: Path, market: str) -> None:
    from research.sample_data import build_sample_qlib

    t0 = time.monotonic()
    last = dt.date.fromisoformat(START) - dt.timedelta(days=1)
    first = last - dt.timedelta(days=RESEARCH_DAYS - 1)
    sample_dir = data / "research" / "qlib-daily"
    print(f"\n[demo] research example: building {first}..{last} daily bars of the same simulated market "
          f"({RESEARCH_SYMBOLS} swaps, point-in-time top{RESEARCH_SIZE}) in {sample_dir}", flush=True)
    build_sample_qlib(sample_dir, first_day=first, last_day=last, n_symbols=RESEARCH_SYMBOLS, size=RESEARCH_SIZE,
                      freqs=("day",))
    print("[demo] LightGBM + Alpha158 + TopkDropout, crypto settings (research/workflow_config_lightgbm_Alpha158_day.yaml):",
          flush=True)
    run_research_example(data, "daily", "--provider-uri", str(sample_dir), "--freq", "day", "--market",
                         f"top{RESEARCH_SIZE}", "--topk", "5", "--n-drop", "1")
    print(f"\n[demo] the intraday config on the streamed demo dataset ({streamed_qlib}, 60min, Alpha158-style "
          "windows 3/6/12 h; 3 days is a smoke run, not research):", flush=True)
    run_research_example(data, "intraday-streamed", "--provider-uri", str(streamed_qlib), "--freq", "60min",
                         "--market", market, "--windows", "3,6,12", "--topk", "3", "--n-drop", "1")
    print(f"[demo] research done in {time.monotonic() - t0:.0f}s; MLflow runs in {data / 'research'}/*/mlflow "
          "(SQLite); the simulated market is a random walk, so no model has an edge here.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
