"""Write the Qlib provider directory from resampled bars and universes. Logic: feeder.qlib_export."""
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.qlib_export import export_from_workflow, write_manifest  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
summary = export_from_workflow(
    bar_paths=[Path(p) for p in snakemake.input.bars],  # noqa: F821
    universe_paths=[Path(p) for p in snakemake.input.universes],  # noqa: F821
    freqs=list(snakemake.params.freqs),  # noqa: F821
    days=[dt.date.fromisoformat(d) for d in snakemake.params.days],  # noqa: F821
    market_name=snakemake.params.market,  # noqa: F821
    fields=list(snakemake.params.fields),  # noqa: F821
    qlib_dir=Path(snakemake.params.qlib_dir),  # noqa: F821
)
write_manifest(Path(snakemake.output[0]), qlib_dir=Path(snakemake.params.qlib_dir), summary=summary)  # noqa: F821
