"""Run one measured step in a fresh process and print its wall time and peak RSS as JSON.

    python -m bench.measure pandas|polars RAW_WS OUT_DIR FIRST_DAY N_DAYS
    python -m bench.measure cmd -- COMMAND...      (peak RSS = the largest process it waited for)
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


def main(argv: list[str]) -> int:
    kind = argv[0]
    t0 = time.perf_counter()
    extra: dict[str, object] = {}
    if kind == "cmd":
        proc = subprocess.run(argv[2:], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    else:
        from bench.baselines import pandas_per_symbol_day, polars_limit

        raw_ws, out_dir = Path(argv[1]), Path(argv[2])
        first, n = dt.date.fromisoformat(argv[3]), int(argv[4])
        days = [first + dt.timedelta(days=i) for i in range(n)]
        shutil.rmtree(out_dir, ignore_errors=True)
        fn = pandas_per_symbol_day if kind == "pandas" else polars_limit
        extra["bars"] = fn(raw_ws, out_dir, days)
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_rss_mb": rss_kb / 1024, **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
