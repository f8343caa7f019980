"""Reference points for the rebuild benchmark, run on the same raw shards as the pipeline.

* ``pandas_per_symbol_day``: the original design's approach: pandas reads every shard, one
  Parquet per symbol-day, then a concat per symbol and float32 bins (1min and day). This is
  what the project replaces.
* ``polars_limit``: the near-physical limit on this machine: one polars process reads all the
  JSONL once, deduplicates with an Int64 key sort, and writes the float32 bins of every
  frequency. No fault tolerance, no incremental builds, whole history in memory: a bound to
  compare against, not a design.

Both write Qlib-format bins into ``out_dir`` (calendars are not written: only the cost of the
data path is measured).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

FREQ_MINUTES = {"1min": 1, "5min": 5, "60min": 60, "day": 1440}


def _bins(values: np.ndarray, start: int) -> bytes:
    return np.concatenate([[start], values]).astype("<f4").tobytes()


def pandas_per_symbol_day(raw_ws: Path, out_dir: Path, days: list[dt.date]) -> int:
    """The seed's approach. Returns the number of bars written at 1min."""
    staging = out_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    for day in days:
        rows = []
        for path in sorted((raw_ws / "candle1m").glob(f"{day}/*/*.jsonl")):
            with open(path) as fh:
                for line in fh:
                    rec = json.loads(line)
                    d = rec["data"]
                    rows.append((rec["inst"], int(d[0]), *map(float, d[1:5]), float(d[6]), float(d[7])))
        frame = pd.DataFrame(rows, columns=["inst", "ts", "open", "high", "low", "close", "volume", "amount"])
        for inst, group in frame.groupby("inst"):
            group.drop_duplicates("ts").sort_values("ts").to_parquet(staging / f"{inst}.{day}.parquet")
    bars = 0
    calendar_start = int(dt.datetime.combine(days[0], dt.time(), dt.timezone.utc).timestamp() * 1000)
    for inst in sorted({p.name.split(".")[0] for p in staging.glob("*.parquet")}):
        frame = pd.concat([pd.read_parquet(p) for p in sorted(staging.glob(f"{inst}.*.parquet"))])
        frame = frame.drop_duplicates("ts").set_index("ts").sort_index()
        for freq, minutes in (("1min", 1), ("day", 1440)):
            step = minutes * 60_000
            bucket = (frame.index - calendar_start) // step
            agg = frame.groupby(bucket).agg(open=("open", "first"), high=("high", "max"), low=("low", "min"),
                                            close=("close", "last"), volume=("volume", "sum"))
            full = agg.reindex(range(int(agg.index.min()), int(agg.index.max()) + 1))
            target = out_dir / "pandas" / inst.lower()
            target.mkdir(parents=True, exist_ok=True)
            for field in full.columns:
                (target / f"{field}.{freq}.bin").write_bytes(_bins(full[field].to_numpy(), int(agg.index.min())))
            if freq == "1min":
                bars += len(agg)
    return bars


def polars_limit(raw_ws: Path, out_dir: Path, days: list[dt.date]) -> int:
    """One polars process: read all, dedup, every frequency's bins. Returns 1min bars written."""
    paths = sorted(str(p) for p in (raw_ws / "candle1m").glob("*/*/*.jsonl"))
    calendar_start = int(dt.datetime.combine(days[0], dt.time(), dt.timezone.utc).timestamp() * 1000)
    raw = pl.read_ndjson(paths, schema={"inst": pl.Utf8, "ts": pl.Int64, "data": pl.List(pl.Utf8)})
    codes = raw["inst"].cast(pl.Categorical).to_physical().cast(pl.Int64)
    frame = (
        raw.with_columns(key=codes * (1 << 32) + (pl.col("ts") - calendar_start) // 60_000)
        .sort("key")
        .unique("key", keep="first", maintain_order=True)
        .select("inst", slot=(pl.col("ts") - calendar_start) // 60_000,
                open=pl.col("data").list.get(1).cast(pl.Float64), high=pl.col("data").list.get(2).cast(pl.Float64),
                low=pl.col("data").list.get(3).cast(pl.Float64), close=pl.col("data").list.get(4).cast(pl.Float64),
                volume=pl.col("data").list.get(6).cast(pl.Float64))
    )
    bars = frame.height
    for freq, minutes in FREQ_MINUTES.items():
        agg = (frame.group_by("inst", (pl.col("slot") // minutes).alias("bucket"), maintain_order=True)
               .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
                    pl.col("volume").sum())) if minutes > 1 else frame.rename({"slot": "bucket"})
        for (inst,), group in agg.group_by("inst"):
            idx = group["bucket"].to_numpy()
            start, n = int(idx.min()), int(idx.max() - idx.min() + 1)
            target = out_dir / "polars" / str(inst).lower()
            target.mkdir(parents=True, exist_ok=True)
            for field in ("open", "high", "low", "close", "volume"):
                dense = np.full(n, np.nan, dtype="<f4")
                dense[idx - start] = group[field].to_numpy()
                (target / f"{field}.{freq}.bin").write_bytes(_bins(dense, start))
    return bars
