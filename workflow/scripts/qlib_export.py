"""Concatenate the day blocks into a Qlib provider directory. Logic: feeder.qlib_export, feeder.publish."""
import datetime as dt
from pathlib import Path

from feeder.atomic import write_json
from feeder.logs import setup_logging
from feeder.publish import mark_dataset
from feeder.qlib_export import export_day_blocks

setup_logging(snakemake.log[0])
# The record of the previous publish goes first: if this build fails, the next run finds no
# record and rebuilds and publishes (see the comment in workflow/rules/qlib.smk).
Path(snakemake.params.manifest).unlink(missing_ok=True)
out_dir = Path(snakemake.output.dataset)
days = [dt.date.fromisoformat(d) for d in snakemake.params.days]
blocks = {freq: {} for freq in snakemake.params.freqs}
for path in map(Path, snakemake.input.blocks):  # the workflow's layout: qlib-blocks/<freq>/<day>.arrow
    blocks[path.parent.name][dt.date.fromisoformat(path.stem)] = path
summary = export_day_blocks(
    blocks=blocks,
    universe_paths=[Path(p) for p in snakemake.input.universes],
    days=days,
    market_name=snakemake.params.market,
    fields=list(snakemake.params.fields),
    out_dir=out_dir,
    published=Path(snakemake.params.qlib_dir),  # the base new days are appended to, when its history is unchanged
)
mark_dataset(out_dir)
write_json(summary, Path(snakemake.output.summary))
