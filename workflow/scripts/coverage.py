"""Merge per-day coverage into one table and the gap list. Logic: feeder.coverage."""
from pathlib import Path

from feeder.coverage import merge_coverage
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
merge_coverage(
    day_paths=[Path(p) for p in snakemake.input],
    out_parquet=Path(snakemake.output.table),
    out_gaps_csv=Path(snakemake.output.gaps),
)
