"""Fetch the day's settled funding rates from OKX REST -> a rest shard. Logic: feeder.funding_history."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.funding_history import run_funding_history  # noqa: E402
from feeder.locks import hold_day_lock  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
# one job per rule and day at a time, across runs (feeder.locks); held until this process exits
hold_day_lock(work_dir=snakemake.config["paths"]["work"], job=snakemake.rule, day=snakemake.wildcards.day)  # noqa: F821
run_funding_history(
    exchange=snakemake.params.exchange,  # noqa: F821
    day=dt.date.fromisoformat(snakemake.wildcards.day),  # noqa: F821
    universe_path=Path(snakemake.input.universe),  # noqa: F821
    out_path=Path(snakemake.output[0]),  # noqa: F821
    cache_dir=Path(snakemake.params.cache_dir),  # noqa: F821
)
