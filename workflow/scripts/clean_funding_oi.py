"""Clean one UTC day's settled funding rates (REST + stream) and open-interest pushes -> Parquet.
Logic: feeder.clean_funding, feeder.clean_open_interest."""
import datetime as dt
from pathlib import Path

from feeder.clean_funding import clean_funding_day
from feeder.clean_open_interest import clean_open_interest_day
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
day = dt.date.fromisoformat(snakemake.wildcards.day)
clean_funding_day(
    shard_paths=[Path(p) for p in [snakemake.input.rest, *snakemake.input.funding_stream]],
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
