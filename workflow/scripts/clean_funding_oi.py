"""Clean one UTC day's settled funding rates (REST + stream) and open-interest pushes -> Parquet.
Logic: feeder.clean_funding, feeder.clean_open_interest."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.clean_funding import clean_funding_day  # noqa: E402
from feeder.clean_open_interest import clean_open_interest_day  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
day = dt.date.fromisoformat(snakemake.wildcards.day)  # noqa: F821
clean_funding_day(
    shard_paths=[Path(p) for p in [snakemake.input.rest, *snakemake.input.funding_stream]],  # noqa: F821
    day=day,
    out_path=Path(snakemake.output.funding),  # noqa: F821
    quality_path=Path(snakemake.output.funding_quality),  # noqa: F821
)
clean_open_interest_day(
    shard_paths=[Path(p) for p in snakemake.input.open_interest_stream],  # noqa: F821
    day=day,
    out_path=Path(snakemake.output.open_interest),  # noqa: F821
    quality_path=Path(snakemake.output.open_interest_quality),  # noqa: F821
)
