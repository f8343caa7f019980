"""Resample one day's 1m bars to every frequency, with point-in-time fields, and write each as a
Qlib day block. Logic: feeder.resample, feeder.qlib_blocks."""
import datetime as dt
from pathlib import Path

from feeder.logs import setup_logging
from feeder.qlib_blocks import write_day_blocks
from feeder.resample import resample_day_all

setup_logging(snakemake.log[0])
day = dt.date.fromisoformat(snakemake.wildcards.day)
freqs = list(snakemake.params.freqs)
trades = list(snakemake.input.trades)
books = list(snakemake.input.books)
frames = resample_day_all(
    clean_dir=Path(snakemake.input.bars),
    day=day,
    out_paths=dict(zip(freqs, map(Path, snakemake.output.bars))),
    funding_path=Path(snakemake.input.funding),
    open_interest_path=Path(snakemake.input.open_interest),
    trades_path=Path(trades[0]) if trades else None,
    books_path=Path(books[0]) if books else None,
)
write_day_blocks(
    frames,
    day=day,
    fields=list(snakemake.params.fields),
    out_paths=dict(zip(freqs, map(Path, snakemake.output.blocks))),
)
