"""Fetch each eligible instrument's daily ranking metric -> Parquet. Logic: feeder.universe."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.universe import fetch_daily_metrics  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
fetch_daily_metrics(
    exchange=snakemake.params.exchange,  # noqa: F821
    universe_cfg=snakemake.params.universe,  # noqa: F821
    instruments_path=Path(snakemake.input.instruments),  # noqa: F821
    first_day=dt.date.fromisoformat(snakemake.params.first_day),  # noqa: F821
    last_day=dt.date.fromisoformat(snakemake.params.last_day),  # noqa: F821
    out_path=Path(snakemake.output[0]),  # noqa: F821
)
