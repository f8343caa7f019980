"""Publish the built Qlib directory at paths.qlib as a new version. Logic: feeder.qlib_export."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821  (repo root: import feeder)

from feeder.logs import setup_logging  # noqa: E402
from feeder.qlib_export import publish_dataset, write_manifest  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
qlib_dir = Path(snakemake.params.qlib_dir)  # noqa: F821
version = publish_dataset(Path(snakemake.input.dataset), qlib_dir)  # noqa: F821
summary = json.loads(Path(snakemake.input.summary).read_text())  # noqa: F821
write_manifest(Path(snakemake.output[0]), qlib_dir=qlib_dir, summary={**summary, "version": version.name})  # noqa: F821
