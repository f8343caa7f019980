"""Rank instruments for one UTC day from data before that day -> Parquet. Logic: feeder.universe."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.universe import build_universe_day  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
build_universe_day(
    daily_paths=[Path(p) for p in snakemake.input.daily],  # noqa: F821
    instruments_path=Path(snakemake.input.instruments),  # noqa: F821
    day=dt.date.fromisoformat(snakemake.wildcards.day),  # noqa: F821
    size=int(snakemake.params.size),  # noqa: F821
    window_days=int(snakemake.params.window_days),  # noqa: F821
    out_path=Path(snakemake.output[0]),  # noqa: F821
)
