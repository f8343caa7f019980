"""Clean one UTC day's trades -> per-minute counts and taker buy volume. Logic: feeder.clean_trades."""
import datetime as dt
from pathlib import Path

from feeder.clean_trades import clean_trades_day
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
clean_trades_day(
    shard_paths=[Path(p) for p in snakemake.input.stream],
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    instruments_path=Path(snakemake.input.instruments),
    out_path=Path(snakemake.output.trades),
    quality_path=Path(snakemake.output.quality),
)
