"""Clean one UTC day of raw shards -> Parquet: candles per symbol-day (and the day's coverage),
settled funding rates and open-interest pushes.
Logic: feeder.clean, feeder.coverage, feeder.clean_funding, feeder.clean_open_interest."""
import datetime as dt
from pathlib import Path

from feeder.clean import clean_day
from feeder.clean_funding import clean_funding_day
from feeder.clean_open_interest import clean_open_interest_day
from feeder.coverage import build_coverage_day
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
day = dt.date.fromisoformat(snakemake.wildcards.day)
archive = [snakemake.input.archive] if "archive" in snakemake.input.keys() else []  # history.source archive+rest
clean_day(
    shard_paths=[Path(p) for p in [*archive, *snakemake.input.stream, snakemake.input.rest]],
    day=day,
    out_dir=Path(snakemake.output.bars),
    quality_path=Path(snakemake.output.quality),
    instruments_path=Path(snakemake.input.instruments),
    spike_factor=float(snakemake.params.spike_factor),
)
build_coverage_day(
    day=day,
    clean_dir=Path(snakemake.output.bars),
    universe_path=Path(snakemake.input.universe),
    instruments_path=Path(snakemake.input.instruments),
    backfill_summary_path=Path(snakemake.input.backfill),
    out_path=Path(snakemake.output.coverage),
)
clean_funding_day(
    shard_paths=[Path(p) for p in [snakemake.input.funding_rest, *snakemake.input.funding_stream]],
    day=day,
    out_path=Path(snakemake.output.funding),
    quality_path=Path(snakemake.output.funding_quality),
)
clean_open_interest_day(
    shard_paths=[Path(p) for p in snakemake.input.open_interest_stream],
    day=day,
    out_path=Path(snakemake.output.open_interest),
    quality_path=Path(snakemake.output.open_interest_quality),
)
