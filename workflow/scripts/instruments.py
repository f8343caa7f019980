"""Fetch OKX's instrument list (the day's snapshot) -> Parquet. Logic: feeder.universe."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.universe import fetch_instruments  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
fetch_instruments(
    exchange=snakemake.params.exchange,  # noqa: F821
    inst_type=snakemake.params.inst_type,  # noqa: F821
    snapshot_dir=Path(snakemake.params.snapshot_dir),  # noqa: F821
    out_path=Path(snakemake.output[0]),  # noqa: F821
)
