"""Render the data quality report (one HTML file). Logic: feeder.report."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.report import write_report  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
write_report(
    quality_paths=[Path(p) for p in snakemake.input.quality],  # noqa: F821
    universe_paths=[Path(p) for p in snakemake.input.universes],  # noqa: F821
    coverage_paths=[Path(p) for p in snakemake.input.coverage],  # noqa: F821
    bar_paths=[Path(p) for p in snakemake.input.bars],  # noqa: F821
    days=[dt.date.fromisoformat(d) for d in snakemake.params.days],  # noqa: F821
    market=snakemake.params.market,  # noqa: F821
    bars_freq=snakemake.params.bars_freq,  # noqa: F821
    out_path=Path(snakemake.output[0]),  # noqa: F821
)
