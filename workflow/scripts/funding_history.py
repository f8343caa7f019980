"""Fetch the day's settled funding rates from OKX REST -> a rest shard. Logic: feeder.funding_history."""
import datetime as dt
from pathlib import Path

from feeder.funding_history import run_funding_history
from feeder.locks import hold_day_lock
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
# one job per rule and day at a time, across runs (feeder.locks); held until this process exits
hold_day_lock(work_dir=snakemake.config["paths"]["work"], job=snakemake.rule, day=snakemake.wildcards.day)
run_funding_history(
    exchange=snakemake.params.exchange,
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    universe_path=Path(snakemake.input.universe),
    out_path=Path(snakemake.output[0]),
    cache_dir=Path(snakemake.params.cache_dir),
)
