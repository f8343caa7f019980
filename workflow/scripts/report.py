"""Render the data quality report (one HTML file). Logic: feeder.report."""
import datetime as dt
from pathlib import Path

from feeder.logs import setup_logging
from feeder.report import write_report

setup_logging(snakemake.log[0])
write_report(
    quality_paths=[Path(p) for p in snakemake.input.quality],
    universe_paths=[Path(p) for p in snakemake.input.universes],
    coverage_paths=[Path(p) for p in snakemake.input.coverage],
    bar_paths=[Path(p) for p in snakemake.input.bars],
    days=[dt.date.fromisoformat(d) for d in snakemake.params.days],
    market=snakemake.params.market,
    bars_freq=snakemake.params.bars_freq,
    out_path=Path(snakemake.output[0]),
)
