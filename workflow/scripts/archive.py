"""Convert OKX's archive files covering the day's universe members -> an archive shard. Logic: feeder.archive."""
import datetime as dt
from pathlib import Path

from feeder.archive import run_archive
from feeder.locks import hold_day_lock
from feeder.logs import setup_logging

setup_logging(snakemake.log[0])
# one job per rule and day at a time, across runs (feeder.locks); held until this process exits
hold_day_lock(work_dir=snakemake.config["paths"]["work"], job=snakemake.rule, day=snakemake.wildcards.day)
run_archive(
    exchange=snakemake.params.exchange,
    day=dt.date.fromisoformat(snakemake.wildcards.day),
    universe_path=Path(snakemake.input.universe),
    inst_type=snakemake.params.inst_type,
    cache_dir=Path(snakemake.params.cache_dir),
    concurrency=int(snakemake.params.concurrency),
    out_path=Path(snakemake.output.shard),
    summary_path=Path(snakemake.output.summary),
)
