"""Clean one UTC day of raw candle shards -> Parquet per symbol-day, and account for its coverage.
Logic: feeder.clean, feeder.coverage."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.clean import clean_day  # noqa: E402
from feeder.coverage import build_coverage_day  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
day = dt.date.fromisoformat(snakemake.wildcards.day)  # noqa: F821
clean_day(
    shard_paths=[Path(p) for p in [*snakemake.input.stream, snakemake.input.rest]],  # noqa: F821
    day=day,
    out_dir=Path(snakemake.output.bars),  # noqa: F821
    quality_path=Path(snakemake.output.quality),  # noqa: F821
    instruments_path=Path(snakemake.input.instruments),  # noqa: F821
    spike_factor=float(snakemake.params.spike_factor),  # noqa: F821
)
build_coverage_day(
    day=day,
    clean_dir=Path(snakemake.output.bars),  # noqa: F821
    universe_path=Path(snakemake.input.universe),  # noqa: F821
    instruments_path=Path(snakemake.input.instruments),  # noqa: F821
    backfill_summary_path=Path(snakemake.input.backfill),  # noqa: F821
    out_path=Path(snakemake.output.coverage),  # noqa: F821
)
