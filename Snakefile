# crypto-data-feeder: raw OKX shards -> point-in-time universes -> cleaned Parquet ->
# resampled bars -> a Qlib provider directory. Each stage is one rule file; the logic lives in
# the `feeder` package. Run: snakemake --cores 8   (see README.md)
from snakemake.utils import min_version

min_version("9.0")

from snakemake.logging import logger as snakemake_logger
from feeder.logs import quiet_empty_shell_commands
from feeder.snakemake_params import handle_params_without_dataframe_libraries
from feeder.snakemake_scheduler import lift_local_job_rate_limit

# every rule runs a script: without this, each job adds "Shell command: None" (or, for the day
# rules' `python -m feeder.job`, the job's files as JSON) to the output
quiet_empty_shell_commands(snakemake_logger)
# Snakemake would import pandas, numpy and polars into its own process for the params (see the module)
handle_params_without_dataframe_libraries()


configfile: "config.yaml"


# Snakemake's job rate limiter keeps its scheduler busy on long local runs (see the module)
onstart:
    lift_local_job_rate_limit(workflow)


include: "workflow/rules/common.smk"
include: "workflow/rules/universe.smk"
include: "workflow/rules/archive.smk"
include: "workflow/rules/backfill.smk"
include: "workflow/rules/funding.smk"
include: "workflow/rules/clean.smk"
include: "workflow/rules/resample.smk"
include: "workflow/rules/qlib.smk"
include: "workflow/rules/coverage.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        QLIB_MANIFEST,
        f"{WORK}/coverage.parquet",
        # the report()-flagged outputs must be in the default target: `snakemake --report` shows
        # only those of the jobs the default target needs
        QUALITY_REPORT,
    default_target: True
