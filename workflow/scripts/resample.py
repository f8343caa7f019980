"""Resample one day's 1m bars to every frequency, with point-in-time fields, and write each as a
Qlib day block. Logic: feeder.resample, feeder.qlib_blocks."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.qlib_blocks import write_day_blocks  # noqa: E402
from feeder.resample import resample_day_all  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
day = dt.date.fromisoformat(snakemake.wildcards.day)  # noqa: F821
freqs = list(snakemake.params.freqs)  # noqa: F821
trades = list(snakemake.input.trades)  # noqa: F821
frames = resample_day_all(
    clean_dir=Path(snakemake.input.bars),  # noqa: F821
    day=day,
    out_paths=dict(zip(freqs, map(Path, snakemake.output.bars))),  # noqa: F821
    funding_path=Path(snakemake.input.funding),  # noqa: F821
    open_interest_path=Path(snakemake.input.open_interest),  # noqa: F821
    trades_path=Path(trades[0]) if trades else None,
)
write_day_blocks(
    frames,
    day=day,
    fields=list(snakemake.params.fields),  # noqa: F821
    out_paths=dict(zip(freqs, map(Path, snakemake.output.blocks))),  # noqa: F821
)
