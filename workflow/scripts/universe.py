"""Rank instruments for one UTC day from data before that day -> Parquet. Logic: feeder.universe."""
import datetime as dt
from pathlib import Path

from feeder.logs import setup_logging
from feeder.universe import build_universe_day

setup_logging(snakemake.log[0])
build_universe_day(
    daily_paths=[Path(p) for p in snakemake.input.daily],
    instruments_path=Path(snakemake.input.instruments),
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    size=int(snakemake.params.size),
    window_days=int(snakemake.params.window_days),
    out_path=Path(snakemake.output[0]),
)
