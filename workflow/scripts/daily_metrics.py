"""One day's ranking metric for every eligible instrument (+ instrument snapshot). Logic: feeder.universe."""
import datetime as dt
from pathlib import Path

from feeder.locks import hold_day_lock
from feeder.logs import setup_logging
from feeder.universe import fetch_daily_metrics

setup_logging(snakemake.log[0])
# one job per rule and day at a time, across runs (feeder.locks); held until this process exits
hold_day_lock(work_dir=snakemake.config["paths"]["work"], job=snakemake.rule, day=snakemake.wildcards.day)
fetch_daily_metrics(
    exchange=snakemake.params.exchange,
    universe_cfg=snakemake.params.universe,
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    history_start=dt.date.fromisoformat(snakemake.params.history_start),
    snapshot_dir=Path(snakemake.params.snapshot_dir),
    cache_dir=Path(snakemake.params.cache_dir),
    out_path=Path(snakemake.output.daily),
    instruments_out=Path(snakemake.output.instruments),
    archive_cache=Path(snakemake.params.archive_cache) if snakemake.params.archive_cache else None,
    download_concurrency=int(snakemake.params.download_concurrency),
)
