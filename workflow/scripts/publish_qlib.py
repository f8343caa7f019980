"""Publish the built Qlib directory at paths.qlib as a new version. Logic: feeder.publish."""
import json
import logging
import sys
from pathlib import Path

from feeder.logs import setup_logging
from feeder.publish import (
    PublishRefusedError,
    check_summary_matches,
    publish_dataset,
    write_manifest,
)

setup_logging(snakemake.log[0])
params = snakemake.params
qlib_dir = Path(params.qlib_dir)
summary = json.loads(Path(snakemake.input.summary).read_text())
check_summary_matches(summary, days=params.days, freqs=params.freqs, market=params.market)
try:
    # .snakemake_timestamp: Snakemake's marker in directory outputs, not part of the dataset
    version = publish_dataset(Path(snakemake.input.dataset), qlib_dir, ignore=[".snakemake_timestamp"])
except PublishRefusedError as exc:  # a refusal is the user's to resolve: the message, not a traceback
    logging.getLogger("publish_qlib").error("%s", exc)
    sys.exit(1)
request = {"first_day": min(params.days), "last_day": max(params.days), "n_days": len(params.days),
           "freqs": list(params.freqs), "market": params.market, "fields": list(params.fields)}
write_manifest(Path(snakemake.output[0]), qlib_dir=qlib_dir, version=version, summary=summary,
               request=request)
