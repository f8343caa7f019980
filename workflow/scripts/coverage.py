"""Merge per-day coverage into one table and the gap list. Logic: feeder.coverage."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.coverage import merge_coverage  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
merge_coverage(
    day_paths=[Path(p) for p in snakemake.input],  # noqa: F821
    out_parquet=Path(snakemake.output.table),  # noqa: F821
    out_gaps_csv=Path(snakemake.output.gaps),  # noqa: F821
)
