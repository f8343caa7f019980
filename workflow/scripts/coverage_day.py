"""Coverage of one UTC day (bars by source, missing bars by reason). Logic: feeder.coverage."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.coverage import build_coverage_day  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
build_coverage_day(
    day=dt.date.fromisoformat(snakemake.wildcards.day),  # noqa: F821
    clean_dir=Path(snakemake.input.clean),  # noqa: F821
    universe_path=Path(snakemake.input.universe),  # noqa: F821
    instruments_path=Path(snakemake.input.instruments),  # noqa: F821
    backfill_summary_path=Path(snakemake.input.backfill),  # noqa: F821
    out_path=Path(snakemake.output[0]),  # noqa: F821
)
