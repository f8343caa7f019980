"""Clean one UTC day's order books -> per-minute sums of the book features. Logic: feeder.clean_books."""
import datetime as dt
from pathlib import Path

from feeder.clean_books import clean_books_day
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
clean_books_day(
    shard_paths=[Path(p) for p in snakemake.input.stream],
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    instruments_path=Path(snakemake.input.instruments),
    out_path=Path(snakemake.output.books),
    quality_path=Path(snakemake.output.quality),
    max_age_s=int(snakemake.params.max_age_s),
)
