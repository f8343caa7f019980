"""Fetch the day's missing 1m bars from OKX REST -> a rest shard. Logic: feeder.backfill."""
import datetime as dt
from pathlib import Path

from feeder.backfill import run_backfill
from feeder.locks import hold_day_lock
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
# one job per rule and day at a time, across runs (feeder.locks); held until this process exits
hold_day_lock(work_dir=snakemake.config["paths"]["work"], job=snakemake.rule, day=snakemake.wildcards.day)
run_backfill(
    exchange=snakemake.params.exchange,
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    universe_path=Path(snakemake.input.universe),
    stream_shards=[Path(p) for p in snakemake.input.stream],
    out_path=Path(snakemake.output.shard),
    summary_path=Path(snakemake.output.summary),
    spike_factor=float(snakemake.params.spike_factor),
    recheck_absent=bool(snakemake.params.recheck_absent),
    archive_shard=Path(snakemake.input.archive) if "archive" in snakemake.input.keys() else None,
    archive_summary_path=(Path(snakemake.input.archive_summary)
                          if "archive_summary" in snakemake.input.keys() else None),
)
