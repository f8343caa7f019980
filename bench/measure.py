"""Run one measured step in a fresh process and print its wall time and peak RSS as JSON.

    python -m bench.measure pandas|dumpbin|polars RAW_ROOT OUT_DIR FIRST_DAY N_DAYS
    python -m bench.measure cmd [--log FILE] -- COMMAND...

Peak RSS is the largest single process: for ``cmd`` the largest descendant it waited for (so
with Snakemake, the largest job or Snakemake itself); for a baseline, the larger of the process
itself and its worker processes (dump_bin's process pool). ``--log`` keeps the command's stdout
and stderr (bench/run.py reads Snakemake's job counts from it).
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_command(argv: list[str]) -> int:
    """``[--log FILE] -- COMMAND...``: run it; return its exit code."""
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    log = Path(options[options.index("--log") + 1]) if "--log" in options else None
    proc = subprocess.run(command, capture_output=True, text=True)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
    return proc.returncode


def run_baseline(kind: str, argv: list[str]) -> int:
    """A baseline of bench/baselines.py; returns the number of 1min bars it wrote."""
    from bench.baselines import pandas_dump_bin, pandas_per_symbol_day, polars_limit

    raw_root, out_dir = Path(argv[0]), Path(argv[1])
    first, n = dt.date.fromisoformat(argv[2]), int(argv[3])
    days = [first + dt.timedelta(days=i) for i in range(n)]
    shutil.rmtree(out_dir, ignore_errors=True)
    fn = {"pandas": pandas_per_symbol_day, "dumpbin": pandas_dump_bin, "polars": polars_limit}[kind]
    return fn(raw_root, out_dir, days)


def main(argv: list[str]) -> int:
    kind = argv[0]
    t0 = time.perf_counter()
    extra: dict[str, object] = {}
    if kind == "cmd":
        code = run_command(argv[1:])
        if code != 0:
            return code
    else:
        extra["bars"] = run_baseline(kind, argv[1:])
    rss_kb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                 0 if kind == "cmd" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_rss_mb": rss_kb / 1024, **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
