"""The demo: simulator -> collector -> Snakemake -> Qlib, offline, in a few minutes.

Run through ``bash scripts/demo.sh`` (which creates the virtual environment first). Every
process started here is stopped before it returns, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
