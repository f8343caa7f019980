"""One day's ranking metric for every eligible instrument (+ instrument snapshot). Logic: feeder.universe."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.locks import hold_day_lock  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402
from feeder.universe import fetch_daily_metrics  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
# one job per rule and day at a time, across runs (feeder.locks); held until this process exits
hold_day_lock(work_dir=snakemake.config["paths"]["work"], job=snakemake.rule, day=snakemake.wildcards.day)  # noqa: F821
fetch_daily_metrics(
    exchange=snakemake.params.exchange,  # noqa: F821
    universe_cfg=snakemake.params.universe,  # noqa: F821
    day=dt.date.fromisoformat(snakemake.wildcards.day),  # noqa: F821
    history_start=dt.date.fromisoformat(snakemake.params.history_start),  # noqa: F821
    snapshot_dir=Path(snakemake.params.snapshot_dir),  # noqa: F821
    cache_dir=Path(snakemake.params.cache_dir),  # noqa: F821
    out_path=Path(snakemake.output.daily),  # noqa: F821
    instruments_out=Path(snakemake.output.instruments),  # noqa: F821
)
