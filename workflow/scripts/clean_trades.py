"""Clean one UTC day's trades -> per-minute counts and taker buy volume. Logic: feeder.clean_trades."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.clean_trades import clean_trades_day  # noqa: E402
from feeder.logs import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
clean_trades_day(
    shard_paths=[Path(p) for p in snakemake.input.stream],  # noqa: F821
    day=dt.date.fromisoformat(snakemake.wildcards.day),  # noqa: F821
    instruments_path=Path(snakemake.input.instruments),  # noqa: F821
    out_path=Path(snakemake.output.trades),  # noqa: F821
    quality_path=Path(snakemake.output.quality),  # noqa: F821
)
